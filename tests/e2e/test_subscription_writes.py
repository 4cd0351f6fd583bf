"""Writes of subscriptions alone (a key regenerated, a subscription created,
its state changed) build only the subscriptions and the key table of the
next generation; everything else is shared with the generation they follow.
Checked here as a client and as an attacker: every change is served right
after its answer, old keys stop at once, a product's rate limit keeps
counting across such writes, the path alternates right with writes of other
kinds, refusals are the whole build's, and memory stays flat."""

import json
import os
import threading

import pytest

from conftest import wait_for
from mgmt_helpers import TOKEN, Mgmt, gateway_call, mgmt_config

FAST = "subscriptions only"


def sanitized():
    """An ASan build's RSS says nothing of leaks (its quarantine holds freed memory); LeakSanitizer
    checks them there, at the process's exit."""
    with open(os.environ.get("PORTICO_BIN", "portico"), "rb") as f:
        return b"__asan_init" in f.read()


def start(portico, backend):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


@pytest.fixture
def env(portico, backend):
    p, m = start(portico, backend)
    m.ok("PUT", "apis/echo2", {"displayName": "Echo", "path": "echo2", "serviceUrl": backend.url,
                               "subscriptionRequired": True})
    m.ok("PUT", "apis/echo2/operations/all", {"method": "*", "urlTemplate": "/*"})
    m.ok("PUT", "products/starter", {"displayName": "Starter", "subscriptionRequired": True,
                                     "state": "published"})
    m.ok("PUT", "products/starter/apis/echo2")
    m.ok("PUT", "users/u1", {"email": "u1@example.com", "firstName": "U", "lastName": "One"})
    return p, m


def applied(p, what="applied"):
    """The management changes applied (or refused) so far, in order: True for those built from the
    subscriptions alone."""
    return [FAST in line for line in p.log_text().splitlines() if "management change " + what in line]


def new_applied(p, before):
    wait_for(lambda: len(applied(p)) > before, what="the change's log line")
    return applied(p)[before:]


def test_key_regenerations_in_a_row_with_requests_in_flight(env, backend):
    p, m = env
    m.ok("PUT", "subscriptions/s1", {"scope": "/products/starter", "ownerId": "/users/u1", "state": "active"})
    keys = m.keys("s1")
    n_before = len(applied(p))
    # a client keeps calling with the secondary key (never regenerated) while the primary one changes
    stop = threading.Event()
    seen = {"ok": 0, "bad": []}

    def steady():
        while not stop.is_set():
            st, _, _ = gateway_call(p, "/echo2/steady", keys["secondaryKey"])
            if st == 200:
                seen["ok"] += 1
            else:
                seen["bad"].append(st)

    t = threading.Thread(target=steady)
    t.start()
    try:
        for i in range(25):
            old = m.keys("s1")["primaryKey"]
            assert m.call("POST", "subscriptions/s1/regeneratePrimaryKey")[0] == 204
            # the old key is refused right after the answer, the new one served
            assert gateway_call(p, "/echo2/old", old)[0] == 401
            new = m.keys("s1")["primaryKey"]
            assert new != old
            st, _, _ = gateway_call(p, "/echo2/new-%d" % i, new)
            assert st == 200
    finally:
        stop.set()
        t.join()
    assert seen["bad"] == [] and seen["ok"] > 0, seen
    # what the new keys were let through for reached the backend, what the old ones were refused for not
    targets = [r.target for r in list(backend.requests)]
    assert all("/new-%d" % i in targets for i in range(25))
    assert "/old" not in targets
    # every one of those writes took the subscriptions-only path
    paths = new_applied(p, n_before)
    assert len(paths) == 25 and all(paths), paths


