"""OpenTelemetry: W3C trace context towards backends, and spans exported over
OTLP/HTTP (JSON and protobuf) to a collector of the test's own.

The collector is a Python http.server on a free loopback port that keeps
every body it is posted; protobuf bodies are read back with the small
protobuf reader below (no library).  What is checked: the traceparent a
backend receives names the gateway's CLIENT span of that call, in the
caller's trace; the request's SERVER span is the child of the caller's span;
the policy sections' spans are children of the request's span; sampling by
ratio and by the caller's flag; a collector that is down, slow or failing
never slows or fails a request, and what is lost is counted (the counters
are written to the error log at stop)."""

import http.server
import json
import re
import threading
import time

import pytest

from conftest import basic_config, free_port, wait_for
from backends import stop_server

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


# ------------------------------------------------------------- protobuf

def pb_fields(data):
    """(field number, wire type, value) of a protobuf message: ints for
    varints and fixed fields, bytes for length-delimited ones."""
    out = []
    i = 0

    def varint():
        nonlocal i
        shift = v = 0
        while True:
            b = data[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v
    while i < len(data):
        key = varint()
        field, wt = key >> 3, key & 7
        if wt == 0:
            out.append((field, wt, varint()))
        elif wt == 1:
            out.append((field, wt, int.from_bytes(data[i:i + 8], "little")))
            i += 8
        elif wt == 5:
            out.append((field, wt, int.from_bytes(data[i:i + 4], "little")))
            i += 4
        elif wt == 2:
            n = varint()
            assert i + n <= len(data), "a length past the message"
            out.append((field, wt, data[i:i + n]))
            i += n
        else:
            raise AssertionError("wire type %d" % wt)
    assert i == len(data)
    return out


def pb_kv(data):
    key = value = None
    for f, _, v in pb_fields(data):
        if f == 1:
            key = v.decode()
        elif f == 2:
            for af, _, av in pb_fields(v):
                if af == 1:
                    value = av.decode()
                elif af == 3:
                    value = av - (1 << 64) if av >= 1 << 63 else av
    return key, value


def decode_proto(body):
    """An ExportTraceServiceRequest as [(resource attributes, [span dicts])]."""
    out = []
    for f, _, rs in pb_fields(body):
        assert f == 1
        res, spans = {}, []
        for f2, _, v2 in pb_fields(rs):
            if f2 == 1:
                res = dict(pb_kv(a) for f3, _, a in pb_fields(v2) if f3 == 1)
            elif f2 == 2:
                for f3, _, v3 in pb_fields(v2):
                    if f3 != 2:
                        continue
                    s = {"attributes": {}, "status": 0, "parentSpanId": "", "flags": 0, "events": []}
                    for f4, _, v4 in pb_fields(v3):
                        if f4 == 1:
                            s["traceId"] = v4.hex()
                        elif f4 == 2:
                            s["spanId"] = v4.hex()
                        elif f4 == 4:
                            s["parentSpanId"] = v4.hex()
                        elif f4 == 5:
                            s["name"] = v4.decode()
                        elif f4 == 6:
                            s["kind"] = v4
                        elif f4 == 7:
                            s["start"] = v4
                        elif f4 == 8:
                            s["end"] = v4
                        elif f4 == 9:
                            k, v = pb_kv(v4)
                            s["attributes"][k] = v
                        elif f4 == 11:
                            ev = {"attributes": {}}
                            for f5, _, v5 in pb_fields(v4):
                                if f5 == 1:
                                    ev["time"] = v5
                                elif f5 == 2:
                                    ev["name"] = v5.decode()
                                elif f5 == 3:
                                    k, v = pb_kv(v5)
                                    ev["attributes"][k] = v
                            s["events"].append(ev)
                        elif f4 == 15:
                            s["status"] = dict((a, b) for a, _, b in pb_fields(v4)).get(3, 0)
                        elif f4 == 16:
                            s["flags"] = v4
                    spans.append(s)
        out.append((res, spans))
    return out


def decode_json(body):
    out = []
    for rs in json.loads(body)["resourceSpans"]:
        res = {a["key"]: a["value"]["stringValue"] for a in rs["resource"]["attributes"]}
        spans = []
        for ss in rs["scopeSpans"]:
            assert ss["scope"]["name"] == "portico"
            for sp in ss["spans"]:
                attrs = {}
                for a in sp["attributes"]:
                    v = a["value"]
                    attrs[a["key"]] = int(v["intValue"]) if "intValue" in v else v["stringValue"]
                spans.append({"traceId": sp["traceId"], "spanId": sp["spanId"],
                              "parentSpanId": sp.get("parentSpanId", ""), "name": sp["name"],
                              "kind": sp["kind"], "start": int(sp["startTimeUnixNano"]),
                              "end": int(sp["endTimeUnixNano"]), "attributes": attrs,
                              "status": sp.get("status", {}).get("code", 0), "flags": sp.get("flags", 0),
                              "events": [{"time": int(e["timeUnixNano"]), "name": e["name"],
                                          "attributes": {a["key"]: a["value"]["stringValue"]
                                                         for a in e.get("attributes", [])}}
                                         for e in sp.get("events", [])]})
        out.append((res, spans))
    return out


# ------------------------------------------------------------ collector

class Collector:
    """An OTLP/HTTP receiver: keeps what is posted, answers `statuses` in
    turn (then 200), after `delay` seconds."""

    def __init__(self, statuses=(), delay=0.0):
        self.lock = threading.Lock()
        self.posts = []  # (path, headers, body, status answered)
        self.statuses = list(statuses)
        self.delay = delay
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with owner.lock:
                    status = owner.statuses.pop(0) if owner.statuses else 200
                    owner.posts.append((self.path, dict(self.headers), body, status))
                if owner.delay:
                    time.sleep(owner.delay)
                reply = b"{}"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/v1/traces" % self.port

    def batches(self, path="/v1/traces"):
        with self.lock:
            posts = [p for p in self.posts if p[0] == path and p[3] == 200]
        out = []
        for _, headers, body, _ in posts:
            ctype = headers.get("Content-Type", "")
            out += decode_json(body) if ctype == "application/json" else decode_proto(body)
        return out

    def spans(self):
        return [s for _, spans in self.batches() for s in spans]

    def trace(self, trace_id, n=1, timeout=5.0):
        """The spans of one trace, once there are at least n."""
        return wait_for(lambda: (lambda got: got if len(got) >= n else None)(
            [s for s in self.spans() if s["traceId"] == trace_id]), timeout=timeout,
            what="%d span(s) of trace %s" % (n, trace_id))

    def close(self):
        stop_server(self.server)


@pytest.fixture
def collector():
    made = []

    def make(**kw):
        c = Collector(**kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def otel_config(backend_url, endpoint, **telemetry):
    cfg = basic_config(backend_url)
    t = {"endpoint": endpoint, "protocol": "http/json", "exportInterval": "100ms", "timeout": "2s"}
    t.update(telemetry)
    cfg["telemetry"] = t
    return cfg


def backend_traceparent(backend, n=1):
    reqs = wait_for(lambda: backend.requests if len(backend.requests) >= n else None,
                    what="%d backend request(s)" % n)
    return [r.header_all("traceparent") for r in reqs]


def parse_tp(value):
    m = re.match(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$", value)
    assert m, value
    return m.group(1), m.group(2), m.group(3)


def by_kind(spans):
    server = [s for s in spans if s["kind"] == 2]
    client = [s for s in spans if s["kind"] == 3]
    internal = {s["name"]: s for s in spans if s["kind"] == 1}
    assert len(server) == 1, spans
    return server[0], internal, client


def stats_line(p):
    """The exporter's counters, written to the error log at stop."""
    m = re.search(r"telemetry: (\d+) spans recorded, (\d+) exported, (\d+) dropped \(queue full\), (\d+) lost "
                  r"in (\d+) failed batches", p.log_text())
    assert m, p.log_text()[-3000:]
    keys = ("recorded", "exported", "dropped", "failed_spans", "failed_batches")
    return dict(zip(keys, (int(g) for g in m.groups())))


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_spans_follow_the_callers_trace(backend, portico, collector, protocol):
    col = collector()
    p = portico(otel_config(backend.url, col.url, protocol=protocol, serviceName="edge-gw"))
    state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    t0 = time.time_ns()
    status, _, _ = p.request("GET", "/echo/items/7?q=1", headers={
        "traceparent": "00-%s-%s-01" % (TRACE, PARENT), "tracestate": state})
    assert status == 200
    # the backend is called in the caller's trace, from a span of the gateway's
    (tps,) = backend_traceparent(backend)
    assert len(tps) == 1
    trace, sent_parent, flags = parse_tp(tps[0])
    assert (trace, flags) == (TRACE, "01") and sent_parent != PARENT
    assert backend.requests[0].header_all("tracestate") == [state]

    spans = col.trace(TRACE, n=5)
    server, internal, client = by_kind(spans)
    assert server["parentSpanId"] == PARENT
    assert server["name"] == "GET echo/get-item"
    a = server["attributes"]
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/echo/items/7"
    assert a["http.response.status_code"] == 200
    assert a["portico.api.id"] == "echo" and a["portico.operation.id"] == "get-item"
    assert a["client.address"] == "127.0.0.1" and a["server.address"] == "127.0.0.1"
    assert a["url.scheme"] == "http"
    assert server["status"] == 0
    assert server["flags"] & 0x301 == 0x301  # sampled, parent known to be remote
    # one span per section that ran, children of the request's span
    assert set(internal) == {"inbound", "backend", "outbound"}
    for s in internal.values():
        assert s["parentSpanId"] == server["spanId"]
        assert server["start"] <= s["start"] <= s["end"] <= server["end"]
    # the backend call: the span the backend was told about, inside the backend section
    assert len(client) == 1
    c = client[0]
    assert c["spanId"] == sent_parent
    assert c["parentSpanId"] == internal["backend"]["spanId"]
    assert c["attributes"]["http.response.status_code"] == 200
    assert c["attributes"]["server.port"] == backend.port
    assert internal["backend"]["start"] <= c["start"] <= c["end"] <= server["end"]
    assert t0 - 2 * 10**9 < server["start"] < time.time_ns() + 10**9  # wall-clock times
    ids = [s["spanId"] for s in spans]
    assert len(set(ids)) == len(ids) and all(HEX16.match(i) for i in ids)
    res = col.batches()[0][0]
    assert res["service.name"] == "edge-gw" and res["service.version"] and "host.name" in res


@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_the_trace_policy_adds_events_to_its_sections_span(backend, portico, collector, protocol):
    col = collector()
    cfg = otel_config(backend.url, col.url, protocol=protocol)
    cfg["apis"][0]["policies"] = {
        "inbound": ["base", {"trace": {"source": "gate", "severity": "error",
                                       "message": "@('in ' .. context.request.method)"}},
                    {"trace": {"source": "gate", "message": "second"}}],
        "outbound": ["base", {"trace": {"source": "out", "severity": "information", "message": "done"}}]}
    p = portico(cfg)
    t0 = time.time_ns()
    status, _, _ = p.request("GET", "/echo/items/1", headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})
    assert status == 200
    spans = col.trace(TRACE, n=5)
    _, internal, _ = by_kind(spans)
    ev_in = internal["inbound"]["events"]
    assert [e["name"] for e in ev_in] == ["in GET", "second"]
    assert ev_in[0]["attributes"] == {"portico.trace.source": "gate", "portico.trace.severity": "error"}
    assert ev_in[1]["attributes"]["portico.trace.severity"] == "verbose"
    assert internal["inbound"]["start"] <= ev_in[0]["time"] <= ev_in[1]["time"] <= internal["inbound"]["end"]
    assert t0 - 2_000_000 <= ev_in[0]["time"] <= time.time_ns()  # span times start from a wall clock in ms
    (ev_out,) = internal["outbound"]["events"]
    assert ev_out["name"] == "done" and ev_out["attributes"]["portico.trace.source"] == "out"
    assert internal["backend"]["events"] == []
    # the request's span has none: each event sits on the span of its section
    (server,) = [s for s in spans if s["kind"] == 2]
    assert server["events"] == []


def test_a_request_without_traceparent_starts_a_trace(backend, portico, collector):
    col = collector()
    p = portico(otel_config(backend.url, col.url))
    assert p.request("GET", "/echo/items/1", headers={"tracestate": "a=b"})[0] == 200
    (tps,) = backend_traceparent(backend)
    trace, span, flags = parse_tp(tps[0])
    assert flags == "01" and trace != "0" * 32
    # a tracestate without its traceparent is not passed on
    assert backend.requests[0].header_all("tracestate") == []
    server, _, client = by_kind(col.trace(trace, n=5))
    assert server["parentSpanId"] == ""
    assert client[0]["spanId"] == span
    # every request gets a trace of its own
    assert p.request("GET", "/echo/items/2")[0] == 200
    (_, tps2) = backend_traceparent(backend, 2)
    assert parse_tp(tps2[0])[0] != trace


@pytest.mark.parametrize("value", [
    "00-%s-%s-01" % (TRACE.upper(), PARENT),          # upper-case hex
    "00-%s-%s-01" % ("0" * 32, PARENT),               # zero trace id
    "00-%s-%s-01" % (TRACE, "0" * 16),                # zero parent id
    "ff-%s-%s-01" % (TRACE, PARENT),                  # version ff
    "00-%s-%s-01-extra" % (TRACE, PARENT),            # version 00 has nothing more
    "00-%s-%s-1" % (TRACE, PARENT),                   # short flags
    "00_%s-%s-01" % (TRACE, PARENT),                  # not a dash
    "00-%s-%s-0g" % (TRACE, PARENT),                  # not hex
    "",
], ids=["upper", "zero-trace", "zero-parent", "version-ff", "v00-extra", "short-flags", "separator",
        "non-hex", "empty"])
def test_an_invalid_traceparent_is_ignored(backend, portico, collector, value):
    col = collector()
    p = portico(otel_config(backend.url, col.url))
    status, _, _ = p.request("GET", "/echo/items/1", headers={"traceparent": value, "tracestate": "k=v"})
    assert status == 200
    (tps,) = backend_traceparent(backend)
    assert len(tps) == 1 and tps[0] != value
    trace, _, _ = parse_tp(tps[0])
    assert trace != TRACE.lower() or "0" * 16 in value  # a new trace
    assert backend.requests[0].header_all("tracestate") == []
    server, _, _ = by_kind(col.trace(trace, n=5))
    assert server["parentSpanId"] == ""


def test_a_later_version_is_read_by_its_first_fields(backend, portico, collector):
    col = collector()
    p = portico(otel_config(backend.url, col.url))
    assert p.request("GET", "/echo/items/1", headers={
        "traceparent": "cc-%s-%s-01-what-the-future-holds" % (TRACE, PARENT)})[0] == 200
    (tps,) = backend_traceparent(backend)
    assert parse_tp(tps[0])[0] == TRACE
    server, _, _ = by_kind(col.trace(TRACE, n=5))
    assert server["parentSpanId"] == PARENT


def test_tracestate_is_bounded(backend, portico, collector):
    col = collector()
    p = portico(otel_config(backend.url, col.url))
    tp = "00-%s-%s-01" % (TRACE, PARENT)
    ok32 = ",".join("k%d=v" % i for i in range(32))
    too_many = ",".join("k%d=v" % i for i in range(33))
    too_long = "k=" + "v" * 256 + ",m=" + "v" * 256
    for state, passed in [(ok32, True), (too_many, False), (too_long, False), ("Bad=v", False),
                          ("a=1,a=2", False), ("t@sys=x, b=  y", True)]:
        backend.requests.clear()
        assert p.request("GET", "/echo/items/1", headers={"traceparent": tp, "tracestate": state})[0] == 200
        got = wait_for(lambda: backend.requests)[0].header_all("tracestate")
        assert got == ([state] if passed else []), state


def test_ratio_zero_exports_nothing_but_propagates(backend, portico, collector):
    col = collector()
    p = portico(otel_config(backend.url, col.url, sampler={"ratio": 0}))
    for i in range(5):
        assert p.request("GET", "/echo/items/%d" % i)[0] == 200
    tps = backend_traceparent(backend, 5)
    for (tp,) in tps:
        assert parse_tp(tp)[2] == "00"
    p.stop()
    assert col.posts == []
    st = stats_line(p)
    assert st["recorded"] == 0 and st["exported"] == 0


def test_parent_based_sampling_follows_the_caller(backend, portico, collector):
    col = collector()
    p = portico(otel_config(backend.url, col.url, sampler={"ratio": 0}))
    sampled, unsampled = "1" * 32, "2" * 32
    assert p.request("GET", "/echo/items/1", headers={"traceparent": "00-%s-%s-01" % (sampled, PARENT)})[0] == 200
    assert p.request("GET", "/echo/items/2", headers={"traceparent": "00-%s-%s-00" % (unsampled, PARENT)})[0] == 200
    col.trace(sampled, n=5)
    tps = backend_traceparent(backend, 2)
    assert parse_tp(tps[0][0])[2] == "01" and parse_tp(tps[1][0])[2] == "00"
    p.stop()
    assert not [s for s in col.spans() if s["traceId"] == unsampled]
    assert stats_line(p)["exported"] == 5


def test_without_parent_based_the_ratio_decides(backend, portico, collector):
    col = collector()
    p = portico(otel_config(backend.url, col.url, sampler={"ratio": 1, "parentBased": False}))
    assert p.request("GET", "/echo/items/1", headers={"traceparent": "00-%s-%s-00" % (TRACE, PARENT)})[0] == 200
    col.trace(TRACE, n=5)
    (tps,) = backend_traceparent(backend)
    assert parse_tp(tps[0])[2] == "01"


def test_ratio_is_decided_by_the_trace_id(backend, portico, collector):
    """ratio 0.5 without the parent's say: the last 7 bytes of the id decide, the same on every node."""
    col = collector()
    p = portico(otel_config(backend.url, col.url, sampler={"ratio": 0.5, "parentBased": False}))
    low, high = "ab" * 8 + "00" + "00" * 7, "ab" * 8 + "00" + "ff" * 7
    for t in (low, high):
        assert p.request("GET", "/echo/items/1", headers={"traceparent": "00-%s-%s-01" % (t, PARENT)})[0] == 200
    col.trace(low, n=5)
    p.stop()
    assert not [s for s in col.spans() if s["traceId"] == high]


def test_retries_get_a_span_each(backend, portico, collector):
    col = collector()
    cfg = otel_config(backend.url, col.url)
    cfg["apis"][0]["operations"].insert(0, {"id": "flaky", "method": "GET", "urlTemplate": "/status/{code}",
                                            "policies": {"backend": [{"retry": {
                                                "condition": "@(context.response.statusCode >= 500)",
                                                "count": 1, "interval": 0,
                                                "policies": [{"forward-request": {}}]}}]}})
    p = portico(cfg)
    assert p.request("GET", "/echo/status/503", headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})[0] == 503
    tps = [parse_tp(t[0])[1] for t in backend_traceparent(backend, 2)]
    assert len(set(tps)) == 2
    server, internal, client = by_kind(col.trace(TRACE, n=6))
    assert [c["spanId"] for c in sorted(client, key=lambda c: c["start"])] == tps
    assert sorted(c["attributes"].get("http.request.resend_count", 0) for c in client) == [0, 1]
    assert all(c["status"] == 2 and c["attributes"]["http.response.status_code"] == 503 for c in client)
    assert server["status"] == 2 and server["attributes"]["http.response.status_code"] == 503
    assert server["name"] == "GET echo/flaky"


def test_refusals_and_errors_are_traced(backend, portico, collector):
    col = collector()
    cfg = otel_config(backend.url, col.url)
    cfg["apis"].append({"id": "closed", "path": "closed", "serviceUrl": backend.url,
                        "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}]})
    cfg["apis"].append({"id": "dead", "path": "dead", "serviceUrl": "http://127.0.0.1:%d" % free_port(),
                        "subscriptionRequired": False,
                        "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}]})
    p = portico(cfg)
    t401, t404, t502 = "a" * 32, "b" * 32, "c" * 32
    assert p.request("GET", "/closed/x", headers={"traceparent": "00-%s-%s-01" % (t401, PARENT)})[0] == 401
    assert p.request("GET", "/nowhere", headers={"traceparent": "00-%s-%s-01" % (t404, PARENT)})[0] == 404
    assert p.request("GET", "/dead/x", headers={"traceparent": "00-%s-%s-01" % (t502, PARENT)})[0] == 502
    s401 = col.trace(t401)[0]
    assert s401["attributes"]["portico.error.reason"] == "SubscriptionKeyNotFound" and s401["status"] == 0
    s404 = col.trace(t404)[0]
    assert s404["attributes"]["portico.error.reason"] == "OperationNotFound" and s404["name"] == "GET"
    server, internal, client = by_kind(col.trace(t502, n=4))
    assert internal["backend"]["status"] == 0 and "outbound" not in internal
    assert server["status"] == 2 and server["attributes"]["portico.error.reason"] == "BackendConnectionFailure"
    assert client[0]["status"] == 2 and client[0]["attributes"]["error.type"] == "BackendConnectionFailure"
    assert "http.response.status_code" not in client[0]["attributes"]


def test_collector_headers_and_protobuf_body(backend, portico, collector):
    col = collector()
    p = portico(otel_config(backend.url, col.url, protocol="http/protobuf",
                            headers={"Authorization": "Bearer s3cret", "X-Tenant": "t1"}))
    # raw bytes that are not ASCII are refused with the head (400), before any span; the encoder's
    # UTF-8 repair is unit-tested (test_otel.c)
    assert p.request("GET", "/echo/items/%ff%c3(", headers={
        "traceparent": "00-%s-%s-01" % (TRACE, PARENT)})[0] == 200
    server, _, _ = by_kind(col.trace(TRACE, n=5))
    assert server["attributes"]["url.path"] == "/echo/items/%ff%c3("
    path, headers, _, _ = col.posts[0]
    assert path == "/v1/traces"
    assert headers["Authorization"] == "Bearer s3cret" and headers["X-Tenant"] == "t1"
    assert headers["Content-Type"] == "application/x-protobuf"


def test_a_collector_returning_500_gets_a_retry(backend, portico, collector):
    col = collector(statuses=[500])
    p = portico(otel_config(backend.url, col.url))
    assert p.request("GET", "/echo/items/1", headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})[0] == 200
    col.trace(TRACE, n=5)
    assert [post[3] for post in col.posts] == [500, 200] and col.posts[0][2] == col.posts[1][2]
    p.stop()
    st = stats_line(p)
    assert st["exported"] == 5 and st["failed_batches"] == 0


def test_a_collector_that_is_down_costs_requests_nothing(backend, portico):
    dead = "http://127.0.0.1:%d/v1/traces" % free_port()
    p = portico(otel_config(backend.url, dead))
    for i in range(20):
        t = time.monotonic()
        assert p.request("GET", "/echo/items/%d" % i)[0] == 200
        assert time.monotonic() - t < 0.5
    wait_for(lambda: "telemetry: export to" in p.log_text(), what="the failed export's warning")
    p.stop()
    st = stats_line(p)
    assert st["recorded"] == 100 and st["failed_batches"] >= 1 and st["exported"] == 0
    assert st["failed_spans"] + st["dropped"] >= 1


def test_a_slow_collector_fills_the_queue_and_spans_are_dropped(backend, portico, collector):
    col = collector(delay=3.0)
    p = portico(otel_config(backend.url, col.url, queueSize=16, batchSize=4, timeout="5s"))
    for i in range(60):
        t = time.monotonic()
        assert p.request("GET", "/echo/items/%d" % i)[0] == 200
        assert time.monotonic() - t < 0.5, "a request waited for the collector"
    p.stop()
    st = stats_line(p)
    assert st["recorded"] == 300
    assert st["dropped"] > 0
    # whole requests are dropped: never part of a trace
    assert st["dropped"] % 5 == 0


def test_reload_turns_telemetry_on_and_off(backend, portico, collector):
    col = collector()
    cfg = basic_config(backend.url)
    p = portico(cfg)
    tp = "00-%s-%s-01" % (TRACE, PARENT)
    assert p.request("GET", "/echo/items/1", headers={"traceparent": tp})[0] == 200
    # without telemetry the gateway is transparent: the caller's header passes as it came
    assert backend_traceparent(backend)[0] == [tp]
    assert p.reload(otel_config(backend.url, col.url))
    backend.requests.clear()
    assert p.request("GET", "/echo/items/1", headers={"traceparent": tp})[0] == 200
    assert parse_tp(backend_traceparent(backend)[0][0])[1] != PARENT
    col.trace(TRACE, n=5)
    # propagation off: spans still exported, the caller's traceparent passes untouched
    assert p.reload(otel_config(backend.url, col.url, propagate=False))
    backend.requests.clear()
    other = "9" * 32
    assert p.request("GET", "/echo/items/1", headers={"traceparent": "00-%s-%s-01" % (other, PARENT)})[0] == 200
    assert backend_traceparent(backend)[0] == ["00-%s-%s-01" % (other, PARENT)]
    col.trace(other, n=5)
    assert p.reload(otel_config(backend.url, col.url, enabled=False))
    backend.requests.clear()
    assert p.request("GET", "/echo/items/1", headers={"traceparent": tp})[0] == 200
    assert backend_traceparent(backend)[0] == [tp]


@pytest.mark.parametrize("telemetry,message", [
    ({"sampler": {"ratio": 1.5}}, "expected a number from 0 to 1"),
    ({"sampler": {"ratio": "half"}}, "expected a number from 0 to 1"),
    ({"endpoint": "ftp://collector/v1/traces"}, "is not an OTLP/HTTP URL"),
    ({"protocol": "grpc"}, "grpc"),
    ({"headers": {"Bad Name": "x"}}, "not a valid header name"),
    ({"headers": {"Content-Type": "x"}}, "set by the exporter itself"),
    ({"queueSize": 1}, "out of range (16..1048576)"),
])
def test_bad_settings_are_refused_with_their_place(backend, portico, telemetry, message):
    cfg = basic_config(backend.url)
    cfg["telemetry"] = telemetry
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0
    assert re.search(r"portico\.yaml:\d+:\d+: .*%s" % re.escape(message), out) or message in out, out
    assert re.search(r"portico\.yaml:\d+:\d+:", out), out


def test_an_endpoint_without_path_gets_the_traces_path(backend, portico, collector):
    col = collector()
    p = portico(otel_config(backend.url, "http://127.0.0.1:%d" % col.port))
    assert p.request("GET", "/echo/items/1", headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT)})[0] == 200
    col.trace(TRACE, n=5)
    assert {post[0] for post in col.posts} == {"/v1/traces"}
