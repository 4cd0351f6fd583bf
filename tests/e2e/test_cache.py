"""The caching policies (plugins/cache): cache-lookup / cache-store with
every vary-by option, developers and groups, private requests and
responses, the Cache-Control clients get, the size cap, statuses and
methods, eviction under a small memory cap; and the value cache
(cache-lookup-value, cache-store-value, cache-remove-value) in memory and in
Redis.

Every test runs the real gateway next to a backend of this file that counts
the calls it gets and numbers its answers (`"n": 3` in the body): a hit is
an answer whose number the backend already gave, and whose call never
reached it.  The access log's `cache` field says hit or miss.
"""

import http.client
import json
import os
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, wait_for
from backends import stop_server

KEY_ALICE = "a" * 32
KEY_BOB = "b" * 32
KEY_CAROL = "c" * 32
KEY_DAVE = "d" * 32


# ------------------------------------------------------------- the backend

class CountingBackend:
    """Answers GET and POST on any path with a numbered JSON body.  Query
    parameters shape the answer: status=N, cc=<Cache-Control>, cookie=1
    (Set-Cookie), vary=<Vary>, size=N (a body of N bytes), chunked=1 (no
    Content-Length), private-key=1 (an X-Private header), age=N (an Age header), cclines=N (N lines of
    Cache-Control: max-age=60, then one of no-store).  A Range header gets a 206 of the first byte, an
    If-None-Match header a 304."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []  # (method, path, headers)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self):
                n_in = int(self.headers.get("Content-Length") or 0)
                if n_in:
                    self.rfile.read(n_in)
                with outer.lock:
                    outer.calls.append((self.command, self.path, dict(self.headers)))
                    n = len(outer.calls)
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
                status = int(q.get("status", "200"))
                size = int(q.get("size", "0"))
                if size:
                    body = (b"%d:" % n).ljust(size, b"x")
                else:
                    body = json.dumps({"n": n, "path": u.path, "query": u.query}).encode()
                if self.headers.get("Range"):
                    status, body = 206, body[:1]
                elif self.headers.get("If-None-Match"):
                    status = 304
                if status == 304:
                    body = b""
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", "bytes 0-0/*")
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Backend-N", str(n))
                if "cc" in q:
                    self.send_header("Cache-Control", q["cc"])
                if q.get("cookie"):
                    self.send_header("Set-Cookie", "session=%d; Path=/" % n)
                if "vary" in q:
                    self.send_header("Vary", q["vary"])
                if "age" in q:
                    self.send_header("Age", q["age"])
                for _ in range(int(q.get("cclines", "0"))):
                    self.send_header("Cache-Control", "max-age=60")
                if "cclines" in q:
                    self.send_header("Cache-Control", "no-store")
                if q.get("chunked"):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if self.command != "HEAD":
                        for i in range(0, len(body), 65536):
                            part = body[i:i + 65536]
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = do_PUT = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def count(self):
        with self.lock:
            return len(self.calls)

    def close(self):
        stop_server(self.server)


@pytest.fixture
def counting():
    b = CountingBackend()
    yield b
    b.close()


# --------------------------------------------------------------- configs

def lookup(**attrs):
    return {"cache-lookup": attrs or None}


def store(duration=60, **attrs):
    a = {"duration": duration}
    a.update(attrs)
    return {"cache-store": a}


def config(backend, inbound=None, outbound=None, apis=None, **extra):
    """One API 'c' at /c (subscription optional) whose policies cache; more APIs through `apis`."""
    api = {"id": "c", "path": "c", "serviceUrl": backend.url, "subscriptionRequired": False,
           "operations": [{"id": "get-item", "method": "GET", "urlTemplate": "/items/{id}"},
                          {"id": "anything", "method": "*", "urlTemplate": "/*"}],
           "policies": {"inbound": ["base"] + (inbound if inbound is not None else [lookup()]),
                        "outbound": ["base"] + (outbound if outbound is not None else [store()])}}
    cfg = {"listen": ["127.0.0.1:%d" % free_port()], "workers": 2, "apis": [api] + (apis or [])}
    cfg.update(extra)
    return cfg


def get(p, path, headers=None, method="GET", body=None):
    status, h, data = p.request(method, path, headers=headers, body=body)
    n = None
    if data[:1] == b"{":
        n = json.loads(data)["n"]
    elif b":" in data[:12]:
        n = int(data.split(b":", 1)[0])
    return status, h, data, n


def cache_fields(p, count):
    return [e.get("cache") for e in p.access_entries(wait_for=count)][-count:]


# ---------------------------------------------------------- hit and miss

def test_hit_answers_without_the_backend_and_is_logged(counting, portico):
    p = portico(config(counting))
    s1, h1, b1, n1 = get(p, "/c/items/1")
    s2, h2, b2, n2 = get(p, "/c/items/1")
    assert (s1, s2) == (200, 200)
    assert n1 == n2 == 1 and b1 == b2, "the second call is the first one's answer"
    assert counting.count() == 1, "a hit never reaches the backend"
    assert h2["x-backend-n"] == "1" and h2["content-type"] == "application/json"
    assert int(h2["age"]) >= 0 and "age" not in h1
    # downstream-caching-type none (the default): clients may not cache
    assert h1["cache-control"] == "no-store" and h2["cache-control"] == "no-store"
    # another resource is another key
    _, _, _, n3 = get(p, "/c/items/2")
    assert n3 == 2 and counting.count() == 2
    assert cache_fields(p, 3) == ["miss", "hit", "miss"]


def test_hits_and_misses_in_the_analytics_reports(counting, portico):
    from mgmt_helpers import TOKEN, Mgmt
    cfg = config(counting, management={"listen": "127.0.0.1:%d" % free_port()})
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    assert [get(p, "/c/items/1")[3] for _ in range(3)] == [1, 1, 1]
    assert get(p, "/c/x", method="POST", body=b"x")[3] == 2
    flt = urllib.parse.quote("timestamp ge %s" % since)

    def api_row():
        st, _, out = m.call("GET", "reports/byApi?$filter=" + flt)
        assert st == 200, out
        rows = [r for r in out["value"] if r["apiId"] == "/apis/c"]
        return rows[0] if rows and rows[0]["callCountTotal"] == 4 else None
    row = wait_for(api_row, timeout=6, what="the four calls in the report")
    assert (row["cacheHitCount"], row["cacheMissCount"]) == (2, 1)
    st, _, out = m.call("GET", "reports/byRequest?$filter=" + flt)
    assert st == 200
    assert sorted(r["cache"] for r in out["value"]) == ["hit", "hit", "miss", "none"]


def test_no_lookup_no_store_and_store_alone_does_nothing(counting, portico):
    # cache-store without a lookup before it: nothing is stored
    p = portico(config(counting, inbound=[]))
    for _ in range(3):
        assert get(p, "/c/items/1")[0] == 200
    assert counting.count() == 3
    assert cache_fields(p, 3) == ["none"] * 3


def test_lookup_without_store_always_misses(counting, portico):
    p = portico(config(counting, outbound=[]))
    for i in range(3):
        assert get(p, "/c/items/1")[3] == i + 1
    assert cache_fields(p, 3) == ["miss"] * 3


# ---------------------------------------------------------------- vary-by

def test_vary_by_query_parameter(counting, portico):
    p = portico(config(counting, inbound=[lookup(**{"vary-by-query-parameter": ["a;b", "c"]})]))
    assert get(p, "/c/items/1?a=1")[3] == 1
    assert get(p, "/c/items/1?a=1&zzz=9")[3] == 1, "a parameter not named does not vary the key"
    assert get(p, "/c/items/1?a=%31")[3] == 1, "values compare %-decoded"
    assert get(p, "/c/items/1?a=2")[3] == 2
    assert get(p, "/c/items/1?a=1&b=1")[3] == 3, "b (named with ';') varies the key"
    assert get(p, "/c/items/1?b=1&a=1")[3] == 3, "the order of different parameters does not matter"
    assert get(p, "/c/items/1?a=1&c=")[3] == 4, "an empty value is not an absent one"
    assert get(p, "/c/items/1?a=1&a=2")[3] == 5, "every value of a parameter counts"
    assert get(p, "/c/items/1?a=2&a=1")[3] == 6, "... in order"
    assert get(p, "/c/items/1")[3] == 7
    assert get(p, "/c/items/1?")[3] == 7
    assert counting.count() == 7


def test_vary_by_header(counting, portico):
    p = portico(config(counting, inbound=[lookup(**{"vary-by-header": ["Accept", "X-Tenant"]})]))
    assert get(p, "/c/items/1", {"Accept": "text/plain"})[3] == 1
    assert get(p, "/c/items/1", {"accept": "text/plain", "X-Other": "x"})[3] == 1
    assert get(p, "/c/items/1", {"Accept": "application/json"})[3] == 2
    assert get(p, "/c/items/1")[3] == 3, "no header is a value of its own"
    assert get(p, "/c/items/1", {"Accept": "text/plain", "X-Tenant": "t1"})[3] == 4
    assert get(p, "/c/items/1", {"Accept": "text/plain", "X-Tenant": "t2"})[3] == 5
    assert get(p, "/c/items/1", {"Accept": "text/plain", "X-Tenant": "t1"})[3] == 4
    assert counting.count() == 5


def test_many_values_vary_the_key_within_bounds(counting, portico):
    """Up to 64 values of a named parameter vary the key (every one counts); a request with more is
    neither looked up nor stored.  A long header line is one value."""
    p = portico(config(counting, inbound=[lookup(**{"vary-by-query-parameter": "a",
                                                    "vary-by-header": "X-V"})]))
    q = "&".join("a=%d" % i for i in range(64))
    hdr = {"X-V": ",".join(str(i) for i in range(300))}
    assert get(p, "/c/x?" + q, hdr)[3] == 1
    assert get(p, "/c/x?" + q, hdr)[3] == 1
    assert get(p, "/c/x?" + q.replace("a=63", "a=x"), hdr)[3] == 2, "the 64th value counts"
    more = q + "&a=64"
    assert [get(p, "/c/x?" + more, hdr)[3] for _ in range(2)] == [3, 4], "65 values: not cached"
    assert cache_fields(p, 5)[-2:] == ["none", "none"]


def test_more_header_lines_than_the_bound_are_not_cached(counting, portico):
    """64 lines of a varied header vary the key; 65 lines: neither looked up nor stored."""
    p = portico(config(counting, inbound=[lookup(**{"vary-by-header": "X-V"})]))

    def call(lines):
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        try:
            c.putrequest("GET", "/c/x")
            for i in range(lines):
                c.putheader("X-V", str(i))
            c.endheaders()
            r = c.getresponse()
            return json.loads(r.read())["n"]
        finally:
            c.close()
    assert [call(64) for _ in range(2)] == [1, 1]
    assert [call(65) for _ in range(2)] == [2, 3]
    assert cache_fields(p, 4)[-2:] == ["none", "none"]


def test_query_values_are_not_merged_with_different_ones(counting, portico):
    """`+` and `%2B`, `%zz` and `%25zz`, `Page` and `page` mean different things to a backend: they
    are different keys; %-escapes of unreserved characters and the case of escape digits are not."""
    p = portico(config(counting, inbound=[lookup(**{"vary-by-query-parameter": "a"})]))
    assert get(p, "/c/x?a=a+b")[3] == 1
    assert get(p, "/c/x?a=a%2Bb")[3] == 2, "+ is not %2B"
    assert get(p, "/c/x?a=a%2bb")[3] == 2, "the case of an escape's digits does not matter"
    assert get(p, "/c/x?a=%61+b")[3] == 1, "an escaped unreserved character is that character"
    assert get(p, "/c/x?a=%zz")[3] == 3
    assert get(p, "/c/x?a=%25zz")[3] == 4, "a broken escape is not the escaped '%'"
    assert get(p, "/c/x")[3] == 5
    assert get(p, "/c/x?A=1")[3] == 6, "a name in another case is not 'not given'"
    assert get(p, "/c/x?a=1")[3] == 7, "... nor the name as written"
    assert get(p, "/c/x?A=1")[3] == 6
    assert counting.count() == 7


def test_concurrent_clients_get_their_own_resource(counting, portico):
    """Two workers, many clients, a few keys: every answer is the resource asked for."""
    p = portico(config(counting))
    errors = []

    def client(k):
        try:
            for i in range(25):
                item = (k + i) % 5
                s, _, body, _ = get(p, "/c/items/%d" % item)
                if s != 200 or json.loads(body)["path"] != "/items/%d" % item:
                    errors.append((item, s, body[:80]))
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:5]
    assert counting.count() < 8 * 25 / 2, "most of the 200 calls were hits"


def test_key_is_the_backend_path_at_the_lookup(counting, portico):
    """A rewrite-uri before the lookup counts: two client paths sent to one backend path share an entry."""
    p = portico(config(counting, inbound=[
        {"rewrite-uri": {"template": "/same", "copy-unmatched-params": False}}, lookup()]))
    assert get(p, "/c/items/1")[3] == 1
    assert get(p, "/c/items/2")[3] == 1
    assert counting.calls[0][1] == "/same"


def test_header_name_must_be_a_token(counting, portico):
    p = portico(config(counting, inbound=[lookup(**{"vary-by-header": "Bad Name"})]), start=False)
    rc, out = p.check()
    assert rc == 1 and "portico.yaml:" in out and "'Bad Name' is not a header name" in out, out


def people(cfg):
    """alice and bob in group g1, carol in g2, dave in none; a subscription each to product p."""
    cfg["groups"] = [{"id": "g1", "displayName": "G1"}, {"id": "g2", "displayName": "G2"}]
    cfg["users"] = [
        {"id": "alice", "email": "alice@example.com", "firstName": "A", "lastName": "A", "groups": ["g1"]},
        {"id": "bob", "email": "bob@example.com", "firstName": "B", "lastName": "B", "groups": ["g1"]},
        {"id": "carol", "email": "carol@example.com", "firstName": "C", "lastName": "C", "groups": ["g2"]},
        {"id": "dave", "email": "dave@example.com", "firstName": "D", "lastName": "D"},
    ]
    cfg["products"] = [{"id": "p", "displayName": "P", "state": "published",
                        "apis": [a["id"] for a in cfg["apis"]]}]
    cfg["subscriptions"] = [
        {"id": "s-" + u, "scope": "/products/p", "ownerId": "/users/" + u, "primaryKey": k,
         "secondaryKey": k.upper()[:31] + "0", "state": "active"}
        for u, k in (("alice", KEY_ALICE), ("bob", KEY_BOB), ("carol", KEY_CAROL), ("dave", KEY_DAVE))]
    for a in cfg["apis"]:
        a["subscriptionRequired"] = True
    return cfg


def as_user(p, path, key):
    return get(p, path, {"Ocp-Apim-Subscription-Key": key})


def test_vary_by_developer_and_by_groups(counting, portico):
    def api(aid, **attrs):
        return {"id": aid, "path": aid, "serviceUrl": counting.url,
                "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
                "policies": {"inbound": ["base", lookup(**attrs)], "outbound": ["base", store()]}}
    cfg = config(counting, apis=[api("dev", **{"vary-by-developer": True}),
                                 api("grp", **{"vary-by-developer-groups": True})])
    p = portico(people(cfg))
    # no vary-by: everyone shares one entry
    assert [as_user(p, "/c/x", k)[3] for k in (KEY_ALICE, KEY_BOB, KEY_CAROL)] == [1, 1, 1]
    # per developer: alice, bob and carol each get their own, and keep it
    got = [as_user(p, "/dev/x", k)[3] for k in (KEY_ALICE, KEY_BOB, KEY_ALICE, KEY_CAROL, KEY_BOB)]
    assert got == [2, 3, 2, 4, 3]
    # per groups: alice and bob share {developers, g1}; carol {developers, g2}; dave {developers}
    got = [as_user(p, "/grp/x", k)[3] for k in (KEY_ALICE, KEY_BOB, KEY_CAROL, KEY_DAVE, KEY_CAROL, KEY_DAVE)]
    assert got == [5, 5, 6, 7, 6, 7]
    assert counting.count() == 7


def test_groups_fact_follows_a_reload(counting, portico):
    """The groups are the generation's: moving bob to g2 moves him to carol's entry."""
    def api(aid, **attrs):
        return {"id": aid, "path": aid, "serviceUrl": counting.url,
                "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
                "policies": {"inbound": ["base", lookup(**attrs)], "outbound": ["base", store()]}}
    cfg = people(config(counting, apis=[api("grp", **{"vary-by-developer-groups": True})]))
    p = portico(cfg)
    assert as_user(p, "/grp/x", KEY_CAROL)[3] == 1
    assert as_user(p, "/grp/x", KEY_BOB)[3] == 2
    cfg["users"][1]["groups"] = ["g2"]
    assert p.reload(cfg)
    assert as_user(p, "/grp/x", KEY_BOB)[3] == 1, "bob now shares carol's groups; the entry survived the reload"


def test_vary_by_developer_without_owners_and_anonymous(counting, portico):
    """Subscriptions without an owner are callers of their own; anonymous callers cannot be told apart,
    so with vary-by-developer they are not cached at all."""
    dev = {"id": "dev", "path": "dev", "serviceUrl": counting.url, "subscriptionRequired": False,
           "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
           "policies": {"inbound": ["base", lookup(**{"vary-by-developer": True})],
                        "outbound": ["base", store()]}}
    cfg = config(counting, apis=[dev])
    cfg["subscriptions"] = [
        {"id": "s-" + n, "scope": "/apis/dev", "primaryKey": k, "secondaryKey": k.upper()[:31] + "0",
         "state": "active"} for n, k in (("one", KEY_ALICE), ("two", KEY_BOB))]
    p = portico(cfg)
    got = [as_user(p, "/dev/x", k)[3] for k in (KEY_ALICE, KEY_BOB, KEY_ALICE, KEY_BOB)]
    assert got == [1, 2, 1, 2], "two owner-less subscriptions do not share an entry"
    assert [get(p, "/dev/x")[3] for _ in range(2)] == [3, 4], "anonymous callers are not cached"
    assert cache_fields(p, 6)[-2:] == ["none", "none"]


@pytest.mark.parametrize("ticket", [
    "@(context.variables.t)",  # a real ticket, copied from another request
    "@('1;2;0;0;0;' .. string.match(context.variables.t, 'r:%x+'))",  # the format before tickets were sealed
    "@('2;2;0;0;0;' .. string.match(context.variables.t, 'r:%x+') .. ';;' .. string.rep('0', 64))",
])
def test_a_forged_ticket_cannot_write_another_apis_entry(counting, portico, ticket):
    """The attack of REVIEW-13b H1: API c's ticket (key included) is stashed by c's own outbound; API
    evil reads it and sets the variable cache-lookup hands over through, then cache-store in its
    outbound.  c's entry must still be c's answer."""
    t = {"caching-type": "internal"}
    stash = {"cache-store-value": dict(t, key="stolen", duration=60,
                                       value="@(context.variables['portico.cache-lookup'])")}
    evil = {"id": "evil", "path": "evil", "serviceUrl": counting.url, "subscriptionRequired": False,
            "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
            "policies": {"inbound": ["base",
                                     {"cache-lookup-value": dict(t, key="stolen", **{"variable-name": "t"})},
                                     {"set-variable": {"name": "portico.cache-lookup", "value": ticket}}],
                         "outbound": ["base", store(3600)]}}
    p = portico(config(counting, inbound=[lookup(**t)], outbound=[store(), stash], apis=[evil]))
    s, _, body, n = get(p, "/c/items/1")
    assert (s, n) == (200, 1)
    s, _, evil_body, n = get(p, "/evil/other")
    assert (s, n) == (200, 2)
    s, _, again, n = get(p, "/c/items/1")
    assert (s, n) == (200, 1) and again == body, "c still serves its own cached answer"
    assert get(p, "/evil/other")[3] == 3, "nothing was stored for the forged request either"


def test_reserved_variable_names_are_refused(counting, portico):
    p = portico(config(counting, inbound=[{"cache-lookup-value": {"key": "k",
                                                                  "variable-name": "portico.cache-lookup"}}]),
                start=False)
    rc, out = p.check()
    assert rc == 1 and "names starting with 'portico.' are the gateway's own" in out, out


# ------------------------------------------------------ private requests

def test_authorization_requests_skip_the_cache_unless_allowed(counting, portico):
    allowed = {"id": "priv", "path": "priv", "serviceUrl": counting.url, "subscriptionRequired": False,
               "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
               "policies": {"inbound": ["base", lookup(**{"allow-private-response-caching": True,
                                                          "vary-by-header": "Authorization"})],
                            "outbound": ["base", store()]}}
    p = portico(config(counting, apis=[allowed]))
    auth = {"Authorization": "Bearer one"}
    assert [get(p, "/c/x", auth)[3] for _ in range(2)] == [1, 2], "Authorization: not looked up"
    assert get(p, "/c/x")[3] == 3, "... nor stored: the anonymous call misses"
    assert get(p, "/priv/x", auth)[3] == 4
    assert get(p, "/priv/x", auth)[3] == 4
    assert get(p, "/priv/x", {"Authorization": "Bearer two"})[3] == 5
    assert cache_fields(p, 6) == ["none", "none", "miss", "miss", "hit", "miss"]


def test_allow_private_response_caching_as_an_expression(counting, portico):
    expr = "@(context.request.headers:get('X-Trusted') == 'yes')"
    p = portico(config(counting, inbound=[lookup(**{"allow-private-response-caching": expr})]))
    auth = {"Authorization": "Basic eDp5"}
    assert get(p, "/c/x", auth)[3] == 1
    assert get(p, "/c/x", auth)[3] == 2
    auth["X-Trusted"] = "yes"
    assert get(p, "/c/x", auth)[3] == 3
    assert get(p, "/c/x", auth)[3] == 3


@pytest.mark.parametrize("query,stored", [
    ("cc=no-store", False),
    ("cc=max-age%3D60%2C%20No-Store", False),
    ("cc=no-cache", False),
    ("cc=private", False),
    ("cookie=1", False),
    ("vary=*", False),
    ("vary=Accept", False),
    ("vary=Accept-Encoding%2C%20Accept", False),
    ("cclines=40", False),
    ("cc=public%2C%20max-age%3D5", True),
    ("cc=no-storex", True),
])
def test_responses_a_shared_cache_must_not_keep(counting, portico, query, stored):
    p = portico(config(counting))
    first = get(p, "/c/x?" + query)
    second = get(p, "/c/x?" + query)
    assert first[0] == second[0] == 200
    assert (second[3] == first[3]) == stored, (query, first[3], second[3])
    if not stored:
        # the backend's own Cache-Control goes through untouched
        if query.startswith("cc="):
            assert first[1]["cache-control"] == urllib.parse.unquote(query[3:])
        if "cookie" in query:
            assert second[1]["set-cookie"] == "session=2; Path=/"


def test_vary_is_honoured_when_the_lookup_varies_by_it(counting, portico):
    """A Vary naming only headers the lookup varies by is stored, one entry per value; one naming
    another header is not."""
    p = portico(config(counting, inbound=[lookup(**{"vary-by-header": ["Accept", "Accept-Encoding"]})],
                       outbound=[store(**{"cache-response": True})]))
    assert get(p, "/c/x?vary=accept", {"Accept": "a/b"})[3] == 1
    assert get(p, "/c/x?vary=accept", {"Accept": "a/b"})[3] == 1
    assert get(p, "/c/x?vary=accept", {"Accept": "c/d"})[3] == 2
    assert get(p, "/c/y?vary=Accept-Encoding,%20ACCEPT")[3] == 3
    assert get(p, "/c/y?vary=Accept-Encoding,%20ACCEPT")[3] == 3
    assert [get(p, "/c/z?vary=Accept,%20Cookie")[3] for _ in range(2)] == [4, 5]


def test_range_and_conditional_requests_do_not_poison(counting, portico):
    """With cache-response true, a client's Range or If-None-Match request reaches the backend and
    its 206 / 304 is kept for nobody: the next plain GET gets the full 200."""
    p = portico(config(counting, outbound=[store(**{"cache-response": True})]))
    s, _, body = p.request("GET", "/c/x", headers={"Range": "bytes=0-0"})
    assert s == 206 and len(body) == 1
    s, _, _ = p.request("GET", "/c/x", headers={"If-None-Match": '"abc"'})
    assert s == 304
    s, _, body, n = get(p, "/c/x")
    assert (s, n) == (200, 3) and len(body) > 1
    assert get(p, "/c/x")[3] == 3
    s, _, body = p.request("GET", "/c/x", headers={"Range": "bytes=0-0"})
    assert s == 206, "a range request is not answered from the cache"
    assert cache_fields(p, 5) == ["none", "none", "miss", "hit", "none"]
    # whatever cache-response says, a 206 or 304 the backend chose to send is not kept
    for st in (206, 304):
        first = get(p, "/c/s?status=%d" % st)
        assert first[0] == st
        assert p.request("GET", "/c/s?status=%d" % st)[1]["x-backend-n"] != first[1]["x-backend-n"]


def test_public_becomes_private_for_per_caller_entries(counting, portico):
    p = portico(config(counting, inbound=[lookup(**{"downstream-caching-type": "public",
                                                    "vary-by-header": "Authorization",
                                                    "allow-private-response-caching": True})]))
    auth = {"Authorization": "Bearer one"}
    _, h1, _, _ = get(p, "/c/x", auth)
    _, h2, _, n = get(p, "/c/x", auth)
    assert n == 1
    assert h1["cache-control"].startswith("private, max-age=")
    assert h2["cache-control"].startswith("private, max-age=")


def test_backend_age_is_not_passed_on_a_stored_miss(counting, portico):
    p = portico(config(counting, inbound=[lookup(**{"downstream-caching-type": "private"})]))
    _, h1, _, _ = get(p, "/c/x?age=300")
    assert "age" not in h1 and h1["cache-control"].startswith("private, max-age=60")
    _, h2, _, n = get(p, "/c/x?age=300")
    assert n == 1 and int(h2["age"]) < 5


def test_private_responses_are_kept_when_allowed(counting, portico):
    p = portico(config(counting, inbound=[lookup(**{"allow-private-response-caching": True})]))
    assert get(p, "/c/x?cc=private")[3] == 1
    assert get(p, "/c/x?cc=private")[3] == 1


# ----------------------------------------------------- downstream headers

@pytest.mark.parametrize("down,revalidate,expect", [
    ("none", True, "no-store"),
    ("private", True, "private, max-age=%d, must-revalidate"),
    ("public", True, "public, max-age=%d, must-revalidate"),
    ("public", False, "public, max-age=%d"),
    ("private", False, "private, max-age=%d"),
])
def test_cache_control_downstream(counting, portico, down, revalidate, expect):
    p = portico(config(counting, inbound=[lookup(**{"downstream-caching-type": down,
                                                    "must-revalidate": revalidate})],
                       outbound=[store(120)]))
    _, h1, _, _ = get(p, "/c/x?cc=public%2C%20max-age%3D9999")
    time.sleep(1.05)
    _, h2, _, n = get(p, "/c/x?cc=public%2C%20max-age%3D9999")
    assert n == 1
    age = int(h2["age"])
    assert 1 <= age <= 3
    if "%d" in expect:
        assert h1["cache-control"] == expect % 120, "the stored response leaves with the lifetime it has"
        assert h2["cache-control"] == expect % (120 - age), "a hit says what is left of it"
    else:
        assert h1["cache-control"] == h2["cache-control"] == expect


# --------------------------------------------------- methods and statuses

def test_only_get_is_looked_up(counting, portico):
    p = portico(config(counting))
    assert get(p, "/c/x", method="POST", body=b"{}")[3] == 1
    assert get(p, "/c/x", method="POST", body=b"{}")[3] == 2
    assert p.request("HEAD", "/c/x")[0] == 200
    assert counting.count() == 3
    assert get(p, "/c/x")[3] == 4, "nothing a POST or HEAD did was stored"
    assert get(p, "/c/x")[3] == 4
    assert cache_fields(p, 5) == ["none", "none", "none", "miss", "hit"]


def test_only_200_unless_cache_response(counting, portico):
    also = {"id": "any", "path": "any", "serviceUrl": counting.url, "subscriptionRequired": False,
            "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
            "policies": {"inbound": ["base", lookup()],
                         "outbound": ["base", store(**{"cache-response": True})]}}
    expr = {"id": "expr", "path": "expr", "serviceUrl": counting.url, "subscriptionRequired": False,
            "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
            "policies": {"inbound": ["base", lookup()],
                         "outbound": ["base", store(**{"cache-response":
                                                       "@(context.response.statusCode == 404)"})]}}
    p = portico(config(counting, apis=[also, expr]))
    assert [get(p, "/c/x?status=404")[3] for _ in range(2)] == [1, 2]
    assert [get(p, "/c/x?status=201")[3] for _ in range(2)] == [3, 4]
    s, _, _, n = get(p, "/any/x?status=404")
    s2, _, _, n2 = get(p, "/any/x?status=404")
    assert (s, s2, n, n2) == (404, 404, 5, 5), "cache-response: the 404 is kept and answered"
    assert [get(p, "/expr/a?status=404")[3] for _ in range(2)] == [6, 6]
    assert [get(p, "/expr/b?status=500")[3] for _ in range(2)] == [7, 8]


# ------------------------------------------------------- size and framing

def test_entry_size_cap_and_unannounced_lengths(counting, portico):
    p = portico(config(counting))
    mib = 1024 * 1024
    # 1 MiB: kept
    s, _, body, n = get(p, "/c/a?size=%d" % mib)
    assert s == 200 and len(body) == mib
    s, _, body2, n2 = get(p, "/c/a?size=%d" % mib)
    assert n2 == n and body2 == body
    # over 2 MiB: served whole, never kept
    big = 2 * mib + 1
    for _ in range(2):
        s, h, body, n = get(p, "/c/b?size=%d" % big)
        assert s == 200 and len(body) == big and body.startswith(b"%d:" % n)
    assert counting.count() == 3
    # a chunked response (no length announced): served whole, not kept (not even read before sending)
    for _ in range(2):
        s, h, body, n = get(p, "/c/c?size=%d&chunked=1" % (3 * mib))
        assert s == 200 and len(body) == 3 * mib
    assert counting.count() == 5
    small = get(p, "/c/d?size=100&chunked=1")
    assert get(p, "/c/d?size=100&chunked=1")[3] == small[3] + 1


def test_bodies_past_the_buffer_limit_are_not_read(counting, portico):
    """limits.bufferSize under 2 MiB: a body past it is not stored (reading it would fail the
    response with 502); one under it is."""
    p = portico(config(counting, limits={"bufferSize": "64k"}))
    for _ in range(2):
        s, _, body, n = get(p, "/c/big?size=%d" % (100 * 1024))
        assert s == 200 and len(body) == 100 * 1024
    assert counting.count() == 2
    assert [get(p, "/c/small?size=%d" % (60 * 1024))[3] for _ in range(2)] == [3, 3]


def test_backend_that_breaks_its_body_is_not_stored(portico):
    """A backend announcing 1000 bytes, sending 10 and closing: the reading fails the response
    (as any broken response does), nothing is stored, the gateway goes on."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    calls = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.recv(65536)
                calls.append(1)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
    t = threading.Thread(target=serve, daemon=True)
    t.start()

    class B:
        url = "http://127.0.0.1:%d" % srv.getsockname()[1]
    try:
        p = portico(config(B))
        for _ in range(2):
            s, _, _ = p.request("GET", "/c/x")
            assert s == 502
        assert len(calls) == 2
    finally:
        srv.close()


