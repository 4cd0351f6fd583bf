"""Rate limits and quotas counted across nodes through Redis (counters.redis;
core/event/pt_counters.c and pt_counters_redis.c; docs/access-policies.md,
"Counting across nodes").

Three portico processes with the same file (each its own data folder and
port) against one redis-server the test starts: rate-limit, rate-limit-by-key
and quota-by-key under concurrent load from threads hitting all three hold
the limit within the documented bound (calls + nodes x 1); quotas survive
restarting every node, and what a run left unused (tokens a node held when
the load ended) is admitted after it, no more; Redis killed in the middle of a run fails no request,
moves the fallback metric, and what was counted meanwhile is merged into
Redis when it comes back (read with the test's own RESP client); Redis with a
password, with an ACL user, over TLS; a wrong password is a Redis that is
down (requests still served); the configuration's errors.
"""

import hashlib
import http.client
import os
import re
import threading
import time

import pytest

from conftest import Portico, basic_config, free_port, wait_for
from redis_helpers import needs_redis, redis_server  # noqa: F401
from tls_helpers import Pki

pytestmark = needs_redis

KEY = "a" * 32
NODES = 3
FIRST_PERIOD_START_MS = -62135596800000  # quota-by-key's default first-period-start, 0001-01-01T00:00:00Z


# ------------------------------------------------------------------ helpers


def node_config(backend, inbound, redis, data, product_inbound=None, **counters):
    cfg = basic_config(backend.url, workers=2)
    api = cfg["apis"][0]
    api["subscriptionRequired"] = True
    api["policies"] = {"inbound": ["base"] + inbound}
    cfg["products"] = [{"id": "p", "displayName": "P", "state": "published", "apis": ["echo"]}]
    if product_inbound:
        cfg["products"][0]["policies"] = {"inbound": ["base"] + product_inbound}
    cfg["subscriptions"] = [{"id": "s1", "scope": "/products/p", "primaryKey": KEY, "secondaryKey": "c" * 32,
                             "createdDate": "2026-01-01T00:00:00Z"}]
    cfg["data"] = data
    cfg["metrics"] = {"listen": "127.0.0.1:%d" % free_port(), "auth": "none"}
    if redis is not None:
        cfg["counters"] = dict({"redis": redis}, **counters)
    return cfg


class Cluster:
    """n portico processes with the same policies, each in its own folder, data and port."""

    def __init__(self, root, backend, inbound, redis, n=NODES, product_inbound=None, **counters):
        self.nodes = []
        for i in range(n):
            d = os.path.join(root, "node%d" % i)
            os.makedirs(d, exist_ok=True)
            cfg = node_config(backend, inbound, redis, os.path.join(d, "data"), product_inbound, **counters)
            self.nodes.append(Portico(d, cfg))

    def start(self, wait_up=True):
        for p in self.nodes:
            p.start()
        if wait_up:
            for p in self.nodes:
                assert wait_for(lambda: metrics(p).get("portico_counters_redis_up") == 1, timeout=10,
                                what="node connected to Redis"), p.log_text()[-2000:]
        return self

    def stop(self):
        rcs = []
        for p in self.nodes:
            rcs.append(p.stop())
        return rcs

    def check_logs(self):
        for p in self.nodes:
            t = p.log_text()
            assert "AddressSanitizer" not in t and "runtime error" not in t


