"""Packaging (deploy/README.md): the Dockerfile, .dockerignore and the
Kubernetes manifests, checked without Docker (no registry is reachable from
the build machines, so the image is never built here).

A real `make install DESTDIR=<tmp>` of the build tree is the staging folder:
every path the Dockerfile copies must be there, at the place the binary
looks for it; the installed binary runs and, with the staging folder mounted
at the prefix, loads its plugins, the Lua prelude and the Lua policies from
the installed layout and serves through them.  The manifests must parse and
agree with each other and with the image."""

import datetime
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from conftest import BIN, free_port, to_yaml, wait_for

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.dirname(os.path.abspath(BIN))
K8S = os.path.join(TOP, "deploy", "kubernetes")
LIVE = "/status-0123456789abcdef"
READY = "/internal-status-0123456789abcdef"

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "Makefile")),
                                reason="PORTICO_BIN is not in a build tree (no Makefile next to it)")


# ---------------------------------------------------------------- helpers

def dockerfile():
    """The Dockerfile's instructions as [(stage index, INSTRUCTION, argument text)], continuations joined."""
    with open(os.path.join(TOP, "Dockerfile")) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    out, stage = [], -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, rest.strip()))
    return out


def final_stage():
    ins = dockerfile()
    last = max(s for s, _, _ in ins)
    return [(w, a) for s, w, a in ins if s == last]


def build_stage():
    return [(w, a) for s, w, a in dockerfile() if s == 0]


def apt_packages(run_text):
    """The packages of the apt-get install in a RUN instruction."""
    m = re.search(r"apt-get install ((?:-\S+ )*)(.*?)(?:&&|$)", run_text)
    assert m, run_text
    return set(m.group(2).split())


def json_or_shell(arg):
    arg = arg.strip()
    return json.loads(arg) if arg.startswith("[") else shlex.split(arg)


def make_dirs():
    """The build tree's installation folders (what the binary was compiled to look in)."""
    names = ["prefix", "bindir", "pkglibdir", "pkgdatadir", "sysconfdir", "localstatedir", "datadir"]
    rule = "pt-dirs:\n\t@echo \"%s\"\n" % "|".join("$(%s)" % n for n in names)
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", BUILD, "-f", "Makefile", "-f", "-", "pt-dirs"],
                       input=rule.encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return dict(zip(names, r.stdout.decode().strip().split("|")))


def docker_configure_dirs():
    """--prefix, --sysconfdir, --localstatedir of the Dockerfile's configure."""
    runs = " ".join(a for w, a in build_stage() if w == "RUN")
    m = re.search(r"configure ([^&]*)", runs)
    assert m, "the build stage runs no configure"
    opts = dict(re.findall(r"--(prefix|sysconfdir|localstatedir)=(\S+)", m.group(1)))
    return opts


def to_build_path(docker_path, dirs):
    """A path of the image (configured with the Dockerfile's dirs) as this build tree installs it."""
    d = docker_configure_dirs()
    for key in ("sysconfdir", "localstatedir", "prefix"):
        p = d[key].rstrip("/")
        if docker_path == p or docker_path.startswith(p + "/"):
            return dirs[key] + docker_path[len(p):]
    return docker_path


def staged_copies():
    """(source in /staging, destination) of every COPY --from=build of the final stage."""
    out = []
    for w, a in final_stage():
        if w != "COPY":
            continue
        parts = a.split()
        assert parts[0].startswith("--from="), "the runtime stage copies only from the build stage: " + a
        src, dest = parts[1], parts[2]
        out.append((src, dest))
    return out


@pytest.fixture(scope="module")
def staging(tmp_path_factory):
    """`make install DESTDIR=...` of the build tree; (staging folder, installation folders)."""
    d = str(tmp_path_factory.mktemp("staging"))
    r = subprocess.run(["make", "-s", "install", "DESTDIR=" + d], cwd=BUILD, capture_output=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()[-3000:]
    return d, make_dirs()


def manifests():
    docs = {}
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                assert isinstance(doc, dict) and doc.get("kind"), path
                docs.setdefault(doc["kind"], []).append(doc)
    return docs


def one(docs, kind):
    assert len(docs.get(kind, [])) == 1, "one %s expected in deploy/kubernetes" % kind
    return docs[kind][0]


# ---------------------------------------------------------------- the image

def test_bash_completion_is_installed_where_bash_completion_looks(staging):
    """make install puts the CLI's completion under the command's name in
    bash-completion's folder; sourced from there it completes with the
    installed binary."""
    root, dirs = staging
    installed = os.path.join(root, dirs["datadir"].lstrip("/"), "bash-completion", "completions", "portico")
    with open(installed) as f, open(os.path.join(TOP, "contrib", "portico.bash")) as g:
        assert f.read() == g.read()
    bindir = os.path.join(root, dirs["bindir"].lstrip("/"))
    script = ("source %s; COMP_WORDS=(portico product add-); COMP_CWORD=2; _portico; "
              "printf '%%s\\n' \"${COMPREPLY[@]}\"") % shlex.quote(installed)
    r = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, timeout=30,
                       env=dict(os.environ, PATH=bindir + ":" + os.environ.get("PATH", "")))
    assert r.returncode == 0 and r.stdout.decode().split() == ["add-api", "add-group"], r


