"""Malformed requests, limits and the HTTP/1.1 connection rules.

Every bad input is sent as raw bytes.  A refused request must get a JSON
error ({"statusCode": N, "message": "..."}, Content-Type application/json),
`Connection: close` and a closed socket, and none of its bytes may reach the
backend.  An accepted request must reach the backend as exactly the
normalised head the gateway writes (checked byte for byte against
backend.last().raw_head) and the decoded body.

Limits used here (LIMITS): headerSize 4k, headerCount 20, uriLength 1k,
bodySize 1k.  How they count, as measured against the binary:
  headerSize  request line + header lines + the final CRLF, in bytes;
  headerCount header fields (Host included);
  uriLength   bounds the whole request line: the line including its CR may
              be at most uriLength + 32 bytes (32 = allowance for method,
              spaces and version), so a GET URI may be up to uriLength + 18;
  bodySize    decoded body bytes (Content-Length, or the sum of chunk sizes).
"""

import base64
import json
import socket
import threading
import time

import pytest

from conftest import basic_config, parse_responses, peer_has_read, wait_for

LIMITS = {"headerSize": "4k", "headerCount": 20, "uriLength": "1k", "bodySize": "1k"}
HEADER_SIZE, HEADER_COUNT, URI_LENGTH, BODY_SIZE = 4096, 20, 1024, 1024
URI_ALLOWANCE = 32


def config(url, **extra):
    extra.setdefault("limits", dict(LIMITS))
    return basic_config(url, **extra)


# ------------------------------------------------------------------ helpers

def exchange(port, data, timeout=3.0, settle=None):
    """Sends raw bytes; returns (everything received, whether the peer closed).
    With `settle`, stops waiting for the close `settle` seconds after a first
    complete response arrived (a wrongly kept-alive connection then fails fast)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return read_until_close(s, timeout, settle)
    finally:
        s.close()


def first_response_complete(data):
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(rest) >= int(v)
    return True


def read_until_close(s, timeout=3.0, settle=None):
    out = bytearray()
    deadline = time.time() + timeout
    s.settimeout(0.1)
    settled = False
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return bytes(out), True
        if not chunk:
            return bytes(out), True
        out += chunk
        if settle is not None and not settled and first_response_complete(bytes(out)):
            settled = True
            deadline = min(deadline, time.time() + settle)
    return bytes(out), False


def read_response(s, head_request=False, timeout=3.0):
    """Reads exactly one response from a socket: (status, headers, body, raw)."""
    buf = bytearray()
    deadline = time.time() + timeout
    s.settimeout(timeout)
    while b"\r\n\r\n" not in buf:
        assert time.time() < deadline, "no complete response head: %r" % bytes(buf)
        chunk = s.recv(65536)
        assert chunk, "connection closed before a response head: %r" % bytes(buf)
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode("latin1")
    n = 0 if head_request or status < 200 or status in (204, 304) else int(headers.get("content-length", 0))
    body = bytearray(rest)
    while len(body) < n:
        assert time.time() < deadline, "body incomplete"
        chunk = s.recv(65536)
        assert chunk, "connection closed inside a body"
        body += chunk
    assert len(body) == n, "unexpected bytes after the response: %r" % bytes(body[n:])
    return status, headers, bytes(body), head + b"\r\n\r\n" + bytes(body)


def assert_error(out, closed, status, message=None):
    """`out` is exactly one JSON error response with Connection: close, and the socket was closed."""
    responses = parse_responses(out)
    assert len(responses) == 1, out
    got, headers, body = responses[0]
    statuses = status if isinstance(status, tuple) else (status,)
    assert got in statuses, out
    assert headers["content-type"] == "application/json", out
    assert int(headers["content-length"]) == len(body)
    assert headers.get("connection", "").lower() == "close", out
    doc = json.loads(body)
    assert set(doc) == {"statusCode", "message"}, doc
    assert doc["statusCode"] == got
    assert isinstance(doc["message"], str) and doc["message"], doc
    if message:
        assert message in doc["message"], doc
    assert out.endswith(body), "bytes after the error response: %r" % out
    assert closed, "the connection was not closed after a %d" % got
    return doc


def assert_ok(out, closed=None):
    responses = parse_responses(out)
    assert len(responses) == 1, out
    status, headers, body = responses[0]
    assert status == 200, out
    if closed is not None:
        assert closed
    return headers, json.loads(body)


def normalized_head(backend, request_line, headers=(), host="a", framing=b"", rid=None):
    """The head the gateway must write for a plain-http client on 127.0.0.1."""
    out = request_line + b"\r\nHost: 127.0.0.1:%d\r\n" % backend.port
    for h in headers:
        out += h + b"\r\n"
    out += b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
    if host is not None:
        out += b"X-Forwarded-Host: " + host + b"\r\nForwarded: for=127.0.0.1;host=\"" + host + b"\";proto=http\r\n"
    else:
        out += b"Forwarded: for=127.0.0.1;proto=http\r\n"
    out += b"X-Request-Id: " + rid.encode() + b"\r\n" + framing + b"\r\n"
    return out


def assert_forwarded_head(backend, request_line, headers=(), host=b"a", framing=b""):
    req = backend.last()
    assert req is not None, "nothing reached the backend"
    rid = req.header("X-Request-Id")
    assert rid
    assert req.raw_head == normalized_head(backend, request_line, headers, host, framing, rid), req.raw_head
    return req


class RawBackend:
    """A backend that records every byte each connection sent and answers
    each complete request (strict CRLF framing) with `200 ok`.  It lets a test
    check what part of a broken body reached the backend, and that chunk
    lines are re-framed (no extensions, no trailers)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.conns = []      # bytearray per connection: everything received
        self.ended = set()   # indexes in conns of the connections that are closed
        self.requests = []   # (head bytes, raw body bytes) of complete requests
        self.open = 0
        self.stop = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = bytearray()
            with self.lock:
                index = len(self.conns)
                self.conns.append(rec)
                self.open += 1
            threading.Thread(target=self._serve, args=(conn, rec, index), daemon=True).start()

    @staticmethod
    def complete(data, start):
        """End offset of the request starting at `start`, or None if incomplete/invalid."""
        end = data.find(b"\r\n\r\n", start)
        if end < 0:
            return None
        head = bytes(data[start:end]).lower()
        i = end + 4
        if b"\r\ntransfer-encoding: chunked" in head:
            while True:
                j = data.find(b"\r\n", i)
                if j < 0:
                    return None
                try:
                    size = int(bytes(data[i:j]), 16)
                except ValueError:
                    return None
                i = j + 2
                if size == 0:
                    while True:
                        j = data.find(b"\r\n", i)
                        if j < 0:
                            return None
                        if j == i:
                            return j + 2
                        i = j + 2
                if len(data) < i + size + 2 or data[i + size:i + size + 2] != b"\r\n":
                    return None
                i += size + 2
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                i += int(line.split(b":")[1])
        return i if len(data) >= i else None

    def _serve(self, conn, rec, index):
        conn.settimeout(10)
        pos = 0
        try:
            for _ in range(10000):
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                with self.lock:
                    rec += chunk
                while True:
                    end = self.complete(rec, pos)
                    if end is None:
                        break
                    head_end = rec.find(b"\r\n\r\n", pos) + 4
                    with self.lock:
                        self.requests.append((bytes(rec[pos:head_end]), bytes(rec[head_end:end])))
                    pos = end
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
        finally:
            conn.close()
            with self.lock:
                self.open -= 1
                self.ended.add(index)

    def all_closed_but(self, marker):
        """True when every connection whose bytes do not contain `marker` is closed."""
        with self.lock:
            return all(i in self.ended for i, c in enumerate(self.conns) if marker not in c)

    def received(self, but=None):
        """Everything received, or only on the connections without `but` in them."""
        with self.lock:
            return b"".join(bytes(c) for c in self.conns if but is None or but not in c)

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def raw_backend():
    b = RawBackend()
    yield b
    b.close()


