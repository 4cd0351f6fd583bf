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

H2Backend is an HTTP/2 backend (python3-h2): h2c with prior knowledge, or TLS
with ALPN.  It records each request (pseudo-fields, headers, body, trailers)
and the connections it accepted; paths:

  /hold...                   answer only once `release` is set (streams stay open)
  /silent                    never answer
  /rst                       reset the stream (INTERNAL_ERROR) on its HEADERS
  /goaway                    the first one: GOAWAY not processing it, then close
  /goaway-after              GOAWAY that lets this stream finish (answered as usual)
  /duplex                    answer at once, echo each DATA chunk as it arrives
  /early                     answer whole on the first DATA chunk, then read the rest of the body
  /big?bytes=N               a Content-Length response of N bytes (no JSON)
  /trailers                  the JSON echo, then trailers (grpc-status: 0, x-trailer)
  /big-headers               a response header list of about 200 KB
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


class H2Backend:
    """An HTTP/2 backend on 127.0.0.1 (see the module's notes): tls=(cert, key) for TLS with ALPN
    `alpn`, else h2c with prior knowledge.  `max_streams` and `window` go into its SETTINGS;
    `hostile` makes every connection misbehave: "garbage" (bytes that are no frame after its
    preface) or "settings-flood" (SETTINGS frames without end)."""

    def __init__(self, tls=None, alpn=("h2",), max_streams=None, window=None, hostile=None):
        import ssl
        self.lock = threading.Lock()
        self.connections = 0
        self.closed_connections = 0
        self.requests = []
        self.errors = []
        self.open_now = 0
        self.max_open = 0
        self.release = threading.Event()
        self.goaway_sent = False
        self.resets_sent = 0
        self.max_streams = max_streams
        self.window = window
        self.hostile = hostile
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*tls)
            self.ctx.set_alpn_protocols(list(alpn))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.ctx else "http", "localhost" if self.ctx else "127.0.0.1",
                               self.port)

    def close(self):
        self.stopping = True
        self.release.set()
        self.thread.join(5)
        self.sock.close()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        import ssl
        try:
            if self.ctx:
                s.settimeout(5)
                s = self.ctx.wrap_socket(s, server_side=True)
            with self.lock:
                self.connections += 1
            _H2Conn(self, s).run()
        except (OSError, ssl.SSLError) as e:
            with self.lock:
                self.errors.append(repr(e))
        except Exception as e:  # a bug in the test backend: the test sees it
            with self.lock:
                self.errors.append("backend failure: %r" % e)
        finally:
            try:
                s.close()
            except OSError:
                pass
            with self.lock:
                self.closed_connections += 1


