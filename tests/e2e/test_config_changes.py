"""Changes of the configuration while it serves, as a client sees them: a
management write to one API leaves the other APIs' requests in flight and
their pooled backend connections alone, and reloads of the file interleaved
with a stream of management writes lose neither (every write served right
after its answer and still served after the reloads, every reload's change
served after it, no request of a client loop failed). docs/architecture.md,
"Configuration generations" and "The store and management writes"."""

import http.client
import threading
import time

from backends import EchoBackend
from conftest import wait_for
from mgmt_helpers import TOKEN, Mgmt, mgmt_config


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    return r.status


def test_a_change_to_one_api_leaves_the_others_in_flight_and_pooled(portico, backend):
    other = EchoBackend()  # API a's backend: echo's pool holds echo's connections alone
    try:
        p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
        m = Mgmt(p)
        m.ok("PUT", "apis/a", {"displayName": "A", "path": "a", "serviceUrl": other.url,
                                 "subscriptionRequired": False})
        m.ok("PUT", "apis/a/operations/all", {"method": "*", "urlTemplate": "/*"})
        assert p.request("GET", "/a/x")[0] == 200

        # a request to echo in flight (its backend answers after 1.5 s) on a connection of its own
        slow = {}

        def call_slow():
            slow["status"] = p.request("GET", "/echo/sleep/1500", timeout=20)[0]
            slow["ended"] = time.monotonic()
        t = threading.Thread(target=call_slow, daemon=True)
        t.start()
        assert wait_for(lambda: any(r.target.endswith("/sleep/1500") for r in list(backend.requests)),
                        what="the slow request at the backend")
        # another echo request on a keep-alive client connection: its backend connection goes idle
        # in the worker's pool
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        try:
            assert get(conn, "/echo/items/1") == 200
            pooled = backend.last().conn_id
            slow_conn = [r.conn_id for r in list(backend.requests) if r.target.endswith("/sleep/1500")][0]
            assert pooled != slow_conn

            # a's policy changes: a new generation
            m.ok("PUT", "apis/a/policies/policy",
                 {"inbound": ["base", {"set-header": {"name": "X-Changed", "value": "yes"}}]})
            written = time.monotonic()
            assert p.request("GET", "/a/y")[0] == 200
            assert other.last().header("X-Changed") == "yes"  # served right after the answer

            # echo's next request on the same client connection takes the same backend connection
            assert get(conn, "/echo/items/2") == 200
            last = backend.last()
            assert last.target.endswith("/items/2")
            assert last.conn_id == pooled, (last.conn_id, pooled)
            assert last.header("X-Changed") is None
            with backend.lock:
                assert backend.connections == 2  # the slow request's and the pooled one, no other
        finally:
            conn.close()
        # the request in flight during the change finished on its own generation
        t.join(20)
        assert not t.is_alive()
        assert slow["status"] == 200
        assert slow["ended"] > written, "the slow request ended before the change: the test proves nothing"
        assert p.proc.poll() is None
    finally:
        other.close()


