"""A portico process as a gateway node of a control plane (issue 14, "Node behaviour").

The control plane here is the tests' own (node_helpers.FakeControlPlane): it
speaks the contract's sync protocol and can fail on purpose in ways a real
one rarely does (5xx, slow or broken answers, another gateway's document).
The node is the real binary; its backend the real echo backend; what the
client got, what the control plane received and what the node wrote to its
backup are all checked.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import re

from conftest import BIN, Portico, wait_for, assert_stays
from node_helpers import FakeControlPlane, echo_entities, free_port, make_ca, metric, make_token, in_days

NOT_READY = (503,)  # no configuration yet: every request gets the readiness 503 (GatewayNotReady)


@pytest.fixture
def cp():
    c = FakeControlPlane()
    yield c
    c.close()


def node_config(cp_url, token, workdir, port=None, mport=None, **cpx):
    cpc = {"url": cp_url, "token": token, "backup": os.path.join(workdir, "backup"), "heartbeat": 1}
    cpc.update(cpx)
    if cpc.get("token") is None:
        del cpc["token"]
    return {
        "listen": ["127.0.0.1:%d" % (port or free_port())],
        "workers": 2,
        "metrics": {"listen": "127.0.0.1:%d" % (mport or free_port()), "auth": "none"},
        "controlPlane": cpc,
    }


def get(node, path="/echo/x", headers=None):
    try:
        return node.request("GET", path, headers=headers, timeout=5)[0]
    except OSError:
        return None


def metrics(node):
    c = http.client.HTTPConnection("127.0.0.1", int(node.config["metrics"]["listen"].rsplit(":", 1)[1]), timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return text


def m(node, name):
    return metric(metrics(node), name)


def start_node(portico, cp, workdir, **kw):
    extra = kw.pop("extra_args", ())
    env = kw.pop("env", None)
    token = kw.pop("token", cp.token())
    return portico(node_config(cp.url, token, workdir, **kw), extra_args=extra, env=env)


def synced(node, gen):
    return lambda: m(node, "portico_control_plane_generation") == gen


# ---------------------------------------------------------------- start and serve


def test_node_starts_not_ready_then_serves_the_document(backend, portico, cp, workdir):
    cp.fail_status = 503  # the control plane is there but cannot answer yet
    node = start_node(portico, cp, workdir)
    assert get(node) in NOT_READY
    assert m(node, "portico_control_plane_generation") == 0
    wait_for(lambda: m(node, "portico_control_plane_sync_failures_total") >= 1, what="a failed attempt")
    assert m(node, "portico_control_plane_connected") == 0
    assert "answered 503" in node.log_text()
    assert not backend.requests  # nothing reached the backend

    gen = cp.publish(echo_entities(backend.url))
    cp.fail_status = 0
    wait_for(synced(node, gen), timeout=10, what="the first document")
    assert get(node) == 200
    assert backend.last().target == "/base/x"
    assert m(node, "portico_control_plane_connected") == 1
    assert abs(m(node, "portico_control_plane_last_sync_timestamp_seconds") - time.time()) < 10
    # the long-poll: the generation it has, the wait it asks for, its node id
    wait_for(lambda: cp.polls()[-1]["if_none_match"] == '"%d"' % gen, what="a long-poll with the generation")
    last = cp.polls()[-1]
    assert "wait=25" in last["query"] and "node=" in last["query"]
    assert last["auth"] == node.config["controlPlane"]["token"]
    # heartbeats: the node's status
    wait_for(lambda: any(h["generation"] == gen for h in cp.heartbeats), what="a heartbeat")
    hb = [h for h in cp.heartbeats if h["generation"] == gen][-1]
    assert hb["listen"] == node.config["listen"] and hb["configError"] is None
    assert hb["nodeId"] == "%s:%d" % (socket.gethostname(), node.port)
    assert hb["version"] and hb["hostname"] == socket.gethostname()


def test_changes_reach_the_node_fast_and_under_load_without_a_failed_request(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url, extra_header=("X-Gen", "0")))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the first document")
    stop, results, lock = threading.Event(), [], threading.Lock()

    def load():
        c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
        while not stop.is_set():
            try:
                c.request("GET", "/echo/load")
                r = c.getresponse()
                r.read()
                out = (r.status, r.getheader("X-Gen"))
            except OSError as e:
                out = (repr(e), None)
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=5)
            with lock:
                results.append(out)
        c.close()
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 6):
            t0 = time.time()
            ents = echo_entities(backend.url, extra_header=("X-Gen", str(i)))
            ents["apis"].append({"id": "v%d" % i, "path": "v%d" % i, "serviceUrl": backend.url,
                                 "subscriptionRequired": False,
                                 "operations": [{"id": "a", "method": "GET", "urlTemplate": "/*"}]})
            gen = cp.publish(ents)
            wait_for(lambda: get(node, "/v%d/z" % i) == 200, timeout=5, what="generation %d served" % gen)
            assert time.time() - t0 < 1.0, "a change took %.2f s to be served" % (time.time() - t0)
            assert get(node, "/v%d/z" % (i - 1)) in (404, None) or i == 1  # the previous one is gone
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    bad = [r for r in results if r[0] != 200]
    assert len(results) > 100 and not bad, (len(results), bad[:5])
    assert results[-1][1] == "5"  # the last generation's policy
    assert m(node, "portico_control_plane_generation") == gen


def test_the_backup_is_encrypted_atomic_and_private(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url, key="very-secret-subscription-key"))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    path = os.path.join(workdir, "backup")
    wait_for(lambda: os.path.exists(path), what="the backup")
    data = open(path, "rb").read()
    assert data.startswith(b"PTCB1\n")
    assert b"very-secret-subscription-key" not in data and b"serviceUrl" not in data
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert not os.path.exists(path + ".tmp")
    # the documented format, read by an implementation of its own: HKDF-SHA256 of the token's signature
    # part (salt "portico config backup", info the gateway id), AES-256-GCM, the magic as associated data
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError:
        AESGCM = None
    if AESGCM:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"portico config backup",
                   info=b"gw1").derive(node.config["controlPlane"]["token"].split("&")[2].encode())
        doc = json.loads(AESGCM(key).decrypt(data[6:18], data[18:], b"PTCB1\n"))
        assert doc == json.loads(cp.doc_bytes())
    # each change rewrites it (a fresh nonce: never the same bytes)
    gen = cp.publish(echo_entities(backend.url, key="another-secret-key-0000"))
    wait_for(synced(node, gen), what="the change")
    wait_for(lambda: open(path, "rb").read() != data, what="the backup rewritten")
    assert b"another-secret-key" not in open(path, "rb").read()


# ---------------------------------------------------------------- failures


def test_control_plane_down_keeps_serving_and_a_restart_starts_from_the_backup(backend, portico, workdir):
    cp = FakeControlPlane()
    port = cp.port
    gen = cp.publish(echo_entities(backend.url))
    cfg = node_config(cp.url, cp.token(), workdir)
    node = portico(cfg)
    wait_for(synced(node, gen), what="the document")
    wait_for(lambda: os.path.exists(os.path.join(workdir, "backup")), what="the backup")
    cp.close()  # the control plane goes away
    wait_for(lambda: m(node, "portico_control_plane_connected") == 0, timeout=10, what="the node noticing")
    assert "unreachable" in node.log_text() or "cannot connect" in node.log_text().lower()
    assert all(get(node) == 200 for _ in range(20))
    failures = m(node, "portico_control_plane_sync_failures_total")
    assert failures >= 1

    # restarted during the outage: it serves the backup's generation at once
    assert node.stop() == 0
    node2 = portico(cfg)
    assert get(node2) == 200
    assert m(node2, "portico_control_plane_generation") == gen
    assert "serving generation %d until the control plane answers" % gen in node2.log_text()

    # the control plane comes back with a newer generation: the node catches up
    cp2 = FakeControlPlane(port=port)
    try:
        cp2.generation = gen + 5
        ents = echo_entities(backend.url)
        ents["apis"][0]["path"] = "moved"
        cp2.publish(ents)
        wait_for(synced(node2, gen + 6), timeout=20, what="the catch-up")
        assert get(node2, "/moved/x") == 200 and get(node2) == 404
        wait_for(lambda: m(node2, "portico_control_plane_connected") == 1, what="connected again")
        assert "connected" in node2.log_text().split("serving generation %d until" % gen)[-1]
    finally:
        cp2.close()


def test_5xx_backs_off_keeps_serving_and_recovers(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    cp.fail_status = 500
    cp.publish()  # the held poll answers, the next ones fail
    wait_for(lambda: m(node, "portico_control_plane_sync_failures_total") >= 2, timeout=10, what="failures")
    n0, t0 = len(cp.polls()), time.time()
    time.sleep(2.5)
    # backing off: 1 s, 2 s, 4 s... (with jitter): a handful of attempts, not a storm
    assert len(cp.polls()) - n0 <= 3
    assert get(node) == 200
    assert m(node, "portico_control_plane_connected") == 0
    log = node.log_text()
    assert log.count("answered 500") <= 2, "one log line per change of state (and one a minute)"
    cp.fail_status = 0
    gen = cp.publish()
    wait_for(synced(node, gen), timeout=20, what="the recovery")
    assert m(node, "portico_control_plane_connected") == 1


def test_a_document_that_cannot_be_applied_keeps_the_running_one(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    bad = echo_entities(backend.url)
    bad["products"][0]["apis"] = ["no-such-api"]
    bad_gen = cp.publish(bad)
    wait_for(lambda: any(h["configError"] for h in cp.heartbeats), timeout=10, what="configError reported")
    err = [h["configError"] for h in cp.heartbeats if h["configError"]][-1]
    assert err.startswith("generation %d:" % bad_gen) and "no-such-api" in err
    assert m(node, "portico_control_plane_generation") == gen
    assert get(node) == 200
    assert "generation %d cannot be applied" % bad_gen in node.log_text()
    # the next good generation clears it
    gen = cp.publish(echo_entities(backend.url))
    wait_for(synced(node, gen), what="the good document")
    wait_for(lambda: cp.heartbeats[-1]["configError"] is None and cp.heartbeats[-1]["generation"] == gen,
             what="configError cleared")


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "not JSON"),
    (json.dumps({"gateway": "other-gw", "generation": 99, "entities": {}}).encode(), "not of this node's 'gw1'"),
    (json.dumps({"gateway": "gw1", "generation": "7", "entities": {}}).encode(), "not a configuration document"),
    (json.dumps({"gateway": "gw1", "generation": 7, "entities": {"listen": ["0.0.0.0:1"]}}).encode(),
     "not an entity list"),
])
def test_hostile_documents_are_refused(backend, portico, cp, workdir, raw, message):
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    cp.publish(raw=raw)
    wait_for(lambda: message in node.log_text(), timeout=10, what="the refusal logged")
    assert get(node) == 200
    assert m(node, "portico_control_plane_generation") == gen
    assert node.proc.poll() is None


def test_gzip_documents(backend, portico, cp, workdir):
    cp.gzip = True
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the gzip document")
    assert get(node) == 200
    assert cp.polls()[0]["accept_encoding"] == "gzip"
    # a broken gzip body, or one that would inflate past the cap: refused, the running one stays
    import gzip as gz
    cp.publish(raw=b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    wait_for(lambda: "a broken gzip body" in node.log_text(), timeout=10, what="the broken body refused")
    bomb = gz.compress(b" " * (300 << 20), compresslevel=9)  # 300 MiB of spaces, about 300 KiB sent
    cp.publish(raw=bomb)
    wait_for(lambda: "inflates past 256 MiB" in node.log_text(), timeout=40, what="the bomb refused")
    assert get(node) == 200 and m(node, "portico_control_plane_generation") == gen
    assert node.proc.poll() is None


def test_slow_answers_are_waited_for(backend, portico, cp, workdir):
    cp.delay = 2
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), timeout=10, what="the slow document")
    assert m(node, "portico_control_plane_sync_failures_total") == 0


# ---------------------------------------------------------------- backup refused


def _node_with_backup(portico, backend, workdir, cp):
    gen = cp.publish(echo_entities(backend.url))
    cfg = node_config(cp.url, cp.token(), workdir)
    node = portico(cfg)
    wait_for(synced(node, gen), what="the document")
    path = os.path.join(workdir, "backup")
    wait_for(lambda: os.path.exists(path), what="the backup")
    assert node.stop() == 0
    return cfg, path


def test_a_corrupted_backup_is_refused_with_a_clear_error(backend, portico, workdir):
    cp = FakeControlPlane()
    cfg, path = _node_with_backup(portico, backend, workdir, cp)
    cp.close()  # down: only the backup could serve
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    node = portico(cfg)
    assert get(node) in NOT_READY
    assert m(node, "portico_control_plane_generation") == 0
    assert ("configuration backup %s: corrupted, or written with another gateway token; not used" % path
            in node.log_text())
    assert not backend.requests or True
    # truncated, or not a backup at all: the same
    for content in (bytes(data[:10]), b"hello"):
        node.stop()
        before = node.log_text().count("configuration backup %s: " % path)
        open(path, "wb").write(content)
        node = portico(cfg)
        assert get(node) in NOT_READY
        assert node.log_text().count("configuration backup %s: " % path) == before + 1


def test_a_backup_is_not_read_with_another_token(backend, portico, workdir):
    cp = FakeControlPlane()
    cfg, path = _node_with_backup(portico, backend, workdir, cp)
    cp.close()
    cfg["controlPlane"]["token"] = make_token("gw1", "another-key", in_days(5))
    node = portico(cfg)
    assert get(node) in NOT_READY
    assert "corrupted, or written with another gateway token" in node.log_text()
    # another gateway's token: not its backup either
    node.stop()
    cfg["controlPlane"]["token"] = make_token("gw2", "k" * 64, in_days(10))
    node = portico(cfg)
    assert get(node) in NOT_READY
    assert "corrupted, or written with another gateway token" in node.log_text()


def test_no_backup_when_backup_is_empty(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir, backup="")
    wait_for(synced(node, gen), what="the document")
    time.sleep(0.3)
    assert not os.path.exists(os.path.join(workdir, "backup"))
    assert not [f for f in os.listdir(workdir) if "backup" in f]


# ---------------------------------------------------------------- tokens


def test_token_expired_at_the_control_plane_stops_syncing_not_serving(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    cp.force_expired = True
    cp.publish()  # the held poll gets this one; the next is refused
    wait_for(lambda: "TokenExpired" in node.log_text(), timeout=10, what="the expiry logged")
    n, served = len(cp.polls()), m(node, "portico_control_plane_generation")
    assert served in (gen, gen + 1)  # the poll held when it expired may still have got the next one
    cp.publish(echo_entities(backend.url, path="later"))
    assert_stays(lambda: len(cp.polls()) == n, 3, what="no more long-polls (one a minute)")
    assert get(node) == 200 and get(node, "/later/x") == 404
    assert m(node, "portico_control_plane_generation") == served
    assert m(node, "portico_control_plane_connected") == 0
    hb = len(cp.heartbeats)
    assert_stays(lambda: len(cp.heartbeats) == hb, 2, what="no heartbeats with an expired token")


def test_a_token_past_its_own_expiry_is_not_sent(backend, portico, cp, workdir):
    cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir, token=cp.token(days=-1))
    assert_stays(lambda: not cp.calls, 2, what="no call with an expired token")
    assert "the gateway token has expired" in node.log_text()
    assert m(node, "portico_gateway_token_expiry_seconds") == 0
    assert get(node) in NOT_READY


def test_a_token_near_expiry_is_warned_about(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir, token=cp.token(days=2))
    wait_for(synced(node, gen), what="the document")
    left = m(node, "portico_gateway_token_expiry_seconds")
    assert 2 * 86400 - 300 < left <= 2 * 86400 + 60
    assert "the gateway token expires in 4" in node.log_text()  # 47 or 48 hours
    assert node.log_text().count("the gateway token expires in") == 1  # once a day


def test_a_refused_token_is_logged_without_the_key_and_a_rotated_token_file_is_read(backend, portico, cp, workdir):
    tf = os.path.join(workdir, "token")
    wrong = make_token("gw1", "wrong-key", in_days(5))
    with open(tf, "w") as f:
        f.write(wrong + "\n")
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir, token=None, tokenFile=tf)
    wait_for(lambda: "signature does not match" in node.log_text(), timeout=10, what="the refusal")
    assert wrong.split("&")[2] not in node.log_text()  # the signature is never logged
    assert get(node) in NOT_READY
    with open(tf + ".new", "w") as f:  # a Kubernetes Secret's update: a new file renamed in place
        f.write(cp.token() + "\n")
    os.replace(tf + ".new", tf)
    wait_for(synced(node, gen), timeout=20, what="the rotated token used")
    assert get(node) == 200


# ---------------------------------------------------------------- configuration


def test_sighup_rereads_the_settings_and_keeps_the_entities(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    cfg = dict(node.config)
    cfg["limits"] = {"uriLength": 100}
    assert node.reload(cfg)
    assert get(node) == 200
    assert get(node, "/echo/" + "x" * 200) == 414  # the new setting
    gen = cp.publish(echo_entities(backend.url, path="after"))
    wait_for(synced(node, gen), what="syncing after the reload")
    assert get(node, "/after/x") == 200


def _check(workdir, text, env=None):
    path = os.path.join(workdir, "portico.yaml")
    with open(path, "w") as f:
        f.write(text)
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, env=e, cwd=workdir)
    return r.returncode, (r.stdout + r.stderr).decode()


TOKEN = make_token("gw1", "k" * 64, in_days(10))


def test_a_node_file_with_entities_or_listeners_of_its_own_is_refused(workdir):
    code, out = _check(workdir, (
        "listen: [\"127.0.0.1:1\"]\n"
        "controlPlane:\n"
        "  url: http://127.0.0.1:9\n"
        "  token: \"%s\"\n"
        "apis:\n"
        "  - {id: a, path: a, serviceUrl: \"http://127.0.0.1:1\"}\n"
        "management:\n"
        "  listen: 127.0.0.1:2\n"
        "portal:\n"
        "  listen: 127.0.0.1:3\n"
        "namedValues: []\n" % TOKEN))
    assert code == 1
    path = os.path.join(workdir, "portico.yaml")
    assert "%s:5:1: apis: a gateway node takes its entities from the control plane" % path in out, out
    assert "%s:11:1: namedValues: a gateway node takes its entities from the control plane" % path in out
    assert "%s:8:11: management.listen: a gateway node has no management API" % path in out
    assert "%s:10:11: portal.listen: a gateway node has no portal" % path in out
    assert TOKEN.split("&")[2] not in out
    # the environment makes a node too
    code, out = _check(workdir, "listen: [\"127.0.0.1:1\"]\nproducts: []\n",
                       {"PORTICO_CONTROL_PLANE_URL": "http://127.0.0.1:9", "PORTICO_GATEWAY_TOKEN": TOKEN})
    assert code == 1 and "%s:2:1: products: a gateway node takes its entities" % path in out, out


@pytest.mark.parametrize("cp_yaml, message", [
    ("{url: \"http://127.0.0.1:9\"}", "token or tokenFile is needed"),
    ("{url: \"ftp://127.0.0.1:9\", token: \"%s\"}" % TOKEN, "url: expected http:// or https://"),
    ("{url: \"http://127.0.0.1:9/management\", token: \"%s\"}" % TOKEN, "no path"),
    ("{url: \"http://127.0.0.1:9\", token: \"GatewayKey gw1&2027&c2VjcmV0\"}", "token: expected the text"),
    ("{url: \"http://127.0.0.1:9\", token: \"%s\", tokenFile: /etc/hostname}" % TOKEN, "not both"),
    ("{url: \"http://127.0.0.1:9\", tokenFile: /nonexistent/token}", "cannot read /nonexistent/token"),
    ("{url: \"http://127.0.0.1:9\", token: \"%s\", heartbeat: 0}" % TOKEN, "0 is out of range (1..3600)"),
    ("{url: \"http://127.0.0.1:9\", token: \"%s\", pollWait: 61}" % TOKEN, "61 is out of range (0..60)"),
    ("{token: \"%s\"}" % TOKEN, "url"),
    ("{url: \"http://127.0.0.1:9\", token: \"%s\", bogus: 1}" % TOKEN, "unknown key 'bogus'"),
])
def test_control_plane_settings_are_checked(workdir, cp_yaml, message):
    code, out = _check(workdir, "listen: [\"127.0.0.1:1\"]\ncontrolPlane: %s\n" % cp_yaml)
    assert code == 1 and message in out, out
    assert "c2VjcmV0" not in out  # a token is not repeated


def test_environment_overrides_and_ca_file_option_are_accepted(workdir):
    code, out = _check(workdir, "listen: [\"127.0.0.1:1\"]\ncontrolPlane: {url: \"bad\", token: \"bad\"}\n",
                       {"PORTICO_CONTROL_PLANE_URL": "http://127.0.0.1:9", "PORTICO_GATEWAY_TOKEN": TOKEN})
    assert code == 1  # the file's own values are still checked
    code, out = _check(workdir, "listen: [\"127.0.0.1:1\"]\ncontrolPlane: {url: \"http://a:1\"}\n",
                       {"PORTICO_GATEWAY_TOKEN": TOKEN})
    assert code == 0, out
    code, out = _check(workdir, "listen: [\"127.0.0.1:1\"]\n", {"PORTICO_CONTROL_PLANE_URL": "http://x:1/y",
                                                                  "PORTICO_GATEWAY_TOKEN": TOKEN})
    assert code == 1 and "$PORTICO_CONTROL_PLANE_URL" in out
    code, out = _check(workdir, "listen: [\"127.0.0.1:1\"]\n", {"PORTICO_CONTROL_PLANE_URL": "http://x:1",
                                                                  "PORTICO_GATEWAY_TOKEN": "GatewayKey nope"})
    assert code == 1 and "$PORTICO_GATEWAY_TOKEN" in out and "nope" not in out


def test_environment_only_node_without_a_file(backend, cp, workdir):
    default = re.search(r"default (\S+)\)", subprocess.run([BIN, "-h"], capture_output=True, text=True).stdout)
    if not default or os.path.exists(default.group(1)):
        pytest.skip("a configuration exists at the default path")
    try:
        with socket.create_connection(("127.0.0.1", 8080), timeout=0.2):
            pytest.skip("port 8080 is in use on this machine")
    except OSError:
        pass
    gen = cp.publish(echo_entities(backend.url))
    env = dict(os.environ)
    env.update({"PORTICO_CONTROL_PLANE_URL": cp.url, "PORTICO_GATEWAY_TOKEN": cp.token(),
                "PORTICO_NODE_ID": "container-7", "PORTICO_CONFIG_BACKUP": os.path.join(workdir, "bk")})
    out = open(os.path.join(workdir, "out"), "wb")
    err = open(os.path.join(workdir, "err"), "wb")
    p = subprocess.Popen([BIN], cwd=workdir, env=env, stdout=out, stderr=err)
    try:
        wait_for(lambda: any(h.get("generation") == gen for h in cp.heartbeats), timeout=15,
                 what="the node's heartbeat with the document")
        hb = cp.heartbeats[-1]
        assert hb["nodeId"] == "container-7" and hb["listen"] == ["0.0.0.0:8080"]
        c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=5)
        c.request("GET", "/echo/x")
        assert c.getresponse().status == 200
        c.close()
        assert os.path.exists(os.path.join(workdir, "bk"))
        assert not os.path.exists(os.path.join(workdir, "var", "portico.db"))  # no store on disk
        assert "node=container-7" in cp.polls()[-1]["query"]
        p.send_signal(signal.SIGHUP)  # no file to re-read: the built-in settings again
        time.sleep(0.5)
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=15) == 0
        out.close()
        err.close()
    log = open(os.path.join(workdir, "err")).read()
    assert "listening on 0.0.0.0:8080" in log and "configuration reloaded" in log


# ---------------------------------------------------------------- TLS


@pytest.fixture
def nodes(workdir):
    """Factory: nodes(name, config, **kw) -> a started node with a folder of its own (its logs, backup)."""
    made = []

    def make(name, cfg, **kw):
        d = os.path.join(workdir, name)
        os.makedirs(d, exist_ok=True)
        p = Portico(d, cfg, **kw)
        made.append(p)
        return p.start()
    yield make
    for p in made:
        assert p.stop() in (0, None)


@pytest.fixture
def tls_cp(workdir):
    ca, cert, key = make_ca(workdir)
    c = FakeControlPlane(tls=(cert, key))
    c.ca = ca
    yield c
    c.close()


def test_tls_control_plane_checked_against_ca_file(backend, nodes, tls_cp, workdir):
    gen = tls_cp.publish(echo_entities(backend.url))

    def cfg(name, **cpx):
        return node_config(tls_cp.url, tls_cp.token(), os.path.join(workdir, name), **cpx)
    good = nodes("a", cfg("a", caFile=tls_cp.ca))
    wait_for(synced(good, gen), timeout=10, what="sync over https")
    assert get(good) == 200

    # without the CA: the system's store does not know it, nothing is taken and the token is not sent
    bad = nodes("b", cfg("b"))
    wait_for(lambda: m(bad, "portico_control_plane_sync_failures_total") >= 1, timeout=10, what="the refusal")
    assert "certificate" in bad.log_text().lower()
    assert get(bad) in NOT_READY and m(bad, "portico_control_plane_generation") == 0
    assert not any(":%d" % bad.port in c["query"] for c in tls_cp.calls)

    # portico --ca-file wins over the file's (missing) caFile
    opt = nodes("c", cfg("c"), extra_args=["--ca-file", tls_cp.ca])
    wait_for(synced(opt, gen), timeout=10, what="sync with --ca-file")
    assert get(opt) == 200


# ---------------------------------------------------------------- against the real control plane


def test_against_the_real_control_plane(backend, portico, nodes, workdir):
    from mgmt_helpers import TOKEN as ADMIN, Mgmt, mgmt_config
    cfg = mgmt_config(backend.url)
    cpp = portico(cfg, env={"PORTICO_ADMIN_TOKEN": ADMIN})
    mg = Mgmt(cpp)
    mg.ok("PUT", "apis/a1", {"path": "a1", "serviceUrl": backend.url + "/one"})
    mg.ok("PUT", "apis/a1/operations/op", {"method": "GET", "urlTemplate": "/x"})
    mg.ok("PUT", "apis/a2", {"path": "a2", "serviceUrl": backend.url + "/two", "subscriptionRequired": False})
    mg.ok("PUT", "apis/a2/operations/op", {"method": "GET", "urlTemplate": "/x"})
    mg.ok("PUT", "subscriptions/s1", {"scope": "/apis/a1", "state": "active"})
    key = mg.keys("s1")["primaryKey"]
    mg.ok("PUT", "gateways/g1", {"locationData": {"name": "here"}})
    mg.ok("PUT", "gateways/g1/apis/a1")
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7 * 86400))
    tok = mg.ok("POST", "gateways/g1/generateToken", {"keyType": "primary", "expiry": expiry})["value"]
    node = nodes("n1", node_config("http://" + cfg["management"]["listen"], tok, os.path.join(workdir, "n1")))
    hk = "Ocp-Apim-Subscription-Key"
    wait_for(lambda: get(node, "/a1/x", {hk: key}) == 200, timeout=10, what="the assigned API served")
    assert backend.last().target == "/one/x"
    assert get(node, "/a1/x") == 401  # its subscription is required on the node too
    assert get(node, "/a2/x") == 404 and get(node, "/echo/x") == 404  # not assigned to g1

    # a change on the control plane is served within a second
    t0 = time.time()
    mg.ok("PUT", "gateways/g1/apis/a2")
    wait_for(lambda: get(node, "/a2/x") == 200, timeout=5, what="the newly assigned API")
    assert time.time() - t0 < 1.0
    # a regenerated key: the new one opens, the old one no longer
    mg.ok("POST", "subscriptions/s1/regeneratePrimaryKey")
    new = mg.keys("s1")["primaryKey"]
    wait_for(lambda: get(node, "/a1/x", {hk: new}) == 200, timeout=5, what="the new key served")
    assert get(node, "/a1/x", {hk: key}) == 401

    # the control plane lists the node, connected, at the generation it serves
    def listed():
        items = mg.ok("GET", "gateways/g1/nodes")["value"]
        return (len(items) == 1 and items[0]["status"] == "connected" and
                items[0]["generation"] == m(node, "portico_control_plane_generation") and
                items[0]["configError"] is None)
    wait_for(listed, timeout=10, what="the node listed")

    # a regenerated gateway key: the node's token stops working, it keeps serving
    mg.ok("POST", "gateways/g1/regenerateKey", {"keyType": "primary"})
    wait_for(lambda: "refuses the node" in node.log_text(), timeout=10, what="the refusal logged")
    assert get(node, "/a2/x") == 200


# ---------------------------------------------------------------- review 14b


def _polls_in(cp, seconds):
    n0 = len(cp.polls())
    time.sleep(seconds)
    return len(cp.polls()) - n0


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "not JSON"),
    (json.dumps({"gateway": "other-gw", "generation": 99, "entities": {}}).encode(), "not of this node's 'gw1'"),
    (json.dumps({"gateway": "gw1", "generation": 0, "entities": {}}).encode(), "generation 0"),
])
def test_an_unusable_200_is_backed_off_like_an_unreachable_control_plane(backend, portico, cp, workdir, raw,
                                                                          message):
    cp.publish(raw=raw)  # from the first poll on: a fresh node that never gets a document it can use
    node = start_node(portico, cp, workdir)
    wait_for(lambda: message in node.log_text(), timeout=10, what="the refusal logged")
    # backing off (1 s, 2 s, 4 s... with jitter): a handful of polls in 4 s, not thousands
    assert _polls_in(cp, 4) <= 4
    assert node.log_text().count("the configuration it sent is refused") == 1, "one line per change (a minute)"
    assert m(node, "portico_control_plane_sync_failures_total") >= 2
    assert m(node, "portico_control_plane_connected") == 0
    assert get(node) in NOT_READY
    # a usable document ends it at once (at the next attempt)
    gen = cp.publish(echo_entities(backend.url))
    wait_for(synced(node, gen), timeout=40, what="the good document")
    assert get(node) == 200 and m(node, "portico_control_plane_connected") == 1


def test_a_200_with_the_generation_the_node_named_is_backed_off(backend, portico, cp, workdir):
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    # a control plane that answers 200 with the generation named in If-None-Match (a bug there)
    cp.publish(raw=json.dumps({"gateway": "gw1", "generation": gen, "entities": {}}).encode())
    wait_for(lambda: "the one the node already has" in node.log_text(), timeout=10, what="the refusal")
    assert _polls_in(cp, 4) <= 4
    assert get(node) == 200 and m(node, "portico_control_plane_generation") == gen


def _backup_opens_with(path, token, gateway="gw1"):
    """Decrypts the backup with the key of token (the documented format); None when it does not open."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    data = open(path, "rb").read()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"portico config backup",
               info=gateway.encode()).derive(token.split("&")[2].encode())
    try:
        return json.loads(AESGCM(key).decrypt(data[6:18], data[18:], b"PTCB1\n"))
    except Exception:
        return None


