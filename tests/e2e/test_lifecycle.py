"""Process lifecycle: the command line (-t, -v), configuration validation
with file:line:column errors, reloads (SIGHUP), graceful and fast stops
(SIGTERM, SIGINT), and the client-side timeouts and limits."""

import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, basic_config, free_port, parse_responses, peer_has_read, to_yaml, wait_for
from upstream_helpers import dechunk, hget, split_head


# ------------------------------------------------------------------ helpers

def run_check(workdir, text, name="check.yaml"):
    """Writes `text` and runs `portico -t -c FILE`; returns (rc, stdout, stderr, path)."""
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=20)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"), path


def at(text, needle, nth=0):
    """1-based (line, column) of the nth occurrence of `needle` in `text`."""
    idx = -1
    for _ in range(nth + 1):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


def error_lines(stderr, path):
    return [l for l in stderr.splitlines() if l.startswith(path + ":")]


def assert_error(stderr, path, line, col, *fragments):
    prefix = "%s:%d:%d: " % (path, line, col)
    hits = [l for l in stderr.splitlines() if l.startswith(prefix)]
    assert hits, "no error at %d:%d in:\n%s" % (line, col, stderr)
    assert any(all(f in l for f in fragments) for l in hits), (fragments, hits)


def get(port, path, timeout=5, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def connect(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s, timeout=5.0):
    """Reads exactly one Content-Length-framed response from socket s."""
    s.settimeout(timeout)
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed before a response head: %r" % bytes(data))
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed inside a response body")
        rest += chunk
    (resp,) = parse_responses(head + b"\r\n\r\n" + rest[:n])
    return resp


def wait_closed(s, timeout):
    """Waits for the peer to close s; returns (closed, bytes received before)."""
    s.settimeout(0.1)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True, bytes(data)
        if not chunk:
            return True, bytes(data)
        data += chunk
    return False, bytes(data)


def connection_refused(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except (ConnectionRefusedError, ConnectionResetError):
        # a connect racing with the listener's close is reset: not accepted either
        return True
    s.close()
    return False


def listening_inodes(pid, port):
    """Socket inodes of `pid` that are listening on 127.0.0.1:port."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                inodes.add(inode)
    mine = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m and m.group(1) in inodes:
            mine.add(m.group(1))
    return mine


class Background:
    """Runs one request in a thread; records status, body, timing or the exception."""

    def __init__(self, port, path, timeout=15):
        self.status = self.body = self.error = self.headers = None
        self.t_end = None
        self.t0 = time.monotonic()

        def run():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            try:
                c.request("GET", path)
                r = c.getresponse()
                self.body = r.read()
                self.status = r.status
                self.headers = dict((k.lower(), v) for k, v in r.getheaders())
            except Exception as e:  # noqa: BLE001 - recorded for the assertion
                self.error = e
            finally:
                self.t_end = time.monotonic()
                c.close()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout=20):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "request thread still running"


def api(api_id, path, backend_url):
    return {"id": api_id, "path": path, "serviceUrl": backend_url + "/" + api_id, "subscriptionRequired": False,
            "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}


def wait_backend(backend, n, timeout=5):
    wait_for(lambda: len(backend.requests) >= n, timeout, what="the backend to get the request")


# ---------------------------------------------------------------- the CLI

def test_version_prints_version_and_build_features():
    r = subprocess.run([BIN, "-v"], capture_output=True, timeout=10)
    assert r.returncode == 0
    out = r.stdout.decode()
    assert re.match(r"portico \d+\.\d+\.\d+", out)
    for feature in ("libevent", "LuaJIT", "OpenSSL", "llhttp", "http2 (nghttp2"):
        assert feature in out, feature


def test_check_valid_config_exits_zero_and_says_valid(workdir, backend):
    port = free_port()
    cfg = basic_config(backend.url, port=port)
    rc, out, err, path = run_check(workdir, to_yaml(cfg) + "\n")
    assert rc == 0, err
    assert "valid" in out and path in out
    assert err == ""
    # -t does not start serving
    assert connection_refused(port)


def test_check_accepts_workers_auto(workdir):
    rc, out, err, _ = run_check(workdir, 'listen: "127.0.0.1:%d"\nworkers: auto\n' % free_port())
    assert rc == 0, err
    assert "valid" in out


def test_check_accepts_quoted_workers_auto(workdir):
    rc, out, err, _ = run_check(workdir, 'listen: "127.0.0.1:%d"\nworkers: "auto"\n' % free_port())
    assert rc == 0, err


API_HEAD = 'listen: ["127.0.0.1:18080"]\napis:\n  - id: a\n    path: a\n'

BROKEN = {
    "unknown_key": (
        'listen: ["127.0.0.1:18080"]\nworkers: 1\nbogus: 1\n',
        ("bogus", 0), ["unknown key 'bogus'", "listen, workers, limits, timeouts, upstream, log, lua, pluginDir, data, secretKey, samples, management, metrics, trustedProxies, tracing, apis, products", "policies, certificates, backends", "telemetry, analytics, portal, cache, counters, controlPlane)"]),
    "unknown_nested_key": (
        'listen: ["127.0.0.1:18080"]\ntimeouts:\n  header: 5s\n  hedaer: 5s\n',
        ("hedaer", 0), ["unknown key 'hedaer'", "header, bodyIdle, body, keepalive, send, shutdown"]),
    "workers_wrong_type": (
        'listen: ["127.0.0.1:18080"]\nworkers: many\n',
        ("many", 0), ["expected an integer", "many"]),
    "listen_nonsense": (
        'listen: ["nonsense"]\n',
        ('"nonsense"', 0), ["'nonsense' is not a listen address"]),
    "bad_duration": (
        'listen: ["127.0.0.1:18080"]\ntimeouts:\n  header: soon\n',
        ("soon", 0), ["expected a duration", "soon"]),
    "bad_service_url": (
        API_HEAD + '    serviceUrl: ftp://x\n',
        ("ftp://x", 0), ["ftp://x"]),
    "lower_case_method": (
        API_HEAD + '    operations:\n      - id: o\n        method: get\n        urlTemplate: /x\n',
        ("get", 0), ["'get'", "upper case"]),
    "unclosed_brace": (
        API_HEAD + '    operations:\n      - id: o\n        method: GET\n        urlTemplate: /x/{id\n',
        ("/x/{id", 0), ["unclosed '{'"]),
    "duplicate_operation": (
        API_HEAD + '    operations:\n'
        '      - id: o1\n        method: GET\n        urlTemplate: /x/{id}\n'
        '      - id: o2\n        method: GET\n        urlTemplate: /x/{id}\n',
        ("/x/{id}", 1), ["same method and URL template", "o1"]),
    "duplicate_api_id": (
        API_HEAD + '  - id: a\n    path: b\n',
        ("a", 4), ["API id 'a' is used twice"]),
    "duplicate_api_path": (
        API_HEAD + '  - id: b\n    path: a\n',
        ("a\n", 2), ["path 'a' is already used by API 'a'"]),
    "missing_id": (
        'listen: ["127.0.0.1:18080"]\napis:\n  - path: a\n',
        ("path: a", 0), ["missing required key 'id'"]),
    "missing_path": (
        'listen: ["127.0.0.1:18080"]\napis:\n  - id: a\n',
        ("id: a", 0), ["missing required key 'path'"]),
    "missing_listen": (
        'workers: 1\n',
        ("workers", 0), ["missing required key 'listen'"]),
    "yaml_syntax": (
        'listen: [a\nworkers: 1\n',
        None, []),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_refuses_broken_config_with_position(workdir, name):
    text, where, fragments = BROKEN[name]
    rc, out, err, path = run_check(workdir, text)
    assert rc != 0
    assert "valid" not in out
    errors = error_lines(err, path)
    assert errors, err
    for l in errors:
        assert re.match(re.escape(path) + r":\d+:\d+: \S", l), l
    if where is not None:
        line, col = at(text, *where)
        assert_error(err, path, line, col, *fragments)
    else:
        # libyaml reports where the syntax broke: line 2 for the unclosed flow list
        assert re.match(re.escape(path) + r":2:\d+: ", errors[0]), errors


def test_check_missing_file(workdir):
    path = os.path.join(workdir, "does-not-exist.yaml")
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=10)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert re.search(re.escape(path) + r":1:1: .*(No such file|cannot open)", err), err


def test_check_reports_all_errors_of_a_file_at_once(workdir):
    text = ('listen: ["127.0.0.1:18080"]\n'   # 1
            'workers: many\n'                 # 2
            'bogus: 1\n'                      # 3
            'limits:\n'                       # 4
            '  headerSize: lots\n'            # 5
            'apis:\n'                         # 6
            '  - id: a\n'                     # 7
            '    path: a\n'                   # 8
            '    serviceUrl: ftp://x\n'       # 9
            '    operations:\n'               # 10
            '      - id: o1\n'                # 11
            '        method: get\n'           # 12
            '        urlTemplate: /x\n'       # 13
            '  - id: a\n'                     # 14
            '    path: a\n'                   # 15
            '  - path: b\n')                  # 16
    rc, out, err, path = run_check(workdir, text)
    assert rc != 0
    assert_error(err, path, 2, 10, "many")
    assert_error(err, path, 3, 1, "unknown key 'bogus'")
    assert_error(err, path, 5, 15, "lots")
    assert_error(err, path, 9, 17, "ftp://x")
    assert_error(err, path, 12, 17, "'get'")
    assert_error(err, path, 14, 9, "used twice")
    assert_error(err, path, 15, 11, "already used")
    assert_error(err, path, 16, 5, "missing required key 'id'")
    assert len(error_lines(err, path)) == 8, err


def test_check_reports_template_errors_together_with_other_errors(workdir):
    text = ('listen: ["127.0.0.1:18080"]\n'   # 1
            'bogus: 1\n'                      # 2
            'apis:\n'                         # 3
            '  - id: a\n'                     # 4
            '    path: a\n'                   # 5
            '    operations:\n'               # 6
            '      - id: o1\n'                # 7
            '        method: GET\n'           # 8
            '        urlTemplate: /x/{id\n'   # 9
            '      - id: o2\n'                # 10
            '        method: GET\n'           # 11
            '        urlTemplate: /y\n'       # 12
            '      - id: o3\n'                # 13
            '        method: GET\n'           # 14
            '        urlTemplate: /y\n')      # 15
    rc, out, err, path = run_check(workdir, text)
    assert rc != 0
    assert_error(err, path, 2, 1, "unknown key 'bogus'")
    assert_error(err, path, 9, 22, "unclosed '{'")
    assert_error(err, path, 15, 22, "same method and URL template")


def test_run_with_broken_config_exits_with_errors(workdir):
    port = free_port()
    path = os.path.join(workdir, "broken.yaml")
    with open(path, "w") as f:
        f.write('listen: ["127.0.0.1:%d"]\nworkers: many\n' % port)
    r = subprocess.run([BIN, "-c", path], capture_output=True, timeout=10)
    assert r.returncode != 0
    assert_error(r.stderr.decode(), path, 2, 10, "expected an integer")
    assert connection_refused(port)


def test_second_instance_on_the_same_port_is_refused(backend, portico, workdir):
    """SO_REUSEPORT must not let a second Portico share the first one's port silently."""
    cfg = basic_config(backend.url)
    first = portico(cfg)
    path = os.path.join(workdir, "second.yaml")
    second = dict(cfg, data=os.path.join(workdir, "second-var"))
    with open(path, "w") as f:
        f.write(to_yaml(second) + "\n")
    r = subprocess.run([BIN, "-c", path], capture_output=True, timeout=10)
    assert r.returncode != 0
    assert b"another process listens there" in r.stderr and b"second.yaml:" in r.stderr, r.stderr
    assert first.request("GET", "/echo/x")[0] == 200  # the first one is untouched


# ----------------------------------------------------------------- reloads

def test_reload_adds_and_removes_apis(backend, portico):
    cfg = basic_config(backend.url)
    p = portico(cfg)
    assert get(p.port, "/extra/x")[0] == 404
    cfg2 = dict(cfg, apis=cfg["apis"] + [api("extra", "extra", backend.url)])
    assert p.reload(cfg2)
    status, _, body = get(p.port, "/extra/x")
    assert status == 200
    assert json.loads(body)["target"] == "/extra/x"
    assert get(p.port, "/echo/items/1")[0] == 200
    cfg3 = dict(cfg, apis=[api("extra", "extra", backend.url)])
    assert p.reload(cfg3)
    assert get(p.port, "/echo/items/1")[0] == 404
    assert get(p.port, "/extra/y")[0] == 200
    assert p.proc.poll() is None


def test_broken_reload_keeps_old_configuration(backend, portico):
    cfg = basic_config(backend.url)
    p = portico(cfg)
    port, path = p.port, p.config_path
    good_text = open(path).read()
    assert get(port, "/echo/items/1")[0] == 200

    # an unknown key on a known line
    broken = good_text + "bogus: 1\n"
    line = broken.count("\n")
    p.write_config(broken)
    assert p.reload() is False
    log = p.log_text()
    assert "%s:%d:1: unknown key 'bogus'" % (path, line) in log, log
    assert "reload refused" in log
    assert get(port, "/echo/items/1")[0] == 200

    # an error found while building the routes
    broken = good_text.replace('"/items/{id}"', '"/items/{id"')
    assert broken != good_text
    line, col = at(broken, '"/items/{id"')
    p.write_config(broken)
    assert p.reload() is False
    log = p.log_text()
    assert "%s:%d:%d: " % (path, line, col) in log and "unclosed '{'" in log, log
    # told once, by the file's own check
    assert log.count("unclosed '{'") == 1, log
    assert log.count("reload refused") == 2
    assert get(port, "/echo/items/1")[0] == 200

    # a YAML syntax error
    p.write_config(good_text + "apis: [\n")
    assert p.reload() is False
    assert p.log_text().count("reload refused") == 3
    assert get(port, "/echo/items/1")[0] == 200

    # a missing file
    os.remove(path)
    assert p.reload() is False
    log = p.log_text()
    assert "%s:1:1: cannot open" % path in log, log
    assert log.count("reload refused") == 4
    assert get(port, "/echo/items/1")[0] == 200

    # a valid file again applies
    cfg2 = dict(cfg, apis=[api("other", "other", backend.url)])
    assert p.reload(cfg2)
    assert get(port, "/other/x")[0] == 200
    assert get(port, "/echo/items/1")[0] == 404
    assert p.proc.poll() is None


def test_reload_refused_when_new_address_cannot_be_bound(backend, portico):
    cfg = basic_config(backend.url)
    p = portico(cfg)
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        cfg2 = dict(cfg, listen=cfg["listen"] + ["127.0.0.1:%d" % busy],
                    apis=[api("other", "other", backend.url)])
        assert p.reload(cfg2) is False
        log = p.log_text()
        assert "reload refused" in log
        assert re.search(re.escape(p.config_path) + r":\d+:\d+: cannot listen on 127\.0\.0\.1:%d" % busy, log), log
        # the old routes keep serving
        assert get(p.port, "/echo/items/1")[0] == 200
        assert get(p.port, "/other/x")[0] == 404
    finally:
        taken.close()


def test_reload_keeps_unchanged_listeners_and_follows_listen_changes(backend, portico):
    a, b = free_port(), free_port()
    cfg = basic_config(backend.url, port=a)
    p = portico(cfg)
    before = listening_inodes(p.proc.pid, a)
    assert before
    assert connection_refused(b)

    # an established keep-alive connection survives the reload
    c = http.client.HTTPConnection("127.0.0.1", a, timeout=5)
    c.request("GET", "/echo/items/1")
    r = c.getresponse()
    r.read()
    assert r.status == 200

    assert p.reload(dict(cfg, listen=["127.0.0.1:%d" % a, "127.0.0.1:%d" % b]))
    assert listening_inodes(p.proc.pid, a) == before, "the socket of an unchanged address was reopened"
    assert get(b, "/echo/items/2")[0] == 200
    assert get(a, "/echo/items/3")[0] == 200
    c.request("GET", "/echo/items/4")
    r = c.getresponse()
    r.read()
    assert r.status == 200
    c.close()

    assert p.reload(dict(cfg, listen=["127.0.0.1:%d" % b]))
    wait_for(lambda: connection_refused(a), 2, what="the removed address to refuse connections")
    assert get(b, "/echo/items/5")[0] == 200
    assert not listening_inodes(p.proc.pid, a)


def test_reload_under_load_fails_no_request(backend, portico):
    cfg1 = basic_config(backend.url, workers=2)
    cfg2 = dict(cfg1, apis=cfg1["apis"] + [api("extra", "extra", backend.url)],
                timeouts={"keepalive": "30s"})
    p = portico(cfg1)
    port = p.port
    nthreads, per_thread = 6, 300
    results = [dict(ok=0, bad=[], done=False) for _ in range(nthreads)]

    def client(res):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for i in range(per_thread):
                try:
                    conn.request("GET", "/echo/items/%d" % i if i % 10 else "/echo/sleep/20")
                    r = conn.getresponse()
                    r.read()
                    if r.status == 200:
                        res["ok"] += 1
                    else:
                        res["bad"].append(r.status)
                except Exception as e:  # noqa: BLE001 - every failure counts
                    res["bad"].append(repr(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        finally:
            conn.close()
            res["done"] = True

    threads = [threading.Thread(target=client, args=(r,), daemon=True) for r in results]
    for t in threads:
        t.start()
    reloads = 0

    def served():
        return sum(r["ok"] + len(r["bad"]) for r in results)
    # each reload comes once the load is running, and after some requests served since the last one
    for i in range(4):
        before = served()
        wait_for(lambda: served() >= before + 30, 10, what="30 more requests served under load")
        assert p.reload(cfg2 if i % 2 == 0 else cfg1, wait=0.05)
        reloads += 1
    running_during_reloads = sum(1 for r in results if not r["done"])
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert reloads == 4
    assert running_during_reloads > 0, "the load ended before the reloads: test proves nothing"
    bad = [b for r in results for b in r["bad"]]
    assert bad == [], bad[:10]
    assert sum(r["ok"] for r in results) == nthreads * per_thread
    assert p.proc.poll() is None


# ------------------------------------------------------------ SIGTERM/SIGINT

def test_sigterm_lets_in_flight_request_finish_and_exits_zero(backend, portico):
    p = portico(basic_config(backend.url))
    port = p.port
    req = Background(port, "/echo/sleep/1500")
    wait_backend(backend, 1)
    t_term = time.monotonic()
    p.send_signal(signal.SIGTERM)
    # new connections are refused soon, while the request is still running
    wait_for(lambda: connection_refused(port), 1.0, what="the port to refuse connections after SIGTERM")
    assert time.monotonic() - t_term < 1.0
    assert p.proc.poll() is None and req.t_end is None
    req.join()
    assert req.error is None, req.error
    assert req.status == 200
    assert json.loads(req.body)["target"] == "/base/sleep/1500"
    assert req.headers.get("connection") == "close"
    rc = p.proc.wait(timeout=5)
    t_exit = time.monotonic()
    assert rc == 0
    assert t_exit >= req.t_end - 0.05
    assert t_exit - req.t_end < 1.5


def test_sigterm_lets_slow_stream_finish(backend, portico):
    p = portico(basic_config(backend.url))
    s = connect(p.port, timeout=15)
    try:
        s.sendall(b"GET /echo/stream?chunks=12&size=100&delay=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = bytearray()
        while b"a" * 100 not in data:  # the stream is under way: its first chunk has reached the client
            chunk = s.recv(65536)
            assert chunk, "closed before the first chunk: %r" % bytes(data)
            data += chunk
        p.send_signal(signal.SIGTERM)
        closed, rest = wait_closed(s, 10.0)
    finally:
        s.close()
    assert closed, "the connection outlived the stream"
    status, headers, _, chunked = split_head(bytes(data + rest))
    assert status == 200 and hget(headers, "Transfer-Encoding") == "chunked"
    try:
        body, after = dechunk(chunked)
    except ValueError as e:
        raise AssertionError("the stream was cut (%s) after %d bytes" % (e, len(chunked)))
    assert after == b""
    assert len(body) == 1200
    assert body == b"".join(bytes([0x61 + i]) * 100 for i in range(12))
    assert p.proc.wait(timeout=5) == 0


def test_sigterm_closes_idle_keepalive_connections(backend, portico):
    p = portico(basic_config(backend.url))
    idle = connect(p.port)
    idle.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(idle)[0] == 200
    busy = Background(p.port, "/echo/sleep/2000")
    wait_backend(backend, 2)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    closed, data = wait_closed(idle, 1.0)
    assert closed and data == b"", data
    assert time.monotonic() - t0 < 1.0
    assert p.proc.poll() is None, "closed only because the process ended"
    idle.close()
    busy.join()
    assert busy.status == 200
    assert p.proc.wait(timeout=5) == 0


def test_sigterm_drain_is_bounded_by_shutdown_timeout(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"shutdown": "1s"}))
    req = Background(p.port, "/echo/sleep/5000")
    wait_backend(backend, 1)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.proc.wait(timeout=6)
    except subprocess.TimeoutExpired:
        pass
    elapsed = time.monotonic() - t0
    assert p.proc.poll() is not None
    assert 0.9 <= elapsed <= 2.5, elapsed
    req.join()
    # cut at the shutdown deadline: the connection ends with no response at all
    assert req.status is None and req.error is not None, (req.status, req.error)
    assert req.t_end - t0 < 3.0


def test_sigint_stops_immediately(backend, portico):
    p = portico(basic_config(backend.url))
    req = Background(p.port, "/echo/sleep/5000")
    wait_backend(backend, 1)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        p.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    elapsed = time.monotonic() - t0
    assert p.proc.poll() is not None
    assert elapsed < 3.0, elapsed  # not the 5 s the request in flight would take
    req.join()
    assert req.status is None and req.error is not None, (req.status, req.error)  # cut, not answered
    assert req.t_end - t0 < 1.5


def test_a_signal_as_soon_as_the_port_listens_is_handled(backend, portico):
    """A supervisor (or a test) that signals the gateway the moment its port
    accepts: the signal waits for its handler instead of killing the process."""
    for attempt in range(15):
        p = portico(basic_config(backend.url), start=False)
        p.start(wait=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", p.port), timeout=0.2).close()
                break
            except OSError:
                if p.proc.poll() is not None:
                    raise AssertionError("portico exited before listening: %s" % p.proc.returncode)
        p.send_signal(signal.SIGINT)
        rc = p.proc.wait(timeout=10)
        assert rc == 0, "attempt %d: exit status %s (a negative one is the signal's default action)" % (attempt, rc)


# -------------------------------------------------- client timeouts, limits

def test_header_timeout_partial_head_gets_408_and_close(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"header": "500ms"}))
    s = connect(p.port)
    t0 = time.monotonic()
    s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\nX-Partial: ")
    closed, data = wait_closed(s, 3.0)
    elapsed = time.monotonic() - t0
    s.close()
    assert closed
    assert 0.4 <= elapsed <= 2.0, elapsed
    (status, headers, body), = parse_responses(data)
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert headers.get("connection") == "close"
    assert json.loads(body)["statusCode"] == 408
    assert backend.requests == []


def test_header_timeout_silent_connection_closed_without_response(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"header": "500ms"}))
    s = connect(p.port)
    t0 = time.monotonic()
    closed, data = wait_closed(s, 3.0)
    elapsed = time.monotonic() - t0
    s.close()
    assert closed
    assert data == b""
    assert 0.4 <= elapsed <= 2.0, elapsed


