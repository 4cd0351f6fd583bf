"""Request tracing (APIM's debug tracing; docs/tracing.md): debug credentials,
traced requests with every statement recorded, the Expired / WrongAPI
verdicts, listTrace, the legacy Ocp-Apim-Trace with allowTracing, the trace
policy, and the attacks: tampered tokens, another workspace's API or trace,
forged trace locations.

The backend is the FlakyBackend of policy_helpers (it records what it
received and fails the first n calls of /fail/{n}/{status}/...)."""

import http.client
import json
import os
import sqlite3
import time
import urllib.parse

import pytest

from conftest import basic_config, free_port, wait_for
from mgmt_helpers import TOKEN, Mgmt
from policy_helpers import FlakyBackend


@pytest.fixture
def flaky():
    b = FlakyBackend()
    yield b
    b.close()


PIPELINE = {
    "inbound": [
        "base",
        {"set-variable": {"name": "who", "value": "@(context.request.headers:get('x-who', 'nobody'))"}},
        {"choose": [
            {"when": "@(context.variables.who == 'alice')", "then": [
                {"set-header": {"name": "X-Branch", "value": "alice"}}]},
            {"when": "@(context.variables.who == 'bob')", "then": [
                {"set-header": {"name": "X-Branch", "value": "bob"}},
                {"set-variable": {"name": "greeting", "value": "@('hi ' .. context.variables.who)"}}]},
            {"otherwise": [{"set-header": {"name": "X-Branch", "value": "other"}}]}]},
        {"set-header": {"name": "X-Drop", "exists-action": "delete"}},
        {"trace": {"source": "my-api", "severity": "information",
                   "message": "@('hello ' .. context.variables.who)",
                   "metadata": [{"name": "tier", "value": "gold"}]}},
    ],
    "backend": [
        {"retry": {"condition": "@(context.response.statusCode >= 500)", "count": 2, "interval": 0,
                   "policies": [{"forward-request": {}}]}},
    ],
    "outbound": [
        "base",
        {"set-header": {"name": "X-Out", "value": "@(tostring(context.response.statusCode))"}},
    ],
}


def world_config(flaky_url, **extra):
    cfg = basic_config(flaky_url)
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    cfg["apis"][0]["policies"] = PIPELINE
    cfg["apis"].append({"id": "other", "path": "other", "serviceUrl": flaky_url + "/o",
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]})
    cfg.update(extra)
    return cfg


