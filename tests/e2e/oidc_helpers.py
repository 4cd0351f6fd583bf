"""A small OpenID Connect provider for the validate-jwt tests: HTTPS (the
test CA), serving /.well-known/openid-configuration and /jwks, with keys
the test can rotate, and a count of the fetches."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from backends import stop_server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        p = self.server.owner
        with p.lock:
            p.hits[self.path] = p.hits.get(self.path, 0) + 1
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": p.url, "jwks_uri": p.url + "/jwks"}
            elif self.path == "/jwks":
                body = {"keys": list(p.keys)}
            else:
                body = None
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if p.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 100):
                part = data[i:i + 100]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


class OidcProvider:
    def __init__(self, cert, key, chunked=True):
        self.keys = []
        self.hits = {}
        self.chunked = chunked
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.owner = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = "https://localhost:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fetches(self, path="/jwks"):
        with self.lock:
            return self.hits.get(path, 0)

    def close(self):
        stop_server(self.server)
