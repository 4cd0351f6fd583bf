"""Extra backends and socket helpers for test_upstream.py.

ScriptedBackend is a raw HTTP/1.1 server on 127.0.0.1 whose every answer
is decided by a plan: plan(conn_id, n) -> action, where conn_id counts
accepted connections from 1 and n counts the requests read on that
connection from 1.  An action is one of these strings:

  "answer"        a keep-alive 200 with Content-Length (no Connection header)
  "answer-close"  the same answer, then close the socket at once (no
                  Connection: close: the peer only learns it from the FIN)
  "answer-fin"    the same, with TCP_CORK so that the FIN travels in the
                  same segment as the end of the answer
  "answer-linger" the same answer; close 100 ms later (the FIN comes alone)
  "close"         close without answering (FIN)
  "rst"           close without answering with a reset (SO_LINGER 0)

or a tuple (bytes, mode): send those bytes verbatim, then per mode "keep"
(serve the next request), "close" (close at once), "fin" (corked: the FIN
rides in the segment with the bytes) or "linger" (close 100 ms later).

The answer body is JSON {"conn": conn_id, "n": n, "method": ..., "target": ...}.
The backend records every request (conn_id, n, method, target, headers,
body) and, per connection, the time it saw EOF from the gateway and the
time it closed its own end.

EarlyResponder reads a request head and answers at once (413 by default)
without reading the body, then reads and counts whatever the gateway still
sends until EOF.

blackhole_listener() makes a port whose accept queue is full, so that a
connect() to it hangs.
"""

import errno
import json
import select
import socket
import struct
import threading
import time


def recv_head(s, limit=65536):
    """Reads from socket s until a head's empty line: (head, bytes after it),
    or None when the peer closes first or the head passes `limit` bytes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > limit:
            return None
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


class Rec:
    def __init__(self, conn_id, n, method, target, version, headers, body):
        self.conn_id = conn_id
        self.n = n
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default


def _read_head(f):
    """Reads a request head from a binary file object; None on EOF."""
    line = f.readline(65536)
    if not line:
        return None
    while line in (b"\r\n", b"\n"):
        line = f.readline(65536)
        if not line:
            return None
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3:
        raise ValueError("bad request line %r" % line)
    method, target, version = (p.decode("latin1") for p in parts)
    headers = []
    while True:
        line = f.readline(65536)
        if not line:
            return None
        if line == b"\r\n":
            break
        k, _, v = line.rstrip(b"\r\n").partition(b":")
        headers.append((k.decode("latin1"), v.strip().decode("latin1")))
    return method, target, version, headers


def _read_body(f, headers):
    te = [v for k, v in headers if k.lower() == "transfer-encoding"]
    cl = [v for k, v in headers if k.lower() == "content-length"]
    body = bytearray()
    if te:
        while True:
            size = int(f.readline(65536).split(b";")[0], 16)
            if size == 0:
                while f.readline(65536) not in (b"\r\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline(65536)
    elif cl:
        n = int(cl[0])
        while n:
            data = f.read(n)
            if not data:
                raise EOFError
            body += data
            n -= len(data)
    return bytes(body)


class _Base:
    """A raw-socket backend on 127.0.0.1: subclasses answer in serve(s, cid), one thread per
    connection.  rcvbuf sets the receive buffer before listen (accepted sockets inherit it)."""

    def __init__(self, rcvbuf=None):
        self.lock = threading.Lock()
        self.connections = 0
        self.eof_at = {}       # conn_id -> time.monotonic() when the gateway closed it
        self.closed_at = {}    # conn_id -> time.monotonic() when this backend closed its end
        self.errors = []
        self._socks = []
        self._stop = False
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(128)
        self.srv.settimeout(0.05)
        self.port = self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept_loop(self):
        while not self._stop:
            try:
                s, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
                cid = self.connections
                self._socks.append(s)
            threading.Thread(target=self._serve_safe, args=(s, cid), daemon=True).start()

    def _serve_safe(self, s, cid):
        try:
            self.serve(s, cid)
        except (OSError, ValueError, EOFError) as e:
            with self.lock:
                self.errors.append("conn %d: %r" % (cid, e))
        finally:
            try:
                s.close()
            except OSError:
                pass
            with self.lock:
                self.closed_at.setdefault(cid, time.monotonic())

    def _mark_eof(self, cid):
        with self.lock:
            self.eof_at.setdefault(cid, time.monotonic())

    def wait_eof(self, cid, timeout=3.0):
        """Waits until the backend saw the gateway close connection cid; returns the time or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if cid in self.eof_at:
                    return self.eof_at[cid]
            time.sleep(0.01)
        return None

    def closed_all(self):
        """True when this backend has closed its end of every connection it accepted (and
        accepted at least one).  A FIN on loopback is in the peer's socket when close()
        returns, so from then on the gateway can see it."""
        with self.lock:
            return self.connections > 0 and len(self.closed_at) == self.connections

    def close(self):
        self._stop = True
        try:
            self.srv.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        self.thread.join(timeout=2)


