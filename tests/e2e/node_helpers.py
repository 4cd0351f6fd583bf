"""A small control plane of the tests' own, for gateway nodes (test_gateway_node.py).

It speaks the sync protocol of the contract (issue 14) on 127.0.0.1 -- the
long-poll GET .../configuration (If-None-Match, ETag, 304 when the wait runs
out), POST .../heartbeat, GatewayKey tokens signed with HMAC-SHA512 -- and
can also misbehave on purpose: answer 5xx, 401 TokenExpired, slowly, with a
document of another gateway or not JSON at all.  Everything it received is
kept for the tests to check.
"""

import datetime
import gzip
import hmac
import http.server
import json
import os
import re
import ssl
import subprocess
import threading
import time
from backends import stop_server
from conftest import free_port  # noqa: F401 (test_gateway_node takes it from here)
from gateway_helpers import make_token  # noqa: F401 (the tests of nodes take it from here)


def in_days(days):
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body=None, headers=None):
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 304:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 304:
            self.wfile.write(data)

    def _auth(self, gateway):
        cp = self.server.cp
        auth = self.headers.get("Authorization") or ""
        m = re.fullmatch(r"GatewayKey ([A-Za-z0-9._-]{1,80})&(\d{12})&(\S+)", auth)
        if not m:
            return "Unauthorized", "missing or malformed GatewayKey token"
        if m.group(1) != gateway:
            return "Unauthorized", "the token is another gateway's"
        want = make_token(gateway, cp.key, datetime.datetime.strptime(m.group(2), "%Y%m%d%H%M"))
        if not hmac.compare_digest(want, auth):
            return "Unauthorized", "the token's signature does not match"
        exp = datetime.datetime.strptime(m.group(2), "%Y%m%d%H%M").replace(tzinfo=datetime.timezone.utc)
        if cp.force_expired or exp <= datetime.datetime.now(datetime.timezone.utc):
            return "TokenExpired", "the token expired"
        return None, None

    def _route(self, method):
        cp = self.server.cp
        path, _, query = self.path.partition("?")
        m = re.fullmatch(r"/management/gateways/([^/]+)/(configuration|heartbeat)", path)
        if not m or (m.group(2) == "configuration") != (method == "GET"):
            return self._send(404, {"error": {"code": "NotFound", "message": "no such route"}})
        gateway, what = m.group(1), m.group(2)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with cp.lock:
            cp.calls.append({"what": what, "time": time.time(), "query": query, "auth": self.headers.get(
                "Authorization"), "if_none_match": self.headers.get("If-None-Match"), "body": body,
                             "accept_encoding": self.headers.get("Accept-Encoding")})
        if cp.fail_status:
            return self._send(cp.fail_status, {"error": {"code": "ServerError", "message": "failing on purpose"}})
        code, msg = self._auth(gateway)
        if code:
            return self._send(401, {"error": {"code": code, "message": msg}})
        if gateway != cp.gateway:
            return self._send(404, {"error": {"code": "NotFound", "message": "no such gateway"}})
        if what == "heartbeat":
            with cp.lock:
                cp.heartbeats.append(json.loads(body))
            return self._send(200, {"generation": cp.generation})
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        wait = min(max(int(params.get("wait", "25")), 0), 60)
        inm = (self.headers.get("If-None-Match") or "").strip('"')
        deadline = time.time() + wait
        with cp.cond:
            while str(cp.generation) == inm and not cp.closing and time.time() < deadline:
                cp.cond.wait(min(0.2, max(deadline - time.time(), 0.01)))
            gen, doc_bytes = cp.generation, cp.doc_bytes()
        if cp.delay:
            time.sleep(cp.delay)
        if str(gen) == inm:
            return self._send(304, headers={"ETag": '"%d"' % gen})
        headers = {"ETag": '"%d"' % gen}
        if cp.gzip and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            doc_bytes = gzip.compress(doc_bytes) if cp.raw is None else doc_bytes
            headers["Content-Encoding"] = "gzip"
        self._send(200, doc_bytes, headers)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeControlPlane:
    """The control plane's sync endpoints for one gateway; tls=(cert, key) for https."""

    def __init__(self, gateway="gw1", key="k" * 64, port=0, tls=None):
        self.gateway, self.key = gateway, key
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.generation = 1
        self.entities = {}
        self.raw = None  # bytes sent instead of the document (a broken one)
        self.calls, self.heartbeats = [], []
        self.fail_status = 0
        self.force_expired = False
        self.delay = 0
        self.gzip = False  # answer gzip when asked for it (raw bodies are sent as they are)
        self.closing = False
        self.tls = tls
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.cp = self
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def token(self, days=10, gateway=None, key=None):
        return make_token(gateway or self.gateway, key or self.key, in_days(days))

    def doc_bytes(self):
        if self.raw is not None:
            return self.raw
        return json.dumps({"gateway": self.gateway, "generation": self.generation,
                           "entities": self.entities}).encode()

    def publish(self, entities=None, raw=None):
        """A new generation: long-polls waiting answer at once."""
        with self.cond:
            if entities is not None:
                self.entities = entities
            self.raw = raw
            self.generation += 1
            self.cond.notify_all()
        return self.generation

    def polls(self):
        with self.lock:
            return [c for c in self.calls if c["what"] == "configuration"]

    def close(self):
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        stop_server(self.server)


def make_ca(folder, name="127.0.0.1"):
    """A self-signed CA and a server certificate it signed for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    ca_key, ca = os.path.join(folder, "ca.key"), os.path.join(folder, "ca.pem")
    key, csr, cert = (os.path.join(folder, n) for n in ("srv.key", "srv.csr", "srv.pem"))
    ext = os.path.join(folder, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\n" % name)

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key,
        "-out", ca, "-days", "2", "-subj", "/CN=portico test control plane CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=%s" % name)
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", ext)
    return ca, cert, key


def echo_entities(backend_url, api_id="echo", path="echo", extra_header=None, key="sub-key-0123456789"):
    """A document's entities: one API on the echo backend, a product and a subscription (a key in clear)."""
    api = {
        "id": api_id, "path": path, "serviceUrl": backend_url + "/base", "subscriptionRequired": False,
        "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
    }
    if extra_header:
        api["policies"] = {"outbound": [{"set-header": {"name": extra_header[0], "value": extra_header[1]}}]}
    return {
        "apis": [api],
        "products": [{"id": "starter", "displayName": "Starter", "state": "published", "apis": [api_id]}],
        "subscriptions": [{"id": "s1", "displayName": "S1", "scope": "/products/starter",
                           "primaryKey": key, "secondaryKey": key + "-2", "state": "active"}],
    }


def metric(text, name):
    """A metric's value in a Prometheus text page (None when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


