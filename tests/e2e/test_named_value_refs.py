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