def test_reloads_and_management_writes_interleaved_lose_nothing(portico, backend):
    cfg = mgmt_config(backend.url, workers=2)

    def file_value(v):
        cfg["apis"][0]["policies"] = {"inbound": ["base", {"set-header": {"name": "X-File", "value": v}}]}
        return cfg
    p = portico(file_value("v0"), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    stop = threading.Event()

    # a client loop on the file's API for the whole run
    load = {"ok": 0, "bad": []}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        for i in range(100000):  # bounded: ends with the run
            if stop.is_set():
                break
            try:
                st = get(conn, "/echo/items/%d" % i)
                if st == 200:
                    load["ok"] += 1
                else:
                    load["bad"].append(st)
            except (OSError, http.client.HTTPException) as e:
                load["bad"].append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        conn.close()

    # a stream of management writes: a new API each time, called right after the answers
    writes = {"done": 0, "bad": []}
    n_writes = 20

    def writer():
        for i in range(n_writes):
            api = "w%d" % i
            try:
                for method, path, body in (
                        ("PUT", "apis/" + api, {"displayName": api, "path": api, "serviceUrl": backend.url,
                                            "subscriptionRequired": False}),
                        ("PUT", "apis/%s/operations/all" % api, {"method": "*", "urlTemplate": "/*"})):
                    st, _, out = m.call(method, path, body)
                    if not 200 <= st < 300:
                        writes["bad"].append((path, st, out))
                st = p.request("GET", "/%s/x" % api)[0]
                if st != 200:
                    writes["bad"].append(("served", api, st))
            except (OSError, http.client.HTTPException) as e:
                writes["bad"].append((api, repr(e)))
            writes["done"] += 1
            time.sleep(0.15)  # a pipeline's pace: the reloads land among the writes

    threads = [threading.Thread(target=client, daemon=True), threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    reloads = 0
    try:
        for j in range(1, 7):
            # each reload lands among the writes: after one more write answered
            before = writes["done"]
            wait_for(lambda: writes["done"] > before or writes["done"] == n_writes, timeout=30,
                     what="one more management write")
            assert p.reload(file_value("v%d" % j), wait=0.0), p.log_text()[-2000:]
            reloads += 1
            backend.clear()
            # the reload's change is served at once
            assert p.request("GET", "/echo/items/r%d" % j)[0] == 200
            seen = [r for r in list(backend.requests) if r.target.endswith("/items/r%d" % j)]
            assert seen and seen[-1].header("X-File") == "v%d" % j
        writes_during_reloads = writes["done"]
        threads[1].join(60)
        assert not threads[1].is_alive()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert writes_during_reloads < n_writes, "the writes ended before the reloads: the test proves nothing"
    assert reloads == 6
    assert writes["bad"] == [], writes["bad"][:5]
    assert writes["done"] == n_writes
    # every written API is still in the store and served after the reloads (the file does not own them)
    names = {a["id"] for a in m.ok("GET", "apis")["value"]}
    for i in range(n_writes):
        assert "w%d" % i in names
        assert p.request("GET", "/w%d/z" % i)[0] == 200
    assert load["bad"] == [], load["bad"][:10]
    assert load["ok"] > 0
    assert "reload refused" not in p.log_text()
    assert p.proc.poll() is None


def test_a_reload_writes_only_what_changed_in_the_file(portico, backend):
    """The file applied again at a reload writes only the entities it changed: the others keep
    their ETags (and a subscription its keys made once), the changed one gets a new ETag and is
    served, and one the file stopped declaring is gone."""
    cfg = mgmt_config(backend.url)
    cfg["apis"].append({"id": "other", "path": "other", "displayName": "Other", "serviceUrl": backend.url,
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]})
    cfg["products"] = [{"id": "p", "displayName": "P", "state": "published", "apis": ["echo"]}]
    cfg["subscriptions"] = [{"id": "s1", "scope": "/products/p", "displayName": "S1"}]  # keys made once
    # a secret: sealed at rest, with a random nonce each time it is sealed
    cfg["namedValues"] = [{"id": "token", "displayName": "token", "value": "s3cr3t-value", "secret": True}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN, "PORTICO_SECRET_KEY": "k" * 32})
    m = Mgmt(p)

    def etags():
        out = {}
        for path in ("apis/echo", "apis/other", "apis/echo/operations/get-item", "products/p", "subscriptions/s1",
                     "namedValues/token"):
            st, hdrs, _ = m.call("GET", path)
            out[path] = hdrs.get("etag") if st == 200 else st
        return out
    first, keys = etags(), m.keys("s1")
    assert all(isinstance(v, str) and v for v in first.values()), first

    assert p.reload(cfg, wait=0.05)  # the same file
    assert etags() == first
    assert m.keys("s1") == keys
    assert m.ok("POST", "namedValues/token/listValue")["value"] == "s3cr3t-value"

    cfg["apis"][1]["displayName"] = "Other renamed"
    assert p.reload(cfg, wait=0.05)
    now = etags()
    assert now["apis/other"] != first["apis/other"]
    assert {k: v for k, v in now.items() if k != "apis/other"} == \
        {k: v for k, v in first.items() if k != "apis/other"}
    assert m.ok("GET", "apis/other")["displayName"] == "Other renamed"
    assert m.keys("s1") == keys
    assert p.request("GET", "/other/x")[0] == 200

    del cfg["apis"][1]
    assert p.reload(cfg, wait=0.05)
    assert m.call("GET", "apis/other")[0] == 404
    assert p.request("GET", "/other/x")[0] == 404
    assert {k: v for k, v in etags().items() if k != "apis/other"} == \
        {k: v for k, v in first.items() if k != "apis/other"}
    assert p.proc.poll() is None


def product_groups(m, pid):
    return sorted(g.get("id") or g.get("name") for g in m.ok("GET", "products/%s/groups" % pid)["value"])


def test_a_reload_keeps_the_product_links_to_groups_it_declares(portico, backend):
    """A group made through the management API that the file then declares (taken over from the
    API) keeps the file's product links to it; a built-in group the file stops declaring keeps the
    links the file still declares (it exists undeclared)."""
    cfg = mgmt_config(backend.url)
    cfg["products"] = [{"id": "p", "displayName": "P", "state": "published", "apis": ["echo"]}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "groups/g", {"displayName": "G"})
    cfg["products"][0]["groups"] = ["g", "developers"]
    assert p.reload(cfg, wait=0.05)
    assert product_groups(m, "p") == ["developers", "g"]
    # the file now declares g (and developers, with a description of its own)
    cfg["groups"] = [{"id": "g", "displayName": "G from the file"},
                     {"id": "developers", "displayName": "Developers", "description": "ours"}]
    assert p.reload(cfg, wait=0.05)
    assert m.ok("GET", "groups/g")["displayName"] == "G from the file"
    assert product_groups(m, "p") == ["developers", "g"]
    # developers no longer declared, still listed by the product
    cfg["groups"] = [cfg["groups"][0]]
    assert p.reload(cfg, wait=0.05)
    assert product_groups(m, "p") == ["developers", "g"]
    assert p.reload(cfg, wait=0.05)  # and the next one has nothing to put back
    assert product_groups(m, "p") == ["developers", "g"]
    assert "reload refused" not in p.log_text()