def test_a_rotated_token_reseals_the_backup_so_a_restart_during_an_outage_serves(backend, portico, workdir):
    cp = FakeControlPlane()
    try:
        gen = cp.publish(echo_entities(backend.url))
        tf, path = os.path.join(workdir, "token"), os.path.join(workdir, "backup")
        old, new = cp.token(days=10), cp.token(days=20)  # same key, another expiry: another signature
        assert old != new
        with open(tf, "w") as f:
            f.write(old + "\n")
        cfg = node_config(cp.url, None, workdir, tokenFile=tf, pollWait=1)
        node = portico(cfg)
        wait_for(synced(node, gen), what="the document")
        wait_for(lambda: os.path.exists(path), what="the backup")
        # the Secret rotates; no configuration change follows (only 304s)
        with open(tf + ".new", "w") as f:
            f.write(new + "\n")
        os.replace(tf + ".new", tf)
        wait_for(lambda: sum(1 for c in cp.polls() if c["auth"] == new) >= 3, timeout=15,
                 what="polls answered to the new token")
        wait_for(lambda: "sealed again with the new gateway token" in node.log_text(), timeout=5,
                 what="the backup sealed again")
        try:
            doc = _backup_opens_with(path, new)
            assert doc and doc["generation"] == gen
            assert _backup_opens_with(path, old) is None
        except ImportError:
            pass
    finally:
        cp.close()  # the outage
    assert node.stop() == 0
    node2 = portico(cfg)  # restarted with the new token only
    assert get(node2) == 200
    assert m(node2, "portico_control_plane_generation") == gen
    assert "corrupted, or written with another gateway token" not in node2.log_text()


