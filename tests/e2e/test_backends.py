"""Backends (issue 13): the Backend entity (file, management API, export and
apply), an API's backendId, set-backend-service by URL and by id, the
credentials and TLS settings a backend adds to forwarded calls, and the proxy
policy against a small HTTP proxy the test starts.

Everything runs the real binary against real backends on 127.0.0.1."""

import base64
import re
import socket
import threading
import time
import urllib.parse

import pytest

from conftest import basic_config
from mgmt_helpers import TOKEN, Mgmt, mgmt_config
from tls_helpers import Pki, TLSEchoBackend

POS = re.compile(r"portico\.yaml:(\d+):(\d+): ")


def api(**extra):
    a = {"id": "svc", "path": "svc", "subscriptionRequired": False,
         "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}
    a.update(extra)
    return a


def target_of(req):
    return urllib.parse.urlsplit(req.target)


# ------------------------------------------------------------------ entity, backendId, credentials


def test_backend_id_sends_credentials_with_named_values(backend, portico):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "secret", "displayName": "secret", "value": "s3cr3t", "secret": True}]
    cfg["backends"] = [{
        "id": "be1", "url": backend.url + "/v1", "description": "the first",
        "credentials": {
            "header": {"X-Api-Key": ["{{secret}}"], "X-Multi": ["a", "b"]},
            "query": {"code": ["a b&c"]},
            "authorization": {"scheme": "Bearer", "parameter": "tok-{{secret}}"},
        },
    }]
    cfg["apis"].append(api(backendId="be1", serviceUrl=backend.url + "/ignored"))
    p = portico(cfg)
    st, _, _ = p.request("GET", "/svc/items/1?x=1",
                         headers={"Authorization": "Basic client", "X-Api-Key": "from-client"})
    assert st == 200
    req = backend.last()
    u = target_of(req)
    # backendId wins over serviceUrl; the credential query is added after the client's
    assert u.path == "/v1/items/1"
    assert u.query == "x=1&code=a%20b%26c"
    assert req.header_all("X-Api-Key") == ["s3cr3t"]  # replaced, never the client's
    assert req.header("X-Multi") == "a, b"
    assert req.header_all("Authorization") == ["Bearer tok-s3cr3t"]
    # the API without backendId is untouched by them
    st, _, _ = p.request("GET", "/echo/items/2", headers={"Authorization": "Basic client"})
    assert st == 200
    req = backend.last()
    assert req.header("Authorization") == "Basic client" and req.header("X-Api-Key") is None
    assert target_of(req).path == "/base/items/2"


def test_pool_backend_id_reaches_a_member_with_its_credentials(backend, portico):
    cfg = basic_config(backend.url)
    cfg["backends"] = [
        {"id": "m1", "url": backend.url + "/m1", "credentials": {"header": {"X-Member": ["m1"]}}},
        {"id": "pool", "type": "Pool", "pool": {"services": [{"id": "m1", "weight": 3, "priority": 0}]}},
    ]
    cfg["apis"].append(api(backendId="pool"))
    p = portico(cfg)
    assert p.request("GET", "/svc/x")[0] == 200
    req = backend.last()
    assert target_of(req).path == "/m1/x" and req.header("X-Member") == "m1"