def test_header_timeout_is_a_whole_head_deadline(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"header": "1s"}))
    s = connect(p.port)
    payload = b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    t0 = time.monotonic()
    cut = None
    data = bytearray()
    for i in range(len(payload)):  # bounded: at most ~20 s
        try:
            s.sendall(payload[i:i + 1])
        except OSError:
            cut = time.monotonic()
            break
        r, _, _ = select.select([s], [], [], 0.2)
        if r:
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            data += chunk
            cut = time.monotonic()
            break
    assert cut is not None, "slowloris was never cut"
    closed, rest = wait_closed(s, 2.0)
    data += rest
    s.close()
    elapsed = cut - t0
    assert 0.8 <= elapsed <= 2.0, elapsed
    assert closed
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert backend.requests == []


def test_body_idle_timeout_gets_408_and_backend_never_sees_a_request(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"bodyIdle": "500ms", "header": "5s"}))
    s = connect(p.port)
    s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    t0 = time.monotonic()
    closed, data = wait_closed(s, 3.0)
    elapsed = time.monotonic() - t0
    s.close()
    assert closed
    assert 0.4 <= elapsed <= 2.0, elapsed
    (status, headers, body), = parse_responses(data)
    assert status == 408
    assert json.loads(body)["statusCode"] == 408
    # a marker after the 408: the cut request, had it been forwarded whole, would have reached the
    # backend before it
    assert get(p.port, "/echo/items/marker")[0] == 200
    assert [r.target for r in backend.requests] == ["/base/items/marker"], [r.raw_head for r in backend.requests]


