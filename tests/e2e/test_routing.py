"""Routing: API by path suffix, operation by method and URL template, 404s,
the backend URL, forwarding headers and the access log."""

import json

from conftest import basic_config, free_port, raw_exchange, parse_responses


def echo(data):
    return json.loads(data)


def test_backend_url_is_service_url_plus_rest_with_query(backend, portico):
    p = portico(basic_config(backend.url))
    status, headers, body = p.request("GET", "/echo/items/42?x=1&y=%20z")
    assert status == 200
    got = echo(body)
    assert got["target"] == "/base/items/42?x=1&y=%20z"
    assert got["method"] == "GET"
    assert backend.last().header("Host") == "127.0.0.1:%d" % backend.port


def test_api_root_and_wildcard(backend, portico):
    p = portico(basic_config(backend.url))
    for path, target in [("/echo", "/base"), ("/echo/", "/base/"), ("/echo/a/b/c", "/base/a/b/c")]:
        status, _, body = p.request("DELETE", path)
        assert status == 200, path
        assert echo(body)["target"] == target


def test_suffix_matches_whole_segments_only(backend, portico):
    p = portico(basic_config(backend.url))
    status, headers, body = p.request("GET", "/echoes/items/1")
    assert status == 404
    assert json.loads(body) == {"statusCode": 404, "message": "Resource not found"}
    assert headers["content-type"] == "application/json"
    assert backend.last() is None


def test_longest_suffix_wins_and_root_api(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"] += [
        {"id": "deep", "path": "echo/v2", "serviceUrl": backend.url + "/deep", "subscriptionRequired": False,
         "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]},
        {"id": "root", "path": "", "serviceUrl": backend.url + "/root", "subscriptionRequired": False,
         "operations": [{"id": "all", "method": "GET", "urlTemplate": "/*"}]},
    ]
    p = portico(cfg)
    assert echo(p.request("GET", "/echo/v2/x")[2])["target"] == "/deep/x"
    assert echo(p.request("GET", "/echo/v3/x")[2])["target"] == "/base/v3/x"
    assert echo(p.request("GET", "/other/thing")[2])["target"] == "/root/other/thing"
    assert p.request("POST", "/other/thing")[0] == 404


def test_operation_precedence_literal_param_wildcard(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"] = [
        {"id": "wild", "method": "GET", "urlTemplate": "/users/*"},
        {"id": "param", "method": "GET", "urlTemplate": "/users/{id}"},
        {"id": "literal", "method": "GET", "urlTemplate": "/users/me"},
        {"id": "pattern", "method": "GET", "urlTemplate": "/files/{name}.{ext}"},
        {"id": "any-method", "method": "*", "urlTemplate": "/users/{id}/posts"},
        {"id": "get-posts", "method": "GET", "urlTemplate": "/users/{id}/posts"},
        {"id": "query", "method": "GET", "urlTemplate": "/search?q={term}"},
        {"id": "plain-search", "method": "GET", "urlTemplate": "/search"},
    ]
    p = portico(cfg)
    cases = [
        ("GET", "/echo/users/me", "literal"),
        ("GET", "/echo/users/42", "param"),
        ("GET", "/echo/users/42/x/y", "wild"),
        ("GET", "/echo/files/report.pdf", "pattern"),
        ("GET", "/echo/users/7/posts", "get-posts"),
        ("PUT", "/echo/users/7/posts", "any-method"),
        ("GET", "/echo/search?q=cats", "query"),
        ("GET", "/echo/search?other=1", "plain-search"),
    ]
    for method, path, op in cases:
        status, _, _ = p.request(method, path)
        assert status == 200, (method, path)
    entries = p.access_entries(wait_for=len(cases))
    assert [e["operation"] for e in entries] == [c[2] for c in cases]
    assert p.request("POST", "/echo/users/me")[0] == 404


def test_no_operation_matched_is_404_with_reason(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"] = cfg["apis"][0]["operations"][:2]  # no wildcard
    p2 = portico(cfg)
    status, _, body = p2.request("PUT", "/echo/items")
    assert status == 404
    assert json.loads(body) == {"statusCode": 404, "message": "Resource not found"}
    entry = [e for e in p2.access_entries(wait_for=1) if e["path"] == "/echo/items"][-1]
    assert entry["reason"] == "OperationNotFound"
    assert entry["api"] == "echo" and "operation" not in entry


def test_host_bound_api_beats_any_host(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"].append({"id": "echo-b", "path": "echo", "host": "b.example", "serviceUrl": backend.url + "/b",
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]})
    p = portico(cfg)
    assert echo(p.request("GET", "/echo/x", headers={"Host": "b.example:8080"})[2])["target"] == "/b/x"
    assert echo(p.request("GET", "/echo/x", headers={"Host": "a.example"})[2])["target"] == "/base/x"


