"""Streaming: WebSocket tunnelling (plain and TLS listeners), 1 GB bodies in
both directions with bounded gateway memory, backpressure towards a slow
client, and chunk-by-chunk delivery of a slow backend stream.

The big transfers can be skipped with PORTICO_SKIP_BIG=1 (they run by default).
"""

import base64
import hashlib
import json
import os
import socket
import struct
import signal
import tempfile
import threading
import time

import pytest

from backends import EchoBackend, ws_accept_key, ws_frame, ws_read_frame
from upstream_helpers import _Base, recv_head
from conftest import basic_config, free_port
from tls_helpers import Pki, client_context, read_http_response, tls_connect

big = pytest.mark.skipif(os.environ.get("PORTICO_SKIP_BIG") == "1", reason="PORTICO_SKIP_BIG=1")

MiB = 1 << 20
RSS_LIMIT_KB = 64 * 1024  # peak RSS of the gateway after a big transfer


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="portico-pki-") as d:
        p = Pki(d)
        p.server = p.leaf("server", "localhost", ["DNS:localhost"])
        yield p


@pytest.fixture
def sink_backend():
    b = EchoBackend(sink_all=True)
    yield b
    b.close()


def with_tls_listener(cfg, pki):
    tls_port = free_port()
    cert, key = pki.server
    cfg["listen"] = cfg["listen"] + [{"address": "127.0.0.1:%d" % tls_port, "certificate": cert, "key": key}]
    return tls_port


def connect(p, tls_port=None, pki=None, timeout=30.0):
    if tls_port:
        return tls_connect(tls_port, pki.ca, "localhost", timeout=timeout)
    return socket.create_connection(("127.0.0.1", p.port), timeout=timeout)


def fd_count(p):
    return len(os.listdir("/proc/%d/fd" % p.proc.pid))


def wait_fd_count(p, target, timeout=5.0):
    deadline = time.time() + timeout
    n = fd_count(p)
    while n > target and time.time() < deadline:
        time.sleep(0.02)
        n = fd_count(p)
    return n


def recv_closed(sock, timeout=5.0):
    """True when the peer closes (EOF or reset) within `timeout` without sending more data."""
    sock.settimeout(timeout)
    try:
        extra = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    except OSError:
        return True
    assert extra == b"", "unexpected bytes after the close: %r" % extra[:100]
    return True


# ---------------------------------------------------------------- WebSocket

def settled_fd_count(p, timeout=3.0):
    """The gateway's descriptor count once it stops changing (the readiness probe may still be closing)."""
    deadline = time.time() + timeout
    last = fd_count(p)
    while time.time() < deadline:
        time.sleep(0.1)
        n = fd_count(p)
        if n == last:
            return n
        last = n
    return last


UPGRADE = ("GET %s HTTP/1.1\r\nHost: ws.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: http://ws.example\r\n\r\n")