def test_every_copied_path_is_installed_where_the_binary_looks(staging):
    root, dirs = staging
    copies = staged_copies()
    assert copies, "the runtime stage copies nothing from the build stage"
    for src, dest in copies:
        assert src.startswith("/staging/"), src
        image_path = src[len("/staging"):]
        # the image keeps the installed layout: the binary finds its files by the paths compiled in
        assert dest.rstrip("/") == image_path.rstrip("/"), (src, dest)
        here = os.path.join(root, to_build_path(image_path, dirs).lstrip("/"))
        assert os.path.exists(here), "%s (copied by the Dockerfile) is not installed by make install" % src
        if src.endswith("/"):
            assert os.path.isdir(here) and os.listdir(here), src
    # what the gateway needs at run time (core/base/pt_paths.c) is all copied
    need = [dirs["bindir"] + "/portico", dirs["pkglibdir"] + "/plugins", dirs["pkgdatadir"] + "/lua/prelude.lua",
            dirs["pkgdatadir"] + "/policies", dirs["pkgdatadir"] + "/portal"]
    covered = [to_build_path(s[len("/staging"):], dirs).rstrip("/") for s, _ in copies]
    for n in need:
        assert os.path.exists(os.path.join(root, n.lstrip("/"))), n
        assert any(n == c or n.startswith(c + "/") for c in covered), "the image lacks " + n
    plugins = glob.glob(os.path.join(root, dirs["pkglibdir"].lstrip("/"), "plugins", "*.so"))
    assert len(plugins) >= 5, plugins
    # the example configuration is not copied: with no file at the default
    # path, the environment alone makes a node (the container case)
    example = dirs["sysconfdir"] + "/portico/portico.yaml"
    assert os.path.exists(os.path.join(root, example.lstrip("/")))
    assert not any(example == c or example.startswith(c + "/") for c in covered), covered


