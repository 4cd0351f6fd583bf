"""The README's walkthrough (the block after "With the demo running") is run
as written against the demo: a copy of conf/portico.yaml in a folder of its
own (its own ports and store, so a new store with its samples) and the demo
backend conf/demo-backend.py on a free port, with the ports of the commands
rewritten to match.  Every command must match exactly one rule below, which
checks what the command is documented to show; a command no rule knows fails
the test, and the one command that cannot run here (xdg-open) is skipped by
its own rule, which checks the page it would open instead."""

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request

import pytest

from conftest import BIN, SANITIZER_MARKS, free_port, wait_for

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO_PORTS = {"gateway": 8080, "management": 8001, "portal": 8002, "backend": 9001}
HEX_KEY = re.compile(r"\b[0-9a-f]{32}\b")


def walkthrough():
    """The commands of the README's walkthrough block, one a line."""
    with open(os.path.join(TOP, "README.md")) as f:
        text = f.read()
    at = text.index("With the demo running")
    block = re.search(r"```sh\n(.*?)```", text[at:], re.S)
    assert block, "the README has no sh block after 'With the demo running'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def demo_token():
    """The management token scripts/demo gives Portico by default."""
    with open(os.path.join(TOP, "scripts", "demo")) as f:
        m = re.search(r'PORTICO_ADMIN_TOKEN="\$\{PORTICO_ADMIN_TOKEN:-([^}]+)\}"', f.read())
    assert m, "scripts/demo no longer sets a default PORTICO_ADMIN_TOKEN"
    return m.group(1)


