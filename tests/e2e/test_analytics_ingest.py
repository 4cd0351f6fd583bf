"""A gateway node's analytics as the real control plane takes them (docs/analytics.md, "Gateway
nodes"): batches sent by hand in heartbeats with a gateway token, as a hostile node could send
them, and what the management API's reports say afterwards.  A gateway token may sit on a less
trusted machine than the control plane, so no batch may break the reports or count traffic the
gateway does not serve."""

import json
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

from test_gateways_cp import cp  # noqa: F401 (the fixture: APIs a1 (assigned to g1) and a2 (not))


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def minute():
    return int(time.time()) // 60 * 60


def report(m, name, extra=""):
    """(status, body) of a report over the last two hours."""
    since = datetime.now(timezone.utc) - timedelta(hours=2)
    flt = urllib.parse.quote("timestamp ge %s" % iso(since))
    st, _, out = m.call("GET", "reports/%s?$filter=%s%s" % (name, flt, extra))
    return st, out


def calls_by_api(m):
    st, out = report(m, "byApi")
    assert st == 200, (st, out)
    return {r["apiId"]: r["callCountTotal"] for r in out["value"]}


def heartbeat(s, batch, node="n1"):
    st, _, out = s.call("POST", "heartbeat", {"nodeId": node, "analytics": batch})
    return st, json.loads(out) if out else None


def test_huge_counts_are_refused_and_reports_keep_answering(cp):
    p, m, s = cp
    now = minute()
    # the review's attack: 1,100 buckets of 2^53 calls each in one heartbeat
    big = {"version": 1, "id": "atk-1", "buckets": [
        {"start": now - 60, "api": "a1", "operation": "op%d" % i, "success": 1 << 53} for i in range(1100)]}
    st, out = heartbeat(s, big)
    assert st == 400, (st, out)
    assert out["error"]["code"] == "InvalidAnalytics" and "1000000000" in out["error"]["message"], out
    # the same key many times over in one batch (each bucket small): refused too
    dup = {"version": 1, "id": "atk-2", "buckets": [
        {"start": now - 60, "api": "a1", "success": 1000000000} for _ in range(3)]}
    st, out = heartbeat(s, dup)
    assert st == 400 and "buckets[0] and buckets[1] have the same" in out["error"]["message"], (st, out)
    # nothing of either was written, and every report answers
    for name, extra in (("byApi", ""), ("byOperation", ""), ("byUser", ""), ("byProduct", ""),
                        ("bySubscription", ""), ("byTime", "&interval=PT1M"), ("byTime", "&interval=PT1H")):
        st, out = report(m, name, extra)
        assert st == 200, (name, st, out)
    assert calls_by_api(m).get("/apis/a1", 0) == 0
    # the most a bucket may count is taken, and adds up in the reports
    ok = {"version": 1, "id": "ok-1", "buckets": [
        {"start": now - 60 * k, "api": "a1", "success": 1000000000} for k in range(1, 4)]}
    st, out = heartbeat(s, ok)
    assert st == 200, (st, out)
    assert calls_by_api(m)["/apis/a1"] == 3000000000
    st, out = report(m, "byTime", "&interval=PT1H")
    assert st == 200 and sum(r["callCountTotal"] for r in out["value"]) == 3000000000, out