def test_new_subscriptions_and_state_changes_are_served_at_once(env, backend):
    p, m = env
    m.ok("PUT", "subscriptions/first", {"scope": "/apis", "state": "active"})
    n_before = len(applied(p))
    for i in range(10):
        k1, k2 = ("%02d" % i) * 16, ("%02d" % (i + 50)) * 16
        m.ok("PUT", "subscriptions/n%d" % i, {"scope": "/products/starter", "ownerId": "/users/u1",
                                              "primaryKey": k1, "secondaryKey": k2, "state": "active"})
        assert gateway_call(p, "/echo2/n%d" % i, k1)[0] == 200
        assert backend.last().target == "/n%d" % i
    k = "05" * 16
    m.ok("PATCH", "subscriptions/n5", {"state": "suspended"})
    assert gateway_call(p, "/echo2/x", k)[0] == 401
    m.ok("PATCH", "subscriptions/n5", {"state": "active"})
    assert gateway_call(p, "/echo2/x", k)[0] == 200
    m.ok("PATCH", "subscriptions/n5", {"state": "cancelled"})
    assert gateway_call(p, "/echo2/x", k)[0] == 401
    assert gateway_call(p, "/echo2/x", "05" * 16 + "x")[0] == 401
    m.ok("DELETE", "subscriptions/n6")
    assert gateway_call(p, "/echo2/x", "06" * 16)[0] == 401
    assert gateway_call(p, "/echo2/x", "07" * 16)[0] == 200
    paths = new_applied(p, n_before)
    assert len(paths) == 14 and all(paths), paths


def test_many_subscriptions_each_written_alone_leave_the_others_served(env, backend):
    """Each write reads only the subscription it wrote; the others must still be served as they
    were: keys regenerated one after another, a subscription deleted and one created again under
    its id, a refused write (undone) in between, every change checked right after its answer."""
    p, m = env
    ids = ["m%02d" % i for i in range(0, 30, 3)]  # written out of order below, read in id order
    keys = {}
    for sid in reversed(ids):
        m.ok("PUT", "subscriptions/" + sid, {"scope": "/products/starter", "ownerId": "/users/u1",
                                             "state": "active"})
        keys[sid] = m.keys(sid)["primaryKey"]
    n_before = len(applied(p))

    def all_served(tag):
        for sid, k in keys.items():
            st, _, _ = gateway_call(p, "/echo2/%s-%s" % (tag, sid), k)
            assert st == 200, (tag, sid, st)
            assert backend.last().target == "/%s-%s" % (tag, sid)

    for round_ in range(3):
        for sid in ids[round_::3]:
            old = keys[sid]
            assert m.call("POST", "subscriptions/%s/regeneratePrimaryKey" % sid)[0] == 204
            keys[sid] = m.keys(sid)["primaryKey"]
            assert keys[sid] != old
            assert gateway_call(p, "/echo2/old", old)[0] == 401
            assert gateway_call(p, "/echo2/new-" + sid, keys[sid])[0] == 200
        all_served("r%d" % round_)
    gone = ids[4]
    gone_key = keys.pop(gone)
    m.ok("DELETE", "subscriptions/" + gone)
    assert gateway_call(p, "/echo2/gone", gone_key)[0] == 401
    # a refused write (a key another subscription holds): undone, and the next writes still patch
    dup = m.call("PUT", "subscriptions/m01", {"scope": "/apis", "state": "active",
                                               "primaryKey": keys[ids[0]]})
    assert dup[0] == 400, dup
    # the message is about the entity of the request: its place among the stored subscriptions
    # (m00 before it, subscriptions[1]) is taken off the path
    assert [(d["target"], d["message"]) for d in dup[2]["error"]["details"]] == [
        ("primaryKey", "subscription 'm01' › primaryKey: this key is already a key of subscription 'm00'")], dup
    assert m.call("GET", "subscriptions/m01")[0] == 404
    for sid in (ids[0], ids[-1]):  # the first and the last in id order
        assert m.call("POST", "subscriptions/%s/regeneratePrimaryKey" % sid)[0] == 204
        keys[sid] = m.keys(sid)["primaryKey"]
    m.ok("PUT", "subscriptions/" + gone, {"scope": "/products/starter", "ownerId": "/users/u1",
                                          "state": "active", "primaryKey": "9" * 32,
                                          "secondaryKey": "8" * 32})
    keys[gone] = "9" * 32
    assert gateway_call(p, "/echo2/gone", gone_key)[0] == 401
    all_served("end")
    targets = [r.target for r in list(backend.requests)]
    assert "/old" not in targets and "/gone" not in targets
    # the write right after the undone one builds in full (a rollback may have undone anything)
    paths = new_applied(p, n_before)
    assert paths == [True] * (len(ids) + 1) + [False, True, True], paths