# ------------------------------------------------------------- durations

def test_duration_expression_and_expiry(counting, portico):
    p = portico(config(counting, outbound=[store("@(context.request.url.query.ttl or '0')")]))
    assert get(p, "/c/x?ttl=1")[3] == 1
    assert get(p, "/c/x?ttl=1")[3] == 1
    time.sleep(2.1)
    assert get(p, "/c/x?ttl=1")[3] == 2, "the entry expired"
    assert [get(p, "/c/zero?ttl=0")[3] for _ in range(2)] == [3, 4], "duration 0 keeps nothing"
    assert [get(p, "/c/neg?ttl=-5")[3] for _ in range(2)] == [5, 6]


def test_duration_that_is_not_a_number_fails_the_statement(counting, portico):
    cfg = config(counting, outbound=[store("@('soon')")])
    cfg["apis"][0]["policies"]["on-error"] = [
        {"set-header": {"name": "X-Reason", "value": "@(context.lastError.reason)"}}]
    p = portico(cfg)
    s, h, _ = p.request("GET", "/c/x")
    assert s == 500 and h.get("x-reason") == "ExpressionValueEvaluationFailure"


@pytest.mark.parametrize("policy,message", [
    ({"cache-store": {"duration": "soon"}}, "'soon' is not a number of seconds"),
    ({"cache-store": {"duration": -1}}, "'-1' is not a number of seconds"),
    ({"cache-store": {}}, "needs the attribute 'duration'"),
    ({"cache-store-value": {"key": "k", "value": "v", "duration": "1.5"}}, "'1.5' is not a number of seconds"),
    ({"cache-lookup-value": {"key": "", "variable-name": "v"}}, "a key has 1 to 4096 bytes"),
    ({"cache-lookup-value": {"key": "k", "variable-name": "v", "caching-type": "redis"}},
     "'caching-type' must be one of: prefer-external, external, internal"),
    ({"cache-lookup-value": {"key": "k"}}, "needs the attribute 'variable-name'"),
    ({"cache-remove-value": {"key": "k" * 4097}}, "a key has 1 to 4096 bytes"),
])
def test_configuration_errors(counting, portico, policy, message):
    p = portico(config(counting, outbound=[policy]), start=False)
    rc, out = p.check()
    assert rc == 1 and message in out, out
    line = [x for x in out.splitlines() if message in x][0]
    assert line.startswith(p.config_path + ":") or line.split(":")[0].endswith("portico.yaml"), line