def test_a_node_reports_only_its_gateways_traffic(cp):
    p, m, s = cp
    now = minute()
    before = calls_by_api(m)
    # g1's token reporting calls for a2, which only `managed` serves: refused, naming the API, nothing written
    # (the good a1 bucket before it neither)
    forged = {"version": 1, "id": "f-1", "buckets": [
        {"start": now - 60, "api": "a1", "success": 5},
        {"start": now - 120, "api": "a2", "success": 1000000}]}
    st, out = heartbeat(s, forged)
    assert st == 400, (st, out)
    assert out["error"]["code"] == "InvalidAnalytics"
    assert "buckets[1].api: API 'a2' is not served by gateway 'g1'" in out["error"]["message"], out
    # ids that do not exist, an operation of another API, 1970, the future: refused too
    for bucket, why in (({"api": "a1", "subscription": "s9"}, "no subscription 's9'"),
                        ({"api": "a1", "product": "p9"}, "no product 'p9'"),
                        ({"api": "a1", "user": "nobody"}, "no user 'nobody'"),
                        ({"api": "a1", "operation": "nop"}, "no operation 'nop' in API a1"),
                        ({"api": "a1", "start": 0}, "buckets[0].start"),
                        ({"api": "a1", "start": now - 91 * 86400}, "buckets[0].start"),
                        ({"api": "a1", "start": now + 600}, "buckets[0].start")):
        b = dict({"start": now - 60, "success": 7}, **bucket)
        st, out = heartbeat(s, {"version": 1, "id": "f-2", "buckets": [b]})
        assert st == 400 and why in out["error"]["message"], (bucket, st, out)
    assert calls_by_api(m) == before
    # an API unassigned from g1 is no longer g1's to report
    m.ok("PUT", "gateways/g1/apis/a2")
    ok = {"version": 1, "id": "f-3", "buckets": [
        {"start": now - 60, "api": "a1", "operation": "op", "product": "p1", "subscription": "s3", "success": 5},
        {"start": now - 120, "api": "a2", "subscription": "s2", "success": 2}]}
    st, out = heartbeat(s, ok)
    assert st == 200, (st, out)
    got = calls_by_api(m)
    assert got.get("/apis/a1", 0) == before.get("/apis/a1", 0) + 5
    assert got.get("/apis/a2", 0) == before.get("/apis/a2", 0) + 2
    st, _, _ = m.call("DELETE", "gateways/g1/apis/a2")
    assert st == 204
    st, out = heartbeat(s, {"version": 1, "id": "f-4", "buckets": [{"start": now - 60, "api": "a2", "success": 1}]})
    assert st == 400 and "'a2' is not served by gateway 'g1'" in out["error"]["message"], (st, out)
    assert calls_by_api(m) == got


def test_a_resent_batch_counts_once_whatever_came_between(cp):
    import http.client
    p, m, s = cp
    now = minute()
    before = calls_by_api(m).get("/apis/a1", 0)
    b = {"version": 1, "id": "9f3c0a1be2d47760-7", "buckets": [{"start": now - 60, "api": "a1", "success": 4}]}
    assert heartbeat(s, b)[0] == 200
    # 1,100 other nodes' batches meanwhile (the control plane once remembered the last 1,024 ids only)
    c = http.client.HTTPConnection("127.0.0.1", m.port, timeout=10)
    for i in range(1100):
        body = {"nodeId": "other-%d" % i, "analytics": {"version": 1, "id": "n%d-1" % i, "buckets": []}}
        c.request("POST", "/management/gateways/g1/heartbeat", body=json.dumps(body),
                  headers={"Authorization": s.token, "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200
    c.close()
    assert heartbeat(s, b)[0] == 200  # its answer was lost: sent again, taken as delivered
    assert calls_by_api(m)["/apis/a1"] == before + 4
    # an id that is not "<node>-<sequence>" cannot be told apart later: refused
    st, out = heartbeat(s, dict(b, id="whatever"))
    assert st == 400 and "id must be" in out["error"]["message"], (st, out)


def test_a_batch_resent_after_a_restart_of_the_control_plane_counts_once(cp):
    """The batches taken are remembered in the store with the counts they added: a node whose answer
    was lost when the control plane went down sends the batch again to the restarted one."""
    p, m, s = cp
    now = minute()
    before = calls_by_api(m).get("/apis/a1", 0)
    b = {"version": 1, "id": "5e0d2c77a1b04f19-12", "buckets": [{"start": now - 60, "api": "a1", "success": 6}]}
    assert heartbeat(s, b)[0] == 200
    assert calls_by_api(m)["/apis/a1"] == before + 6
    p.stop()
    p.start()
    assert heartbeat(s, b)[0] == 200  # taken as delivered: the record came back from the store
    assert calls_by_api(m)["/apis/a1"] == before + 6
    # the window goes on from there: a batch below it that was never sent counts, once
    older = dict(b, id="5e0d2c77a1b04f19-11", buckets=[{"start": now - 60, "api": "a1", "success": 1}])
    assert heartbeat(s, older)[0] == 200 and heartbeat(s, older)[0] == 200
    newer = dict(b, id="5e0d2c77a1b04f19-13", buckets=[{"start": now - 60, "api": "a1", "success": 2}])
    assert heartbeat(s, newer)[0] == 200
    p.stop()
    p.start()
    for again in (b, older, newer):
        assert heartbeat(s, again)[0] == 200
    assert calls_by_api(m)["/apis/a1"] == before + 9
