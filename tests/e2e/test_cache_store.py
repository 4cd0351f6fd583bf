"""The cache stores under the caching policies: the internal store (kept
across reloads, its budget, its figures on /metrics) and Redis (a real
redis-server started by the test: values written under the `portico:`
prefix with their time to live, password and ACL authentication, TLS with
the test CA, Redis killed in the middle of a run with no failed request, a
Redis that stops answering (commandTimeout), one that never was there, and
a hostile server speaking broken RESP).

The policies are the value cache's (cache-store-value, cache-lookup-value,
cache-remove-value); what Redis holds is read with a RESP client of the
test's own, so each check looks at both sides: what the client got and what
the store got.
"""

import http.client
import os
import re
import socket
import threading
import time
import urllib.parse

import pytest

from conftest import free_port, wait_for
from redis_helpers import RedisServer, needs_redis, redis_server, resp_command  # noqa: F401
from tls_helpers import Pki

pytestmark = needs_redis

Q = "context.request.url.query"


def value_config(caching_type="prefer-external", cache=None, workers=2, metrics_port=None):
    """GET /v/put?k=&v=&ttl= stores; /v/get?k= answers the value in X-Value ((nil) when none);
    /v/del?k= removes.  No backend is ever called."""
    t = {"caching-type": caching_type}
    inbound = [
        {"choose": [
            {"when": "@(context.request.url.path == '/v/put')",
             "then": [{"cache-store-value": dict(t, key="@(%s.k)" % Q, value="@(%s.v)" % Q,
                                                 duration="@(%s.ttl or '60')" % Q)},
                      {"return-response": {"set-status": {"code": 204}}}]},
            {"when": "@(context.request.url.path == '/v/del')",
             "then": [{"cache-remove-value": dict(t, key="@(%s.k)" % Q)},
                      {"return-response": {"set-status": {"code": 204}}}]},
            {"otherwise": [{"cache-lookup-value": dict(t, key="@(%s.k)" % Q, **{"variable-name": "got"})}]}]},
        {"return-response": {"set-status": {"code": 200},
                             "set-header": [{"name": "X-Value",
                                             "value": "@(context.variables.got == nil and '(nil)' or "
                                                      "tostring(context.variables.got))"}]}},
    ]
    api = {"id": "v", "path": "v", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": False,
           "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}],
           "policies": {"inbound": ["base"] + inbound, "outbound": ["base"]}}
    cfg = {"listen": ["127.0.0.1:%d" % free_port()], "workers": workers, "apis": [api],
           "metrics": {"listen": "127.0.0.1:%d" % (metrics_port or free_port()), "auth": "none"}}
    if cache is not None:
        cfg["cache"] = cache
    return cfg