class ScriptedBackend(_Base):
    def __init__(self, plan):
        self.plan = plan
        self.requests = []
        super().__init__()

    def serve(self, s, cid):
        f = s.makefile("rb")
        try:
            self._serve(s, f, cid)
        finally:
            f.close()

    def _serve(self, s, f, cid):
        n = 0
        while True:
            head = _read_head(f)
            if head is None:
                self._mark_eof(cid)
                return
            method, target, version, headers = head
            body = _read_body(f, headers)
            n += 1
            rec = Rec(cid, n, method, target, version, headers, body)
            with self.lock:
                self.requests.append(rec)
            action = self.plan(cid, n)
            if isinstance(action, tuple):
                data, mode = action
            elif action.startswith("answer"):
                payload = json.dumps({"conn": cid, "n": n, "method": method, "target": target}).encode()
                data = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
                    payload) + (b"" if method == "HEAD" else payload)
                mode = {"answer": "keep", "answer-close": "close", "answer-fin": "fin",
                        "answer-linger": "linger"}[action]
            elif action == "close":
                return
            elif action == "rst":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            else:
                raise ValueError("unknown action %r" % (action,))
            if mode == "fin":
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            s.sendall(data)
            if mode == "keep":
                continue
            if mode == "linger":
                time.sleep(0.1)
            return  # the socket is closed now; for "fin" the FIN goes out with the corked bytes


class EarlyResponder(_Base):
    """Answers as soon as the head is read, then counts the body bytes it still receives."""

    def __init__(self, status=413):
        self.status = status
        self.requests = []
        self.body_bytes = 0
        super().__init__()

    def serve(self, s, cid):
        got = recv_head(s, limit=1 << 30)
        if got is None:
            self._mark_eof(cid)
            return
        head, rest = got
        lines = head.split(b"\r\n")
        method, target, version = lines[0].decode("latin1").split(" ")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.append((k.decode("latin1"), v.strip().decode("latin1")))
        with self.lock:
            self.requests.append(Rec(cid, 1, method, target, version, headers, b""))
            self.body_bytes += len(rest)
        payload = json.dumps({"statusCode": self.status, "message": "too large"}).encode()
        s.sendall(b"HTTP/1.1 %d Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % (self.status, len(payload)) + payload)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return
            if not chunk:
                self._mark_eof(cid)
                return
            with self.lock:
                self.body_bytes += len(chunk)


class Blackhole:
    """A listening socket with a full accept queue: new connects to it hang (SYNs are dropped)."""

    def __init__(self):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(0)
        self.port = self.srv.getsockname()[1]
        self.fillers = []
        self.full = False
        for _ in range(32):  # bounded: the queue of a backlog-0 listener holds one or two
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            self.fillers.append(c)
            e = c.connect_ex(("127.0.0.1", self.port))
            if e not in (0, errno.EINPROGRESS):
                raise OSError(e, "unexpected connect result")
            if e == 0:
                continue
            _, w, _ = select.select([], [c], [], 0.3)
            if not w:
                self.full = True  # this connect hangs: the queue is full
                break
        if not self.full:
            self.close()
            raise RuntimeError("could not fill the accept queue")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def close(self):
        for c in self.fillers:
            c.close()
        self.srv.close()


def exchange(port, data, timeout=3.0, host="127.0.0.1", chunks=None, pause=0.0):
    """Sends data (then each of `chunks` after `pause` seconds) and reads until EOF or timeout.

    Returns (received bytes, True when the gateway closed the connection)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        for c in chunks or ():
            time.sleep(pause)
            s.sendall(c)
        out = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return bytes(out), False
            except ConnectionResetError:
                return bytes(out), True
            if not chunk:
                return bytes(out), True
            out += chunk
        return bytes(out), False
    finally:
        s.close()


def split_head(data):
    """(status, [(name, value)] in order, raw head bytes, rest) of the first response in data."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, "no complete response head in %r" % data[:200]
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers.append((k.decode("latin1"), v.strip().decode("latin1")))
    return status, headers, head, rest


def hget(headers, name):
    vals = [v for k, v in headers if k.lower() == name.lower()]
    assert len(vals) <= 1, (name, vals)
    return vals[0] if vals else None


def dechunk(data):
    """Decodes a complete chunked body; returns (payload, bytes after the last chunk).

    Raises ValueError when the body is not complete."""
    out = bytearray()
    rest = data
    for _ in range(100000):
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise ValueError("incomplete chunked body")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            if not rest.startswith(b"\r\n"):
                raise ValueError("no final CRLF")
            return bytes(out), rest[2:]
        if len(rest) < size + 2:
            raise ValueError("incomplete chunk")
        out += rest[:size]
        if rest[size:size + 2] != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        rest = rest[size + 2:]
    raise ValueError("too many chunks")
