"""Documented behaviours of the core that had no test of their own:

- `log.error` and `log.access` set to `stdout` / `stderr` (docs/configuration.md,
  "Logs" and the `log` keys): the lines go to that stream, well formed, and
  nothing goes to the other one;
- `upstream.readTimeout` on a backend that stalls in the middle of a body (a
  cut connection, reason `Timeout`) and on an idle WebSocket tunnel (closed on
  both sides; bytes in either direction keep it open);
- making another revision current by a management write ("Revisions"): the
  gateway serves the new current revision at once, the old one by `;rev=N`;
- `portico export --include-file` (docs/management-api.md, "The CLI"): the
  entities the configuration file declares are exported only with it.
"""

import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest
import yaml

from backends import ws_accept_key, ws_frame, ws_read_frame
from conftest import BIN, SANITIZER_MARKS, basic_config, wait_for
from mgmt_helpers import TOKEN, Mgmt, mgmt_config
from upstream_helpers import _Base, hget, recv_head, split_head


# ------------------------------------------------------------ log streams

ERROR_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(error|warn|info|debug)\] \S.*$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class PipeReader:
    """Drains one of the gateway's pipes (its stdout or stderr) into memory."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.data = bytearray()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def text(self):
        with self.lock:
            return self.data.decode(errors="replace")

    def lines(self):
        return [line for line in self.text().split("\n") if line]


def send_raw(port, data):
    """One request on its own connection (Connection: close): every byte received until the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return bytes(out)
            out += chunk


ACCESS_OK_REQ = (b"GET /echo/items/42?x=1 HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: log-stream-ok\r\n"
                 b"Connection: close\r\n\r\n")
ACCESS_404_REQ = (b"GET /nowhere HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: log-stream-404\r\n"
                  b"Connection: close\r\n\r\n")


@pytest.mark.parametrize("error_to, access_to", [("stdout", "stderr"), ("stderr", "stdout"),
                                                 ("stdout", "stdout"), ("stderr", "stderr")])
def test_logs_go_to_the_standard_stream_named(backend, portico, error_to, access_to):
    cfg = basic_config(backend.url, log={"error": error_to, "access": access_to, "level": "info"})
    p = portico(cfg, start=False)
    p.start(wait=False)
    streams = {"stdout": PipeReader(p.proc.stdout), "stderr": PipeReader(p.proc.stderr)}
    p.wait_ready()
    ok_raw = send_raw(p.port, ACCESS_OK_REQ)
    nf_raw = send_raw(p.port, ACCESS_404_REQ)
    status, headers, _, body = split_head(ok_raw)
    assert status == 200 and json.loads(body)["target"] == "/base/items/42?x=1"
    assert split_head(nf_raw)[0] == 404

    def access_lines():
        return [line for line in streams[access_to].lines() if line.startswith("{")]
    wait_for(lambda: len(access_lines()) >= 2, what="two access lines on " + access_to)
    # the process ends: both pipes are complete once they reach their end
    assert p.stop() == 0
    for r in streams.values():
        r.thread.join(5)
        assert not r.thread.is_alive()
    for name, r in streams.items():
        assert not any(mark in r.text() for mark in SANITIZER_MARKS), r.text()

    access = [json.loads(line) for line in access_lines()]
    assert len(access) == 2, access
    ok, nf = access
    assert set(ok) == {"time", "requestId", "clientIp", "method", "path", "query", "api", "operation",
                       "status", "backendStatus", "cache", "bytesIn", "bytesOut", "backendTime", "totalTime"}, ok
    assert ok["cache"] == "none", ok
    assert TIME.match(ok["time"]), ok
    assert (ok["requestId"], ok["clientIp"], ok["method"], ok["path"], ok["query"], ok["api"],
            ok["operation"], ok["status"], ok["backendStatus"]) == \
        ("log-stream-ok", "127.0.0.1", "GET", "/echo/items/42", "x=1", "echo", "get-item", 200, 200)
    assert (ok["bytesIn"], ok["bytesOut"]) == (len(ACCESS_OK_REQ), len(ok_raw))
    assert 0 <= ok["backendTime"] <= ok["totalTime"] < 5000, ok
    assert set(nf) == {"time", "requestId", "clientIp", "method", "path", "status", "cache", "bytesIn",
                       "bytesOut", "totalTime", "reason"}, nf
    assert (nf["requestId"], nf["path"], nf["status"], nf["reason"], nf["bytesIn"], nf["bytesOut"]) == \
        ("log-stream-404", "/nowhere", 404, "OperationNotFound", len(ACCESS_404_REQ), len(nf_raw))

    errors = [line for line in streams[error_to].lines() if not line.startswith("{")]
    assert errors and all(ERROR_LINE.match(line) for line in errors), errors
    assert any("] portico " in line and " started: 1 worker, listening on 127.0.0.1:%d" % p.port in line
               for line in errors), errors
    assert errors[-1].endswith("[info] stopped"), errors
    # everything on the error stream is error-log lines and on the access stream access lines, and the
    # stream named by neither setting got nothing
    for name, r in streams.items():
        expected = ([] if name != access_to else [json.dumps(a) for a in access]) + \
                   ([] if name != error_to else errors)
        assert len(r.lines()) == len(expected), (name, r.lines())
        if name not in (error_to, access_to):
            assert r.text() == "", (name, r.text())