def test_dockerfile_runs_what_it_copies(staging):
    root, dirs = staging
    dests = [d.rstrip("/") for _, d in staged_copies()]
    fin = dict((w, a) for w, a in final_stage() if w in ("CMD", "HEALTHCHECK", "USER", "VOLUME", "EXPOSE"))
    cmd = json_or_shell(fin["CMD"])
    assert cmd[0] in dests, cmd
    assert len(cmd) == 1, "the container case starts with no -c (environment only): %s" % cmd
    hc = fin["HEALTHCHECK"]
    assert "--timeout=" in hc and " CMD " in " " + hc
    probe = json_or_shell(hc.split(" CMD ", 1)[1] if " CMD " in hc else hc.split("CMD ", 1)[1])
    assert probe[0] in dests and probe[1] == "probe", probe
    assert probe[2].endswith(":8080" + LIVE), probe
    assert fin["USER"] not in ("root", "0")
    assert set(fin["EXPOSE"].split()) == {"8080", "8081"}
    assert json_or_shell(fin["VOLUME"]) == ["/var/lib/portico"]
    # the build stage checks its own product the same way
    runs = " ".join(a for w, a in build_stage() if w == "RUN")
    assert "make install DESTDIR=/staging" in runs
    assert re.search(r"/staging(/usr/bin/portico) -v", runs)
    # the binary the image runs (the staging copy of this build) answers -v
    exe = os.path.join(root, dirs["bindir"].lstrip("/"), "portico")
    r = subprocess.run([exe, "-v"], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(b"portico "), r


def deps_packages():
    with open(os.path.join(TOP, "scripts", "deps")) as f:
        text = f.read()
    m = re.search(r'PKGS="([^"]*)"', text)
    return set(m.group(1).split())


def test_build_stage_installs_what_scripts_deps_installs_for_building():
    deps = deps_packages()
    runs = [a for w, a in build_stage() if w == "RUN" and "apt-get install" in a]
    assert len(runs) == 1
    got = apt_packages(runs[0])
    assert got <= deps, "not in scripts/deps: %s" % (got - deps)
    building = {p for p in deps if p.endswith("-dev") or p in (
        "build-essential", "autoconf", "automake", "libtool", "pkg-config", "node-llhttp")}
    building.discard("libcmocka-dev")  # the image is configured --disable-unit-tests
    building.discard("libclang-rt-dev")  # libFuzzer for .ci/run's fuzzing pass: the image never fuzzes
    assert building <= got, "build packages of scripts/deps missing: %s" % (building - got)
    assert "--disable-unit-tests" in " ".join(a for w, a in build_stage() if w == "RUN")


def test_runtime_stage_has_every_library_the_binary_and_plugins_need(staging):
    if not all(shutil.which(x) for x in ("readelf", "dpkg", "ldconfig")):
        pytest.skip("needs readelf, dpkg and ldconfig (a Debian host)")
    root, dirs = staging
    files = [os.path.join(root, dirs["bindir"].lstrip("/"), "portico")]
    files += glob.glob(os.path.join(root, dirs["pkglibdir"].lstrip("/"), "plugins", "*.so"))
    needed = set()
    for f in files:
        out = subprocess.run(["readelf", "-d", f], capture_output=True, timeout=30).stdout.decode()
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, timeout=30).stdout.decode()
    runtime = set()
    for w, a in final_stage():
        if w == "RUN" and "apt-get install" in a:
            runtime |= apt_packages(a)
    in_base = {"libc6", "zlib1g", "libgcc-s1", "libstdc++6"}  # in debian:12-slim already
    # a build with --enable-asan links the sanitizers' runtimes; the image never is such a build
    needed = {so for so in needed if not re.match(r"lib(asan|ubsan|lsan|tsan)\.so", so)}
    for so in sorted(needed):
        m = re.search(r"^\s*%s \([^)]*x86-64[^)]*\) => (\S+)" % re.escape(so), cache, re.M) or \
            re.search(r"^\s*%s \(.*\) => (\S+)" % re.escape(so), cache, re.M)
        assert m, "%s is not in the linker cache" % so
        r = subprocess.run(["dpkg", "-S", os.path.realpath(m.group(1))], capture_output=True, timeout=30)
        if r.returncode != 0:  # a usrmerge path dpkg knows under /lib
            r = subprocess.run(["dpkg", "-S", m.group(1)], capture_output=True, timeout=30)
        assert r.returncode == 0, so
        pkg = r.stdout.decode().split(":")[0]
        assert pkg in runtime or pkg in in_base, "%s (%s) is not installed by the runtime stage" % (so, pkg)


def test_installed_layout_finds_plugins_and_lua_files(staging, backend, tmp_path):
    """The staging folder mounted at the prefix (a private mount namespace):
    the installed binary loads every plugin from pkglibdir, the Lua prelude
    and a shipped Lua policy from pkgdatadir, and serves through them."""
    root, dirs = staging
    prefix = dirs["prefix"]
    if prefix in ("/", "/usr") or not shutil.which("unshare"):
        pytest.skip("needs unshare and a prefix other than / or /usr (this build: %s)" % prefix)
    ok = subprocess.run(["unshare", "-rm", "sh", "-c", "mount --bind \"$0\" \"$1\"",
                         os.path.join(root, prefix.lstrip("/")), prefix], capture_output=True, timeout=30)
    if ok.returncode != 0:
        pytest.skip("no private mount namespace here: %s" % ok.stderr.decode().strip())
    port = free_port()
    cfg = {
        "listen": ["127.0.0.1:%d" % port], "workers": 1, "data": str(tmp_path / "data"),
        "log": {"error": str(tmp_path / "error.log"), "access": "off"},
        "apis": [{"id": "echo", "path": "echo", "serviceUrl": backend.url + "/base", "subscriptionRequired": False,
                  "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}],
                  "policies": {"inbound": ["base", {"add-greeting": {
                      "greeting": "@(context.request.headers:get('X-Name', 'world'))"}}],
                      "outbound": ["base", {"find-and-replace": {"from": "/base/", "to": "/BASE/"}}]}}],
    }
    (tmp_path / "p.yaml").write_text(to_yaml(cfg) + "\n")
    exe = prefix + "/bin/portico"
    proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", "mount --bind \"$0\" \"$1\" && exec \"$2\" -c \"$3\"",
                             os.path.join(root, prefix.lstrip("/")), prefix, exe, str(tmp_path / "p.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(tmp_path))
    try:
        def up():
            assert proc.poll() is None, proc.communicate()
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, LIVE), timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(up, timeout=15, what="the installed gateway")
        req = urllib.request.Request("http://127.0.0.1:%d/echo/x" % port, headers={"X-Name": "ann"})
        with urllib.request.urlopen(req, timeout=5) as r:
            body = json.loads(r.read())
        assert body["target"] == "/BASE/x"                  # the transform plugin's policy
        assert backend.last().header("X-Greeting") == "ann"  # the Lua policy and its expression
        log = (tmp_path / "error.log").read_text()
        plugdir = dirs["pkglibdir"] + "/plugins/"
        for so in glob.glob(os.path.join(root, plugdir.lstrip("/"), "*.so")):
            name = os.path.basename(so)[:-3]
            assert re.search(r"plugin %s \S+ loaded from %s%s\.so" % (name, re.escape(plugdir), name), log), \
                (name, log[-2000:])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]


