"""Policy plugins: the out-of-tree example (docs/plugin-example) built against
the installed SDK header alone, and the loader's refusals.

The SDK header is installed into a temporary prefix with automake's
install-portico_includeHEADERS target; every plugin here is compiled with
only that include directory, as a third party would.  Plugins go into a
temporary pluginDir (which replaces the build tree's plugins/)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BIN, basic_config, free_port, to_yaml

# how a statement of an API is named before the message: "api 'echo' › inbound[0] delay ms: "
WORDS = r"api '[^']*' \u203a inbound\[\d+\](?: [^:\n]*)?: "

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
EXAMPLE_DIR = os.path.join(TOP, "docs", "plugin-example")
# the build tree (where `make` works): the binary's directory, else the source tree
BUILD = os.path.dirname(os.path.abspath(BIN))
if not os.path.exists(os.path.join(BUILD, "Makefile")):
    BUILD = TOP
CC = os.environ.get("CC", "cc")


# ------------------------------------------------------------------ helpers

@pytest.fixture(scope="module")
def sdk_include():
    """The include directory of a `make install` of the SDK header into a temporary prefix."""
    root = tempfile.mkdtemp(prefix="portico-sdk-")
    try:
        r = subprocess.run(["make", "-C", BUILD, "install-portico_includeHEADERS", "DESTDIR=" + root],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        found = [os.path.join(d, "plugin.h") for d, _, files in os.walk(root)
                 if "plugin.h" in files and os.path.basename(d) == "portico"]
        assert len(found) == 1, found
        inc = os.path.dirname(os.path.dirname(found[0]))
        assert inc.startswith(root)
        yield inc
    finally:
        shutil.rmtree(root, ignore_errors=True)


def compile_plugin(include, source_file, out, extra=()):
    """cc -shared -fPIC with the installed SDK as the only include directory."""
    cmd = [CC, "-shared", "-fPIC", "-fvisibility=hidden", "-I" + include, "-o", out, source_file] + list(extra)
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, " ".join(cmd) + "\n" + r.stderr
    return out


def compile_source(include, text, out):
    src = out[:-3] + ".c"
    with open(src, "w") as f:
        f.write(text)
    try:
        return compile_plugin(include, src, out, extra=["-w"])
    finally:
        os.unlink(src)


@pytest.fixture
def plugin_dir(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    return str(d)


@pytest.fixture
def example_so(sdk_include, plugin_dir):
    """example.so compiled into the test's pluginDir."""
    return compile_plugin(sdk_include, os.path.join(EXAMPLE_DIR, "example.c"),
                          os.path.join(plugin_dir, "example.so"), extra=["-O2", "-Wall", "-Wextra", "-Werror"])


def check_config(cfg, workdir):
    """Runs `portico -t` on cfg (a dict or YAML text); returns (rc, stdout + stderr, path)."""
    path = os.path.join(workdir, "check-%d.yaml" % time.monotonic_ns())
    with open(path, "w") as f:
        f.write(cfg if isinstance(cfg, str) else to_yaml(cfg) + "\n")
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out
    return r.returncode, out, path


def plugin_config(backend_url, plugin_dir, inbound=None, outbound=None, **extra):
    cfg = basic_config(backend_url, pluginDir=plugin_dir, **extra)
    pol = {}
    if inbound:
        pol["inbound"] = inbound
    if outbound:
        pol["outbound"] = outbound
    if pol:
        cfg["apis"][0]["policies"] = pol
    return cfg


def echoed(body):
    return json.loads(body)


# -------------------------------------------------------- the example plugin