# ------------------------------------------------------- upstream.readTimeout

class StallingBackend(_Base):
    """Announces 1000 bytes and sends 200 of them with the head, 200 more after
    a pause shorter than the gateway's readTimeout, then nothing more: it
    waits for the gateway to close the connection (or 10 s)."""

    def __init__(self, pause):
        self.pause = pause
        self.stalled_at = {}
        super().__init__()

    def serve(self, s, cid):
        if recv_head(s) is None:
            self._mark_eof(cid)
            return
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
                  + b"s" * 200)
        time.sleep(self.pause)  # the scenario: a pause the gateway must wait through
        s.sendall(b"t" * 200)
        with self.lock:
            self.stalled_at[cid] = time.monotonic()
        while s.recv(65536):
            pass
        self._mark_eof(cid)


def test_read_timeout_cuts_a_body_that_stalls(portico):
    """A backend that stops in the middle of a Content-Length body: a pause
    shorter than readTimeout is waited through; readTimeout after the last
    byte the client has the head and every byte sent so far, then the
    connection is cut (no made-up end, no error body appended), the backend
    connection is closed, and the access log says Timeout."""
    b = StallingBackend(pause=0.2)
    try:
        p = portico(basic_config(b.url, upstream={"readTimeout": "600ms"}))
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            s.sendall(b"GET /echo/stall HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            out = bytearray()
            while True:  # until the gateway closes (the 10 s socket timeout fails the test)
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            closed = time.monotonic()
        finally:
            s.close()
        status, headers, _, rest = split_head(bytes(out))
        assert status == 200 and hget(headers, "Content-Length") == "1000"
        assert rest == b"s" * 200 + b"t" * 200  # exactly what the backend sent, and nothing after it
        stalled = b.stalled_at[1]
        assert 0.55 <= closed - stalled <= 2.5, closed - stalled  # readTimeout after the last byte, not before
        assert b.wait_eof(1) is not None  # the stalled backend connection is closed too, not pooled
        e = wait_for(lambda: [x for x in p.access_entries() if x["path"] == "/echo/stall"],
                     what="the access line")
        assert len(e) == 1, e
        assert (e[0]["status"], e[0]["backendStatus"], e[0]["reason"]) == (200, 200, "Timeout"), e[0]
        assert e[0]["bytesOut"] == len(out), e[0]
    finally:
        b.close()


class TickingWsBackend(_Base):
    """A WebSocket backend: answers the upgrade with 101, echoes every frame
    but those starting with b"quiet" (counted, not answered), and answers a
    frame b"tick N" with N frames b"tock i", 150 ms apart.  Records when it
    saw the gateway end the connection."""

    def __init__(self):
        self.quiet = 0
        super().__init__()

    def serve(self, s, cid):
        got = recv_head(s)
        if got is None:
            self._mark_eof(cid)
            return
        head, _ = got
        key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:")][0]
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept_key(key.decode()).encode())
        f = s.makefile("rb")
        try:
            while True:
                try:
                    op, data = ws_read_frame(f)
                except EOFError:
                    self._mark_eof(cid)
                    return
                if data.startswith(b"quiet"):
                    with self.lock:
                        self.quiet += 1
                elif data.startswith(b"tick "):
                    for i in range(int(data[5:])):
                        time.sleep(0.15)  # the pace is the scenario: each pause is shorter than readTimeout
                        s.sendall(ws_frame(1, b"tock %d" % i))
                else:
                    s.sendall(ws_frame(op, data))
        finally:
            f.close()


