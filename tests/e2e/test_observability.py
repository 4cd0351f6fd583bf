"""The observability parts seen together from the metrics page and the
collector: after a known number of requests through a policy document that
emits a custom metric and logs to a file logger, with OpenTelemetry export
and a traced call, /metrics shows each part's own figures (analytics,
spans, logger messages, traces) exactly, the custom metric reaches the
OTLP collector as an OTLP metrics body, and the usage report agrees with
the page."""

import datetime
import json
import os

import test_metrics as tm
import test_otel as to
from conftest import basic_config, free_port, wait_for
from mgmt_helpers import TOKEN, Mgmt

N = 7


def scrape(p, port):
    status, _, body = tm.get(port)
    assert status == 200, body
    return tm.parse(body)


def test_every_part_reports_its_figures(backend, portico, workdir):
    col = to.Collector()
    try:
        run(backend, portico, workdir, col)
    finally:
        col.close()


def run(backend, portico, workdir, col):
    log_path = os.path.join(workdir, "messages.log")
    mport = free_port()
    cfg = basic_config(backend.url, workers=2)
    cfg["management"] = {"listen": "127.0.0.1:%d" % mport}
    cfg["metrics"] = {"auth": "none"}
    cfg["analytics"] = {"flushInterval": "200ms"}
    cfg["telemetry"] = {"endpoint": col.url, "protocol": "http/json", "exportInterval": "100ms",
                        "metricsInterval": "1s"}
    cfg["loggers"] = [{"id": "f", "loggerType": "file", "file": {"path": log_path}}]
    cfg["apis"][0]["policies"] = {"inbound": ["base",
        {"emit-metric": {"name": "calls", "namespace": "Shop", "dimension": [{"name": "API ID"}]}},
        {"log-to": {"logger-id": "f", "value": "@(context.request.method .. ' ' .. context.request.url.path)"}}]}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    for i in range(N):
        assert p.request("GET", "/echo/items/%d" % i)[0] == 200
    # one traced call on top: a debug token for the API
    m = Mgmt(p)
    st, _, out = m.call("POST", "gateways/managed/listDebugCredentials",
                        {"credentialsExpireAfter": "PT10M", "apiId": "echo", "purposes": ["tracing"]})
    assert st == 200, out
    st, h, _ = p.request("GET", "/echo/items/traced", headers={"Apim-Debug-Authorization": out["token"]})
    assert st == 200 and h.get("apim-trace-id"), h
    total = N + 1

    def settled():
        f = scrape(p, mport)
        done = (tm.value(f, "portico_analytics_requests_total", outcome="flushed") == total
                and tm.value(f, "portico_otel_spans_total", outcome="exported") >= total
                and tm.value(f, "portico_logger_messages_total", logger="f", outcome="sent") == total)
        return f if done else None
    fams = wait_for(settled, timeout=15, what="every part to report", step=0.1)
    assert fams, scrape(p, mport)
    # analytics: every request recorded once and written, none dropped
    assert tm.value(fams, "portico_analytics_requests_total", outcome="recorded") == total
    assert tm.value(fams, "portico_analytics_requests_total", outcome="dropped") == 0
    # the request counter of the page itself agrees
    assert tm.value(fams, "portico_requests_total", api="echo", status_class="2xx") == total
    # OpenTelemetry: nothing dropped or lost with a healthy collector
    assert tm.value(fams, "portico_otel_spans_total", outcome="dropped") == 0
    assert tm.value(fams, "portico_otel_spans_total", outcome="failed") == 0
    # the logger: one message per request, in the file
    assert tm.value(fams, "portico_logger_messages_total", logger="f", outcome="dropped") == 0
    lines = wait_for(lambda: (lambda t: t if t.count("\n") >= total else None)(
        open(log_path).read() if os.path.exists(log_path) else ""), timeout=5)
    assert lines and "GET /echo/items/traced" in lines, lines
    # tracing: one request traced, no token refused
    assert tm.value(fams, "portico_traces_total") == 1
    assert tm.value(fams, "portico_trace_tokens_refused_total") == 0
    # emit-metric on the page ...
    assert tm.value(fams, "shop_calls", api_id="echo") == total

    # ... and as OTLP metrics at the collector: the cumulative sum reaches the total
    def otlp_sum():
        with col.lock:
            bodies = [b for path, _, b, s in col.posts if path == "/v1/metrics" and s == 200]
        for body in reversed(bodies):
            doc = json.loads(body)
            for rm in doc["resourceMetrics"]:
                for sm in rm["scopeMetrics"]:
                    for metric in sm["metrics"]:
                        if metric["name"] == "shop_calls":
                            pts = metric["sum"]["dataPoints"]
                            if pts and pts[0]["asDouble"] == total:
                                return pts[0]
        return None
    point = wait_for(otlp_sum, timeout=10, what="the OTLP metrics", step=0.1)
    assert point, col.posts[-3:]
    assert {"key": "api_id", "value": {"stringValue": "echo"}} in point["attributes"]

    # the usage report counts the same requests
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    st, _, rep = m.call("GET", "reports/byApi?$filter=timestamp%20ge%20" + since)
    assert st == 200, rep
    echo = [r for r in rep["value"] if r["apiId"].endswith("echo")]
    assert echo and echo[0]["callCountTotal"] == total and echo[0]["callCountSuccess"] == total, rep