def test_sdk_header_is_self_contained(sdk_include, tmp_path):
    """The installed header compiles on its own, in C and as C++."""
    src = tmp_path / "h.c"
    src.write_text("#include <portico/plugin.h>\nint x = PT_ABI_MAJOR;\n")
    r = subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", "-I" + sdk_include,
                        "-o", str(tmp_path / "h.o"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_example_makefile_builds_against_installed_header(sdk_include, tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    for f in ("example.c", "Makefile"):
        shutil.copy(os.path.join(EXAMPLE_DIR, f), str(build / f))
    r = subprocess.run(["make", "-C", str(build), "PORTICO_INCLUDE=" + sdk_include], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "-I" + sdk_include in r.stdout
    assert "-I" + TOP not in r.stdout and "-I" + BUILD not in r.stdout
    assert (build / "example.so").exists()
    if shutil.which("nm"):
        out = subprocess.run(["nm", "-D", "--defined-only", str(build / "example.so")],
                             capture_output=True, text=True).stdout
        exported = {line.split()[-1] for line in out.splitlines() if line.split()[1:2] != ["A"]}
        assert exported == {"portico_plugin"}, exported


def test_example_policies_are_documented_by_schema(example_so, plugin_dir, backend, workdir):
    path = os.path.join(workdir, "p.yaml")
    with open(path, "w") as f:
        f.write(to_yaml(plugin_config(backend.url, plugin_dir)) + "\n")
    r = subprocess.run([BIN, "-P", "-c", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "## delay" in r.stdout and "## stamp" in r.stdout
    assert "| `ms` | integer (0–60000) | required |" in r.stdout
    assert "| `value` | string | required, expression |" in r.stdout
    assert "%s: plugin refused" % example_so not in r.stderr


def test_stamp_inbound_reaches_backend(example_so, plugin_dir, backend, portico):
    p = portico(plugin_config(backend.url, plugin_dir, inbound=[
        {"stamp": {"value": "@(context.request.method .. '-' .. context.request.headers:get('X-In'))"}},
        {"stamp": {"header": "X-Literal", "value": "plain text", "id": "lit"}},
    ]))
    status, headers, body = p.request("PUT", "/echo/items/1", body=b"x", headers={"X-In": "hello"})
    assert status == 200, body
    req = backend.last()
    assert req.header_all("X-Stamp") == ["PUT-hello"]
    assert req.header_all("X-Literal") == ["plain text"]
    assert "x-stamp" not in headers  # inbound stamps the request only


def test_stamp_outbound_reaches_client(example_so, plugin_dir, backend, portico):
    p = portico(plugin_config(backend.url, plugin_dir, outbound=[
        {"stamp": {"header": "X-Out", "value": "@('status ' .. context.response.statusCode)"}},
        {"stamp": {"value": "out"}},
    ]))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 200, body
    assert headers.get("x-out") == "status 200"
    assert headers.get("x-stamp") == "out"
    assert backend.last().header("X-Stamp") is None
    assert echoed(body)["target"] == "/base/items/1"


def test_stamp_expression_reading_bodies(example_so, plugin_dir, backend, portico):
    """eval() answers PT_AGAIN when the expression needs a body not read yet; stamp returns it and runs
    again once the body is in memory.  With preserveContent the bodies still reach the backend and
    the client (without it, reading a body consumes it, as in APIM)."""
    keep = "{preserveContent = true}"
    p = portico(plugin_config(backend.url, plugin_dir, inbound=[
        {"stamp": {"header": "X-Req-Body", "value": "@(context.request.body:asString(%s))" % keep}}], outbound=[
        {"stamp": {"header": "X-Resp-Len", "value": "@(tostring(#context.response.body:asString(%s)))" % keep}}]))
    status, headers, body = p.request("POST", "/echo/items", body=b"hello body")
    assert status == 200, body
    assert backend.last().header("X-Req-Body") == "hello body"
    assert backend.last().body == b"hello body"
    assert headers.get("x-resp-len") == str(len(body))
    assert echoed(body)["body"] == "aGVsbG8gYm9keQ=="  # base64 of the body the backend got


def test_stamp_overrides_existing_header(example_so, plugin_dir, backend, portico):
    p = portico(plugin_config(backend.url, plugin_dir, inbound=[{"stamp": {"header": "X-In", "value": "new"}}]))
    status, _, _ = p.request("GET", "/echo/items/1", headers={"X-In": "old"})
    assert status == 200
    assert backend.last().header_all("X-In") == ["new"]


STAMP_ON_ERROR = {"on-error": [{"return-response": {
    "set-status": {"code": 500, "reason": "Stamped"},
    "set-header": [{"name": "X-Reason", "value": "@(context.lastError.reason)"},
                   {"name": "X-Policy-Id", "value": "@(context.lastError.policyId)"},
                   {"name": "X-Source", "value": "@(context.lastError.source)"}],
    "set-body": "@(context.lastError.message)"}}]}


def stamp_error_config(backend_url, plugin_dir, stmt):
    cfg = plugin_config(backend_url, plugin_dir, inbound=[stmt])
    cfg["policies"] = STAMP_ON_ERROR
    return cfg


@pytest.mark.parametrize("stmt,reason", [
    ({"stamp": {"id": "crlf", "value": "@('a\\r\\nInjected: yes')"}}, "InvalidHeaderValue"),
    ({"stamp": {"id": "managed", "header": "Content-Length", "value": "5"}}, "ProtectedHeader"),
    ({"stamp": {"id": "boom", "value": "@(error('boom'))"}}, "ExpressionValueEvaluationFailure"),
], ids=["crlf-value", "managed-header", "failing-expression"])
def test_stamp_errors_go_to_on_error_with_policy_id(example_so, plugin_dir, backend, portico, stmt, reason):
    """The core validates what a plugin sets; the failing statement's id reaches context.lastError."""
    p = portico(stamp_error_config(backend.url, plugin_dir, stmt))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert status == 500, body
    assert headers.get("x-reason") == reason
    assert headers.get("x-policy-id") == stmt["stamp"]["id"]
    assert "injected" not in headers
    assert len(backend.requests) == 0


def test_stamp_header_error_source_is_the_policy(example_so, plugin_dir, backend, portico):
    p = portico(stamp_error_config(backend.url, plugin_dir,
                                   {"stamp": {"id": "crlf", "value": "@('a\\r\\nb')"}}))
    status, headers, _ = p.request("GET", "/echo/items/1")
    assert status == 500
    assert headers.get("x-source") == "stamp"


@pytest.mark.parametrize("stmt,section,message", [
    ({"stamp": {"header": "Bad Name", "value": "x"}}, "inbound", "stamp: 'header': 'Bad Name' is not a valid header name"),
    ({"stamp": {"header": "X-A"}}, "inbound", "'stamp' needs the attribute 'value'"),
    ({"stamp": {"value": "x", "colour": "red"}}, "inbound", "'stamp' has no attribute 'colour'"),
    ({"stamp": {"value": "x"}}, "backend", "policy 'stamp' is not allowed in the backend section"),
    ({"delay": {"ms": 60001}}, "inbound", "'ms' must be between 0 and 60000"),
    ({"delay": {"ms": "soon"}}, "inbound", "'ms' expects an integer"),
    ({"delay": {}}, "inbound", "'delay' needs the attribute 'ms'"),
    ({"delay": {"ms": "@(5)"}}, "inbound", "'ms' does not accept an expression"),
], ids=["bad-header-name", "missing-value", "unknown-attribute", "wrong-section", "ms-range", "ms-type",
        "ms-missing", "ms-expression"])
def test_example_configuration_errors(example_so, plugin_dir, backend, workdir, stmt, section, message):
    cfg = basic_config(backend.url, pluginDir=plugin_dir)
    cfg["apis"][0]["policies"] = {section: [stmt]}
    rc, out, path = check_config(cfg, workdir)
    assert rc == 1, out
    assert re.search(re.escape(path) + r":\d+:\d+: .*" + re.escape(message), out), out


def test_delay_ms_from_named_value_is_checked_after_substitution(example_so, plugin_dir, backend, workdir):
    cfg = basic_config(backend.url, pluginDir=plugin_dir, namedValues=[{"id": "wait", "value": "70000"}])
    cfg["apis"][0]["policies"] = {"inbound": [{"delay": {"ms": "{{wait}}"}}]}
    rc, out, path = check_config(cfg, workdir)
    assert rc == 1, out
    # the schema's bounds are checked on the substituted text, once, at the attribute
    assert re.search(re.escape(path) + r":\d+:\d+: " + WORDS + r"'ms' must be between 0 and 60000 \(after named values: '70000'\)",
                     out), out
    assert "2 errors" not in out, out


def delay_config(backend_url, plugin_dir, ms=500):
    cfg = plugin_config(backend_url, plugin_dir)
    cfg["workers"] = 1
    cfg["apis"][0]["operations"].insert(0, {
        "id": "slow", "method": "GET", "urlTemplate": "/slow",
        "policies": {"inbound": [{"delay": {"ms": ms}}, {"stamp": {"header": "X-After", "value": "delayed"}}]}})
    return cfg


def test_delay_does_not_block_the_worker(example_so, plugin_dir, backend, portico):
    p = portico(delay_config(backend.url, plugin_dir, ms=500))
    p.request("GET", "/echo/items/0")  # warm the backend pool
    slow = {}

    def slow_request():
        t0 = time.monotonic()
        slow["result"] = p.request("GET", "/echo/slow")
        slow["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.1)  # the slow request is suspended in its delay by now
    fast = []
    for _ in range(3):
        t0 = time.monotonic()
        status, _, _ = p.request("GET", "/echo/items/1")
        fast.append((status, time.monotonic() - t0))
    t.join(5)
    assert not t.is_alive()
    assert all(s == 200 and e < 0.3 for s, e in fast), fast
    status, _, body = slow["result"]
    assert status == 200, body
    assert slow["elapsed"] >= 0.45, slow["elapsed"]
    # the statement after the delay ran once the pipeline resumed
    slow_req = [r for r in backend.requests if r.target == "/base/slow"]
    assert len(slow_req) == 1 and slow_req[0].header("X-After") == "delayed"


def test_delay_in_every_section(example_so, plugin_dir, backend, portico):
    cfg = plugin_config(backend.url, plugin_dir)
    cfg["apis"][0]["policies"] = {
        "inbound": [{"delay": {"ms": 50}}],
        "backend": [{"delay": {"ms": 50}}, {"forward-request": {}}],
        "outbound": [{"delay": {"ms": 50}}, {"stamp": {"header": "X-Done", "value": "yes"}}],
    }
    p = portico(cfg)
    t0 = time.monotonic()
    status, headers, body = p.request("GET", "/echo/items/1")
    elapsed = time.monotonic() - t0
    assert status == 200, body
    assert headers.get("x-done") == "yes"
    assert elapsed >= 0.14, elapsed
    # on-error too: a delay there still ends in the error response
    cfg["apis"][0]["policies"] = {"inbound": [{"stamp": {"value": "@(error('x'))"}}],
                                  "on-error": [{"delay": {"ms": 50}}, {"return-response": {
                                      "set-status": {"code": 502, "reason": "Late"},
                                      "set-header": {"name": "X-E", "value": "e"}}}]}
    assert p.reload(cfg)
    t0 = time.monotonic()
    status, headers, _ = p.request("GET", "/echo/items/1")
    assert status == 502
    assert headers.get("x-e") == "e"
    assert time.monotonic() - t0 >= 0.045


def test_delay_zero_and_many_concurrent(example_so, plugin_dir, backend, portico):
    p = portico(delay_config(backend.url, plugin_dir, ms=0))
    assert p.request("GET", "/echo/slow")[0] == 200
    cfg = delay_config(backend.url, plugin_dir, ms=300)
    assert p.reload(cfg)
    results = []
    lock = threading.Lock()

    def one():
        t0 = time.monotonic()
        r = p.request("GET", "/echo/slow")
        with lock:
            results.append((r[0], time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(20)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    total = time.monotonic() - t0
    assert len(results) == 20 and all(s == 200 for s, _ in results), results
    assert total < 1.5, total  # 20 delays of 0.3 s overlapped on one worker


def test_client_leaving_during_delay(example_so, plugin_dir, backend, portico):
    """Clients that leave while their request is suspended do not disturb the worker."""
    p = portico(delay_config(backend.url, plugin_dir, ms=400))
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(b"GET /echo/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        s.close()
    time.sleep(0.6)
    assert p.proc.poll() is None
    assert p.request("GET", "/echo/items/1")[0] == 200
    # the gateway does not watch the client while the pipeline is suspended: the abandoned requests
    # finish their pipeline and are logged when the response cannot be delivered
    entries = [e for e in p.access_entries(wait_for=6) if "/slow" in str(e)]
    assert len(entries) == 5, entries


def test_shutdown_with_a_pending_delay(example_so, plugin_dir, backend, portico):
    """SIGTERM lets a suspended request finish; SIGINT drops it with its timer."""
    p = portico(delay_config(backend.url, plugin_dir, ms=300))
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", p.request("GET", "/echo/slow")))
    t.start()
    time.sleep(0.1)
    assert p.stop(signal.SIGTERM) == 0
    t.join(5)
    assert out["r"][0] == 200
    q = portico(delay_config(backend.url, plugin_dir, ms=5000))
    s = socket.create_connection(("127.0.0.1", q.port))
    s.sendall(b"GET /echo/slow HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    t0 = time.monotonic()
    assert q.stop(signal.SIGINT) == 0
    assert time.monotonic() - t0 < 3
    s.close()
    assert q.log_text().count("] stopped") == 2  # both runs ended cleanly (same log file)


def test_plugin_policies_survive_reload(example_so, plugin_dir, backend, portico):
    p = portico(plugin_config(backend.url, plugin_dir, inbound=[{"stamp": {"value": "one"}}]))
    p.request("GET", "/echo/items/1")
    assert backend.last().header("X-Stamp") == "one"
    assert p.reload(plugin_config(backend.url, plugin_dir, port=p.port, inbound=[{"stamp": {"value": "two"}}]))
    p.request("GET", "/echo/items/1")
    assert backend.last().header("X-Stamp") == "two"


# ------------------------------------------------------------ the loader

def plugin_source(names=("probe",), tag="t", major="PT_ABI_MAJOR", minor="PT_ABI_MINOR",
                  size="sizeof(struct pt_plugin)", init=None, run=True, descriptor="export", extra=""):
    """C source of a small plugin whose policies append `X-Tag: tag` to the current message."""
    policies = "".join('    {"%s", PT_SECTION_ALL, PT_SCOPE_ALL, 0, NULL, NULL, %s, NULL, "test"},\n'
                       % (n, "run_tag" if run else "NULL") for n in names)
    init_fn = ("static int init_fn(const struct pt_api *api, const char **err)\n{\n    (void)api; (void)err;\n"
               "    %s\n}\n" % init) if init else ""
    desc = ""
    if descriptor:
        desc = "%sconst struct pt_plugin portico_plugin = {%s, %s, %s, \"test\", \"0\", policies, %s, NULL};\n" % (
            "PT_PLUGIN_EXPORT " if descriptor == "export" else "", major, minor, size,
            "init_fn" if init else "NULL")
    return """#include <portico/plugin.h>
%s
static pt_status run_tag(const struct pt_api *api, pt_call *call, void *inst)
{
    static const char tag[] = "%s";
    pt_bytes name = {"X-Tag", 5}, v = {tag, sizeof(tag) - 1};
    (void)inst;
    return api->header_set(call, PT_MSG_CURRENT, name, &v, 1, PT_HEADER_APPEND) ? PT_ERROR : PT_OK;
}
static const struct pt_policy_def policies[] = {
%s    {0}};
%s%s""" % (extra, tag, policies, init_fn, desc)


REFUSALS = [
    ("abi-major", dict(major="PT_ABI_MAJOR + 1"),
     r"built for another ABI major version \(plugin \d+\.\d+, gateway \d+\.\d+\)", "probe"),
    ("abi-minor-newer", dict(minor="PT_ABI_MINOR + 1"),
     r"built for a newer ABI minor version \(plugin \d+\.\d+, gateway \d+\.\d+\)", "probe"),
    ("no-descriptor", dict(descriptor=None), r"no 'portico_plugin' descriptor symbol", "probe"),
    ("descriptor-not-exported", dict(descriptor="hidden"), r"no 'portico_plugin' descriptor symbol", "probe"),
    ("descriptor-too-small", dict(size="sizeof(struct pt_plugin) - 1"), r"descriptor has an unexpected size",
     "probe"),
    ("descriptor-too-large", dict(size="sizeof(struct pt_plugin) + 8"), r"descriptor has an unexpected size",
     "probe"),
    ("core-name", dict(names=("probe", "choose")), r"policy 'choose' is already provided by core", "probe"),
    ("core-name-include-fragment", dict(names=("probe", "include-fragment")),
     r"policy 'include-fragment' is already provided by core", "probe"),
    ("core-name-forward-request", dict(names=("forward-request", "probe")),
     r"policy 'forward-request' is already provided by core", "probe"),
    ("duplicate-inside", dict(names=("probe", "probe")), r"policy 'probe' is already provided by this plugin",
     "probe"),
    ("no-run", dict(run=False), r"policy 'probe' has no run function", "probe"),
    ("init-fails", dict(init='*err = "licence file missing"; return -1;'), r"init failed: licence file missing",
     "probe"),
    ("init-fails-silently", dict(init="return -1;"), r"init failed: \(no reason given\)", "probe"),
]


@pytest.mark.parametrize("kw,reason,probe", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused_plugin(sdk_include, example_so, plugin_dir, backend, portico, workdir, kw, reason, probe):
    bad = compile_source(sdk_include, plugin_source(**kw), os.path.join(plugin_dir, "bad.so"))
    # the refusal names the file and the reason; the configuration stays valid
    ok_cfg = plugin_config(backend.url, plugin_dir, inbound=[{"stamp": {"value": "served"}}])
    rc, out, _ = check_config(ok_cfg, workdir)
    assert rc == 0, out
    assert re.search(re.escape(bad) + r": plugin refused: " + reason, out), out
    assert out.count("plugin refused") == 1, out
    # a statement using the refused plugin's policy is an unknown policy, at its position
    rc, out, path = check_config(plugin_config(backend.url, plugin_dir, inbound=[{probe: {}}]), workdir)
    assert rc == 1, out
    assert re.search(re.escape(path) + r":\d+:\d+: " + WORDS + r"unknown policy '%s'" % re.escape(probe), out), out
    # the gateway starts and serves, and the good plugin next to it works
    p = portico(ok_cfg)
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200, body
    assert backend.last().header("X-Stamp") == "served"
    assert backend.last().header("X-Tag") is None


def test_refused_core_name_leaves_core_policy_alone(sdk_include, plugin_dir, backend, portico):
    compile_source(sdk_include, plugin_source(names=("set-variable",), tag="hijacked"),
                   os.path.join(plugin_dir, "hijack.so"))
    p = portico(plugin_config(backend.url, plugin_dir, inbound=[
        {"set-variable": {"name": "v", "value": "core"}},
        {"return-response": {"set-body": "@(context.variables.v)"}}]))
    status, headers, body = p.request("GET", "/echo/items/1")
    assert (status, body) == (200, b"core")
    assert "x-tag" not in headers


def test_duplicate_policy_across_plugins(sdk_include, plugin_dir, backend, portico, workdir):
    """Plugins load in path order; the second to claim a name is refused as a whole."""
    first = compile_source(sdk_include, plugin_source(names=("twin",), tag="first"),
                           os.path.join(plugin_dir, "a_first.so"))
    sub = os.path.join(plugin_dir, "vendor")
    os.mkdir(sub)
    second = compile_source(sdk_include, plugin_source(names=("solo", "twin"), tag="second"),
                            os.path.join(sub, "b_second.so"))
    cfg = plugin_config(backend.url, plugin_dir, inbound=[{"twin": {}}])
    rc, out, _ = check_config(cfg, workdir)
    assert rc == 0, out
    assert "%s: plugin refused: policy 'twin' is already provided by %s" % (second, first) in out, out
    assert "%s: plugin refused" % first not in out
    rc, out, _ = check_config(plugin_config(backend.url, plugin_dir, inbound=[{"solo": {}}]), workdir)
    assert rc == 1 and "unknown policy 'solo'" in out, out
    p = portico(cfg)
    status, _, _ = p.request("GET", "/echo/items/1")
    assert status == 200
    assert backend.last().header_all("X-Tag") == ["first"]


def test_plugins_found_two_levels_down(sdk_include, plugin_dir, backend, portico):
    deep = os.path.join(plugin_dir, "vendor", ".libs")
    os.makedirs(deep)
    compile_source(sdk_include, plugin_source(names=("deep",), tag="deep"), os.path.join(deep, "deep.so"))
    too_deep = os.path.join(plugin_dir, "a", "b", "c")
    os.makedirs(too_deep)
    compile_source(sdk_include, plugin_source(names=("too-deep",), tag="x"), os.path.join(too_deep, "x.so"))
    p = portico(plugin_config(backend.url, plugin_dir, inbound=[{"deep": {}}]))
    assert p.request("GET", "/echo/items/1")[0] == 200
    assert backend.last().header("X-Tag") == "deep"
    rc, out, _ = check_config(plugin_config(backend.url, plugin_dir, inbound=[{"too-deep": {}}]), p.workdir)
    assert rc == 1 and "unknown policy 'too-deep'" in out, out


def test_unloadable_shared_object_is_reported(sdk_include, example_so, plugin_dir, backend, portico, workdir):
    """dlopen(RTLD_NOW) fails on an unresolved symbol: reported with the file, the gateway serves."""
    bad = compile_source(sdk_include, plugin_source(
        extra="extern int portico_no_such_symbol(void);\n"
              "int touch(void) { return portico_no_such_symbol(); }"),
        os.path.join(plugin_dir, "unresolved.so"))
    not_elf = os.path.join(plugin_dir, "text.so")
    with open(not_elf, "w") as f:
        f.write("not a shared object\n")
    cfg = plugin_config(backend.url, plugin_dir, inbound=[{"stamp": {"value": "ok"}}])
    rc, out, _ = check_config(cfg, workdir)
    assert rc == 0, out
    assert re.search(re.escape(bad) + r": .*portico_no_such_symbol", out), out
    assert re.search(re.escape(not_elf) + r": ", out), out
    p = portico(cfg)
    assert p.request("GET", "/echo/items/1")[0] == 200
    assert backend.last().header("X-Stamp") == "ok"


def test_refusal_is_written_to_the_error_log(sdk_include, example_so, plugin_dir, backend, portico):
    bad = compile_source(sdk_include, plugin_source(major="PT_ABI_MAJOR + 1"), os.path.join(plugin_dir, "bad.so"))
    p = portico(plugin_config(backend.url, plugin_dir))
    assert p.request("GET", "/echo/items/1")[0] == 200
    text = p.log_text()
    assert "%s: plugin refused: built for another ABI major version" % bad in text, text


# --------------------------------------------------- compile-time errors

PICKY = """#include <portico/plugin.h>
static const struct pt_attr_def attrs[] = {
    {"level", PT_ATTR_INT, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 100, "how picky"},
    {0}};
static int picky_compile(const struct pt_api *api, pt_compile *c, void **inst)
{
    int level = (int)api->attr_int(c, "level", 0);
    if (level == 7) {
        api->compile_error(c, "level", "level %d is unlucky", level);
        return -1;
    }
    if (level == 13) {
        api->compile_error(c, NULL, "level %d is not allowed in %s", level,
                           api->compile_section(c) == PT_SECTION_INBOUND ? "inbound" : "another section");
        return -1;
    }
    if (level == 99)
        return -1; /* no message: the core reports a generic one */
    *inst = NULL;
    return 0;
}
static pt_status picky_run(const struct pt_api *api, pt_call *call, void *inst)
{
    pt_bytes name = {"X-Picky", 7}, v = {"ran", 3};
    (void)inst;
    return api->header_set(call, PT_MSG_CURRENT, name, &v, 1, PT_HEADER_OVERRIDE) ? PT_ERROR : PT_OK;
}
static const struct pt_policy_def policies[] = {
    {"picky", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, attrs, picky_compile, picky_run, NULL, "test"},
    {0}};
PT_PLUGIN("picky", "1", policies, NULL, NULL);
"""

PICKY_CONFIG = """listen: ["127.0.0.1:%(port)d"]
workers: 1
pluginDir: %(dir)s
apis:
  - id: echo
    path: echo
    serviceUrl: %(url)s
    subscriptionRequired: false
    policies:
      inbound:
        - picky: {level: %(level)d}
    operations:
      - {id: any, method: "*", urlTemplate: "/*"}
"""
# line 11: "        - picky: {level: N}": the statement starts at column 11, the value at column 26


@pytest.mark.parametrize("level,where,message", [
    (7, "11:26", "picky: 'level': level 7 is unlucky"),
    (13, "11:11", "picky: level 13 is not allowed in inbound"),
    (99, "11:11", "policy 'picky' refused this configuration"),
], ids=["at-attribute", "at-statement", "no-message"])
def test_compile_error_is_reported_at_the_statement(sdk_include, plugin_dir, backend, workdir, level, where,
                                                    message):
    compile_source(sdk_include, PICKY, os.path.join(plugin_dir, "picky.so"))
    text = PICKY_CONFIG % {"port": free_port(), "dir": plugin_dir, "url": backend.url, "level": level}
    rc, out, path = check_config(text, workdir)
    assert rc == 1, out
    assert re.search(re.escape("%s:%s: " % (path, where)) + WORDS + re.escape(message), out), out
    assert "1 error" in out


def test_compiled_plugin_statement_runs(sdk_include, plugin_dir, backend, portico):
    compile_source(sdk_include, PICKY, os.path.join(plugin_dir, "picky.so"))
    text = PICKY_CONFIG % {"port": free_port(), "dir": plugin_dir, "url": backend.url, "level": 3}
    p = portico(text, start=False)
    p.config = {"listen": [re.search(r'listen: \["([^"]+)"\]', text).group(1)]}
    p.start()
    assert p.request("GET", "/echo/x")[0] == 200
    assert backend.last().header("X-Picky") == "ran"


# -------------------------------------------------------- run() statuses

OUTCOME = r"""#include <portico/plugin.h>
#include <stdint.h>
static const struct pt_api *A;
static const char *const kinds[] = {"ok", "error", "error-plain", "declined", "done", NULL};
static const struct pt_attr_def attrs[] = {
    {"status", PT_ATTR_ENUM, PT_ATTR_REQUIRED, NULL, kinds, NULL, 0, 0, "what run() returns"},
    {"async", PT_ATTR_BOOL, 0, "false", NULL, NULL, 0, 0, "return PT_AGAIN, resume() from a timer"},
    {0}};
struct inst { int kind, async; };
static int outcome_compile(const struct pt_api *api, pt_compile *c, void **out)
{
    struct inst *i = api->compile_alloc(c, sizeof *i);
    i->kind = api->attr_enum(c, "status", 0);
    i->async = api->attr_bool(c, "async", 0);
    *out = i;
    return 0;
}
static pt_status outcome(pt_call *call, int kind)
{
    switch (kind) {
    case 0: return PT_OK;
    case 1: return A->fail(call, 418, "Teapot", "short and stout");
    case 2: return PT_ERROR;
    case 3: return PT_DECLINED;
    default: {
        pt_bytes reason = {"Made", 4}, body = {"made here", 9};
        if (A->set_status(call, 201, reason) || A->body_set(call, PT_MSG_RESPONSE, body))
            return PT_ERROR;
        return A->respond(call);
    }
    }
}
static void wake(pt_call *call, void *arg)
{
    A->resume(call, outcome(call, (int)(intptr_t)arg));
}
static pt_status outcome_run(const struct pt_api *api, pt_call *call, void *p)
{
    const struct inst *i = p;
    if (!i->async)
        return outcome(call, i->kind);
    if (!api->timer_start(call, 10, wake, (void *)(intptr_t)i->kind))
        return PT_ERROR;
    return PT_AGAIN;
}
static int init(const struct pt_api *api, const char **err)
{
    (void)err;
    A = api;
    return 0;
}
static const struct pt_policy_def policies[] = {
    {"outcome", PT_SECTION_ALL, PT_SCOPE_ALL, 0, attrs, outcome_compile, outcome_run, NULL, "test"},
    {0}};
PT_PLUGIN("outcome", "1", policies, init, NULL);
"""



@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("kind,status,expect", [
    ("ok", 200, {"body": b"next"}),
    ("error", 500, {"x-reason": "Teapot", "x-source": "outcome", "x-policy-id": "o1", "body": b"short and stout"}),
    ("error-plain", 500, {"x-reason": "InternalError", "x-policy-id": "o1"}),
    pytest.param("declined", 200, {"body": b"next"}),
    ("done", 201, {"body": b"made here"}),
])
def test_run_statuses(sdk_include, plugin_dir, backend, portico, kind, status, expect, is_async):
    compile_source(sdk_include, OUTCOME, os.path.join(plugin_dir, "outcome.so"))
    cfg = plugin_config(backend.url, plugin_dir, inbound=[
        {"outcome": {"id": "o1", "status": kind, "async": is_async}},
        {"return-response": {"set-body": "next"}}])
    cfg["apis"][0]["policies"]["on-error"] = STAMP_ON_ERROR["on-error"]
    p = portico(cfg)
    got, headers, body = p.request("GET", "/echo/items/1", timeout=3)
    assert got == status, body
    for k, v in expect.items():
        assert (body if k == "body" else headers.get(k)) == v, (k, headers, body)
    assert len(backend.requests) == 0


def test_fail_status_reaches_client_without_on_error(sdk_include, plugin_dir, backend, portico):
    compile_source(sdk_include, OUTCOME, os.path.join(plugin_dir, "outcome.so"))
    p = portico(plugin_config(backend.url, plugin_dir, inbound=[{"outcome": {"status": "error", "async": True}}]))
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 418
    assert b"short and stout" in body
    assert p.request("GET", "/echo/items/1")[0] == 418  # the worker is fine afterwards


WRAPPER = r"""#include <portico/plugin.h>
static const struct pt_attr_def attrs[] = {
    {"policies", PT_ATTR_POLICIES, PT_ATTR_REQUIRED, NULL, NULL, NULL, 0, 0, "wrapped statements"},
    {0}};
static pt_status run_ok(const struct pt_api *api, pt_call *call, void *inst) { return PT_OK; }
static const struct pt_policy_def policies[] = {
    {"wrap", PT_SECTION_ALL, PT_SCOPE_ALL, 0, attrs, NULL, run_ok, NULL, "test"},
    {0}};
PT_PLUGIN("wrap", "1", policies, NULL, NULL);
"""


def test_plugin_nested_statements_are_validated(sdk_include, plugin_dir, backend, workdir):
    compile_source(sdk_include, WRAPPER, os.path.join(plugin_dir, "wrap.so"))
    cfg = plugin_config(backend.url, plugin_dir, inbound=[{"wrap": {"policies": [{"no-such-policy": {}}]}}])
    rc, out, _ = check_config(cfg, workdir)
    assert rc == 1 and "unknown policy 'no-such-policy'" in out, out
