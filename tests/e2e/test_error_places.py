"""Errors name what the user wrote: entities by id, statements by section and
position ("api 'echo' › operation 'get-item' › inbound[1] set-header value"),
after file:line:column for what the file declares -- in `portico -t`, in
the management API's 400s (the machine path stays the detail's target), and
for expressions that fail at run time (the error log and on-error's
context.lastError.message)."""

import json
import re

from conftest import basic_config, wait_for
from mgmt_helpers import TOKEN, Mgmt, gateway_call, mgmt_config

SEP = " \u203a "
NIL_INDEX = "@(context.request.headers:get('X-Missing').field)"


def failing_operation(cfg, value=NIL_INDEX):
    op = cfg["apis"][0]["operations"][0]  # get-item
    op["policies"] = {
        "inbound": ["base", {"set-header": {"name": "X-Out", "value": value}}],
        "on-error": [{"return-response": {
            "set-status": {"code": 500},
            "set-header": [{"name": "X-Last-Error", "value": "@(context.lastError.message)"}]}}],
    }
    return cfg


def test_check_names_api_operation_and_statement(backend, portico):
    cfg = failing_operation(basic_config(backend.url), "@(context.Request.Method)")
    code, out = portico(cfg, start=False).check()
    assert code != 0, out
    m = re.search(r"portico\.yaml:(\d+):(\d+): (.*)", out)
    assert m, out
    assert m.group(3).startswith("api 'echo'" + SEP + "operation 'get-item'" + SEP + "inbound[1] set-header value: "), out


def test_runtime_error_names_the_statement_in_log_and_last_error(backend, portico):
    p = portico(failing_operation(basic_config(backend.url)))
    status, headers, _ = p.request("GET", "/echo/items/1")
    assert status == 500
    assert backend.last() is None  # failed before forwarding
    where = "api 'echo'" + SEP + "operation 'get-item'" + SEP + "inbound[1] set-header value: "
    last = headers.get("x-last-error", "").encode("latin-1").decode()  # the header's UTF-8 bytes
    # a client learns the file's name, not the server's directories
    assert re.match(r"portico\.yaml:\d+:\d+: " + re.escape(where) + r"attempt to index", last), last
    assert "/" not in last.split(":")[0], last
    wait_for(lambda: where in p.log_text(), what="the error log line")
    line = [x for x in p.log_text().splitlines() if where in x][0]
    assert "attempt to index" in line and "expression:" not in line, line
    assert re.search(r"/\S*portico\.yaml:\d+:\d+: ", line), line  # the log keeps the full path


def test_runtime_error_of_a_block_gives_its_line(backend, portico):
    p = portico(failing_operation(basic_config(backend.url), "@{ local a = 1\n local b = nil\n return b.c }"))
    status, headers, _ = p.request("GET", "/echo/items/1")
    assert status == 500
    last = headers.get("x-last-error", "").encode("latin-1").decode()
    assert "inbound[1] set-header value (line 3 of the expression): attempt to index" in last, last


def test_rest_names_entities_and_keeps_the_target(backend, portico):
    p = portico(mgmt_config(backend.url), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    m.ok("PUT", "apis/orders", {"displayName": "Orders", "path": "orders", "serviceUrl": backend.url,
                                "subscriptionRequired": False})
    m.ok("PUT", "apis/orders/operations/get-item", {"method": "GET", "urlTemplate": "/items/{id}"})
    bad = {"inbound": ["base", {"ip-filter": {"action": "allow", "address": ["nope"]}}]}
    st, _, err = m.call("PUT", "apis/orders/operations/get-item/policies/policy", bad)
    assert st == 400, err
    d = err["error"]["details"][0]
    assert d["target"].startswith("inbound[1].ip-filter.address"), d  # the machine path, as documented
    assert d["message"].startswith("api 'orders'" + SEP + "operation 'get-item'" + SEP +
                                   "inbound[1] ip-filter address"), d
    # at run time, a policy stored through the API is named the same way
    m.ok("PUT", "apis/orders/operations/get-item/policies/policy",
         {"inbound": ["base", {"set-header": {"name": "X-Out", "value": NIL_INDEX}}]})
    assert gateway_call(p, "/orders/items/1")[0] == 500
    where = "api 'orders'" + SEP + "operation 'get-item'" + SEP + "inbound[1] set-header value: attempt to index"
    wait_for(lambda: where in p.log_text(), what="the error log line: " + p.log_text()[-600:])