def test_tls_toggles(portico, backend, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("srv", "localhost", sans=("DNS:localhost",), issuer="other")  # nobody trusts it
    tb = TLSEchoBackend(cert, key)
    try:
        cfg = basic_config(backend.url)
        cfg["backends"] = [
            {"id": "strict", "url": tb.url},
            {"id": "lax", "url": tb.url, "tls": {"validateCertificateChain": False}},
        ]
        cfg["apis"] += [api(id="s", path="s", backendId="strict"), api(id="l", path="l", backendId="lax")]
        p = portico(cfg)
        st, _, body = p.request("GET", "/s/x")
        assert st == 502, body  # the untrusted chain is refused by default
        n = len(tb.requests)
        assert p.request("GET", "/l/x")[0] == 200
        assert len(tb.requests) == n + 1 and target_of(tb.requests[-1]).path == "/x"
        # and the refusal still holds after the lax call (connections are not shared)
        assert p.request("GET", "/s/x")[0] == 502
    finally:
        tb.close()


def test_tls_name_toggle(portico, backend, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("srv", "elsewhere", sans=("DNS:elsewhere.example",))
    tb = TLSEchoBackend(cert, key)
    try:
        cfg = basic_config(backend.url, upstream={"caFile": pki.ca})
        cfg["backends"] = [
            {"id": "strict", "url": tb.url},
            {"id": "noname", "url": tb.url, "tls": {"validateCertificateName": False}},
        ]
        cfg["apis"] += [api(id="s", path="s", backendId="strict"), api(id="n", path="n", backendId="noname")]
        p = portico(cfg)
        assert p.request("GET", "/s/x")[0] == 502
        assert p.request("GET", "/n/x")[0] == 200
    finally:
        tb.close()


# ------------------------------------------------------------------ validation: file:line:column


BAD = [
    ("unknown backendId", {"apis+": [api(backendId="nope")]}, "backendId 'nope' is not a backend"),
    ("unknown pool member", {"backends": [{"id": "p", "type": "Pool", "pool": {"services": [{"id": "ghost"}]}}]},
     "pool service 'ghost' is not a backend"),
    ("nested pool", {"backends": [
        {"id": "a", "url": "http://127.0.0.1:9"},
        {"id": "inner", "type": "Pool", "pool": {"services": [{"id": "a"}]}},
        {"id": "outer", "type": "Pool", "pool": {"services": [{"id": "inner"}]}}]},
     "is itself a pool (pools cannot be nested)"),
    ("pool loop", {"backends": [
        {"id": "p1", "type": "Pool", "pool": {"services": [{"id": "p2"}]}},
        {"id": "p2", "type": "Pool", "pool": {"services": [{"id": "p1"}]}}]},
     "is itself a pool"),
    ("pool without services", {"backends": [{"id": "p", "type": "Pool", "pool": {"services": []}}]},
     "a pool needs services"),
    ("pool without pool", {"backends": [{"id": "p", "type": "Pool"}]}, "a Pool needs pool.services"),
    ("pool with credentials", {"backends": [
        {"id": "a", "url": "http://127.0.0.1:9"},
        {"id": "p", "type": "Pool", "credentials": {"header": {"X-A": ["1"]}}, "pool": {"services": [{"id": "a"}]}}]},
     "a Pool's calls carry its members' credentials"),
    ("single without url", {"backends": [{"id": "s"}]}, "a Single backend needs a url"),
    ("url not http", {"backends": [{"id": "s", "url": "ftp://127.0.0.1/x"}]}, "must start with http:// or https://"),
    ("bad duration", {"backends": [{"id": "s", "url": "http://127.0.0.1:9", "circuitBreaker": {"rules": [
        {"name": "r", "failureCondition": {"count": 3, "interval": "PT1X",
                                           "statusCodeRanges": [{"min": 500, "max": 599}]},
         "tripDuration": "PT1M"}]}}]}, "interval 'PT1X' is not a duration"),
    ("weight 0", {"backends": [{"id": "a", "url": "http://127.0.0.1:9"},
                               {"id": "p", "type": "Pool", "pool": {"services": [{"id": "a", "weight": 0}]}}]},
     "weight"),
    ("status above 599", {"backends": [{"id": "s", "url": "http://127.0.0.1:9", "circuitBreaker": {"rules": [
        {"failureCondition": {"count": 3, "interval": "PT1M", "statusCodeRanges": [{"min": 500, "max": 600}]},
         "tripDuration": "PT1M"}]}}]}, "600"),
    ("min above max", {"backends": [{"id": "s", "url": "http://127.0.0.1:9", "circuitBreaker": {"rules": [
        {"failureCondition": {"count": 3, "interval": "PT1M", "statusCodeRanges": [{"min": 504, "max": 500}]},
         "tripDuration": "PT1M"}]}}]}, "min 504 is above max 500"),
    ("neither count nor percentage", {"backends": [{"id": "s", "url": "http://127.0.0.1:9", "circuitBreaker": {
        "rules": [{"failureCondition": {"interval": "PT1M", "errorReasons": ["Timeout"]},
                   "tripDuration": "PT1M"}]}}]}, "failureCondition needs count or percentage"),
    ("unknown credential key", {"backends": [{"id": "s", "url": "http://127.0.0.1:9",
                                              "credentials": {"headers": {"a": ["b"]}}}]}, "unknown key 'headers'"),
    ("set-backend-service unknown id", {"apis+": [api(policies={"inbound": [
        {"set-backend-service": {"backend-id": "ghost"}}]})]}, "backend-id 'ghost' is not a backend"),
    ("set-backend-service both", {"apis+": [api(policies={"inbound": [
        {"set-backend-service": {"backend-id": "x", "base-url": "http://127.0.0.1:9"}}]})]},
     "give base-url or backend-id"),
    ("set-backend-service not http", {"apis+": [api(policies={"inbound": [
        {"set-backend-service": {"base-url": "gopher://127.0.0.1:9"}}]})]}, "is not an http:// or https:// URL"),
    ("inherited backend-id", {
        "backends": [{"id": "be", "url": "http://127.0.0.1:9"}],
        "policies": {"inbound": [{"set-backend-service": {"backend-id": "be"}}]},
        "apis+": [api(policies={"inbound": ["base", {"set-backend-service": {"base-url": "http://127.0.0.1:9/x"}}]})]},
     "base-url cannot override the backend-id set in a wider scope"),
    ("proxy https", {"apis+": [api(policies={"inbound": [{"proxy": {"url": "https://127.0.0.1:9"}}]})]},
     "is not an http:// proxy URL"),
]


@pytest.mark.parametrize("name, extra, message", BAD, ids=[b[0] for b in BAD])
def test_refused_with_file_line_column(backend, portico, name, extra, message):
    cfg = basic_config(backend.url)
    for k, v in extra.items():
        if k.endswith("+"):
            cfg[k[:-1]] = cfg[k[:-1]] + v
        else:
            cfg[k] = v
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0, out
    lines = [ln for ln in out.splitlines() if message in ln]
    assert lines, out
    m = POS.search(lines[0])
    assert m and int(m.group(1)) > 1 and int(m.group(2)) >= 1, lines[0]


def test_inherited_backend_id_overridden_by_backend_id(backend, portico):
    """The rule's allowed side: backend-id over an inherited backend-id, and base-url where no wider scope
    set backend-id (or before the inherited one runs)."""
    cfg = basic_config(backend.url)
    cfg["backends"] = [{"id": "a", "url": backend.url + "/a"}, {"id": "b", "url": backend.url + "/b"}]
    cfg["apis"].append(api(policies={"inbound": [{"set-backend-service": {"backend-id": "a"}}]},
                           operations=[{"id": "o", "method": "GET", "urlTemplate": "/*", "policies": {
                               "inbound": ["base", {"set-backend-service": {"backend-id": "b"}}]}}]))
    cfg["apis"].append(api(id="u", path="u", policies={"inbound": [
        {"set-backend-service": {"base-url": backend.url + "/u"}}, "base"]}))
    p = portico(cfg)
    assert p.request("GET", "/svc/x")[0] == 200 and target_of(backend.last()).path == "/b/x"
    assert p.request("GET", "/u/x")[0] == 200 and target_of(backend.last()).path == "/u/x"


@pytest.mark.parametrize("where", ["header", "authorization"])
def test_named_value_with_crlf_cannot_inject_headers(backend, portico, where):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "evil", "displayName": "evil", "value": "x\r\nX-Injected: 1"}]
    creds = ({"header": {"X-A": ["{{evil}}"]}} if where == "header"
             else {"authorization": {"scheme": "Bearer", "parameter": "{{evil}}"}})
    cfg["backends"] = [{"id": "b", "url": backend.url, "credentials": creds}]
    cfg["apis"].append(api(backendId="b"))
    rc, out = portico(cfg, start=False).check()
    assert rc != 0 and "CR or LF once named values are substituted" in out and POS.search(out), out


