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

KEY_ALICE = "a" * 32
KEY_BOB = "b" * 32
KEY_CAROL = "c" * 32
KEY_DAVE = "d" * 32


# ------------------------------------------------------------- the backend

class CountingBackend:
    """Answers GET and POST on any path with a numbered JSON body.  Query
    parameters shape the answer: status=N, cc=<Cache-Control>, cookie=1
    (Set-Cookie), vary=<Vary>, size=N (a body of N bytes), chunked=1 (no
    Content-Length), private-key=1 (an X-Private header)."""

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
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Backend-N", str(n))
                if "cc" in q:
                    self.send_header("Cache-Control", q["cc"])
                if q.get("cookie"):
                    self.send_header("Set-Cookie", "session=%d; Path=/" % n)
                if "vary" in q:
                    self.send_header("Vary", q["vary"])
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
        self.server.shutdown()
        self.server.server_close()


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
    ("vary=Accept", True),
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

def value_config(backend, caching_type="prefer-external", **extra):
    """GET /c/put?k=&v=&ttl= stores; /c/get?k= reads into X-Value (X-Default when default=1); /c/del?k= removes."""
    t = {"caching-type": caching_type}
    q = "context.request.url.query"
    inbound = [
        {"choose": [
            {"when": "@(context.request.url.path == '/c/put')",
             "then": [{"cache-store-value": dict(t, key="@(%s.k)" % q, value="@(%s.v)" % q,
                                                 duration="@(%s.ttl or '60')" % q)},
                      {"return-response": {"set-status": {"code": 204}}}]},
            {"when": "@(context.request.url.path == '/c/del')",
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
    return config(backend, inbound=inbound, outbound=[], **extra)


def value_get(p, key, **q):
    q["k"] = key
    s, h, _ = p.request("GET", "/c/get?" + urllib.parse.urlencode(q))
    assert s == 200
    return h["x-value"]


def value_put(p, key, value, ttl=None):
    q = {"k": key, "v": value}
    if ttl is not None:
        q["ttl"] = ttl
    assert p.request("GET", "/c/put?" + urllib.parse.urlencode(q))[0] == 204


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


def test_value_keys_cannot_reach_cached_responses(counting, portico):
    """Values live under "v:", responses under "r:" + a hash: a value key that looks like a
    response key stores beside it."""
    cfg = value_config(counting, "internal")
    p = portico(cfg)
    value_put(p, "r:" + "0" * 64, "junk")
    assert wait_for(lambda: value_get(p, "r:" + "0" * 64) == "junk", what="the value")


def test_value_key_errors_at_request_time(counting, portico):
    p = portico(value_config(counting, "internal"))
    s, _, _ = p.request("GET", "/c/get?k=")
    assert s == 500, "an empty key fails the statement"
    s, _, _ = p.request("GET", "/c/get?k=" + "k" * 4097)
    assert s == 500
    s, _, _ = p.request("GET", "/c/put?k=a&v=b&ttl=soon")
    assert s == 500

