"""The access-restriction plugin (plugins/access): rate limits, quotas,
concurrency, IP filter, header checks, CORS and backend basic auth, against
the real binary."""

import base64
import http.client
import json
import re
import threading
import time

import pytest

from conftest import CALL_MARK, check_call_mark, new_call_mark, basic_config

KEY = "a" * 32
KEY2 = "b" * 32


def gw_config(backend, inbound, workers=1, subs=True, api_policies=True, **extra):
    cfg = basic_config(backend.url, workers=workers)
    api = cfg["apis"][0]
    api["subscriptionRequired"] = subs
    if api_policies:
        api["policies"] = {"inbound": ["base"] + inbound}
    cfg["products"] = [{"id": "p", "displayName": "P", "state": "published", "apis": ["echo"]}]
    cfg["subscriptions"] = [
        {"id": "s1", "scope": "/products/p", "primaryKey": KEY, "secondaryKey": "c" * 32,
         "createdDate": "2026-01-01T00:00:00Z"},
        {"id": "s2", "scope": "/products/p", "primaryKey": KEY2, "secondaryKey": "d" * 32,
         "createdDate": "2026-01-01T00:00:00Z"},
    ]
    cfg.update(extra)
    return cfg


pytestmark = pytest.mark.usefixtures("refusals_leave_the_backend_alone")


def call(p, path="/echo/items/1", key=KEY, headers=None, method="GET"):
    h = dict(headers or {})
    if key:
        h["Ocp-Apim-Subscription-Key"] = key
    mark = new_call_mark()
    h[CALL_MARK] = mark
    r = p.request(method, path, headers=h)
    check_call_mark(mark, r[0], accepted_must_arrive=False)  # some calls here are answered by policies
    return r


# ------------------------------------------------------------ rate-limit


def test_rate_limit_per_subscription(backend, portico):
    p = portico(gw_config(backend, [{"rate-limit": {"calls": 3, "renewal-period": 60,
                                                     "remaining-calls-header-name": "X-Remaining",
                                                     "total-calls-header-name": "X-Total"}}]))
    left = []
    for _ in range(3):
        status, h, _ = call(p)
        assert status == 200
        left.append(int(h["x-remaining"]))
        assert h["x-total"] == "3"
    assert left == [2, 1, 0]
    status, h, body = call(p)
    assert status == 429
    secs = int(h["retry-after"])
    assert 1 <= secs <= 60
    assert json.loads(body) == {"statusCode": 429,
                                "message": "Rate limit is exceeded. Try again in %d seconds." % secs}
    e = p.access_entries(wait_for=4)[-1]
    assert e["reason"] == "RateLimitExceeded"
    # the refused call never reached the backend; another subscription has its own counter
    assert len(backend.requests) == 3
    assert call(p, key=KEY2)[0] == 200
    assert len(backend.requests) == 4 and backend.last().header("Ocp-Apim-Subscription-Key") in (None, KEY2)


def test_rate_limit_window_slides(backend, portico):
    p = portico(gw_config(backend, [{"rate-limit": {"calls": 2, "renewal-period": 1}}]))
    assert [call(p)[0] for _ in range(3)] == [200, 200, 429]
    time.sleep(1.2)
    assert call(p)[0] == 200


def test_rate_limit_nested_api_and_operation_limits(backend, portico):
    cfg = gw_config(backend, [], api_policies=False)
    cfg["products"][0]["policies"] = {"inbound": ["base", {"rate-limit": {
        "calls": 100, "renewal-period": 60,
        "api": [{"name": "echo", "calls": 50, "renewal-period": 60,
                 "operation": [{"id": "get-item", "calls": 2, "renewal-period": 60}]}]}}]}
    p = portico(cfg)
    assert [call(p)[0] for _ in range(3)] == [200, 200, 429]
    # another operation of the API is not held by the operation's limit
    assert call(p, "/echo/other")[0] == 200


