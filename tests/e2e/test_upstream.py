"""The backend (upstream) side: connection pooling and reuse, the stale
connection retry, broken backends (502), timeouts (504), response
re-framing towards the client, what the backend receives, and early
backend responses."""

import http.client
import os
import json
import socket
import threading
import time

import pytest

from conftest import basic_config, free_port, parse_responses, wait_for
from upstream_helpers import (Blackhole, EarlyResponder, ScriptedBackend, _Base, dechunk, exchange, hget,
                              recv_head, split_head)


# ----------------------------------------------------------------- helpers

def up_config(url, **upstream):
    cfg = basic_config(url)
    if upstream:
        cfg["upstream"] = upstream
    return cfg


def assert_json_error(status, headers, body, code):
    assert status == code, body
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"statusCode", "message"}, doc
    assert doc["statusCode"] == code
    assert isinstance(doc["message"], str) and doc["message"]


def entry_for(p, path, n=1):
    """The access-log entries for `path`; waits for at least n of them."""
    deadline = time.time() + 5
    while True:
        got = [e for e in p.access_entries() if e["path"] == path]
        if len(got) >= n or time.time() > deadline:
            return got
        time.sleep(0.02)


def wait_logged(p, path):
    """Waits for the access-log line of `path`.  The gateway writes it when it is done with the
    request: after its backend connection went back to the pool, or was closed."""
    return wait_for(lambda: entry_for(p, path), what="the access-log line of %s" % path)


def raw_hex(data):
    return data.hex()


def raw_get(port, path, response, keep=True, extra=b"", version=b"HTTP/1.1", timeout=3.0):
    """GET through the gateway to the echo backend's /raw with the given verbatim backend response."""
    req = (b"GET /echo%s " % path.encode() + version + b"\r\nHost: gw.test\r\nX-Raw-Response: "
           + raw_hex(response).encode() + (b"\r\nX-Raw-Keep: 1" if keep else b"") + b"\r\n\r\n" + extra)
    return exchange(port, req, timeout=timeout)


def plan_stale_second(rest="answer", stale="close"):
    """Connection 1 answers its first request and then dies on the next one; other connections `rest`."""
    def plan(cid, n):
        if cid == 1:
            return "answer" if n == 1 else stale
        return rest
    return plan


@pytest.fixture
def scripted():
    made = []

    def make(plan):
        b = ScriptedBackend(plan)
        made.append(b)
        return b
    yield make
    for b in made:
        b.close()


# ------------------------------------------------- keep-alive and pooling

def test_sequential_requests_reuse_one_backend_connection(backend, portico):
    p = portico(up_config(backend.url))
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        for i in range(20):
            c.request("GET", "/echo/items/%d" % i)
            r = c.getresponse()
            body = r.read()
            assert r.status == 200
            assert json.loads(body)["target"] == "/base/items/%d" % i
    finally:
        c.close()
    # more client connections, one request each: still the same pooled backend connection
    for i in range(5):
        status, _, body = p.request("POST", "/echo/items", body=b"x%d" % i)
        assert status == 200 and json.loads(body)["method"] == "POST"
    assert len(backend.requests) == 25
    assert backend.connections == 1
    assert {r.conn_id for r in backend.requests} == {1}


def test_max_idle_connections_zero_means_no_reuse(backend, portico):
    p = portico(up_config(backend.url, maxIdleConnections=0))
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        for i in range(8):
            c.request("GET", "/echo/items/%d" % i)
            r = c.getresponse()
            r.read()
            assert r.status == 200
    finally:
        c.close()
    assert backend.connections == 8
    assert [r.conn_id for r in backend.requests] == list(range(1, 9))


def test_backend_connection_close_is_not_reused(backend, portico):
    p = portico(up_config(backend.url))
    for _ in range(3):
        status, headers, body = p.request("GET", "/echo/no-keepalive")
        assert status == 200 and json.loads(body)["target"] == "/base/no-keepalive"
        assert headers.get("connection") != "close"  # the backend's hop-by-hop header is not forwarded
    assert backend.connections == 3
    assert [r.conn_id for r in backend.requests] == [1, 2, 3]


