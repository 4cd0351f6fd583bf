"""Request tracing (APIM's debug tracing; docs/tracing.md): debug credentials,
traced requests with every statement recorded, the Expired / WrongAPI
verdicts, listTrace, the legacy Ocp-Apim-Trace with allowTracing, the trace
policy, and the attacks: tampered tokens, another workspace's API or trace,
forged trace locations.

The backend is the FlakyBackend of policy_helpers (it records what it
received and fails the first n calls of /fail/{n}/{status}/...)."""

import http.client
import json
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
