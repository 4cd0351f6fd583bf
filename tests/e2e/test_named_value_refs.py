"""Named-value references in policy attribute values: {{id}} is replaced by
the named value; text that only looks like a reference ({{ not a name }},
JSON such as {{"a":1}}, an unclosed {{) reaches the backend as written; an
unknown name is refused at load (file:line:column) and through the
management API, with the named values that exist, the closest first."""

import pytest

from conftest import basic_config
from mgmt_helpers import TOKEN, Mgmt, gateway_call, mgmt_config

NAMED = [{"id": "greeting", "displayName": "greeting", "value": "hello"},
         {"id": "other", "displayName": "other", "value": "x"},
         {"id": "zzz-last", "displayName": "zzz-last", "value": "y"}]


def config_with(backend, value, header="X-Out"):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [dict(n) for n in NAMED]
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"set-header": {"name": header, "value": value}}]}
    return cfg


@pytest.mark.parametrize("value, sent", [
    ("{{greeting}}", "hello"),
    ("{{ not a name }}", "{{ not a name }}"),
    ('{{"a":1}}', '{{"a":1}}'),
    ("{{#each items}}{{/each}}", "{{#each items}}{{/each}}"),
    ("open {{greeting", "open {{greeting"),
    ("{{ x }} and {{greeting}}, {{{greeting}}}", "{{ x }} and hello, {{{greeting}}}"),
], ids=["known", "spaces", "json", "mustache", "unclosed", "mixed"])
def test_only_names_are_replaced(backend, portico, value, sent):
    p = portico(config_with(backend, value))
    status, _, _ = p.request("GET", "/echo/x")
    assert status == 200
    assert backend.last().header("X-Out") == sent


def test_unknown_name_lists_the_named_values_closest_first(backend, portico):
    p = portico(config_with(backend, "{{greting}}"), start=False)
    code, out = p.check()
    assert code != 0 and "portico.yaml:" in out, out
    assert "unknown named value 'greting' (named values: 'greeting', 'other', 'zzz-last')" in out, out


def test_closest_first_is_not_alphabetical(backend, portico):
    code, out = portico(config_with(backend, "{{zzz-lst}}"), start=False).check()
    assert code != 0, out
    assert "unknown named value 'zzz-lst' (named values: 'zzz-last', 'other', 'greeting')" in out, out


def test_unknown_name_without_any_named_value(backend, portico):
    cfg = config_with(backend, "{{nothing}}")
    del cfg["namedValues"]
    code, out = portico(cfg, start=False).check()
    assert code != 0 and "unknown named value 'nothing' (no named values are defined)" in out, out


def test_rest_refusal_lists_the_named_values_and_keeps_the_policy(backend, portico):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "apis/echo2", {"displayName": "Echo", "path": "echo2", "serviceUrl": backend.url,
                               "subscriptionRequired": False})
    m.ok("PUT", "apis/echo2/operations/all", {"method": "*", "urlTemplate": "/*"})
    for n in NAMED:
        m.ok("PUT", "namedValues/" + n["id"], {"displayName": n["displayName"], "value": n["value"]})
    pol = {"inbound": ["base", {"set-header": {"name": "X-Out", "value": "{{greeting}} {{ as text }}"}}]}
    m.ok("PUT", "apis/echo2/policies/policy", pol)
    bad = {"inbound": ["base", {"set-header": {"name": "X-Out", "value": "{{otehr}}"}}]}
    st, _, err = m.call("PUT", "apis/echo2/policies/policy", bad)
    assert st == 400, err
    text = str(err)
    assert "unknown named value 'otehr' (named values: 'other', " in text, text
    assert gateway_call(p, "/echo2/x")[0] == 200
    assert backend.last().header("X-Out") == "hello {{ as text }}"


SECRET = "s3cr3t-db-password-0042"


@pytest.mark.parametrize("statement", [
    {"set-header": {"name": "x", "value": "@(context.Request .. '{{dbpassword}}')"}},  # C# caught by the check
    {"set-header": {"name": "x", "value": "@(('{{dbpassword}}' .. ))"}},                # Lua syntax error
    {"rate-limit": {"calls": "{{dbpassword}}", "renewal-period": 60}},                   # not an integer
], ids=["csharp", "syntax", "integer"])
def test_a_refusal_never_shows_a_secret_named_value(backend, portico, statement):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "workspaces/ws", {"displayName": "WS"})
    ws = "workspaces/ws/"
    m.ok("PUT", ws + "namedValues/dbpassword", {"displayName": "dbpassword", "value": SECRET, "secret": True})
    m.ok("PUT", ws + "products/gold", {"displayName": "Gold", "state": "published"})
    pm = m.ok("PUT", "tokens/pm", {"role": "apiProductManager", "workspace": "ws"})["token"]
    # the role may write product policies but may not read the secret
    assert m.call("POST", ws + "namedValues/dbpassword/listValue", token=pm)[0] == 403
    st, _, err = m.call("PUT", ws + "products/gold/policies/policy", {"inbound": ["base", statement]}, token=pm)
    assert st == 400, (st, err)
    text = str(err)
    assert SECRET not in text and "{{dbpassword}}" in text, text
    assert all(d.get("message") for d in err["error"]["details"]), err
    assert SECRET not in p.log_text()
    assert m.call("GET", ws + "products/gold/policies/policy", token=pm)[0] == 404


def test_an_id_wins_over_an_earlier_display_name(backend, portico):
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "a", "displayName": "b", "value": "from-a"},
                          {"id": "b", "displayName": "other", "value": "from-b"}]
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"set-header": {"name": "X-Out", "value": "{{b}}"}}]}
    p = portico(cfg)
    assert p.request("GET", "/echo/x")[0] == 200
    assert backend.last().header("X-Out") == "from-b"


@pytest.mark.parametrize("secret", [False, True], ids=["plain", "secret"])
def test_a_named_value_holding_a_whole_csharp_expression_is_caught(backend, portico, secret):
    """A named value may hold a whole expression (named values come first, as in APIM): one written for
    APIM is refused at save time like one written in the policy, and a secret's text is never shown."""
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    tail = "hidden-tail-7731"
    m.ok("PUT", "namedValues/expr", {"displayName": "expr", "secret": secret,
                                     "value": "@(context.Request.Method + '%s')" % tail})
    m.ok("PUT", "products/gold", {"displayName": "Gold", "state": "published"})
    st, _, err = m.call("PUT", "products/gold/policies/policy",
                        {"inbound": ["base", {"set-header": {"name": "x", "value": "{{expr}}"}}]})
    assert st == 400, (st, err)
    text = str(err)
    assert "{{expr}}" in text, text
    if secret:
        assert tail not in text and tail not in p.log_text(), text
    else:
        assert "context.request" in text, text  # the Lua form is suggested
    assert m.call("GET", "products/gold/policies/policy")[0] == 404
