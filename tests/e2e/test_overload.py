"""Overload protection: the node-wide connection cap (limits.connections), the
memory high-water mark (limits.memory), and slow clients and backends that
cannot make the gateway hold more than its buffer limits per connection.

Memory is checked with the gateway's own figure (portico_memory_buffered_bytes)
and, except on a sanitizer build (whose allocator keeps freed memory in
quarantine), with the process's resident size."""
import json
import re
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, basic_config, free_port, parse_responses, wait_for
from mgmt_helpers import TOKEN
from test_metrics import scrape, value
from upstream_helpers import _Base

MiB = 1024 * 1024


def _sanitized():
    out = subprocess.run([BIN, "-v"], capture_output=True, text=True, timeout=10).stdout
    return "AddressSanitizer" in out


SANITIZED = _sanitized()


def overload_config(backend_url, workers=1, **limits):
    cfg = basic_config(backend_url, workers=workers)
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    if limits:
        cfg["limits"] = limits
    return cfg


def start(portico, cfg):
    return portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})


def metric(p, name):
    return value(scrape(p), name)


def connect(port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def read_one(s, timeout=10.0):
    """One whole response from s: (status, headers, body)."""
    s.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = parse_responses(data)
        if got:
            head, _, rest = data.partition(b"\r\n\r\n")
            length = got[0][1].get("content-length")
            if length is None or len(rest) >= int(length):
                return got[0]
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    got = parse_responses(data)
    assert got, data[:300]
    return got[0]


def get(s, path):
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return read_one(s)


def log_count(p, text):
    return p.log_text().count(text)


def rss_mb(p):
    return p.rss_kb("VmRSS") / 1024.0


# ------------------------------------------------------------------ the connection cap

def test_the_node_cap_holds_across_workers_and_idle_connections_keep_working(backend, portico):
    cfg = overload_config(backend.url, workers=2, connections=4)
    cfg["timeouts"] = {"header": "120s"}  # the idle connections outlive any slow step of the test
    p = start(portico, cfg)
    socks = [connect(p.port) for _ in range(4)]  # idle: nothing sent yet
    extra = []
    try:
        wait_for(lambda: metric(p, "portico_connections_node") == 4, what="4 connections counted")
        # both workers stop accepting (the one that took the 4th at once, the other at its tick)
        wait_for(lambda: metric(p, "portico_connections_limit_waits_total") >= 2, what="both workers paused")
        assert metric(p, "portico_connections_limit") == 4
        # the workers' own gauges agree (published at their ticks)
        wait_for(lambda: metric(p, "portico_connections_active") == 4, what="the workers' gauges")
        # new connections complete in the kernel, but nobody serves them
        for i in range(3):
            s = connect(p.port)
            extra.append(s)
            s.sendall(b"GET /echo/items/w%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        r, _, _ = select.select(extra, [], [], 1.0)
        assert not r, "a connection past the node's cap was served"
        assert metric(p, "portico_connections_node") == 4
        assert not [q for q in backend.requests if "/w" in q.target]
        # the idle connections inside the cap are served
        for i, s in enumerate(socks):
            status, _, body = get(s, "/echo/items/in%d" % i)
            assert status == 200 and json.loads(body)["target"] == "/base/items/in%d" % i
        # one closes: a waiting connection is taken and served, the node stays at its cap
        socks.pop().close()
        ready = wait_for(lambda: select.select(extra, [], [], 0.1)[0], timeout=20,
                         what="a waiting connection to be served after one closed")
        assert read_one(ready[0])[0] == 200
        # two workers may both take one in the same instant: the cap plus one at most
        assert 4 <= metric(p, "portico_connections_node") <= 5
        # an episode at the cap is logged once, however many pauses it had
        assert log_count(p, "its cap (limits.connections)") == 1
    finally:
        for s in socks + extra:
            s.close()
    # all closed: the waiting ones are all served and the count goes back to 0
    wait_for(lambda: metric(p, "portico_connections_node") == 0, what="the connections to close")
    assert len([q for q in backend.requests if "/w" in q.target]) >= 1


def test_a_reload_lifting_the_node_cap_serves_the_waiting_connections(backend, portico):
    cfg = overload_config(backend.url, workers=1, connections=2)
    p = start(portico, cfg)
    socks = [connect(p.port) for _ in range(2)]
    try:
        wait_for(lambda: metric(p, "portico_connections_limit_waits_total") >= 1, what="the pause")
        third = connect(p.port)
        socks.append(third)
        third.sendall(b"GET /echo/items/3 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not select.select([third], [], [], 0.5)[0]
        assert p.reload(dict(cfg, limits={"connections": 0}))
        assert read_one(third)[0] == 200
        assert metric(p, "portico_connections_limit") == 0
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("key,bad,why", [
    ("connections", -1, "out of range"),
    ("connections", "many", "integer"),
    ("connections", 100000001, "out of range"),
    ("memory", "-1k", "size"),
    ("memory", "lots", "size"),
    ("memory", "2000000g", "out of range"),
])
def test_a_bad_overload_limit_is_refused_with_its_position(backend, portico, key, bad, why):
    p = portico(overload_config(backend.url, **{key: bad}), start=False)
    code, out = p.check()
    assert code != 0
    assert re.search(r"portico\.yaml:\d+:\d+: .*%s" % why, out), out


# --------------------------------------------------------------- the memory mark

class StallingBackend(_Base):
    """Answers GET /big?bytes=N with N bytes as fast as the gateway takes them,
    other requests with a small JSON body.  Counts what it sent."""

    def __init__(self):
        self.sent = 0
        self.sent_by = {}  # target -> bytes sent for it
        self.requests = []
        super().__init__()

    def serve(self, s, cid):
        s.settimeout(60)
        buf = b""
        while not self._stop:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            target = head.split(b" ")[1].decode()
            with self.lock:
                self.requests.append(target)
            if "/big" in target:
                n = int(target.split("bytes=")[1].split("&")[0])
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                block = b"b" * 65536
                while n and not self._stop:
                    k = min(n, len(block))
                    s.sendall(block[:k])
                    n -= k
                    with self.lock:
                        self.sent += k
                        self.sent_by[target] = self.sent_by.get(target, 0) + k
            else:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
def stalling():
    b = StallingBackend()
    yield b
    b.close()


def read_body_len(s, timeout=30.0):
    """Reads one Content-Length response to its end; returns (status, body length)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
    got = len(rest)
    while got < length:
        chunk = s.recv(1 << 20)
        assert chunk, "closed after %d of %d bytes" % (got, length)
        got += len(chunk)
    return status, got


_stalls = iter(range(1 << 30))


def stall_download(p, stalling, size):
    """A client that asks for `size` bytes and does not read them; returns its socket once the
    gateway holds what it may: this request's own bytes from the backend have started and then
    not moved across three samples half a second apart."""
    s = connect(p.port, rcvbuf=4096)
    target = "/big?bytes=%d&id=%d" % (size, next(_stalls))
    s.sendall(b"GET /echo%s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
    seen = []

    def stalled():
        with stalling.lock:
            now = stalling.sent_by.get("/base" + target, 0)
        seen.append(now)
        return now > 0 and seen[-3:] == [now] * 3
    wait_for(stalled, timeout=30, step=0.5, what="the backend to be held back on %s" % target)
    return s


def test_past_the_memory_mark_new_requests_get_503_and_in_flight_ones_finish(stalling, portico):
    size = 64 * MiB
    p = start(portico, overload_config(stalling.url, workers=2, memory="128k"))
    other = connect(p.port)
    assert get(other, "/echo/items/1")[0] == 200  # admitted while below the mark
    slow = stall_download(p, stalling, size)
    try:
        wait_for(lambda: metric(p, "portico_overload") == 1, what="the node to be overloaded")
        assert metric(p, "portico_memory_buffered_bytes") >= 128 * 1024
        assert metric(p, "portico_memory_limit_bytes") == 128 * 1024
        # a new request on a kept connection and one on a new connection: 503, Retry-After, APIM's body
        n_backend = len(stalling.requests)
        for s in (other, connect(p.port)):
            status, headers, body = get(s, "/echo/items/2")
            assert status == 503, body
            assert headers.get("retry-after") == "1"
            assert headers.get("connection") == "close"
            assert json.loads(body) == {"statusCode": 503,
                                        "message": "The gateway is overloaded. Try again later."}
            s.close()
        assert len(stalling.requests) == n_backend  # refused before any backend call
        fams = scrape(p)
        assert value(fams, "portico_overload_refusals_total") == 2
        assert value(fams, "portico_overload_episodes_total") == 1
        entries = p.access_entries(wait_for=3)
        assert len(entries) >= 3, entries
        assert [(e["status"], e["reason"]) for e in entries if e["status"] == 503] == [(503, "Overloaded")] * 2
        # the admitted download finishes whole
        drain_start = time.monotonic()
        assert read_body_len(slow) == (200, size)
    finally:
        slow.close()
    # below the mark again: requests are admitted, and each change was logged once
    wait_for(lambda: metric(p, "portico_overload") == 0, what="the node to leave overload")
    elapsed = time.monotonic() - drain_start
    s = connect(p.port)
    assert get(s, "/echo/items/3")[0] == 200
    s.close()
    # the download's buffers may dip below 90 % of the mark and rise again while it drains, but
    # the node stays overloaded for at least a second each time: at most one episode a second
    # (at tick rate it would be up to 20), each logged once on entering and once on leaving
    episodes = metric(p, "portico_overload_episodes_total")
    assert 1 <= episodes <= 2 + int(elapsed), (episodes, elapsed)
    wait_for(lambda: log_count(p, "overload over") == episodes, what="the leaving line")
    assert log_count(p, "overloaded:") == episodes


def test_status_probes_answer_during_overload(stalling, portico):
    p = start(portico, overload_config(stalling.url, memory="128k"))
    slow = stall_download(p, stalling, 64 * MiB)
    try:
        wait_for(lambda: metric(p, "portico_overload") == 1, what="the node to be overloaded")
        s = connect(p.port)
        assert get(s, "/status-0123456789abcdef")[0] == 200  # alive
        s.close()
        # not ready: load balancers send the traffic to other nodes
        s = connect(p.port)
        status, headers, body = get(s, "/internal-status-0123456789abcdef")
        assert status == 503 and headers.get("retry-after") == "1", body
        assert json.loads(body)["statusCode"] == 503
        s.close()
    finally:
        slow.close()
    wait_for(lambda: metric(p, "portico_overload") == 0, timeout=20, what="the node to leave overload")
    s = connect(p.port)
    assert get(s, "/internal-status-0123456789abcdef")[0] == 200
    s.close()


def test_memory_mark_off_admits_everything(stalling, portico):
    p = start(portico, overload_config(stalling.url, memory=0))
    slow = stall_download(p, stalling, 64 * MiB)
    try:
        # off: the workers do not walk their connections, the gauge stays 0
        assert metric(p, "portico_memory_buffered_bytes") == 0
        s = connect(p.port)
        assert get(s, "/echo/items/1")[0] == 200
        s.close()
        assert metric(p, "portico_overload") == 0
    finally:
        slow.close()


# ---------------------------------------------- slow clients and slow backends

# What one connection may hold: the client's output buffer past the high-water
# mark (256 KiB) plus one read from the backend (256 KiB), its input, the arena.
PER_CONNECTION_BOUND = 2 * MiB
# A mark far above what these tests hold: the workers add up what they hold (the gauge)
MEASURED = "1g"


def test_a_client_that_never_reads_a_large_response_holds_bounded_memory(stalling, portico):
    size = 256 * MiB
    p = start(portico, overload_config(stalling.url, memory=MEASURED))
    rss0 = rss_mb(p)
    socks = [stall_download(p, stalling, size) for _ in range(3)]
    try:
        held = metric(p, "portico_memory_buffered_bytes")
        assert 0 < held <= 3 * PER_CONNECTION_BOUND, held
        with stalling.lock:
            sent = stalling.sent
        assert sent < 3 * 64 * MiB  # the backend was held back, not drained into memory
        if not SANITIZED:
            assert rss_mb(p) - rss0 < 40, (rss0, rss_mb(p))
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: metric(p, "portico_memory_buffered_bytes") == 0, what="the memory to be released")


class TrickleBackend(_Base):
    """Answers every request with a chunked body of `chunks` chunks of `size` bytes, one per
    `delay` seconds, and holds the last one back until `release` is set.  Counts the responses
    finished and the ones that failed."""

    def __init__(self, chunks, size, delay):
        self.chunks, self.size, self.delay = chunks, size, delay
        self.release = threading.Event()
        self.done = self.failed = self.held = 0
        super().__init__()

    def serve(self, s, cid):
        s.settimeout(30)
        ok = False
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(self.chunks):
                if i == self.chunks - 1:
                    with self.lock:
                        self.held += 1
                    if not self.release.wait(60):
                        return
                if self._stop:
                    return
                time.sleep(self.delay)
                s.sendall(b"%x\r\n" % self.size + bytes([0x61 + i % 26]) * self.size + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            ok = True
        finally:
            with self.lock:
                if ok:
                    self.done += 1
                else:
                    self.failed += 1

    def close(self):
        self.release.set()
        super().close()


def test_a_trickling_backend_streams_through_without_piling_up(portico):
    """Each response (64 x 64 KiB = 4 MiB) is twice what a connection may hold: a gateway that
    buffered it whole would hold 16 MiB for 4 clients and give them nothing before the last chunk,
    which the backend holds back until the clients have most of the body."""
    chunks, size, n = 64, 64 * 1024, 4
    be = TrickleBackend(chunks=chunks, size=size, delay=0.005)
    try:
        p = start(portico, overload_config(be.url, memory=MEASURED))
        clients = [connect(p.port) for _ in range(n)]
        for s in clients:
            s.sendall(b"GET /echo/t HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setblocking(False)
        got = [0] * n
        peak = 0
        want = (chunks - 2) * size  # all but the held-back chunk (and some framing slack)
        deadline = time.monotonic() + 60
        while min(got) < want:
            assert time.monotonic() < deadline, ("the clients did not get the body before its end", got)
            with be.lock:
                assert not be.failed, "a backend response failed"
            readable, _, _ = select.select(clients, [], [], 0.05)
            for s in readable:
                data = s.recv(1 << 20)
                assert data, "closed after %d bytes" % got[clients.index(s)]
                got[clients.index(s)] += len(data)
            peak = max(peak, metric(p, "portico_memory_buffered_bytes"))
        with be.lock:
            assert be.done == 0  # no response has ended: every last chunk is still held back
        assert peak <= n * PER_CONNECTION_BOUND, peak
        be.release.set()
        wait_for(lambda: be.done == n or be.failed, timeout=60, what="the backend to finish")
        assert be.done == n and not be.failed
        for s in clients:
            s.close()
    finally:
        be.close()


class NotReadingBackend(_Base):
    """Reads a request head and then nothing: the body waits in the socket (a small receive
    buffer), held open until close()."""

    def __init__(self):
        self.heads = 0
        super().__init__(rcvbuf=4096)

    def serve(self, s, cid):
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(1)
            if not chunk:
                return
            buf += chunk
        with self.lock:
            self.heads += 1
        while not self._stop:
            time.sleep(0.05)


def test_a_client_uploading_to_a_backend_that_does_not_read_holds_bounded_memory(portico):
    be = NotReadingBackend()
    size = 256 * MiB
    try:
        cfg = overload_config(be.url, memory=MEASURED)
        cfg["timeouts"] = {"bodyIdle": "60s"}
        p = start(portico, cfg)
        rss0 = rss_mb(p)
        s = connect(p.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        s.setblocking(False)
        pushed = 0
        block = b"u" * 65536
        idle_since = time.monotonic()
        deadline = time.monotonic() + 30
        # push until the gateway stops taking the body for a while (bounded by the deadline)
        while time.monotonic() < deadline and time.monotonic() - idle_since < 1.0 and pushed < size:
            try:
                n = s.send(block)
                pushed += n
                idle_since = time.monotonic()
            except BlockingIOError:
                select.select([], [s], [], 0.1)
        assert be.heads == 1
        assert pushed < 64 * MiB, pushed  # the gateway stopped reading the client
        held = metric(p, "portico_memory_buffered_bytes")
        assert 0 < held <= PER_CONNECTION_BOUND, held
        if not SANITIZED:
            assert rss_mb(p) - rss0 < 40, (rss0, rss_mb(p))
        s.close()
    finally:
        be.close()


def test_a_slow_upload_to_a_slow_backend_is_passed_on_as_it_comes(portico):
    """A client sending an 8 MiB body in pieces (four times bufferSize's default, so a gateway
    buffering it would answer 413 or hold it all): the backend has most of it while the client has
    not sent the last piece, the gateway never holds more than a connection's bound, and the
    backend gets the whole body."""
    total = 8 * MiB
    piece = 64 * 1024
    received = [0]
    done = threading.Event()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(30)

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        c.settimeout(30)
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
            received[0] = len(buf.partition(b"\r\n\r\n")[2])
            while received[0] < total:
                time.sleep(0.001)  # a slow reader
                chunk = c.recv(65536)
                if not chunk:
                    return
                received[0] += len(chunk)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            done.set()
        except OSError:
            return
        finally:
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    try:
        p = start(portico, overload_config("http://127.0.0.1:%d" % srv.getsockname()[1], memory=MEASURED))
        s = connect(p.port)
        s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
        peak = 0
        for _ in range(total // piece - 1):
            s.sendall(b"s" * piece)
            peak = max(peak, metric(p, "portico_memory_buffered_bytes"))
        # all but the last piece sent: the backend already has most of the body
        wait_for(lambda: received[0] >= total // 2, timeout=30,
                 what="the backend to receive the body before its end (got %d)" % received[0])
        assert peak <= PER_CONNECTION_BOUND, peak
        s.sendall(b"s" * piece)
        assert read_one(s, timeout=30)[0] == 200
        assert done.wait(30)
        assert received[0] == total
        s.close()
    finally:
        srv.close()


# ------------------------------------------------- sizing, small caps, no drift

def test_the_mark_is_off_by_default_and_a_mark_below_one_request_is_warned_about(backend, portico):
    cfg = overload_config(backend.url)
    p = start(portico, cfg)
    assert metric(p, "portico_memory_limit_bytes") == 0
    assert log_count(p, "below what one request may hold") == 0
    # 1m is below 3 x bufferSize (2m) + requestMemory (64m): warned about at reload, and at start
    assert p.reload(dict(cfg, limits={"memory": "1m"}))
    wait_for(lambda: log_count(p, "below what one request may hold") == 1, what="the warning at reload")
    assert metric(p, "portico_memory_limit_bytes") == MiB
    # a mark that fits one request is not
    assert p.reload(dict(cfg, limits={"memory": "100m"}))
    assert metric(p, "portico_memory_limit_bytes") == 100 * MiB
    assert log_count(p, "below what one request may hold") == 1
    p.stop()
    earlier = log_count(p, "below what one request may hold")
    p2 = start(portico, overload_config(backend.url, memory="1m"))
    before = earlier if p2.error_log == p.error_log else 0
    wait_for(lambda: log_count(p2, "below what one request may hold") == before + 1, what="the warning at start")


def test_a_node_cap_of_one_ends_its_episode(backend, portico):
    cfg = overload_config(backend.url, connections=1)
    cfg["timeouts"] = {"header": "120s"}
    p = start(portico, cfg)
    first = connect(p.port)
    wait_for(lambda: metric(p, "portico_connections_node") == 1, what="the first connection")
    second = connect(p.port)
    second.sendall(b"GET /echo/items/2 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: log_count(p, "its cap (limits.connections)") == 1, what="the episode's start")
    first.close()
    assert read_one(second, timeout=20)[0] == 200
    second.close()
    wait_for(lambda: log_count(p, "below its cap (limits.connections) again") == 1, what="the episode's end")
    # a later episode is logged again
    third, fourth = connect(p.port), connect(p.port)
    wait_for(lambda: log_count(p, "its cap (limits.connections):") == 2, what="the second episode")
    third.close()
    fourth.close()


def test_the_node_count_returns_to_zero_after_every_kind_of_close(backend, portico, tmp_path):
    """TLS handshakes failing, WebSocket tunnels closed from either side, 408 header timeouts,
    413 with an unread body, overload 503s with their lingering close and a reload: after all of
    them the node's count and the workers' agree on 0, and new connections are served."""
    from tls_helpers import Pki, tls_connect
    from backends import ws_frame
    pki = Pki(str(tmp_path))
    cert = pki.leaf("server", "localhost", ["DNS:localhost"])
    cfg = overload_config(backend.url, workers=2, connections=50)
    tls_port = free_port()
    cfg["listen"] = cfg["listen"] + [{"address": "127.0.0.1:%d" % tls_port, "certificate": cert[0],
                                      "key": cert[1]}]
    cfg["timeouts"] = {"header": "300ms"}
    cfg["limits"]["bodySize"] = "1k"
    p = start(portico, cfg)

    def settled():
        fams = scrape(p)
        return value(fams, "portico_connections_node") == 0 and value(fams, "portico_connections_active") == 0

    # TLS: garbage instead of a ClientHello, a close in the middle of the handshake, one that works
    for _ in range(3):
        s = connect(tls_port)
        s.sendall(b"\x16\x03\x01\x00\x05hello-not-tls" * 4)
        s.settimeout(10)
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
        s = connect(tls_port)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello cut short
        s.close()
    t = tls_connect(tls_port, pki.ca)
    t.sendall(b"GET /echo/items/tls HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_one(t)[0] == 200
    t.close()
    # WebSocket tunnels: closed by the client's socket, and by the backend answering a close frame
    for close_frame in (False, True):
        s = connect(p.port)
        s.sendall(b"GET /echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head
        if close_frame:
            s.sendall(ws_frame(8, b"\x03\xe8", mask=True))
            s.settimeout(10)
            while s.recv(4096):
                pass
        s.close()
    # 408: a head that never ends
    s = connect(p.port)
    s.sendall(b"GET /echo/items/slow HTTP/1.1\r\n")
    assert read_one(s, timeout=20)[0] == 408
    s.close()
    # 413 with the body not read
    s = connect(p.port)
    s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 4096)
    assert read_one(s)[0] == 413
    s.close()
    wait_for(settled, timeout=20, what="the count to return to 0 before the reload")
    # reload: a mark of one byte, so a connection holding a partial head overloads the node
    cfg2 = dict(cfg, timeouts={"header": "60s"}, limits={"connections": 50, "memory": "1"})
    assert p.reload(cfg2)
    holder = connect(p.port)
    holder.sendall(b"GET /echo/items/held HTTP/1.1\r\n")
    wait_for(lambda: metric(p, "portico_overload") == 1, timeout=20, what="the node to be overloaded")
    for i in range(3):
        s = connect(p.port)
        status, headers, _ = get(s, "/echo/items/o%d" % i)
        assert status == 503 and headers.get("connection") == "close"
        s.close()
    holder.close()
    wait_for(lambda: metric(p, "portico_overload") == 0, timeout=20, what="the node to leave overload")
    wait_for(settled, timeout=20, what="the count to return to 0 after the reload")
    s = connect(p.port)
    assert get(s, "/echo/items/after")[0] == 200
    s.close()
    wait_for(settled, timeout=20, what="the count to return to 0 at the end")


def test_the_node_stays_overloaded_for_a_second_before_leaving(stalling, portico):
    """The bytes fall away at once when the holder closes, but the node leaves overload only a
    second after it entered (the Retry-After given to the refused): a total swinging around the
    mark cannot flip the node, nor its log lines, at every tick."""
    p = start(portico, overload_config(stalling.url, memory="128k"))
    s = connect(p.port, rcvbuf=4096)
    sent = time.monotonic()  # the node cannot enter overload before this
    s.sendall(b"GET /echo/big?bytes=%d&id=hold HTTP/1.1\r\nHost: x\r\n\r\n" % (64 * MiB))
    wait_for(lambda: metric(p, "portico_overload") == 1, timeout=20, what="the node to be overloaded")
    s.close()
    wait_for(lambda: metric(p, "portico_memory_buffered_bytes") < 100 * 1024, timeout=20, what="the bytes to go")
    wait_for(lambda: metric(p, "portico_overload") == 0, timeout=20, what="the node to leave overload")
    assert time.monotonic() - sent >= 1.0
    assert metric(p, "portico_overload_episodes_total") == 1
    wait_for(lambda: log_count(p, "overload over") == 1, what="the leaving line")
    assert log_count(p, "overloaded:") == 1
