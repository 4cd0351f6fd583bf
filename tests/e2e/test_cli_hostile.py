"""The CLI against a server that misbehaves and against input it cannot
send: every read is bounded in size and time, every case ends with a clear
message and exit 1, never a crash, a hang or a silent death."""

import json
import os
import resource
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN
from mgmt_helpers import TOKEN, Mgmt, mgmt_config
from upstream_helpers import _Base, recv_head


class HostileManager(_Base):
    """Answers every request the way `mode` says."""

    def __init__(self, mode):
        self.mode = mode
        self.requests = 0
        self.paths = []
        super().__init__()

    def serve(self, s, cid):
        s.settimeout(30)
        head = recv_head(s)
        if head is None:
            return
        if self.mode == "huge-length":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n" + b"x" * 65536)
            time.sleep(2)
        elif self.mode == "endless-body":
            s.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
            for _ in range(4096):  # 256 MiB at most
                s.sendall(b"x" * 65536)
        elif self.mode == "endless-chunks":
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(4096):
                s.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n")
        elif self.mode == "endless-headers":
            s.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(100000):
                s.sendall(b"X-H-%d: yyyyyyyyyyyyyyyyyyyyyyyy\r\n" % i)
        elif self.mode == "silent":
            time.sleep(10)
        elif self.mode == "garbage":
            s.sendall(b"\x00\x01 not http at all\r\n\r\n")
        elif self.mode in JSON_ANSWERS or self.mode == "cycle":
            self.requests += 1
            target = head[0].split(b" ")[1].decode() if head else ""
            self.paths.append(target)
            status, doc = JSON_ANSWERS[self.mode] if self.mode != "cycle" else cycle_page(target)
            body = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
            s.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n" % (status, len(body)) + body)


ESC = "\x1b]0;owned\x07\x1b[2J"
C1 = "\u009b2J\u0085"


def cycle_page(target):
    """Page A links to page B, which links back to A."""
    b = "page=b" in target
    return 200, {"value": [{"id": "b" if b else "a"}],
                 "nextLink": "http://127.0.0.1:1/management/apis?$top=1000" + ("" if b else "&page=b")}
# answers that are JSON but not what the CLI expects
JSON_ANSWERS = {
    # an error whose text would drive the terminal, and is long
    "escape-error": (400, {"error": {"code": "Bad" + ESC, "message": ESC + "m" * 100000,
                                     "details": [{"target": ESC, "message": ESC}] * 5000}}),
    # a list that never ends: its next page is itself, or another host's
    "self-next": (200, {"value": [{"id": "x" + ESC}], "nextLink": "http://127.0.0.1:1/management/apis?$top=1000"}),
    "far-next": (200, {"value": [{"id": "y"}], "nextLink": "http://evil.example/elsewhere"}),
    # a next page in another collection: its items are not the list's
    "foreign-next": (200, {"value": [{"id": "y"}], "nextLink": "http://evil.example/management/users?$top=1"}),
    # server text with escapes and C1 controls (U+009B is CSI) in keys, values and summaries
    "esc-key": (200, {ESC + "key" + C1: "v" + C1, "id": "a"}),
    "esc-secrets": (200, {"primaryKey": "\x1b[31mred" + C1, "secondaryKey": C1 + "2J"}),
    "esc-import": (200, {"path": "p" + ESC, "import": {"created": ["c" + ESC], "updated": [C1 + "u"],
                                                     "deleted": [], "unchanged": [], "warnings": ["w" + ESC]}}),
    "esc-apply": (200, {"applied": {"apis" + ESC + C1: 1}}),
    "esc-export": (200, "openapi: 3.0.0\ninfo: {title: '" + ESC + C1 + "'}\n"),
    # shapes that are not a list or an entity
    "value-not-list": (200, {"value": {"id": "z"}}),
    "show-array": (200, [1, 2, {"id": ESC}]),
    "show-empty": (200, ""),
    "deep": (200, '{"value": [{"id": ' + "[" * 5000 + "]" * 5000 + "}]}"),  # as text: deeper than Python nests
}


def _sanitized():
    """An ASan build reserves terabytes of address space: no RLIMIT_AS there."""
    out = subprocess.run([BIN, "-v"], capture_output=True, text=True, timeout=10).stdout
    return "AddressSanitizer" in out


SANITIZED = _sanitized()


def cli(*args, url=None, env_extra=None, limit_mb=None, timeout=60):
    e = dict(os.environ, PORTICO_ADMIN_TOKEN=TOKEN)
    if url:
        e["PORTICO_URL"] = url
    e.update(env_extra or {})

    def cap():
        if limit_mb and not SANITIZED:
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))
    t0 = time.monotonic()
    r = subprocess.run([BIN] + list(args), capture_output=True, timeout=timeout, env=e, preexec_fn=cap)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"), time.monotonic() - t0


@pytest.mark.parametrize("mode, says", [
    ("huge-length", "larger than 64 MiB"),
    ("endless-body", "larger than 64 MiB"),
    ("endless-chunks", "larger than 64 MiB"),
    ("endless-headers", "invalid response"),
    ("garbage", "invalid response"),
    ("silent", "did not answer within 1 s"),
])
def test_cli_bounds_what_it_reads(mode, says):
    srv = HostileManager(mode)
    try:
        # under a 400 MB address-space limit: the CLI may not grow without bound
        rc, out, err, took = cli("api", "list", "--timeout", "1" if mode == "silent" else "20", url=srv.url,
                                 limit_mb=400)
    finally:
        srv.close()
    assert rc == 1, (rc, out, err)
    assert says in err, err
    assert took < 15