# ---------------------------------------------------------------- .dockerignore

def _ignored(path, patterns):
    """Docker's rule, closely enough: a pattern matches the path or one of its
    parent folders; `**/` matches any depth; `!` re-includes; the last match wins."""
    parts = path.split("/")
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        hit = False
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if fnmatch.fnmatchcase(sub, p) or (p.startswith("**/") and
                                               any(fnmatch.fnmatchcase("/".join(parts[j:i]), p[3:])
                                                   for j in range(i))):
                hit = True
                break
        if hit:
            result = not neg
    return result


def test_dockerignore_keeps_every_tracked_source():
    if not os.path.isdir(os.path.join(TOP, ".git")) and not os.path.isfile(os.path.join(TOP, ".git")):
        pytest.skip("not a git checkout")
    with open(os.path.join(TOP, ".dockerignore")) as f:
        patterns = [x.strip() for x in f if x.strip() and not x.startswith("#")]
    files = subprocess.run(["git", "ls-files"], cwd=TOP, capture_output=True, timeout=60).stdout.decode().split()
    assert len(files) > 100
    dropped = [f for f in files if _ignored(f, patterns)]
    # only the manifests stay out of the build context (the image does not need them)
    assert all(f.startswith("deploy/") for f in dropped), dropped
    # and the build trees and git do stay out
    for junk in (".git/config", "build/portico", "build/core/main.o", "core/.libs/x.so", "portico"):
        assert _ignored(junk, patterns), junk


# ---------------------------------------------------------------- the manifests