WS_UPGRADE = (b"GET /echo/ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_read_timeout_closes_an_idle_websocket_tunnel(portico):
    """readTimeout bounds an idle tunnel: while bytes flow (either way) it
    stays open past the timeout many times over; once nothing moves for
    readTimeout, both the client's and the backend's connections are closed
    and the access log records the 101 with the reason Timeout."""
    b = TickingWsBackend()
    try:
        p = portico(basic_config(b.url, upstream={"readTimeout": "500ms"}))
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        f = s.makefile("rb")
        try:
            s.sendall(WS_UPGRADE)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += f.read(1)
            status, headers, _, _ = split_head(head)
            assert status == 101
            assert hget(headers, "Sec-WebSocket-Accept") == ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==")
            t_open = time.monotonic()
            # 1. only the client talks, every 150 ms for 1.2 s (more than two readTimeouts); the backend
            #    gets every frame and still answers afterwards
            for i in range(8):
                time.sleep(0.15)  # the scenario: pauses shorter than readTimeout, one direction only
                s.sendall(ws_frame(1, b"quiet %d" % i, mask=True))
            s.sendall(ws_frame(1, b"ping", mask=True))
            assert ws_read_frame(f) == (1, b"ping")
            assert b.quiet == 8
            # 2. the client falls silent; only the backend talks, every 150 ms for 1.2 s
            s.sendall(ws_frame(1, b"tick 8", mask=True))
            for i in range(8):
                assert ws_read_frame(f) == (1, b"tock %d" % i)
            last = time.monotonic()
            assert last - t_open > 2.4  # the tunnel lived almost five readTimeouts while bytes moved
            assert b.eof_at == {}
            # 3. nothing moves: the gateway closes the client's side and the backend's after readTimeout
            assert f.read(1) == b""
            closed = time.monotonic()
        finally:
            f.close()
            s.close()
        assert 0.45 <= closed - last <= 2.0, closed - last
        assert b.wait_eof(1) is not None and b.eof_at[1] - last >= 0.45
        e = wait_for(lambda: [x for x in p.access_entries() if x["path"] == "/echo/ws"],
                     what="the access line")
        assert len(e) == 1, e
        assert (e[0]["status"], e[0]["backendStatus"], e[0]["reason"]) == (101, 101, "Timeout"), e[0]
    finally:
        b.close()


# ------------------------------------------------ revisions: a management write

def served_by(backend, p, path):
    """Which revision served `path` on a fresh connection: (serviceUrl's last segment, X-Rev the
    revision's policy set) as the backend saw them, or the status of a refusal."""
    backend.clear()
    status, _, _ = p.request("GET", path)
    last = backend.last()
    if status != 200:
        assert last is None, (path, status)
        return status
    return last.target.split("/")[1], last.header("X-Rev")


def test_a_management_write_switches_the_current_revision(backend, portico):
    """Revisions 1 (current) and 2 of the API at /things, written through the
    management API.  One write (apply: revision 2 current, revision 1 not)
    switches what /things serves on every worker at once; each revision stays
    reachable by its ;rev=N path; and the same write the other way rolls back."""
    cfg = mgmt_config(backend.url, workers=2)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)

    def rev_body(n, current):
        return {"path": "things", "serviceUrl": "%s/r%d" % (backend.url, n), "subscriptionRequired": False,
                "apiRevision": str(n), "isCurrent": current}
    for n, current in ((1, True), (2, False)):
        m.ok("PUT", "apis/things-r%d" % n, rev_body(n, current))
        m.ok("PUT", "apis/things-r%d/operations/all" % n, {"method": "*", "urlTemplate": "/*"})
        m.ok("PUT", "apis/things-r%d/policies/policy" % n,
             {"inbound": [{"set-header": {"name": "X-Rev", "value": "rev %d" % n}}]})
    r1, r2 = ("r1", "rev 1"), ("r2", "rev 2")
    assert served_by(backend, p, "/things/x") == r1
    assert served_by(backend, p, "/things;rev=1/x") == r1
    assert served_by(backend, p, "/things;rev=2/x") == r2
    assert served_by(backend, p, "/things;rev=3/x") == 404

    for current, old, old_n in ((r2, r1, 1), (r1, r2, 2)):
        new_n = 3 - old_n
        out = m.ok("POST", "apply", {"apis": [dict(rev_body(old_n, False), id="things-r%d" % old_n),
                                              dict(rev_body(new_n, True), id="things-r%d" % new_n)]})
        assert out == {"applied": {"apis": 2}}
        wait_for(lambda: served_by(backend, p, "/things/x") == current, timeout=5,
                 what="/things served by revision %d" % new_n)
        # from then on every request gets the new current one (a fresh connection each: the kernel
        # spreads them over both workers)
        assert [served_by(backend, p, "/things/x") for _ in range(12)] == [current] * 12
        assert served_by(backend, p, "/things;rev=%d/x" % old_n) == old
        assert served_by(backend, p, "/things;rev=%d/x" % new_n) == current
        assert m.ok("GET", "apis/things-r%d" % new_n)["isCurrent"] is True
        assert m.ok("GET", "apis/things-r%d" % old_n)["isCurrent"] is False
    logged = wait_for(lambda: [e for e in p.access_entries() if e["path"] == "/things/x"], what="access lines")
    assert {e["api"] for e in logged} == {"things-r1", "things-r2"}


# ------------------------------------------------- portico export --include-file