@pytest.mark.parametrize("inbound,outbound,message", [
    ([], [lookup()], "cache-lookup"),
    ([store()], [], "cache-store"),
    ([lookup(), lookup()], [], "cache-lookup"),
    ([lookup(**{"caching-type": "@('internal')"})], [], "does not accept an expression"),
    ([lookup(**{"vary-by-developer": "@(true)"})], [], "does not accept an expression"),
])
def test_sections_and_once_per_section(counting, portico, inbound, outbound, message):
    p = portico(config(counting, inbound=inbound, outbound=outbound), start=False)
    rc, out = p.check()
    assert rc == 1 and message in out, out


# ------------------------------------------------- memory cap and eviction

def test_eviction_under_a_small_memory_cap(counting, portico):
    p = portico(config(counting, cache={"memory": "256k"}))
    size = 16 * 1024
    first = get(p, "/c/items/0?size=%d" % size)[3]
    assert get(p, "/c/items/0?size=%d" % size)[3] == first
    for i in range(1, 64):  # 1 MiB of entries through a 256 KiB cache
        get(p, "/c/items/%d?size=%d" % (i, size))
    assert counting.count() == 64
    assert get(p, "/c/items/0?size=%d" % size)[3] == 65, "the oldest entry was evicted"
    assert get(p, "/c/items/63?size=%d" % size)[3] == 64, "the newest is still there"


