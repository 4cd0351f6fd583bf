"""A gateway node's analytics on their way to the control plane
(docs/analytics.md, "Gateway nodes"): the calls a node serves arrive in its
heartbeats as version-1 batches of minute buckets, each call counted once
across the batches the control plane accepted -- also when heartbeats fail
for a while (the batch comes again, with the same id) -- and probes of the
status paths are not in them.

The control plane here is a small one of the test's own (the sync protocol's
two endpoints), so that what the node sends can be read as it was sent.
Needs the node mode (controlPlane); not skipped: a build without it fails."""

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import threading
import time

import pytest

from conftest import basic_config, free_port, wait_for
from backends import stop_server

LIVE = "/status-0123456789abcdef"
READY = "/internal-status-0123456789abcdef"
OUTCOMES = ("success", "blocked", "failed", "other")


def token(gateway, key):
    exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=10)).strftime("%Y%m%d%H%M")
    sig = base64.b64encode(hmac.new(key.encode(), ("%s\n%s" % (gateway, exp)).encode(), hashlib.sha512).digest())
    return "GatewayKey %s&%s&%s" % (gateway, exp, sig.decode())


class ControlPlane:
    """GET .../configuration (one generation; a long-poll answers 304 when its wait runs out) and
    POST .../heartbeat (kept; answered `status`)."""

    def __init__(self, entities):
        cp = self
        self.doc = json.dumps({"gateway": "gw1", "generation": 1, "entities": entities}).encode()
        self.heartbeats = []  # (status answered, body)
        self.heartbeat_status = 200
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, body=b""):
                self.send_response(status)
                if status != 304:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                if status in (200, 304):
                    self.send_header("ETag", '"1"')
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def do_GET(self):
                if "/configuration" not in self.path:
                    return self.send(404, b"{}")
                if self.headers.get("If-None-Match", "").strip('"') == "1":
                    time.sleep(1)  # a short long-poll: nothing changes here
                    return self.send(304)
                self.send(200, cp.doc)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with cp.lock:
                    status = cp.heartbeat_status
                    cp.heartbeats.append((status, body))
                self.send(status, json.dumps({"generation": 1}).encode())

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def batches(self, delivered=True):
        with self.lock:
            return [b["analytics"] for s, b in self.heartbeats
                    if "analytics" in b and (s == 200) == delivered]

    def close(self):
        stop_server(self.server)


def calls_by_api(batches):
    out = {}
    for b in batches:
        for k in b["buckets"]:
            out[k.get("api", "")] = out.get(k.get("api", ""), 0) + sum(k.get(o, 0) for o in OUTCOMES)
    return out


@pytest.fixture
def node(backend, portico, workdir):
    entities = {"apis": basic_config(backend.url)["apis"]}
    cp = ControlPlane(entities)
    cfg = {
        "listen": ["127.0.0.1:%d" % free_port()], "workers": 1, "data": os.path.join(workdir, "data"),
        "analytics": {"flushInterval": "200ms"},
        "controlPlane": {"url": cp.url, "token": token("gw1", "k" * 64), "backup": "", "heartbeat": 1},
    }
    p = portico(cfg)
    wait_for(lambda: p.request("GET", READY)[0] == 200, timeout=15, what="the node's first configuration")
    yield p, cp
    cp.close()


def test_a_nodes_calls_reach_the_control_plane_once(node):
    p, cp = node
    for _ in range(5):
        assert p.request("GET", "/echo/items/1")[0] == 200
    for _ in range(2):
        assert p.request("GET", "/nowhere")[0] == 404
    for _ in range(3):
        assert p.request("GET", LIVE)[0] == 200
    wait_for(lambda: calls_by_api(cp.batches()) == {"echo": 5, "": 2}, timeout=10,
             what="the seven calls in delivered heartbeats")
    time.sleep(2.5)  # two more heartbeats: nothing counted twice, no probe
    got = cp.batches()
    assert calls_by_api(got) == {"echo": 5, "": 2}
    ids = [b["id"] for b in got]
    assert len(ids) == len(set(ids))
    for b in got:
        assert b["version"] == 1 and b["dropped"] == 0
        for k in b["buckets"]:
            assert k["start"] % 60 == 0 and abs(k["start"] - time.time()) < 180
            assert set(k) <= {"start", "api", "operation", "product", "subscription", "user", "success",
                              "blocked", "failed", "other", "bandwidth", "cacheHit", "cacheMiss", "timeSum",
                              "timeMin", "timeMax", "backendCount", "backendSum", "backendMin", "backendMax"}
    echo = [k for b in got for k in b["buckets"] if k.get("api") == "echo"]
    assert sum(k.get("backendCount", 0) for k in echo) == 5
    assert all(k["operation"] == "get-item" for k in echo)


def test_failed_heartbeats_send_the_same_batch_again(node):
    p, cp = node
    with cp.lock:
        cp.heartbeat_status = 503
    for _ in range(4):
        assert p.request("GET", "/echo/items/2")[0] == 200
    wait_for(lambda: calls_by_api(cp.batches(delivered=False)).get("echo", 0) >= 4, timeout=10,
             what="a refused heartbeat with the calls")
    refused = cp.batches(delivered=False)
    with cp.lock:
        cp.heartbeat_status = 200
    for _ in range(3):
        assert p.request("GET", "/echo/items/3")[0] == 200
    wait_for(lambda: calls_by_api(cp.batches()).get("echo", 0) >= 7, timeout=10,
             what="every call delivered once the control plane answers")
    time.sleep(2.5)
    delivered = cp.batches()
    assert calls_by_api(delivered) == {"echo": 7}  # the refused batch went again; nothing doubled
    first_refused = next(b for b in refused if b["buckets"])
    assert first_refused["id"] in [b["id"] for b in delivered]  # as it was, with its id
    again = next(b for b in delivered if b["id"] == first_refused["id"])
    assert again == first_refused