@pytest.fixture
def world(flaky, portico):
    p = portico(world_config(flaky.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p), flaky


def credentials(m, api="echo", expire="PT1H", **kw):
    return m.ok("POST", "gateways/managed/listDebugCredentials",
                {"credentialsExpireAfter": expire, "apiId": api, "purposes": ["tracing"]}, **kw)["token"]


def get_trace(m, trace_id, path="gateways/managed/listTrace", **kw):
    """The trace once its request has ended (it is stored at the end of the request)."""
    def fetch():
        st, _, out = m.call("POST", path, {"traceId": trace_id}, **kw)
        return out if st == 200 else None
    return wait_for(fetch, what="trace %s" % trace_id)


def entries(trace, section):
    return trace["traceEntries"][section]


def test_traced_request_shows_every_step(world):
    p, m, flaky = world
    token = credentials(m, "/apis/echo")  # APIM's /apis/{id} form is accepted too
    status, h, body = p.request("GET", "/echo/fail/1/503/t1",
                                headers={"Apim-Debug-Authorization": token, "X-Who": "bob", "X-Drop": "x"})
    assert status == 200, body
    trace_id = h["apim-trace-id"]
    assert len(trace_id) == 32
    # the debug header never reaches the backend (twice called: the retry)
    hits = flaky.hits("/t1")
    assert len(hits) == 2
    for hit in hits:
        assert not any(k.lower() == "apim-debug-authorization" for k in hit["headers"])
    trace = get_trace(m, trace_id)
    print(json.dumps(trace, indent=1))
    assert trace["traceId"] == trace_id and trace["apiId"] == "echo"
    assert trace["truncated"] is False
    inbound = entries(trace, "inbound")
    assert [e.get("path") for e in inbound] == [
        None, "set-variable[1]", "choose[2]", "choose[2]/when[2]/set-header[1]",
        "choose[2]/when[2]/set-variable[2]", "set-header[3]", "trace[4]"]
    assert [e["source"] for e in inbound] == [
        "api-inspector", "set-variable", "choose", "set-header", "set-variable", "set-header", "my-api"]
    insp = inbound[0]["data"]
    assert insp["request"]["method"] == "GET" and insp["request"]["url"].endswith("/echo/fail/1/503/t1")
    assert not any(x["name"].lower() == "apim-debug-authorization" for x in insp["request"]["headers"])
    assert insp["configuration"]["api"]["id"] == "echo"
    # variables with their values, the expression values
    sv = inbound[1]["data"]
    assert sv["variablesSet"] == [{"name": "who", "value": "bob"}]
    assert sv["expressions"] == [{"expression": "context.request.headers:get('x-who', 'nobody')", "value": "bob"}]
    ch = inbound[2]["data"]
    assert ch["branch"] == "when[2]"
    assert [x["value"] for x in ch["expressions"]] == [False, True]
    assert inbound[3]["data"]["headersSet"] == [{"message": "request", "name": "X-Branch", "value": "bob"}]
    assert inbound[4]["data"]["variablesSet"] == [{"name": "greeting", "value": "hi bob"}]
    assert inbound[5]["data"]["headersRemoved"] == [{"message": "request", "name": "X-Drop", "value": "x"}]
    tr = inbound[6]["data"]
    assert tr["severity"] == "information" and tr["message"] == "hello bob" and tr["metadata"] == {"tier": "gold"}
    # times: offsets grow, durations are there
    starts = [e["startMicros"] for e in inbound]
    assert starts == sorted(starts)
    for e in inbound:
        assert e["durationMicros"] >= 0 and e["elapsed"].startswith("00:00:0")
        assert e["timestamp"].endswith("Z")
    # backend: retry, two forward-requests with their heads, the retry's decisions
    backend = entries(trace, "backend")
    assert [(e["source"], e.get("path")) for e in backend] == [
        ("retry", "retry[1]"), ("forward-request", "retry[1]/forward-request[1]"), ("retry", "retry[1]"),
        ("forward-request", "retry[1]/forward-request[1]"), ("retry", "retry[1]")]
    f1, f2 = backend[1]["data"], backend[3]["data"]
    assert f1["request"]["method"] == "GET"
    assert f1["request"]["url"] == flaky.url + "/base/fail/1/503/t1"
    sent = {x["name"].lower(): x["value"] for x in f1["request"]["headers"]}
    assert sent["x-branch"] == "bob" and "x-drop" not in sent and "apim-debug-authorization" not in sent
    assert f1["response"]["status"] == 503 and f2["response"]["status"] == 200
    assert {"name": "X-Attempt", "value": "2"} in f2["response"]["headers"]
    assert backend[2]["data"]["retry"] == {"attempts": 0, "again": True, "waitMs": 0}
    assert backend[2]["data"]["expressions"][0]["value"] is True
    assert backend[4]["data"]["retry"]["again"] is False
    outbound = entries(trace, "outbound")
    assert outbound[0]["path"] == "set-header[1]"
    assert outbound[0]["data"]["headersSet"] == [{"message": "response", "name": "X-Out", "value": "200"}]
    assert outbound[-1]["source"] == "transfer-response" and outbound[-1]["data"]["response"]["status"] == 200
    assert entries(trace, "on-error") == []
    # the trace policy wrote to the log too (information >= the default verbosity)
    wait_for(lambda: "trace [information] my-api: hello bob" in p.log_text(), what="the trace log line")


def test_untraced_request_gets_no_trace_id(world):
    p, m, flaky = world
    status, h, _ = p.request("GET", "/echo/plain", headers={"X-Who": "alice"})
    assert status == 200
    assert not any(k.startswith("apim-") for k in h)


def test_expired_token_is_served_untraced(world):
    p, m, flaky = world
    token = credentials(m, expire="PT1S")
    time.sleep(1.1)
    status, h, _ = p.request("GET", "/echo/late", headers={"Apim-Debug-Authorization": token})
    assert status == 200
    assert h["apim-debug-authorization-expired"] == "true"
    assert "apim-trace-id" not in h
    # served normally, and the header did not travel on
    hit = flaky.hits("/late")[0]
    assert not any(k.lower().startswith("apim-debug") for k in hit["headers"])


def test_token_for_another_api(world):
    p, m, flaky = world
    token = credentials(m, "other")
    status, h, _ = p.request("GET", "/echo/wrong", headers={"Apim-Debug-Authorization": token})
    assert status == 200
    assert h["apim-debug-authorization-wrongapi"] == "true"
    assert "apim-trace-id" not in h
    # the same token works for its own API
    status, h, _ = p.request("GET", "/other/right", headers={"Apim-Debug-Authorization": token})
    assert status == 200 and len(h["apim-trace-id"]) == 32
    trace = get_trace(m, h["apim-trace-id"])
    assert trace["apiId"] == "other"


def flip(s, i):
    return s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]


