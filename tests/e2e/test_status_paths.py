"""The status paths of every gateway listener (APIM's self-hosted gateway's):
/status-0123456789abcdef (liveness: 200, empty) and
/internal-status-0123456789abcdef (readiness: 200 {"status":"ready"}, or 503
while a gateway node has no configuration yet, when every other request is
refused with 503 GatewayNotReady)."""

import json
import os
import socket
import sqlite3
import subprocess
import time


from conftest import BIN, basic_config, free_port, parse_responses, raw_exchange, wait_for
from node_helpers import in_days, make_token

LIVE = "/status-0123456789abcdef"
READY = "/internal-status-0123456789abcdef"
NOT_READY = {"statusCode": 503, "message": "The gateway has no configuration yet"}


def test_liveness_and_readiness_on_a_ready_gateway(backend, portico):
    p = portico(basic_config(backend.url))
    status, headers, body = p.request("GET", LIVE)
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "0"
    assert "content-type" not in headers
    status, headers, body = p.request("GET", READY)
    assert status == 200
    assert json.loads(body) == {"status": "ready"}
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert backend.last() is None  # answered by the gateway itself
    # the API next to them is served as usual
    assert p.request("GET", "/echo/items/1")[0] == 200


def test_head_and_any_query(backend, portico):
    p = portico(basic_config(backend.url))
    # HEAD: the same head (Content-Length of the GET's body), no body
    out = raw_exchange(p.port, ("HEAD %s?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET %s?probe=kube&b=%%20 HTTP/1.1\r\n"
                                "Host: a\r\nConnection: close\r\n\r\n" % (READY, LIVE)).encode())
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: 18\r\n" in head
    assert rest.startswith(b"HTTP/1.1 200 ")  # no body between the two responses
    got = parse_responses(rest)
    assert [(s, b) for s, _, b in got] == [(200, b"")]
    for path in (LIVE + "?", READY + "?a=b&c", LIVE + "?" + "q" * 2000):
        assert p.request("GET", path)[0] == 200, path
    assert backend.last() is None


def test_near_misses_go_to_routing(backend, portico):
    """Only the exact paths are status paths: everything else is routed (here, no API: 404)."""
    p = portico(basic_config(backend.url))
    for path in ("/status-0123456789abcdeF", "/status-0123456789abcde", "/status-0123456789abcdef/",
                 "/status-0123456789abcde%66", "/Status-0123456789abcdef", "/internal-status-0123456789abcdeX",
                 "/xinternal-status-0123456789abcde", "//status-0123456789abcdef"):
        status, _, body = p.request("GET", path)
        assert status == 404, path
        assert json.loads(body)["statusCode"] == 404
    assert backend.last() is None