def test_durations_iso_and_short_forms_are_accepted(backend, portico):
    cfg = basic_config(backend.url)
    cfg["backends"] = [{"id": "s", "url": backend.url, "circuitBreaker": {"rules": [
        {"name": "a", "failureCondition": {"percentage": 50, "interval": "PT0.5S",
                                           "statusCodeRanges": [{"min": 500, "max": 599}],
                                           "errorReasons": ["Timeout", "BackendConnectionFailure"]},
         "tripDuration": "P0DT1H", "acceptRetryAfter": True},
        {"name": "b", "failureCondition": {"count": 5, "interval": "30s", "errorReasons": ["Timeout"]},
         "tripDuration": "PT1M30S"}]},
        "healthCheck": {"path": "/health", "interval": "5s", "timeout": "1s"}}]
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc == 0, out


# ------------------------------------------------------------------ management API: 400s and round trip


@pytest.fixture
def env(backend, portico):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


REST_BAD = [
    ("backends/b", {"url": "ftp://127.0.0.1/x"}, "url"),
    ("backends/b", {"type": "Pool", "pool": {"services": [{"id": "ghost"}]}}, "services[0].id"),
    ("backends/b", {"type": "Pool", "pool": {"services": []}}, "services"),
    ("backends/b", {"type": "Single"}, "id"),
    ("backends/b", {"url": "http://127.0.0.1:9", "circuitBreaker": {"rules": [
        {"failureCondition": {"count": 1, "interval": "soon", "errorReasons": ["Timeout"]},
         "tripDuration": "PT1M"}]}}, "interval"),
    ("apis/a", {"path": "a", "backendId": "ghost"}, "backendId"),
]


@pytest.mark.parametrize("path, body, key", REST_BAD, ids=[str(i) for i in range(len(REST_BAD))])
def test_management_refuses_with_400(env, backend, path, body, key):
    p, m = env
    st, _, out = m.call("PUT", path, body)
    assert st == 400, out
    assert any(key in d.get("target", "") for d in out["error"].get("details", [])), out
    assert m.call("GET", path)[0] == 404  # nothing stored
    # and the gateway still serves as before
    assert p.request("GET", "/echo/items/1")[0] == 200


def test_apply_refuses_a_nested_pool_with_its_position(env, backend):
    p, m = env
    doc = """
backends:
  - {id: a, url: "%s"}
  - id: inner
    type: Pool
    pool: {services: [{id: a}]}
  - id: outer
    type: Pool
    pool:
      services:
        - id: inner
""" % backend.url
    st, _, out = m.call("POST", "apply", raw=doc.encode(), content_type="application/yaml")
    assert st == 400, out
    d = out["error"]["details"][0]
    assert "is itself a pool" in d["message"] and d["target"] == "backends[2].pool.services[0].id", out
    assert m.call("GET", "backends/a")[0] == 404  # nothing of the document was kept