def test_tampered_and_garbage_tokens_are_ignored(world):
    p, m, flaky = world
    token = credentials(m, "other")
    head, api, exp, sig = token.split(".")
    forged = [
        ".".join([head, "ZWNobw", exp, sig]),             # "echo" in place of "other", same signature
        ".".join([head, api, str(int(exp) + 10 ** 9), sig]),  # a later expiry
        flip(token, len(token) - 1),                      # the signature changed
        "v1.ZWNobw.99999999999999." + "0" * 64,            # made up
        "garbage", "", "v1....", "v1." + "A" * 600,
    ]
    for f in forged:
        status, h, _ = p.request("GET", "/echo/forged", headers={"Apim-Debug-Authorization": f})
        assert status == 200, f
        assert not any(k.startswith("apim-") for k in h), (f, h)
    for hit in flaky.hits("/forged"):
        assert not any(k.lower().startswith("apim-debug") for k in hit["headers"])


def test_list_trace_unknown_and_bad_input(world):
    p, m, flaky = world
    for tid in ("0" * 32, "nope", "../../etc/passwd"):
        st, _, out = m.call("POST", "gateways/managed/listTrace", {"traceId": tid})
        assert st == 404 and out["error"]["code"] == "ResourceNotFound", (tid, st, out)
    st, _, out = m.call("POST", "gateways/managed/listTrace", {})
    assert st == 400
    for body, what in [({"credentialsExpireAfter": "PT2H", "apiId": "echo"}, "PT1H"),
                       ({"credentialsExpireAfter": "PT61M", "apiId": "echo"}, "PT1H"),
                       ({"credentialsExpireAfter": "P1D", "apiId": "echo"}, "PT1H"),
                       ({"credentialsExpireAfter": "1h", "apiId": "echo"}, "ISO 8601"),
                       ({"credentialsExpireAfter": "P1M", "apiId": "echo"}, "ISO 8601"),
                       ({"credentialsExpireAfter": "PT1H"}, "apiId"),
                       ({"apiId": "echo", "purposes": ["debugging"]}, "purposes"),
                       ([], "object")]:
        st, _, out = m.call("POST", "gateways/managed/listDebugCredentials", body)
        assert st == 400 and what in out["error"]["message"], (body, st, out)
    st, _, out = m.call("POST", "gateways/managed/listDebugCredentials", {"apiId": "nosuch"})
    assert st == 404
    # PT1H exactly, PT30M and the default are fine
    for e in ("PT1H", "PT30M", "PT0.5S", "PT59M59S"):
        assert credentials(m, expire=e).startswith("v1.")
    assert m.ok("POST", "gateways/managed/listDebugCredentials", {"apiId": "echo"})["token"]


def test_on_error_entries_for_a_failing_backend(flaky, portico):
    cfg = world_config(flaky.url)
    cfg["apis"][0]["serviceUrl"] = "http://127.0.0.1:%d/base" % free_port()  # nobody listens
    cfg["apis"][0]["policies"] = {
        "inbound": [{"set-variable": {"name": "v", "value": "1"}}],
        "on-error": [{"set-header": {"name": "X-Reason", "value": "@(context.lastError.reason)"}}]}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    status, h, _ = p.request("GET", "/echo/down", headers={"Apim-Debug-Authorization": credentials(m)})
    assert status == 502 and h["x-reason"] == "BackendConnectionFailure"
    trace = get_trace(m, h["apim-trace-id"])
    fwd = [e for e in entries(trace, "backend") if e["source"] == "forward-request"]
    assert fwd and fwd[0]["data"]["status"] == "error"
    assert fwd[0]["data"]["request"]["url"].endswith("/base/down")
    assert fwd[0]["data"]["error"]["reason"] == "BackendConnectionFailure"
    on_error = entries(trace, "on-error")
    assert on_error[0]["source"] == "forward-request"
    err = on_error[0]["data"]["lastError"]
    assert err["reason"] == "BackendConnectionFailure" and err["section"] == "backend"
    assert err["path"] == "forward-request[1]"
    assert on_error[1]["path"] == "set-header[1]"
    assert on_error[1]["data"]["headersSet"] == [
        {"message": "response", "name": "X-Reason", "value": "BackendConnectionFailure"}]
    assert trace["statusCode"] == 502