def test_a_node_keeps_no_analytics_it_cannot_serve(backend, portico, cp, workdir):
    ents = echo_entities(backend.url)
    for i in range(1, 8):  # more APIs: more bucket keys
        ents["apis"].append(dict(ents["apis"][0], id="e%d" % i, path="e%d" % i))
    gen = cp.publish(ents)
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    time.sleep(1.5)  # the first flushes, and the store's pages for the document, settle
    base = m(node, "portico_store_memory_bytes")
    assert base and base > 0
    sent, lock = [0], threading.Lock()

    def load(t):
        c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        for i in range(500):
            # varied: 8 APIs, long distinct URLs and queries (what request records would keep)
            c.request("GET", "/%s/%d/%d/%s?q=%d" % ("echo" if i % 8 == 0 else "e%d" % (i % 8), t, i,
                                                      "x" * 1500, i))
            r = c.getresponse()
            r.read()
            assert r.status == 200
            with lock:
                sent[0] += 1
        c.close()
    threads = [threading.Thread(target=load, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sent[0] == 2000
    # every call reaches the control plane in the heartbeats...
    def shipped():
        n = 0
        for h in list(cp.heartbeats):
            for b in (h.get("analytics") or {}).get("buckets", []):
                n += sum(b.get(k, 0) for k in ("success", "blocked", "failed", "other"))
        return n
    wait_for(lambda: shipped() >= 2000, timeout=20, what="the calls shipped")
    assert shipped() == 2000
    # ...and nothing grows in the node's store: 2,000 request records of 1.5 KB would be 3 MB and more
    time.sleep(1.5)  # a flush or two more
    grown = m(node, "portico_store_memory_bytes") - base
    assert grown < 512 * 1024, "the node's store grew by %d bytes" % grown


def test_token_file_from_the_environment_is_read_at_every_attempt(backend, portico, cp, workdir):
    tf = os.path.join(workdir, "secret-token")
    with open(tf, "w") as f:
        f.write(make_token("gw1", "wrong-key", in_days(5)) + "\n")
    gen = cp.publish(echo_entities(backend.url))
    cfg = node_config(cp.url, cp.token(), workdir)  # the file's token loses to the environment's file
    node = portico(cfg, env={"PORTICO_GATEWAY_TOKEN_FILE": tf})
    wait_for(lambda: "signature does not match" in node.log_text(), timeout=10, what="the file's token used")
    assert get(node) in NOT_READY
    rotated = cp.token(days=7)  # made once: its expiry is rounded to a minute that may turn meanwhile
    with open(tf + ".new", "w") as f:  # the mounted Secret is updated: no restart
        f.write(rotated + "\n")
    os.replace(tf + ".new", tf)
    wait_for(synced(node, gen), timeout=40, what="the rotated token used")
    assert get(node) == 200
    assert cp.polls()[-1]["auth"] == rotated


def test_token_file_environment_is_checked(workdir):
    cfg = "listen: [\"127.0.0.1:1\"]\n"
    code, out = _check(workdir, cfg, {"PORTICO_CONTROL_PLANE_URL": "http://127.0.0.1:9",
                                      "PORTICO_GATEWAY_TOKEN_FILE": "/nonexistent/token"})
    assert code == 1 and "$PORTICO_GATEWAY_TOKEN_FILE: cannot read /nonexistent/token" in out, out
    tf = os.path.join(workdir, "t")
    with open(tf, "w") as f:
        f.write(TOKEN + "\n")
    code, out = _check(workdir, cfg, {"PORTICO_CONTROL_PLANE_URL": "http://127.0.0.1:9",
                                      "PORTICO_GATEWAY_TOKEN_FILE": tf})
    assert code == 0, out
    code, out = _check(workdir, cfg, {"PORTICO_CONTROL_PLANE_URL": "http://127.0.0.1:9",
                                      "PORTICO_GATEWAY_TOKEN_FILE": tf, "PORTICO_GATEWAY_TOKEN": TOKEN})
    assert code == 1 and "give one, not both" in out, out


def test_the_environment_token_is_trimmed(backend, portico, cp, workdir):
    # a Secret made with --from-file usually ends with a newline
    gen = cp.publish(echo_entities(backend.url))
    token = cp.token()  # made once: its expiry is rounded to a minute that may turn meanwhile
    node = start_node(portico, cp, workdir, env={"PORTICO_GATEWAY_TOKEN": token + "\r\n"})
    wait_for(synced(node, gen), what="the document")
    assert cp.polls()[-1]["auth"] == token


def test_the_backup_temp_file_is_unique_and_follows_no_link(backend, portico, cp, workdir):
    victim = os.path.join(workdir, "victim")
    with open(victim, "w") as f:
        f.write("untouched")
    os.symlink(victim, os.path.join(workdir, "backup.tmp"))  # planted where a fixed name would go
    gen = cp.publish(echo_entities(backend.url))
    node = start_node(portico, cp, workdir)
    wait_for(synced(node, gen), what="the document")
    path = os.path.join(workdir, "backup")
    wait_for(lambda: os.path.exists(path), what="the backup")
    assert open(victim).read() == "untouched"
    assert open(path, "rb").read().startswith(b"PTCB1\n")
    assert [f for f in os.listdir(workdir) if f.startswith("backup.") and f != "backup.tmp"] == []


def test_plain_http_to_another_machine_is_warned_about(portico, workdir):
    # an expired token: the node contacts nobody (no name is looked up), it only warns at start
    cfg = node_config("http://cp.example.com:8081", make_token("gw1", "k" * 64, in_days(-1)), workdir)
    node = portico(cfg)
    # the warning comes after the listeners open (what portico() waits for), before "started"
    wait_for(lambda: "started:" in node.log_text(), what="the node's start in its log")
    assert "plain http to another machine: the gateway token is sent in clear text" in node.log_text()
    assert node.log_text().count("sent in clear text") == 1
    node.stop()
    cfg = node_config("http://localhost:1", make_token("gw1", "k" * 64, in_days(-1)), workdir)
    node = portico(cfg)  # the same log file: no second warning
    wait_for(lambda: node.log_text().count("started:") == 2, what="the second start in the log")
    assert node.log_text().count("sent in clear text") == 1
