#!/usr/bin/env python3
"""A tiny demo backend for conf/portico.yaml: answers every request with a JSON
description of what it received (method, path, headers, body).

Usage: demo-backend.py [HOST [PORT [RECORD]]]; with RECORD, each request's
method and path are also appended to that file, one JSON line each."""
import http.server
import json
import sys
import threading

RECORD = sys.argv[3] if len(sys.argv) > 3 else None
record_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if RECORD:
            with record_lock, open(RECORD, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path}) + "\n")
        out = json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers),
                          "body": body.decode("utf-8", "replace")}, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = answer

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9001
    http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()