# ------------------------------------------------------------ workspaces

@pytest.fixture
def workspaces(flaky, portico):
    cfg = world_config(flaky.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    for ws in ("wsa", "wsb"):
        m.ok("PUT", "workspaces/" + ws, {"displayName": ws})
        m.ok("PUT", "workspaces/%s/apis/%sapi" % (ws, ws), {"path": ws, "serviceUrl": flaky.url + "/" + ws,
                                                            "subscriptionRequired": False})
        m.ok("PUT", "workspaces/%s/apis/%sapi/operations/all" % (ws, ws), {"method": "GET", "urlTemplate": "/*"})
    dev = m.ok("PUT", "tokens/dev-a", {"role": "apiDeveloper", "workspace": "wsa"})["token"]
    reader = m.ok("PUT", "tokens/reader-b", {"role": "workspaceReader", "workspace": "wsb"})["token"]
    return p, m, dev, reader


def test_workspace_member_gets_tokens_for_its_own_apis_only(workspaces):
    p, m, dev, reader = workspaces
    base = "workspaces/wsa/gateways/managed/listDebugCredentials"
    tok = m.ok("POST", base, {"apiId": "wsaapi", "credentialsExpireAfter": "PT10M"}, token=dev)["token"]
    status, h, _ = p.request("GET", "/wsa/x", headers={"Apim-Debug-Authorization": tok})
    assert status == 200 and "apim-trace-id" in h
    # the attack: another workspace's API, through the own workspace's path or the other's or the service's
    st, _, _ = m.call("POST", base, {"apiId": "wsbapi"}, token=dev)
    assert st == 404
    st, _, _ = m.call("POST", base, {"apiId": "/apis/wsbapi"}, token=dev)
    assert st == 404
    st, _, _ = m.call("POST", "workspaces/wsb/gateways/managed/listDebugCredentials", {"apiId": "wsbapi"},
                      token=dev)
    assert st == 403
    st, _, _ = m.call("POST", "gateways/managed/listDebugCredentials", {"apiId": "wsbapi"}, token=dev)
    assert st == 403
    st, _, _ = m.call("POST", base, {"apiId": "echo"}, token=dev)  # a service-level API
    assert st == 404


def test_workspace_member_reads_its_own_traces_only(workspaces):
    p, m, dev, reader = workspaces
    ids = {}
    for ws in ("wsa", "wsb"):
        tok = credentials(m, ws + "api")
        status, h, _ = p.request("GET", "/%s/x" % ws, headers={"Apim-Debug-Authorization": tok})
        ids[ws] = h["apim-trace-id"]
        get_trace(m, ids[ws])  # the administrator sees both
    assert get_trace(m, ids["wsa"], "workspaces/wsa/gateways/managed/listTrace", token=dev)["apiId"] == "wsaapi"
    # readers may not: a trace shows what policies set from secret named values
    st, _, _ = m.call("POST", "workspaces/wsb/gateways/managed/listTrace", {"traceId": ids["wsb"]}, token=reader)
    assert st == 403
    st, _, _ = m.call("GET", "workspaces/wsb/gateways/managed/traces/" + ids["wsb"], token=reader)
    assert st == 403
    st, _, _ = m.call("POST", "workspaces/wsb/gateways/managed/listDebugCredentials", {"apiId": "wsbapi"},
                      token=reader)
    assert st == 403
    # the attack: wsb's trace through wsa's path (404: it does not exist there), wsb's path (403), the
    # service path (403), the trace URL with a bearer token
    st, _, _ = m.call("POST", "workspaces/wsa/gateways/managed/listTrace", {"traceId": ids["wsb"]}, token=dev)
    assert st == 404
    st, _, _ = m.call("POST", "workspaces/wsb/gateways/managed/listTrace", {"traceId": ids["wsb"]}, token=dev)
    assert st == 403
    st, _, _ = m.call("POST", "gateways/managed/listTrace", {"traceId": ids["wsb"]}, token=dev)
    assert st == 403
    st, _, _ = m.call("GET", "workspaces/wsa/gateways/managed/traces/" + ids["wsb"], token=dev)
    assert st == 404
    st, _, out = m.call("GET", "workspaces/wsa/gateways/managed/traces/" + ids["wsa"], token=dev)
    assert st == 200 and out["traceId"] == ids["wsa"]
    st, _, _ = m.call("GET", "gateways/managed/traces/" + ids["wsa"], token="")
    assert st == 401


# ---------------------------------------------------------- legacy tracing

def legacy_world(flaky, portico, allow):
    cfg = world_config(flaky.url)
    cfg["apis"][0]["subscriptionRequired"] = True
    cfg["subscriptions"] = [{"id": "s1", "scope": "/apis/echo", "primaryKey": "key-one-0001",
                             "allowTracing": allow}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


def fetch_location(url):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        c.request("GET", u.path + "?" + u.query)
        r = c.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        c.close()


def test_legacy_trace_with_allow_tracing(flaky, portico):
    p, m = legacy_world(flaky, portico, True)
    assert m.ok("GET", "subscriptions/s1")["allowTracing"] is True
    status, h, _ = p.request("GET", "/echo/legacy", headers={"Ocp-Apim-Subscription-Key": "key-one-0001",
                                                             "Ocp-Apim-Trace": "true"})
    assert status == 200
    loc = h["ocp-apim-trace-location"]
    assert loc.startswith("http://%s/management/gateways/managed/traces/" % p.config["management"]["listen"])
    assert "apim-trace-id" not in h
    assert not any(k.lower() == "ocp-apim-trace" for k in flaky.hits("/legacy")[0]["headers"])
    # the URL works without a bearer token
    st, trace = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(fetch_location(loc)),
                         what="the trace location")
    assert trace["traceEntries"]["inbound"][0]["data"]["configuration"]["subscription"] == "s1"
    # ... but not once changed: another id, another expiry, no signature
    u = urllib.parse.urlsplit(loc)
    q = dict(urllib.parse.parse_qsl(u.query))
    tid = u.path.rsplit("/", 1)[1]
    base = "%s://%s%s" % (u.scheme, u.netloc, u.path.rsplit("/", 1)[0])
    for bad in ["%s/%s?expires=%s&sig=%s" % (base, "0" * 32, q["expires"], q["sig"]),
                "%s/%s?expires=%d&sig=%s" % (base, tid, int(q["expires"]) + 3600, q["sig"]),
                "%s/%s?expires=%s&sig=%s" % (base, tid, q["expires"], "0" * 64),
                "%s/%s?expires=%s&sig=" % (base, tid, q["expires"])]:
        st, _ = fetch_location(bad)
        assert st == 403, bad
    st, _ = fetch_location("%s/%s" % (base, tid))
    assert st == 401
    # without the header, or with another value: not traced
    for hd in ({}, {"Ocp-Apim-Trace": "false"}):
        hd["Ocp-Apim-Subscription-Key"] = "key-one-0001"
        status, h, _ = p.request("GET", "/echo/legacy2", headers=hd)
        assert status == 200 and "ocp-apim-trace-location" not in h


def test_legacy_trace_without_allow_tracing(flaky, portico):
    p, m = legacy_world(flaky, portico, False)
    status, h, _ = p.request("GET", "/echo/legacy", headers={"Ocp-Apim-Subscription-Key": "key-one-0001",
                                                             "Ocp-Apim-Trace": "true"})
    assert status == 200 and "ocp-apim-trace-location" not in h
    assert not any(k.lower() == "ocp-apim-trace" for k in flaky.hits("/legacy")[0]["headers"])
    # turned on through the management API: it holds, with the time it was turned on
    m.ok("PUT", "subscriptions/s2", {"scope": "/apis/echo", "state": "active", "allowTracing": True})
    sub = m.ok("GET", "subscriptions/s2")
    assert sub["allowTracing"] is True and sub["allowTracingSince"].endswith("Z")
    key = m.keys("s2")["primaryKey"]
    status, h, _ = p.request("GET", "/echo/legacy3", headers={"Ocp-Apim-Subscription-Key": key,
                                                              "Ocp-Apim-Trace": "true"})
    assert status == 200 and "ocp-apim-trace-location" in h
    # an hour after it was turned on it has lapsed (APIM): a store older than that is shown and used as off
    m.ok("PATCH", "subscriptions/s2", {"displayName": "renamed"})
    assert m.ok("GET", "subscriptions/s2")["allowTracingSince"] == sub["allowTracingSince"]
    m.ok("PUT", "subscriptions/s2", {"scope": "/apis/echo", "state": "active", "allowTracing": False})
    assert "allowTracingSince" not in m.ok("GET", "subscriptions/s2")
    status, h, _ = p.request("GET", "/echo/legacy4", headers={"Ocp-Apim-Subscription-Key": key,
                                                              "Ocp-Apim-Trace": "true"})
    assert "ocp-apim-trace-location" not in h


def test_allow_tracing_lapses_an_hour_after_it_was_turned_on(flaky, portico):
    p, m = legacy_world(flaky, portico, False)
    m.ok("PUT", "subscriptions/s2", {"scope": "/apis/echo", "state": "active", "allowTracing": True})
    key = m.keys("s2")["primaryKey"]
    p.stop()
    # the store says it was turned on 61 minutes ago (what a restart an hour later finds)
    db = sqlite3.connect(os.path.join(p.workdir, "var", "portico.db"))
    body = json.loads(db.execute("SELECT body FROM entities WHERE kind='subscription' AND id='s2'").fetchone()[0])
    body["allowTracingSince"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 61 * 60))
    db.execute("UPDATE entities SET body=? WHERE kind='subscription' AND id='s2'", (json.dumps(body),))
    db.commit()
    db.close()
    p.start()
    m = Mgmt(p)
    assert m.ok("GET", "subscriptions/s2")["allowTracing"] is False
    status, h, _ = p.request("GET", "/echo/lapsed", headers={"Ocp-Apim-Subscription-Key": key,
                                                             "Ocp-Apim-Trace": "true"})
    assert status == 200 and "ocp-apim-trace-location" not in h
    # turning it on again starts a new hour
    m.ok("PUT", "subscriptions/s2", {"scope": "/apis/echo", "state": "active", "allowTracing": False})
    m.ok("PUT", "subscriptions/s2", {"scope": "/apis/echo", "state": "active", "allowTracing": True})
    status, h, _ = p.request("GET", "/echo/again", headers={"Ocp-Apim-Subscription-Key": key,
                                                            "Ocp-Apim-Trace": "true"})
    assert status == 200 and "ocp-apim-trace-location" in h