def test_dot_segments_are_resolved_before_routing(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"].append({"id": "admin", "path": "admin", "serviceUrl": backend.url + "/admin",
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "GET", "urlTemplate": "/*"}]})
    p = portico(cfg)
    out = raw_exchange(p.port, b"GET /echo/../admin/x HTTP/1.1\r\nHost: a\r\n\r\n")
    (status, _, body), = parse_responses(out)
    assert status == 200 and echo(body)["target"] == "/admin/x"
    out = raw_exchange(p.port, b"GET /echo/%2e%2e/admin/x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    out = raw_exchange(p.port, b"GET /../x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")


def test_forwarding_headers_and_request_id(backend, portico):
    p = portico(basic_config(backend.url))
    status, headers, body = p.request("GET", "/echo/items/1", headers={
        "X-Forwarded-For": "10.0.0.1", "X-Request-Id": "client-id-123", "Host": "api.example:8443",
        "X-Forwarded-Host": "spoofed", "X-Forwarded-Proto": "gopher"})
    req = backend.last()
    assert req.header("X-Forwarded-For") == "10.0.0.1, 127.0.0.1"
    assert req.header_all("X-Forwarded-Proto") == ["http"]
    assert req.header_all("X-Forwarded-Host") == ["api.example:8443"]
    assert req.header("Forwarded") == 'for=127.0.0.1;host="api.example:8443";proto=http'
    assert req.header("X-Request-Id") == "client-id-123"
    entry = p.access_entries(wait_for=1)[-1]
    assert entry["requestId"] == "client-id-123"
    # an invalid client id is replaced by a generated UUID
    p.request("GET", "/echo/items/1", headers={"X-Request-Id": "bad id with spaces"})
    rid = backend.last().header("X-Request-Id")
    assert len(rid) == 36 and rid.count("-") == 4


def test_every_forwarding_field_is_extended(backend, portico):
    """Twelve X-Forwarded-For and Forwarded fields from the client: all of them reach the backend,
    in order, with our hop appended."""
    p = portico(basic_config(backend.url))
    head = b"GET /echo/items/1 HTTP/1.1\r\nHost: a\r\n"
    for i in range(12):
        head += b"X-Forwarded-For: 10.0.0.%d\r\nForwarded: for=10.0.1.%d\r\n" % (i, i)
    out = raw_exchange(p.port, head + b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    req = backend.last()
    assert req.header_all("X-Forwarded-For") == [", ".join("10.0.0.%d" % i for i in range(12)) + ", 127.0.0.1"]
    assert req.header_all("Forwarded") == [", ".join("for=10.0.1.%d" % i for i in range(12)) +
                                          ', for=127.0.0.1;host="a";proto=http']


def test_hop_by_hop_headers_removed(backend, portico):
    p = portico(basic_config(backend.url))
    p.request("GET", "/echo/items/1", headers={
        "Connection": "keep-alive, X-Secret", "X-Secret": "s", "Keep-Alive": "timeout=5", "TE": "trailers",
        "Proxy-Connection": "keep-alive", "Upgrade": "h2c", "X-Kept": "yes"})
    req = backend.last()
    names = [k.lower() for k, _ in req.headers]
    for h in ("connection", "x-secret", "keep-alive", "te", "proxy-connection", "upgrade"):
        assert h not in names
    assert req.header("X-Kept") == "yes"


def test_access_log_fields(backend, portico):
    p = portico(basic_config(backend.url))
    p.request("POST", "/echo/items?z=9", body=b"0123456789")
    e = p.access_entries(wait_for=1)[-1]
    for key in ("time", "requestId", "clientIp", "method", "path", "api", "operation", "status", "bytesIn",
                "bytesOut", "backendTime", "totalTime"):
        assert key in e, key
    assert e["method"] == "POST" and e["path"] == "/echo/items" and e["query"] == "z=9"
    assert e["api"] == "echo" and e["operation"] == "create-item" and e["status"] == 200
    assert e["bytesIn"] > 10 and e["bytesOut"] > 0
    assert e["totalTime"] >= e["backendTime"] >= 0
    assert e["clientIp"] == "127.0.0.1"


def test_subscription_required_api_refuses_without_key(backend, portico):
    cfg = basic_config(backend.url)
    cfg["apis"][0]["subscriptionRequired"] = True
    p = portico(cfg)
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 401
    assert json.loads(body)["message"].startswith("Access denied due to missing subscription key")
    status, _, body = p.request("GET", "/echo/items/1", headers={"Ocp-Apim-Subscription-Key": "nope"})
    assert status == 401
    assert json.loads(body)["message"].startswith("Access denied due to invalid subscription key")
    status, _, _ = p.request("GET", "/echo/items/1?subscription-key=nope")
    assert status == 401
    reasons = [e.get("reason") for e in p.access_entries(wait_for=3)]
    assert reasons == ["SubscriptionKeyNotFound", "SubscriptionKeyInvalid", "SubscriptionKeyInvalid"]
    assert backend.last() is None


def test_ipv6_listener(backend, portico):
    port = free_port()
    cfg = basic_config(backend.url, port=port)
    import socket
    v6 = free_port(socket.AF_INET6)
    cfg["listen"] = ["127.0.0.1:%d" % port, "[::1]:%d" % v6]
    p = portico(cfg)
    out = raw_exchange(v6, b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", host="::1")
    (status, _, body), = parse_responses(out)
    assert status == 200
    assert backend.last().header("X-Forwarded-For") == "::1"
    assert backend.last().header("Forwarded").startswith('for="[::1]"')


def test_forwarding_headers_can_be_chosen(backend, portico):
    cfg = basic_config(backend.url, upstream={"forwardedHeaders": ["X-Forwarded-For"],
                                              "requestIdHeader": "X-Correlation-Id"})
    p = portico(cfg)
    p.request("GET", "/echo/items/1", headers={"X-Forwarded-Proto": "client-said", "Forwarded": "for=1.2.3.4",
                                               "X-Correlation-Id": "corr-1", "X-Request-Id": "passes-through"})
    req = backend.last()
    assert req.header("X-Forwarded-For") == "127.0.0.1"
    # headers we do not manage pass through as the client sent them
    assert req.header_all("X-Forwarded-Proto") == ["client-said"]
    assert req.header_all("Forwarded") == ["for=1.2.3.4"]
    assert req.header("X-Forwarded-Host") is None
    assert req.header_all("X-Correlation-Id") == ["corr-1"]
    assert req.header_all("X-Request-Id") == ["passes-through"]
    assert p.access_entries(wait_for=1)[-1]["requestId"] == "corr-1"


def test_no_forwarding_headers_and_no_request_id(backend, portico):
    p = portico(basic_config(backend.url, upstream={"forwardedHeaders": [], "requestIdHeader": ""}))
    p.request("GET", "/echo/items/1")
    names = [k.lower() for k, _ in backend.last().headers]
    for h in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-request-id"):
        assert h not in names
    # an id is still generated for the access log
    assert len(p.access_entries(wait_for=1)[-1]["requestId"]) == 36


def test_the_request_id_comes_back_in_every_response(backend, portico):
    """upstream.requestIdHeader: the id the client sent (or the one made for
    it) is what the backend got, what the access log says, and what the
    client reads back -- on proxied answers, policy answers and errors."""
    cfg = basic_config(backend.url)
    cfg["apis"][0]["operations"].insert(0, {"id": "canned", "method": "GET", "urlTemplate": "/canned",
                                            "policies": {"inbound": [{"return-response": {"set-body": "hi"}}]}})
    p = portico(cfg)
    st, h, _ = p.request("GET", "/echo/items/1", headers={"X-Request-Id": "client-chosen-id-1"})
    assert st == 200 and h["x-request-id"] == "client-chosen-id-1"
    assert backend.last().header("X-Request-Id") == "client-chosen-id-1"
    st, h, _ = p.request("GET", "/echo/items/2")
    made = h["x-request-id"]
    assert len(made) == 36 and backend.last().header("X-Request-Id") == made
    assert p.access_entries(wait_for=2)[-1]["requestId"] == made
    st, h, body = p.request("GET", "/echo/canned")
    assert (st, body) == (200, b"hi") and len(h["x-request-id"]) == 36
    st, h, _ = p.request("GET", "/nowhere", headers={"X-Request-Id": "lost-one"})
    assert st == 404 and h["x-request-id"] == "lost-one"


def test_request_id_header_name_and_off(backend, portico):
    cfg = basic_config(backend.url, upstream={"requestIdHeader": "X-Trace"})
    p = portico(cfg)
    st, h, _ = p.request("GET", "/echo/items/1", headers={"X-Trace": "t-1"})
    assert h["x-trace"] == "t-1" and "x-request-id" not in h
    assert p.request("GET", "/nowhere", headers={"X-Trace": "t-2"})[1]["x-trace"] == "t-2"
    p.stop()
    p2 = portico(basic_config(backend.url, upstream={"requestIdHeader": ""}))
    st, h, _ = p2.request("GET", "/echo/items/1")
    assert st == 200 and "x-request-id" not in h and "x-trace" not in h