def test_a_write_of_another_kind_between_builds_in_full(env, backend):
    p, m = env
    m.ok("PUT", "subscriptions/s1", {"scope": "/apis", "state": "active", "primaryKey": "a" * 32,
                                     "secondaryKey": "b" * 32})
    m.ok("POST", "subscriptions/s1/regenerateSecondaryKey")  # after a subscription write: shared
    n_before = len(applied(p))
    m.ok("POST", "subscriptions/s1/regenerateSecondaryKey")
    # an API's write in between: built in full, and served
    m.ok("PUT", "apis/other", {"displayName": "Other", "path": "other", "serviceUrl": backend.url,
                               "subscriptionRequired": True})
    m.ok("PUT", "apis/other/operations/all", {"method": "*", "urlTemplate": "/*"})
    assert gateway_call(p, "/other/x", "a" * 32)[0] == 200
    assert backend.last().target == "/x"
    # then subscriptions again: shared with the new full generation (the new API is there)
    m.ok("PUT", "subscriptions/s2", {"scope": "/apis/other", "state": "active", "primaryKey": "c" * 32,
                                     "secondaryKey": "d" * 32})
    assert gateway_call(p, "/other/y", "c" * 32)[0] == 200
    assert gateway_call(p, "/echo2/y", "c" * 32)[0] == 401  # scoped to the other API
    assert new_applied(p, n_before) == [True, False, False, True]
    # a reload builds in full too, and the next subscription write shares with its generation
    n_before = len(applied(p))
    p.reload()
    wait_for(lambda: "configuration reloaded" in p.log_text(), what="the reload")
    m.ok("POST", "subscriptions/s2/regeneratePrimaryKey")
    assert gateway_call(p, "/other/y", "c" * 32)[0] == 401
    assert gateway_call(p, "/other/y", m.keys("s2")["primaryKey"])[0] == 200
    assert new_applied(p, n_before) == [True]


def test_rate_limit_keeps_counting_across_subscription_writes(portico, backend):
    p, m = start(portico, backend)
    m.ok("PUT", "apis/echo2", {"displayName": "Echo", "path": "echo2", "serviceUrl": backend.url,
                               "subscriptionRequired": True})
    m.ok("PUT", "apis/echo2/operations/all", {"method": "*", "urlTemplate": "/*"})
    m.ok("PUT", "products/limited", {"displayName": "L", "subscriptionRequired": True, "state": "published"})
    m.ok("PUT", "products/limited/apis/echo2")
    m.ok("PUT", "products/limited/policies/policy",
         {"inbound": ["base", {"rate-limit": {"calls": 3, "renewal-period": 300}}]})
    m.ok("PUT", "subscriptions/s1", {"scope": "/products/limited", "state": "active", "primaryKey": "a" * 32,
                                     "secondaryKey": "b" * 32})
    assert [gateway_call(p, "/echo2/x", "a" * 32)[0] for _ in range(2)] == [200, 200]
    n_before = len(applied(p))
    # a subscription write of another subscription, then one of this one: the count goes on
    m.ok("PUT", "subscriptions/s2", {"scope": "/products/limited", "state": "active", "primaryKey": "c" * 32,
                                     "secondaryKey": "d" * 32})
    m.ok("POST", "subscriptions/s1/regeneratePrimaryKey")
    assert new_applied(p, n_before) == [True, True]
    assert [gateway_call(p, "/echo2/x", "b" * 32)[0] for _ in range(2)] == [200, 429]
    # the other subscription has its own count
    assert gateway_call(p, "/echo2/x", "c" * 32)[0] == 200
    # a write built in full does not reset it either (as before)
    m.ok("PUT", "apis/more", {"displayName": "M", "path": "more", "serviceUrl": backend.url})
    assert gateway_call(p, "/echo2/x", "b" * 32)[0] == 429