def test_other_methods_go_to_routing_and_an_api_there_gets_them(backend, portico):
    """An API at the root whose operations collide with the status paths: GET
    and HEAD are the gateway's, any other method is the API's."""
    cfg = basic_config(backend.url)
    cfg["apis"].append({"id": "root", "path": "", "serviceUrl": backend.url + "/root",
                        "subscriptionRequired": False,
                        "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]})
    p = portico(cfg)
    status, _, body = p.request("POST", LIVE, body=b"{}")
    assert status == 200
    assert json.loads(body)["target"] == "/root" + LIVE
    assert backend.last().method == "POST"
    status, _, body = p.request("PUT", READY + "?x=1", body=b"{}")
    assert status == 200
    assert json.loads(body)["target"] == "/root" + READY + "?x=1"
    n = len(backend.requests)
    status, _, body = p.request("GET", LIVE)
    assert (status, body) == (200, b"")
    assert json.loads(p.request("GET", READY)[2]) == {"status": "ready"}
    assert len(backend.requests) == n  # the GETs never reached the API
    # the API's other paths are its own
    assert json.loads(p.request("GET", "/anything")[2])["target"] == "/root/anything"


def _stored_calls(data):
    """The calls the analytics buckets of the store hold, by API ("" for none)."""
    path = os.path.join(data, "portico.db")
    if not os.path.exists(path):
        return {}
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        rows = db.execute("SELECT api, SUM(success + blocked + failed + other) FROM analytics_buckets "
                          "GROUP BY api").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return dict(rows)


def test_probes_are_logged_but_kept_out_of_analytics(backend, portico, workdir):
    cfg = basic_config(backend.url)
    cfg["analytics"] = {"flushInterval": "200ms"}
    cfg["data"] = os.path.join(workdir, "data")
    p = portico(cfg)
    for _ in range(5):
        assert p.request("GET", LIVE)[0] == 200
        assert p.request("HEAD", READY)[0] == 200
    assert p.request("GET", "/echo/items/1")[0] == 200
    assert p.request("GET", "/nothing-here")[0] == 404
    entries = p.access_entries(wait_for=12)
    assert sum(1 for e in entries if e["path"] == LIVE) == 5
    assert sum(1 for e in entries if e["path"] == READY and e["method"] == "HEAD") == 5
    assert not any(e.get("reason") for e in entries if e["status"] == 200)
    # the API call and the 404 are counted; the ten probes are not
    wait_for(lambda: _stored_calls(cfg["data"]) == {"echo": 1, "": 1}, timeout=5,
             what="the two calls in the analytics buckets")
    time.sleep(0.5)
    assert _stored_calls(cfg["data"]) == {"echo": 1, "": 1}


def test_body_on_a_probe_closes_the_connection(backend, portico):
    """A GET with a body: the probe is answered and the unread body does not
    become the next request."""
    p = portico(basic_config(backend.url))
    out = raw_exchange(p.port, ("GET %s HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n" % LIVE).encode()
                       + b"GET /echo/items/1 HTTP/1.1\r\nHost: a\r\n\r\n")
    got = parse_responses(out)
    assert [s for s, _, _ in got] == [200]
    assert got[0][1].get("connection") == "close"
    assert backend.last() is None


# ---- a gateway node that has no configuration yet ----

def _node_config(workdir, port):
    dead = free_port()  # nothing listens there: the control plane is unreachable
    return {
        "listen": ["127.0.0.1:%d" % port],
        "workers": 1,
        "data": os.path.join(workdir, "data"),
        # a well-formed token (the node refuses a malformed one at load); no one checks its signature here
        "controlPlane": {"url": "http://127.0.0.1:%d" % dead, "token": make_token("gw1", "k" * 64, in_days(5)),
                         "backup": ""},
    }


def test_a_node_without_configuration_is_live_but_not_ready(portico, workdir):
    port = free_port()
    p = portico(_node_config(workdir, port))
    status, _, body = p.request("GET", LIVE)
    assert (status, body) == (200, b"")
    status, headers, body = p.request("GET", READY + "?x=1")
    assert status == 503
    assert json.loads(body) == NOT_READY
    assert headers["content-type"] == "application/json"
    status, headers, body = p.request("HEAD", READY)
    assert (status, body) == (503, b"")
    # every other request: the same 503, with its reason in the access log
    for method, path in (("GET", "/echo/items/1"), ("POST", LIVE), ("GET", "/"), ("DELETE", "/x?y=1")):
        status, _, body = p.request(method, path, body=b"{}" if method == "POST" else None)
        assert status == 503, (method, path)
        assert json.loads(body) == NOT_READY
    entries = p.access_entries(wait_for=7)
    refused = [e for e in entries if e["status"] == 503]
    assert len(refused) == 6
    assert all(e.get("reason") == "GatewayNotReady" for e in refused)
    assert p.proc.poll() is None
    time.sleep(0.2)
    assert p.request("GET", LIVE)[0] == 200  # still live


def test_not_ready_gateway_answers_pipelined_requests_in_order(portico, workdir):
    p = portico(_node_config(workdir, free_port()))
    out = raw_exchange(p.port, ("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET %s HTTP/1.1\r\nHost: a\r\n\r\n"
                                "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % (LIVE, READY)).encode())
    got = parse_responses(out)
    assert [s for s, _, _ in got] == [503, 200, 503]
    wait_for(lambda: len(p.access_entries()) >= 3, what="three access-log lines")


# ---- portico probe [URL]: the container's health check ----

def probe(*args, timeout=15):
    t0 = time.time()
    r = subprocess.run([BIN, "probe"] + list(args), capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode() + r.stderr.decode(), time.time() - t0


def test_probe_passes_on_200_and_names_the_path(backend, portico):
    p = portico(basic_config(backend.url))
    rc, out, _ = probe(p.url + LIVE)
    assert (rc, out) == (0, "")
    rc, out, _ = probe(p.url + READY + "?from=probe")
    assert (rc, out) == (0, "")
    # a URL without a path: the liveness path of that listener
    for url in (p.url, p.url + "/"):
        assert probe(url)[:2] == (0, "")
    entries = p.access_entries(wait_for=4)
    assert [e["path"] for e in entries] == [LIVE, READY, LIVE, LIVE]
    assert all(e["method"] == "GET" for e in entries)


def test_probe_fails_with_one_line_on_anything_but_200(backend, portico):
    p = portico(basic_config(backend.url))
    rc, out, _ = probe(p.url + "/echo/status/500")  # the backend's 500 through the API
    assert rc == 1
    assert out.count("\n") == 1 and "status 500" in out, out
    rc, out, _ = probe(p.url + "/nothing")
    assert rc == 1 and "status 404: Resource not found" in out, out
    dead = free_port()
    rc, out, _ = probe("http://127.0.0.1:%d" % dead)
    assert rc == 1 and out.count("\n") == 1
    assert "127.0.0.1:%d/status-0123456789abcdef" % dead in out and "connect" in out, out


def test_probe_usage_errors_exit_1_not_2():
    """Docker reserves exit status 2 of a health check."""
    for args in (["ftp://127.0.0.1/x"], ["http://127.0.0.1:1/a", "extra"], ["--bogus"], ["not-a-url"],
                 ["http://" + "a" * 5000]):
        rc, out, _ = probe(*args)
        assert rc == 1, args
        assert out.startswith("portico probe: ") and out.count("\n") == 1, out


def test_probe_default_url():
    """No URL: port 8080 of the loopback (something else may listen there on
    a shared machine: then anything but a 200 from it is still a failure)."""
    rc, out, _ = probe()
    if rc == 1:
        assert "http://127.0.0.1:8080/status-0123456789abcdef: " in out, out


def test_probe_gives_up_after_3_seconds():
    """A listener that accepts and never answers: failure within the deadline."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        rc, out, took = probe("http://127.0.0.1:%d" % srv.getsockname()[1])
        assert rc == 1 and "no answer within 3 s" in out, out
        assert 2.5 < took < 6, took
    finally:
        srv.close()


def test_probe_of_a_not_ready_node(portico, workdir):
    p = portico(_node_config(workdir, free_port()))
    assert probe(p.url)[:2] == (0, "")  # alive
    rc, out, _ = probe(p.url + READY)
    assert rc == 1 and "status 503: The gateway has no configuration yet" in out, out