def test_http10_backend_response_is_not_reused(backend, portico):
    p = portico(up_config(backend.url))
    out, _ = raw_get(p.port, "/raw", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                     extra=b"GET /echo/items/1 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    (s1, _, b1), (s2, _, b2) = parse_responses(out)
    assert (s1, b1) == (200, b"ok")
    assert s2 == 200 and json.loads(b2)["target"] == "/base/items/1"
    assert [r.conn_id for r in backend.requests] == [1, 2]


def test_max_idle_connections_bounds_the_pool(backend, portico):
    p = portico(up_config(backend.url, maxIdleConnections=1))

    def concurrent(n, path):
        res = [None] * n

        def one(i):
            res[i] = p.request("GET", path)[0]
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        return res

    assert concurrent(3, "/echo/sleep/300") == [200] * 3
    assert backend.connections == 3
    # only one connection may stay pooled: two concurrent requests need one new connection.
    # A request's access-log line is written after its backend connection went back to the
    # pool (or was closed): once all three are logged, the pool has settled.
    p.access_entries(wait_for=3)
    assert concurrent(2, "/echo/sleep/300") == [200] * 2
    assert backend.connections == 4
    assert len(backend.requests) == 5


def test_idle_timeout_closes_pooled_connection(scripted, portico):
    b = scripted(lambda cid, n: "answer")
    p = portico(up_config(b.url, idleTimeout="300ms"))
    assert json.loads(p.request("GET", "/echo/a")[2])["conn"] == 1
    wait_logged(p, "/echo/a")  # the connection is back in the pool
    status, _, body = p.request("GET", "/echo/b")
    released = time.monotonic()
    assert status == 200 and json.loads(body) == {"conn": 1, "n": 2, "method": "GET", "target": "/base/b"}
    eof = b.wait_eof(1, timeout=3)
    assert eof is not None, "the gateway never closed the idle backend connection"
    assert 0.2 <= eof - released <= 1.5, eof - released
    status, _, body = p.request("GET", "/echo/c")
    assert status == 200 and json.loads(body)["conn"] == 2
    assert b.connections == 2


def test_large_response_then_connection_reused(backend, portico):
    p = portico(up_config(backend.url))
    n = 3 * 1024 * 1024 + 17
    status, headers, body = p.request("GET", "/echo/big?bytes=%d" % n)
    assert status == 200 and headers["content-length"] == str(n)
    assert len(body) == n and body == b"x" * n
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and json.loads(body)["connection"] == 1
    assert backend.connections == 1


def test_extra_bytes_after_response_prevent_reuse(backend, portico):
    p = portico(up_config(backend.url))
    out, _ = raw_get(p.port, "/raw", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 201 Smuggled\r\n\r\n",
                     extra=b"GET /echo/items/1 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    (s1, _, b1), (s2, _, b2) = parse_responses(out)
    assert (s1, b1) == (200, b"ok")
    assert s2 == 200 and json.loads(b2)["target"] == "/base/items/1"
    assert b"Smuggled" not in out
    assert [r.conn_id for r in backend.requests] == [1, 2]


def test_client_abort_mid_response_drops_backend_connection(backend, portico):
    p = portico(up_config(backend.url))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=3)
    s.sendall(b"GET /echo/stream?chunks=20&size=10&delay=50 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()
    # the gateway is done with the stream once it logs it (499): only then could it have
    # handed its backend connection back to the pool
    wait_logged(p, "/echo/stream")
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200
    # the half-read stream connection must not be handed to the next request
    assert json.loads(body)["connection"] == 2
    assert backend.connections == 2


# ---------------------------------------------------------- stale retries

@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_stale_pooled_connection_retried_for_idempotent(scripted, portico, method):
    b = scripted(plan_stale_second())
    p = portico(up_config(b.url))
    status, _, body = p.request("GET", "/echo/first")
    assert status == 200 and json.loads(body)["conn"] == 1
    wait_logged(p, "/echo/first")  # the connection is back in the pool
    status, headers, body = p.request(method, "/echo/second")
    assert status == 200
    if method == "HEAD":
        assert body == b""
    else:
        assert json.loads(body) == {"conn": 2, "n": 1, "method": method, "target": "/base/second"}
    got = [(r.conn_id, r.n, r.method, r.target) for r in b.requests]
    assert got == [(1, 1, "GET", "/base/first"), (1, 2, method, "/base/second"), (2, 1, method, "/base/second")]
    assert b.connections == 2
    e = entry_for(p, "/echo/second")[-1]
    assert e["status"] == 200 and "reason" not in e


def test_stale_pooled_connection_reset_is_retried(scripted, portico):
    b = scripted(plan_stale_second(stale="rst"))
    p = portico(up_config(b.url))
    assert p.request("GET", "/echo/first")[0] == 200
    wait_logged(p, "/echo/first")  # the connection is back in the pool
    status, _, body = p.request("GET", "/echo/second")
    assert status == 200 and json.loads(body)["conn"] == 2
    assert [(r.conn_id, r.target) for r in b.requests] == [(1, "/base/first"), (1, "/base/second"),
                                                            (2, "/base/second")]


def test_backend_closing_after_answer_get_still_succeeds(scripted, portico):
    # the backend answers with keep-alive framing and closes at once (its FIN rides with the answer's
    # last bytes): the next GET reaches the backend exactly once, on a fresh connection
    b = scripted(lambda cid, n: "answer-fin")
    p = portico(up_config(b.url))
    assert json.loads(p.request("GET", "/echo/one")[2])["conn"] == 1
    wait_logged(p, "/echo/one")  # the gateway is done with connection 1 (pooled or dropped)
    wait_for(b.closed_all, what="the backend to close connection 1")
    status, _, body = p.request("GET", "/echo/two")
    assert status == 200 and json.loads(body) == {"conn": 2, "n": 1, "method": "GET", "target": "/base/two"}
    assert [(r.conn_id, r.target) for r in b.requests] == [(1, "/base/one"), (2, "/base/two")]
    assert b.connections == 2


def test_idle_connection_closed_by_backend_is_dropped(scripted, portico):
    # the backend closes its idle connection a little after answering: the gateway sees the FIN while
    # the connection is pooled and drops it, so even a POST is served on a fresh connection
    b = scripted(lambda cid, n: "answer-linger")
    p = portico(up_config(b.url))
    assert json.loads(p.request("GET", "/echo/one")[2])["conn"] == 1
    wait_logged(p, "/echo/one")  # the connection is pooled
    wait_for(b.closed_all, what="the backend to close its idle connection")  # 100 ms after its answer
    status, _, body = p.request("POST", "/echo/items", body=b"payload")
    assert status == 200 and json.loads(body) == {"conn": 2, "n": 1, "method": "POST", "target": "/base/items"}
    assert [(r.conn_id, r.method) for r in b.requests] == [(1, "GET"), (2, "POST")]
    assert b.requests[-1].body == b"payload"


def test_fin_arriving_with_the_answer_is_noticed(scripted, portico):
    # Same as above, but the FIN travels in the segment carrying the answer's last bytes (TCP_CORK).
    # The gateway had the FIN long before the POST came: it must not send the POST on that
    # connection.  Repeated because, rarely, the gateway reads between the data and the FIN.
    b = scripted(lambda cid, n: "answer-fin")
    p = portico(up_config(b.url))
    statuses = []
    for i in range(5):
        assert p.request("GET", "/echo/get%d" % i)[0] == 200
        wait_logged(p, "/echo/get%d" % i)  # the gateway is done with the GET's connection
        wait_for(b.closed_all, what="the backend to close the GET's connection")
        statuses.append(p.request("POST", "/echo/items", body=b"p%d" % i)[0])
    posts = [r.body for r in b.requests if r.method == "POST"]
    assert statuses == [200] * 5
    assert posts == [b"p%d" % i for i in range(5)]


@pytest.mark.parametrize("method,body", [("POST", b"payload"), ("POST", None), ("PUT", b"payload"),
                                         ("PATCH", b"payload")])
def test_stale_pooled_connection_not_retried(scripted, portico, method, body):
    b = scripted(plan_stale_second())
    p = portico(up_config(b.url))
    assert p.request("GET", "/echo/first")[0] == 200
    wait_logged(p, "/echo/first")  # the connection is back in the pool
    status, headers, resp = p.request(method, "/echo/items", body=body)
    assert_json_error(status, headers, resp, 502)
    # a marker sent after the 502: a retry of the refused call would have reached the backend
    # before it, so once the marker is there, the backend has all it will ever get of the call
    assert p.request("GET", "/echo/marker")[0] == 200
    got = [(r.conn_id, r.n, r.method) for r in b.requests]
    assert got == [(1, 1, "GET"), (1, 2, method), (2, 1, "GET")]
    assert b.connections == 2  # the marker's: no second connection for the call
    if body:
        assert b.requests[1].body == body
    e = entry_for(p, "/echo/items")[-1]
    assert e["status"] == 502 and e["reason"] == "BackendConnectionFailure"


def test_retry_happens_only_once(scripted, portico):
    # connections 1 (after its first answer) and 2 die on their request; from connection 3 on,
    # the backend answers (the marker's; a second retry would get an answer, not a 502)
    b = scripted(lambda cid, n: "answer" if (cid, n) == (1, 1) or cid >= 3 else "close")
    p = portico(up_config(b.url))
    assert p.request("GET", "/echo/first")[0] == 200
    wait_logged(p, "/echo/first")  # the connection is back in the pool
    status, headers, body = p.request("GET", "/echo/second")
    assert_json_error(status, headers, body, 502)
    # a marker after the 502: a further retry would have reached the backend before it
    assert p.request("GET", "/echo/marker")[0] == 200
    assert [(r.conn_id, r.target) for r in b.requests] == [(1, "/base/first"), (1, "/base/second"),
                                                            (2, "/base/second"), (3, "/base/marker")]
    assert b.connections == 3


def test_no_retry_when_part_of_the_response_came(scripted, portico):
    b = scripted(plan_stale_second(stale=(b"HTTP/1.1 20", "linger")))
    p = portico(up_config(b.url))
    assert p.request("GET", "/echo/first")[0] == 200
    wait_logged(p, "/echo/first")  # the connection is back in the pool
    status, headers, body = p.request("GET", "/echo/second")
    assert_json_error(status, headers, body, 502)
    # a marker after the 502: a retry would have reached the backend before it
    assert p.request("GET", "/echo/marker")[0] == 200
    assert [(r.conn_id, r.target) for r in b.requests] == [(1, "/base/first"), (1, "/base/second"),
                                                            (2, "/base/marker")]
    assert b.connections == 2  # the marker's: no second connection for the call


# --------------------------------------------------------- broken backends

def test_connection_refused_is_502(portico):
    port = free_port()
    p = portico(up_config("http://127.0.0.1:%d" % port))
    t0 = time.monotonic()
    status, headers, body = p.request("GET", "/echo/items/1")
    assert time.monotonic() - t0 < 2
    assert_json_error(status, headers, body, 502)
    e = entry_for(p, "/echo/items/1")[-1]
    assert e["status"] == 502 and e["reason"] == "BackendConnectionFailure"


def test_backend_closing_without_answer_is_502(backend, portico):
    p = portico(up_config(backend.url))
    status, headers, body = p.request("GET", "/echo/close-before")
    assert_json_error(status, headers, body, 502)
    e = entry_for(p, "/echo/close-before")[-1]
    assert e["status"] == 502 and e["reason"] == "BackendConnectionFailure"
    # the client connection and the gateway still work
    assert p.request("GET", "/echo/items/1")[0] == 200
    # a fresh connection is not retried: a retry would have reached the backend before this later call
    assert [r.target for r in backend.requests] == ["/base/close-before", "/base/items/1"]


MALFORMED = {
    "garbage": b"this is not http\r\n\r\n",
    "te-chunked-twice": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-unknown": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "two-content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    "bad-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nab",
    "bare-lf": b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok",
    "bare-lf-status": b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
    "nul": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "http2-version": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_response_head_is_502(backend, portico, name):
    p = portico(up_config(backend.url))
    status, headers, body = p.request("GET", "/echo/raw", headers={"X-Raw-Response": raw_hex(MALFORMED[name]),
                                                                   "X-Raw-Keep": "1"})
    assert_json_error(status, headers, body, 502)
    e = entry_for(p, "/echo/raw")[-1]
    assert e["status"] == 502 and e["reason"] == "BackendConnectionFailure"
    # the broken connection is not pooled
    status, _, body = p.request("GET", "/echo/items/1")
    assert status == 200 and json.loads(body)["connection"] == 2
    # not retried: a retry would have reached the backend before this later call
    assert [r.target for r in backend.requests] == ["/base/raw", "/base/items/1"]


PIPELINED = b"GET /echo/items/2 HTTP/1.1\r\nHost: gw.test\r\n\r\n"


def test_close_mid_body_truncates_and_closes(backend, portico):
    p = portico(up_config(backend.url))  # readTimeout stays 300s: only the backend's close can end this
    for i in range(3):  # /close-mid closes at once: its FIN often rides with the last bytes
        t0 = time.monotonic()
        out, closed = exchange(p.port, b"GET /echo/close-mid?i=%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % i
                               + PIPELINED)
        took = time.monotonic() - t0
        status, headers, _, rest = split_head(out)
        assert status == 200 and hget(headers, "Content-Length") == "1000"
        assert rest == b"0123456789"  # the truncated body, and nothing after it
        assert closed and took < 1.5, took
        assert out.count(b"HTTP/1.1") == 1
    # a marker after the last exchange: a pipelined request sent on would have reached the backend before it
    assert p.request("GET", "/echo/marker")[0] == 200
    assert [r.target for r in backend.requests] == ["/base/close-mid?i=%d" % i for i in range(3)] + ["/base/marker"]
    assert [e["reason"] for e in entry_for(p, "/echo/close-mid", 3)] == ["BackendConnectionFailure"] * 3


TRUNCATED = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789"


def test_truncated_body_is_noticed_and_client_connection_closed(scripted, portico):
    b = scripted(lambda cid, n: (TRUNCATED, "linger") if cid == 1 else "answer")
    p = portico(up_config(b.url))  # readTimeout stays 300s: only the backend's close can end this
    t0 = time.monotonic()
    out, closed = exchange(p.port, b"GET /echo/trunc HTTP/1.1\r\nHost: gw.test\r\n\r\n" + PIPELINED)
    took = time.monotonic() - t0
    status, headers, _, rest = split_head(out)
    assert status == 200 and hget(headers, "Content-Length") == "1000"
    assert rest == b"0123456789"
    assert closed and took < 1.5, took
    assert out.count(b"HTTP/1.1") == 1
    # a marker after the exchange: the pipelined request, had it been sent, would have reached
    # the backend before it
    assert p.request("GET", "/echo/marker")[0] == 200
    assert [r.target for r in b.requests] == ["/base/trunc", "/base/marker"]  # the pipelined one never sent
    e = entry_for(p, "/echo/trunc")[-1]
    assert e["reason"] == "BackendConnectionFailure"


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"


@pytest.mark.parametrize("action", [(CHUNKED_HEAD + b"ZZ\r\nworld\r\n0\r\n\r\n", "keep"),
                                    (CHUNKED_HEAD + b"5\r\nwor", "linger"),
                                    (CHUNKED_HEAD + b"5\r\nworldXX\r\n0\r\n\r\n", "keep"),
                                    (CHUNKED_HEAD + b"0\r\nX-T: a\x01b\r\n\r\n", "keep")],
                         ids=["bad-chunk-size", "closed-mid-chunk", "no-crlf-after-data", "bad-trailer"])
def test_broken_chunked_body_truncates_and_closes(scripted, portico, action):
    b = scripted(lambda cid, n: action if cid == 1 else "answer")
    p = portico(up_config(b.url))
    t0 = time.monotonic()
    out, closed = exchange(p.port, b"GET /echo/chunky HTTP/1.1\r\nHost: gw.test\r\n\r\n" + PIPELINED)
    took = time.monotonic() - t0
    status, headers, _, rest = split_head(out)
    assert status == 200 and hget(headers, "Transfer-Encoding") == "chunked"
    assert rest.startswith(b"5\r\nhello\r\n")
    with pytest.raises(ValueError):
        dechunk(rest)  # never a terminating chunk: the client sees the body is incomplete
    assert b"0\r\n\r\n" not in rest
    assert closed and took < 1.5, took
    assert out.count(b"HTTP/1.1") == 1
    # a marker after the exchange: the pipelined request, had it been sent, would have reached
    # the backend before it
    assert p.request("GET", "/echo/marker")[0] == 200
    assert [r.target for r in b.requests] == ["/base/chunky", "/base/marker"]
    assert entry_for(p, "/echo/chunky")[-1]["reason"] == "BackendConnectionFailure"


EOF_BODY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 3000


@pytest.mark.parametrize("kind", ["eof-delimited-body", "truncated-body", "partial-head"])
def test_fin_coalesced_with_last_bytes_is_noticed(scripted, portico, kind):
    data = {"eof-delimited-body": EOF_BODY, "truncated-body": TRUNCATED, "partial-head": b"HTTP/1.1 20"}[kind]
    b = scripted(lambda cid, n: (data, "fin"))
    p = portico(up_config(b.url, readTimeout="30s"))
    # several rounds: rarely the gateway happens to read between the data and the FIN
    for i in range(4):
        out, closed = exchange(p.port, b"GET /echo/r%d HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"
                               % i, timeout=1.0)
        assert closed, (kind, i, out[-100:])
        status, headers, _, rest = split_head(out)
        if kind == "eof-delimited-body":
            assert status == 200 and dechunk(rest) == (b"y" * 3000, b"")
        elif kind == "truncated-body":
            assert status == 200 and rest == b"0123456789"
            assert entry_for(p, "/echo/r%d" % i)[-1]["reason"] == "BackendConnectionFailure"
        else:
            assert status == 502
            assert entry_for(p, "/echo/r%d" % i)[-1]["reason"] == "BackendConnectionFailure"


# ---------------------------------------------------------------- timeouts

def test_read_timeout_is_504(backend, portico):
    p = portico(up_config(backend.url, readTimeout="300ms"))
    t0 = time.monotonic()
    status, headers, body = p.request("GET", "/echo/sleep/2000")
    took = time.monotonic() - t0
    assert_json_error(status, headers, body, 504)
    assert 0.25 <= took <= 1.5, took
    assert [r.target for r in backend.requests] == ["/base/sleep/2000"]
    e = entry_for(p, "/echo/sleep/2000")[-1]
    assert e["status"] == 504 and e["reason"] == "Timeout"


def test_read_timeout_between_body_reads_truncates(backend, portico):
    p = portico(up_config(backend.url, readTimeout="300ms"))
    t0 = time.monotonic()
    out, closed = exchange(p.port, b"GET /echo/stream?chunks=3&size=5&delay=1500 HTTP/1.1\r\nHost: gw.test\r\n\r\n"
                           + PIPELINED, timeout=4)
    took = time.monotonic() - t0
    status, headers, _, rest = split_head(out)
    assert status == 200 and hget(headers, "Transfer-Encoding") == "chunked"
    assert rest == b""
    assert closed and 0.25 <= took <= 1.4, took
    assert out.count(b"HTTP/1.1") == 1
    e = entry_for(p, "/echo/stream")[-1]
    assert e["reason"] == "Timeout"


def test_connect_timeout_is_504(portico):
    hole = Blackhole()
    try:
        p = portico(up_config(hole.url, connectTimeout="300ms"))
        t0 = time.monotonic()
        status, headers, body = p.request("GET", "/echo/items/1")
        took = time.monotonic() - t0
        assert_json_error(status, headers, body, 504)
        assert 0.25 <= took <= 1.5, took
        e = entry_for(p, "/echo/items/1")[-1]
        assert e["status"] == 504 and e["reason"] == "Timeout"
    finally:
        hole.close()


def test_slow_stream_within_read_timeout_succeeds(backend, portico):
    p = portico(up_config(backend.url, readTimeout="600ms"))
    t0 = time.monotonic()
    status, headers, body = p.request("GET", "/echo/stream?chunks=5&size=10&delay=200")
    took = time.monotonic() - t0
    assert status == 200
    assert body == b"".join(bytes([0x61 + i]) * 10 for i in range(5))
    assert took >= 0.9  # longer than readTimeout in total: the timeout is between reads
    e = entry_for(p, "/echo/stream")[-1]
    assert e["status"] == 200 and "reason" not in e


def test_read_timeout_starts_after_the_request_body(backend, portico):
    p = portico(up_config(backend.url, readTimeout="300ms"))
    head = b"POST /echo/items HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 30\r\nConnection: close\r\n\r\n"
    t0 = time.monotonic()
    out, closed = exchange(p.port, head + b"a" * 10, chunks=[b"b" * 10, b"c" * 10], pause=0.3, timeout=4)
    assert time.monotonic() - t0 >= 0.6
    (status, _, body), = parse_responses(out)
    assert status == 200
    assert backend.last().body == b"a" * 10 + b"b" * 10 + b"c" * 10


# ------------------------------------------------------------- re-framing

STREAM = b"".join(bytes([0x61 + i]) * 7 for i in range(3))


def test_chunked_response_rechunked_for_http11_client(backend, portico):
    p = portico(up_config(backend.url))
    out, _ = exchange(p.port, b"GET /echo/stream?chunks=3&size=7&delay=20 HTTP/1.1\r\nHost: gw.test\r\n\r\n"
                      + b"GET /echo/items/2 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    status, headers, _, rest = split_head(out)
    assert status == 200
    assert hget(headers, "Transfer-Encoding") == "chunked" and hget(headers, "Content-Length") is None
    assert hget(headers, "Connection") is None
    body, after = dechunk(rest)
    assert body == STREAM
    (s2, _, b2), = parse_responses(after)
    assert s2 == 200 and json.loads(b2)["target"] == "/base/items/2"
    assert backend.connections == 1  # the chunked backend response ended cleanly: reused


@pytest.mark.parametrize("conn", [b"", b"Connection: keep-alive\r\n"], ids=["plain", "keep-alive"])
def test_chunked_response_to_http10_client_is_unchunked_and_closed(backend, portico, conn):
    p = portico(up_config(backend.url))
    out, closed = exchange(p.port, b"GET /echo/stream?chunks=3&size=7&delay=20 HTTP/1.0\r\nHost: gw.test\r\n"
                           + conn + b"\r\n")
    status, headers, _, rest = split_head(out)
    assert status == 200
    assert hget(headers, "Transfer-Encoding") is None and hget(headers, "Content-Length") is None
    assert (hget(headers, "Connection") or "close").lower() == "close"
    assert rest == STREAM
    assert closed
    assert backend.last().version == "HTTP/1.1"


def test_until_close_response_chunked_for_http11_client(scripted, portico):
    b = scripted(lambda cid, n: (EOF_BODY, "linger") if n == 1 and cid == 1 else "answer")
    p = portico(up_config(b.url))
    t0 = time.monotonic()
    out, _ = exchange(p.port, b"GET /echo/until-close HTTP/1.1\r\nHost: gw.test\r\n\r\n"
                      + b"GET /echo/items/2 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    assert time.monotonic() - t0 < 1.5
    status, headers, _, rest = split_head(out)
    assert status == 200 and hget(headers, "Transfer-Encoding") == "chunked"
    assert hget(headers, "Content-Length") is None
    body, after = dechunk(rest)
    assert body == b"y" * 3000
    (s2, _, b2), = parse_responses(after)  # the client connection stayed usable
    assert s2 == 200 and json.loads(b2) == {"conn": 2, "n": 1, "method": "GET", "target": "/base/items/2"}
    assert [(r.conn_id, r.target) for r in b.requests] == [(1, "/base/until-close"), (2, "/base/items/2")]


def test_echo_until_close_delivered_chunked_promptly(backend, portico):
    p = portico(up_config(backend.url))  # readTimeout 300s: the end must come from the backend's close
    for i in range(3):
        t0 = time.monotonic()
        out, _ = exchange(p.port, b"GET /echo/until-close?bytes=%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % (1000 + i)
                          + b"GET /echo/items/%d HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n" % i)
        assert time.monotonic() - t0 < 1.5
        status, headers, _, rest = split_head(out)
        assert status == 200 and hget(headers, "Transfer-Encoding") == "chunked"
        body, after = dechunk(rest)
        assert body == b"y" * (1000 + i)
        (s2, _, b2), = parse_responses(after)
        assert s2 == 200 and json.loads(b2)["target"] == "/base/items/%d" % i
    assert backend.connections >= 4  # an EOF-delimited response's connection is never reused


def test_until_close_response_to_http10_client(scripted, portico):
    b = scripted(lambda cid, n: (EOF_BODY, "linger"))
    p = portico(up_config(b.url))
    t0 = time.monotonic()
    out, closed = exchange(p.port, b"GET /echo/until-close HTTP/1.0\r\nHost: gw.test\r\n\r\n")
    status, headers, _, rest = split_head(out)
    assert status == 200
    assert hget(headers, "Transfer-Encoding") is None and hget(headers, "Content-Length") is None
    assert rest == b"y" * 3000 and closed
    assert time.monotonic() - t0 < 1.5
    assert b.requests[0].version == "HTTP/1.1"


def test_head_keeps_content_length_without_body(backend, portico):
    p = portico(up_config(backend.url))
    out, _ = exchange(p.port, b"HEAD /echo/head-length HTTP/1.1\r\nHost: gw.test\r\n\r\n"
                      + b"GET /echo/items/2 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    status, headers, _, rest = split_head(out)
    assert status == 200 and hget(headers, "Content-Length") == "1234"
    assert hget(headers, "Transfer-Encoding") is None
    (s2, _, b2), = parse_responses(rest)  # no body bytes between the two responses
    assert s2 == 200 and json.loads(b2)["target"] == "/base/items/2"
    assert [r.method for r in backend.requests] == ["HEAD", "GET"]
    # an answer to HEAD that announces a body never shares its connection with
    # the next exchange: the backend might send that body after all
    assert backend.connections == 2


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_have_no_body(backend, portico, code):
    p = portico(up_config(backend.url))
    out, _ = exchange(p.port, b"GET /echo/status/%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % code
                      + b"GET /echo/items/2 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    status, headers, _, rest = split_head(out)
    assert status == code
    assert hget(headers, "Transfer-Encoding") is None and hget(headers, "Content-Length") is None
    (s2, _, b2), = parse_responses(rest)
    assert s2 == 200 and json.loads(b2)["target"] == "/base/items/2"
    assert backend.connections == 1


def test_204_with_body_framing_from_backend(backend, portico):
    # a 204 carries no body whatever the backend's framing headers claim
    p = portico(up_config(backend.url))
    out, _ = raw_get(p.port, "/raw", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n",
                     extra=b"GET /echo/items/2 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    status, headers, _, rest = split_head(out)
    assert status == 204 and hget(headers, "X-A") == "1"
    assert hget(headers, "Content-Length") is None and hget(headers, "Transfer-Encoding") is None
    (s2, _, b2), = parse_responses(rest)
    assert s2 == 200 and json.loads(b2)["target"] == "/base/items/2"


def test_interim_103_is_not_forwarded(backend, portico):
    p = portico(up_config(backend.url))
    out, _ = exchange(p.port, b"GET /echo/interim HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"103" not in out.split(b"\r\n\r\n", 1)[0] and b"Early Hints" not in out
    (status, headers, body), = parse_responses(out)
    assert status == 200 and json.loads(body)["target"] == "/base/interim"
    assert "link" not in headers
    assert len(backend.requests) == 1


def test_hop_by_hop_response_headers_are_stripped(backend, portico):
    p = portico(up_config(backend.url))
    resp = (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5, max=100\r\n"
            b"X-Hop: secret\r\nX-End: kept\r\nContent-Length: 2\r\n\r\nok")
    out, _ = raw_get(p.port, "/raw", resp, extra=PIPELINED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    status, headers, _, rest = split_head(out)
    names = [k.lower() for k, _ in headers]
    assert status == 200
    assert "x-hop" not in names and "keep-alive" not in names and "connection" not in names
    assert hget(headers, "X-End") == "kept"
    assert rest.startswith(b"ok")
    assert b"secret" not in out


def test_content_length_is_rewritten_canonically(backend, portico):
    p = portico(up_config(backend.url))
    out, _ = raw_get(p.port, "/raw", b"HTTP/1.1 200 OK\r\ncontent-LENGTH:   0005\r\nX-A: 1\r\n\r\nhello",
                     extra=PIPELINED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    status, headers, head, rest = split_head(out)
    assert status == 200
    assert [(k, v) for k, v in headers if k.lower() == "content-length"] == [("Content-Length", "5")]
    assert b"\r\nContent-Length: 5\r\n" in head + b"\r\n"
    assert rest.startswith(b"hello")
    (s2, _, b2), = parse_responses(rest[5:])
    assert s2 == 200 and json.loads(b2)["target"] == "/base/items/2"


@pytest.mark.parametrize("ows", [
    b" ", b"  ",
    b"\t", b" \t"], ids=["space", "spaces", "tab", "space-tab"])
def test_content_length_with_trailing_whitespace_is_accepted(backend, portico, ows):
    # RFC 9112 5: field-line = field-name ":" OWS field-value OWS, OWS = *( SP / HTAB )
    p = portico(up_config(backend.url))
    out, _ = raw_get(p.port, "/raw", b"HTTP/1.1 200 OK\r\nContent-Length: 5" + ows + b"\r\n\r\nhello",
                     extra=PIPELINED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    status, headers, _, rest = split_head(out)
    assert status == 200 and hget(headers, "Content-Length") == "5"
    assert rest.startswith(b"hello")
    (s2, _, b2), = parse_responses(rest[5:])
    assert s2 == 200 and json.loads(b2)["target"] == "/base/items/2"


# --------------------------------------------------- what the backend sees

def test_backend_receives_http11_host_forwarding_headers_and_query(backend, portico):
    p = portico(up_config(backend.url))
    out, _ = exchange(p.port, b"GET /echo/items/7?a=1&b=%2F&c HTTP/1.0\r\nHost: gw.example:8080\r\n"
                      b"X-Other: v\r\n\r\n")
    (status, _, body), = parse_responses(out)
    assert status == 200
    req = backend.last()
    assert req.version == "HTTP/1.1"
    assert req.method == "GET" and req.target == "/base/items/7?a=1&b=%2F&c"
    assert req.header_all("Host") == ["127.0.0.1:%d" % backend.port]
    assert req.header_all("X-Forwarded-For") == ["127.0.0.1"]
    assert req.header_all("X-Forwarded-Proto") == ["http"]
    assert req.header_all("X-Forwarded-Host") == ["gw.example:8080"]
    assert req.header_all("Forwarded") == ['for=127.0.0.1;host="gw.example:8080";proto=http']
    rid = req.header_all("X-Request-Id")
    assert len(rid) == 1 and len(rid[0]) == 36 and rid[0].count("-") == 4
    assert req.header("X-Other") == "v"
    assert entry_for(p, "/echo/items/7")[-1]["requestId"] == rid[0]


# ------------------------------------------------------ early responses

EARLY_TOTAL = 10 * 1024 * 1024


def early_upload(port):
    """Starts a 10 MB upload, keeps sending a little while reading; returns (received, closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        s.sendall(b"POST /echo/items HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n\r\n" % EARLY_TOTAL
                  + b"u" * 65536)
        out = bytearray()
        sent = 65536
        deadline = time.monotonic() + 5
        s.settimeout(0.05)
        while time.monotonic() < deadline:
            if sent < 1024 * 1024:  # keep uploading a little while we wait
                try:
                    sent += s.send(b"u" * 16384)
                except (socket.timeout, BlockingIOError):
                    pass
                except OSError:
                    sent = EARLY_TOTAL
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return bytes(out), True
            if not chunk:
                return bytes(out), True
            out += chunk
        return bytes(out), False
    finally:
        s.close()


@pytest.fixture
def early():
    b = EarlyResponder(413)
    yield b
    b.close()


def test_early_backend_response_is_delivered_and_connection_closed(early, portico):
    p = portico(up_config(early.url))
    out, closed = early_upload(p.port)
    (status, headers, body), = parse_responses(out)
    assert status == 413
    assert json.loads(body) == {"statusCode": 413, "message": "too large"}
    assert closed, "the client connection was not closed after the early response"
    assert len(early.requests) == 1 and early.requests[0].target == "/base/items"
    assert early.wait_eof(1) is not None  # the backend connection is not pooled either
    with early.lock:
        assert early.body_bytes < EARLY_TOTAL
    e = entry_for(p, "/echo/items")[-1]
    assert e["status"] == 413


def test_early_backend_response_announces_the_close(early, portico):
    # RFC 9112 9.6: a server closing after a response SHOULD send the "close" connection option;
    # the gateway's own errors with an unread body do so
    p = portico(up_config(early.url))
    out, closed = early_upload(p.port)
    status, headers, _, _ = split_head(out)
    assert status == 413 and closed
    assert (hget(headers, "Connection") or "").lower() == "close"


class SilentBackend(_Base):
    """Reads a request and never answers; records when the gateway closes."""

    def serve(self, s, cid):
        s.settimeout(30)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        self._mark_eof(cid)


def test_a_client_that_leaves_is_noticed_while_the_backend_is_silent(portico):
    """The client goes away 5 ms after its request; the backend never answers.
    The gateway drops the backend exchange at once and logs 499
    ClientConnectionFailure (it used to wait for readTimeout, 300 s, holding
    both sockets), and serves everyone else meanwhile."""
    b = SilentBackend()
    try:
        p = portico(up_config(b.url, readTimeout="60s"))
        # the count once the gateway is wholly up: the port accepts before the workers and the control
        # thread's own descriptors exist (a slow start, under ASan, measured 9 against 17)
        assert p.request("GET", "/nowhere")[0] == 404
        base_fds, deadline = -1, time.monotonic() + 3
        while time.monotonic() < deadline:
            n = len(os.listdir("/proc/%d/fd" % p.proc.pid))
            if n == base_fds:
                break
            base_fds = n
            time.sleep(0.1)
        socks = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            s.sendall(b"GET /echo/hang/%d HTTP/1.1\r\nHost: gw.test\r\n\r\n" % i)
            socks.append(s)
        time.sleep(0.005)  # the scenario: the clients leave 5 ms after their requests
        for s in socks:
            s.close()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(b.eof_at) < 20:
            time.sleep(0.02)
        assert len(b.eof_at) == 20, "the gateway kept backend connections of clients that left"
        assert p.request("GET", "/nowhere")[0] == 404  # others are served meanwhile
        entries = [e for e in p.access_entries(wait_for=20) if e["path"].startswith("/echo/hang/")]
        assert len(entries) == 20
        assert all(e["status"] == 499 and e["reason"] == "ClientConnectionFailure" for e in entries), entries[:3]
        assert all(e["totalTime"] < 2000 for e in entries)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and len(os.listdir("/proc/%d/fd" % p.proc.pid)) > base_fds:
            time.sleep(0.02)
        fds = os.listdir("/proc/%d/fd" % p.proc.pid)
        assert len(fds) <= base_fds, [os.readlink("/proc/%d/fd/%s" % (p.proc.pid, f)) for f in fds]
    finally:
        b.close()


def test_a_half_closed_client_with_a_pipelined_request_is_not_dropped(backend, portico):
    """Bytes of a next request are pending: a live client that half-closed."""
    p = portico(up_config(backend.url))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    try:
        s.sendall(b"GET /echo/sleep/200 HTTP/1.1\r\nHost: gw.test\r\n\r\n"
                  b"GET /echo/items/2 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    rs = parse_responses(data)
    assert [r[0] for r in rs] == [200, 200], data[:300]


class CloseAfterAnswer(_Base):
    """Answers each request (keep-alive, no Connection: close), then closes
    the connection 30 ms later."""

    def serve(self, s, cid):
        f = s.makefile("rb")
        try:
            from upstream_helpers import _read_body, _read_head
            head = _read_head(f)
            if head is None:
                return
            _read_body(f, head[3])
            body = b'{"ok": true}'
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.03)  # the scenario: the close comes after the answer, on its own
        finally:
            f.close()


def test_pooled_connections_the_backend_closed_are_not_used(portico):
    """POSTs (never retried), each sent once the backend has closed the pooled
    connection of the one before: each must find that and take a fresh one."""
    b = CloseAfterAnswer()
    try:
        p = portico(up_config(b.url))
        failed = 0
        for i in range(40):
            st, _, _ = p.request("POST", "/echo/items", body=b"x" * 100)
            failed += st != 200
            wait_for(b.closed_all, what="the backend to close the connection of POST %d" % i)
        assert failed == 0
        assert b.connections == 40
    finally:
        b.close()


class NoBodyReader(_Base):
    """Reads a request head, and its body only once told to (drain): until
    then the gateway's writes back up.  Records when the gateway closes."""

    def __init__(self):
        self.drain = threading.Event()
        super().__init__()

    def serve(self, s, cid):
        s.settimeout(30)
        if recv_head(s) is None:
            return
        self.drain.wait(30)
        try:
            while s.recv(1 << 20):
                pass
        except OSError:
            pass
        self._mark_eof(cid)


def test_an_upload_reset_under_backpressure_is_noticed(portico):
    """The backend takes no body; the client fills every buffer on the way,
    then resets.  The gateway, which had stopped reading the client, notices
    the reset at once: 499, both connections closed -- not a 408 after
    bodyIdle (30 s)."""
    import struct
    b = NoBodyReader()
    try:
        p = portico(up_config(b.url))
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"POST /echo/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1073741824\r\n\r\n")
        s.setblocking(False)
        chunk = b"x" * 65536
        sent = 0
        deadline = time.monotonic() + 5
        stalls = 0
        while time.monotonic() < deadline and stalls < 20:
            try:
                sent += s.send(chunk)
                stalls = 0
            except BlockingIOError:
                # the scenario: buffers count as full once sends have stalled for 0.4 s in a row
                stalls += 1
                time.sleep(0.02)
        assert sent > 0
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # reset
        t0 = time.monotonic()
        entries = []
        while time.monotonic() - t0 < 3:
            entries = [e for e in p.access_entries() if e["path"] == "/echo/upload"]
            if entries:
                break
            time.sleep(0.05)
        assert entries and entries[0]["status"] == 499, entries
        assert entries[0]["reason"] == "ClientConnectionFailure"
        b.drain.set()  # what the gateway had sent, then its close
        assert b.wait_eof(1, timeout=3) is not None
    finally:
        b.close()