def test_manifests_parse_and_agree():
    docs = manifests()
    dep, svc, sec, pdb = (one(docs, k) for k in ("Deployment", "Service", "Secret", "PodDisruptionBudget"))
    assert set(docs) == {"Deployment", "Service", "Secret", "PodDisruptionBudget", "Kustomization"}, set(docs)
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    present = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    assert set(kust["resources"]) == present
    assert len(kust["resources"]) == len(present)

    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel.items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("minAvailable", 0) >= 1 and dep["spec"]["replicas"] > pdb["spec"]["minAvailable"]

    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == 8080
    fin = dict((w, a) for w, a in final_stage() if w in ("EXPOSE", "VOLUME", "RUN", "HEALTHCHECK"))
    assert {str(v) for v in ports.values()} <= set(fin["EXPOSE"].split())
    for probe, path in (("readinessProbe", READY), ("livenessProbe", LIVE)):
        g = c[probe]["httpGet"]
        assert g["path"] == path, probe
        assert g["port"] in ports or g["port"] in ports.values(), probe
        assert c[probe]["timeoutSeconds"] <= 3  # the probe's own deadline (portico probe: 3 s)
    assert LIVE in fin["HEALTHCHECK"]  # the image checks the same path as the liveness probe
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in ports or p["targetPort"] in ports.values(), p

    env = {e["name"]: e for e in c["env"]}
    assert "value" in env["PORTICO_CONTROL_PLANE_URL"]
    # the token: the Secret mounted as a file the node re-reads (rotation without a restart), never an
    # environment value (fixed for the pod's life)
    assert "PORTICO_GATEWAY_TOKEN" not in env
    token_file = env["PORTICO_GATEWAY_TOKEN_FILE"]["value"]
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    tmounts = [m for m in c["volumeMounts"] if token_file.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(tmounts) == 1, tmounts
    tm = tmounts[0]
    assert tm.get("readOnly") is True and "subPath" not in tm  # a subPath mount is never updated
    sv = vols[tm["name"]]["secret"]
    assert sv["secretName"] == sec["metadata"]["name"]
    rel = token_file[len(tm["mountPath"].rstrip("/")) + 1:]
    items = {i["path"]: i["key"] for i in sv.get("items") or []}
    key = items.get(rel, rel if not sv.get("items") else None)
    keys = set((sec.get("stringData") or {}).keys()) | set((sec.get("data") or {}).keys())
    assert key in keys, (key, keys)
    token = (sec.get("stringData") or {}).get(key, "")
    assert token.startswith("GatewayKey ") and token.count("&") == 2

    # the data volume is the image's VOLUME, writable by the image's user
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    (vol,) = json_or_shell(fin["VOLUME"])
    assert vol in mounts and mounts[vol] in {v["name"] for v in pod["spec"]["volumes"]}
    uid = re.search(r"useradd [^&]*--uid (\d+)", " ".join(a for w, a in final_stage() if w == "RUN")).group(1)
    sc = pod["spec"]["securityContext"]
    assert sc["runAsNonRoot"] is True and str(sc["runAsUser"]) == uid and str(sc["fsGroup"]) == uid
    assert c["securityContext"]["allowPrivilegeEscalation"] is False

    # stopping: preStop, then SIGTERM's drain (timeouts.shutdown), all inside the grace period
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "/bin/sleep"
    ref_text = subprocess.run([BIN, "-K"], capture_output=True, timeout=30).stdout.decode()
    m = re.search(r"\| `timeouts\.shutdown` \|[^|]*\| `(\d+)s` \|", ref_text)
    assert m, "timeouts.shutdown's default not found in portico -K"
    drain = int(m.group(1))
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace >= int(pre[1]) + drain + 5, (grace, pre, drain)

    res = c["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    with open(os.path.join(TOP, "deploy", "README.md")) as f:
        readme = f.read()
    assert "bench/run" in readme and res["requests"]["cpu"] in readme and res["requests"]["memory"] in readme
    assert "not built anywhere" in readme


def test_manifest_checks_catch_a_mismatch(tmp_path, monkeypatch):
    """The agreement check is not vacuous: a Deployment naming another Secret fails it."""
    bad = tmp_path / "k8s"
    shutil.copytree(K8S, bad)
    K8S_REAL = K8S
    p = bad / "deployment.yaml"
    p.write_text(p.read_text().replace("secretName: portico-gateway-token", "secretName: portico-other-token"))
    monkeypatch.setattr(sys.modules[__name__], "K8S", str(bad))
    with pytest.raises(AssertionError):
        test_manifests_parse_and_agree()
    p.write_text((tmp_path / "k8s" / "deployment.yaml").read_text().replace(
        "secretName: portico-other-token", "secretName: portico-gateway-token").replace(READY, LIVE + "x"))
    with pytest.raises(AssertionError):
        test_manifests_parse_and_agree()
    # the token's file named by the environment must be the mounted Secret's
    with open(os.path.join(K8S_REAL, "deployment.yaml")) as f:
        p.write_text(f.read().replace("value: /var/run/secrets/portico/token",
                                      "value: /var/run/secrets/portico/other"))
    with pytest.raises(AssertionError):
        test_manifests_parse_and_agree()
    with open(os.path.join(K8S_REAL, "deployment.yaml")) as f:  # the copy as it is: it passes
        p.write_text(f.read())
    test_manifests_parse_and_agree()


# ---------------------------------------------------------------- the container case

DRIVER = r'''
import http.server, json, os, subprocess, sys, threading, time, urllib.request, urllib.error
exe, token = sys.argv[1], sys.argv[2]
doc = json.dumps({"gateway": "gw1", "generation": 1, "entities": {"apis": [{
    "id": "echo", "path": "echo", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": False,
    "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}]}]}}).encode()
hold = threading.Event()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        if hold.is_set() or self.headers.get("If-None-Match", "").strip('"') == "1":
            time.sleep(0.5)
            self.send_response(304); self.send_header("ETag", '"1"'); self.end_headers(); return
        self.send_response(200); self.send_header("ETag", '"1"')
        self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(doc)))
        self.end_headers(); self.wfile.write(doc)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        b = b'{"generation": 1}'
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
hold.set()  # no configuration at first: the node is live, not ready
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
tf = os.path.abspath("token")  # as the manifests give it: the Secret mounted as a file (a newline ending it)
with open(tf, "w") as f:
    f.write(token + "\n")
env = dict(os.environ, PORTICO_CONTROL_PLANE_URL="http://127.0.0.1:%d" % srv.server_address[1],
           PORTICO_GATEWAY_TOKEN_FILE=tf)
env.pop("PORTICO_CONTROL_PLANE_CA_FILE", None)
env.pop("PORTICO_GATEWAY_TOKEN", None)
p = subprocess.Popen([exe], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # the image's CMD
out = {}
def probe(*a):
    return subprocess.run([exe, "probe"] + list(a), capture_output=True, timeout=10)
def until(f, t=15):
    end = time.time() + t
    while time.time() < end:
        if f():
            return True
        time.sleep(0.1)
    return False
out["live"] = until(lambda: probe().returncode == 0)  # the HEALTHCHECK, as the image runs it
r = probe("http://127.0.0.1:8080/internal-status-0123456789abcdef")
out["not_ready"] = [r.returncode, r.stderr.decode().strip()]
hold.clear()
out["ready"] = until(lambda: probe("http://127.0.0.1:8080/internal-status-0123456789abcdef").returncode == 0)
try:
    urllib.request.urlopen("http://127.0.0.1:8080/echo/x", timeout=5)
except urllib.error.HTTPError as e:
    out["api"] = [e.code, json.loads(e.read())]
p.send_signal(15)  # SIGTERM: drain and stop
try:
    out["rc"] = p.wait(timeout=40)
except subprocess.TimeoutExpired:
    p.kill(); p.wait(); out["rc"] = "timeout"
out["stderr"] = p.stderr.read().decode(errors="replace")[-3000:]
out["stdout_lines"] = len(p.stdout.read().splitlines())
print(json.dumps(out))
'''


def test_container_case_env_only_node_from_the_installed_layout(staging, tmp_path):
    """What the image's CMD and HEALTHCHECK do, without Docker: in a private
    mount and network namespace (its own loopback, so port 8080 is free), the
    installed layout at the prefix with no file at the default path, only the
    environment: the node listens on 8080, `portico probe` passes while it
    waits for a configuration and its readiness fails with the 503; once the
    control plane answers it is ready and serves the document's API; SIGTERM
    ends it with 0."""
    root, dirs = staging
    prefix = dirs["prefix"]
    if prefix in ("/", "/usr") or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs unshare, ip and a prefix other than / or /usr (this build: %s)" % prefix)
    probe_cfg = tmp_path / "n.yaml"
    probe_cfg.write_text("listen: [\"127.0.0.1:1\"]\ncontrolPlane: {url: \"http://127.0.0.1:1\", token: \"x\"}\n")
    r = subprocess.run([BIN, "-t", "-c", str(probe_cfg)], capture_output=True, timeout=30)
    if b"unknown key 'controlPlane'" in r.stdout + r.stderr:
        pytest.skip("this build has no gateway-node mode (controlPlane) yet")
    conf_dir = dirs["sysconfdir"] + "/portico"
    assert conf_dir.startswith(prefix + "/"), "the example configuration is hidden below the prefix only"
    (tmp_path / "driver.py").write_text(DRIVER)
    exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=10)).strftime("%Y%m%d%H%M")
    token = "GatewayKey gw1&%s&%s" % (exp, "A" * 86 + "==")  # the form of a real one (64 bytes in base64)
    script = ("ip link set lo up && mount --bind \"$0\" \"$1\" && mount -t tmpfs none \"$2\" && "
              "exec python3 \"$3\" \"$4\" \"$5\"")
    r = subprocess.run(["unshare", "-rmn", "sh", "-c", script, os.path.join(root, prefix.lstrip("/")), prefix,
                        conf_dir, str(tmp_path / "driver.py"), prefix + "/bin/portico", token],
                       capture_output=True, timeout=120, cwd=str(tmp_path))
    if r.returncode != 0 and b"Operation not permitted" in r.stderr and not r.stdout:
        pytest.skip("no private namespaces here: %s" % r.stderr.decode().strip())
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert out["live"] is True, out
    assert out["not_ready"][0] == 1 and "status 503: The gateway has no configuration yet" in out["not_ready"][1], out
    assert out["ready"] is True, out["stderr"]
    assert out["api"][0] in (500, 502, 503), out  # the document's API, its backend down
    assert out["rc"] == 0, out
    assert "0.0.0.0:8080" in out["stderr"], out["stderr"]  # the built-in listener
