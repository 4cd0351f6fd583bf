"""A hostile backend must never make the gateway hand one client's response
to another.

The backend here answers every request with its caller's X-Test-Id echoed
(header X-Echo-Id and the body), so a client can tell whether the response
it got is its own.  Some paths misbehave the way a broken or hostile
backend does: a HEAD or 304 answer that announces a body and sends it
anyway, later; a complete answer followed by more bytes; interim responses
without end.  The bytes sent "too many" are themselves a whole response
(X-Smuggled: yes, body EVIL): a gateway that reuses the connection reads
them as the next request's response, and from then on every client on that
connection gets the previous one's answer.
"""

import http.client
import json
import socket
import threading
import time

import pytest

from conftest import free_port, parse_responses
from upstream_helpers import _Base, _read_body, _read_head, recv_head

SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Smuggled: yes\r\n\r\nEVIL"
assert len(SMUGGLED) == 59


class HostileBackend(_Base):
    """Serves each connection in order, one request at a time.

    /ok              200 with the caller's id
    /head-late?d=MS  (HEAD) head with Content-Length: 59, the 59 bytes MS later
    /304-body?d=MS   304 with Content-Length: 59, the 59 bytes MS later
    /304-chunked?d=MS 304 announcing chunking, a chunked SMUGGLED MS later
    /late-extra?d=MS a complete 200 with the caller's id, SMUGGLED MS later
    /interim?n=N     N "100 Continue" heads, then a 200
    """

    def __init__(self):
        self.requests = []   # (conn_id, method, path, test id)
        super().__init__()

    def serve(self, s, cid):
        f = s.makefile("rb")
        try:
            self._serve(s, f, cid)
        except ConnectionResetError:
            self._mark_eof(cid)  # closed with our extra bytes unread: a reset
        finally:
            f.close()

    def _serve(self, s, f, cid):
        while True:
            head = _read_head(f)
            if head is None:
                self._mark_eof(cid)
                return
            method, target, _version, headers = head
            _read_body(f, headers)
            tid = dict((k.lower(), v) for k, v in headers).get("x-test-id", "")
            path, _, query = target.partition("?")
            args = dict(p.partition("=")[::2] for p in query.split("&") if p)
            path = path[len("/base"):] if path.startswith("/base") else path
            with self.lock:
                self.requests.append((cid, method, path, tid))
            self.answer(s, method, path, args, tid)

    @staticmethod
    def ok(tid, method="GET"):
        body = json.dumps({"id": tid}).encode()
        return (b"HTTP/1.1 200 OK\r\nX-Echo-Id: %s\r\nContent-Length: %d\r\n\r\n" % (tid.encode(), len(body))
                + (b"" if method == "HEAD" else body))

    def answer(self, s, method, path, args, tid):
        d = int(args.get("d", "0")) / 1000.0
        if path == "/head-late":
            s.sendall(b"HTTP/1.1 200 OK\r\nX-Echo-Id: %s\r\nContent-Length: 59\r\n\r\n" % tid.encode())
            time.sleep(d)
            s.sendall(SMUGGLED)
        elif path == "/304-body":
            s.sendall(b"HTTP/1.1 304 Not Modified\r\nX-Echo-Id: %s\r\nContent-Length: 59\r\n\r\n" % tid.encode())
            time.sleep(d)
            s.sendall(SMUGGLED)
        elif path == "/304-chunked":
            s.sendall(b"HTTP/1.1 304 Not Modified\r\nX-Echo-Id: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                      % tid.encode())
            time.sleep(d)
            s.sendall(b"3b\r\n" + SMUGGLED + b"\r\n0\r\n\r\n")
        elif path == "/late-extra":
            s.sendall(self.ok(tid, method))
            time.sleep(d)
            s.sendall(SMUGGLED)
        elif path == "/interim":
            n = int(args.get("n", "1"))
            for _ in range(n):
                s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(self.ok(tid, method))
        else:
            s.sendall(self.ok(tid, method))

    def conns_of(self, tid):
        with self.lock:
            return {c for c, _m, _p, t in self.requests if t == tid}

    def served_on(self, cid):
        with self.lock:
            return [t for c, _m, _p, t in self.requests if c == cid]


@pytest.fixture
def hostile():
    b = HostileBackend()
    yield b
    b.close()


def gw_config(url, workers=1):
    return {
        "listen": ["127.0.0.1:%d" % free_port()],
        "workers": workers,
        "upstream": {"readTimeout": "3s"},
        "apis": [{
            "id": "h", "path": "h", "serviceUrl": url + "/base", "subscriptionRequired": False,
            "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
        }],
    }


def get(port, method, path, tid, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, headers={"X-Test-Id": tid})
        r = c.getresponse()
        body = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body
    finally:
        c.close()


def head_then_next(port, path, tid):
    """Sends `path` as client A and returns as soon as A has its response head
    (the late bytes are still to come), keeping A's connection open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    method = b"HEAD" if "head" in path else b"GET"
    s.sendall(b"%s /h%s HTTP/1.1\r\nHost: t\r\nX-Test-Id: %s\r\n\r\n" % (method, path.encode(), tid.encode()))
    got = recv_head(s)
    return s, (got[0] + b"\r\n\r\n" + got[1]) if got else b""


def assert_own(resp, tid):
    status, headers, body = resp
    assert "x-smuggled" not in headers, (tid, headers, body)
    assert status == 200, (tid, status, body)
    assert headers.get("x-echo-id") == tid, (tid, headers, body)
    assert json.loads(body)["id"] == tid


@pytest.mark.parametrize("delay", [0, 10, 50, 300])
@pytest.mark.parametrize("kind", ["head-late", "304-body", "304-chunked"])
def test_bodyless_answer_with_body_never_reaches_the_next_client(portico, hostile, kind, delay):
    p = portico(gw_config(hostile.url))
    a, head = head_then_next(p.port, "/%s?d=%d" % (kind, delay), "A")
    try:
        status = int(head.split(b" ")[1])
        assert status == (200 if kind == "head-late" else 304), head
        assert b"x-echo-id: a" in head.lower()
        # B and C come while A's late bytes are still on their way
        assert_own(get(p.port, "GET", "/h/ok", "B"), "B")
        assert_own(get(p.port, "GET", "/h/ok", "C"), "C")
        time.sleep(delay / 1000.0 + 0.05)
        assert_own(get(p.port, "GET", "/h/ok", "D"), "D")
    finally:
        a.close()
    # the backend side: the connection that answered A carried nothing else
    (conn_a,) = hostile.conns_of("A")
    assert hostile.served_on(conn_a) == ["A"]
    assert hostile.wait_eof(conn_a) is not None, "the gateway kept A's connection open"


@pytest.mark.parametrize("delay", [0, 10, 50, 300])
def test_late_bytes_after_a_complete_answer_do_not_shift_the_pool(portico, hostile, delay):
    """A complete 200, then a whole extra response `delay` ms later.  A client
    that takes the connection before the extra bytes arrive may get them (they
    come from the backend it addressed); nobody ever gets another client's
    answer, and the backend's connections stop being reused."""
    p = portico(gw_config(hostile.url))
    a, head = head_then_next(p.port, "/late-extra?d=%d" % delay, "A")
    try:
        assert b"x-echo-id: a" in head.lower()
        got = {}
        for tid in ("B", "C", "D", "E"):
            got[tid] = get(p.port, "GET", "/h/ok", tid)
            time.sleep(0.02)
        for tid, (status, headers, body) in got.items():
            echo = headers.get("x-echo-id")
            assert echo in (None, tid), "client %s got %s's response" % (tid, echo)
            if echo is None:
                assert headers.get("x-smuggled") == "yes" and body == b"EVIL", (tid, status, headers, body)
        # once the extra bytes were seen, the pool is off for this backend
        time.sleep(delay / 1000.0 + 0.1)
        for tid in ("F", "G", "H"):
            assert_own(get(p.port, "GET", "/h/ok", tid), tid)
    finally:
        a.close()
    assert "unrequested" in p.log_text()
    # F, G and H went out on connections of their own
    conns = [hostile.conns_of(t) for t in ("F", "G", "H")]
    assert len(set().union(*conns)) == 3, conns


@pytest.mark.parametrize("kind", ["head-late", "304-body"])
def test_pipelined_request_after_a_bodyless_answer(portico, hostile, kind):
    p = portico(gw_config(hostile.url))
    method = b"HEAD" if kind == "head-late" else b"GET"
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"%s /h/%s?d=10 HTTP/1.1\r\nHost: t\r\nX-Test-Id: P1\r\n\r\n"
                  b"GET /h/ok HTTP/1.1\r\nHost: t\r\nX-Test-Id: P2\r\n\r\n" % (method, kind.encode()))
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and data.count(b"X-Echo-Id") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        time.sleep(0.1)
        s.settimeout(0.2)
        try:
            data += s.recv(65536)
        except socket.timeout:
            pass
    finally:
        s.close()
    assert b"X-Smuggled" not in data and b"EVIL" not in data, data
    first_head, rest = data.split(b"\r\n\r\n", 1)
    assert b"X-Echo-Id: P1" in first_head
    (second,) = parse_responses(rest)
    assert second[0] == 200 and second[1]["x-echo-id"] == "P2", data


