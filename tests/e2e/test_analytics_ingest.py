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