def test_internal_cache_off(counting, portico):
    p = portico(config(counting, inbound=[lookup(**{"caching-type": "internal"})], cache={"memory": 0}))
    assert [get(p, "/c/x")[3] for _ in range(2)] == [1, 2]
    assert cache_fields(p, 2) == ["miss", "miss"]


# -------------------------------------------------------------- the value cache

def value_inbound(prefix="/c", caching_type="prefer-external"):
    """GET <prefix>/put?k=&v=&ttl= stores; <prefix>/get?k= reads into X-Value (X-Default when default=1);
    <prefix>/del?k= removes."""
    t = {"caching-type": caching_type}
    q = "context.request.url.query"
    return [
        {"choose": [
            {"when": "@(context.request.url.path == '%s/put')" % prefix,
             "then": [{"cache-store-value": dict(t, key="@(%s.k)" % q, value="@(%s.v)" % q,
                                                 duration="@(%s.ttl or '60')" % q)},
                      {"return-response": {"set-status": {"code": 204}}}]},
            {"when": "@(context.request.url.path == '%s/del')" % prefix,
             "then": [{"cache-remove-value": dict(t, key="@(%s.k)" % q)},
                      {"return-response": {"set-status": {"code": 204}}}]},
            {"when": "@(%s.default == '1')" % q,
             "then": [{"cache-lookup-value": dict(t, key="@(%s.k)" % q, **{"variable-name": "got",
                                                                             "default-value": "dflt"})}]},
            {"otherwise": [{"cache-lookup-value": dict(t, key="@(%s.k)" % q, **{"variable-name": "got"})}]}]},
        {"return-response": {"set-status": {"code": 200},
                             "set-header": [{"name": "X-Value",
                                             "value": "@(context.variables.got == nil and '(nil)' or "
                                                      "tostring(context.variables.got))"}]}},
    ]