def test_trace_policy_logs_by_verbosity_and_costs_nothing_untraced(flaky, portico):
    cfg = world_config(flaky.url, tracing={"verbosity": "error"})
    cfg["apis"][0]["policies"] = {"inbound": [
        {"trace": {"source": "quiet", "message": "not logged"}},
        {"trace": {"source": "loud", "severity": "error", "message": "@('logged ' .. context.request.method)"}}]}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    status, h, _ = p.request("GET", "/echo/t")
    assert status == 200 and "apim-trace-id" not in h
    wait_for(lambda: "trace [error] loud: logged GET" in p.log_text(), what="the error-severity line")
    assert "not logged" not in p.log_text()


def test_bounded_store_and_trace_size(flaky, portico):
    cfg = world_config(flaky.url, tracing={"maxTraces": 2, "maxTraceSize": "4k"})
    cfg["apis"][0]["policies"] = {"inbound": [
        {"set-variable": {"name": "v%d" % i, "value": "@(string.rep('x', 300))"}} for i in range(40)]}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    token = credentials(m)
    ids = []
    for i in range(3):
        status, h, _ = p.request("GET", "/echo/b%d" % i, headers={"Apim-Debug-Authorization": token})
        assert status == 200
        ids.append(h["apim-trace-id"])
    last = get_trace(m, ids[2])
    assert last["truncated"] is True
    assert len(json.dumps(last)) < 16 * 1024
    assert entries(last, "outbound")[-1]["source"] == "transfer-response"  # the end is always there
    get_trace(m, ids[1])
    st, _, _ = m.call("POST", "gateways/managed/listTrace", {"traceId": ids[0]})  # pushed out
    assert st == 404


def test_tracing_switched_off_drops_the_headers_and_a_reload_switches_it_on(flaky, portico):
    cfg = world_config(flaky.url, tracing={"enabled": False})
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    token = credentials(m)
    status, h, _ = p.request("GET", "/echo/off", headers={"Apim-Debug-Authorization": token})
    assert status == 200 and not any(k.startswith("apim-") for k in h)
    assert not any(k.lower().startswith("apim-debug") for k in flaky.hits("/off")[0]["headers"])
    cfg["tracing"] = {"enabled": True}
    assert p.reload(cfg)
    status, h, _ = p.request("GET", "/echo/on", headers={"Apim-Debug-Authorization": token})
    assert status == 200 and "apim-trace-id" in h
    assert get_trace(m, h["apim-trace-id"])["traceEntries"]["backend"][0]["source"] == "retry"