def test_rate_limit_exact_under_concurrent_load(backend, portico):
    p = portico(gw_config(backend, [{"rate-limit": {"calls": 50, "renewal-period": 300}}], workers=2))
    results = []
    lock = threading.Lock()

    def client():
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        for i in range(20):
            c.request("GET", "/echo/items/%d" % i, headers={"Ocp-Apim-Subscription-Key": KEY})
            r = c.getresponse()
            r.read()
            with lock:
                results.append(r.status)
        c.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 160
    assert results.count(200) == 50 and results.count(429) == 110


def test_refused_calls_count_too(backend, portico):
    """APIM: every call counts toward the limit, the refused ones too, so a client that keeps
    calling stays refused until its calls fall out of the window."""
    p = portico(gw_config(backend, [{"rate-limit": {"calls": 1, "renewal-period": 2}}]))
    t0 = time.time()
    assert call(p)[0] == 200

    def at(t):
        time.sleep(max(0.0, t0 + t - time.time()))
        return call(p)[0]
    assert at(1.4) == 429   # counted, though refused
    assert at(2.5) == 429   # the first call has left the window; the refused one has not
    assert at(4.8) == 200


def test_rate_limit_names_and_variables(backend, portico):
    cfg = gw_config(backend, [{"rate-limit": {
        "calls": 1, "renewal-period": 60, "retry-after-header-name": "X-Wait",
        "retry-after-variable-name": "wait", "remaining-calls-variable-name": "left"}}])
    cfg["apis"][0]["policies"]["outbound"] = ["base", {"set-header": {
        "name": "X-Left", "value": "@(tostring(context.variables.left))"}}]
    cfg["apis"][0]["policies"]["on-error"] = [{"return-response": {
        "set-status": {"code": 429, "reason": "Slow down"},
        "set-header": {"name": "X-Wait-Var", "value": "@(tostring(context.variables.wait))"},
        "set-body": "@(context.lastError.reason)"}}]
    p = portico(cfg)
    status, h, _ = call(p)
    assert status == 200 and h["x-left"] == "0"
    status, h, body = call(p)
    assert (status, body) == (429, b"RateLimitExceeded")
    assert 1 <= int(h["x-wait-var"]) <= 60 and h["x-wait"] == h["x-wait-var"] and "retry-after" not in h