def test_management_entity_and_export_apply_round_trip(env, backend):
    p, m = env
    be = {"url": backend.url + "/rt", "description": "round trip",
          "credentials": {"header": {"X-K": ["v"]}, "query": {"q": ["1"]},
                          "authorization": {"scheme": "Basic", "parameter": "dXM6cHc="}},
          "tls": {"validateCertificateChain": True, "validateCertificateName": False},
          "circuitBreaker": {"rules": [{"name": "r", "failureCondition": {
              "count": 3, "interval": "PT10S", "statusCodeRanges": [{"min": 500, "max": 599}]},
              "tripDuration": "PT30S", "acceptRetryAfter": True}]},
          "healthCheck": {"path": "/h", "interval": "10s"}}
    st, _, out = m.call("PUT", "backends/rt", be)
    assert st == 201, out
    m.ok("PUT", "backends/pl", {"type": "Pool", "pool": {"services": [{"id": "rt", "weight": 2}]}})
    m.ok("PUT", "apis/a", {"path": "a", "backendId": "pl", "subscriptionRequired": False})
    m.ok("PUT", "apis/a/operations/all", {"method": "*", "urlTemplate": "/*"})
    assert p.request("GET", "/a/z?c=3")[0] == 200
    req = backend.last()
    assert target_of(req).path == "/rt/z" and target_of(req).query == "c=3&q=1"
    assert req.header("X-K") == "v" and req.header("Authorization") == "Basic dXM6cHc="
    got = m.ok("GET", "backends/rt")
    for k, v in be.items():
        assert got[k] == v, k
    # a backend in use cannot go away
    st, _, out = m.call("DELETE", "backends/pl")
    assert st == 409 and "backendId" in str(out), out
    exported = m.ok("GET", "export")
    ids = {b["id"]: b for b in exported["backends"]}
    assert ids["rt"]["credentials"] == be["credentials"] and ids["pl"]["type"] == "Pool"
    # the export applies back unchanged
    st, _, out = m.call("POST", "apply", {"backends": exported["backends"], "apis": exported["apis"]})
    assert st == 200, out
    assert m.ok("GET", "export")["backends"] == exported["backends"]


# ------------------------------------------------------------------ set-backend-service


def test_set_backend_service_by_url_and_by_id(backend, portico):
    other = type(backend)()
    try:
        cfg = basic_config(backend.url)
        cfg["backends"] = [{"id": "ob", "url": other.url + "/byid", "credentials": {"header": {"X-Be": ["ob"]}}}]
        cfg["apis"].append(api(serviceUrl=backend.url + "/default", policies={"inbound": [
            "base",
            {"choose": [
                {"when": "@(context.request.headers:get('X-To', '') == 'lit')",
                 "then": [{"set-backend-service": {"base-url": other.url + "/lit"}}]},
                {"when": "@(context.request.headers:get('X-To', '') == 'expr')",
                 "then": [{"set-backend-service": {
                     "base-url": "@('http://127.0.0.1:" + str(other.port) + "/ex' .. 'pr')"}}]},
                {"when": "@(context.request.headers:get('X-To', '') == 'id')",
                 "then": [{"set-backend-service": {"backend-id": "ob"}}]},
                {"when": "@(context.request.headers:get('X-To', '') == 'idx')",
                 "then": [{"set-backend-service": {
                     "backend-id": "@(context.request.headers:get('X-Id', ''))"}}]},
                {"when": "@(context.request.headers:get('X-To', '') == 'host')",
                 "then": [{"set-backend-service": {"base-url": "@('http://unknown.invalid:1')"}}]},
            ]},
        ]}))
        p = portico(cfg)
        assert p.request("GET", "/svc/a")[0] == 200
        assert target_of(backend.last()).path == "/default/a"
        for to, path, be_header in [("lit", "/lit/a", None), ("expr", "/expr/a", None), ("id", "/byid/a", "ob")]:
            st, _, body = p.request("GET", "/svc/a", headers={"X-To": to})
            assert st == 200, (to, body)
            r = other.last()
            assert target_of(r).path == path and r.header("X-Be") == be_header, to
        n = len(other.requests)
        st, _, body = p.request("GET", "/svc/a", headers={"X-To": "idx", "X-Id": "ob"})
        assert st == 200 and len(other.requests) == n + 1
        # an id that names nothing, and a host nobody resolved: 500, the backends untouched
        nb, no = len(backend.requests), len(other.requests)
        st, _, body = p.request("GET", "/svc/a", headers={"X-To": "idx", "X-Id": "ghost"})
        assert st == 500 and b"BackendNotFound" not in body  # the reason is logged, not shown
        st, _, body = p.request("GET", "/svc/a", headers={"X-To": "host"})
        assert st == 500
        assert len(backend.requests) == nb and len(other.requests) == no
    finally:
        other.close()


# ------------------------------------------------------------------ proxy