def request(p, path, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("X-Value")
    finally:
        c.close()


def vget(p, key):
    s, v = request(p, "/v/get?" + urllib.parse.urlencode({"k": key}))
    assert s == 200, s
    return v


def vput(p, key, value, ttl=None):
    q = {"k": key, "v": value}
    if ttl is not None:
        q["ttl"] = ttl
    s, _ = request(p, "/v/put?" + urllib.parse.urlencode(q))
    assert s == 204, s


def vdel(p, key):
    s, _ = request(p, "/v/del?" + urllib.parse.urlencode({"k": key}))
    assert s == 204, s


def metrics(p):
    port = int(p.config["metrics"]["listen"].rsplit(":", 1)[1])
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200
        text = r.read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(portico_cache_\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def redis_key(key):
    """Where a value key lives in Redis: the gateway's prefix, then the value cache's."""
    return "portico:v:" + key


# ----------------------------------------------------------------- Redis

def test_values_round_trip_through_redis(portico, redis_server):
    r = redis_server()
    p = portico(value_config(cache={"redis": r.url}))
    assert vget(p, "k1") == "(nil)"
    vput(p, "k1", "hello redis", ttl=100)
    # what the store got: the value under the prefix, with its time to live
    assert wait_for(lambda: r.command("GET", redis_key("k1")) == b"hello redis", what="the SET in Redis")
    assert 90 <= r.command("TTL", redis_key("k1")) <= 100
    assert vget(p, "k1") == "hello redis"
    # a value written by someone else under the prefix is read back as is
    r.command("SET", redis_key("k2"), b"from outside")
    assert vget(p, "k2") == "from outside"
    vdel(p, "k1")
    assert wait_for(lambda: r.command("EXISTS", redis_key("k1")) == 0, what="the DEL in Redis")
    assert vget(p, "k1") == "(nil)"
    # internal is the node's own store: Redis does not see it
    m = metrics(p)
    assert m['portico_cache_hits_total{store="redis"}'] >= 2
    assert m['portico_cache_misses_total{store="redis"}'] >= 2
    assert m['portico_cache_stores_total{store="redis"}'] >= 1
    assert m["portico_cache_redis_connections"] >= 1
    assert m["portico_cache_redis_connects_total"] >= 1
    assert m['portico_cache_redis_errors_total{reason="protocol"}'] == 0


def test_value_over_max_entry_in_redis_is_a_miss_and_keeps_the_connection(portico, redis_server):
    """A value larger than cache.maxEntry in Redis (written by another program, or before maxEntry
    was lowered) reads as a miss; its bytes are thrown away as they come and the connection stays,
    so the lookups around it, pipelined on the same connection, are answered."""
    r = redis_server()
    p = portico(value_config(cache={"redis": r.url, "maxEntry": "64k"}, workers=1))
    r.command("SET", redis_key("big"), b"b" * (3 << 20))  # arrives in many reads
    r.command("SET", redis_key("small"), b"fits")
    assert vget(p, "small") == "fits"
    results = {}

    def ask(key):
        results[key] = vget(p, key)
    for _ in range(3):
        ts = [threading.Thread(target=ask, args=(k,)) for k in ("small", "big", "small2")]
        r.command("SET", redis_key("small2"), b"also fits")
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert results == {"small": "fits", "big": "(nil)", "small2": "also fits"}, results
    assert vget(p, "big") == "(nil)"
    assert vget(p, "small") == "fits"
    m = metrics(p)
    assert m['portico_cache_redis_errors_total{reason="too_large"}'] == 4
    assert m['portico_cache_redis_errors_total{reason="protocol"}'] == 0
    assert m['portico_cache_redis_errors_total{reason="connection"}'] == 0
    assert m["portico_cache_redis_connects_total"] == 1, "one connection all along"
    assert "while it is down" not in p.log_text()


def test_caching_types_choose_the_store(portico, redis_server):
    r = redis_server()
    cfg = value_config(cache={"redis": r.url})
    p = portico(cfg)
    # internal: never in Redis
    cfg_int = value_config("internal", cache={"redis": r.url})
    cfg_int["listen"] = cfg["listen"]
    cfg_int["metrics"] = cfg["metrics"]
    p.reload(cfg_int)
    vput(p, "only-here", "mem")
    assert vget(p, "only-here") == "mem"
    assert r.command("EXISTS", redis_key("only-here")) == 0
    # external with Redis: Redis
    cfg_ext = value_config("external", cache={"redis": r.url})
    cfg_ext["listen"] = cfg["listen"]
    cfg_ext["metrics"] = cfg["metrics"]
    p.reload(cfg_ext)
    vput(p, "there", "red")
    assert wait_for(lambda: r.command("GET", redis_key("there")) == b"red", what="the SET in Redis")
    assert vget(p, "only-here") == "(nil)", "the internal store's value is not in Redis"


def test_external_without_redis_misses_and_says_so(portico):
    p = portico(value_config("external"))
    vput(p, "k", "v")
    assert vget(p, "k") == "(nil)"
    assert vget(p, "k") == "(nil)"
    assert wait_for(lambda: "caching-type external, but cache.redis is not set" in p.log_text())
    assert p.log_text().count("cache.redis is not set") == 1, "said once a minute, not per request"


def test_password_authentication(portico, redis_server):
    r = redis_server(password="s3cret pass")
    p = portico(value_config(cache={"redis": "redis://127.0.0.1:%d" % r.port, "password": "s3cret pass"}))
    vput(p, "k", "authed")
    assert wait_for(lambda: r.command("GET", redis_key("k")) == b"authed", what="the SET in Redis")
    assert vget(p, "k") == "authed"


def test_acl_user_in_the_url(portico, redis_server):
    r = redis_server(username="gateway", password="p@ss:word")
    url = "redis://gateway:%s@127.0.0.1:%d/0" % (urllib.parse.quote("p@ss:word", safe=""), r.port)
    p = portico(value_config(cache={"redis": url}))
    vput(p, "k", "acl")
    assert wait_for(lambda: r.command("GET", redis_key("k")) == b"acl", what="the SET in Redis")
    assert vget(p, "k") == "acl"


def test_wrong_password_is_a_miss_never_a_failure(portico, redis_server):
    r = redis_server(password="right")
    p = portico(value_config(cache={"redis": "redis://127.0.0.1:%d" % r.port, "password": "wrong"}))
    for i in range(5):
        vput(p, "k%d" % i, "x")
        assert vget(p, "k%d" % i) == "(nil)"
    assert r.command("DBSIZE") == 0, "nothing was stored without AUTH"
    assert wait_for(lambda: "AUTH refused" in p.log_text(), what="the AUTH refusal in the log")
    assert "wrong" not in p.log_text(), "the password is never logged"
    assert wait_for(lambda: metrics(p)['portico_cache_redis_errors_total{reason="auth"}'] >= 1)


def test_database_number_is_selected(portico, redis_server):
    r = redis_server()
    p = portico(value_config(cache={"redis": "redis://127.0.0.1:%d/5" % r.port}))
    vput(p, "k", "in five")
    assert wait_for(lambda: r.command("SELECT", 5) == "OK" and
                    resp_command(r.port, "EVAL", "redis.call('SELECT', 5) return redis.call('GET', KEYS[1])", 1,
                                 redis_key("k")) == b"in five", what="the value in database 5")
    assert r.command("EXISTS", redis_key("k")) == 0, "not in database 0"
    assert vget(p, "k") == "in five"


def test_redis_killed_mid_run_fails_no_request(portico, redis_server):
    """Clients keep asking while Redis dies and comes back: every answer is a 200 (a hit or a
    miss), none waits past commandTimeout for long, and once Redis is back values are read and
    written there again."""
    r = redis_server()
    p = portico(value_config(cache={"redis": r.url, "commandTimeout": "200ms", "connectTimeout": "300ms"}))
    vput(p, "k", "before")
    assert wait_for(lambda: vget(p, "k") == "before", what="the value through Redis")
    statuses, slow, stop = [], [], threading.Event()
    lock = threading.Lock()

    def client(n):
        i = 0
        while not stop.is_set():
            i += 1
            t0 = time.time()
            try:
                if i % 3 == 0:
                    s, _ = request(p, "/v/put?k=c%d-%d&v=x" % (n, i), timeout=5)
                else:
                    s, _ = request(p, "/v/get?k=k", timeout=5)
            except (OSError, http.client.HTTPException) as e:
                s = repr(e)
            dt = time.time() - t0
            with lock:
                statuses.append(s)
                if dt > 1.0:
                    slow.append(dt)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        r.kill()
        time.sleep(1.5)
        with lock:
            during = len(statuses)
        r.start()  # the same port
        # the gateway reconnects within its backoff (at most 5 s) and uses Redis again
        r.command("SET", redis_key("k"), b"after")
        assert wait_for(lambda: vget(p, "k") == "after", timeout=10, what="values from the restarted Redis")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
    bad = [s for s in statuses if s not in (200, 204)]
    assert not bad, "failed requests while Redis was down: %r" % bad[:5]
    assert len(statuses) > during > 20, "requests kept being served while Redis was down"
    assert not slow, "requests waited on the cache: %r" % slow[:5]
    vput(p, "k3", "written again")
    assert wait_for(lambda: r.command("GET", redis_key("k3")) == b"written again", what="stores to Redis again")
    m = metrics(p)
    assert m['portico_cache_redis_errors_total{reason="connection"}'] >= 1
    assert m['portico_cache_skipped_total{store="redis"}'] >= 1
    assert m["portico_cache_redis_connects_total"] >= 2
    log = p.log_text()
    assert log.count("lookups miss and stores are skipped while it is down") == 1, "logged once per interval"
    assert "reachable again" in log


def test_redis_that_stops_answering_costs_commandtimeout(portico, redis_server):
    r = redis_server()
    p = portico(value_config(cache={"redis": r.url, "commandTimeout": "150ms"}, workers=1))
    vput(p, "k", "v")
    assert wait_for(lambda: vget(p, "k") == "v", what="the value through Redis")
    r.pause(2.0)  # connections stay open, nothing is answered
    t0 = time.time()
    assert vget(p, "k") == "(nil)"
    dt = time.time() - t0
    assert 0.1 <= dt < 1.0, "a lookup waits commandTimeout, then misses (%.3f s)" % dt
    assert wait_for(lambda: metrics(p)['portico_cache_redis_errors_total{reason="timeout"}'] >= 1)
    # once Redis answers again, so does the cache
    assert wait_for(lambda: vget(p, "k") == "v", timeout=10, what="Redis answering again")


def test_redis_never_there(portico):
    port = free_port()  # nothing listens
    p = portico(value_config(cache={"redis": "redis://127.0.0.1:%d" % port}))
    for i in range(10):
        vput(p, "k", "v")
        t0 = time.time()
        assert vget(p, "k") == "(nil)"
        assert time.time() - t0 < 1.0
    assert wait_for(lambda: "lookups miss and stores are skipped while it is down" in p.log_text())


def test_host_that_does_not_resolve(portico):
    cfg = value_config(cache={"redis": "redis://no-such-host.invalid:6379"})
    p = portico(cfg)
    assert vget(p, "k") == "(nil)"
    vput(p, "k", "v")
    assert p.log_text().count("does not resolve") == 1
    # a reload that changes nothing in the cache settings still tries the name again
    assert p.reload(cfg)
    assert wait_for(lambda: p.log_text().count("does not resolve") == 2, what="the name tried at the reload")
    assert vget(p, "k") == "(nil)"
    assert p.proc.poll() is None


def test_tls_with_the_test_ca(portico, redis_server, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("redis", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"))
    r = redis_server(tls=(cert, key, pki.ca))
    p = portico(value_config(cache={"redis": r.url, "tls": {"caFile": pki.ca}}))
    vput(p, "k", "over tls")
    assert wait_for(lambda: r.command("GET", redis_key("k")) == b"over tls", what="the SET over TLS")
    assert vget(p, "k") == "over tls"


def test_tls_untrusted_certificate_is_down(portico, redis_server, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("redis", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"), issuer="other-ca")
    r = redis_server(tls=(cert, key, pki.other_ca))
    p = portico(value_config(cache={"redis": r.url, "tls": {"caFile": pki.ca}}))
    vput(p, "k", "x")
    assert vget(p, "k") == "(nil)"
    assert r.command("DBSIZE") == 0
    assert wait_for(lambda: "while it is down" in p.log_text(), what="the TLS failure in the log")


# ------------------------------------------------------------ a hostile Redis

class FakeRedis:
    """A TCP server that answers every command with `reply(command_number)` bytes."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.n = 0
        self.conns = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns += 1
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        c.settimeout(5)
        f = c.makefile("rb")
        try:
            while not self.stop.is_set():
                line = f.readline()
                if not line.startswith(b"*"):
                    return
                for _ in range(int(line[1:])):
                    n = int(f.readline()[1:])
                    f.read(n + 2)
                self.n += 1
                out = self.reply(self.n)
                if out is None:
                    return
                c.sendall(out)
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.sock.close()


HOSTILE = {
    "array": lambda n: b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
    "huge bulk": lambda n: b"$999999999999\r\n",
    "bulk over maxEntry": lambda n: b"$2000000\r\n" + b"x" * 1000,
    "bulk over maxEntry without its CRLF": lambda n: b"$2000000\r\n" + b"x" * 2000000 + b"XX",
    "garbage": lambda n: b"HTTP/1.1 200 OK\r\n\r\n",
    "endless line": lambda n: b"+" + b"y" * 100000,
    "negative length": lambda n: b"$-5\r\n",
    "bare LF": lambda n: b"+OK\nOK\r\n",
    "closes": lambda n: None,
    "extra replies": lambda n: b"$1\r\nx\r\n" * 3,
    "resp3 map": lambda n: b"%1\r\n+a\r\n+b\r\n",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_redis_is_a_miss(portico, kind):
    fake = FakeRedis(HOSTILE[kind])
    try:
        p = portico(value_config(cache={"redis": "redis://127.0.0.1:%d" % fake.port, "maxEntry": "1m",
                                        "commandTimeout": "300ms"}, workers=1))
        for i in range(4):
            t0 = time.time()
            v = vget(p, "k%d" % i)
            assert time.time() - t0 < 2.0
            if kind != "extra replies":
                assert v == "(nil)", v
            vput(p, "k%d" % i, "v")
        assert p.proc.poll() is None
        m = metrics(p)
        assert m['portico_cache_hits_total{store="redis"}'] <= 1 or kind == "extra replies"
        if kind not in ("closes",):
            assert (m['portico_cache_redis_errors_total{reason="protocol"}'] +
                    m['portico_cache_redis_errors_total{reason="timeout"}']) >= 1
    finally:
        fake.close()


def test_slow_drip_reply_is_bounded_by_commandtimeout(portico):
    def drip(n):
        return b"$5\r\n"  # the bulk never comes
    fake = FakeRedis(drip)
    try:
        p = portico(value_config(cache={"redis": "redis://127.0.0.1:%d" % fake.port, "commandTimeout": "200ms"},
                                 workers=1))
        t0 = time.time()
        assert vget(p, "k") == "(nil)"
        assert time.time() - t0 < 1.0
    finally:
        fake.close()


# -------------------------------------------------------- the internal store

def test_internal_store_survives_a_reload_and_is_counted(portico):
    cfg = value_config("internal", cache={"memory": "1m"})
    p = portico(cfg)
    vput(p, "kept", "across reloads")
    assert vget(p, "kept") == "across reloads"
    assert vget(p, "absent") == "(nil)"
    m = metrics(p)
    assert m['portico_cache_hits_total{store="internal"}'] == 1
    assert m['portico_cache_misses_total{store="internal"}'] == 1
    assert m['portico_cache_stores_total{store="internal"}'] == 1
    assert m["portico_cache_entries"] == 1
    assert m["portico_cache_bytes"] > len("v:kept") + len("across reloads")
    assert m["portico_cache_limit_bytes"] == 1 << 20
    assert 'portico_cache_hits_total{store="redis"}' not in m, "no Redis series without Redis"
    cfg2 = dict(cfg, cache={"memory": "2m"})
    assert p.reload(cfg2)
    assert vget(p, "kept") == "across reloads"
    assert metrics(p)["portico_cache_limit_bytes"] == 2 << 20
    # memory 0 turns it off: emptied, nothing stored
    assert p.reload(dict(cfg, cache={"memory": 0}))
    assert vget(p, "kept") == "(nil)"
    vput(p, "new", "x")
    assert vget(p, "new") == "(nil)"
    m = metrics(p)
    assert m["portico_cache_entries"] == 0 and m["portico_cache_bytes"] == 0
    assert m['portico_cache_skipped_total{store="internal"}'] >= 1


def test_internal_budget_holds_under_many_stores(portico):
    p = portico(value_config("internal", cache={"memory": "64k"}))
    for i in range(200):
        vput(p, "key-%d" % i, "v" * 1000)
    m = metrics(p)
    assert m["portico_cache_bytes"] <= 64 * 1024
    assert m["portico_cache_evictions_total"] >= 130
    assert vget(p, "key-199") == "v" * 1000
    assert vget(p, "key-0") == "(nil)"


def test_reload_to_redis_and_back(portico, redis_server):
    r = redis_server()
    cfg = value_config(cache={"memory": "1m"})
    p = portico(cfg)
    vput(p, "k", "internal")
    assert vget(p, "k") == "internal"
    assert p.reload(dict(cfg, cache={"redis": r.url}))
    assert vget(p, "k") == "(nil)", "prefer-external now reads Redis"
    vput(p, "k", "redis")
    assert wait_for(lambda: r.command("GET", redis_key("k")) == b"redis")
    assert p.reload(dict(cfg, cache={"memory": "1m"}))
    assert vget(p, "k") == "internal", "the internal store kept its value across both reloads"


# ------------------------------------------------- lookups that are abandoned

def wait_config(redis_url):
    """GET /w?k= runs wait for=any over a Redis lookup and a choose that sets the variable at once."""
    inbound = [
        {"wait": {"for": "any", "policies": [
            {"cache-lookup-value": {"key": "@(%s.k)" % Q, "variable-name": "got"}},
            {"choose": [{"when": "@(true)", "then": [{"set-variable": {"name": "fast", "value": "yes"}}]}]}]}},
        {"return-response": {"set-status": {"code": 200},
                             "set-header": [{"name": "X-Value",
                                             "value": "@(tostring(context.variables.fast) .. '/' .. "
                                                      "tostring(context.variables.got))"}]}},
    ]
    cfg = value_config(cache={"redis": redis_url, "commandTimeout": "1s"}, workers=1)
    cfg["apis"][0]["policies"]["inbound"] = ["base"] + inbound
    return cfg


def test_wait_any_abandons_a_slow_redis_lookup(portico, redis_server):
    r = redis_server()
    r.command("SET", redis_key("k"), b"late")
    p = portico(wait_config(r.url))
    assert request(p, "/v/w?k=k")[0] == 200  # connected
    r.pause(1.5)
    t0 = time.time()
    s, v = request(p, "/v/w?k=k")
    assert s == 200 and v == "yes/nil", v
    assert time.time() - t0 < 0.5, "the wait ended with its fast child"
    # the abandoned lookup's answer (or its timeout) comes later to nobody: no crash, the next
    # requests are served
    time.sleep(1.8)
    assert p.proc.poll() is None
    assert request(p, "/v/get?k=k")[0] == 200


def test_client_leaving_during_a_lookup(portico, redis_server):
    r = redis_server()
    p = portico(value_config(cache={"redis": r.url, "commandTimeout": "1s"}, workers=1))
    vput(p, "k", "v")
    assert wait_for(lambda: vget(p, "k") == "v")
    r.pause(0.8)
    socks = []
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(b"GET /v/get?k=k HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    time.sleep(0.2)
    for s in socks:
        s.close()  # their lookups are cancelled with their requests
    time.sleep(1.0)  # Redis answers now, to nobody
    assert p.proc.poll() is None
    assert vget(p, "k") == "v"
    entries = p.access_entries(wait_for=22)
    assert sum(1 for e in entries if e.get("status") == 499) == 20


# ------------------------------------------------------------- hostile keys

def test_keys_are_bytes_not_commands(portico, redis_server):
    """A key with CR LF and a RESP command in it is one key: nothing is injected."""
    r = redis_server()
    p = portico(value_config(cache={"redis": r.url}))
    evil = "x\r\n*1\r\n$8\r\nFLUSHALL\r\n"
    r.command("SET", "portico:keep", b"me")
    vput(p, evil, "stored")
    assert wait_for(lambda: r.command("GET", redis_key(evil)) == b"stored", what="the key as bytes")
    assert r.command("GET", "portico:keep") == b"me"
    assert vget(p, evil) == "stored"
    assert r.command("DBSIZE") == 2


def body_config(cache, caching_type="prefer-external"):
    """POST /v/putbody?k= stores the body; GET /v/getbody?k= answers it as the body."""
    t = {"caching-type": caching_type}
    inbound = [
        {"choose": [
            {"when": "@(context.request.url.path == '/v/putbody')",
             "then": [{"cache-store-value": dict(t, key="@(%s.k)" % Q, value="@(context.request.body:asString())",
                                                 duration="60")},
                      {"return-response": {"set-status": {"code": 204}}}]},
            {"otherwise": [{"cache-lookup-value": dict(t, key="@(%s.k)" % Q, **{"variable-name": "got"})},
                           {"return-response": {"set-status": {"code": 200},
                                                "set-body": {"value": "@(tostring(context.variables.got))"}}}]}]},
    ]
    cfg = value_config(cache=cache, workers=1)
    cfg["apis"][0]["policies"]["inbound"] = ["base"] + inbound
    return cfg


def big_exchange(p, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=20)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


@pytest.mark.parametrize("store", ["redis", "internal"])
def test_large_values_up_to_max_entry(portico, redis_server, store):
    r = redis_server()
    cache = {"redis": r.url, "maxEntry": "1m"} if store == "redis" else {"maxEntry": "1m"}
    p = portico(body_config(cache))
    big = os.urandom(600 * 1024).hex().encode()[: 1024 * 1024 - 10]  # just under 1 MiB, printable
    assert big_exchange(p, "POST", "/v/putbody?k=big", big)[0] == 204
    if store == "redis":
        assert wait_for(lambda: r.command("STRLEN", redis_key("big")) == len(big), what="the large SET")
    s, got = big_exchange(p, "GET", "/v/getbody?k=big")
    assert s == 200 and got == big
    # over maxEntry: not stored anywhere, counted
    assert big_exchange(p, "POST", "/v/putbody?k=huge", big + b"x" * 100)[0] == 204
    time.sleep(0.2)
    assert big_exchange(p, "GET", "/v/getbody?k=huge")[1] == b"nil"
    if store == "redis":
        assert r.command("EXISTS", redis_key("huge")) == 0
    assert metrics(p)['portico_cache_skipped_total{store="%s"}' % store] >= 1


def test_lookup_waiting_for_a_slow_handshake_is_bounded_by_commandtimeout(portico, workdir):
    """A server that takes the TCP connection and never answers the TLS handshake: the connection
    stays pending until connectTimeout, but a lookup asked meanwhile misses at commandTimeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        pki = Pki(workdir)
        p = portico(value_config(cache={"redis": "rediss://127.0.0.1:%d" % silent.getsockname()[1],
                                        "tls": {"caFile": pki.ca}, "connectTimeout": "3s",
                                        "commandTimeout": "200ms"}, workers=1))
        t0 = time.time()
        assert vget(p, "k") == "(nil)"
        dt = time.time() - t0
        assert 0.15 <= dt < 1.0, "the lookup waited %.3f s" % dt
        assert metrics(p)['portico_cache_redis_errors_total{reason="timeout"}'] >= 1
    finally:
        silent.close()


def test_reload_without_redis_closes_the_connections(portico, redis_server):
    r = redis_server()
    cfg = value_config(cache={"redis": r.url}, workers=1)
    p = portico(cfg)
    vput(p, "k", "v")
    assert wait_for(lambda: vget(p, "k") == "v")

    def gateway_clients():
        return [line for line in r.command("CLIENT", "LIST").decode().splitlines() if "cmd=client" not in line]
    assert len(gateway_clients()) == 1
    assert p.reload(dict(cfg, cache={"memory": "1m"}))
    assert wait_for(lambda: not gateway_clients(), what="the worker's Redis connection closed")
    assert "portico_cache_redis_connections" not in metrics(p), "no Redis series without Redis"
    assert vget(p, "k") == "(nil)", "the internal store now"