def test_refusals_are_the_whole_builds_and_leave_the_previous_generation(portico, backend):
    p, m = start(portico, backend)
    m.ok("PUT", "workspaces/w1", {"displayName": "W1"})
    m.ok("PUT", "workspaces/w2", {"displayName": "W2"})
    m.ok("PUT", "workspaces/w1/apis/a1", {"path": "a1", "serviceUrl": backend.url})
    m.ok("PUT", "workspaces/w1/apis/a1/operations/all", {"method": "*", "urlTemplate": "/*"})
    m.ok("PUT", "workspaces/w2/products/p2", {"displayName": "P2", "state": "published"})
    m.ok("PUT", "workspaces/w1/subscriptions/good", {"scope": "/apis/a1", "state": "active",
                                                    "primaryKey": "e" * 32, "secondaryKey": "f" * 32})
    assert gateway_call(p, "/a1/x", "e" * 32)[0] == 200
    bad = [
        ("workspaces/w1/subscriptions/cross", {"scope": "/products/p2", "state": "active"}),
        ("subscriptions/nobody", {"scope": "/apis/a1", "ownerId": "/users/ghost", "state": "active"}),
        ("subscriptions/dup", {"scope": "/apis/a1", "primaryKey": "e" * 32, "state": "active"}),
    ]
    for path, body in bad:
        # the first try follows a subscription write (shared path); the second follows the first's
        # rollback (full build): both refuse alike
        m.ok("PATCH", "workspaces/w1/subscriptions/good", {"displayName": "touched"})
        n_before, r_before = len(applied(p)), len(applied(p, "refused"))
        first = m.call("PUT", path, body)
        second = m.call("PUT", path, body)
        assert first[0] == 400 and second[0] == 400, (first, second)
        assert first[2] == second[2]
        assert len(applied(p)) == n_before
        wait_for(lambda: len(applied(p, "refused")) == r_before + 2, what="the refusals' log lines")
        assert applied(p, "refused")[r_before:] == [True, False]
        assert m.call("GET", path)[0] == 404  # the store is unchanged
        assert gateway_call(p, "/a1/x", "e" * 32)[0] == 200  # the previous generation serves
    msg = json.dumps(m.call("PUT", "workspaces/w1/subscriptions/cross",
                            {"scope": "/products/p2", "state": "active"})[2])
    assert "scope '/products/p2' is outside the workspace" in msg, msg


def test_rss_flat_across_two_thousand_subscription_writes(portico, backend):
    p, m = start(portico, backend)
    m.ok("PUT", "apis/echo2", {"displayName": "Echo", "path": "echo2", "serviceUrl": backend.url,
                               "subscriptionRequired": True})
    m.ok("PUT", "apis/echo2/operations/all", {"method": "*", "urlTemplate": "/*"})
    m.ok("PUT", "subscriptions/s1", {"scope": "/apis/echo2", "state": "active"})
    n_before = len(applied(p))

    def writes(n):
        for _ in range(n):
            assert m.call("POST", "subscriptions/s1/regeneratePrimaryKey")[0] == 204

    writes(200)  # warm-up: the allocator's arenas settle
    rss0 = p.rss_kb("VmRSS")
    writes(1800)
    rss1 = p.rss_kb("VmRSS")
    assert gateway_call(p, "/echo2/x", m.keys("s1")["primaryKey"])[0] == 200
    paths = new_applied(p, n_before)
    assert len(paths) == 2000 and all(paths)
    # measured: +0.2 MB.  A generation's own part kept per write (its pool: 16 kB and more) would add
    # about 30 MB; a body kept per write (router, pipelines, conf: far more) hundreds
    if not sanitized():
        assert rss1 - rss0 < 8 * 1024, (rss0, rss1)
