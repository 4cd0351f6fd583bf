"""Helpers for the management API tests: a gateway with a management
listener, and a small JSON client for it."""

import http.client
import json
import socket
import time

from conftest import basic_config, free_port

TOKEN = "admin-secret-token"


def mgmt_config(backend_url, **extra):
    cfg = basic_config(backend_url)
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    cfg.update(extra)
    return cfg


class Mgmt:
    """JSON client for the management API of a started Portico."""

    def __init__(self, p, token=TOKEN):
        self.p = p
        self.port = int(p.config["management"]["listen"].rsplit(":", 1)[1])
        self.token = token
        deadline = time.time() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None, token=None, headers=None, raw=None, content_type=None):
        """(status, headers lower-cased, parsed JSON or text or None)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            h["Authorization"] = "Bearer " + tok
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if content_type:
            h["Content-Type"] = content_type
        path = path if path.startswith("/") else "/management/" + path
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()
        out = None
        if text:
            try:
                out = json.loads(text)
            except ValueError:
                out = text.decode(errors="replace")
        return r.status, hdrs, out

    def ok(self, method, path, body=None, **kw):
        status, _, out = self.call(method, path, body, **kw)
        assert 200 <= status < 300, (method, path, status, out)
        return out

    def keys(self, sid):
        return self.ok("POST", "subscriptions/%s/listSecrets" % sid)


def gateway_call(p, path, key=None, header="Ocp-Apim-Subscription-Key", method="GET"):
    h = {header: key} if key else {}
    return p.request(method, path, headers=h)
