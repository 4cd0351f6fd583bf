"""Helpers for the policy-engine end-to-end tests (test_policies.py).

FlakyBackend is a small HTTP/1.1 backend whose answers change over time so
that `retry` has something to retry:

  /fail/{n}/{status}/{anything}   the first n requests with the same path get
                                  `status`, later ones 200
  anything else                   200

Every answer is JSON: {"attempt": k, "status": s, "method", "target", "body"
(text)}; every request is recorded with its arrival time (monotonic).
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from backends import stop_server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _serve(self):
        owner = self.server.owner
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
            body = bytes(body)
        path = self.path.split("?", 1)[0]
        with owner.lock:
            owner.counts[path] = owner.counts.get(path, 0) + 1
            attempt = owner.counts[path]
            owner.requests.append({"method": self.command, "target": self.path, "path": path,
                                   "headers": dict(self.headers.items()), "body": body,
                                   "time": time.monotonic(), "attempt": attempt})
        status = 200
        parts = path.split("/")
        if "fail" in parts:
            i = parts.index("fail")
            try:
                fails, fail_status = int(parts[i + 1]), int(parts[i + 2])
            except (IndexError, ValueError):
                fails, fail_status = 0, 200
            if attempt <= fails:
                status = fail_status
        payload = json.dumps({"attempt": attempt, "status": status, "method": self.command,
                              "target": self.path, "body": body.decode("latin1")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Attempt", str(attempt))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FlakyBackend:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.requests = []
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.owner = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def hits(self, fragment=""):
        with self.lock:
            return [r for r in self.requests if fragment in r["path"]]

    def close(self):
        stop_server(self.server)