class MiniProxy:
    """A forward HTTP proxy on 127.0.0.1: one exchange per connection, the
    request line in absolute form; records what it received and relays it to
    the target (or answers 407 without the expected credentials)."""

    def __init__(self, user=None, password=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.want = None
        if user is not None:
            self.want = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.stop = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            c.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
            self.seen.append((method, target, headers))
            auth = [v for k, v in headers if k.lower() == "proxy-authorization"]
            if self.want and auth != [self.want]:
                c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n"
                          b"Connection: close\r\n\r\n")
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
                c.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                if rest:
                    up.sendall(rest)
                self.relay(c, up)
                return
            u = urllib.parse.urlsplit(target)
            up = socket.create_connection((u.hostname, u.port), timeout=5)
            keep = [(k, v) for k, v in headers if k.lower() not in ("proxy-authorization", "connection")]
            out = "%s %s HTTP/1.1\r\n" % (method, u.path + ("?" + u.query if u.query else ""))
            out += "".join("%s: %s\r\n" % kv for kv in keep) + "Connection: close\r\n\r\n"
            up.sendall(out.encode("latin-1") + rest)
            resp = b""
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                resp += chunk
            up.close()
            c.sendall(resp)
        except OSError:
            pass
        finally:
            c.close()

    @staticmethod
    def relay(a, b):
        """Bytes both ways until either side closes (bounded by the sockets' timeouts)."""
        def pump(src, dst):
            try:
                while True:
                    d = src.recv(65536)
                    if not d:
                        break
                    dst.sendall(d)
            except OSError:
                pass
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        t = threading.Thread(target=pump, args=(b, a), daemon=True)
        t.start()
        pump(a, b)
        t.join(10)
        b.close()

    def close(self):
        self.stop = True
        self.sock.close()


def test_proxy_with_basic_auth(backend, portico):
    px = MiniProxy("pxuser", "px:pass")
    try:
        cfg = basic_config(backend.url)
        cfg["namedValues"] = [{"id": "pxpw", "displayName": "pxpw", "value": "px:pass", "secret": True}]
        cfg["apis"].append(api(serviceUrl=backend.url + "/via", policies={"inbound": [
            "base", {"proxy": {"url": "http://127.0.0.1:%d" % px.port, "username": "pxuser",
                               "password": "{{pxpw}}"}}]}))
        cfg["apis"].append(api(id="bad", path="bad", serviceUrl=backend.url + "/via", policies={"inbound": [
            "base", {"proxy": {"url": "http://127.0.0.1:%d" % px.port, "username": "pxuser",
                               "password": "wrong"}}]}))
        p = portico(cfg)
        st, _, body = p.request("GET", "/svc/p?q=1")
        assert st == 200, body
        method, target, headers = px.seen[-1]
        assert method == "GET" and target == "%s/via/p?q=1" % backend.url
        assert dict((k.lower(), v) for k, v in headers)["proxy-authorization"] == px.want
        req = backend.last()
        assert target_of(req).path == "/via/p" and req.header("Proxy-Authorization") is None
        # wrong credentials: the proxy's 407 is the backend's answer; nothing reached the backend
        n = len(backend.requests)
        st, _, _ = p.request("GET", "/bad/p")
        assert st == 407 and len(backend.requests) == n
    finally:
        px.close()


def test_proxy_url_expression_host_must_be_known(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"].append(api(serviceUrl=backend.url, policies={"inbound": [
        "base", {"proxy": {"url": "@(\"http://proxy.invalid:3128\")"}}]}))
    p = portico(cfg)
    n = len(backend.requests)
    st, _, body = p.request("GET", "/svc/x")
    assert st == 500 and len(backend.requests) == n