@pytest.fixture
def cluster(workdir):
    made = []

    def make(*a, **kw):
        c = Cluster(workdir if not made else os.path.join(workdir, "c%d" % len(made)), *a, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        for p in c.nodes:
            if p.proc is not None and p.proc.poll() is None:
                assert p.stop() == 0, p.log_text()[-2000:]
            if p.proc is not None and p.proc.stderr:
                err = p.proc.stderr.read().decode(errors="replace")
                assert "AddressSanitizer" not in err and "runtime error:" not in err, err
                assert "LeakSanitizer" not in err, err
        c.check_logs()


def metrics(p):
    port = int(p.config["metrics"]["listen"].rsplit(":", 1)[1])
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        text = r.read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(portico_counters\w*)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def redis_key(name):
    """The documented key of a counter: the prefix and 32 hex digits of SHA-256 of its name."""
    return "portico:ctr:" + hashlib.sha256(name.encode()).hexdigest()[:32]


def redis_sum(r, key):
    """The count Redis holds for a counter: the sum of its slot (or period) fields."""
    vals = r.command("HVALS", key) or []
    return sum(int(v) for v in vals)


class Load:
    """Threads sending GETs to every node (keep-alive connections), recording each answer."""

    def __init__(self, nodes, per_node=4, headers=None, total=None, pause=0.0, path="/echo/items/1"):
        self.nodes = nodes
        self.per_node = per_node
        self.headers = dict({"Ocp-Apim-Subscription-Key": KEY}, **(headers or {}))
        self.total = total
        self.pause = pause
        self.path = path
        self.lock = threading.Lock()
        self.statuses = []
        self.errors = []
        self.stop_flag = threading.Event()
        self.threads = []

    def _next(self):
        with self.lock:
            if self.stop_flag.is_set() or (self.total is not None and len(self.statuses) >= self.total):
                return False
            self.statuses.append(None)
            return len(self.statuses) - 1

    def _run(self, p):
        conn = None
        for _ in range(100000):  # bounded: ends by total or stop()
            i = self._next()
            if i is False:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
                conn.request("GET", self.path, headers=self.headers)
                r = conn.getresponse()
                r.read()
                with self.lock:
                    self.statuses[i] = r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.statuses[i] = "error"
                    self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def start(self):
        for p in self.nodes:
            for _ in range(self.per_node):
                t = threading.Thread(target=self._run, args=(p,), daemon=True)
                t.start()
                self.threads.append(t)
        return self

    def join(self, timeout=120):
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "the load did not end"
        return self

    def stop(self):
        self.stop_flag.set()
        return self.join()

    def count(self, status):
        return sum(1 for s in self.statuses if s == status)


def assert_no_failure(load):
    bad = [s for s in load.statuses if s == "error" or (isinstance(s, int) and s >= 500) or s is None]
    assert not bad and not load.errors, (bad[:10], load.errors[:5])


# ------------------------------------------------------------ the bound


@pytest.mark.parametrize("policy", ["rate-limit", "rate-limit-by-key"])
def test_rate_limits_hold_across_three_nodes(backend, cluster, redis_server, policy):
    r = redis_server()
    if policy == "rate-limit":
        inbound = [{"rate-limit": {"calls": 100, "renewal-period": 60}}]
    else:
        inbound = [{"rate-limit-by-key": {"calls": 100, "renewal-period": 60,
                                          "counter-key": "@(context.request.headers['X-Client'])"}}]
    c = cluster(backend, inbound, r.url).start()
    backend.clear()
    load = Load(c.nodes, per_node=4, headers={"X-Client": "client-1"}, total=450).start().join()
    assert_no_failure(load)
    ok, refused = load.count(200), load.count(429)
    assert ok + refused == 450
    # the bound: calls + nodes x 1 (docs/access-policies.md); leases leave little unused
    assert 95 <= ok <= 100 + NODES, (ok, refused)
    # every node admitted some (the load reached all three) and synced with Redis
    for p in c.nodes:
        m = metrics(p)
        assert m["portico_counters_redis_syncs_total"] >= 1, m
        assert m["portico_counters_redis_up"] == 1
    # what Redis holds: the calls counted across nodes, refused ones included once the window is full
    keys = [k.decode() for k in r.command("KEYS", "portico:ctr:*")]
    assert len(keys) == 1, keys
    if policy == "rate-limit-by-key":
        assert keys[0] == redis_key("rlk|0|60|0|||client-1")
    # a call admitted on credit at the very end is pushed at the node's next turn
    assert wait_for(lambda: redis_sum(r, keys[0]) >= ok, timeout=5, what="every admitted call in Redis"), \
        (redis_sum(r, keys[0]), ok)
    assert 0 < r.command("PTTL", keys[0]) <= 63000
    with backend.lock:
        assert len(backend.requests) == ok  # refused calls never reached the backend
    # another client's key has a count of its own
    st = c.nodes[1].request("GET", "/echo/items/1", headers={"Ocp-Apim-Subscription-Key": KEY,
                                                              "X-Client": "client-2"})
    assert st[0] == (200 if policy == "rate-limit-by-key" else 429)


def test_quota_by_key_holds_and_survives_restarting_every_node(backend, cluster, redis_server):
    r = redis_server()
    inbound = [{"quota-by-key": {"calls": 100, "renewal-period": 3600,
                                 "counter-key": "@(context.request.headers['X-Client'])"}}]
    c = cluster(backend, inbound, r.url).start()
    load = Load(c.nodes, per_node=4, headers={"X-Client": "q"}, total=400).start().join()
    assert_no_failure(load)
    ok = load.count(200)
    # never past the bound; a node may still hold a few tokens when the load ends (used below)
    assert 1 <= ok <= 100 + NODES, (ok, load.count(403))
    assert load.count(200) + load.count(403) == 400
    keys = [k.decode() for k in r.command("KEYS", "portico:ctr:*")]
    assert len(keys) == 1
    ttl = r.command("PTTL", keys[0])
    assert 0 < ttl <= 3600 * 1000 + 60000, ttl  # the period's end (and a minute)
    assert_restarted_nodes_use_the_rest(c, r, keys[0], ok, 100, {"X-Client": "q"})


def test_stopping_nodes_give_their_tokens_back(backend, cluster, redis_server):
    """A quota's tokens a node holds would be out of reach until the period ends: a node that stops
    gives them back, so that Redis then holds exactly the calls admitted."""
    r = redis_server()
    inbound = [{"quota-by-key": {"calls": 100000, "renewal-period": 86400,
                                 "counter-key": "@(context.request.headers['X-Client'])"}}]
    c = cluster(backend, inbound, r.url).start()
    load = Load(c.nodes, per_node=3, headers={"X-Client": "back"}, total=300).start().join()
    assert_no_failure(load)
    assert load.count(200) == 300
    key = redis_key("qkc|0|86400|%d|||back" % FIRST_PERIOD_START_MS)
    held = redis_sum(r, key)
    assert held >= 300  # the calls, and the tokens the nodes hold ahead
    assert c.stop() == [0] * NODES
    assert redis_sum(r, key) == 300, (held, redis_sum(r, key))


def test_quota_per_subscription_survives_restarts(backend, cluster, redis_server):
    r = redis_server()
    c = cluster(backend, [], r.url, product_inbound=[{"quota": {"calls": 30, "renewal-period": 0}}]).start()
    load = Load(c.nodes, per_node=2, total=90).start().join()
    assert_no_failure(load)
    ok = load.count(200)
    assert 1 <= ok <= 30 + NODES, ok
    keys = [k.decode() for k in r.command("KEYS", "portico:ctr:*")]
    assert len(keys) == 1
    assert r.command("PTTL", keys[0]) == -1  # renewal-period 0: never renewed, never expires
    assert_restarted_nodes_use_the_rest(c, r, keys[0], ok, 30, {})


def assert_restarted_nodes_use_the_rest(c, r, key, ok, calls, headers):
    """Every node stopped (SIGINT) and started again: the quota is still spent, and only spent.

    A node may hold tokens it did not use when a fixed-size load ends (the other nodes' threads
    took the rest of the load while it waited for them): stopping gives them back, and the refusals
    past the limit were not added to the quota's count, so Redis then holds exactly the calls
    admitted and the restarted nodes admit what is left -- and at most the grace per node (one
    call before a node's first answer from Redis) beyond it."""
    assert c.stop() == [0] * NODES
    assert redis_sum(r, key) == ok, (redis_sum(r, key), ok)
    c.start()
    left = max(0, calls - ok)
    total = left + 60
    again = Load(c.nodes, per_node=1, headers=headers, total=total, pause=0.02).start().join()
    assert_no_failure(again)
    assert left <= again.count(200) <= left + NODES, (ok, again.statuses)
    assert again.count(200) + again.count(403) == total


# ------------------------------------------------------------ Redis down


def test_redis_killed_mid_run_fails_nothing_and_merges_back(backend, cluster, redis_server):
    r = redis_server()
    inbound = [{"rate-limit-by-key": {"calls": 100000, "renewal-period": 20,
                                      "counter-key": "@(context.request.headers['X-Client'])"}}]
    c = cluster(backend, inbound, r.url).start()
    load = Load(c.nodes, per_node=2, headers={"X-Client": "busy"}, pause=0.005).start()
    time.sleep(0.7)
    fb_before = [metrics(p)["portico_counters_redis_fallback_total"] for p in c.nodes]
    r.kill()
    r.proc.wait(5)
    for p in c.nodes:
        assert wait_for(lambda: metrics(p)["portico_counters_redis_up"] == 0, timeout=5, what="down seen")
    # while Redis is down: a key counted per node; 20 calls on each node
    for p in c.nodes:
        for _ in range(20):
            st = p.request("GET", "/echo/items/1", headers={"Ocp-Apim-Subscription-Key": KEY, "X-Client": "merged"})
            assert st[0] == 200, st
    for p, fb in zip(c.nodes, fb_before):
        m = metrics(p)
        assert m["portico_counters_redis_fallback_total"] >= fb + 20, m
        assert m["portico_counters_redis_failures_total"] >= 1
    time.sleep(0.3)
    r.start()
    for p in c.nodes:
        assert wait_for(lambda: metrics(p)["portico_counters_redis_up"] == 1, timeout=10, what="up again")
    time.sleep(0.5)
    load.stop()
    assert_no_failure(load)
    assert load.count(200) > 50
    # the counts made while down were pushed (INCRBY in the script) once Redis answered again
    key = redis_key("rlk|0|20|0|||merged")
    assert wait_for(lambda: redis_sum(r, key) == 3 * 20, timeout=5, what="merged counts"), redis_sum(r, key)
    for p in c.nodes:
        t = p.log_text()
        assert t.count("counting per node until it answers again") == 1, t[-3000:]
        assert t.count("rate limits and quotas count across nodes") == 2  # at start, and back


def test_redis_that_stops_answering_is_down_after_the_timeout(backend, cluster, redis_server):
    """CLIENT PAUSE: the connection stays open, no answer comes; past counters.timeout the node counts
    per node, and no request ever waits for Redis."""
    r = redis_server()
    c = cluster(backend, [{"rate-limit": {"calls": 1000, "renewal-period": 60}}], r.url, n=1,
                timeout="200ms").start()
    p = c.nodes[0]
    hdr = {"Ocp-Apim-Subscription-Key": KEY}
    assert p.request("GET", "/echo/items/1", headers=hdr)[0] == 200
    r.pause(2.5)
    t_pause = time.time()
    slowest = 0.0
    late = []
    for _ in range(1000):
        if time.time() > t_pause + 1.5:
            break
        t0 = time.monotonic()
        st = p.request("GET", "/echo/items/1", headers=hdr)[0]
        slowest = max(slowest, time.monotonic() - t0)
        # within the timeout, a node whose tokens ran out refuses (stricter); past it, it counts per node
        assert st == 200 or (st == 429 and time.time() - t_pause < 0.2 + 0.15), (st, time.time() - t_pause)
        if time.time() - t_pause > 0.5:
            late.append(st)
        time.sleep(0.01)
    assert late and set(late) == {200}
    assert slowest < 0.15, slowest  # the request path never waits for Redis
    m = metrics(p)
    assert m["portico_counters_redis_up"] == 0 and m["portico_counters_redis_fallback_total"] >= 1, m
    assert "no answer within counters.timeout" in p.log_text()
    assert wait_for(lambda: metrics(p)["portico_counters_redis_up"] == 1, timeout=10, what="up after the pause")


def test_redis_never_there_counts_per_node(backend, cluster, workdir):
    port = free_port()
    c = cluster(backend, [{"rate-limit": {"calls": 5, "renewal-period": 60}}], "redis://127.0.0.1:%d/0" % port,
                n=1).start(wait_up=False)
    p = c.nodes[0]
    got = [p.request("GET", "/echo/items/1", headers={"Ocp-Apim-Subscription-Key": KEY})[0] for _ in range(8)]
    assert got == [200] * 5 + [429] * 3  # the node's own count holds the limit
    m = metrics(p)
    assert m["portico_counters_redis_up"] == 0 and m["portico_counters_redis_fallback_total"] >= 8
    assert wait_for(lambda: "counting per node until it answers again" in p.log_text(), timeout=5)


def test_wrong_password_is_down_and_serves(backend, cluster, redis_server):
    r = redis_server(password="right")
    url = "redis://:wrong@127.0.0.1:%d/0" % r.port
    c = cluster(backend, [{"rate-limit": {"calls": 3, "renewal-period": 60}}], url, n=1).start(wait_up=False)
    p = c.nodes[0]
    assert wait_for(lambda: "AUTH refused" in p.log_text(), timeout=5, what="the AUTH refusal logged")
    got = [p.request("GET", "/echo/items/1", headers={"Ocp-Apim-Subscription-Key": KEY})[0] for _ in range(4)]
    assert got == [200, 200, 200, 429]
    assert r.command("KEYS", "portico:ctr:*") == []
    assert "wrong" not in p.log_text()  # the password is never logged


def test_a_key_of_another_type_counts_per_node(backend, cluster, redis_server):
    """Someone wrote a string under a counter's key: Redis refuses the script for it (WRONGTYPE), and
    that key counts per node (its limit held by each node) while the others count across nodes."""
    r = redis_server()
    inbound = [{"rate-limit-by-key": {"calls": 3, "renewal-period": 60,
                                      "counter-key": "@(context.request.headers['X-Client'])"}}]
    c = cluster(backend, inbound, r.url, n=1).start()
    p = c.nodes[0]
    r.command("SET", redis_key("rlk|0|60|0|||odd"), "not a hash")

    def get(client):
        return p.request("GET", "/echo/items/1", headers={"Ocp-Apim-Subscription-Key": KEY,
                                                          "X-Client": client})[0]
    assert get("odd") == 200  # the first call, before Redis's answer
    assert wait_for(lambda: "WRONGTYPE" in p.log_text(), timeout=5, what="the refusal logged")
    got = [get("odd") for _ in range(4)]
    assert got == [200, 200, 429, 429], got  # counted per node: the limit still holds
    syncs = metrics(p)["portico_counters_redis_syncs_total"]
    assert get("fine") == 200  # a key never synced: one call on credit until Redis first answers
    assert wait_for(lambda: metrics(p)["portico_counters_redis_syncs_total"] > syncs, timeout=5,
                    what="the first answer for the other key")
    assert [get("fine") for _ in range(3)] == [200, 200, 429]
    assert r.command("GET", redis_key("rlk|0|60|0|||odd")) == b"not a hash"  # never overwritten
    assert redis_sum(r, redis_key("rlk|0|60|0|||fine")) >= 3
    assert p.log_text().count("WRONGTYPE") == 1  # said once (at most every 30 s)


class HostileRedis:
    """A server that speaks just enough RESP to be taken for Redis, then answers the script with
    `answer` (bytes): lies, broken framing, huge lengths."""

    def __init__(self, answer):
        import socket as _s
        self.answer = answer
        self.sock = _s.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        for _ in range(100000):
            if self.stop.is_set():
                break
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn):
        conn.settimeout(5)
        buf = b""
        try:
            for _ in range(10000):
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                # one answer per command (each starts with '*'): SCRIPT LOAD gets a sha, the rest the lie
                while b"*" in buf and buf.count(b"\r\n") >= 1:
                    n = buf.count(b"*")
                    for _ in range(n):
                        conn.sendall(b"$40\r\n" + b"0" * 40 + b"\r\n" if b"LOAD" in buf else self.answer)
                    buf = b""
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("answer,said", [
    (b"$9\r\n1 2 3 4 x\r\n", "Redis answered a sync with"),      # not the script's five integers
    (b"$23\r\n999999 0 0 1000 0 0 0 0\r\n", "Redis answered a sync with"),  # too many
    (b"*2\r\n:1\r\n:2\r\n", "a broken answer"),                   # an array
    (b"$99999999999\r\n", "a broken answer"),                        # a length past anything
    (b":5\r\n", "Redis answered a sync with"),                      # an integer
])
def test_a_hostile_redis_never_fails_a_request(backend, cluster, answer, said):
    h = HostileRedis(answer)
    try:
        c = cluster(backend, [{"rate-limit": {"calls": 3, "renewal-period": 60}}],
                    "redis://127.0.0.1:%d/0" % h.port, n=1).start(wait_up=False)
        p = c.nodes[0]
        hdr = {"Ocp-Apim-Subscription-Key": KEY}
        assert p.request("GET", "/echo/items/1", headers=hdr)[0] == 200
        assert wait_for(lambda: said in p.log_text(), timeout=5, what=said), p.log_text()[-1500:]
        got = [p.request("GET", "/echo/items/1", headers=hdr)[0] for _ in range(4)]
        assert got == [200, 200, 429, 429], got  # counted per node: never more than the limit
        assert p.proc.poll() is None
    finally:
        h.close()