def value_config(backend, caching_type="prefer-external", **extra):
    """API c at /c with value_inbound's policies."""
    return config(backend, inbound=value_inbound("/c", caching_type), outbound=[], **extra)


def value_get(p, key, prefix="/c", **q):
    q["k"] = key
    s, h, _ = p.request("GET", prefix + "/get?" + urllib.parse.urlencode(q))
    assert s == 200
    return h["x-value"]


def value_put(p, key, value, ttl=None, prefix="/c"):
    q = {"k": key, "v": value}
    if ttl is not None:
        q["ttl"] = ttl
    assert p.request("GET", prefix + "/put?" + urllib.parse.urlencode(q))[0] == 204


def value_del(p, key):
    assert p.request("GET", "/c/del?" + urllib.parse.urlencode({"k": key}))[0] == 204


def exercise_value_cache(p):
    assert value_get(p, "k1") == "(nil)", "a miss without default-value leaves the variable unset"
    assert value_get(p, "k1", default="1") == "dflt"
    value_put(p, "k1", "hello world")
    assert wait_for(lambda: value_get(p, "k1") == "hello world", what="the stored value")
    assert value_get(p, "k1", default="1") == "hello world"
    assert value_get(p, "k2") == "(nil)"
    value_put(p, "k1", "second")
    assert wait_for(lambda: value_get(p, "k1") == "second", what="the overwritten value")
    value_del(p, "k1")
    assert wait_for(lambda: value_get(p, "k1") == "(nil)", what="the removal")
    value_put(p, "short", "x", ttl=1)
    assert wait_for(lambda: value_get(p, "short") == "x", what="the short-lived value")
    time.sleep(2.1)
    assert value_get(p, "short") == "(nil)", "expired"
    value_put(p, "zero", "x", ttl=0)
    assert value_get(p, "zero") == "(nil)", "duration 0 stores nothing"
    # a key long enough, bytes a header could not carry
    long_key = "k" * 4096
    value_put(p, long_key, "long")
    assert wait_for(lambda: value_get(p, long_key) == "long", what="the long key's value")