def test_proxy_connect_tunnel_to_https_backend(backend, portico, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("srv", "localhost", sans=("DNS:localhost",))
    tb = TLSEchoBackend(cert, key)
    px = MiniProxy("u", "p")
    try:
        cfg = basic_config(backend.url, upstream={"caFile": pki.ca})
        cfg["apis"].append(api(serviceUrl=tb.url + "/tls", policies={"inbound": [
            "base", {"proxy": {"url": "http://127.0.0.1:%d" % px.port, "username": "u", "password": "p"}}],
            "on-error": ["base", {"set-header": {"name": "X-Why", "value": "@(context.lastError.message)"}}]}))
        cfg["apis"].append(api(id="np", path="np", serviceUrl=tb.url + "/tls", policies={"inbound": [
            "base", {"proxy": {"url": "http://127.0.0.1:%d" % px.port, "username": "u", "password": "bad"}}]}))
        p = portico(cfg)
        for i in range(3):  # the tunnel's connection is pooled and reused
            st, _, body = p.request("GET", "/svc/t%d" % i)
            assert st == 200, body
            got = tb.requests[-1]
            assert target_of(got).path == "/tls/t%d" % i
            # inside the tunnel the backend is an origin server: origin form, and the proxy's
            # credentials went with CONNECT only (never to the backend, on a reused tunnel either)
            assert got.target.startswith("/"), got.target
            assert got.header("Proxy-Authorization") is None
        connects = [s for s in px.seen if s[0] == "CONNECT"]
        assert connects and connects[0][1] == "localhost:%d" % tb.port
        assert dict((k.lower(), v) for k, v in connects[0][2])["proxy-authorization"] == px.want
        assert len(connects) < 3
        # the proxy refuses the tunnel: 502, nothing reaches the backend
        n = len(tb.requests)
        st, _, _ = p.request("GET", "/np/x")
        assert st == 502 and len(tb.requests) == n
        # a streamed body cannot go through the tunnel: refused before anything is sent
        st, h, _ = p.request("POST", "/svc/x", body=b"abc")
        assert st == 500 and "buffer-request-body" in h.get("x-why", "") and len(tb.requests) == n
    finally:
        px.close()
        tb.close()


class HostileProxy:
    """A proxy that answers CONNECT badly: garbage, a close, 200 with bytes after it, or silence."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            try:
                c.settimeout(3)
                c.recv(65536)
                if self.mode == "garbage":
                    c.sendall(b"\x00\x01 not http at all\r\n\r\n")
                elif self.mode == "extra":
                    c.sendall(b"HTTP/1.1 200 OK\r\n\r\nEXTRA-BYTES-BEFORE-TLS")
                elif self.mode == "body":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                elif self.mode == "close":
                    c.close()
                # "silent": keeps the connection open and says nothing
            except OSError:
                pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("mode, status", [("garbage", 502), ("extra", 502), ("body", 502), ("close", 502),
                                          ("silent", 504)])
def test_hostile_proxy_answers_to_connect(backend, portico, workdir, mode, status):
    pki = Pki(workdir)
    cert, key = pki.leaf("srv", "localhost", sans=("DNS:localhost",))
    tb = TLSEchoBackend(cert, key)
    hp = HostileProxy(mode)
    try:
        cfg = basic_config(backend.url, upstream={"caFile": pki.ca, "readTimeout": "1s"})
        cfg["apis"].append(api(serviceUrl=tb.url, policies={"inbound": [
            "base", {"proxy": {"url": "http://127.0.0.1:%d" % hp.port}}]}))
        p = portico(cfg)
        st, _, _ = p.request("GET", "/svc/x")
        assert st == status
        assert not tb.requests
        # the gateway is fine afterwards
        assert p.request("GET", "/echo/items/1")[0] == 200
    finally:
        hp.close()
        tb.close()


@pytest.mark.parametrize("url", ["@('http://127.0.0.1:9/a\\r\\nX-Evil: 1')", "@('ftp://127.0.0.1/')",
                                 "@('http://' .. string.rep('a', 3000))", "@('')", "@('http://user:pw@127.0.0.1:9/')"])
def test_set_backend_service_hostile_urls(backend, portico, url):
    cfg = basic_config(backend.url)
    cfg["apis"].append(api(serviceUrl=backend.url, policies={"inbound": [
        "base", {"set-backend-service": {"base-url": url}}]}))
    p = portico(cfg)
    st, _, _ = p.request("GET", "/svc/x")
    assert st == 500
    assert not backend.requests


def test_workspaces_scope_backends_and_named_values(backend, portico):
    cfg = basic_config(backend.url)
    cfg["workspaces"] = [{"id": "w1"}, {"id": "w2"}]
    cfg["namedValues"] = [{"id": "wurl", "displayName": "wurl", "value": backend.url + "/ws", "workspace": "w1"}]
    cfg["backends"] = [{"id": "shared", "url": backend.url + "/shared"},
                       {"id": "own", "url": backend.url + "/own", "workspace": "w1"}]
    cfg["apis"] += [
        api(id="a1", path="w1a", workspace="w1", backendId="shared"),
        api(id="a2", path="w1b", workspace="w1", backendId="own"),
        api(id="a3", path="w1c", workspace="w1", serviceUrl=backend.url, policies={"inbound": [
            "base", {"set-backend-service": {"base-url": "{{wurl}}"}}]}),
    ]
    p = portico(cfg)
    for path, want in [("/w1a/x", "/shared/x"), ("/w1b/x", "/own/x"), ("/w1c/x", "/ws/x")]:
        assert p.request("GET", path)[0] == 200
        assert target_of(backend.last()).path == want
    # another workspace's backend is out of reach
    bad = dict(cfg)
    bad["apis"] = cfg["apis"] + [api(id="a4", path="w2a", workspace="w2", backendId="own")]
    q = portico(bad, start=False)
    rc, out = q.check()
    assert rc != 0 and "cannot use backend 'own'" in out and POS.search(out), out


def test_client_certificate_credential(backend, portico, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("srv", "localhost", sans=("DNS:localhost",))
    ccert, ckey = pki.leaf("gw", "gateway-client", eku="clientAuth")
    tb = TLSEchoBackend(cert, key, client_ca=pki.ca)
    try:
        cfg = basic_config(backend.url, upstream={"caFile": pki.ca})
        cfg["backends"] = [
            {"id": "mtls", "url": tb.url, "credentials": {"certificate": {"certificate": ccert, "key": ckey}}},
            {"id": "plain", "url": tb.url},
        ]
        cfg["apis"] += [api(id="m", path="m", backendId="mtls"), api(id="n", path="n", backendId="plain")]
        p = portico(cfg)
        assert p.request("GET", "/m/x")[0] == 200
        assert tb.client_cns[-1] == "gateway-client"
        n = len(tb.requests)
        assert p.request("GET", "/n/x")[0] == 502  # the same host without the certificate: refused
        assert p.request("GET", "/m/y")[0] == 200 and len(tb.requests) == n + 1
    finally:
        tb.close()
    # a key that does not match is refused with the configuration
    bad = basic_config(backend.url)
    bad["backends"] = [{"id": "b", "url": "https://127.0.0.1:9",
                        "credentials": {"certificate": {"certificate": ccert, "key": key}}}]
    rc, out = portico(bad, start=False).check()
    assert rc != 0 and "backend 'b': the key" in out and POS.search(out), out


def test_buffered_body_through_a_connect_tunnel(backend, portico, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("srv", "localhost", sans=("DNS:localhost",))
    tb = TLSEchoBackend(cert, key)
    px = MiniProxy("u", "p")
    try:
        cfg = basic_config(backend.url, upstream={"caFile": pki.ca})
        cfg["apis"].append(api(serviceUrl=tb.url, policies={
            "inbound": ["base", {"proxy": {"url": "http://127.0.0.1:%d" % px.port, "username": "u",
                                           "password": "p"}}],
            "backend": [{"forward-request": {"buffer-request-body": True}}]}))
        p = portico(cfg)
        st, _, _ = p.request("POST", "/svc/up", body=b"x" * 100000)
        assert st == 200
        got = tb.requests[-1]
        assert got.body == b"x" * 100000
        # the credentials went to the proxy with CONNECT, not to the backend in the tunnel
        assert px.seen[-1][0] == "CONNECT"
        assert [v for k, v in px.seen[-1][2] if k.lower() == "proxy-authorization"] == [px.want]
        assert got.header("Proxy-Authorization") is None and got.target.startswith("/"), got.target
    finally:
        px.close()
        tb.close()


# ------------------------------------------------------------------ review 13a: attacks and bounds


def test_client_proxy_authorization_is_never_passed_on(backend, portico, workdir):
    """A client's own Proxy-Authorization is for its hop (the gateway): it must not reach the
    gateway's proxy (ahead of the gateway's credentials, picking the identity), a backend in a
    CONNECT tunnel, or a backend called directly."""
    pki = Pki(workdir)
    cert, key = pki.leaf("srv", "localhost", sans=("DNS:localhost",))
    tb = TLSEchoBackend(cert, key)
    px = MiniProxy("pxuser", "pxpass")
    evil = "Basic " + base64.b64encode(b"someone-else:guess").decode()
    try:
        cfg = basic_config(backend.url, upstream={"caFile": pki.ca})
        via = {"proxy": {"url": "http://127.0.0.1:%d" % px.port, "username": "pxuser", "password": "pxpass"}}
        cfg["apis"] += [api(serviceUrl=backend.url + "/plain", policies={"inbound": ["base", via]}),
                        api(id="t", path="t", serviceUrl=tb.url + "/tls", policies={"inbound": ["base", via]}),
                        api(id="d", path="d", serviceUrl=backend.url + "/direct")]
        p = portico(cfg)
        st, _, body = p.request("GET", "/svc/x", headers={"Proxy-Authorization": evil})
        assert st == 200, body  # a duplicate would get the proxy's 407
        method, _, headers = px.seen[-1]
        assert method == "GET"
        assert [v for k, v in headers if k.lower() == "proxy-authorization"] == [px.want]
        st, _, body = p.request("GET", "/t/x", headers={"Proxy-Authorization": evil})
        assert st == 200, body
        assert tb.requests[-1].header("Proxy-Authorization") is None
        st, _, _ = p.request("GET", "/d/x", headers={"Proxy-Authorization": evil})
        assert st == 200
        got = backend.last()
        assert target_of(got).path == "/direct/x" and got.header("Proxy-Authorization") is None
    finally:
        px.close()
        tb.close()


def test_proxy_tunnels_are_pooled_apart_by_tls_identity(backend, portico, workdir):
    """Through one proxy, a lax backend's tunnel (chain not checked) is never reused for a strict
    backend, or a plain serviceUrl, of the same host: each still refuses the untrusted chain."""
    pki = Pki(workdir)
    cert, key = pki.leaf("srv", "localhost", sans=("DNS:localhost",), issuer="other")  # nobody trusts it
    tb = TLSEchoBackend(cert, key)
    px = MiniProxy()
    try:
        cfg = basic_config(backend.url, upstream={"caFile": pki.ca})
        cfg["backends"] = [{"id": "strict", "url": tb.url},
                           {"id": "lax", "url": tb.url, "tls": {"validateCertificateChain": False}}]
        via = {"inbound": ["base", {"proxy": {"url": "http://127.0.0.1:%d" % px.port}}]}
        cfg["apis"] += [api(id="l", path="l", backendId="lax", policies=via),
                        api(id="s", path="s", backendId="strict", policies=via),
                        api(id="u", path="u", serviceUrl=tb.url, policies=via)]
        p = portico(cfg)
        assert p.request("GET", "/l/x")[0] == 200  # leaves a verified-by-nobody tunnel idle
        n = len(tb.requests)
        assert p.request("GET", "/s/x")[0] == 502
        assert p.request("GET", "/u/x")[0] == 502
        assert len(tb.requests) == n
        assert p.request("GET", "/l/y")[0] == 200 and len(tb.requests) == n + 1
    finally:
        px.close()
        tb.close()


def test_query_credential_replaces_the_clients_parameter(backend, portico):
    cfg = basic_config(backend.url)
    cfg["backends"] = [{"id": "q", "url": backend.url + "/q", "credentials": {"query": {"api_key": ["s3cr3t"]}}}]
    cfg["apis"].append(api(backendId="q"))
    p = portico(cfg)
    # the client's own api_key, spelled plainly, in capitals and percent-encoded, is dropped
    st, _, _ = p.request("GET", "/svc/x?api_key=mine&x=1&API_KEY=m2&api%5Fkey=m3&y=2")
    assert st == 200
    assert target_of(backend.last()).query == "x=1&y=2&api_key=s3cr3t"
    assert p.request("GET", "/svc/x?api_key=mine")[0] == 200
    assert target_of(backend.last()).query == "api_key=s3cr3t"


def test_workspace_policies_name_only_their_own_backends(backend, portico):
    """APIM: a workspace's policies may name only that workspace's backends (and the service's
    only the service's). A literal id is refused with the configuration; an id computed per request
    is refused then (500, another workspace's backend and its credentials untouched)."""
    other = type(backend)()
    try:
        cfg = basic_config(backend.url)
        cfg["workspaces"] = [{"id": "w1"}, {"id": "w2"}]
        cfg["backends"] = [{"id": "shared", "url": backend.url + "/shared"},
                           {"id": "own1", "url": other.url + "/own1", "workspace": "w1",
                            "credentials": {"header": {"X-W1-Secret": ["w1-only"]}}},
                           {"id": "own2", "url": backend.url + "/own2", "workspace": "w2"}]
        byx = {"inbound": ["base", {"set-backend-service": {
            "backend-id": "@(context.request.headers:get('X-Id', ''))"}}]}
        cfg["apis"] += [api(id="a1", path="w1", workspace="w1", serviceUrl=backend.url, policies=byx),
                        api(id="a2", path="w2", workspace="w2", serviceUrl=backend.url, policies=byx),
                        api(id="a3", path="svc0", serviceUrl=backend.url, policies=byx)]
        p = portico(cfg)
        assert p.request("GET", "/w1/x", headers={"X-Id": "own1"})[0] == 200
        assert other.last().header("X-W1-Secret") == "w1-only"
        assert p.request("GET", "/w2/x", headers={"X-Id": "own2"})[0] == 200
        assert target_of(backend.last()).path == "/own2/x"
        no, nb = len(other.requests), len(backend.requests)
        for path, bid in [("/w2/x", "own1"), ("/svc0/x", "own1"), ("/w1/x", "shared"), ("/w1/x", "own2")]:
            st, _, body = p.request("GET", path, headers={"X-Id": bid})
            assert st == 500, (path, bid, body)
        assert len(other.requests) == no and len(backend.requests) == nb
        # literal ids: refused with file:line:column
        for ws, bid in [("w2", "own1"), (None, "own1"), ("w1", "shared")]:
            bad = dict(cfg)
            extra = api(id="lit", path="lit", serviceUrl=backend.url, policies={"inbound": [
                "base", {"set-backend-service": {"backend-id": bid}}]})
            if ws:
                extra["workspace"] = ws
            bad["apis"] = cfg["apis"] + [extra]
            rc, out = portico(bad, start=False).check()
            lines = [ln for ln in out.splitlines() if "cannot use backend '%s'" % bid in ln]
            assert rc != 0 and lines and POS.search(lines[0]), (ws, bid, out)
        # a workspace's own literal id is fine, and so is a workspace policy naming its own
        good = dict(cfg)
        good["workspaces"] = [{"id": "w1", "policies": {"inbound": [
            {"set-backend-service": {"backend-id": "own1"}}]}}, {"id": "w2"}]
        good["apis"] = cfg["apis"] + [api(id="lit", path="lit", workspace="w2", serviceUrl=backend.url,
                                          policies={"inbound": [{"set-backend-service": {"backend-id": "own2"}}]})]
        rc, out = portico(good, start=False).check()
        assert rc == 0, out
    finally:
        other.close()


def test_pools_per_worker_are_bounded(backend, portico):
    """Every target computed per request adds a connection pool; upstream.maxPools bounds them:
    past it, unused pools are dropped, and while every pool has a connection a new target is called
    without keeping its connection (so a client cannot grow the gateway's memory by naming targets)."""
    b2, b3 = type(backend)(), type(backend)()
    try:
        cfg = basic_config(backend.url, upstream={"maxPools": 2, "idleTimeout": "300ms"})
        cfg["apis"].append(api(serviceUrl=backend.url, policies={"inbound": ["base", {"set-backend-service": {
            "base-url": "@('http://127.0.0.1:' .. context.request.headers:get('X-Port', ''))"}}]}))
        p = portico(cfg)

        def call(b):
            st, _, body = p.request("GET", "/svc/x", headers={"X-Port": str(b.port)})
            assert st == 200, body
            return b.requests[-1].conn_id

        call(backend)
        call(b2)  # two pools, each with an idle connection: the cap
        first, second = call(b3), call(b3)
        assert first != second  # not pooled: its connection was closed after each call
        # the idle connections end (idleTimeout), their pools can go (tried at most once a second):
        # then the third target is pooled again
        deadline = time.time() + 8
        while True:
            time.sleep(0.3)
            first, second = call(b3), call(b3)
            if first == second or time.time() > deadline:
                break
        assert first == second
        assert call(backend) is not None and call(b2) is not None
    finally:
        b2.close()
        b3.close()
