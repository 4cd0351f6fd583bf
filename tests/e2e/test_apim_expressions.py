"""Expressions written for APIM (C#) and unknown members of `context` are
refused when the policy is saved -- by the management API (400 naming the
statement, with the Lua equivalent), when the configuration file loads and
with `portico -t` (file:line:column) -- never at the first request. Valid
Lua that merely mentions C# in a string is accepted and runs."""

import pytest

from conftest import basic_config
from mgmt_helpers import TOKEN, Mgmt, gateway_call, mgmt_config


CSHARP = [
    ('@(context.Request.Headers.GetValueOrDefault("x-tier", ""))',
     ["'Request' is the C# name", "':get('", '@(context.request.headers:get("x-tier", ""))']),
    ('@((string)context.Variables["tier"])',
     ["the cast '(string)'", '@(context.variables["tier"])']),
    ('@(context.Request.Body.As<JObject>(preserveContent: true)["id"])',
     ["'.As<JObject>('", "named argument", '@(context.request.body:asJson( true)["id"])']),
    ("@(DateTime.UtcNow)", ["'DateTime.UtcNow'", "@(now())"]),
    ("@(context.requets.method)", ["has no member 'requets'", "did you mean 'context.request'?"]),
]
IDS = ["headers", "cast", "body-as", "datetime", "typo"]


def refusal_text(err):
    """The 400's message and every detail (message and target) as one text."""
    e = err["error"]
    return " | ".join([e["message"]] + ["%s @ %s" % (d["message"], d.get("target", ""))
                                         for d in e.get("details", [])])


def policy_with(value):
    return {"inbound": ["base", {"set-header": {"name": "X-Out", "value": value}}]}


@pytest.fixture
def env(backend, portico):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "apis/echo2", {"displayName": "Echo", "path": "echo2", "serviceUrl": backend.url,
                               "subscriptionRequired": False})
    m.ok("PUT", "apis/echo2/operations/all", {"method": "*", "urlTemplate": "/*"})
    return p, m


@pytest.mark.parametrize("value, words", CSHARP, ids=IDS)
def test_rest_put_refuses_csharp_with_the_lua_form(env, backend, value, words):
    p, m = env
    m.ok("PUT", "apis/echo2/policies/policy", policy_with("before"))
    st, _, err = m.call("PUT", "apis/echo2/policies/policy", policy_with(value))
    assert st == 400, err
    assert err["error"]["code"] == "ValidationError", err
    message = refusal_text(err)
    assert "inbound[1].set-header.value" in message, message  # names the statement
    details = err["error"]["details"]
    assert any(d["message"].startswith("api 'echo2' \u203a inbound[1] set-header value: expression: ")
               for d in details), details  # ... and in words
    for w in words:
        assert w in message, (w, message)
    # the stored policy is still the one before, and it still runs
    assert m.ok("GET", "apis/echo2/policies/policy")["inbound"][1]["set-header"]["value"] == "before"
    assert gateway_call(p, "/echo2/x")[0] == 200
    assert backend.last().header("X-Out") == "before"


def test_rest_put_accepts_lua_that_mentions_csharp_in_strings(env, backend):
    p, m = env
    value = "@('context.Request.Headers' .. (context.request.headers:get('x-tier', 'basic')) --[[ (string) ]])"
    m.ok("PUT", "apis/echo2/policies/policy", policy_with(value))
    assert gateway_call(p, "/echo2/x")[0] == 200
    assert backend.last().header("X-Out") == "context.Request.Headersbasic"


def test_operation_policy_is_checked_too(env):
    _, m = env
    st, _, err = m.call("PUT", "apis/echo2/operations/all/policies/policy",
                        policy_with("@(context.Variables.GetValueOrDefault<string>(\"n\", \"\"))"))
    assert st == 400 and '@(context.variables:get("n", ""))' in refusal_text(err), err


@pytest.mark.parametrize("value, words", CSHARP, ids=IDS)
def test_file_and_check_mode_report_position_and_lua_form(backend, portico, value, words):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = policy_with(value)
    p = portico(cfg, start=False)
    code, out = p.check()
    assert code != 0, out
    assert "portico.yaml:" in out, out  # file:line:column
    for w in words:
        assert w in out, (w, out)


def test_valid_lua_file_passes_check(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["policies"] = policy_with("@(context.request.headers:get('x-tier', 'basic'))")
    code, out = portico(cfg, start=False).check()
    assert code == 0, out
