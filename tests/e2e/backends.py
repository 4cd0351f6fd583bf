"""Backends for the end-to-end tests: small real HTTP/1.1 servers on loopback.

EchoBackend answers every request with a JSON description of exactly what it
received (request line, headers in order, raw head bytes, decoded body), and
keeps a record of connections and requests so tests can check what the
gateway forwarded.  Special paths switch behaviour:

  /status/{code}             answer with that status
  /sleep/{ms}                wait before answering
  /stream?chunks=N&size=S&delay=MS   chunked response, N chunks of S bytes, slowly
  /big?bytes=N               a Content-Length response of N bytes (no JSON)
  /until-close?bytes=N       a response without framing, ended by closing
  /sink                      read the body, answer with its length and sha256 only
  /close-mid                 announce 1000 bytes, send 10, close
  /close-before              close without answering
  /raw                       send the bytes of the X-Raw-Response header (hex) verbatim
  /ws                        WebSocket handshake, then echo frames
  /no-keepalive              answer with Connection: close
  /head-length               answer HEAD and GET with Content-Length 1234 (GET gets the bytes)
  /interim                   send a 103 interim response before the final one
"""

import base64
import hashlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse


class Request:
    def __init__(self, method, target, version, headers, raw_head, body, chunked):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (name, value) in order
        self.raw_head = raw_head
        self.body = body
        self.chunked = chunked

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class BadRequest(Exception):
    pass


def read_exact(f, n):
    out = bytearray()
    while len(out) < n:
        chunk = f.read(min(n - len(out), 1 << 20))
        if not chunk:
            raise EOFError
        out += chunk
    return bytes(out)


def read_line(f, limit=65536):
    line = f.readline(limit)
    if not line:
        raise EOFError
    if not line.endswith(b"\r\n"):
        raise BadRequest("line without CRLF: %r" % line)
    return line[:-2]


def read_request(f, sink=None):
    """Reads one request; `sink(chunk)` receives the body instead of keeping it."""
    raw = bytearray()
    line = f.readline(65536)
    if not line:
        raise EOFError
    raw += line
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3:
        raise BadRequest("bad request line %r" % line)
    method, target, version = (p.decode("latin1") for p in parts)
    headers = []
    while True:
        line = f.readline(65536)
        if not line:
            raise EOFError
        raw += line
        if line == b"\r\n":
            break
        if not line.endswith(b"\r\n") or b":" not in line:
            raise BadRequest("bad header line %r" % line)
        k, v = line[:-2].split(b":", 1)
        headers.append((k.decode("latin1"), v.strip(b" \t").decode("latin1")))
    req = Request(method, target, version, headers, bytes(raw), b"", False)
    te = req.header("Transfer-Encoding")
    cl = req.header("Content-Length")
    body = bytearray()
    if te is not None:
        if te.lower() != "chunked":
            raise BadRequest("unexpected transfer-encoding %r" % te)
        req.chunked = True
        while True:
            size_line = read_line(f)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while read_line(f):
                    pass
                break
            data = read_exact(f, size)
            if sink:
                sink(data)
            else:
                body += data
            if read_line(f) != b"":
                raise BadRequest("chunk not followed by CRLF")
    elif cl is not None:
        n = int(cl)
        while n:
            data = f.read(min(n, 1 << 20))
            if not data:
                raise EOFError
            n -= len(data)
            if sink:
                sink(data)
            else:
                body += data
    req.body = bytes(body)
    return req


def ws_accept_key(key):
    return base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()