def test_interim_responses_are_capped(portico, hostile):
    p = portico(gw_config(hostile.url))
    assert_own(get(p.port, "GET", "/h/interim?n=16", "I1"), "I1")  # 16 are fine
    t0 = time.monotonic()
    status, headers, body = get(p.port, "GET", "/h/interim?n=100000", "I2")
    assert status == 502, body
    assert json.loads(body)["statusCode"] == 502
    assert time.monotonic() - t0 < 2.5  # refused at the 17th, not at the read timeout
    assert "too many interim" in p.log_text()
    assert_own(get(p.port, "GET", "/h/ok", "I3"), "I3")


def test_no_misdelivery_under_load(portico, hostile):
    """4 clients on keep-alive connections for 1.5 s; hostile HEAD and 304
    answers in the middle; every response must carry its own client's id."""
    p = portico(gw_config(hostile.url))
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"ok": 0, "wrong": [], "errors": 0}

    def client(n):
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
        for i in range(20000):  # bounded; the time limit below ends it first
            if stop.is_set():
                break
            tid = "c%d-%d" % (n, i)
            try:
                c.request("GET", "/h/ok", headers={"X-Test-Id": tid})
                r = c.getresponse()
                body = r.read()
                echo = r.getheader("X-Echo-Id")
            except (OSError, http.client.HTTPException):
                with lock:
                    stats["errors"] += 1
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
                continue
            with lock:
                if echo == tid and json.loads(body)["id"] == tid and r.getheader("X-Smuggled") is None:
                    stats["ok"] += 1
                else:
                    stats["wrong"].append((tid, echo, r.getheader("X-Smuggled")))
        c.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    for i, kind in enumerate(["head-late", "304-body", "head-late", "304-chunked"]):
        a, _ = head_then_next(p.port, "/%s?d=%d" % (kind, 10 * (i + 1)), "hostile-%d" % i)
        time.sleep(0.2)
        a.close()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert stats["wrong"] == [], stats["wrong"][:10]
    assert stats["errors"] == 0
    assert stats["ok"] > 200, stats  # the test did put load through
