"""Prometheus metrics (/metrics) and the emit-metric policy, against the real
binary: exact counts after a known mix of traffic, read with a strict parser
of the text exposition format 0.0.4 written here (every line a comment or a
sample, TYPE before samples, one block per family, escaped label values,
histogram buckets cumulative with +Inf == _count); who may read; a listener
of its own; the series cap and its "other" series; emit-metric's built-in and
custom dimensions and expression values; its configuration errors at
file:line:column; reloads and the generation."""

import http.client
import math
import re
import socket

import pytest

from conftest import free_port, wait_for
from mgmt_helpers import TOKEN, Mgmt

KEY_GOLD = "a" * 32
KEY_SILVER = "b" * 32

NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


# ------------------------------------------------------------ the parser

class ExpositionError(AssertionError):
    pass


def _value(text, line):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$", text):
        raise ExpositionError("bad value %r in %r" % (text, line))
    return float(text)


def _labels(text, line):
    """name="value",... with \\\\, \\" and \\n escapes; returns a dict."""
    out = {}
    i = 0
    while i < len(text):
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", text[i:])
        if not m:
            raise ExpositionError("bad label at %r in %r" % (text[i:], line))
        name = m.group(1)
        i += m.end()
        val = []
        while True:
            if i >= len(text):
                raise ExpositionError("unterminated label value in %r" % line)
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ExpositionError("bad escape in %r" % line)
                val.append("\n" if nxt == "n" else nxt)
                i += 2
                continue
            if c == '"':
                i += 1
                break
            if c == "\n":
                raise ExpositionError("raw newline in a label value")
            val.append(c)
            i += 1
        if name in out:
            raise ExpositionError("label %s twice in %r" % (name, line))
        out[name] = "".join(val)
        if i < len(text):
            if text[i] != ",":
                raise ExpositionError("expected ',' in %r" % line)
            i += 1
    return out


def _family_of(sample, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix) and types.get(sample[:-len(suffix)]) == "histogram":
            return sample[:-len(suffix)]
    return sample