def test_value_cache_in_memory(counting, portico):
    p = portico(value_config(counting, "internal"))
    exercise_value_cache(p)
    assert counting.count() == 0


def test_value_key_errors_at_request_time(counting, portico):
    p = portico(value_config(counting, "internal"))
    s, _, _ = p.request("GET", "/c/get?k=")
    assert s == 500, "an empty key fails the statement"
    s, _, _ = p.request("GET", "/c/get?k=" + "k" * 4097)
    assert s == 500
    s, _, _ = p.request("GET", "/c/put?k=a&v=b&ttl=soon")
    assert s == 500



# ------------------------------------------------------------------ Redis

from redis_helpers import redis_server  # noqa: E402,F401  (the fixture)


def redis_keys(r, pattern):
    return sorted(k.decode() for k in (r.command("KEYS", pattern) or []))


def test_value_keys_cannot_reach_cached_responses(counting, portico, redis_server):
    """A value stored under the exact text of a cached response's key lands beside it (portico:v:r:...),
    and the response is still served."""
    r = redis_server()
    resp = {"id": "resp", "path": "resp", "serviceUrl": counting.url, "subscriptionRequired": False,
            "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
            "policies": {"inbound": ["base", lookup(**{"caching-type": "external"})],
                         "outbound": ["base", store()]}}
    p = portico(value_config(counting, "external", apis=[resp], cache={"redis": r.url}))
    assert get(p, "/resp/x")[3] == 1
    key = wait_for(lambda: redis_keys(r, "portico:r:*"), what="the entry in Redis")[0]
    inner = key[len("portico:"):]
    value_put(p, inner, "junk")
    wait_for(lambda: r.command("GET", "portico:v:" + inner) == b"junk", what="the value beside the entry")
    assert r.command("GET", key).startswith(b"PTC1"), "the cached response is untouched"
    assert get(p, "/resp/x")[3] == 1
    assert value_get(p, inner) == "junk"