def chunked_payload(raw_body):
    """Decodes a chunked body strictly: pure-hex size lines, CRLF everywhere, no trailers."""
    out = bytearray()
    i = 0
    while True:
        j = raw_body.index(b"\r\n", i)
        line = raw_body[i:j]
        assert line and all(c in b"0123456789abcdefABCDEF" for c in line), "chunk line %r" % line
        size = int(line, 16)
        i = j + 2
        if size == 0:
            assert raw_body[i:] == b"\r\n", "trailers or garbage forwarded: %r" % raw_body[i:]
            return bytes(out)
        out += raw_body[i:i + size]
        assert raw_body[i + size:i + size + 2] == b"\r\n"
        i += size + 2


# ------------------------------------------------- refused at the head: table

H = b"Host: a\r\n"


HEAD_CASES = [
    # framing: Content-Length / Transfer-Encoding
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 400, id="cl-and-te"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
                 400, id="te-and-cl"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                 400, id="two-cl-same"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                 400, id="two-cl-different"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: 1, 1\r\n\r\nh", 400, id="cl-list"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: +1_0\r\n\r\n0123456789", 400, id="cl-plus"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: -48\r\n\r\n0123456789", 400, id="cl-negative"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n0123456789", 400, id="cl-empty"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400, id="cl-hex"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
                 400, id="te-chunked-twice"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H +
                 b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, id="te-two-fields"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 501, id="te-gzip"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
                 400, id="te-chunked-not-last"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
                 400, id="te-leading-comma"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: blegh\r\n\r\n0\r\n\r\n", 501, id="te-unknown"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: \xa0chunked\r\n\r\n0\r\n\r\n",
                 400, id="te-nbsp-chunked"),
    pytest.param(b"POST /echo/x HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 400, id="te-in-http10"),
    # line endings and bytes in the head
    pytest.param(b"GET /echo/x HTTP/1.1\nHost: a\n\n", 400, id="bare-lf-everywhere"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400, id="bare-lf-header-line"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400, id="bare-cr-in-value"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"Evil: evil\x00\r\n\r\n", 400, id="nul-in-value"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\nHost: a\x00.b\r\n\r\n", 400, id="nul-in-host"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400, id="del-in-value"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Transfer-\r\nEncoding: chunked\r\n\r\n0\r\n\r\n",
                 400, id="line-without-colon"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"X : a\r\n\r\n", 400, id="space-before-colon"),
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length : 34\r\n\r\n" + b"x" * 34,
                 400, id="space-before-colon-content-length"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"Host : b\r\n\r\n", 400, id="space-before-colon-host"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400, id="obs-fold-space"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400, id="obs-fold-tab"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n Host: a\r\n\r\n", 400, id="first-header-indented"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"Header\x85: a\r\n\r\n", 400, id="name-byte-0x85"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"X\t: a\r\n\r\n", 400, id="name-tab"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"X Y: a\r\n\r\n", 400, id="name-inner-space"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b": a\r\n\r\n", 400, id="name-empty"),
    # Host
    pytest.param(b"GET /echo/x HTTP/1.1\r\n\r\n", 400, id="http11-no-host"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"Host: b\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"Host: a\r\n\r\n", 400, id="two-hosts-same"),
    # request line
    pytest.param(b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505, id="http2-version"),
    pytest.param(b"GET / HTTP/4294967295.255\r\n" + H + b"\r\n", (400, 505), id="huge-version"),
    pytest.param(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405, id="connect"),
    pytest.param(b"TRACE /echo/x HTTP/1.1\r\n" + H + b"\r\n", 405, id="trace"),
    pytest.param(b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, id="get-asterisk"),
    pytest.param(b"GET admin HTTP/1.1\r\n" + H + b"\r\n", 400, id="get-relative"),
    pytest.param(b"get /echo/x HTTP/1.1\r\n" + H + b"\r\n", 400, id="lowercase-method"),
    pytest.param(b"GET /echo/a b HTTP/1.1\r\n" + H + b"\r\n", 400, id="space-in-target"),
    pytest.param(b"GET /echo/a\tb HTTP/1.1\r\n" + H + b"\r\n", 400, id="tab-in-target"),
    pytest.param(b"GET /echo/caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400, id="raw-utf8-in-target"),
    pytest.param(b"GET /echo/a?q=\x85 HTTP/1.1\r\n" + H + b"\r\n", 400, id="high-byte-in-query"),
    pytest.param(b"GET /echo/a\x7fb HTTP/1.1\r\n" + H + b"\r\n", 400, id="del-in-target"),
    pytest.param(b"GET /echo/x HTTP/1.1\r\n" + H + b"X_Foo: a\r\n\r\n", 400, id="underscore-in-name"),
    # expectations
    pytest.param(b"POST /echo/x HTTP/1.1\r\n" + H + b"Content-Length: 10\r\nExpect: foo\r\n\r\n0123456789",
                 417, id="expect-unknown"),
]


@pytest.mark.parametrize("data,status", HEAD_CASES)
def test_bad_head_is_refused_and_never_proxied(backend, portico, data, status):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, data, settle=0.5)
    assert_error(out, closed, status)
    assert backend.requests == [] and backend.connections == 0
    # the gateway itself is fine afterwards
    out, closed = exchange(p.port, b"GET /echo/after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    _, got = assert_ok(out, closed)
    assert got["target"] == "/base/after"
    assert len(backend.requests) == 1


def test_http09_request_is_never_proxied(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, b"GET /\n")
    assert closed
    if out:
        assert_error(out, closed, 400)
    assert backend.requests == [] and backend.connections == 0


# ------------------------------------------------- refused inside the body

BODY_CASES = [
    pytest.param(b"FFFFFFFFFFFFFFFFFF1\r\nx\r\n0\r\n\r\n", b"FFFFFFFFFFFFFFFFFF1", id="chunk-size-over-2^63"),
    pytest.param(b"a\r\n0123456789\n0\r\n\r\n", b"0123456789\n", id="chunk-data-bare-lf"),
    pytest.param(b"5\nhello\r\n0\r\n\r\n", b"5\nhello", id="chunk-size-line-bare-lf"),
    pytest.param(b"5;a=b\nhello\r\n0\r\n\r\n", b"a=b", id="chunk-ext-bare-lf"),
    pytest.param(b"5\r\nhelloXX0\r\n\r\n", b"helloXX", id="chunk-data-overrun"),
    pytest.param(b"-5\r\nhello\r\n0\r\n\r\n", b"-5", id="chunk-size-negative"),
    pytest.param(b"0x5\r\nhello\r\n0\r\n\r\n", b"0x5", id="chunk-size-0x"),
    pytest.param(b"5\r\nhello\r\n0\r\nX: y\n\r\n", b"X: y", id="trailer-bare-lf"),
]


@pytest.mark.parametrize("body,evil", BODY_CASES)
def test_bad_chunked_body_is_refused(raw_backend, portico, body, evil):
    """The head is streamed to the backend before the body is read, so the
    backend sees a connection; it must never get a complete request nor the
    offending bytes."""
    p = portico(config(raw_backend.url))
    head = b"POST /echo/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    out, closed = exchange(p.port, head + body)
    assert_error(out, closed, 400)
    # A marker sent after the refusal: a backend connection the refused request opened, even a
    # late one, was opened before the marker's, so it has been accepted once the marker is answered.
    marker = b"GET /echo/marker HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    got, _ = exchange(p.port, marker)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nok"), got
    wait_for(lambda: raw_backend.all_closed_but(b"GET /base/marker "),
             what="the backend connection of the refused request to close")
    assert [h.split(b"\r\n")[0] for h, _ in raw_backend.requests] == [b"GET /base/marker HTTP/1.1"]
    # (the marker's own connection is left out: its random request id may hold the bytes)
    assert evil not in raw_backend.received(but=b"GET /base/marker ")


# ------------------------------------------------------ accepted oddities

def test_content_length_with_leading_zero_is_forwarded_canonical(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, b"POST /echo/x HTTP/1.1\r\nHost: a\r\nContent-Length: 010\r\n\r\n0123456789"
                                   b"GET /echo/next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200, 200] and closed
    assert json.loads(responses[0][2])["target"] == "/base/x"
    assert json.loads(responses[1][2])["target"] == "/base/next"
    first, second = backend.requests
    assert first.body == b"0123456789"
    rid = first.header("X-Request-Id")
    assert first.raw_head == normalized_head(backend, b"POST /base/x HTTP/1.1", framing=b"Content-Length: 10\r\n",
                                             host=b"a", rid=rid)
    assert second.target == "/base/next"


def test_high_bytes_in_value_are_forwarded_exactly(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, b"GET /echo/x HTTP/1.1\r\nHost: a\r\nX: \x85admin\xa0\r\n"
                                   b"Connection: close\r\n\r\n")
    assert_ok(out, closed)
    assert_forwarded_head(backend, b"GET /base/x HTTP/1.1", [b"X: \x85admin\xa0"])


@pytest.mark.parametrize("mode", ["drop", "allow"])
def test_underscores_in_names_only_by_choice(backend, portico, mode):
    """X_Foo is refused by default (a backend may read it as X-Foo); limits.headerUnderscores
    drops such fields or lets them through."""
    limits = dict(LIMITS, headerUnderscores=mode)
    p = portico(config(backend.url, limits=limits))
    out, closed = exchange(p.port, b"GET /echo/x HTTP/1.1\r\nHost: a\r\nX_Foo: a\r\nX-Bar: b\r\n"
                                   b"Connection: close\r\n\r\n")
    assert_ok(out, closed)
    kept = [b"X_Foo: a", b"X-Bar: b"] if mode == "allow" else [b"X-Bar: b"]
    assert_forwarded_head(backend, b"GET /base/x HTTP/1.1", kept)


def test_header_line_limit(backend, portico):
    """One header line may hold limits.headerLine bytes (without its CRLF); one more is 431, also
    when the line never ends."""
    p = portico(config(backend.url, limits=dict(LIMITS, headerLine="1k")))
    for value_len in (1024 - 7 - 1, 1024 - 7):  # "X-Pad: " + value
        line = b"X-Pad: " + b"v" * value_len
        out, closed = exchange(p.port, b"GET /echo/x HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n"
                                       b"Connection: close\r\n\r\n")
        assert_ok(out, closed)
        assert_forwarded_head(backend, b"GET /base/x HTTP/1.1", [line])
    out, closed = exchange(p.port, b"GET /echo/x HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"v" * 1018 + b"\r\n\r\n",
                           settle=0.5)
    assert_error(out, closed, 431)
    out, closed = exchange(p.port, b"GET /echo/x HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"v" * 1100)
    assert_error(out, closed, 431)
    assert len(backend.requests) == 2


def test_http10_without_host_is_fine(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, b"GET /echo/x HTTP/1.0\r\n\r\n")
    headers, got = assert_ok(out, closed)
    assert headers.get("connection") == "close"
    assert got["target"] == "/base/x"
    assert_forwarded_head(backend, b"GET /base/x HTTP/1.1", host=None)


def test_absolute_form_authority_wins_over_host(backend, portico):
    cfg = config(backend.url)
    cfg["apis"].append({"id": "echo-b", "path": "echo", "host": "b", "serviceUrl": backend.url + "/b",
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]})
    p = portico(cfg)
    out, closed = exchange(p.port, b"GET http://b/echo/x?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    _, got = assert_ok(out, closed)
    assert got["target"] == "/b/x?q=1"  # routed by the authority "b", not by Host "a"
    assert_forwarded_head(backend, b"GET /b/x?q=1 HTTP/1.1", host=b"b")
    # and the Host header alone still routes to the any-host API
    out, closed = exchange(p.port, b"GET /echo/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert assert_ok(out, closed)[1]["target"] == "/base/x"


# ------------------------------------------------------------------ limits

def padded_head(total, extra=b""):
    """A GET head of exactly `total` bytes (request line + headers + final CRLF)."""
    base = b"GET /echo/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + extra + b"X-Pad: \r\n\r\n"
    pad = total - len(base)
    assert pad >= 0
    data = base[:-4] + b"p" * pad + b"\r\n\r\n"
    assert len(data) == total
    return data, b"X-Pad: " + b"p" * pad


def test_header_size_limit(backend, portico):
    p = portico(config(backend.url))
    for total in (HEADER_SIZE - 1, HEADER_SIZE):
        data, pad = padded_head(total)
        out, closed = exchange(p.port, data)
        assert_ok(out, closed)
        assert_forwarded_head(backend, b"GET /base/x HTTP/1.1", [pad])
    n = len(backend.requests)
    for total in (HEADER_SIZE + 2, HEADER_SIZE + 100):
        out, closed = exchange(p.port, padded_head(total)[0])
        assert_error(out, closed, 431)
    # a head that never ends is cut at the limit, without waiting for its end
    out, closed = exchange(p.port, b"GET /echo/x HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * (HEADER_SIZE + 10))
    assert_error(out, closed, 431)
    assert len(backend.requests) == n == 2


def test_header_size_limit_plus_one(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, padded_head(HEADER_SIZE + 1)[0], settle=0.5)
    assert_error(out, closed, 431)
    assert backend.requests == []


def test_header_count_limit(backend, portico):
    p = portico(config(backend.url))

    def head(n):  # n header fields in all: Host, Connection and n-2 others
        extra = [b"X-%d: v" % i for i in range(n - 2)]
        return b"GET /echo/x HTTP/1.1\r\nHost: a\r\n" + b"".join(e + b"\r\n" for e in extra) + \
            b"Connection: close\r\n\r\n", extra
    for n in (HEADER_COUNT - 1, HEADER_COUNT):
        data, extra = head(n)
        out, closed = exchange(p.port, data)
        assert_ok(out, closed)
        assert_forwarded_head(backend, b"GET /base/x HTTP/1.1", extra)
    out, closed = exchange(p.port, head(HEADER_COUNT + 1)[0])
    assert_error(out, closed, 431)
    assert len(backend.requests) == 2


def test_uri_length_limit(backend, portico):
    """The request line including its CR may hold uriLength + 32 bytes."""
    p = portico(config(backend.url))
    max_line = URI_LENGTH + URI_ALLOWANCE - 1  # without CRLF
    verb = b"GET  HTTP/1.1"

    def line(n):
        uri = b"/echo/" + b"u" * (n - len(verb) - 6)
        return b"GET " + uri + b" HTTP/1.1", uri
    # the configured value itself is always honoured
    uri = b"/echo/" + b"u" * (URI_LENGTH - 6)
    out, closed = exchange(p.port, b"GET " + uri + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert_ok(out, closed)
    for n in (max_line - 1, max_line):
        l, uri = line(n)
        out, closed = exchange(p.port, l + b"\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert_ok(out, closed)
        assert_forwarded_head(backend, b"GET /base/" + uri[len(b"/echo/"):] + b" HTTP/1.1")
    count = len(backend.requests)
    for n in (max_line + 1, max_line + 2):
        l, uri = line(n)
        assert URI_LENGTH < len(uri) <= URI_LENGTH + URI_ALLOWANCE
        out, closed = exchange(p.port, l + b"\r\nHost: a\r\n\r\n")
        assert_error(out, closed, 414)
    # a request line that never ends is refused once it passes the limit
    out, closed = exchange(p.port, b"GET /echo/" + b"u" * (URI_LENGTH + 100))
    assert_error(out, closed, 414)
    assert len(backend.requests) == count == 3


def test_body_size_limit_content_length(backend, portico):
    p = portico(config(backend.url))
    for n in (BODY_SIZE - 1, BODY_SIZE):
        body = bytes(range(256)) * (n // 256) + b"z" * (n % 256)
        out, closed = exchange(p.port, b"POST /echo/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                                       b"Content-Length: %d\r\n\r\n" % n + body)
        assert_ok(out, closed)
        req = assert_forwarded_head(backend, b"POST /base/x HTTP/1.1", framing=b"Content-Length: %d\r\n" % n)
        assert req.body == body
    # over the limit: refused on the head alone, the body is never waited for
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    try:
        s.sendall(b"POST /echo/x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                  % (BODY_SIZE + 1))
        t0 = time.time()
        out, closed = read_until_close(s, 3)
        assert time.time() - t0 < 2
    finally:
        s.close()
    assert not out.startswith(b"HTTP/1.1 100")
    assert_error(out, closed, 413)
    assert len(backend.requests) == 2


def test_body_size_limit_chunked(backend, portico):
    p = portico(config(backend.url))
    half = BODY_SIZE // 2
    body = b"a" * half + b"b" * half
    data = b"POST /echo/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + \
        b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], half, body[half:])
    out, closed = exchange(p.port, data)
    _, got = assert_ok(out, closed)
    assert got["chunked"] is True and base64.b64decode(got["body"]) == body
    assert len(backend.requests) == 1
    # one byte more, in a later chunk of a body that grows while streamed
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    try:
        s.sendall(b"POST /echo/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"%x\r\n%s\r\n" % (BODY_SIZE, b"c" * BODY_SIZE))
        # the body is streamed: the gateway has read (and passed on) its first part before the rest comes
        wait_for(lambda: peer_has_read(p.proc.pid, s), what="the gateway to read the first chunk")
        s.sendall(b"1\r\nd\r\n0\r\n\r\n")
        out, closed = read_until_close(s, 3)
    finally:
        s.close()
    assert_error(out, closed, 413)
    # a marker after the refusal: had the aborted body become a request, it would have reached
    # the backend before the marker
    assert_ok(exchange(p.port, b"GET /echo/marker HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")[0])
    assert [r.target for r in backend.requests] == ["/base/x", "/base/marker"]  # the aborted body never did


def test_an_api_may_accept_less_than_the_body_limit(backend, portico):
    """apis[].bodySize lowers limits.bodySize for one API: Content-Length over it is refused on the
    head; a chunked body is cut when it grows past it; other APIs keep the global limit."""
    cfg = config(backend.url)
    cfg["apis"].append({"id": "small", "path": "small", "serviceUrl": backend.url, "subscriptionRequired": False,
                        "bodySize": 100, "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]})
    p = portico(cfg)
    for n, want in ((100, 200), (101, 413)):
        out, closed = exchange(p.port, b"POST /small/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                                       b"Content-Length: %d\r\n\r\n" % n + b"b" * n)
        if want == 200:
            assert_ok(out, closed)
        else:
            assert_error(out, closed, 413)
    assert len(backend.requests) == 1
    out, closed = exchange(p.port, b"POST /small/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"64\r\n" + b"c" * 100 + b"\r\n1\r\nd\r\n0\r\n\r\n")
    assert_error(out, closed, 413)
    out, closed = exchange(p.port, b"POST /echo/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                                   b"Content-Length: 500\r\n\r\n" + b"e" * 500)
    assert_ok(out, closed)
    # the cut chunked body never became a request: it would have reached the backend before this later one
    assert [r.target for r in backend.requests] == ["/x", "/base/x"]
    assert p.access_entries(wait_for=4)[1]["reason"] == "RequestEntityTooLarge"


def test_requests_per_connection_limit(backend, portico):
    limits = dict(LIMITS, requestsPerConnection=2)
    p = portico(config(backend.url, limits=limits))
    out, closed = exchange(p.port, b"GET /echo/1 HTTP/1.1\r\nHost: a\r\n\r\n"
                                   b"GET /echo/2 HTTP/1.1\r\nHost: a\r\n\r\n"
                                   b"GET /echo/3 HTTP/1.1\r\nHost: a\r\n\r\n")
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200, 200]
    assert "connection" not in responses[0][1]
    assert responses[1][1]["connection"] == "close" and closed
    assert [r.target for r in backend.requests] == ["/base/1", "/base/2"]


def test_error_reasons_in_access_log(backend, portico):
    p = portico(config(backend.url))
    sends = [
        (b"GET /echo/x HTTP/1.1\r\n\r\n", 400, "BadRequest"),
        (padded_head(HEADER_SIZE + 50)[0], 431, "RequestHeaderFieldsTooLarge"),
        (b"GET /echo/x HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(HEADER_COUNT))
         + b"\r\n", 431, "RequestHeaderFieldsTooLarge"),
        (b"GET /echo/" + b"u" * (URI_LENGTH + 50) + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "UriTooLong"),
        (b"POST /echo/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413, "RequestEntityTooLarge"),
        (b"POST /echo/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "NotImplemented"),
        (b"TRACE /echo/x HTTP/1.1\r\nHost: a\r\n\r\n", 405, "MethodNotAllowed"),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "HttpVersionNotSupported"),
        (b"POST /echo/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: foo\r\n\r\nx", 417,
         "ExpectationFailed"),
    ]
    for data, status, _ in sends:
        out, closed = exchange(p.port, data)
        assert_error(out, closed, status)
    entries = p.access_entries(wait_for=len(sends))
    assert [(e["status"], e.get("reason")) for e in entries] == [(s, r) for _, s, r in sends]
    assert backend.connections == 0


# ------------------------------------------------------ connection handling

def test_keepalive_many_requests_on_one_connection(backend, portico):
    p = portico(config(backend.url))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    try:
        for i in range(3):
            s.sendall(b"GET /echo/k%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            status, headers, body, _ = read_response(s)
            assert status == 200 and "connection" not in headers
            assert json.loads(body)["target"] == "/base/k%d" % i
        # a body that looks like a request is a body, not a request
        smuggled = b"GET /echo/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        s.sendall(b"POST /echo/post HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
        status, headers, body, _ = read_response(s)
        assert status == 200 and base64.b64decode(json.loads(body)["body"]) == smuggled
        s.sendall(b"GET /echo/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, headers, body, _ = read_response(s)
        assert status == 200 and headers["connection"] == "close"
        rest, closed = read_until_close(s, 3)
        assert rest == b"" and closed
    finally:
        s.close()
    assert [r.target for r in backend.requests] == ["/base/k0", "/base/k1", "/base/k2", "/base/post", "/base/last"]
    assert backend.requests[3].body == smuggled
    assert all(r.header("Connection") is None for r in backend.requests)


def test_http10_closes_unless_keepalive(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, b"GET /echo/a HTTP/1.0\r\nHost: a\r\n\r\nGET /echo/b HTTP/1.0\r\nHost: a\r\n\r\n")
    responses = parse_responses(out)
    assert len(responses) == 1 and responses[0][0] == 200 and closed
    assert responses[0][1]["connection"] == "close"
    assert [r.target for r in backend.requests] == ["/base/a"]
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    try:
        s.sendall(b"GET /echo/c HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body, _ = read_response(s)
        assert status == 200 and headers["connection"].lower() == "keep-alive"
        s.sendall(b"GET /echo/d HTTP/1.0\r\nHost: a\r\n\r\n")
        status, headers, body, _ = read_response(s)
        assert status == 200 and headers["connection"] == "close"
        rest, closed = read_until_close(s, 3)
        assert rest == b"" and closed
    finally:
        s.close()
    assert [r.target for r in backend.requests] == ["/base/a", "/base/c", "/base/d"]


def test_pipelined_requests_answered_in_order(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, b"GET /echo/p1 HTTP/1.1\r\nHost: a\r\n\r\n"
                                   b"POST /echo/p2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                                   b"GET /echo/p3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200, 200, 200] and closed
    assert [json.loads(r[2])["target"] for r in responses] == ["/base/p1", "/base/p2", "/base/p3"]
    assert [r.target for r in backend.requests] == ["/base/p1", "/base/p2", "/base/p3"]
    assert backend.requests[1].body == b"abc"


def test_pipelined_garbage_after_a_request(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, b"GET /echo/first HTTP/1.1\r\nHost: a\r\n\r\n"
                                   b"GARBAGE\r\n\r\n"
                                   b"GET /echo/leftover HTTP/1.1\r\nHost: a\r\n\r\n")
    first = parse_responses(out)[0]
    assert first[0] == 200 and json.loads(first[2])["target"] == "/base/first"
    first_len = out.index(b"\r\n\r\n") + 4 + int(first[1]["content-length"])
    error = out[first_len:]
    assert_error(error, closed, 400)
    # a marker on a new connection: the leftover, had it been forwarded, would have reached the backend before it
    assert_ok(exchange(p.port, b"GET /echo/marker HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")[0])
    assert [r.target for r in backend.requests] == ["/base/first", "/base/marker"]
    statuses = [(e["status"], e.get("reason")) for e in p.access_entries(wait_for=3)]
    assert statuses == [(200, None), (400, "BadRequest"), (200, None)]


def test_connection_close_is_honoured(backend, portico):
    p = portico(config(backend.url))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    try:
        s.sendall(b"GET /echo/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, headers, _, _ = read_response(s)
        assert status == 200 and headers["connection"] == "close"
        rest, closed = read_until_close(s, 3)
        assert rest == b"" and closed
    finally:
        s.close()
    assert backend.last().header("Connection") is None


# ----------------------------------------------------------------- bodies

def test_chunked_body_is_rechunked_without_extensions_or_trailers(raw_backend, portico):
    p = portico(config(raw_backend.url))
    out, closed = exchange(p.port, b"POST /echo/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                   b"Trailer: X-Trailer\r\nConnection: close\r\n\r\n"
                                   b"5;ext=1;y=\"q\"\r\nhello\r\n6 ; z\r\n world\r\n0;last\r\n"
                                   b"X-Trailer: t\r\nX-T2: u\r\n\r\n")
    responses = parse_responses(out)
    assert [r[0] for r in responses] == [200] and responses[0][2] == b"ok" and closed
    (head, raw_body), = raw_backend.requests
    assert head.startswith(b"POST /base/c HTTP/1.1\r\n")
    assert head.endswith(b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert b"Trailer" not in head and b"Content-Length" not in head
    assert chunked_payload(raw_body) == b"hello world"
    assert b"ext" not in raw_body and b"X-T" not in raw_body


def test_chunked_body_reaches_echo_backend_decoded(backend, portico):
    p = portico(config(backend.url))
    out, closed = exchange(p.port, b"POST /echo/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                   b"Connection: close\r\n\r\n3\r\nabc\r\n1;x=y\r\nd\r\n0\r\nT: 1\r\n\r\n")
    _, got = assert_ok(out, closed)
    assert got["chunked"] is True and base64.b64decode(got["body"]) == b"abcd"
    req = assert_forwarded_head(backend, b"POST /base/c HTTP/1.1", framing=b"Transfer-Encoding: chunked\r\n")
    assert req.body == b"abcd"


def test_expect_100_continue(backend, portico):
    p = portico(config(backend.url))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    try:
        s.sendall(b"POST /echo/e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        status, headers, body, raw = read_response(s)
        assert raw == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert backend.requests == []  # nothing complete before the body comes
        s.sendall(b"hello")
        status, headers, body, _ = read_response(s)
        assert status == 200
        assert base64.b64decode(json.loads(body)["body"]) == b"hello"
        # the connection is still usable
        s.sendall(b"GET /echo/after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, headers, body, _ = read_response(s)
        assert status == 200 and json.loads(body)["target"] == "/base/after"
    finally:
        s.close()
    req = backend.requests[0]
    assert req.header("Expect") is None and b"xpect" not in req.raw_head
    rid = req.header("X-Request-Id")
    assert req.raw_head == normalized_head(backend, b"POST /base/e HTTP/1.1", framing=b"Content-Length: 5\r\n",
                                           host=b"a", rid=rid)
    assert req.body == b"hello"


def test_head_keeps_content_length_without_body(backend, portico):
    p = portico(config(backend.url))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    try:
        s.sendall(b"HEAD /echo/head-length HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body, _ = read_response(s, head_request=True)
        assert status == 200 and headers["content-length"] == "1234" and body == b""
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            extra = s.recv(100)
            assert False, "body bytes after a HEAD response: %r" % extra
        s.sendall(b"GET /echo/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, headers, body, _ = read_response(s)
        assert status == 200 and json.loads(body)["target"] == "/base/x"
    finally:
        s.close()
    assert [(r.method, r.target) for r in backend.requests] == [("HEAD", "/base/head-length"), ("GET", "/base/x")]


@pytest.mark.parametrize("data", [b"\xc0", b"&", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"get / HTTP/1.1\r\n",
                                  b" GET / HTTP/1.1\r\n", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n"])
def test_bytes_that_cannot_begin_a_request_are_refused_at_once(backend, portico, data):
    """Not a method: 400 and close right away, not 408 after the header timeout."""
    p = portico(config(backend.url))
    t0 = time.monotonic()
    out, closed = exchange(p.port, data, timeout=5)
    assert out.startswith(b"HTTP/1.1 400 "), out
    assert closed and time.monotonic() - t0 < 2.0
    body = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert body["statusCode"] == 400 and "method" in body["message"]
    assert backend.last() is None
    # a request that starts slowly, one byte at a time, is still fine
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        for b in b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
            s.sendall(bytes([b]))
        assert read_until_close(s, 5, None)[0].startswith(b"HTTP/1.1 200 ")
    finally:
        s.close()


def test_whole_body_deadline_cuts_a_trickle(backend, portico):
    """timeouts.body bounds the whole request; bodyIdle alone bounds each
    pause, so one byte every half second is never cut without it."""
    for whole in ("1500ms", None):
        cfg = config(backend.url, timeouts={"bodyIdle": "30s", **({"body": whole} if whole else {})})
        cfg["limits"]["bodySize"] = "1m"
        p = portico(cfg)
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            t0 = time.monotonic()
            got = b""
            s.settimeout(0.05)
            for _ in range(8):  # 4 s of trickle at most
                try:
                    s.sendall(b"x")
                except OSError:
                    break
                time.sleep(0.5)  # the scenario: the trickle, one byte every half second
                try:
                    got += s.recv(65536)
                except (socket.timeout, OSError):
                    pass
                if got:
                    break
            took = time.monotonic() - t0
        finally:
            s.close()
        if whole:
            assert got.startswith(b"HTTP/1.1 408 "), got
            assert b"timeouts.body" in got and 1.4 < took < 3.0, (took, got)
        else:
            assert got == b"", got  # still trickling after 4 s: only the pauses are bounded
        p.stop()