def cli(m, *args):
    env = dict(os.environ, PORTICO_URL=m.url, PORTICO_ADMIN_TOKEN=TOKEN)
    r = subprocess.run([BIN] + list(args), capture_output=True, timeout=60, env=env)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def ids(doc):
    """{list name: [ids in order]} of an exported document (and whether it has a global policy)."""
    out = {k: [e["id"] for e in v] for k, v in doc.items() if k != "policies"}
    out["policies"] = "policies" in doc
    return out


def test_cli_export_include_file(backend, portico, tmp_path):
    """`portico export` writes what the management API wrote; with
    --include-file it adds what the configuration file declares (its APIs
    with their operations, products, users, named values, the global policy),
    as a document apply accepts: a gateway with an empty store takes it."""
    cfg = mgmt_config(backend.url)
    cfg["apis"][0]["operations"] = [{"id": "file-op", "method": "GET", "urlTemplate": "/f"}]
    cfg["products"] = [{"id": "file-product", "displayName": "From the file", "state": "published",
                        "apis": ["echo"]}]
    cfg["users"] = [{"id": "file-user", "email": "file@example.com"}]
    cfg["namedValues"] = [{"id": "file-value", "value": "from the file"}]
    cfg["policies"] = {"inbound": [{"set-header": {"name": "X-File", "value": "yes"}}]}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN, "PORTICO_SECRET_KEY": "k" * 32})
    m = Mgmt(p)
    m.ok("PUT", "apis/api-made", {"path": "made", "serviceUrl": backend.url + "/made",
                                  "subscriptionRequired": False})
    m.ok("PUT", "apis/api-made/operations/made-op", {"method": "POST", "urlTemplate": "/m"})
    m.ok("PUT", "products/api-product", {"displayName": "Through the API"})
    m.ok("PUT", "products/api-product/apis/api-made")
    m.ok("PUT", "users/api-user", {"email": "api@example.com"})
    m.ok("PUT", "namedValues/api-value", {"value": "through the API"})

    rc, plain, err = cli(m, "export")
    assert rc == 0 and err == "", err
    rc, full_text, err = cli(m, "export", "--include-file")
    assert rc == 0 and err == "", err
    plain, full = yaml.safe_load(plain), yaml.safe_load(full_text)
    assert ids(plain) == {"apis": ["api-made"], "products": ["api-product"], "users": ["api-user"],
                          "namedValues": ["api-value"], "policies": False}, plain
    assert ids(full) == {"apis": ["api-made", "echo"], "products": ["api-product", "file-product"],
                         "users": ["api-user", "file-user"], "namedValues": ["api-value", "file-value"],
                         "policies": True}, full
    # the file's entities as the file declares them, next to the API's own, unchanged
    by_id = {k: {e["id"]: e for e in v} for k, v in full.items() if k != "policies"}
    echo = by_id["apis"]["echo"]
    assert (echo["path"], echo["serviceUrl"], echo["subscriptionRequired"]) == \
        ("echo", backend.url + "/base", False)
    assert echo["operations"] == [{"id": "file-op", "method": "GET", "urlTemplate": "/f"}]
    assert by_id["products"]["file-product"]["apis"] == ["echo"]
    assert by_id["products"]["file-product"]["state"] == "published"
    assert by_id["users"]["file-user"]["email"] == "file@example.com"
    assert by_id["namedValues"]["file-value"]["value"] == "from the file"
    assert full["policies"] == {"inbound": [{"set-header": {"name": "X-File", "value": "yes"}}]}
    for kind in ("apis", "products", "users", "namedValues"):
        assert [e for e in full[kind] if e["id"] in {x["id"] for x in plain[kind]}] == plain[kind]
    assert plain["apis"][0]["operations"] == [{"id": "made-op", "method": "POST", "urlTemplate": "/m"}]
    assert plain["products"][0]["apis"] == ["api-made"]

    # what --include-file wrote is a document apply takes: a second gateway, whose file declares
    # none of it, ends up with every entity (now the management API's own) and exports the same
    cfg2 = mgmt_config(backend.url, data=str(tmp_path / "second"), apis=[])
    p2 = portico(cfg2, env={"PORTICO_ADMIN_TOKEN": TOKEN, "PORTICO_SECRET_KEY": "l" * 32})
    m2 = Mgmt(p2)
    f = tmp_path / "full.yaml"
    f.write_text(full_text)
    rc, out, err = cli(m2, "apply", "-f", str(f), "-o", "table")
    assert rc == 0 and out == "applied %s: apis 2 products 2 users 2 namedValues 2 policies 1\n" % f, (out, err)
    rc, again, err = cli(m2, "export")
    assert rc == 0 and again == full_text, again
    # and the second gateway serves the first one's file-declared API with its global policy
    assert p2.request("GET", "/echo/f")[0] == 200
    assert backend.last().target == "/base/f" and backend.last().header("X-File") == "yes"