# ------------------------------------------------------ password, ACL, TLS


@pytest.mark.parametrize("auth", ["password", "acl-user"])
def test_password_and_acl_user(backend, cluster, redis_server, auth):
    if auth == "password":
        r = redis_server(password="s3cr:et")
        extra = {"password": "s3cr:et"}
        url = "redis://127.0.0.1:%d/2" % r.port
    else:
        r = redis_server(password="pw", username="gw")
        extra = {}
        url = r.url
    inbound = [{"rate-limit": {"calls": 20, "renewal-period": 60}}]
    c = cluster(backend, inbound, url, n=2, **extra).start()
    load = Load(c.nodes, per_node=2, total=60).start().join()
    assert_no_failure(load)
    assert 18 <= load.count(200) <= 22
    if auth == "password":
        assert r.command("SELECT", 2) == "OK"
        assert r.command("DBSIZE") == 0  # the test's connection is on db 0; the nodes wrote db 2
    else:
        assert len(r.command("KEYS", "portico:ctr:*")) == 1


def test_tls_with_the_test_ca(backend, cluster, redis_server, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("redis", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"))
    r = redis_server(tls=(cert, key, pki.ca))
    c = cluster(backend, [{"rate-limit": {"calls": 20, "renewal-period": 60}}], r.url, n=2,
                tls={"caFile": pki.ca}).start()
    load = Load(c.nodes, per_node=2, total=60).start().join()
    assert_no_failure(load)
    assert 18 <= load.count(200) <= 22
    assert len(r.command("KEYS", "portico:ctr:*")) == 1


def test_tls_untrusted_certificate_is_down(backend, cluster, redis_server, workdir):
    pki = Pki(workdir)
    cert, key = pki.leaf("redis", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"), issuer="other-ca")
    r = redis_server(tls=(cert, key, pki.other_ca))
    c = cluster(backend, [{"rate-limit": {"calls": 3, "renewal-period": 60}}], r.url, n=1,
                tls={"caFile": pki.ca}).start(wait_up=False)
    p = c.nodes[0]
    assert wait_for(lambda: "counting per node until it answers again" in p.log_text(), timeout=5)
    got = [p.request("GET", "/echo/items/1", headers={"Ocp-Apim-Subscription-Key": KEY})[0] for _ in range(4)]
    assert got == [200, 200, 200, 429]


# ------------------------------------------------------------ configuration


@pytest.mark.parametrize("counters,message", [
    ({"redis": "http://127.0.0.1:6379"}, "is not a Redis URL"),
    ({"redis": "redis://127.0.0.1:99999"}, "a port that is not 1-65535"),
    ({"redis": "redis://127.0.0.1:6379", "username": "u"}, "a Redis user name needs a password"),
    ({"password": "p"}, "a Redis password or user name without counters.redis"),
    ({"redis": "redis://127.0.0.1:6379", "tls": {"verify": False}}, "tls applies to a rediss:// URL"),
    ({"redis": "redis://127.0.0.1:6379", "syncInterval": "2ms"}, "duration out of range (5ms..1000ms)"),
    ({"redis": "redis://127.0.0.1:6379", "sync": 5}, "unknown key 'sync'"),
])
def test_configuration_errors(backend, workdir, counters, message):
    cfg = node_config(backend, [], None, os.path.join(workdir, "data"))
    cfg["counters"] = counters
    p = Portico(workdir, cfg)
    code, out = p.check()
    assert code != 0 and message in out, out
    assert "portico.yaml:" in out  # file:line:column


def test_limit_concurrency_stays_per_node(backend, cluster, redis_server):
    """limit-concurrency is a gauge of the node's own requests: nothing of it goes to Redis."""
    r = redis_server()
    inbound = [{"limit-concurrency": {"key": "k", "max-count": 5, "policies": [{"rate-limit": {
        "calls": 1000, "renewal-period": 60}}]}}]
    c = cluster(backend, inbound, r.url, n=1).start()
    st = c.nodes[0].request("GET", "/echo/items/1", headers={"Ocp-Apim-Subscription-Key": KEY})
    assert st[0] == 200
    assert wait_for(lambda: len(r.command("KEYS", "portico:ctr:*")) == 1, timeout=5)
    assert r.command("KEYS", "*") == r.command("KEYS", "portico:ctr:*")  # the rate limit's key alone