class Demo:
    """conf/portico.yaml and conf/demo-backend.py, started on free ports in `folder`."""

    def __init__(self, folder):
        self.folder = folder
        self.ports = {name: free_port() for name in DEMO_PORTS}
        with open(os.path.join(TOP, "conf", "portico.yaml")) as f:
            config = self.rewrite(f.read())
        assert config.count("127.0.0.1:%d" % self.ports["backend"]) >= 1, "the demo's backend URL moved"
        with open(os.path.join(folder, "portico.yaml"), "w") as f:
            f.write(config)
        os.symlink(BIN, os.path.join(folder, "portico"))  # as scripts/demo links ./portico
        self.procs = []
        self.log = None
        self.record = os.path.join(folder, "backend-received.jsonl")

    def rewrite(self, text):
        for name, port in DEMO_PORTS.items():
            for host in ("127.0.0.1", "localhost"):
                text = text.replace("%s:%d" % (host, port), "127.0.0.1:%d" % self.ports[name])
        return text

    def rewrite_command(self, line):
        """A README command on this demo's ports; one that would still reach a demo on the machine
        (a demo port, or localhost) fails the test."""
        line = self.rewrite(line)
        assert "localhost" not in line, line
        for port in DEMO_PORTS.values():
            assert not re.search(r":%d\b" % port, line), "a demo port is left in %r" % line
        return line

    def received(self):
        """What the demo backend received so far: (method, path) pairs in order."""
        if not os.path.exists(self.record):
            return []
        with open(self.record) as f:
            return [(r["method"], r["path"]) for r in map(json.loads, f.read().splitlines())]

    def start(self):
        self.log = open(os.path.join(self.folder, "portico.log"), "wb")
        self.procs.append(subprocess.Popen(
            [sys.executable, os.path.join(TOP, "conf", "demo-backend.py"), "127.0.0.1",
             str(self.ports["backend"]), self.record], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        env = dict(os.environ, PORTICO_ADMIN_TOKEN=demo_token())
        self.portico = subprocess.Popen([BIN, "-c", "portico.yaml"], cwd=self.folder, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.procs.append(self.portico)
        for name in DEMO_PORTS:
            wait_for(lambda: self.running() and self.listening(self.ports[name]), timeout=15,
                     what="the demo's %s on port %d" % (name, self.ports[name]))

    def running(self):
        assert self.portico.poll() is None, "portico exited: " + self.log_text()[-3000:]
        return True

    @staticmethod
    def listening(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def log_text(self):
        with open(os.path.join(self.folder, "portico.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        """Stops what start() started, by PID (twice is harmless)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.log and not self.log.closed:
            self.log.close()

    def sh(self, script, env_extra=None):
        """Runs `script` with sh in the demo's folder, as a user at the checkout's top would."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTICO_")}
        env["PORTICO_URL"] = "http://127.0.0.1:%d" % self.ports["management"]  # the CLI's default, moved:
        # test_the_cli_default_is_the_demos_management_port checks that the default is the demo's
        env.update(env_extra or {})
        r = subprocess.run(["sh", "-c", script], cwd=self.folder, env=env, capture_output=True, timeout=60)
        out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        assert not any(mark in out + err for mark in SANITIZER_MARKS), err[-4000:]
        return r.returncode, out, err

    def mgmt(self, method, path):
        req = urllib.request.Request("http://127.0.0.1:%d/management/%s" % (self.ports["management"], path),
                                     method=method, data=b"" if method == "POST" else None,
                                     headers={"Authorization": "Bearer " + demo_token()})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())


# ---------------------------------------------------------------- the rules

def http_status(out):
    """The status of `curl -i` output (its first line)."""
    m = re.match(r"HTTP/1\.1 (\d{3}) ", out)
    assert m, out[:300]
    return int(m.group(1))


def http_body(out):
    return out.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in out else ""


def call_codes(out):
    """{call number: status} from the loops' `call N: CODE` lines."""
    return {int(n): int(c) for n, c in re.findall(r"^call (\d+): (\d{3})$", out, re.M)}


def check_no_key(ctx, rc, out, err):
    assert rc == 0 and http_status(out) == 401, out
    assert "missing subscription key" in http_body(out), out
    assert ctx["arrived"] == [], ctx["arrived"]


def check_export(ctx, rc, out, err):
    assert rc == 0
    assert ctx["line"].split("=", 1)[1].split()[0] == demo_token(), "the README exports another token"


def check_products(ctx, rc, out, err):
    assert rc == 0, err
    assert "starter" in out and "unlimited" in out and "Starter" in out, out


def check_subscriptions(ctx, rc, out, err):
    assert rc == 0, err
    assert "admin-starter" in out and "admin-unlimited" in out, out
    code, text, problem = ctx["demo"].sh(ctx["state"] + ctx["line"].split("#")[0].strip() + " -o json\n")
    assert code == 0, problem
    listed = json.loads(text)
    listed = listed["value"] if isinstance(listed, dict) else listed
    states = {s["id"]: s["state"] for s in listed}
    assert states == {"admin-starter": "active", "admin-unlimited": "active"}, states


def check_keys_shown(ctx, rc, out, err):
    assert rc == 0, err
    keys = ctx["demo"].mgmt("POST", "subscriptions/admin-starter/listSecrets")
    assert keys["primaryKey"] in out and keys["secondaryKey"] in out, out


def check_key_taken(ctx, rc, out, err):
    sub = re.search(r"subscription keys (\S+)", ctx["line"]).group(1)
    rc, out, err = ctx["demo"].sh(ctx["state"] + 'printf "%s\\n" "$KEY"\n')
    assert rc == 0, err
    assert out.strip() == ctx["demo"].mgmt("POST", "subscriptions/%s/listSecrets" % sub)["primaryKey"], out
    ctx["key_of"] = sub


def check_keyed_call(ctx, rc, out, err):
    assert rc == 0 and http_status(out) == 200, out
    seen = json.loads(http_body(out))  # the demo backend answers with what it received
    assert seen["method"] == "GET" and seen["path"] == "/items/42", seen
    assert ctx["arrived"] == [("GET", "/items/42")], ctx["arrived"]
    assert ctx["key_of"] == "admin-starter"
    ctx["starter_calls"] = 1


def check_loop(ctx, rc, out, err):
    assert rc == 0, err
    codes = call_codes(out)
    listed = [int(n) for n in re.search(r"for i in ([\d ]+);", ctx["line"]).group(1).split()]
    assert sorted(codes) == listed, out
    if ctx["key_of"] == "admin-starter":
        # Starter: 5 calls in 60 s; the keyed call above was the first
        want = {n: 200 if n <= 5 else 429 for n in listed}
        assert 6 in listed, "the walkthrough no longer reaches Starter's 6th call"
    else:
        want = {n: 200 for n in listed}
    assert codes == want, (ctx["key_of"], codes)
    # the refused calls (429) never reached the backend: only the accepted ones did
    accepted = sum(1 for c in codes.values() if c == 200)
    assert ctx["arrived"] == [("GET", "/items/42")] * accepted, ctx["arrived"]


def check_not_found(ctx, rc, out, err):
    assert rc == 0 and http_status(out) == 404, out
    assert ctx["arrived"] == [], ctx["arrived"]
    body = json.loads(http_body(out))
    assert body == {"statusCode": 404, "message": "Resource not found"}, body


def check_apis(ctx, rc, out, err):
    assert rc == 0, err
    assert "echo-api" in out, out


def check_metrics(ctx, rc, out, err):
    assert rc == 0, err
    assert "# HELP" in out or "# TYPE" in out, out


def check_report(ctx, rc, out, err):
    # usage is written every second: the report lists the Echo API's calls once they are
    def listed():
        code, text, problem = ctx["demo"].sh(ctx["state"] + ctx["line"] + "\n")
        assert code == 0, problem
        return "echo-api" in text
    wait_for(listed, timeout=15, what="the report to list echo-api", step=0.25)


def skip_browser(ctx, rc, out, err):
    """Not run (it opens a browser): the page it would open is fetched instead."""
    url = re.search(r"(https?://\S+)", ctx["line"]).group(1)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and b"<html" in r.read().lower()


# (name, pattern on the command, check, run the command?)
RULES = [
    ("call without a key", r"^curl -i http://\S+/echo/items/42\s", check_no_key, True),
    ("the management token", r"^export PORTICO_ADMIN_TOKEN=", check_export, True),
    ("the products", r"^\./portico product list\s", check_products, True),
    ("the subscriptions", r"^\./portico subscription list\s", check_subscriptions, True),
    ("the Starter keys", r"^\./portico subscription keys admin-starter\s", check_keys_shown, True),
    ("a key into $KEY", r"^KEY=\$\(\./portico subscription keys \S+ ", check_key_taken, True),
    ("a call with the key", r'^curl -i -H "Ocp-Apim-Subscription-Key: \$KEY" http://\S+/echo/items/42\s',
     check_keyed_call, True),
    ("calls in a loop", r"^for i in [\d ]+; do curl .*\$KEY.*; done", check_loop, True),
    ("no such API", r"^curl -i http://\S+/nowhere\s", check_not_found, True),
    ("the APIs", r"^\./portico api list\s", check_apis, True),
    ("Prometheus", r"^curl -s -H \"Authorization: Bearer \$PORTICO_ADMIN_TOKEN\" http://\S+/metrics", check_metrics,
     True),
    ("the usage report", r"^\./portico report by-api ", check_report, True),
    ("the portal in a browser", r"^xdg-open ", skip_browser, False),
]

# a pure assignment (what later commands use: $KEY, the token), with nothing run after it
STATE = re.compile(r"^(export\s+)?[A-Za-z_][A-Za-z0-9_]*=(\$\(.*\)|\"[^\"]*\"|[^\s\"'`;|&$()]*)\s*(#.*)?$")


@pytest.fixture
def demo(tmp_path):
    d = Demo(str(tmp_path))
    try:
        d.start()
        yield d
    finally:
        d.stop()


def test_every_command_has_a_rule():
    for line in walkthrough():
        hits = [name for name, pattern, _, _ in RULES if re.search(pattern, line)]
        assert len(hits) == 1, "README command %r matches %s" % (line, hits or "no rule")


def test_state_is_only_pure_assignments():
    assert STATE.match("export PORTICO_ADMIN_TOKEN=demo-admin-token       # the token")
    assert STATE.match("KEY=$(./portico subscription keys x -o json | sed -n 's/a/b/p')")
    assert not STATE.match("FOO=x curl -i http://127.0.0.1:8080/echo")
    assert not STATE.match("KEY=1; curl -i http://127.0.0.1:8080/echo")


def test_the_cli_default_is_the_demos_management_port():
    r = subprocess.run([BIN, "help"], capture_output=True, timeout=30)
    m = re.search(r"else http://127\.0\.0\.1:(\d+)", (r.stdout + r.stderr).decode(errors="replace"))
    assert m and int(m.group(1)) == DEMO_PORTS["management"], (r.stdout + r.stderr)[-2000:]


def test_commands_are_moved_off_the_demos_ports(tmp_path):
    d = Demo(str(tmp_path))
    assert d.rewrite_command("curl http://localhost:8080/echo") == \
        "curl http://127.0.0.1:%d/echo" % d.ports["gateway"]
    for left in ("curl http://localhost/echo", "curl http://10.0.0.1:8080/echo"):
        with pytest.raises(AssertionError):
            d.rewrite_command(left)


def test_the_readme_walkthrough(demo):
    assert os.path.exists(os.path.join(demo.folder, "var", "portico.db"))
    ctx = {"demo": demo, "state": "", "key_of": None}
    used = set()
    for line in walkthrough():
        line = demo.rewrite_command(line)
        (name, _, check, run), = [r for r in RULES if re.search(r[1], line)]
        used.add(name)
        ctx["line"] = line
        before = len(demo.received())
        rc, out, err = demo.sh(ctx["state"] + line + "\n") if run else (None, "", "")
        ctx["arrived"] = demo.received()[before:]  # what this command made reach the backend
        if STATE.match(line):  # what later commands use ($KEY, the token)
            ctx["state"] += line + "\n"
        try:
            check(ctx, rc, out, err)
        except AssertionError as e:
            raise AssertionError("README command %r (%s): %s" % (line, name, e)) from None
    assert used == {r[0] for r in RULES}, "rules no README command uses: %s" % ({r[0] for r in RULES} - used)
    assert "store: new, so it starts with the samples" in demo.log_text()
    demo.stop()
    assert demo.portico.returncode == 0, demo.log_text()[-3000:]  # SIGTERM: a clean stop
    assert not any(mark in demo.log_text() for mark in SANITIZER_MARKS), demo.log_text()[-4000:]