def test_workspaces_have_their_own_values(counting, portico, redis_server):
    """The service and two workspaces store and read the same literal key: each sees its own value.
    A workspace's APIs use the internal cache only (APIM), even with caching-type external: nothing
    of theirs reaches Redis."""
    r = redis_server()

    def api(aid, ws=None):
        a = {"id": aid, "path": aid, "serviceUrl": counting.url, "subscriptionRequired": False,
             "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
             "policies": {"inbound": value_inbound("/" + aid, "external")}}
        if ws:
            a["workspace"] = ws
        return a
    cfg = value_config(counting, "external", apis=[api("wa", "wsa"), api("wb", "wsb")],
                       cache={"redis": r.url})
    cfg["workspaces"] = [{"id": "wsa"}, {"id": "wsb"}]
    p = portico(cfg)
    value_put(p, "backend-token", "service-secret")
    wait_for(lambda: value_get(p, "backend-token") == "service-secret", what="the service's value")
    assert value_get(p, "backend-token", prefix="/wa") == "(nil)", "a workspace cannot read the service's"
    value_put(p, "backend-token", "from-a", prefix="/wa")
    wait_for(lambda: value_get(p, "backend-token", prefix="/wa") == "from-a", what="wsa's value")
    assert value_get(p, "backend-token", prefix="/wb") == "(nil)", "nor another workspace's"
    value_put(p, "backend-token", "from-b", prefix="/wb")
    wait_for(lambda: value_get(p, "backend-token", prefix="/wb") == "from-b", what="wsb's value")
    assert value_get(p, "backend-token", prefix="/wa") == "from-a"
    assert value_get(p, "backend-token") == "service-secret", "nothing a workspace wrote reached the service"
    # a workspace's key spelled like another scope's store key does not reach it either
    value_put(p, "4:wsb:backend-token", "forged", prefix="/wa")
    assert value_get(p, "backend-token", prefix="/wb") == "from-b"
    p.request("GET", "/wa/del?k=backend-token")
    assert value_get(p, "backend-token") == "service-secret"
    assert redis_keys(r, "portico:*") == ["portico:v:backend-token"], "workspace values stay in the node"