def parse(text):
    """Strictly parses an exposition; {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    fams, types, done, seen = {}, {}, set(), set()
    current = None
    for line in text[:-1].split("\n"):
        if line == "":
            raise ExpositionError("empty line")
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (\S+) ?(.*)$", line)
            if not m:
                continue  # a plain comment
            kind, name, rest = m.groups()
            if not NAME_RE.match(name):
                raise ExpositionError("bad metric name %r" % name)
            if name in done:
                raise ExpositionError("family %s appears in two blocks" % name)
            if current and current != name:
                done.add(current)
            current = name
            fam = fams.setdefault(name, {"type": "untyped", "help": None, "samples": []})
            if fam["samples"]:
                raise ExpositionError("%s after samples of %s" % (kind, name))
            if kind == "TYPE":
                if name in types:
                    raise ExpositionError("TYPE of %s twice" % name)
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ExpositionError("bad type %r" % rest)
                types[name] = fam["type"] = rest
            else:
                if fam["help"] is not None:
                    raise ExpositionError("HELP of %s twice" % name)
                if re.search(r"\\[^\\n]", rest):
                    raise ExpositionError("bad escape in HELP %r" % line)
                fam["help"] = rest
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m:
            raise ExpositionError("not a sample: %r" % line)
        sname, _, ltext, vtext = m.groups()
        labels = _labels(ltext or "", line)
        for ln in labels:
            if not LABEL_RE.match(ln) or ln.startswith("__"):
                raise ExpositionError("bad label name %r" % ln)
        fname = _family_of(sname, types)
        if fname not in types:
            raise ExpositionError("sample %r before the TYPE of its family" % line)
        if fname != current:
            raise ExpositionError("sample %r outside its family's block" % line)
        key = (sname, tuple(sorted(labels.items())))
        if key in seen:
            raise ExpositionError("sample %r twice" % line)
        seen.add(key)
        value = _value(vtext, line)
        if types[fname] == "counter" and (value < 0 or math.isnan(value)):
            raise ExpositionError("negative counter %r" % line)
        fams[fname]["samples"].append((sname, labels, value))
    for name, fam in fams.items():
        if fam["type"] == "histogram":
            _check_histogram(name, fam["samples"])
    return fams


def _check_histogram(name, samples):
    groups = {}
    for sname, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            if "le" not in labels:
                raise ExpositionError("bucket without le")
            g["buckets"].append((_value(labels["le"], labels["le"]), value))
        elif sname == name + "_sum":
            g["sum"] = value
        elif sname == name + "_count":
            g["count"] = value
    for rest, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise ExpositionError("%s%s: no +Inf bucket last" % (name, rest))
        if [le for le, _ in b] != sorted(le for le, _ in b) or len(set(le for le, _ in b)) != len(b):
            raise ExpositionError("%s%s: buckets out of order" % (name, rest))
        counts = [c for _, c in b]
        if counts != sorted(counts):
            raise ExpositionError("%s%s: buckets not cumulative" % (name, rest))
        if g["count"] is None or g["sum"] is None or counts[-1] != g["count"]:
            raise ExpositionError("%s%s: +Inf %s != _count %s" % (name, rest, counts[-1], g["count"]))


def test_the_parser_can_fail():
    good = "# HELP a_total x\n# TYPE a_total counter\na_total{x=\"1\\\"\\n\"} 3\n"
    assert parse(good)["a_total"]["samples"] == [("a_total", {"x": "1\"\n"}, 3.0)]
    for bad in ["a_total 1\n",                                          # no TYPE
                "# TYPE a counter\na 1\n# TYPE b counter\nb 1\na 2\n",   # two blocks
                "# TYPE a counter\na{x=\"1\"} 1\na{x=\"1\"} 2\n",        # duplicate
                "# TYPE a counter\na{x=\"\\q\"} 1\n",                    # bad escape
                "# TYPE a counter\na -1\n",                              # negative counter
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
                "# TYPE a counter\na{1x=\"1\"} 1\n"]:
        with pytest.raises(ExpositionError):
            parse(bad)


# ------------------------------------------------------------ helpers

def value(fams, family, sample=None, **labels):
    """The sum of the samples of `sample` (default: the family) whose labels include `labels`."""
    total = 0.0
    for sname, lab, v in fams.get(family, {"samples": []})["samples"]:
        if sname == (sample or family) and all(lab.get(k) == w for k, w in labels.items()):
            total += v
    return total


def series(fams, family, sample=None):
    return [lab for sname, lab, _ in fams.get(family, {"samples": []})["samples"] if sname == (sample or family)]


def get(port, path="/metrics", token=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        h = {"Authorization": "Bearer " + token} if token else {}
        c.request(method, path, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        c.close()


def mgmt_port(p):
    return int(p.config["management"]["listen"].rsplit(":", 1)[1])


def scrape(p, port=None, token=TOKEN):
    status, h, body = get(port or mgmt_port(p), token=token)
    assert status == 200, body
    assert h["content-type"].startswith("text/plain; version=0.0.4"), h
    return parse(body)


def config(backend, workers=2, **extra):
    ops = [{"id": "get-item", "method": "GET", "urlTemplate": "/items/{id}"},
           {"id": "status", "method": "GET", "urlTemplate": "/status/{code}"}]
    cfg = {
        "listen": ["127.0.0.1:%d" % free_port()],
        "workers": workers,
        "management": {"listen": "127.0.0.1:%d" % free_port()},
        "apis": [
            {"id": "shop", "path": "shop", "serviceUrl": backend.url, "subscriptionRequired": True,
             "operations": [dict(o) for o in ops]},
            {"id": "news", "path": "news", "serviceUrl": backend.url, "subscriptionRequired": True,
             "operations": [dict(o) for o in ops]},
        ],
        "products": [
            {"id": "gold", "displayName": "Gold", "state": "published", "apis": ["shop", "news"]},
            {"id": "silver", "displayName": "Silver", "state": "published", "apis": ["news"]},
        ],
        "users": [{"id": "u1", "email": "u1@example.com", "firstName": "U", "lastName": "One"}],
        "subscriptions": [
            {"id": "s-gold", "scope": "/products/gold", "primaryKey": KEY_GOLD, "secondaryKey": "c" * 32,
             "ownerId": "/users/u1"},
            {"id": "s-silver", "scope": "/products/silver", "primaryKey": KEY_SILVER, "secondaryKey": "d" * 32},
        ],
    }
    cfg.update(extra)
    return cfg


def call(p, path, key=None, headers=None):
    h = dict(headers or {})
    if key:
        h["Ocp-Apim-Subscription-Key"] = key
    return p.request("GET", path, headers=h)[0]


# ------------------------------------------------------------ requests

def test_counts_after_a_known_mix_are_exact(backend, portico):
    p = portico(config(backend), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    mix = [("/shop/items/1", KEY_GOLD, 200, 7), ("/news/items/2", KEY_SILVER, 200, 5),
           ("/news/items/3", KEY_GOLD, 200, 2), ("/shop/items/4", None, 401, 4),
           ("/shop/status/500", KEY_GOLD, 500, 3), ("/news/status/503", KEY_SILVER, 503, 2),
           ("/nowhere", None, 404, 1)]
    for path, key, status, n in mix:
        for _ in range(n):
            assert call(p, path, key) == status
    total = sum(n for _, _, _, n in mix)
    fams = wait_for(lambda: (lambda f: f if value(f, "portico_requests_total") == total else None)(scrape(p)),
                    what="every request counted")
    R = "portico_requests_total"
    assert fams[R]["type"] == "counter" and fams[R]["help"]
    assert value(fams, R, api="shop", operation="get-item", product="gold", status_class="2xx") == 7
    assert value(fams, R, api="news", operation="get-item", product="silver", status_class="2xx") == 5
    assert value(fams, R, api="news", operation="get-item", product="gold", status_class="2xx") == 2
    assert value(fams, R, api="shop", product="", status_class="4xx") == 4
    assert value(fams, R, api="shop", operation="status", product="gold", status_class="5xx") == 3
    assert value(fams, R, api="news", operation="status", product="silver", status_class="5xx") == 2
    assert value(fams, R, api="", operation="", product="", status_class="4xx") == 1
    D = "portico_request_duration_seconds"
    assert fams[D]["type"] == "histogram"
    assert value(fams, D, D + "_count", api="shop", operation="get-item", status_class="2xx") == 7
    assert value(fams, D, D + "_count", api="news", operation="get-item", status_class="2xx") == 7
    assert value(fams, D, D + "_count", api="news", operation="get-item", product="silver", status_class="2xx") == 5
    assert value(fams, D, D + "_count", api="news", operation="get-item", product="gold", status_class="2xx") == 2
    assert value(fams, D, D + "_count") == total
    assert value(fams, D, D + "_bucket", le="+Inf") == total
    assert 0 < value(fams, D, D + "_sum") < 60
    # backend calls: the refused ones (401, 404) never reached it
    B = "portico_backend_requests_total"
    assert value(fams, B, api="shop", status_class="2xx") == 7
    assert value(fams, B, api="shop", status_class="5xx") == 3
    assert value(fams, B, api="news", status_class="2xx") == 7
    assert value(fams, B, api="news", status_class="5xx") == 2
    assert value(fams, B) == 19
    BD = "portico_backend_duration_seconds"
    assert value(fams, BD, BD + "_count", api="shop") == 10 and value(fams, BD, BD + "_count") == 19
    # the rest of the documented families are there, typed
    for name, kind in [("portico_connections_active", "gauge"), ("portico_upstream_connections_idle", "gauge"),
                       ("portico_config_generation", "gauge"), ("portico_lua_memory_bytes", "gauge"),
                       ("portico_lua_timeouts_total", "counter"), ("portico_counters_used", "gauge"),
                       ("portico_counters_capacity", "gauge"), ("portico_plugin_loaded", "gauge"),
                       ("portico_build_info", "gauge"), ("process_start_time_seconds", "gauge")]:
        assert fams[name]["type"] == kind, name
    assert value(fams, "portico_plugin_loaded", plugin="observe", status="loaded") == 1
    assert value(fams, "portico_counters_capacity") == 1000000
    # pooled backend connections and an open client connection show up (gauges, published every 50 ms)
    s = socket.create_connection(("127.0.0.1", p.port))
    try:
        wait_for(lambda: value(scrape(p), "portico_connections_active") >= 1, what="the open connection")
    finally:
        s.close()
    assert value(scrape(p), "portico_upstream_connections_idle") >= 1


def test_a_client_that_leaves_before_the_answer_counts_as_none(backend, portico):
    cfg = config(backend, workers=1)
    cfg["apis"][0]["operations"].append({"id": "any", "method": "GET", "urlTemplate": "/*"})
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(("GET /shop/slow/sleep/800 HTTP/1.1\r\nHost: x\r\nOcp-Apim-Subscription-Key: %s\r\n\r\n"
               % KEY_GOLD).encode())
    wait_for(lambda: backend.requests, what="the backend call")
    s.close()  # before the backend answers

    def counted():
        f = scrape(p)
        return f if value(f, "portico_requests_total", api="shop") == 1 else None
    fams = wait_for(counted, timeout=5, what="the request counted", step=0.05)
    assert value(fams, "portico_requests_total", api="shop", status_class="none") == 1
    assert value(fams, "portico_request_duration_seconds", "portico_request_duration_seconds_count",
                 api="shop", status_class="none") == 1


def test_who_may_read_the_metrics(backend, portico):
    p = portico(config(backend, workers=1), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    port = mgmt_port(p)
    status, h, _ = get(port)
    assert status == 401 and "bearer" in h.get("www-authenticate", "").lower()
    assert get(port, token="wrong")[0] == 401
    assert get(port, token=TOKEN)[0] == 200
    assert get(port, token=TOKEN, method="HEAD")[0] == 200
    m.ok("PUT", "workspaces/wsa", {"displayName": "A"})
    reader = m.ok("PUT", "tokens/t-reader", {"role": "reader"})["token"]
    assert get(port, token=reader)[0] == 200
    for role in ("workspaceContributor", "workspaceReader", "apiDeveloper", "apiProductManager"):
        tok = m.ok("PUT", "tokens/t-" + role, {"role": role, "workspace": "wsa"})["token"]
        status, _, body = get(port, token=tok)
        assert status == 403, (role, body)
        assert "portico_requests_total" not in body
    # a write is not a read
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/metrics", body=b"x", headers={"Authorization": "Bearer " + TOKEN})
    assert c.getresponse().status == 405
    c.close()
    # auth: none opens it, on reload
    cfg = dict(p.config)
    cfg["metrics"] = {"auth": "none", "path": "/prom"}
    assert p.reload(cfg)
    status, _, body = get(port, "/prom")
    assert status == 200
    parse(body)
    assert get(port, "/metrics", token=TOKEN)[0] == 404  # moved
    cfg["metrics"] = {"enabled": False}
    assert p.reload(cfg)
    assert get(port, "/metrics", token=TOKEN)[0] == 404


def test_a_listener_of_its_own(backend, portico):
    mport = free_port()
    cfg = config(backend, workers=1, metrics={"listen": "127.0.0.1:%d" % mport, "auth": "none"})
    del cfg["management"]
    p = portico(cfg)
    assert call(p, "/shop/items/1", KEY_GOLD) == 200
    wait_for(lambda: value(scrape(p, mport, token=None), "portico_requests_total", api="shop") == 1,
             what="the request on the metrics listener")
    status, _, body = get(mport, "/other")
    assert status == 404 and "portico_" not in body
    # with token auth and no management listener: only the administrator token of the environment
    p.stop()
    cfg["metrics"] = {"listen": "127.0.0.1:%d" % mport}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    assert get(mport)[0] == 401
    assert get(mport, token=TOKEN)[0] == 200


def test_series_cap_puts_the_rest_in_other(backend, portico):
    ops = [{"id": "op%d" % i, "method": "GET", "urlTemplate": "/o%d" % i} for i in range(12)]
    cfg = config(backend, workers=2, metrics={"maxSeries": 5})
    cfg["apis"][0]["operations"] = ops
    cfg["apis"][0]["subscriptionRequired"] = False
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    for rnd in range(3):
        for i in range(12):
            assert call(p, "/shop/o%d" % i) == 200
    fams = wait_for(lambda: (lambda f: f if value(f, "portico_requests_total") == 36 else None)(scrape(p)),
                    what="36 requests counted")
    R = "portico_requests_total"
    labels = series(fams, R)
    assert len(labels) == 6, labels  # 5 kept + the "other" one
    other = {"api": "other", "operation": "other", "product": "other", "status_class": "other"}
    assert other in labels
    kept = [lab for lab in labels if lab != other]
    assert all(value(fams, R, **lab) == 3 for lab in kept)       # a kept series is exact
    assert value(fams, R, **other) == 36 - 15
    D = "portico_request_duration_seconds"
    assert value(fams, D, D + "_count") == 36
    assert len(series(fams, D, D + "_count")) == 6


# ------------------------------------------------------------ reloads

def test_reloads_and_generation(backend, portico):
    p = portico(config(backend, workers=1), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    fams = scrape(p)
    gen0 = value(fams, "portico_config_generation")
    assert gen0 >= 1
    assert value(fams, "portico_reloads_total") == 0
    assert p.reload(p.config)
    fams = scrape(p)
    assert value(fams, "portico_reloads_total", result="ok") == 1
    assert value(fams, "portico_config_generation") > gen0
    gen1 = value(fams, "portico_config_generation")
    with open(p.config_path, "w") as f:
        f.write("listen: [\n")
    assert not p.reload()
    fams = scrape(p)
    assert value(fams, "portico_reloads_total", result="failed") == 1
    assert value(fams, "portico_reloads_total", result="ok") == 1
    assert value(fams, "portico_config_generation") == gen1
    # a management write is a new generation too
    Mgmt(p).ok("PUT", "users/u2", {"email": "u2@example.com", "firstName": "U", "lastName": "Two"})
    assert value(scrape(p), "portico_config_generation") > gen1


def test_lua_timeouts_are_counted(backend, portico):
    cfg = config(backend, workers=1, lua={"timeout": "20ms"})
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"set-header": {
        "name": "X-Spin", "value": "@{ local i = 0; while true do i = i + 1 end }"}}]}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    assert call(p, "/shop/items/1", KEY_GOLD) == 500
    assert call(p, "/shop/items/1", KEY_GOLD) == 500
    fams = scrape(p)
    assert value(fams, "portico_lua_timeouts_total") == 2
    wait_for(lambda: value(scrape(p), "portico_lua_memory_bytes") > 0, what="the Lua state's memory")


# ------------------------------------------------------------ emit-metric

def emit_config(backend, statements, section="inbound", **extra):
    cfg = config(backend, workers=2, **extra)
    cfg["apis"][0]["policies"] = {section: ["base"] + statements}
    return cfg


def test_emit_metric_with_built_in_and_custom_dimensions(backend, portico):
    cfg = emit_config(backend, [
        {"emit-metric": {"name": "Orders", "namespace": "Shop",
                         "value": "@(context.request.headers:get('x-qty', '1'))",
                         "dimension": [{"name": "API ID"}, {"name": "Product ID"}, {"name": "User ID"},
                                       {"name": "Subscription ID"}, {"name": "Operation ID"},
                                       {"name": "Gateway ID"}, {"name": "Location"},
                                       {"name": "Client", "value": "@(context.request.headers:get('x-client', 'none'))"}]}},
        {"emit-metric": {"name": "hits", "dimension": [{"name": "Tier", "value": "gold \"q\"\\"}]}},
    ], metrics={"gatewayId": "gw-1", "location": "eu-west"})
    cfg["apis"][0]["policies"]["outbound"] = ["base", {"emit-metric": {
        "name": "responses", "namespace": "Shop", "value": "0.5", "dimension": [{"name": "API ID"}]}}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    for qty, client in [("2", "web"), ("3", "web"), ("1.5", "app")]:
        assert call(p, "/shop/items/1", KEY_GOLD, {"X-Qty": qty, "X-Client": client}) == 200
    assert call(p, "/shop/items/1", KEY_GOLD) == 200
    fams = scrape(p)
    F = "shop_orders"
    assert fams[F]["type"] == "counter"
    base = {"api_id": "shop", "product_id": "gold", "user_id": "u1", "subscription_id": "s-gold",
            "operation_id": "get-item", "gateway_id": "gw-1", "location": "eu-west"}
    assert value(fams, F, client="web", **base) == 5
    assert value(fams, F, client="app", **base) == 1.5
    assert value(fams, F, client="none", **base) == 1
    assert len(series(fams, F)) == 3
    # the default namespace, and a value with quotes and a backslash escaped
    assert value(fams, "api_management_hits", tier='gold "q"\\') == 4
    assert value(fams, "shop_responses", api_id="shop") == 2.0
    # a bad value fails the request like a bad expression
    status, _, body = p.request("GET", "/shop/items/1", headers={"Ocp-Apim-Subscription-Key": KEY_GOLD,
                                                                 "X-Qty": "-1"})
    assert status == 500
    entry = p.access_entries(wait_for=5)[-1]
    assert entry["status"] == 500 and entry["reason"] == "ExpressionValueEvaluationFailure", entry
    status, _, _ = p.request("GET", "/shop/items/1", headers={"Ocp-Apim-Subscription-Key": KEY_GOLD,
                                                              "X-Qty": "lots"})
    assert status == 500
    assert value(scrape(p), F) == 7.5  # nothing added by the refused ones


def test_emit_metric_in_every_section_and_its_cap(backend, portico):
    cfg = config(backend, workers=1, metrics={"maxSeries": 3})
    cfg["apis"][0]["policies"] = {
        "inbound": ["base", {"emit-metric": {"name": "calls", "dimension": [
            {"name": "Who", "value": "@(context.request.headers:get('x-who', ''))"}]}}],
        "backend": ["base", {"emit-metric": {"name": "sec", "dimension": [{"name": "s", "value": "backend"}]}}],
        "outbound": ["base", {"emit-metric": {"name": "sec", "dimension": [{"name": "s", "value": "outbound"}]}}],
        "on-error": ["base", {"emit-metric": {"name": "sec", "dimension": [{"name": "s", "value": "on-error"}]}}],
    }
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    for i in range(10):
        assert call(p, "/shop/items/1", KEY_GOLD, {"X-Who": "w%d" % i}) == 200
    assert call(p, "/shop/status/500", KEY_GOLD) == 500  # a backend 500 is a response: outbound runs
    fams = scrape(p)
    assert value(fams, "api_management_calls") == 11
    assert len(series(fams, "api_management_calls")) == 4
    assert value(fams, "api_management_calls", who="other") == 11 - 3
    assert value(fams, "api_management_sec", s="backend") == 11
    assert value(fams, "api_management_sec", s="outbound") == 11
    assert value(fams, "api_management_sec", s="on-error") == 0
    # on-error: a failing statement after the inbound metric
    cfg["apis"][0]["policies"]["inbound"].append({"set-header": {"name": "X", "value": "@(nil .. 'x')"}})
    assert p.reload(cfg)
    assert call(p, "/shop/items/1", KEY_GOLD) == 500
    assert value(scrape(p), "api_management_sec", s="on-error") == 1


def test_emit_metric_config_errors_point_at_the_file(backend, portico):
    cases = [
        ({"name": "m", "dimension": [{"name": "d%d" % i, "value": "x"} for i in range(11)]},
         "1 to 10 dimensions, not 11"),
        ({"name": "m"}, "dimension"),
        ({"name": "m", "dimension": [{"name": "Tier", "value": "a"}, {"name": "tier", "value": "b"}]},
         "the same name as labels"),
        ({"name": "m", "dimension": [{"name": "API-ID", "value": "a"}, {"name": "api id", "value": "b"}]},
         "the same name as labels"),
        ({"name": "--", "dimension": [{"name": "API ID"}]}, "makes no metric name"),
        ({"name": "requests_total", "namespace": "portico", "dimension": [{"name": "API ID"}]},
         "makes no metric name"),
        ({"name": "start time seconds", "namespace": "Process", "dimension": [{"name": "API ID"}]},
         "makes no metric name"),
        ({"name": "m", "dimension": [{"name": "Tier"}]}, "needs a value"),
        ({"name": "m", "dimension": [{"name": "!!", "value": "a"}]}, "makes no label name"),
        ({"name": "m", "value": "-2", "dimension": [{"name": "API ID"}]}, "not a number >= 0"),
        ({"name": "m", "value": "many", "dimension": [{"name": "API ID"}]}, "not a number >= 0"),
        ({"name": "@(1)", "dimension": [{"name": "API ID"}]}, "name"),
    ]
    for attrs, message in cases:
        p = portico(emit_config(backend, [{"emit-metric": attrs}]), start=False)
        code, out = p.check()
        assert code != 0 and message in out, (attrs, out)
        assert re.search(r"portico\.yaml:\d+:\d+: ", out), out
    # and a good one passes
    ok = emit_config(backend, [{"emit-metric": {"name": "m", "dimension": [
        {"name": "d%d" % i, "value": "x"} for i in range(9)] + [{"name": "Gateway ID"}]}}])
    code, out = portico(ok, start=False).check()
    assert code == 0, out


def test_metrics_settings_are_checked(backend, portico):
    for metrics, message in [({"path": "metrics"}, "is not a path for /metrics"),
                             ({"path": "/management/metrics"}, "is not a path for /metrics"),
                             ({"path": "/m etrics"}, "is not a path for /metrics"),
                             ({"auth": "maybe"}, "token"),
                             ({"listen": "nowhere"}, "is not a listen address"),
                             ({"maxSeries": 0}, "out of range"),
                             ({"colour": "red"}, "colour")]:
        code, out = portico(config(backend, metrics=metrics), start=False).check()
        assert code != 0 and message in out, (metrics, out)
        assert re.search(r"portico\.yaml:\d+:\d+: ", out), out