def test_rate_limit_scopes_and_periods_are_checked(backend, portico):
    cfg = gw_config(backend, [], api_policies=False)
    cfg["policies"] = {"inbound": [{"rate-limit": {"calls": 5, "renewal-period": 60}}]}
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "not allowed at global scope (only: product, API, operation)" in out, out
    cfg = gw_config(backend, [{"rate-limit": {"calls": 5, "renewal-period": 60, "api": [
        {"name": "echo", "calls": 2, "renewal-period": 3600}]}}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "renewal-period must be from 1 to 300" in out, out
    cfg = gw_config(backend, [{"quota": {"calls": 5, "renewal-period": 60}}])
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "'quota' is not allowed at API scope (only: product)" in out, out


def test_calls_without_subscription_are_not_rate_limited(backend, portico):
    p = portico(gw_config(backend, [{"rate-limit": {"calls": 1, "renewal-period": 60}}], subs=False))
    assert [call(p, key=None)[0] for _ in range(3)] == [200, 200, 200]


# ----------------------------------------------------- rate-limit-by-key


def test_rate_limit_by_key_with_increment_condition(backend, portico):
    p = portico(gw_config(backend, [{"rate-limit-by-key": {
        "calls": 2, "renewal-period": 60,
        "counter-key": "@(context.request.headers:get('X-Client', 'none'))",
        "increment-condition": "@(context.response.statusCode == 200)",
        "retry-after-variable-name": "wait"}}], subs=False))
    # failures are not counted
    for _ in range(4):
        assert call(p, "/echo/status/500", key=None, headers={"X-Client": "a"})[0] == 500
    assert call(p, key=None, headers={"X-Client": "a"})[0] == 200
    assert call(p, key=None, headers={"X-Client": "a"})[0] == 200
    status, h, body = call(p, key=None, headers={"X-Client": "a"})
    assert status == 429 and "Try again in" in json.loads(body)["message"]
    assert call(p, key=None, headers={"X-Client": "b"})[0] == 200  # its own counter


def test_rate_limit_by_key_shares_one_count_per_key_whatever_the_numbers(backend, portico):
    cfg = gw_config(backend, [{"rate-limit-by-key": {"calls": 3, "renewal-period": 60, "counter-key": "k"}}],
                    subs=False)
    cfg["policies"] = {"inbound": [{"rate-limit-by-key": {"calls": 100, "renewal-period": 60, "counter-key": "k"}}]}
    p = portico(cfg)
    # one counter: the global policy's call and the API policy's call both land in it
    assert [call(p, key=None)[0] for _ in range(2)] == [200, 429]


def test_rate_limit_by_key_counter_is_shared_across_scopes(backend, portico):
    cfg = gw_config(backend, [{"rate-limit-by-key": {"calls": 3, "renewal-period": 60, "counter-key": "shared"}}],
                    subs=False)
    cfg["policies"] = {"inbound": [{"rate-limit-by-key": {"calls": 3, "renewal-period": 60,
                                                          "counter-key": "shared"}}]}
    p = portico(cfg)
    # each request counts twice (global and API scope use the same key)
    assert [call(p, key=None)[0] for _ in range(2)] == [200, 429]


# ------------------------------------------------------------------ quota


def test_quota_calls_survive_restart(backend, portico):
    cfg = gw_config(backend, [], api_policies=False)
    cfg["products"][0]["policies"] = {"inbound": ["base", {"quota": {"calls": 3, "renewal-period": 3600}}]}
    p = portico(cfg)
    assert [call(p)[0] for _ in range(3)] == [200, 200, 200]
    status, h, body = call(p)
    assert status == 403
    msg = json.loads(body)["message"]
    assert re.match(r"Out of call volume quota\. Quota will be replenished in \d\d:\d\d:\d\d\.$", msg), msg
    assert int(h["retry-after"]) > 0
    assert p.access_entries(wait_for=4)[-1]["reason"] == "QuotaExceeded"
    p.stop()
    p2 = portico(cfg)
    assert call(p2)[0] == 403  # still spent after a restart
    assert call(p2, key=KEY2)[0] == 200


def test_quota_bandwidth(backend, portico):
    cfg = gw_config(backend, [], api_policies=False)
    cfg["products"][0]["policies"] = {"inbound": ["base", {"quota": {"bandwidth": 10, "renewal-period": 3600}}]}
    p = portico(cfg)
    assert call(p, "/echo/big?bytes=20000")[0] == 200  # about 20 KB: over the 10 KB
    status, _, body = call(p)
    assert status == 403 and "Out of bandwidth quota" in json.loads(body)["message"]


def test_quota_by_key_counts_once_per_request(backend, portico):
    cfg = gw_config(backend, [{"quota-by-key": {"calls": 2, "renewal-period": 3600, "counter-key": "k"}}],
                    subs=False)
    cfg["policies"] = {"inbound": [{"quota-by-key": {"calls": 2, "renewal-period": 3600, "counter-key": "k"}}]}
    p = portico(cfg)
    assert [call(p, key=None)[0] for _ in range(3)] == [200, 200, 403]


def test_quota_by_key_counts_once_whatever_the_numbers(backend, portico):
    cfg = gw_config(backend, [{"quota-by-key": {"calls": 2, "renewal-period": 3600, "counter-key": "k"}}],
                    subs=False)
    cfg["policies"] = {"inbound": [{"quota-by-key": {"calls": 100, "renewal-period": 3600, "counter-key": "k"}}]}
    p = portico(cfg)
    # the global policy counts the call; the API policy's smaller number still holds on the same count
    assert [call(p, key=None)[0] for _ in range(3)] == [200, 200, 403]


def test_quota_by_key_with_increment_condition(backend, portico):
    p = portico(gw_config(backend, [{"quota-by-key": {
        "calls": 2, "renewal-period": 3600, "counter-key": "@(context.request.headers:get('X-Client', ''))",
        "increment-condition": "@(context.response.statusCode < 400)"}}], subs=False))
    for _ in range(3):  # failures do not count
        assert call(p, "/echo/status/500", key=None, headers={"X-Client": "a"})[0] == 500
    assert [call(p, key=None, headers={"X-Client": "a"})[0] for _ in range(3)] == [200, 200, 403]
    assert call(p, key=None, headers={"X-Client": "b"})[0] == 200


# ------------------------------------------------------ limit-concurrency


def test_limit_concurrency_refuses_at_once(backend, portico):
    p = portico(gw_config(backend, [{"limit-concurrency": {
        "key": "all", "max-count": 2, "policies": [{"set-header": {"name": "X-Inside", "value": "1"}}]}}],
        subs=False, workers=2))
    results = []

    def slow():
        results.append(call(p, "/echo/sleep/700", key=None)[0])

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    status, _, body = call(p, key=None)
    assert status == 429 and time.monotonic() - t0 < 0.5
    for t in threads:
        t.join(10)
    assert results == [200, 200]
    assert call(p, key=None)[0] == 200  # slots are back
    assert backend.last().header("X-Inside") == "1"


# ------------------------------------------------------------- ip-filter


def test_ip_filter_allow_and_forbid(backend, portico):
    p = portico(gw_config(backend, [{"ip-filter": {"action": "allow", "address": ["10.0.0.1"],
                                                   "address-range": [{"from": "127.0.0.0", "to": "127.0.0.5"}]}}],
                          subs=False))
    assert call(p, key=None)[0] == 200
    p.stop()
    p = portico(gw_config(backend, [{"ip-filter": {"action": "forbid", "address": ["127.0.0.1"]}}], subs=False))
    status, _, body = call(p, key=None)
    assert status == 403 and p.access_entries(wait_for=2)[-1]["reason"] == "CallerIpBlocked"
    p.stop()
    p = portico(gw_config(backend, [{"ip-filter": {"action": "allow", "address": ["2001:db8::1"]}}], subs=False))
    status, _, body = call(p, key=None)
    assert (status, json.loads(body)) == (403, {"statusCode": 403,
                                                "message": "Caller IP address is not allowed. Access denied."})
    assert p.access_entries(wait_for=3)[-1]["reason"] == "CallerIpNotAllowed"  # the log is the previous runs' too


def test_ip_filter_action_from_an_expression(backend, portico):
    action = "@(context.request.headers:get('X-Open', '') == 'yes' and 'forbid' or 'allow')"
    p = portico(gw_config(backend, [{"ip-filter": {"action": action, "address": ["10.9.9.9"]}}], subs=False))
    assert call(p, key=None)[0] == 403                              # allow-list without us
    assert call(p, key=None, headers={"X-Open": "yes"})[0] == 200   # deny-list without us
    p.stop()
    p = portico(gw_config(backend, [{"ip-filter": {"action": "@('maybe')", "address": ["10.9.9.9"]}}], subs=False))
    assert call(p, key=None)[0] == 500
    cfg = gw_config(backend, [{"ip-filter": {"action": "maybe", "address": ["10.9.9.9"]}}], subs=False)
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "neither allow nor forbid" in out, out


def test_ip_filter_trusted_proxies(backend, portico):
    cfg = gw_config(backend, [{"ip-filter": {"action": "allow",
                                             "address-range": [{"from": "203.0.113.0", "to": "203.0.113.255"}]}}],
                    subs=False, trustedProxies=["127.0.0.1/32", "10.0.0.0/8"])
    p = portico(cfg)
    # the client is the right-most address that is not a trusted proxy
    assert call(p, key=None, headers={"X-Forwarded-For": "203.0.113.9, 10.1.2.3"})[0] == 200
    assert call(p, key=None, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.1"})[0] == 403
    assert call(p, key=None)[0] == 403  # no header: the proxy itself is the caller
    cfg["trustedProxies"] = []
    p2 = portico(dict(cfg, listen=["127.0.0.1:%d" % __import__("conftest").free_port()]))
    assert call(p2, key=None, headers={"X-Forwarded-For": "203.0.113.9"})[0] == 403


def test_ip_filter_bad_addresses_are_config_errors(backend, portico):
    p = portico(gw_config(backend, [{"ip-filter": {"action": "allow", "address": ["300.1.1.1"]}}]), start=False)
    code, out = p.check()
    assert code != 0 and "'300.1.1.1' is not an IPv4 or IPv6 address" in out and "portico.yaml:" in out


# ----------------------------------------------------------- check-header


def test_check_header(backend, portico):
    p = portico(gw_config(backend, [{"check-header": {
        "name": "X-Tenant", "failed-check-httpcode": 401, "failed-check-error-message": "tenant missing",
        "ignore-case": True, "value": ["Alpha", "beta"]}}], subs=False))
    status, _, body = call(p, key=None)
    assert status == 401 and json.loads(body) == {"statusCode": 401, "message": "tenant missing"}
    assert p.access_entries(wait_for=1)[-1]["reason"] == "HeaderNotFound"
    assert call(p, key=None, headers={"X-Tenant": "ALPHA"})[0] == 200
    status, _, _ = call(p, key=None, headers={"X-Tenant": "gamma"})
    assert status == 401 and p.access_entries(wait_for=3)[-1]["reason"] == "HeaderValueNotAllowed"


# ------------------------------------------------------------------- cors


CORS = {"cors": {"allow-credentials": True,
                 "allowed-origins": {"origin": ["https://app.example.com"]},
                 "allowed-methods": {"method": ["GET", "PUT"], "preflight-result-max-age": 600},
                 "allowed-headers": {"header": ["Content-Type", "X-Trace"]},
                 "expose-headers": {"header": ["X-Request-Id"]}}}


def test_cors_preflight_answered_by_the_gateway(backend, portico):
    p = portico(gw_config(backend, [CORS], subs=False))
    status, h, body = p.request("OPTIONS", "/echo/items/1", headers={
        "Origin": "https://app.example.com:443", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type, x-trace"})
    assert status == 200 and body == b""
    assert h["access-control-allow-origin"] == "https://app.example.com:443"
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-methods"] == "GET, PUT"
    assert h["access-control-allow-headers"] == "content-type, x-trace"
    assert h["access-control-max-age"] == "600"
    assert backend.last() is None  # the backend never sees a preflight
    # a method or header not allowed: no CORS headers
    status, h, _ = p.request("OPTIONS", "/echo/items/1", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE"})
    assert "access-control-allow-origin" not in h


def test_cors_simple_request_gets_headers(backend, portico):
    p = portico(gw_config(backend, [CORS], subs=False))
    status, h, _ = p.request("GET", "/echo/items/1", headers={"Origin": "https://app.example.com"})
    assert status == 200
    assert h["access-control-allow-origin"] == "https://app.example.com"
    assert h["access-control-expose-headers"] == "X-Request-Id"
    assert "Origin" in h["vary"]
    status, h, _ = p.request("GET", "/echo/items/1", headers={"Origin": "https://evil.example.com"})
    assert status == 200 and "access-control-allow-origin" not in h


def test_cors_terminate_unmatched(backend, portico):
    cors = {"cors": {"terminate-unmatched-request": True, "allowed-origins": {"origin": ["*"]},
                     "allowed-headers": {"header": ["*"]}}}
    p = portico(gw_config(backend, [cors], subs=False))
    status, h, _ = p.request("GET", "/echo/items/1", headers={"Origin": "https://any.example"})
    assert status == 200 and h["access-control-allow-origin"] == "*"
    status, h, body = p.request("OPTIONS", "/echo/items/1", headers={
        "Origin": "https://any.example", "Access-Control-Request-Method": "PATCH"})
    assert status == 200 and body == b"" and "access-control-allow-origin" not in h


def test_cors_terminate_unmatched_simple_request(backend, portico):
    cors = {"cors": {"terminate-unmatched-request": True,
                     "allowed-origins": {"origin": ["https://app.example.com"]}}}
    p = portico(gw_config(backend, [cors], subs=False))
    status, h, body = p.request("GET", "/echo/items/1", headers={"Origin": "https://evil.example"})
    assert (status, body) == (200, b"") and "access-control-allow-origin" not in h
    assert backend.last() is None  # terminated: the backend was not called
    status, h, _ = p.request("GET", "/echo/items/1", headers={"Origin": "https://app.example.com"})
    assert status == 200 and h["access-control-allow-origin"] == "https://app.example.com"
    assert backend.last() is not None


def test_cors_credentials_with_star_is_refused(backend, portico):
    cors = {"cors": {"allow-credentials": True, "allowed-origins": {"origin": ["*"]}}}
    p = portico(gw_config(backend, [cors]), start=False)
    code, out = p.check()
    assert code != 0 and "allow-credentials cannot be used with the origin *" in out


# --------------------------------------------------- authentication-basic


def test_authentication_basic(backend, portico):
    p = portico(gw_config(backend, [{"authentication-basic": {"username": "svc", "password": "p:w"}}], subs=False))
    assert call(p, key=None, headers={"Authorization": "Bearer client-token"})[0] == 200
    assert backend.last().header("Authorization") == "Basic " + base64.b64encode(b"svc:p:w").decode()


def test_cors_preflight_runs_only_cors_and_needs_no_key(backend, portico):
    cfg = gw_config(backend, [CORS, {"rate-limit-by-key": {"calls": 1, "renewal-period": 60, "counter-key": "x"}},
                              {"check-header": {"name": "X-Must", "failed-check-httpcode": 400,
                                                "failed-check-error-message": "no", "ignore-case": False}}])
    cfg["policies"] = {"inbound": [{"check-header": {"name": "X-Global", "failed-check-httpcode": 400,
                                                     "failed-check-error-message": "no", "ignore-case": False}}]}
    p = portico(cfg)
    for _ in range(3):  # no key, no headers the other policies want, rate limit never touched
        status, h, _ = p.request("OPTIONS", "/echo/items/1", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"})
        assert status == 200 and h["access-control-allow-origin"] == "https://app.example.com"
    # an unmatched preflight gets an empty 200 without reaching the backend
    status, h, body = p.request("OPTIONS", "/echo/items/1", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert status == 200 and body == b"" and "access-control-allow-origin" not in h
    assert backend.last() is None
    # a real request still needs everything
    assert call(p, headers={"Origin": "https://app.example.com"})[0] == 400


def test_ip_filter_ipv6_clients(backend, portico):
    from conftest import free_port
    import socket as _s
    port = free_port(_s.AF_INET6)
    cfg = gw_config(backend, [{"ip-filter": {"action": "allow", "address": ["::1"]}}], subs=False)
    cfg["listen"].append("[::1]:%d" % port)
    p = portico(cfg)
    c = http.client.HTTPConnection("::1", port, timeout=10)
    c.request("GET", "/echo/items/1")
    assert c.getresponse().status == 200
    c.close()
    assert call(p, key=None)[0] == 403  # 127.0.0.1 is not ::1
    p.stop()
    cfg["apis"][0]["policies"]["inbound"][1] = {"ip-filter": {"action": "forbid", "address-range": [
        {"from": "::", "to": "::ffff"}]}}
    p = portico(cfg)
    c = http.client.HTTPConnection("::1", port, timeout=10)
    c.request("GET", "/echo/items/1")
    assert c.getresponse().status == 403
    c.close()
    assert call(p, key=None)[0] == 200


def test_ip_filter_unparsable_forwarded_entry_and_ipv4_mapped(backend, portico):
    """A trusted proxy's X-Forwarded-For entry that is no address is not taken
    as the caller: the proxy itself is (so FailedToParseCallerIP never comes
    from a forwarded header).  An IPv4-mapped IPv6 caller is its IPv4 address."""
    cfg = gw_config(backend, [{"ip-filter": {"action": "allow", "address": ["203.0.113.9"]}}],
                    subs=False, trustedProxies=["127.0.0.1/32"])
    p = portico(cfg)
    status, _, body = call(p, key=None, headers={"X-Forwarded-For": "not-an-address"})
    assert status == 403 and p.access_entries(wait_for=1)[-1]["reason"] == "CallerIpNotAllowed", body
    assert call(p, key=None, headers={"X-Forwarded-For": "::ffff:203.0.113.9"})[0] == 200
    assert call(p, key=None, headers={"X-Forwarded-For": "::ffff:203.0.113.10"})[0] == 403