def test_workspace_responses_use_the_internal_cache(counting, portico, redis_server):
    """A workspace's API caches responses with caching-type external: they are kept in the node, never
    in Redis; a service API beside it uses Redis."""
    r = redis_server()
    ws = {"id": "wr", "path": "wr", "serviceUrl": counting.url, "subscriptionRequired": False,
          "workspace": "wsa", "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
          "policies": {"inbound": [lookup(**{"caching-type": "external"})], "outbound": [store()]}}
    cfg = config(counting, inbound=[lookup(**{"caching-type": "external"})], apis=[ws], cache={"redis": r.url})
    cfg["workspaces"] = [{"id": "wsa"}]
    p = portico(cfg)
    assert [get(p, "/wr/x")[3] for _ in range(2)] == [1, 1]
    assert cache_fields(p, 2) == ["miss", "hit"]
    assert redis_keys(r, "portico:*") == []
    assert get(p, "/c/x")[3] == 2
    wait_for(lambda: len(redis_keys(r, "portico:r:*")) == 1, what="the service API's entry in Redis")


def test_value_cache_in_redis(counting, portico, redis_server):
    r = redis_server()
    p = portico(value_config(counting, "external", cache={"redis": r.url}))
    exercise_value_cache(p)
    value_put(p, "seen", "in redis")
    wait_for(lambda: r.command("GET", "portico:v:seen") == b"in redis", what="the value in Redis")
    ttl = r.command("TTL", "portico:v:seen")
    assert 50 <= ttl <= 60
    # a value Redis holds that the gateway did not write is read as it is
    r.command("SET", "portico:v:outside", "from elsewhere")
    assert value_get(p, "outside") == "from elsewhere"


def test_response_cache_in_redis(counting, portico, redis_server):
    r = redis_server()
    p = portico(config(counting, inbound=[lookup(**{"downstream-caching-type": "public"})],
                       outbound=[store(90)], cache={"redis": r.url}))
    assert get(p, "/c/items/1")[3] == 1
    keys = wait_for(lambda: redis_keys(r, "portico:r:*"), what="the entry in Redis")
    assert len(keys) == 1 and len(keys[0]) == len("portico:r:") + 64
    assert 80 <= r.command("TTL", keys[0]) <= 90
    s, h, _, n = get(p, "/c/items/1")
    assert (s, n) == (200, 1) and int(h["age"]) >= 0
    assert h["cache-control"].startswith("public, max-age=")
    assert counting.count() == 1
    assert cache_fields(p, 2) == ["miss", "hit"]
    # caching-type internal keeps to the node's cache even with Redis configured
    cfg = config(counting, inbound=[lookup(**{"caching-type": "internal"})], cache={"redis": r.url})
    p.reload(cfg)
    r.command("FLUSHALL")
    assert [get(p, "/c/items/9")[3] for _ in range(2)] == [2, 2]
    assert redis_keys(r, "portico:*") == []


def test_damaged_entries_in_redis_are_misses(counting, portico, redis_server):
    """Whatever Redis holds under a response key -- cut, foreign, header injection -- is a miss:
    the backend answers, nothing breaks, and the entry is written afresh."""
    r = redis_server()
    p = portico(config(counting, cache={"redis": r.url}))
    assert get(p, "/c/x")[3] == 1
    key = wait_for(lambda: redis_keys(r, "portico:r:*"), what="the entry in Redis")[0]
    good = r.command("GET", key)
    assert good.startswith(b"PTC1")
    bad_values = [b"", b"garbage", good[:len(good) // 2], good + b"x",
                  good.replace(b"Content-Type", b"Content\nType"),
                  good.replace(b"application/json", b"applic\r\nX-E: 1on")]  # same length: framing holds
    assert all(len(b) == len(good) for b in bad_values[-2:])
    n = 1
    for bad in bad_values:
        r.command("SET", key, bad)
        s, h, body, got = get(p, "/c/x")
        n += 1
        assert (s, got) == (200, n), bad
        assert "x-e" not in h
        wait_for(lambda: r.command("GET", key) != bad, what="the entry written afresh")
        assert get(p, "/c/x")[3] == n, "the fresh entry is a hit"
    assert counting.count() == n


def test_redis_down_mid_run_fails_no_request(counting, portico, redis_server):
    r = redis_server()
    p = portico(config(counting, cache={"redis": r.url, "commandTimeout": "100ms"}))
    assert [get(p, "/c/items/1")[3] for _ in range(2)] == [1, 1]
    r.kill()
    results = [get(p, "/c/items/1") for _ in range(5)]
    assert all(x[0] == 200 for x in results), [x[0] for x in results]
    assert [x[3] for x in results] == [2, 3, 4, 5, 6], "down: every lookup misses, the backend answers"
    r.start()
    wait_for(lambda: get(p, "/c/items/1")[3] == get(p, "/c/items/1")[3], timeout=15,
             what="the cache working again after Redis came back")


def test_value_lookups_as_wait_lanes_in_redis(counting, portico, redis_server):
    """cache-lookup-value children of wait (all): both lookups run through Redis, both variables arrive;
    a paused Redis makes them miss after commandTimeout, never fails the request."""
    r = redis_server()
    r.command("SET", "portico:v:one", "1")
    r.command("SET", "portico:v:two", "2")
    t = {"caching-type": "external"}
    inbound = [
        {"wait": {"for": "all", "policies": [
            {"cache-lookup-value": dict(t, key="one", **{"variable-name": "a"})},
            {"cache-lookup-value": dict(t, key="two", **{"variable-name": "b", "default-value": "none"})}]}},
        {"return-response": {"set-status": {"code": 200},
                             "set-header": [{"name": "X-Got", "value": "@(tostring(context.variables.a) .. ',' .. "
                                                                       "tostring(context.variables.b))"}]}},
    ]
    p = portico(config(counting, inbound=inbound, outbound=[],
                       cache={"redis": r.url, "commandTimeout": "200ms"}))
    s, h, _ = p.request("GET", "/c/x")
    assert (s, h["x-got"]) == (200, "1,2")
    r.pause(1.5)
    t0 = time.monotonic()
    s, h, _ = p.request("GET", "/c/x")
    assert (s, h["x-got"]) == (200, "nil,none"), "a Redis that does not answer is a miss"
    assert time.monotonic() - t0 < 1.2, "the lookups gave up at commandTimeout"
