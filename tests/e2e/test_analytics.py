"""Analytics: request records, their aggregation and the reports API
(docs/analytics.md), against the real binary.

A scripted mix of calls -- successes, 401s without a key, 429s from a
rate-limit policy, backend 500s and backend timeouts, a 404 from the
backend -- across two products, three subscriptions and two users must
come back as exactly those figures in every report, within the documented
flush bound, and stay exact across a reload, management writes and a
clean restart.  backendResponseCode is absent for refusals.  Bad input is
a 400 with a message; a workspace member sees only its workspace's APIs."""

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.parse

import pytest

from conftest import BIN, Portico, wait_for
from mgmt_helpers import TOKEN, Mgmt, mgmt_config

KEY_BOB = "b" * 32
KEY_ALICE_GOLD = "a" * 32
KEY_ALICE_SILVER = "c" * 32
FLUSH_BOUND = 2.0  # documented: a report lags by at most flushInterval (1 s) + 1 s


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def config(backend):
    cfg = mgmt_config(backend.url)
    cfg["upstream"] = {"readTimeout": "300ms"}
    cfg["apis"] = [
        {"id": "echo", "displayName": "Echo API", "path": "echo", "serviceUrl": backend.url,
         "subscriptionRequired": True,
         "operations": [{"id": "get-item", "displayName": "Get item", "method": "GET", "urlTemplate": "/items/{id}"},
                        {"id": "anything", "method": "*", "urlTemplate": "/*"}]},
        {"id": "other", "displayName": "Other API", "path": "other", "serviceUrl": backend.url,
         "subscriptionRequired": True, "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}]},
    ]
    cfg["users"] = [{"id": "alice", "email": "alice@example.com", "firstName": "Alice", "lastName": "Liddell"},
                    {"id": "bob", "email": "bob@example.com", "firstName": "Bob", "lastName": "Builder"}]
    cfg["products"] = [
        {"id": "gold", "displayName": "Gold", "state": "published", "apis": ["echo", "other"],
         "policies": {"inbound": ["base", {"rate-limit": {"calls": 3, "renewal-period": 300}}]}},
        {"id": "silver", "displayName": "Silver", "state": "published", "apis": ["echo"]},
    ]
    cfg["subscriptions"] = [
        {"id": "s-bob", "displayName": "Bob's", "scope": "/products/silver", "ownerId": "/users/bob",
         "primaryKey": KEY_BOB, "secondaryKey": "d" * 32},
        {"id": "s-alice-gold", "displayName": "Alice gold", "scope": "/products/gold", "ownerId": "/users/alice",
         "primaryKey": KEY_ALICE_GOLD, "secondaryKey": "e" * 32},
        {"id": "s-alice-silver", "displayName": "Alice silver", "scope": "/products/silver",
         "ownerId": "/users/alice", "primaryKey": KEY_ALICE_SILVER, "secondaryKey": "f" * 32},
    ]
    return cfg


def call(p, path, key=None):
    h = {"Ocp-Apim-Subscription-Key": key} if key else {}
    return p.request("GET", path, headers=h)[0]


def run_mix(p):
    """The scripted calls; returns the statuses in order."""
    got = []
    for _ in range(3):
        got.append(call(p, "/echo/items/1", KEY_BOB))
    got.append(call(p, "/echo/items/2?subscription-key=%s&x=1" % KEY_BOB))  # key in the query: redacted
    for _ in range(2):
        got.append(call(p, "/echo/status/500", KEY_BOB))
    got.append(call(p, "/echo/sleep/1500", KEY_BOB))  # backend timeout: 504
    for _ in range(5):
        got.append(call(p, "/other/x", KEY_ALICE_GOLD))  # 3 pass, then 429
    got.append(call(p, "/echo/status/404", KEY_ALICE_SILVER))
    for _ in range(3):
        got.append(call(p, "/echo/items/1"))  # no key: 401
    return got


EXPECTED_STATUSES = [200] * 4 + [500, 500, 504] + [200] * 3 + [429, 429] + [404] + [401] * 3


def report(m, name, since, extra="", token=None, base="", status=200):
    flt = urllib.parse.quote("timestamp ge %s" % iso(since) + extra)
    st, _, out = m.call("GET", "%sreports/%s?$filter=%s" % (base, name, flt), token=token)
    assert st == status, (name, st, out)
    return out


def report_q(m, name, query, token=None, base=""):
    return m.call("GET", "%sreports/%s?%s" % (base, name, query), token=token)


def by(rows, field):
    return {r[field]: r for r in rows}


def counts(r):
    return (r["callCountSuccess"], r["callCountBlocked"], r["callCountFailed"], r["callCountOther"],
            r["callCountTotal"])


def total_of(m, since, **kw):
    st, _, out = report_q(m, "byTime", "interval=PT1M&$filter=" + urllib.parse.quote("timestamp ge %s" % iso(since)),
                          **kw)
    assert st == 200, out
    return sum(r["callCountTotal"] for r in out["value"])


@pytest.fixture
def mixed(backend, portico):
    p = portico(config(backend), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.time() - 120
    got = run_mix(p)
    done = time.time()
    assert got == EXPECTED_STATUSES
    wait_for(lambda: total_of(m, since) == len(EXPECTED_STATUSES), timeout=FLUSH_BOUND + 3,
             what="every call in the reports")
    return p, m, since, done


def test_reports_show_exact_figures_within_the_flush_bound(backend, portico):
    p = portico(config(backend), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.time() - 120
    assert run_mix(p) == EXPECTED_STATUSES
    end = time.time()
    wait_for(lambda: total_of(m, since) == len(EXPECTED_STATUSES), timeout=FLUSH_BOUND + 3, what="the figures")
    # the documented bound (with a little slack for a loaded machine)
    assert time.time() - end < FLUSH_BOUND + 1.0

    apis = by(report(m, "byApi", since)["value"], "apiId")
    assert set(apis) == {"/apis/echo", "/apis/other"}
    assert counts(apis["/apis/echo"]) == (4, 3, 3, 1, 11)
    assert counts(apis["/apis/other"]) == (3, 2, 0, 0, 5)
    assert apis["/apis/echo"]["name"] == "Echo API"
    e = apis["/apis/echo"]
    assert e["bandwidth"] > 0 and e["cacheHitCount"] == 0 and e["cacheMissCount"] == 0
    assert 0 < e["apiTimeMin"] <= e["apiTimeAvg"] <= e["apiTimeMax"]
    assert e["apiTimeMax"] >= 250  # the backend timeout waited 300 ms
    assert 0 < e["serviceTimeMin"] <= e["serviceTimeAvg"] <= e["serviceTimeMax"]

    ops = by(report(m, "byOperation", since)["value"], "operationId")
    assert counts(ops["/apis/echo/operations/get-item"]) == (4, 3, 0, 0, 7)
    assert counts(ops["/apis/echo/operations/anything"]) == (0, 0, 3, 1, 4)
    assert counts(ops["/apis/other/operations/any"]) == (3, 2, 0, 0, 5)
    assert ops["/apis/echo/operations/get-item"]["name"] == "Get item"
    assert ops["/apis/echo/operations/get-item"]["apiId"] == "/apis/echo"

    prods = by(report(m, "byProduct", since)["value"], "productId")
    assert set(prods) == {"/products/gold", "/products/silver"}  # the 401s had no product
    assert counts(prods["/products/silver"]) == (4, 0, 3, 1, 8)
    assert counts(prods["/products/gold"]) == (3, 2, 0, 0, 5)
    assert prods["/products/gold"]["name"] == "Gold"

    subs = by(report(m, "bySubscription", since)["value"], "subscriptionId")
    assert counts(subs["/subscriptions/s-bob"]) == (4, 0, 3, 0, 7)
    assert counts(subs["/subscriptions/s-alice-gold"]) == (3, 2, 0, 0, 5)
    assert counts(subs["/subscriptions/s-alice-silver"]) == (0, 0, 0, 1, 1)
    assert subs["/subscriptions/s-bob"]["userId"] == "/users/bob"
    assert subs["/subscriptions/s-bob"]["productId"] == "/products/silver"
    assert subs["/subscriptions/s-bob"]["name"] == "Bob's"

    users = by(report(m, "byUser", since)["value"], "userId")
    assert counts(users["/users/alice"]) == (3, 2, 0, 1, 6)
    assert counts(users["/users/bob"]) == (4, 0, 3, 0, 7)
    assert users["/users/alice"]["name"] == "Alice Liddell"

    # byTime: minute buckets add up; one day holds everything (unless midnight passed during the test)
    st, _, out = report_q(m, "byTime", "interval=PT1M&$filter=" + urllib.parse.quote("timestamp ge %s" % iso(since)))
    assert st == 200 and all(r["interval"] == "PT1M" for r in out["value"])
    assert sum(r["callCountTotal"] for r in out["value"]) == 16
    assert sum(r["callCountBlocked"] for r in out["value"]) == 5
    for r in out["value"]:
        assert r["timestamp"].endswith(":00Z")
    st, _, out = report_q(m, "byTime", "interval=P1D&$filter=" + urllib.parse.quote("timestamp ge %s" % iso(since)))
    assert st == 200 and 1 <= len(out["value"]) <= 2 and sum(r["callCountTotal"] for r in out["value"]) == 16
    assert all(r["timestamp"].endswith("T00:00:00Z") for r in out["value"])


def test_by_request_records_and_backend_response_code(mixed):
    p, m, since, _ = mixed
    out = report(m, "byRequest", since)
    recs = out["value"]
    assert out["count"] == 16 and len(recs) == 16
    times = [r["timestamp"] for r in recs]
    assert times == sorted(times, reverse=True)  # newest first
    refused = [r for r in recs if r["responseCode"] in (401, 429)]
    assert len(refused) == 5
    for r in refused:
        assert "backendResponseCode" not in r, r  # no backend was called
        assert r["serviceTime"] == 0
    timeout = [r for r in recs if r["responseCode"] == 504]
    assert len(timeout) == 1 and "backendResponseCode" not in timeout[0]
    assert timeout[0]["lastErrorReason"] == "Timeout" or timeout[0]["lastErrorReason"]
    failed = [r for r in recs if r["responseCode"] == 500]
    assert len(failed) == 2 and all(r["backendResponseCode"] == 500 for r in failed)
    ok = [r for r in recs if r["responseCode"] == 200 and r["apiId"] == "/apis/echo"]
    assert len(ok) == 4
    for r in ok:
        assert r["backendResponseCode"] == 200 and r["method"] == "GET" and r["ipAddress"] == "127.0.0.1"
        assert r["subscriptionId"] == "/subscriptions/s-bob" and r["userId"] == "/users/bob"
        assert r["productId"] == "/products/silver" and r["operationId"] == "/apis/echo/operations/get-item"
        assert r["cache"] == "none" and r["requestSize"] > 0 and r["responseSize"] > 0
        assert len(r["requestId"]) == 36 and r["apiTime"] > 0
    urls = [r["url"] for r in recs]
    assert "/echo/items/2?subscription-key=REDACTED&x=1" in urls
    assert not any(KEY_BOB in json.dumps(r) for r in recs)
    nokey = [r for r in recs if r["responseCode"] == 401]
    assert all("subscriptionId" not in r and r["apiId"] == "/apis/echo" for r in nokey)
    # the access log says the same: no backendStatus for the refusals
    for e in p.access_entries():
        if e["status"] in (401, 429, 504):
            assert "backendStatus" not in e, e
        assert e["cache"] == "none"
    # paging and ordering
    st, _, page = report_q(m, "byRequest", "$top=5&$skip=5&$orderby=timestamp%20asc&$filter=" +
                           urllib.parse.quote("timestamp ge %s" % iso(since)))
    assert st == 200 and page["count"] == 16 and len(page["value"]) == 5 and page["nextLink"]
    asc = report_q(m, "byRequest", "$top=100&$orderby=timestamp%20asc&$filter=" +
                   urllib.parse.quote("timestamp ge %s" % iso(since)))[2]["value"]
    assert [r["requestId"] for r in asc[5:10]] == [r["requestId"] for r in page["value"]]
    # filters
    bob = report(m, "byRequest", since, " and userId eq '/users/bob'")["value"]
    assert len(bob) == 7 and all(r["userId"] == "/users/bob" for r in bob)


def test_filters_orderby_and_paging(mixed):
    p, m, since, _ = mixed
    only = report(m, "byApi", since, " and apiId eq 'other'")["value"]
    assert [r["apiId"] for r in only] == ["/apis/other"]
    only = report(m, "byApi", since, " and apiId eq '/apis/other'")["value"]
    assert [r["apiId"] for r in only] == ["/apis/other"]
    gold = report(m, "byOperation", since, " and productId eq '/products/gold'")["value"]
    assert {r["operationId"]: r["callCountTotal"] for r in gold} == {"/apis/other/operations/any": 5}
    bob = report(m, "byOperation", since, " and userId eq 'bob'")["value"]
    assert {r["operationId"]: r["callCountTotal"] for r in bob} == {
        "/apis/echo/operations/get-item": 4, "/apis/echo/operations/anything": 3}
    one = report(m, "byApi", since, " and operationId eq '/apis/echo/operations/anything'")["value"]
    assert [(r["apiId"], r["callCountTotal"]) for r in one] == [("/apis/echo", 4)]
    sub = report(m, "byUser", since, " and subscriptionId eq 's-alice-gold'")["value"]
    assert [(r["userId"], r["callCountTotal"]) for r in sub] == [("/users/alice", 5)]
    # an upper bound before the calls: nothing
    assert report(m, "byApi", since, " and timestamp le %s" % iso(since + 1))["value"] == []
    # $orderby, $top, $skip, nextLink
    flt = urllib.parse.quote("timestamp ge %s" % iso(since))
    st, _, out = report_q(m, "byOperation", "$orderby=callCountTotal%20desc&$filter=" + flt)
    assert st == 200 and [r["callCountTotal"] for r in out["value"]] == [7, 5, 4]
    st, _, out = report_q(m, "byOperation", "$orderby=callCountTotal%20asc&$top=1&$skip=1&$filter=" + flt)
    assert st == 200 and [r["callCountTotal"] for r in out["value"]] == [5]
    assert out["count"] == 3 and "$skip=2" in out["nextLink"] and "$orderby=" in out["nextLink"]
    st, _, out = report_q(m, "byUser", "$orderby=name&$filter=" + flt)
    assert [r["name"] for r in out["value"]] == ["Alice Liddell", "Bob Builder"]
    # APIM's datetime'...' literal
    st, _, out = report_q(m, "byApi", "$filter=" + urllib.parse.quote("timestamp ge datetime'%s'" % iso(since)))
    assert st == 200 and len(out["value"]) == 2


@pytest.mark.parametrize("query,fragment", [
    ("", "timestamp ge"),  # the lower bound is required
    ("$filter=" + urllib.parse.quote("apiId eq 'echo'"), "timestamp ge"),
    ("$filter=" + urllib.parse.quote("timestamp ge 2026-13-45T00:00:00Z"), "ISO 8601"),
    ("$filter=" + urllib.parse.quote("timestamp eq 2026-01-01T00:00:00Z"), "ISO 8601"),
    ("$filter=" + urllib.parse.quote("timestamp ge 2000-01-01T00:00:00Z"), "longer than the retention"),
    ("$filter=" + urllib.parse.quote("name eq 'x' and timestamp ge 2026-01-01T00:00:00Z"), "not a condition"),
    ("$filter=" + urllib.parse.quote("timestamp ge"), "not understood"),
    ("$filter=" + urllib.parse.quote("apiId ne 'x'"), "not a condition"),
])
def test_bad_filters_are_400(backend, portico, query, fragment):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    st, h, out = report_q(m, "byApi", query)
    assert st == 400, out
    assert h["content-type"].startswith("application/json")
    assert fragment in out["error"]["message"], out


def test_bad_reports_intervals_and_paging_are_400(backend, portico):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    flt = "$filter=" + urllib.parse.quote("timestamp ge %s" % iso(time.time() - 3600))
    st, _, out = report_q(m, "byNothing", flt)
    assert st == 400 and out["error"]["code"] == "UnknownReport"
    for iv in ("PT90S", "P1M", "PT0M", "15m", "PT", "P1Y", ""):
        st, _, out = report_q(m, "byTime", "interval=%s&%s" % (iv, flt))
        assert st == 400 and "interval" in out["error"]["message"], (iv, out)
    st, _, out = report_q(m, "byTime", flt)
    assert st == 400 and "interval" in out["error"]["message"]
    for iv in ("PT15M", "PT1H", "P1D", "PT120S", "P1DT1H"):
        st, _, out = report_q(m, "byTime", "interval=%s&%s" % (iv, flt))
        assert st == 200, (iv, out)
    # too many buckets: 80 days by the minute
    far = "$filter=" + urllib.parse.quote("timestamp ge %s" % iso(time.time() - 80 * 86400))
    st, _, out = report_q(m, "byTime", "interval=PT1M&" + far)
    assert st == 400 and "intervals" in out["error"]["message"]
    st, _, out = report_q(m, "byTime", "interval=P1D&" + far)
    assert st == 200
    for q in ("$top=0", "$top=1001", "$skip=-1", "$top=x", "$orderby=nosuch", "$orderby=name%20sideways"):
        st, _, out = report_q(m, "byApi", q + "&" + flt)
        assert st == 400, (q, out)
    st, _, out = report_q(m, "byRequest", "$orderby=callCountTotal&" + flt)
    assert st == 400


def api_total(m, since, api, **kw):
    out = report(m, "byApi", since, " and apiId eq '%s'" % api, **kw)["value"]
    return out[0]["callCountTotal"] if out else 0


def test_counts_survive_reload_management_writes_and_a_clean_restart(backend, portico, workdir):
    cfg = config(backend)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.time() - 120
    n = 0
    for _ in range(10):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
        n += 1
    cfg["apis"][0]["displayName"] = "Echo renamed"
    assert p.reload(cfg)
    for _ in range(10):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
        n += 1
    m.ok("PUT", "products/bronze", {"displayName": "Bronze", "state": "published"})
    for i in range(10):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
        n += 1
        if i == 4:
            m.ok("PATCH", "products/bronze", {"description": "changed"})
    wait_for(lambda: api_total(m, since, "echo") == n, timeout=FLUSH_BOUND + 3, what="the calls in the report")
    assert report(m, "byApi", since)["value"][0]["name"] == "Echo renamed"  # names are the current ones
    # calls just before SIGTERM (inside the flush window) are written at stop
    for _ in range(7):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
        n += 1
    p.send_signal(signal.SIGTERM)
    assert p.proc.wait(timeout=15) == 0
    p2 = Portico(workdir, cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN}).start()
    try:
        m2 = Mgmt(p2)
        assert api_total(m2, since, "echo") == n  # at once: nothing waits for a flush after a restart
        out = report(m2, "byRequest", since)
        assert out["count"] == n
        for _ in range(3):
            assert call(p2, "/echo/items/1", KEY_BOB) == 200
        wait_for(lambda: api_total(m2, since, "echo") == n + 3, timeout=FLUSH_BOUND + 3, what="the new calls")
    finally:
        p2.stop()


def test_a_crash_loses_at_most_the_flush_window(backend, portico, workdir):
    """kill -9: what was flushed (everything older than the documented bound) survives; calls made in
    the last window may be lost, never counted twice."""
    cfg = config(backend)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.time() - 120
    for _ in range(12):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
    wait_for(lambda: api_total(m, since, "echo") == 12, timeout=FLUSH_BOUND + 3, what="the flush")
    for _ in range(5):  # inside the window: may be lost
        assert call(p, "/echo/items/1", KEY_BOB) == 200
    p.send_signal(signal.SIGKILL)
    p.proc.wait(timeout=15)
    p2 = Portico(workdir, cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN}).start()
    try:
        m2 = Mgmt(p2)
        got = api_total(m2, since, "echo")
        assert 12 <= got <= 17, got
        assert report(m2, "byRequest", since)["count"] == got  # the records agree with the aggregates
    finally:
        p2.stop()


def test_analytics_off_records_nothing(backend, portico):
    cfg = config(backend)
    cfg["analytics"] = {"enabled": False}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.time() - 120
    for _ in range(3):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
    # on again by a reload: counted from then on
    cfg["analytics"] = {"enabled": True, "flushInterval": "200ms"}
    assert p.reload(cfg)
    for _ in range(2):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
    wait_for(lambda: api_total(m, since, "echo") == 2, timeout=FLUSH_BOUND + 3, what="the calls after the reload")
    time.sleep(0.5)  # the three calls made while off never come: nothing is left to flush
    assert api_total(m, since, "echo") == 2


def test_request_ring_is_bounded_by_count(backend, portico):
    cfg = config(backend)
    cfg["analytics"] = {"requests": {"maxCount": 5}, "flushInterval": "200ms"}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.time() - 120
    for _ in range(12):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
    wait_for(lambda: api_total(m, since, "echo") == 12, timeout=FLUSH_BOUND + 3, what="the aggregates")
    wait_for(lambda: report(m, "byRequest", since)["count"] == 5, timeout=FLUSH_BOUND + 3,
             what="the ring trimmed to maxCount")


def test_request_records_per_second_are_bounded(backend, portico):
    """Past maxPerSecond in a second, requests count in the aggregates but get no record; /metrics
    counts them.  The calls may straddle a second boundary: at most two seconds' budgets are kept."""
    cfg = config(backend)
    cfg["analytics"] = {"requests": {"maxPerSecond": 4}, "flushInterval": "200ms"}
    cfg["metrics"] = {"auth": "none"}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.time() - 120
    for _ in range(30):
        assert call(p, "/echo/items/1", KEY_BOB) == 200
    wait_for(lambda: api_total(m, since, "echo") == 30, timeout=FLUSH_BOUND + 3, what="the aggregates")
    kept = report(m, "byRequest", since)["count"]
    assert 4 <= kept <= 8, kept
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
    c.request("GET", "/metrics")
    page = c.getresponse().read().decode()
    c.close()
    line = [x for x in page.splitlines() if x.startswith("portico_analytics_unsampled_total ")]
    assert line and float(line[0].split()[1]) == 30 - kept, line


def test_bad_analytics_configuration_points_at_the_line(backend, workdir):
    cfg = mgmt_config(backend.url)
    p = Portico(workdir, cfg)
    text = open(p.config_path).read() + "analytics:\n  retention: 3x\n  flushInterval: 5ms\n"
    with open(p.config_path, "w") as f:
        f.write(text)
    r = subprocess.run([BIN, "-t", "-c", p.config_path], capture_output=True, timeout=30)
    err = (r.stdout + r.stderr).decode()
    assert r.returncode != 0
    assert "portico.yaml:%d:14" % (text.count("\n") - 1) in err and "duration" in err, err
    assert "flushInterval" in err or "out of range" in err, err


# ------------------------------------------------------------- workspaces


@pytest.fixture
def workspaces(backend, portico):
    cfg = mgmt_config(backend.url)
    cfg["apis"][0]["subscriptionRequired"] = False
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    for ws, api in (("wsa", "aapi"), ("wsb", "bapi")):
        m.ok("PUT", "workspaces/" + ws, {"displayName": ws})
        m.ok("PUT", "workspaces/%s/apis/%s" % (ws, api), {"path": api, "serviceUrl": backend.url,
                                                          "subscriptionRequired": False})
        m.ok("PUT", "workspaces/%s/apis/%s/operations/op" % (ws, api), {"method": "GET", "urlTemplate": "/x"})
    tok = {r: m.ok("PUT", "tokens/t-" + r, {"role": r, "workspace": "wsa"})["token"]
           for r in ("workspaceReader", "apiDeveloper", "workspaceContributor")}
    tok["reader"] = m.ok("PUT", "tokens/t-reader", {"role": "reader"})["token"]
    since = time.time() - 120
    for path, n in (("/aapi/x", 2), ("/bapi/x", 3), ("/echo/items/1", 4)):
        for _ in range(n):
            assert p.request("GET", path)[0] == 200
    wait_for(lambda: total_of(m, since) == 9, timeout=FLUSH_BOUND + 3, what="the calls")
    return p, m, tok, since


def test_a_workspace_member_sees_only_its_workspace(workspaces):
    p, m, tok, since = workspaces
    base = "workspaces/wsa/"
    for role in ("workspaceReader", "apiDeveloper", "workspaceContributor"):
        t = tok[role]
        rows = report(m, "byApi", since, token=t, base=base)["value"]
        assert [(r["apiId"], r["callCountTotal"]) for r in rows] == [("/apis/aapi", 2)], role
        # asking for another workspace's API, or the service's, by filter: nothing
        assert report(m, "byApi", since, " and apiId eq 'bapi'", token=t, base=base)["value"] == []
        assert report(m, "byOperation", since, " and apiId eq '/apis/echo'", token=t, base=base)["value"] == []
        reqs = report(m, "byRequest", since, token=t, base=base)
        assert reqs["count"] == 2 and {r["apiId"] for r in reqs["value"]} == {"/apis/aapi"}
        st, _, out = report_q(m, "byTime", "interval=PT1H&$filter=" +
                              urllib.parse.quote("timestamp ge %s" % iso(since)), token=t, base=base)
        assert st == 200 and sum(r["callCountTotal"] for r in out["value"]) == 2
        # the global path and another workspace's path are refused
        for path in ("reports/byApi", "workspaces/wsb/reports/byApi", "reports/byRequest",
                     "workspaces/wsb/reports/byTime"):
            st, _, out = m.call("GET", path + "?interval=PT1M&$filter=" +
                                urllib.parse.quote("timestamp ge %s" % iso(since)), token=t)
            assert st == 403, (role, path, st, out)
    # the service's reader sees everything, and a workspace's share through its path
    rows = report(m, "byApi", since, token=tok["reader"])["value"]
    assert {r["apiId"]: r["callCountTotal"] for r in rows} == {"/apis/aapi": 2, "/apis/bapi": 3, "/apis/echo": 4}
    rows = report(m, "byApi", since, token=tok["reader"], base="workspaces/wsb/")["value"]
    assert [r["apiId"] for r in rows] == ["/apis/bapi"]
    # no token: 401
    st, _, _ = m.call("GET", "reports/byApi", token="")
    assert st == 401


def test_a_workspace_report_names_no_service_level_user(workspaces):
    """The figures of a workspace's API may come from a service-level user's subscription: the
    workspace's roles see that user's id (what the figures are about), never the user's name."""
    p, m, tok, since = workspaces
    m.ok("PUT", "users/victim", {"email": "victim@example.com", "firstName": "Secret", "lastName": "Person"})
    key = "e" * 32
    m.ok("PUT", "workspaces/wsa/subscriptions/vs", {"scope": "/apis/aapi", "ownerId": "/users/victim",
                                                   "state": "active", "primaryKey": key, "secondaryKey": "f" * 32})
    assert p.request("GET", "/aapi/x", headers={"Ocp-Apim-Subscription-Key": key})[0] == 200
    wait_for(lambda: total_of(m, since) == 10, timeout=FLUSH_BOUND + 3, what="the call")
    rows = report(m, "byUser", since, token=tok["workspaceReader"], base="workspaces/wsa/")["value"]
    (row,) = [r for r in rows if r.get("userId") == "/users/victim"]
    assert row["name"] == "victim" and "Secret" not in json.dumps(rows), rows
    # the workspace's own subscription keeps its name; the service's reader sees the user's
    rows = report(m, "byUser", since, token=tok["reader"])["value"]
    assert [r["name"] for r in rows if r.get("userId") == "/users/victim"] == ["Secret Person"]


# -------------------------------------------------------------------- CLI


def test_cli_report_prints_a_table(mixed):
    p, m, since, _ = mixed
    env = dict(os.environ, PORTICO_URL=m.url, PORTICO_ADMIN_TOKEN=TOKEN)
    r = subprocess.run([BIN, "report", "by-api", "--since", "1h", "-o", "table"], capture_output=True, timeout=30, env=env)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ID", "TOTAL"], out
    assert {line.index("/apis/") for line in lines[1:]} == {lines[0].index("ID")}, out
    echo = [line for line in lines if "/apis/echo" in line]
    assert len(echo) == 1 and echo[0][lines[0].index("TOTAL"):].split()[:5] == ["11", "4", "3", "3", "1"], out
    r = subprocess.run([BIN, "report", "by-user", "--since", "1h", "--json"], capture_output=True, timeout=30,
                       env=env)
    doc = json.loads(r.stdout)
    assert {u["userId"]: u["callCountTotal"] for u in doc["value"]} == {"/users/alice": 6, "/users/bob": 7}
    r = subprocess.run([BIN, "report", "by-time", "--since", "1h", "--interval", "15m", "-o", "table"], capture_output=True,
                       timeout=30, env=env)
    assert r.returncode == 0 and "TIMESTAMP" in r.stdout.decode()
    total = sum(int(line.split()[1]) for line in r.stdout.decode().splitlines()[1:] if line.strip())
    assert total == 16
    r = subprocess.run([BIN, "report", "by-request", "--since", "1h", "--api", "other", "--top", "2", "-o", "table"],
                       capture_output=True, timeout=30, env=env)
    rows = [line for line in r.stdout.decode().splitlines()[1:] if line.strip()]
    assert r.returncode == 0 and len(rows) == 2 and all("/other/x" in line for line in rows), r.stdout
    r = subprocess.run([BIN, "report", "by-product", "--since", "1h", "--product", "gold", "-o", "table"], capture_output=True,
                       timeout=30, env=env)
    assert r.returncode == 0 and "Gold" in r.stdout.decode() and "Silver" not in r.stdout.decode()
    r = subprocess.run([BIN, "report", "by-nothing", "--since", "1h"], capture_output=True, timeout=30, env=env)
    assert r.returncode != 0 and "by-api" in r.stderr.decode()
    r = subprocess.run([BIN, "report", "by-time", "--since", "1h", "--interval", "90s"], capture_output=True,
                       timeout=30, env=env)
    assert r.returncode != 0 and "interval" in r.stderr.decode()


def test_no_backend_status_for_a_refusal_after_a_retried_backend_call(backend, portico):
    """A retry whose second attempt refuses without calling the backend
    (a fallback answer): the first attempt's 500 is not that response's
    backend status, in the access log nor in the request record."""
    cfg = config(backend)
    cfg["apis"][0]["operations"].insert(0, {
        "id": "fallback", "method": "GET", "urlTemplate": "/status/{code}",
        "policies": {"backend": [{"retry": {
            "condition": "@(context.response.statusCode == 500)", "count": 1, "interval": 0,
            "policies": [
                {"choose": [{"when": "@(context.variables.tried == 'yes')",
                             "then": [{"return-response": {"set-status": {"code": 429}}}]}]},
                {"set-variable": {"name": "tried", "value": "yes"}},
                {"forward-request": {}}]}}]}})
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    since = time.time() - 120
    assert call(p, "/echo/status/500", KEY_BOB) == 429
    assert len(backend.requests) == 1  # the first attempt reached it, the second did not
    line = p.access_entries(wait_for=1)[-1]
    assert line["status"] == 429 and "backendStatus" not in line, line
    wait_for(lambda: report(m, "byRequest", since)["count"] == 1, timeout=FLUSH_BOUND + 3, what="the record")
    rec = report(m, "byRequest", since)["value"][0]
    assert rec["responseCode"] == 429 and "backendResponseCode" not in rec, rec


def test_rollup_and_retention_in_the_store(backend, portico, workdir):
    """Old minute buckets become hour buckets, old hour buckets day buckets,
    buckets past retention go, and the figures stay the same sums."""
    import sqlite3
    p = portico(config(backend), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    now = int(time.time())
    h3d = (now - 3 * 86400) // 3600 * 3600  # an hour three days ago: past hourAfter (48 h)
    d40 = (now - 40 * 86400) // 86400 * 86400  # a day 40 days ago: past dayAfter (30 d)
    cols = ("grain, ts, api, op, product, sub, user, success, blocked, failed, other, bandwidth, cache_hit, "
            "cache_miss, api_sum, api_min, api_max, svc_n, svc_sum, svc_min, svc_max")
    rows = [
        (0, h3d + 60, "echo", "get-item", "silver", "s-bob", "bob", 2, 1, 0, 0, 100, 0, 0, 3000, 500, 2000, 2, 1000, 300, 700),
        (0, h3d + 1200, "echo", "get-item", "silver", "s-bob", "bob", 1, 0, 1, 0, 50, 0, 0, 900, 100, 800, 1, 50, 50, 50),
        (1, d40 + 3600, "echo", "get-item", "silver", "s-bob", "bob", 5, 0, 0, 0, 10, 0, 0, 500, 100, 100, 0, 0, None, None),
        (1, d40 + 7200, "echo", "get-item", "silver", "s-bob", "bob", 1, 0, 0, 0, 10, 0, 0, 100, 100, 100, 1, 9, 9, 9),
        (2, (now - 100 * 86400) // 86400 * 86400, "echo", "", "", "", "", 9, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, None, None),
    ]
    db = sqlite3.connect(os.path.join(workdir, "var", "portico.db"), timeout=10)
    with db:
        db.executemany("INSERT INTO analytics_buckets (%s) VALUES (%s)" % (cols, ",".join("?" * 21)), rows)

    def grains():
        return db.execute("SELECT grain, ts, success, blocked, failed, api_sum, api_min, api_max, svc_n, svc_sum,"
                          " svc_min, svc_max FROM analytics_buckets ORDER BY grain, ts").fetchall()
    wait_for(lambda: len(grains()) == 2, timeout=FLUSH_BOUND + 3, what="the roll-ups and the expiry")
    assert grains() == [
        (1, h3d, 3, 1, 1, 3900, 100, 2000, 3, 1050, 50, 700),  # two minutes into their hour
        (2, d40, 6, 0, 0, 600, 100, 100, 1, 9, 9, 9),  # two hours into their day
    ]
    db.close()
    out = report(m, "byOperation", now - 45 * 86400)["value"]
    assert [(r["operationId"], r["callCountTotal"]) for r in out] == [("/apis/echo/operations/get-item", 11)]
    assert out[0]["apiTimeMin"] == 0.1 and out[0]["apiTimeMax"] == 2.0 and out[0]["serviceTimeMin"] == 0.009