def ws_open(sock, path="/echo/ws", first_frame=None):
    """Sends the upgrade request (and `first_frame` right behind it, if given) and reads the 101 head."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((UPGRADE % (path, key)).encode() + (first_frame or b""))
    f = sock.makefile("rb")
    status, headers, _ = read_http_response(f, head_only=True)
    return key, status, headers, f


def check_101(backend, key, status, headers):
    assert status == 101
    assert headers.get("sec-websocket-accept") == ws_accept_key(key)
    assert headers.get("upgrade", "").lower() == "websocket"
    assert "upgrade" in [t.strip() for t in headers.get("connection", "").lower().split(",")]
    req = backend.last()
    assert req is not None and req.method == "GET" and req.target == "/base/ws"
    assert req.header("Upgrade", "").lower() == "websocket"
    assert "upgrade" in req.header("Connection", "").lower()
    assert req.header("Sec-WebSocket-Key") == key
    assert req.header("Sec-WebSocket-Version") == "13"


def ws_roundtrips(sock, f):
    messages = [
        (1, "hello".encode()),
        (2, bytes(range(256))),
        (1, "üñíçødé ✓".encode()),
        (2, b""),
        (2, os.urandom(100 * 1024)),      # 100 KB, 64-bit length
        (1, b"x" * 125), (1, b"y" * 126), (2, os.urandom(65535)), (2, os.urandom(65536)),
        (9, b"ping!"),                    # control frames go through too
        (1, b"last"),
    ]
    for op, data in messages:
        sock.sendall(ws_frame(op, data, mask=True))
        got_op, got = ws_read_frame(f)
        assert (got_op, len(got)) == (op, len(data))
        assert got == data
    # several frames in one write come back in order
    sock.sendall(b"".join(ws_frame(2, struct.pack(">I", i) * 100, mask=True) for i in range(20)))
    for i in range(20):
        assert ws_read_frame(f) == (2, struct.pack(">I", i) * 100)
    # close handshake: the close frame is echoed
    sock.sendall(ws_frame(8, struct.pack(">H", 1000) + b"bye", mask=True))
    assert ws_read_frame(f) == (8, struct.pack(">H", 1000) + b"bye")


def ws_client(p, tls_port, pki):
    if tls_port:
        return tls_connect(tls_port, pki.ca, "localhost", timeout=5)
    return socket.create_connection(("127.0.0.1", p.port), timeout=5)


def ws_gateway(backend, pki, tls):
    cfg = basic_config(backend.url)
    tls_port = with_tls_listener(cfg, pki) if tls else None
    return cfg, tls_port


@pytest.mark.parametrize("tls", [
    pytest.param(False, id="plain"),
    pytest.param(True, id="tls"),
])
def test_websocket_101_reaches_client_before_it_sends_anything(backend, portico, pki, tls):
    """A client waits for the 101 before sending frames (RFC 6455 4.1); some protocols have the server speak first."""
    cfg, tls_port = ws_gateway(backend, pki, tls)
    p = portico(cfg)
    with ws_client(p, tls_port, pki) as sock:
        key, status, headers, f = ws_open(sock)
        check_101(backend, key, status, headers)
        sock.sendall(ws_frame(1, b"after the 101", mask=True))
        assert ws_read_frame(f) == (1, b"after the 101")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_websocket_tunnel(backend, portico, pki, tls):
    cfg, tls_port = ws_gateway(backend, pki, tls)
    p = portico(cfg)
    fds = settled_fd_count(p)
    sock = ws_client(p, tls_port, pki)
    try:
        # the first frame rides along with the upgrade request: this works around the 101 flush bug
        # (test_websocket_101_reaches_client_before_it_sends_anything) and checks that early bytes survive
        key, status, headers, f = ws_open(sock, first_frame=ws_frame(1, b"early", mask=True))
        check_101(backend, key, status, headers)
        assert ws_read_frame(f) == (1, b"early")
        assert fd_count(p) >= fds + 2  # client and backend connections
        ws_roundtrips(sock, f)
        # the client ends its side after the close handshake: both connections go away
        if tls:
            sock.close()  # (ssl.SSLSocket cannot half-close)
        else:
            sock.shutdown(socket.SHUT_WR)
            assert recv_closed(sock), "the gateway kept the client connection open"
    finally:
        sock.close()
    assert wait_fd_count(p, fds) <= fds, "connections left open in the gateway"
    assert len(backend.requests) == 1
    if tls:
        assert backend.last().header("X-Forwarded-Proto") == "https"
    assert p.request("GET", "/echo/items/1")[0] == 200
    e = [e for e in p.access_entries(wait_for=2) if e["path"] == "/echo/ws"][-1]
    assert e["status"] == 101


class ClosingWsBackend:
    """Answers the upgrade, waits for one frame, then after `delay` s sends a close frame and closes:
    the server-initiated end of a WebSocket session."""

    def __init__(self, delay=0.4):
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.frame_seen = threading.Event()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(20)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20)
            f = conn.makefile("rb")
            head = b""
            while not head.endswith(b"\r\n\r\n") and len(head) < 65536:
                line = f.readline(65536)
                if not line:
                    return
                head += line
            key = ""
            for line in head.split(b"\r\n"):
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"sec-websocket-key":
                    key = v.strip().decode()
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept_key(key)).encode())
            ws_read_frame(f)
            self.frame_seen.set()
            time.sleep(self.delay)
            conn.sendall(ws_frame(8, struct.pack(">H", 1001) + b"going away"))
        self.closed.set()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_websocket_backend_close_ends_client_connection(portico, pki, tls):
    wsb = ClosingWsBackend(delay=0.4)
    try:
        cfg = basic_config(wsb.url)
        tls_port = with_tls_listener(cfg, pki) if tls else None
        p = portico(cfg)
        fds = settled_fd_count(p)
        with ws_client(p, tls_port, pki) as sock:
            key, status, headers, f = ws_open(sock, first_frame=ws_frame(1, b"hello", mask=True))
            assert status == 101 and headers.get("sec-websocket-accept") == ws_accept_key(key)
            assert wsb.frame_seen.wait(5)
            # a busy gateway: the close frame and the FIN are both waiting when it next reads
            p.send_signal(signal.SIGSTOP)
            try:
                assert wsb.closed.wait(5)
                time.sleep(0.2)
            finally:
                p.send_signal(signal.SIGCONT)
            assert ws_read_frame(f) == (8, struct.pack(">H", 1001) + b"going away")
            assert recv_closed(sock, timeout=5), "the backend closed the tunnel but the client connection stays open"
        assert wait_fd_count(p, fds) <= fds
    finally:
        wsb.close()


def test_websocket_client_disconnect_closes_backend_side(backend, portico):
    p = portico(basic_config(backend.url))
    fds = settled_fd_count(p)
    sock = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    key, status, headers, f = ws_open(sock, first_frame=ws_frame(1, b"one", mask=True))
    assert status == 101
    assert ws_read_frame(f) == (1, b"one")
    assert fd_count(p) >= fds + 2  # client and backend connections are open
    f.close()
    sock.close()  # no close frame: just gone
    assert wait_fd_count(p, fds) <= fds, "the backend side of the tunnel was not closed"
    assert p.request("GET", "/echo/items/1")[0] == 200


# ------------------------------------------------------ big bodies, bounded RSS

def send_body(sock, total, chunked=False, block=MiB):
    """Sends `total` bytes of generated data (each block numbered), returns its sha256."""
    h = hashlib.sha256()
    base = bytearray(os.urandom(block))
    sent = 0
    i = 0
    sizes = (block, block - 1, 4093, block)  # vary chunk sizes for the chunked case
    while sent < total:
        n = min(sizes[i % len(sizes)] if chunked else block, total - sent)
        base[:8] = struct.pack(">Q", i)
        data = memoryview(base)[:n]
        h.update(data)
        if chunked:
            sock.sendall(b"%x\r\n" % n)
            sock.sendall(data)
            sock.sendall(b"\r\n")
        else:
            sock.sendall(data)
        sent += n
        i += 1
    if chunked:
        sock.sendall(b"0\r\n\r\n")
    return h.hexdigest()


def upload(p, backend, total, chunked, sock):
    if chunked:
        head = b"POST /echo/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    else:
        head = b"POST /echo/upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total
    sock.sendall(head)
    digest = send_body(sock, total, chunked=chunked)
    status, headers, body = read_http_response(sock.makefile("rb"))
    assert status == 200, body[:300]
    assert json.loads(body) == {"length": total, "sha256": digest}
    req = backend.last()
    assert req.target == "/base/upload" and req.body_len == total and req.body_sha256 == digest


@big
def test_upload_1gb_content_length_bounded_memory(sink_backend, portico):
    total = 1_000_000_000
    p = portico(basic_config(sink_backend.url))
    with socket.create_connection(("127.0.0.1", p.port), timeout=120) as s:
        upload(p, sink_backend, total, False, s)
    assert not sink_backend.last().chunked
    assert sink_backend.last().header("Content-Length") == str(total)
    peak = p.rss_kb("VmHWM")
    assert peak < RSS_LIMIT_KB, "gateway peak RSS %d KiB after a 1 GB upload" % peak
    e = p.access_entries(wait_for=1)[-1]
    assert e["status"] == 200 and e["bytesIn"] >= total


@big
def test_upload_256mb_chunked_bounded_memory(sink_backend, portico):
    total = 256 * MiB + 12345
    p = portico(basic_config(sink_backend.url))
    with socket.create_connection(("127.0.0.1", p.port), timeout=120) as s:
        upload(p, sink_backend, total, True, s)
    peak = p.rss_kb("VmHWM")
    assert peak < RSS_LIMIT_KB, "gateway peak RSS %d KiB after a 256 MB chunked upload" % peak


def download(sock, target, expect_len):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
    f = sock.makefile("rb")
    status, headers, _ = read_http_response(f, head_only=True)
    assert status == 200
    assert headers.get("content-length") == str(expect_len)
    got = 0
    buf = bytearray(MiB)
    while got < expect_len:
        n = f.readinto(memoryview(buf)[:min(MiB, expect_len - got)])
        assert n, "connection closed after %d of %d bytes" % (got, expect_len)
        assert buf.count(b"x", 0, n) == n, "corrupted data near offset %d" % got
        got += n
    assert got == expect_len
    return f


@big
def test_download_1gb_bounded_memory(backend, portico):
    total = 1_000_000_000
    p = portico(basic_config(backend.url))
    with socket.create_connection(("127.0.0.1", p.port), timeout=120) as s:
        f = download(s, "/echo/big?bytes=%d" % total, total)
        # the connection is still usable afterwards
        s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_http_response(f)[0] == 200
    peak = p.rss_kb("VmHWM")
    assert peak < RSS_LIMIT_KB, "gateway peak RSS %d KiB after a 1 GB download" % peak
    e = [e for e in p.access_entries(wait_for=2) if e["path"] == "/echo/big"][-1]
    assert e["status"] == 200 and e["bytesOut"] >= total


@big
def test_tls_upload_and_download_256mb_bounded_memory(portico, pki):
    total = 256 * MiB
    sink = EchoBackend(sink_all=True)
    try:
        cfg = basic_config(sink.url)
        tls_port = with_tls_listener(cfg, pki)
        p = portico(cfg)
        with connect(p, tls_port, pki, timeout=120) as s:
            upload(p, sink, total, False, s)
        with connect(p, tls_port, pki, timeout=120) as s:
            upload(p, sink, 64 * MiB + 7, True, s)
    finally:
        sink.close()
    echo = EchoBackend()
    try:
        cfg2 = basic_config(echo.url)
        tls_port2 = with_tls_listener(cfg2, pki)
        p2 = portico(cfg2)
        with connect(p2, tls_port2, pki, timeout=120) as s:
            download(s, "/echo/big?bytes=%d" % total, total)
    finally:
        echo.close()
    for gw in (p, p2):
        peak = gw.rss_kb("VmHWM")
        assert peak < RSS_LIMIT_KB, "gateway peak RSS %d KiB after 256 MB over TLS" % peak


# ------------------------------------------------------------- backpressure

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_slow_client_does_not_make_gateway_buffer_the_response(backend, portico, pki, tls):
    total = 50_000_000
    cfg = basic_config(backend.url)
    tls_port = with_tls_listener(cfg, pki) if tls else None
    p = portico(cfg)
    assert p.request("GET", "/echo/items/warmup")[0] == 200
    base_rss = p.rss_kb("VmRSS")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.settimeout(30)
    s.connect(("127.0.0.1", tls_port or p.port))
    if tls:
        s = client_context(pki.ca).wrap_socket(s, server_hostname="localhost")
    try:
        s.sendall(b"GET /echo/big?bytes=%d HTTP/1.1\r\nHost: x\r\n\r\n" % total)
        data = bytearray()
        for _ in range(100):
            data += s.recv(4096)
            if b"\r\n\r\n" in data:
                break
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: %d" % total in head.lower()
        received = len(body)
        bad = len(body) - body.count(b"x")
        start = time.time()
        for _ in range(400):            # ~2 s of slow reading, 4 KiB at a time
            chunk = s.recv(4096)
            assert chunk
            received += len(chunk)
            bad += len(chunk) - chunk.count(b"x")
            time.sleep(0.005)
            if time.time() - start > 2.0:
                break
        time.sleep(0.5)  # time for the backend to push all the gateway is willing to take
        growth = max(p.rss_kb("VmRSS"), p.rss_kb("VmHWM")) - base_rss
        assert received < 10 * MiB
        assert growth < 16 * 1024, "gateway RSS grew by %d KiB while the client read slowly" % growth
        # then the client reads the rest at full speed and gets every byte
        buf = bytearray(MiB)
        deadline = time.time() + 60
        while received < total and time.time() < deadline:
            n = s.recv_into(buf)
            assert n, "connection closed after %d of %d bytes" % (received, total)
            received += n
            bad += n - buf.count(b"x", 0, n)
    finally:
        s.close()
    assert received == total and bad == 0
    assert backend.last().target == "/base/big?bytes=%d" % total


def test_slow_backend_stream_arrives_chunk_by_chunk(backend, portico):
    p = portico(basic_config(backend.url))
    check_stream_timing(socket.create_connection(("127.0.0.1", p.port), timeout=10))


def test_slow_backend_stream_over_tls_arrives_chunk_by_chunk(backend, portico, pki):
    cfg = basic_config(backend.url)
    tls_port = with_tls_listener(cfg, pki)
    portico(cfg)
    check_stream_timing(tls_connect(tls_port, pki.ca, "localhost", timeout=10))


def check_stream_timing(sock):
    with sock:
        start = time.time()
        sock.sendall(b"GET /echo/stream?chunks=5&delay=200&size=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = bytearray()
        first_seen = {}
        deadline = start + 10
        while time.time() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            now = time.time() - start
            raw += chunk
            head, sep, body = bytes(raw).partition(b"\r\n\r\n")
            if sep:
                for letter in b"abcde":
                    if letter not in first_seen and bytes([letter]) * 10 in body:
                        first_seen[letter] = now
    head, _, body = bytes(raw).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    # decode the chunked body
    data = bytearray()
    rest = body
    for _ in range(100):
        line, _, rest = rest.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        data += rest[:size]
        rest = rest[size + 2:]
    assert bytes(data) == b"".join(bytes([c]) * 10 for c in b"abcde")
    assert sorted(first_seen) == sorted(b"abcde")
    a, b_, e = first_seen[ord("a")], first_seen[ord("b")], first_seen[ord("e")]
    # produced at ~0.2 s, ~0.4 s ... ~1.0 s: the first chunk arrives long before the last was made
    assert a < 0.7, a
    assert e - a >= 0.6, (a, e)
    assert b_ - a >= 0.1, (a, b_)


class LateAnswerBackend(_Base):
    """A WebSocket-upgrading backend that reads until the end of its input,
    waits half a second, answers with how much it got, and closes."""

    def serve(self, s, cid):
        s.settimeout(10)
        read = recv_head(s)
        if read is None:
            return
        head, got = read
        key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")]
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept_key(key[0].decode()).encode())
        total = len(got)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            total += len(chunk)
        time.sleep(0.5)
        s.sendall(b"late answer after %d bytes" % total)


def test_websocket_half_close_passes_through(backend, portico):
    """The client sends its data and shuts its write side: the backend sees
    the end of input, and everything it sends afterwards still reaches the
    client (before, both sides were closed at once and it was lost)."""
    p = portico(basic_config(backend.url))
    sock = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        key, status, headers, f = ws_open(sock)
        assert status == 101
        payload = os.urandom(200000)
        frames = [payload[i:i + 20000] for i in range(0, len(payload), 20000)]
        sock.sendall(b"".join(ws_frame(2, part, mask=True) for part in frames))
        sock.shutdown(socket.SHUT_WR)
        echoed = b""
        for _ in frames:
            op, data = ws_read_frame(f)
            assert op == 2
            echoed += data
        assert echoed == payload
        assert f.read() == b""  # then the end, from the backend's close
    finally:
        sock.close()

    late = LateAnswerBackend()
    try:
        p.stop()
        p2 = portico(basic_config(late.url))
        sock = socket.create_connection(("127.0.0.1", p2.port), timeout=10)
        try:
            key, status, headers, f = ws_open(sock)
            assert status == 101
            sock.sendall(b"x" * 5000)
            sock.shutdown(socket.SHUT_WR)
            t0 = time.monotonic()
            assert f.read() == b"late answer after 5000 bytes"
            assert time.monotonic() - t0 >= 0.4
        finally:
            sock.close()
    finally:
        late.close()