def ws_read_frame(f):
    b1, b2 = read_exact(f, 2)
    opcode = b1 & 0x0F
    masked = b2 & 0x80
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack(">H", read_exact(f, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", read_exact(f, 8))[0]
    mask = read_exact(f, 4) if masked else b"\0\0\0\0"
    data = bytearray(read_exact(f, n))
    for i in range(n):
        data[i] ^= mask[i % 4]
    return opcode, bytes(data)


def ws_frame(opcode, data, mask=False):
    head = bytearray([0x80 | opcode])
    n = len(data)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack(">H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack(">Q", n)
    if mask:
        key = b"\x11\x22\x33\x44"
        head += key
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return bytes(head) + data


class _Handler(socketserver.StreamRequestHandler):
    rbufsize = 65536
    wbufsize = 0

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.owner.lock:
            self.server.owner.connections += 1
            self.conn_id = self.server.owner.connections

    def handle(self):
        owner = self.server.owner
        while True:
            path = None
            sink_state = {"n": 0, "h": hashlib.sha256()}

            def sink(data):
                sink_state["n"] += len(data)
                sink_state["h"].update(data)
            try:
                # peek the request line to decide whether the body is sunk
                req = read_request(self.rfile, sink=None if not owner.sink_all else sink)
            except (EOFError, ConnectionError, OSError):
                return
            except BadRequest as e:
                owner.errors.append(str(e))
                return
            path = urllib.parse.urlsplit(req.target).path
            req.conn_id = self.conn_id
            if owner.sink_all:
                req.body_len = sink_state["n"]
                req.body_sha256 = sink_state["h"].hexdigest()
            with owner.lock:
                owner.requests.append(req)
            try:
                keep = self.respond(req, path)
            except (ConnectionError, OSError):
                return
            if not keep:
                return

    def send(self, data):
        self.wfile.write(data)

    def respond(self, req, path):
        owner = self.server.owner
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req.target).query))
        tail = path.rsplit("/", 2)
        if path.endswith("/close-before"):
            return False
        if path.endswith("/close-mid"):
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            return False
        if path.endswith("/raw"):
            self.send(bytes.fromhex(req.header("X-Raw-Response", "")))
            return req.header("X-Raw-Keep") == "1"
        if path.endswith("/ws"):
            key = req.header("Sec-WebSocket-Key", "")
            self.send(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept_key(key)).encode())
            while True:
                try:
                    op, data = ws_read_frame(self.rfile)
                except (EOFError, ConnectionError, OSError):
                    return False
                if op == 8:
                    self.send(ws_frame(8, data))
                    return False
                self.send(ws_frame(op, data))
        if path.endswith("/stream"):
            chunks, size, delay = int(q.get("chunks", 5)), int(q.get("size", 10)), int(q.get("delay", 100))
            self.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(chunks):
                time.sleep(delay / 1000.0)
                data = bytes([0x61 + i % 26]) * size
                self.send(b"%x\r\n%s\r\n" % (len(data), data))
            self.send(b"0\r\n\r\n")
            return True
        if path.endswith("/big"):
            n = int(q.get("bytes", 1000))
            self.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % n)
            block = b"x" * 65536
            while n:
                k = min(n, len(block))
                self.send(block[:k])
                n -= k
            return True
        if path.endswith("/until-close"):
            n = int(q.get("bytes", 1000))
            self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"y" * n)
            return False
        if path.endswith("/head-length"):
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n"
            self.send(head if req.method == "HEAD" else head + b"z" * 1234)
            return True
        if path.endswith("/interim"):
            self.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        status = 200
        if len(tail) >= 2 and tail[-2] == "status":
            status = int(tail[-1])
        if len(tail) >= 2 and tail[-2] == "sleep":
            time.sleep(int(tail[-1]) / 1000.0)
        if path.endswith("/sink") or owner.sink_all:
            n = getattr(req, "body_len", len(req.body))
            h = getattr(req, "body_sha256", hashlib.sha256(req.body).hexdigest())
            payload = json.dumps({"length": n, "sha256": h}).encode()
        else:
            payload = json.dumps({
                "method": req.method,
                "target": req.target,
                "version": req.version,
                "headers": req.headers,
                "body": base64.b64encode(req.body).decode(),
                "chunked": req.chunked,
                "connection": req.conn_id,
            }).encode()
        keep = not path.endswith("/no-keepalive") and req.header("Connection", "").lower() != "close"
        head = "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
            status, "OK" if status == 200 else "Status", len(payload), "" if keep else "Connection: close\r\n")
        if status in (204, 304):
            head = "HTTP/1.1 %d Status\r\n%s\r\n" % (status, "" if keep else "Connection: close\r\n")
            payload = b""
        if req.method == "HEAD":
            payload = b""
        self.send(head.encode() + payload)
        return keep


def stop_server(server, timeout=5.0):
    """Stops a socketserver whose serve_forever runs in a thread, and closes it.

    socketserver's shutdown() waits for the loop without a limit; a loop stuck
    in accept() would hang the test until the run's timeout.  Here the wait is
    bounded: after `timeout` s the listening socket is shut down, which wakes a
    blocked accept, and the loop gets another `timeout` s.  Handler threads are
    daemons and are not waited for; neither is a loop that still does not stop.
    """
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    stopper.join(timeout)
    if stopper.is_alive():
        try:
            server.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        stopper.join(timeout)
    server.server_close()
    if stopper.is_alive():  # what the test checked stands; the loop is a daemon thread
        print("note: a test server's loop did not stop in %.0f s" % (2 * timeout), file=sys.stderr)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


class EchoBackend:
    """A threaded HTTP/1.1 backend on 127.0.0.1 (or ::1 with family=AF_INET6)."""

    def __init__(self, port=0, host="127.0.0.1", sink_all=False):
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = []
        self.errors = []
        self.sink_all = sink_all
        self.server = _Server((host, port), _Handler)
        self.server.owner = self
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None

    def clear(self):
        with self.lock:
            self.requests.clear()
            self.connections = 0
            self.errors.clear()

    def close(self):
        stop_server(self.server)