def test_body_idle_timeout_is_per_read_not_whole_body(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"bodyIdle": "500ms", "header": "5s"}))
    s = connect(p.port)
    s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n")
    t0 = time.monotonic()
    for i in range(5):
        time.sleep(0.25)  # the scenario: pauses shorter than bodyIdle, adding up to more than it
        s.sendall(b"%d" % i * 10)
    assert time.monotonic() - t0 > 1.0  # longer than bodyIdle in total
    status, _, body = read_response(s)
    s.close()
    assert status == 200
    assert len(backend.requests) == 1 and len(backend.requests[0].body) == 50


def test_keepalive_timeout_closes_idle_connection(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"keepalive": "500ms", "header": "5s"}))
    s = connect(p.port)
    s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = read_response(s)
    assert status == 200 and headers.get("connection") != "close"
    t0 = time.monotonic()
    closed, data = wait_closed(s, 3.0)
    elapsed = time.monotonic() - t0
    s.close()
    assert closed and data == b""
    assert 0.4 <= elapsed <= 2.0, elapsed


def test_requests_per_connection_limit(backend, portico):
    p = portico(basic_config(backend.url, limits={"requestsPerConnection": 3}))
    s = connect(p.port)
    for i in range(3):
        s.sendall(b"GET /echo/items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        status, headers, _ = read_response(s)
        assert status == 200
        if i < 2:
            assert headers.get("connection") != "close", i
        else:
            assert headers.get("connection") == "close"
    closed, data = wait_closed(s, 2.0)
    s.close()
    assert closed and data == b""
    assert len(backend.requests) == 3


def test_requests_per_connection_limit_with_pipelining(backend, portico):
    p = portico(basic_config(backend.url, limits={"requestsPerConnection": 3}))
    s = connect(p.port)
    s.sendall(b"".join(b"GET /echo/items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
    closed, data = wait_closed(s, 3.0)
    s.close()
    assert closed
    responses = parse_responses(data)
    assert [r[0] for r in responses] == [200, 200, 200]
    assert [r[1].get("connection") for r in responses] == [None, None, "close"]
    assert [json.loads(r[2])["target"] for r in responses] == ["/base/items/%d" % i for i in range(3)]
    assert len(backend.requests) == 3


def test_connections_per_worker_limit_queues_further_connections(backend, portico):
    p = portico(basic_config(backend.url, workers=1, limits={"connectionsPerWorker": 5}))
    first = []
    try:
        for i in range(5):
            s = connect(p.port)
            first.append(s)
            s.sendall(b"GET /echo/items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert read_response(s)[0] == 200
        sixth = connect(p.port)  # the kernel accepts it into the backlog
        first.append(sixth)
        sixth.sendall(b"GET /echo/items/6 HTTP/1.1\r\nHost: x\r\n\r\n")
        r, _, _ = select.select([sixth], [], [], 1.0)
        assert not r, "the 6th connection was served while 5 were open"
        assert len(backend.requests) == 5
        t0 = time.monotonic()
        first[0].close()
        status, _, body = read_response(sixth, timeout=3.0)
        assert status == 200
        assert json.loads(body)["target"] == "/base/items/6"
        assert time.monotonic() - t0 < 2.0
        # the other idle connections are still usable
        first[1].sendall(b"GET /echo/items/7 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(first[1])[0] == 200
    finally:
        for s in first:
            s.close()


def test_header_deadline_starts_at_first_byte_of_next_request(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"header": "500ms", "keepalive": "5s"}))
    s = connect(p.port)
    s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[0] == 200
    # idle longer than the header timeout: the keep-alive timeout applies, not the header one
    time.sleep(1.0)
    t0 = time.monotonic()
    s.sendall(b"GET /echo/items/2 HTTP/1.1\r\nHost: x\r\n")
    closed, data = wait_closed(s, 3.0)
    elapsed = time.monotonic() - t0
    s.close()
    assert closed
    assert 0.4 <= elapsed <= 2.0, elapsed
    (status, _, body), = parse_responses(data)
    assert status == 408
    assert len(backend.requests) == 1


# ------------------------------------------- reloads and the running state

def test_reload_shortening_keepalive_applies_while_older_connections_are_idle(backend, portico):
    cfg = basic_config(backend.url, timeouts={"keepalive": "30s"})
    p = portico(cfg)
    old = connect(p.port)
    old.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(old)[0] == 200
    try:
        assert p.reload(dict(cfg, timeouts={"keepalive": "500ms"}))
        s = connect(p.port)
        s.sendall(b"GET /echo/items/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s)[0] == 200
        t0 = time.monotonic()
        closed, data = wait_closed(s, 3.0)
        elapsed = time.monotonic() - t0
        s.close()
        assert closed and data == b""
        assert 0.4 <= elapsed <= 2.0, elapsed
    finally:
        old.close()


def test_reload_shortening_header_timeout_applies_while_older_connections_wait(backend, portico):
    cfg = basic_config(backend.url, timeouts={"header": "30s"})
    p = portico(cfg)
    old = connect(p.port)
    try:
        wait_for(lambda: peer_has_read(p.proc.pid, old), what="the gateway to accept the older connection")
        assert p.reload(dict(cfg, timeouts={"header": "500ms"}))
        s = connect(p.port)
        t0 = time.monotonic()
        closed, data = wait_closed(s, 3.0)
        elapsed = time.monotonic() - t0
        s.close()
        assert closed and data == b""
        assert 0.4 <= elapsed <= 2.0, elapsed
    finally:
        old.close()


def test_reload_raising_connections_per_worker_resumes_accepting(backend, portico):
    cfg = basic_config(backend.url, workers=1, limits={"connectionsPerWorker": 2})
    p = portico(cfg)
    socks = []
    try:
        for i in range(2):
            s = connect(p.port)
            socks.append(s)
            s.sendall(b"GET /echo/items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert read_response(s)[0] == 200
        third = connect(p.port)
        socks.append(third)
        third.sendall(b"GET /echo/items/3 HTTP/1.1\r\nHost: x\r\n\r\n")
        r, _, _ = select.select([third], [], [], 0.5)
        assert not r
        assert p.reload(dict(cfg, limits={"connectionsPerWorker": 10}))
        status, _, _ = read_response(third, timeout=2.0)
        assert status == 200
    finally:
        for s in socks:
            s.close()


def test_reload_during_shutdown_opens_no_new_listener(backend, portico):
    cfg = basic_config(backend.url)
    p = portico(cfg)
    port, extra = p.port, free_port()
    req = Background(port, "/echo/sleep/2000")
    wait_backend(backend, 1)
    p.send_signal(signal.SIGTERM)
    wait_for(lambda: connection_refused(port), 1.0, what="the port to refuse connections after SIGTERM")
    p.reload(dict(cfg, listen=cfg["listen"] + ["127.0.0.1:%d" % extra]), wait=0.1)
    assert p.proc.poll() is None
    refused = connection_refused(extra)
    req.join()
    assert req.status == 200
    assert p.proc.wait(timeout=5) == 0
    assert refused, "a new address accepts connections during the shutdown drain"


def listen_queue(port):
    """The listen queue (backlog) of the socket listening on port, as ss reports it."""
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True, text=True, timeout=10).stdout
    sizes = [int(line.split()[2]) for line in out.splitlines() if line.startswith("LISTEN")]
    assert sizes, out
    return max(sizes)


def test_listen_backlog_follows_the_system_and_is_configurable(backend, portico):
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    p = portico(basic_config(backend.url))
    assert listen_queue(p.port) == somaxconn
    p.stop()
    port = free_port()
    cfg = basic_config(backend.url)
    cfg["listen"] = [{"address": "127.0.0.1:%d" % port, "backlog": 16}]
    p2 = portico(cfg)
    assert listen_queue(port) == 16
    assert p2.request("GET", "/echo/items/1")[0] == 200


def test_sigusr1_reopens_the_logs_after_rotation(backend, portico, workdir):
    p = portico(basic_config(backend.url))
    assert p.request("GET", "/echo/items/1")[0] == 200
    p.access_entries(wait_for=1)
    os.rename(p.access_log, p.access_log + ".1")
    os.rename(p.error_log, p.error_log + ".1")
    p.send_signal(signal.SIGUSR1)
    deadline = time.time() + 5
    while time.time() < deadline and not os.path.exists(p.access_log):
        assert p.request("GET", "/echo/items/2")[0] == 200
        time.sleep(0.05)
    assert os.path.exists(p.access_log) and os.path.exists(p.error_log)
    assert p.request("GET", "/echo/items/3")[0] == 200
    deadline = time.time() + 5
    entries = []
    while time.time() < deadline and not any(e["path"] == "/echo/items/3" for e in entries):
        entries = p.access_entries()
        time.sleep(0.05)
    assert any(e["path"] == "/echo/items/3" for e in entries), entries
    with open(p.access_log + ".1") as f:
        old = [json.loads(line) for line in f if line.strip()]
    assert [e["path"] for e in old][:1] == ["/echo/items/1"]
    assert all(e["path"] != "/echo/items/3" for e in old)


def test_access_log_off_and_log_level(backend, portico, workdir):
    cfg = basic_config(backend.url, log={"access": "off", "level": "warn"})
    p = portico(cfg)
    # two calls on one connection: the gateway ends the first (and would write its line) before it
    # takes the second, so once the second is answered, the first's line would be there
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        for path in ("/echo/items/1", "/echo/items/marker"):
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            assert r.status == 200
    finally:
        c.close()
    assert not os.path.exists(p.access_log)
    # stdout is where the access log goes by default: nothing may have come out there either
    assert not select.select([p.proc.stdout], [], [], 0)[0], "an access line went to stdout"
    assert "[info]" not in p.log_text()  # level warn: no start-up information lines


def test_send_timeout_drops_a_client_that_does_not_read(backend, portico):
    p = portico(basic_config(backend.url, timeouts={"send": "1s"}))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.sendall(b"GET /echo/big?bytes=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        entries = []
        while time.monotonic() - t0 < 8 and not entries:
            entries = [e for e in p.access_entries() if e["path"] == "/echo/big"]
            time.sleep(0.1)
        took = time.monotonic() - t0
        assert entries, "the gateway kept a client that reads nothing"
        assert took < 6 and entries[0]["bytesOut"] < 50000000, (took, entries[0])
        assert p.request("GET", "/echo/items/1")[0] == 200
    finally:
        s.close()


def test_access_buffer_and_flush(backend, portico, workdir):
    """accessBuffer holds lines until it is full or accessFlush has passed."""
    cfg = basic_config(backend.url, log={"accessBuffer": "64k", "accessFlush": "1s"})
    p = portico(cfg)
    # two calls on one connection: the gateway ends the first (and would write its line, were it not
    # buffered) before it takes the second, so once the second is answered, the first's line would be there
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        for path in ("/echo/items/1", "/echo/items/marker"):
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            assert r.status == 200
    finally:
        c.close()
    assert p.access_entries(timeout=0) == []  # buffered: nothing written yet
    t0 = time.monotonic()
    entries = p.access_entries(wait_for=2, timeout=3)
    assert len(entries) == 2 and time.monotonic() - t0 < 2.5  # written within accessFlush
