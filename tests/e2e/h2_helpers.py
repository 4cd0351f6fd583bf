"""An HTTP/2 client for the tests and the soak: the Python `h2` library over one
socket (h2c with prior knowledge, or TLS with ALPN h2), streams kept by id."""

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


class H2Client:
    """An HTTP/2 client over one socket (plain h2c or TLS with ALPN h2)."""

    def __init__(self, port, ca=None, settings=None, ack_data=True, timeout=10.0, cert=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ca:
            ctx = ssl.create_default_context(cafile=ca)
            ctx.set_alpn_protocols(["h2"])
            if cert:
                ctx.load_cert_chain(cert[0], cert[1])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.port = port
        self.ack_data = ack_data
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                         header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.streams = {}
        self.goaway = None
        self.closed = False
        self.remote_settings = {}
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method, path, headers=(), body=None, end=True, authority=None):
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":path", path), (":scheme", "http"),
              (":authority", authority or "127.0.0.1:%d" % self.port)] + list(headers)
        self.conn.send_headers(sid, hs, end_stream=end and body is None)
        self.streams[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        off = 0
        while off < len(body):
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.pump(lambda: self.conn.local_flow_control_window(sid) > 0, what="window for the upload")
                continue
            self.conn.send_data(sid, body[off:off + room])
            off += room
            self.flush()
        if end:
            self.conn.end_stream(sid)
        self.flush()

    def handle(self, ev):
        st = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            st["headers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            st.setdefault("interim", []).append(dict(ev.headers))
        elif isinstance(ev, h2.events.DataReceived):
            st["data"] += ev.data
            if self.ack_data:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            st["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            if st is not None:
                st["reset"] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[k] = v.new_value

    def pump(self, until, timeout=10.0, what="the condition"):
        deadline = time.monotonic() + timeout
        while not until():
            if self.closed or time.monotonic() > deadline:
                raise AssertionError("gave up waiting for %s" % what)
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                data = b""
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                break
            for ev in events:
                self.handle(ev)
            self.flush()
        return until()

    def response(self, sid, timeout=10.0):
        st = self.streams[sid]
        self.pump(lambda: st["ended"] or st["reset"] is not None, timeout, "stream %d" % sid)
        return st

    def wait_closed(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            try:
                self.pump(lambda: False, timeout=min(1.0, deadline - time.monotonic()))
            except (AssertionError, h2.exceptions.ProtocolError):
                pass
        return self.closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