def test_cli_apply_refuses_what_it_cannot_send(backend, portico, workdir):
    p = portico(mgmt_config(backend.url),
                env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    url = m.url
    # a directory
    rc, _, err, _ = cli("apply", "-f", workdir, url=url)
    assert rc == 1 and "Is a directory" in err, err
    # an endless file
    rc, _, err, _ = cli("apply", "-f", "/dev/zero", url=url, limit_mb=400)
    assert rc == 1 and "larger than 64 MiB" in err, err
    # 52 MB, over the server's limit (4 MB by default): told so, no SIGPIPE death
    big = os.path.join(workdir, "big.yaml")
    with open(big, "wb") as f:
        f.write(b"# " + b"a" * (52 * 1000 * 1000) + b"\n")
    rc, _, err, took = cli("apply", "-f", big, url=url)
    assert rc == 1 and "larger than the management API accepts" in err, (rc, err)
    assert took < 10
    # a missing file
    rc, _, err, _ = cli("apply", "-f", os.path.join(workdir, "nope.yaml"), url=url)
    assert rc == 1 and "No such file" in err
    # the server is unharmed
    assert m.call("GET", "apis")[0] == 200
    # a bad --timeout is a usage error
    rc, _, err, _ = cli("api", "list", "--timeout", "0", url=url)
    assert rc == 2 and "--timeout" in err


def _hostile_cli(mode, *args):
    srv = HostileManager(mode)
    try:
        rc, out, err, took = cli(*args, url=srv.url, limit_mb=400)
    finally:
        srv.close()
    return rc, out, err, srv.requests


@pytest.mark.parametrize("output", ["table", "json", "yaml"])
def test_cli_answers_it_does_not_expect(output):
    """Well-formed JSON of the wrong shape, text with escape sequences, lists
    that never end: a clear result, nothing of the server's control bytes on
    the terminal, a bounded number of requests."""
    rc, out, err, n = _hostile_cli("escape-error", "api", "show", "a", "-o", output)
    assert rc == 1 and "\x1b" not in err and "400 Bad" in err, err[:300]
    assert len(err) < 2000 * 110 and "more)" in err  # each message and the number of details capped
    rc, out, err, n = _hostile_cli("self-next", "api", "list", "-o", output)
    assert rc == 0 and n == 1, (rc, n, err)
    if output == "table":
        assert "\x1b" not in out and "x?]0;owned" in out
    rc, out, err, n = _hostile_cli("far-next", "api", "list", "-o", output)
    assert rc == 0 and n == 1 and "y" in out  # the CLI never follows a link off its server
    srv = HostileManager("foreign-next")
    try:
        rc, out, err, _ = cli("api", "list", "-o", output, url=srv.url)
    finally:
        srv.close()
    assert rc == 0 and srv.paths == ["/management/apis?$top=1000"], (rc, srv.paths, err)
    rc, out, err, n = _hostile_cli("value-not-list", "api", "list", "-o", output)
    assert rc == 1 and "not a list" in err
    rc, out, err, n = _hostile_cli("show-array", "api", "show", "a", "-o", output)
    assert rc == 1 and "not an entity" in err and out == "", (rc, out, err)
    rc, out, err, n = _hostile_cli("show-empty", "api", "show", "a", "-o", output)
    assert rc == 1 and "not an entity" in err and out == "", (rc, out, err)
    rc, out, err, n = _hostile_cli("deep", "api", "list", "-o", output)
    assert rc == 1 and "not JSON" in err and "Sanitizer" not in err, err


def test_cli_list_ends_any_cycle_of_next_links():
    srv = HostileManager("cycle")
    try:
        rc, out, err, _ = cli("api", "list", url=srv.url)
    finally:
        srv.close()
    assert rc == 0, err
    assert srv.paths == ["/management/apis?$top=1000", "/management/apis?$top=1000&page=b"], srv.paths
    assert [a["id"] for a in json.loads(out)] == ["a", "b"]


def run_tty(*args, url):
    """(exit status, what a terminal would show) of the CLI with its stdout on a pseudo-terminal."""
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([BIN] + list(args), stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                             env=dict(os.environ, PORTICO_ADMIN_TOKEN=TOKEN, PORTICO_URL=url))
        os.close(slave)
        got = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            got += chunk
        return p.wait(timeout=60), got
    finally:
        os.close(master)


@pytest.mark.parametrize("mode, args", [
    ("esc-key", ["api", "show", "a"]),
    ("esc-key", ["api", "show", "a", "-o", "json"]),
    ("esc-key", ["api", "show", "a", "-o", "yaml"]),
    ("esc-secrets", ["subscription", "keys", "s"]),
    ("esc-secrets", ["subscription", "regenerate", "s", "--secondary"]),
    ("esc-import", ["api", "import", "/dev/null", "--id", "i", "--format", "openapi"]),
    ("esc-apply", ["apply", "-f", "/dev/null"]),
    ("esc-export", ["export"]),
    ("esc-export", ["api", "export", "a"]),
])
def test_cli_puts_no_control_bytes_on_a_terminal(mode, args):
    """Keys, key values, import and apply summaries, exports: on a terminal,
    neither ESC nor a C1 control (U+0080-U+009F) of the server's arrives."""
    srv = HostileManager(mode)
    try:
        rc, got = run_tty(*args, url=srv.url)
    finally:
        srv.close()
    assert rc == 0, got
    assert b"\x1b" not in got and b"\xc2\x9b" not in got and b"\xc2\x85" not in got, got
    assert srv.requests >= 1 and (b"?" in got or b"\\u009B" in got), got  # replaced, or escaped in JSON
