"""How the access plugin's limits count (plugins/access: quota.c,
rate_limit.c, limits.c), for the documented options test_access.py leaves
out: quota counts kept in the store across a `kill -9`, nested api and
operation quotas, `renewal-period: 0`, quota-by-key's `bandwidth` and
`first-period-start`, rate-limit-by-key's `increment-count`.

Documented in docs/access-policies.md ("Decisions"), docs/policies.md
(the attributes), docs/configuration.md and docs/architecture.md
("Counters": quota counts are written to the store every 5 s and at stop,
and read back at start)."""

import datetime
import json
import os
import signal
import socket
import sqlite3
import time

import pytest

from conftest import CALL_MARK, basic_config, check_call_mark, new_call_mark, wait_for

KEY = "a" * 32
KEY2 = "b" * 32

pytestmark = pytest.mark.usefixtures("refusals_leave_the_backend_alone")


# ------------------------------------------------------------------ helpers


def iso(t):
    """Wall-clock seconds -> ISO 8601 to the millisecond below (the form the policies parse)."""
    ms = int(t * 1000)
    d = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def config(backend, product=None, api=None, subs=True, created=None):
    """The API `echo` (basic_config) and a second API `other`, both in the
    product `p`; `product` and `api` are inbound statements after `base`.
    The subscription s1 (KEY) was created at `created` (wall seconds)."""
    cfg = basic_config(backend.url)
    echo = cfg["apis"][0]
    echo["subscriptionRequired"] = subs
    if api:
        echo["policies"] = {"inbound": ["base"] + api}
    cfg["apis"].append({"id": "other", "path": "other", "serviceUrl": backend.url + "/other",
                        "subscriptionRequired": subs,
                        "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}]})
    cfg["products"] = [{"id": "p", "displayName": "P", "state": "published", "apis": ["echo", "other"]}]
    if product:
        cfg["products"][0]["policies"] = {"inbound": ["base"] + product}
    cfg["subscriptions"] = [
        {"id": "s1", "scope": "/products/p", "primaryKey": KEY, "secondaryKey": "c" * 32,
         "createdDate": iso(created if created is not None else time.time() - 100)},
        {"id": "s2", "scope": "/products/p", "primaryKey": KEY2, "secondaryKey": "d" * 32,
         "createdDate": "2026-01-01T00:00:00Z"},
    ]
    return cfg


def call(p, path="/echo/items/1", key=KEY, headers=None, method="GET"):
    """A call marked so that conftest can check a refused one never reached the backend."""
    h = dict(headers or {})
    if key:
        h["Ocp-Apim-Subscription-Key"] = key
    mark = new_call_mark()
    h[CALL_MARK] = mark
    r = p.request(method, path, headers=h)
    check_call_mark(mark, r[0])
    return r


def period_retry_after(origin, period, t):
    """Retry-After of a fixed-period quota at wall time t: the seconds, rounded
    up, until the end of the period (periods of `period` s counted from
    `origin`) that t falls in."""
    now_ms, origin_ms = int(t * 1000), int(round(origin * 1000))
    end_ms = origin_ms + ((now_ms - origin_ms) // (period * 1000) + 1) * period * 1000
    return max(1, -(-(end_ms - now_ms) // 1000))


def timed(fn, *a, **kw):
    """(wall time before, fn's result, wall time after)."""
    t0 = time.time()
    r = fn(*a, **kw)
    return t0, r, time.time()


def hms(secs):
    """The time in a quota refusal's message (hh:mm:ss, or d.hh:mm:ss from 100 hours)."""
    if secs >= 100 * 3600:
        return "%d.%02d:%02d:%02d" % (secs // 86400, secs % 86400 // 3600, secs % 3600 // 60, secs % 60)
    return "%02d:%02d:%02d" % (secs // 3600, secs % 3600 // 60, secs % 60)


def entry_of(p, response):
    """The access-log line of a response (by its X-Request-Id); a request's
    counting is done before its line is written."""
    rid = response[1]["x-request-id"]
    return wait_for(lambda: next((e for e in p.access_entries() if e["requestId"] == rid), None),
                    what="the access-log line of %s" % rid)


def assert_quota_refusal(p, response, retry_after, what="call volume"):
    """A quota's refusal: 403, the documented message with the time left, Retry-After,
    and QuotaExceeded in the access log."""
    status, h, body = response
    assert status == 403, (status, body)
    assert int(h["retry-after"]) == retry_after, (h["retry-after"], retry_after)
    assert json.loads(body) == {"statusCode": 403, "message": "Out of %s quota. Quota will be replenished in %s."
                                % (what, hms(retry_after))}
    assert entry_of(p, response)["reason"] == "QuotaExceeded"


def assert_retry_after_between(response, origin, period, t0, t1):
    """The refusal's Retry-After is the one of a period from `origin` at some time in [t0, t1]."""
    got = int(response[1]["retry-after"])
    early, late = period_retry_after(origin, period, t0), period_retry_after(origin, period, t1)
    assert late <= got <= early, (got, late, early)
    return got


def stored_counts(workdir, prefix):
    """{key: value} of the quota counters whose name starts with `prefix` in
    the store (var/portico.db), read the way another process may: read-only."""
    path = os.path.join(workdir, "var", "portico.db")
    if not os.path.exists(path):
        return {}
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        rows = db.execute("SELECT key, value FROM counters WHERE key LIKE ?", (prefix + "%",)).fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        rows = []
    finally:
        db.close()
    return dict(rows)


# ------------------------------------------- quota: kept across a kill -9


def test_quota_count_survives_kill_9_from_the_last_save(backend, portico, workdir):
    """Quota counts are written to the store every 5 s (and at stop, which a
    kill -9 skips), and read back at start: after a kill -9 the quota goes
    on from the last save.  A call made after that save may be forgotten
    (docs/configuration.md: a restart forgets at most 5 s of counting, and a
    kill -9 as much) -- but never more than those 5 s."""
    created = time.time() - 100
    cfg = config(backend, product=[{"quota": {"calls": 6, "renewal-period": 3600}}], created=created)
    p = portico(cfg)
    assert [call(p)[0] for _ in range(3)] == [200, 200, 200]
    # the observable save: the subscription's counter in the store (key "qc|calls|period|origin|api|op|sub")
    saved = wait_for(lambda: stored_counts(workdir, "qc|6|3600|"), timeout=5 + 2.5,
                     what="the quota count in the store (saved every 5 s)")
    saved_at = time.monotonic()
    assert list(saved.values()) == [3], saved
    (counter,) = saved
    assert counter.endswith("|s1")

    # one more call after that save, then the gateway is killed well within 5 s of it
    assert call(p)[0] == 200
    p.stop(signal.SIGKILL)
    assert time.monotonic() - saved_at < 4.0
    assert p.proc.returncode == -signal.SIGKILL
    after_kill = stored_counts(workdir, "qc|6|3600|")[counter]
    # the 3 saved calls are kept; the 4th, made after the last save and less
    # than 5 s before the kill, may be forgotten: nothing else may be
    assert after_kill in (3, 4), after_kill

    p2 = portico(cfg)
    left = 6 - after_kill
    assert [call(p2)[0] for _ in range(left)] == [200] * left
    t0, r, t1 = timed(call, p2)
    assert r[0] == 403
    assert_quota_refusal(p2, r, assert_retry_after_between(r, created, 3600, t0, t1))
    # another subscription of the product has its own count
    assert call(p2, key=KEY2)[0] == 200


# ---------------------------------------------------------- nested quotas


def test_nested_quotas_count_and_refuse_each_at_its_own_limit(backend, portico):
    """quota with nested api and operation elements: each level is a further
    counter for the calls it names, refusing at its own `calls` with the
    Retry-After of its own `renewal-period` (periods from the subscription's
    creation); every level counts every call it names, the refused ones too;
    an element's `id` wins over its `name`."""
    created = time.time() - 300  # the periods (600 s, 3600 s, 86400 s) end in 300, 3300 and 86100 s
    cfg = config(backend, product=[{"quota": {
        "calls": 6, "renewal-period": 86400,
        "api": [{"id": "echo", "name": "other", "calls": 4, "renewal-period": 3600,
                 "operation": [{"id": "get-item", "name": "create-item", "calls": 2, "renewal-period": 600}]}]}}],
        created=created)
    p = portico(cfg)
    # the operation's level (get-item): 2 calls
    assert [call(p)[0] for _ in range(2)] == [200, 200]
    t0, r, t1 = timed(call, p)
    assert_quota_refusal(p, r, assert_retry_after_between(r, created, 600, t0, t1))
    assert 295 <= int(r[1]["retry-after"]) <= 300
    # another operation of the API is not held by it, only by the API's level (4 calls: 3 made)
    assert call(p, "/echo/items", method="POST")[0] == 200
    t0, r, t1 = timed(call, p, "/echo/anything")
    assert_quota_refusal(p, r, assert_retry_after_between(r, created, 3600, t0, t1))
    assert 3295 <= int(r[1]["retry-after"]) <= 3300
    # another API is held by the product's level only: 6 calls, of which 5 made (2 refused ones included)
    assert call(p, "/other/x")[0] == 200
    t0, r, t1 = timed(call, p, "/other/x")
    assert_quota_refusal(p, r, assert_retry_after_between(r, created, 86400, t0, t1))
    assert 86095 <= int(r[1]["retry-after"]) <= 86100
    assert len(backend.requests) == 4
    # another subscription has counts of its own at every level
    assert [call(p, key=KEY2)[0] for _ in range(3)] == [200, 200, 403]


# ----------------------------------------------------- renewal-period: 0


def assert_never_replenished(p, response, what="call volume"):
    """A quota that is never renewed refuses with nothing to wait for: 403, no
    Retry-After, a message that says so, QuotaExceeded in the access log."""
    status, h, body = response
    assert status == 403, (status, body)
    assert "retry-after" not in h, h
    assert json.loads(body) == {"statusCode": 403,
                                "message": "Out of %s quota. Quota will not be replenished." % what}
    assert entry_of(p, response)["reason"] == "QuotaExceeded"


def test_quota_renewal_period_zero_never_renews(backend, portico):
    """`renewal-period: 0` is a quota that is never renewed: its count stays
    spent, across a restart too."""
    cfg = config(backend, product=[{"quota": {"calls": 2, "renewal-period": 0}}])
    p = portico(cfg)
    assert [call(p)[0] for _ in range(2)] == [200, 200]
    assert_never_replenished(p, call(p))
    p.stop()  # SIGINT: the count is saved at stop
    p2 = portico(cfg)
    assert_never_replenished(p2, call(p2))
    assert call(p2, key=KEY2)[0] == 200


def test_quota_by_key_renewal_period_zero_never_renews(backend, portico):
    """quota-by-key with `renewal-period: 0` stays spent where one with a
    1 s period (the control, next to it) is renewed."""
    cfg = config(backend, subs=False)
    ops = {o["id"]: o for o in cfg["apis"][0]["operations"]}
    ops["get-item"]["policies"] = {"inbound": ["base", {"quota-by-key": {
        "calls": 1, "renewal-period": 0, "counter-key": "never"}}]}
    ops["create-item"]["policies"] = {"inbound": ["base", {"quota-by-key": {
        "calls": 1, "renewal-period": 1, "counter-key": "every-second"}}]}
    p = portico(cfg)
    assert call(p, key=None)[0] == 200
    assert_never_replenished(p, call(p, key=None))
    # the control's periods are whole seconds of the clock (from 0001-01-01): its two calls are made
    # early in one second, and the third just after that second is over
    time.sleep(1.02 - time.time() % 1)
    assert call(p, "/echo/items", key=None, method="POST")[0] == 200
    r = call(p, "/echo/items", key=None, method="POST")
    assert_quota_refusal(p, r, 1)
    time.sleep(1.02 - time.time() % 1)  # the scenario: the control's period is over
    assert call(p, "/echo/items", key=None, method="POST")[0] == 200
    assert_never_replenished(p, call(p, key=None))


# ------------------------------------- quota-by-key: bandwidth, first-period-start


def sink_request(client, length):
    """A POST to /echo/sink (the backend answers with the body's length and
    hash) with a body of `length` bytes, counted by the header X-Client."""
    head = ("POST /echo/sink HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Client: %s\r\nContent-Length: %d\r\n\r\n"
            % (client, length)).encode()
    return head + b"x" * length


def exchange(p, data):
    """Sends a request's bytes on a new connection: (status, headers, body,
    bytes of the whole response as received)."""
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        lines = head.decode("latin1").split("\r\n")
        headers = dict((k.strip().lower(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:]))
        n = int(headers["content-length"])
        while len(body) < n:
            chunk = s.recv(65536)
            assert chunk
            body += chunk
        assert len(body) == n
        return int(lines[0].split()[1]), headers, body, len(head) + 4 + n


def call_of_exactly(p, client, total, probe):
    """A call of `client` whose request and response together are exactly
    `total` bytes on the wire; returns the response and that total.  The
    response's size depends on the body's length only through its digits:
    a probe under a key of its own (`probe`, which counts elsewhere)
    measures it first."""
    digits = len(str(total - 400))
    status, _, _, out = exchange(p, sink_request(probe, 10 ** (digits - 1)))
    assert status == 200
    length = next(n for n in range(10 ** (digits - 1), 10 ** digits)
                  if len(sink_request(client, n)) + out == total)
    data = sink_request(client, length)
    status, headers, body, got = exchange(p, data)
    assert status != 200 or got == out, (got, out)
    return (status, headers, body), len(data) + got


BANDWIDTH = {"quota-by-key": {"bandwidth": 10, "renewal-period": 3600,
                              "counter-key": "@(context.request.headers:get('X-Client', ''))"}}


def test_quota_by_key_bandwidth_refuses_at_the_kilobyte_budget(backend, portico):
    """`bandwidth` is kilobytes (of 1024 bytes) received and sent -- the
    request's and the response's heads and bodies -- per period: calls of
    3 KB, 3 KB, 3 KB and 1 KB spend exactly 10 KB, and the next call is
    refused ("Out of bandwidth quota"), with the Retry-After of the period
    from the default first-period-start (0001-01-01T00:00:00Z: hours of the
    UTC clock for a 3600 s period)."""
    p = portico(config(backend, subs=False, api=[BANDWIDTH]))
    for i, kb in enumerate((3, 3, 3, 1)):
        r, total = call_of_exactly(p, "k", kb * 1024, "probe%d" % i)
        assert (r[0], total) == (200, kb * 1024)
        e = entry_of(p, r)  # bytes are counted when the request is over, before its line is written
        assert e["bytesIn"] + e["bytesOut"] == kb * 1024, e
    t0 = time.time()
    status, h, body, _ = exchange(p, sink_request("k", 10))
    t1 = time.time()
    origin = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    r = (status, h, body)
    assert_quota_refusal(p, r, assert_retry_after_between(r, origin, 3600, t0, t1), what="bandwidth")
    # the budget is the key's: another key still has its 10 KB
    assert exchange(p, sink_request("other", 10))[0] == 200


def test_quota_by_key_bandwidth_short_of_the_budget_leaves_room(backend, portico):
    """The other side of the budget: with 9 KB of the 10 spent, the next call
    goes through (even though it brings the count over the budget); only
    then is the budget spent."""
    p = portico(config(backend, subs=False, api=[BANDWIDTH]))
    for i, kb in enumerate((3, 3, 3, 2)):
        r, total = call_of_exactly(p, "k", kb * 1024, "probe%d" % i)
        assert (r[0], total) == (200, kb * 1024)
        entry_of(p, r)
    status, h, body, _ = exchange(p, sink_request("k", 10))
    assert status == 403 and "Out of bandwidth quota" in json.loads(body)["message"]


def test_quota_by_key_periods_start_at_first_period_start(backend, portico):
    """Periods are counted from `first-period-start`: with a start 3598 s
    before the configuration is written and a 3600 s period, the current
    period ends 2 s later -- the refusal says so (Retry-After and the
    message), a call just before the end is still refused, one just after
    it passes, and the next period ends a whole period later."""
    start = int((time.time() + 2 - 3600) * 1000) / 1000.0  # to the millisecond, as written
    end = start + 3600
    p = portico(config(backend, subs=False, api=[{"quota-by-key": {
        "calls": 1, "renewal-period": 3600, "counter-key": "k", "first-period-start": iso(start)}}]))
    assert call(p, key=None)[0] == 200
    t0, r, t1 = timed(call, p, key=None)
    assert_quota_refusal(p, r, assert_retry_after_between(r, start, 3600, t0, t1))
    assert int(r[1]["retry-after"]) in (1, 2)
    time.sleep(max(0.0, end - 0.5 - time.time()))  # the scenario: the period's last moments
    t0, r, t1 = timed(call, p, key=None)
    assert t1 < end, "the call before the period's end came %.3f s too late" % (t1 - end)
    assert_quota_refusal(p, r, 1)
    time.sleep(max(0.0, end + 0.1 - time.time()))  # the period is over
    assert call(p, key=None)[0] == 200
    t0, r, t1 = timed(call, p, key=None)
    assert_quota_refusal(p, r, assert_retry_after_between(r, start, 3600, t0, t1))
    assert int(r[1]["retry-after"]) == 3600  # less than 3600 s left, rounded up


# ------------------------------------------- rate-limit-by-key: increment-count


def test_rate_limit_by_key_increment_count(backend, portico):
    """`increment-count: 3` makes each call count 3: with `calls: 10` the
    fourth call (12) is refused, and refused calls count too.  Retry-After
    says when the next call fits, counting the calls made so far: here once
    the last three calls have left the 2 s window (a call counting 3 needs
    the count down to 7), not when the first one has."""
    p = portico(config(backend, subs=False, api=[{"rate-limit-by-key": {
        "calls": 10, "renewal-period": 2, "counter-key": "w", "increment-count": 3,
        "remaining-calls-header-name": "X-Left", "total-calls-header-name": "X-Total"}}]))
    r = call(p, key=None)
    assert (r[0], r[1]["x-left"], r[1]["x-total"]) == (200, "7", "10")
    time.sleep(1.0)  # the scenario: the next calls sit later in the window than the first
    left = []
    for _ in range(2):
        status, h, _ = call(p, key=None)
        assert status == 200
        left.append(h["x-left"])
    assert left == ["4", "1"]
    status, h, body = call(p, key=None)
    assert status == 429
    # 9 counted and 3 more for the refused call: after the first call leaves (in 1 s) 9 remain,
    # and a call counting 3 fits only once the later ones have left too (in 2 s)
    assert h["retry-after"] == "2"
    assert json.loads(body) == {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 2 seconds."}
    assert entry_of(p, (status, h, body))["reason"] == "RateLimitExceeded"
    time.sleep(2.0)  # the scenario: the time Retry-After gave
    r = call(p, key=None)
    assert (r[0], r[1]["x-left"]) == (200, "7")


def test_rate_limit_by_key_increment_count_expression_with_condition(backend, portico):
    """`increment-count` may be an expression; with `increment-condition` a
    call adds its count only if the condition holds once the response is
    known.  calls: 10 -- counts 4 and 6 fill it exactly, a call of 1 more is
    refused (and, refused, not counted)."""
    p = portico(config(backend, subs=False, api=[{"rate-limit-by-key": {
        "calls": 10, "renewal-period": 60, "counter-key": "c",
        "increment-count": "@(context.request.headers:get('X-Weight', '1'))",
        "increment-condition": "@(context.response.statusCode == 200)",
        "remaining-calls-header-name": "X-Left"}}]))
    for _ in range(2):  # failures are not counted, whatever their weight
        assert call(p, "/echo/status/500", key=None, headers={"X-Weight": "9"})[0] == 500
    r = call(p, key=None, headers={"X-Weight": "4"})
    assert (r[0], r[1]["x-left"]) == (200, "6")
    r = call(p, key=None, headers={"X-Weight": "6"})
    assert (r[0], r[1]["x-left"]) == (200, "0")
    status, h, body = call(p, key=None, headers={"X-Weight": "1"})
    assert status == 429 and entry_of(p, (status, h, body))["reason"] == "RateLimitExceeded"
    # the window is 60 s in 20 slots of 3 s: room comes back when the slot of the call counting 4
    # leaves it, 57-60 s from now (54-60 s if the two calls straddle a slot's edge)
    secs = int(h["retry-after"])
    assert 55 <= secs <= 60, secs
    assert json.loads(body)["message"] == "Rate limit is exceeded. Try again in %d seconds." % secs
    # the refused call was not counted: a call counting 0 still fits, with nothing left
    r = call(p, key=None, headers={"X-Weight": "0"})
    assert (r[0], r[1]["x-left"]) == (200, "0")
    r = call(p, key=None, headers={"X-Weight": "1"})
    assert r[0] == 429