class _H2Conn:
    def __init__(self, owner, sock):
        import h2.config
        import h2.connection
        import h2.settings
        self.o = owner
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                         header_encoding="utf-8"))
        init = {}
        if owner.max_streams is not None:
            init[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = owner.max_streams
        if owner.window is not None:
            init[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = owner.window
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values=init)
        self.conn.initiate_connection()
        self.streams = {}
        self.out = {}  # stream id -> [bytes left to send, end after them, trailers]
        self.done = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(self):
        import h2.exceptions
        self.sock.settimeout(0.05)
        self.flush()
        while not self.done and not self.o.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                data = None
            if data == b"":
                return
            if data:
                if self.o.hostile == "garbage":
                    self.sock.sendall(b"\xff" * 64 + b"this is no HTTP/2 frame")
                elif self.o.hostile == "settings-flood":
                    frame = struct.pack(">I", 6)[1:] + b"\x04\x00" + struct.pack(">I", 0) + b"\x00\x03\x00\x00\x00\x64"
                    try:
                        for _ in range(5000):
                            self.sock.sendall(frame)
                    except OSError:
                        return
                    continue  # and never answers
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    return
                for ev in events:
                    self.event(ev)
            self.pending()
            self.flush()

    def event(self, ev):
        import h2.events
        if self.done:
            return
        sid = getattr(ev, "stream_id", None)
        if isinstance(ev, h2.events.RequestReceived):
            with self.o.lock:
                self.o.open_now += 1
                self.o.max_open = max(self.o.max_open, self.o.open_now)
            self.streams[sid] = {"headers": list(ev.headers), "body": bytearray(), "trailers": None,
                                 "ended": False, "answered": False}
            self.on_headers(sid)
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(sid)
            self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            if st is None:
                return
            st["body"] += ev.data
            if self.path(sid).startswith("/duplex"):
                self.send(sid, bytes(ev.data), end=False)
            elif self.path(sid).startswith("/early") and not st["answered"]:
                st["answered"] = True
                self.conn.send_headers(sid, [(":status", "200"), ("content-length", "5")])
                self.send(sid, b"early", end=True)
            elif self.path(sid).startswith("/answer-rst") and not st["answered"]:
                # a gRPC server ending a client-streaming call early: the whole response, trailers
                # included, then RST_STREAM NO_ERROR ("stop sending", RFC 9113 8.1)
                st["answered"] = True
                st["rst_after"] = True
                self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                self.send(sid, b"done", end=True, trailers=[("grpc-status", "0")])
        elif isinstance(ev, h2.events.TrailersReceived):
            if sid in self.streams:
                self.streams[sid]["trailers"] = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            st = self.streams.get(sid)
            if st is None:
                return
            st["ended"] = True
            st["rec"] = self.record(sid)
            if st.get("local_done"):
                self.closed(sid)
            elif self.path(sid).startswith("/duplex"):
                self.send(sid, b"", end=True)
        elif isinstance(ev, h2.events.StreamReset):
            if sid in self.streams:
                self.streams[sid]["reset"] = ev.error_code
                self.closed(sid)

    def closed(self, sid):
        st = self.streams.pop(sid, None)
        self.out.pop(sid, None)
        if st is not None:
            with self.o.lock:
                self.o.open_now -= 1

    def path(self, sid):
        """The path without the /base a test API's serviceUrl puts in front."""
        p = dict(self.streams[sid]["headers"]).get(":path", "")
        return p[5:] if p.startswith("/base/") else p

    def record(self, sid):
        st = self.streams[sid]
        h = st["headers"]
        rec = {"method": dict(h).get(":method"), "path": dict(h).get(":path"),
               "authority": dict(h).get(":authority"), "scheme": dict(h).get(":scheme"),
               "headers": [(k, v) for k, v in h if not k.startswith(":")],
               "body": bytes(st["body"]), "trailers": st["trailers"]}
        with self.o.lock:
            self.o.requests.append(rec)
        return rec

    def on_headers(self, sid):
        import h2.errors
        path = self.path(sid)
        if path.startswith("/rst"):
            self.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.closed(sid)
        elif path.startswith("/goaway-after"):
            # graceful: this stream is processed, no new one will be (written by hand: python3-h2
            # sends nothing more once it sent a GOAWAY)
            self.flush()
            self.sock.sendall(struct.pack(">I", 8)[1:] + b"\x07\x00" + struct.pack(">III", 0, sid, 0))
        elif path.startswith("/goaway") and not self.o.goaway_sent:
            self.o.goaway_sent = True
            self.conn.close_connection(last_stream_id=0)
            self.flush()
            self.done = True
        elif path.startswith("/duplex"):
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/octet-stream")])
            self.streams[sid]["answered"] = True
        elif path.startswith("/big-headers"):
            hs = [(":status", "200")] + [("x-big-%d" % i, "v" * 1000) for i in range(200)]
            self.conn.send_headers(sid, hs, end_stream=True)
            self.streams[sid]["answered"] = True

    def send(self, sid, data, end, trailers=None):
        if sid not in self.streams:
            return
        q = self.out.setdefault(sid, [bytearray(), False, None])
        q[0] += data
        q[1] = q[1] or end
        q[2] = trailers or q[2]

    def answer(self, sid):
        st = self.streams[sid]
        st["answered"] = True
        path = self.path(sid)
        if path.startswith("/big?"):
            n = int(urllib.parse.parse_qs(path.split("?", 1)[1])["bytes"][0])
            body = (hashlib.sha256(b"portico").digest() * (n // 32 + 1))[:n]
            self.conn.send_headers(sid, [(":status", "200"), ("content-length", str(n))])
            self.send(sid, body, end=True)
            return
        rec = dict(st["rec"])
        body = bytes(rec.pop("body"))
        rec["body_len"] = len(body)
        rec["sha256"] = hashlib.sha256(body).hexdigest()
        rec["text"] = body[:1024].decode("latin-1")
        payload = json.dumps(rec).encode()
        if path.startswith("/trailers"):
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
            self.send(sid, payload, end=True, trailers=[("grpc-status", "0"), ("x-trailer", "yes")])
        elif path.startswith("/big-trailers?"):
            # trailers of `bytes` in one field (a large grpc-status-details-bin, say)
            n = int(urllib.parse.parse_qs(path.split("?", 1)[1])["bytes"][0])
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
            self.send(sid, payload, end=True, trailers=[("grpc-status", "0"), ("x-big", "t" * n)])

        else:
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                         ("content-length", str(len(payload)))])
            self.send(sid, payload, end=True)

    def pending(self):
        if self.done:
            return
        for sid, st in list(self.streams.items()):
            if st["answered"] or not st["ended"]:
                continue
            path = self.path(sid)
            if path.startswith("/silent") or (path.startswith("/hold") and not self.o.release.is_set()):
                continue
            self.answer(sid)
        for sid, q in list(self.out.items()):
            while q[0]:
                room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if room <= 0:
                    break
                self.conn.send_data(sid, bytes(q[0][:room]))
                del q[0][:room]
            if not q[0] and q[1]:
                if q[2]:
                    self.conn.send_headers(sid, q[2], end_stream=True)
                else:
                    self.conn.end_stream(sid)
                if self.streams[sid]["ended"]:
                    self.closed(sid)
                elif self.streams[sid].get("rst_after"):
                    import h2.errors
                    self.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.NO_ERROR)
                    with self.o.lock:
                        self.o.resets_sent += 1
                    self.closed(sid)
                else:  # answered early: the request's body is still read
                    self.out.pop(sid, None)
                    self.streams[sid]["local_done"] = True
