"""Self-hosted gateways (issue 14) from the outside: a control plane and
gateway nodes, all real `portico` processes on loopback (gateway_helpers.py).

What is checked: which APIs a gateway's nodes serve; changes (a new API, a
policy, a subscription key) reaching every node, with the time printed;
fail-static (control plane killed, a node restarted from its backup, a node
without one staying unready, the catch-up once the control plane is back);
tokens (bad, expired, regenerated, another gateway's, forged) refused with
clear errors; the backup (encrypted, refused when corrupted); the nodes'
list; analytics from nodes in the control plane's reports; the status and
readiness paths; zero failed requests while changes apply under load; the
node's file refusing entity lists.  The Redis counters are in
test_counters_redis.py.

Propagation figures are printed (`pytest -s`) and asserted with room to
spare (5 s, where the target is 1 s): a loaded CI machine must not fail them.
"""

import datetime
import gzip
import json
import os
import random
import re
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import BIN, free_port, wait_for
from gateway_helpers import (LIVE_PATH, NOT_READY, READY_PATH, Node, expiry_stamp, http_get, make_token, parse_iso,
                             propagation, sign, token_parts)
from gateway_helpers import gw  # noqa: F401  (the fixture)
from mgmt_helpers import TOKEN

MARK = "X-Call-Mark"
PROPAGATION_LIMIT = 5.0  # the target is 1 s; this only bounds a failure on a slow machine
FIGURES = []


def figure(what, seconds):
    FIGURES.append((what, seconds))
    print("propagation: %-50s %6.0f ms" % (what, seconds * 1000))


def backend_saw(backend, mark):
    with backend.lock:
        return [r for r in backend.requests if r.header(MARK) == mark]


def one_gateway(gw, apis=("echo",), assigned=("echo",), gid="edge", count=3, **kw):
    cp = gw.control_plane(apis=apis)
    token = gw.gateway(gid, apis=assigned)
    nodes = gw.nodes(count, token, **kw) if count else []
    return cp, token, nodes


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


# ------------------------------------------------------------- assignment


def test_a_gateway_serves_only_its_assigned_apis_and_managed_serves_all(gw, backend):
    cp, token, nodes = one_gateway(gw, apis=("echo", "other"), assigned=("echo",))
    listed = cp.ok("GET", "gateways/edge/apis")
    assert [a["id"] for a in listed["value"]] == ["echo"], listed
    for n in nodes:
        mark = "m%d" % n.port
        st, _, body = n.get("/echo/items/1", headers={MARK: mark})
        assert st == 200, (st, body)
        seen = backend_saw(backend, mark)
        assert len(seen) == 1 and seen[0].target == "/echo/items/1", seen
        assert n.status("/other/x", headers={MARK: mark + "-other"}) == 404
        assert not backend_saw(backend, mark + "-other")
    # the control plane's own listener is the `managed` gateway: every API
    assert cp.request("GET", "/echo/x")[0] == 200
    assert cp.request("GET", "/other/x")[0] == 200

    cp.assign("edge", "other")
    figure("assign an API", propagation(nodes, "/other/x", 200, timeout=PROPAGATION_LIMIT))
    cp.unassign("edge", "echo")
    figure("unassign an API", propagation(nodes, "/echo/x", 404, timeout=PROPAGATION_LIMIT))
    assert cp.request("GET", "/echo/x")[0] == 200  # still served by managed
    assert [a["id"] for a in cp.ok("GET", "gateways/edge/apis")["value"]] == ["other"]


def test_assigning_an_unknown_api_is_404(gw):
    cp = gw.control_plane()
    cp.create_gateway("edge")
    st, _, out = cp.call("PUT", "gateways/edge/apis/nosuch")
    assert st == 404, out
    st, _, out = cp.call("PUT", "gateways/nosuch/apis/echo")
    assert st == 404, out


# -------------------------------------------------------------- propagation


def test_changes_reach_every_node_within_a_second(gw):
    cp, token, nodes = one_gateway(gw)

    # a new API, assigned
    cp.add_api("fresh")
    t0 = time.monotonic()
    cp.assign("edge", "fresh")
    propagation(nodes, "/fresh/x", 200, timeout=PROPAGATION_LIMIT)
    figure("new API assigned", time.monotonic() - t0)

    # a policy change on an assigned API
    t0 = time.monotonic()
    cp.ok("PUT", "apis/echo/policies/policy",
          {"inbound": ["base"], "outbound": ["base", {"set-header": {"name": "X-Era", "value": "two"}}]})
    propagation(nodes, "/echo/x", 200, check=lambda h, b: h.get("x-era") == "two", timeout=PROPAGATION_LIMIT)
    figure("policy changed", time.monotonic() - t0)

    # the global policy (not an API's) is part of every gateway's configuration
    t0 = time.monotonic()
    cp.ok("PUT", "policies/policy", {"outbound": [{"set-header": {"name": "X-Global", "value": "yes"}}]})
    propagation(nodes, "/echo/x", 200, check=lambda h, b: h.get("x-global") == "yes", timeout=PROPAGATION_LIMIT)
    figure("global policy changed", time.monotonic() - t0)

    # a subscription key regenerated
    cp.add_api("keyed", subscription_required=True)
    cp.assign("edge", "keyed")
    cp.ok("PUT", "users/u1", {"email": "u1@example.com", "firstName": "U", "lastName": "One"})
    cp.ok("PUT", "subscriptions/s1", {"displayName": "s1", "scope": "/apis/keyed", "ownerId": "/users/u1",
                                      "state": "active"})
    old = cp.ok("POST", "subscriptions/s1/listSecrets")["primaryKey"]
    t0 = time.monotonic()
    propagation(nodes, "/keyed/x", 200, headers={"Ocp-Apim-Subscription-Key": old}, timeout=PROPAGATION_LIMIT)
    figure("new subscription usable", time.monotonic() - t0)
    t0 = time.monotonic()
    st, _, out = cp.call("POST", "subscriptions/s1/regeneratePrimaryKey")
    assert st == 204, out
    new = cp.ok("POST", "subscriptions/s1/listSecrets")["primaryKey"]
    assert new != old
    propagation(nodes, "/keyed/x", 401, headers={"Ocp-Apim-Subscription-Key": old}, timeout=PROPAGATION_LIMIT)
    figure("regenerated key: old one refused", time.monotonic() - t0)
    propagation(nodes, "/keyed/x", 200, headers={"Ocp-Apim-Subscription-Key": new}, timeout=PROPAGATION_LIMIT)
    figure("regenerated key: new one accepted", time.monotonic() - t0)

    # an API deleted
    t0 = time.monotonic()
    cp.ok("DELETE", "apis/fresh")
    propagation(nodes, "/fresh/x", 404, timeout=PROPAGATION_LIMIT)
    figure("API deleted", time.monotonic() - t0)
    assert cp.ok("GET", "gateways/edge/apis")["count"] == 2  # echo, keyed: the deleted one left the list


def test_nodes_of_another_gateway_see_none_of_this_ones_changes(gw):
    cp = gw.control_plane(apis=("echo", "other"))
    ta = gw.gateway("east", apis=["echo"])
    tb = gw.gateway("west", apis=["other"])
    a = gw.node(ta)
    b = gw.node(tb)
    assert a.status("/echo/x") == 200 and a.status("/other/x") == 404
    assert b.status("/other/x") == 200 and b.status("/echo/x") == 404
    cp.assign("west", "echo")
    propagation([b], "/echo/x", 200, timeout=PROPAGATION_LIMIT)
    assert a.status("/other/x") == 404


# --------------------------------------------------------------- fail-static


def test_control_plane_down_then_back(gw, backend):
    cp, token, nodes = one_gateway(gw, metrics_port=None)
    watched = gw.node(token, metrics_port=free_port())
    bare = gw.node(token, backup="")  # no backup: cannot start without the control plane
    nodes = nodes + [watched]
    g0 = cp.generation("edge", token)
    assert wait_for(lambda: watched.metric("portico_control_plane_connected") == 1, timeout=10,
                    what="the connected gauge at 1")
    assert watched.metric("portico_control_plane_generation") == g0
    for n in nodes:
        wait_for(lambda: os.path.exists(n.backup_path), timeout=10, what="the backup of " + n.workdir)

    cp.kill()
    # nodes keep serving, and stay ready
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        for n in nodes + [bare]:
            assert n.status("/echo/x") == 200
            assert n.ready()
        time.sleep(0.1)
    wait_for(lambda: watched.metric("portico_control_plane_connected") == 0, timeout=10,
             what="the connected gauge at 0")
    wait_for(lambda: (watched.metric("portico_control_plane_sync_failures_total") or 0) >= 1, timeout=10,
             what="a counted sync failure")

    # a node restarted during the outage starts from its backup
    restarted = nodes[1]
    restarted.stop()
    restarted.start(wait=False)
    restarted.wait_ready(timeout=10)
    assert restarted.status("/echo/x") == 200
    # one without a backup stays unready: 503 everywhere but the liveness path
    bare.stop()
    bare.start(wait=False)
    bare.wait_listening()
    st, _, body = bare.get(READY_PATH)
    assert st == 503 and json.loads(body) == NOT_READY, (st, body)
    st, _, body = bare.get("/echo/x", headers={MARK: "bare"})
    assert st == 503 and json.loads(body) == NOT_READY, (st, body)
    assert not backend_saw(backend, "bare")
    st, _, body = bare.get(LIVE_PATH)
    assert st == 200 and body == b""
    entries = bare.access_entries(wait_for=1)
    assert any("GatewayNotReady" in json.dumps(e) for e in entries), entries[-3:]

    # the control plane back, with a change made in its file while it was down
    cfg = dict(cp.config)
    cfg["policies"] = {"outbound": [{"set-header": {"name": "X-Era", "value": "after"}}]}
    cp.write_config(cfg)
    cp.start()
    t0 = time.monotonic()
    # the nodes retry with a backoff of at most 30 s (plus jitter)
    propagation(nodes + [bare], "/echo/x", 200, check=lambda h, b: h.get("x-era") == "after", timeout=45,
                what="every node to catch up after the control plane came back")
    figure("catch-up after the control plane came back", time.monotonic() - t0)
    assert bare.ready()
    g1 = cp.generation("edge", token)
    assert g1 > g0, (g0, g1)  # the generation only grows, across restarts too
    wait_for(lambda: watched.metric("portico_control_plane_connected") == 1, timeout=10,
             what="the connected gauge back at 1")
    # and a change made now arrives as usual
    cp.add_api("late")
    t0 = time.monotonic()
    cp.assign("edge", "late")
    propagation(nodes + [bare], "/late/x", 200, timeout=PROPAGATION_LIMIT)
    figure("change right after the control plane came back", time.monotonic() - t0)
    g2 = cp.generation("edge", token)
    wait_for(lambda: watched.metric("portico_control_plane_generation") == g2, timeout=5,
             what="the generation gauge at the latest generation")


def test_the_restarted_node_serves_the_last_generation_it_saw(gw):
    cp, token, (n,) = one_gateway(gw, count=1)
    cp.ok("PUT", "apis/echo/policies/policy",
          {"inbound": ["base"], "outbound": ["base", {"set-header": {"name": "X-Era", "value": "saved"}}]})
    propagation([n], "/echo/x", 200, check=lambda h, b: h.get("x-era") == "saved", timeout=PROPAGATION_LIMIT)
    time.sleep(1.0)  # the backup is written right after the change is applied
    cp.stop()
    n.stop()
    n.start(wait=False)
    n.wait_ready(timeout=10)
    st, hd, _ = n.get("/echo/x")
    assert st == 200 and hd.get("x-era") == "saved", (st, hd)


def test_sighup_on_a_node_keeps_its_entities(gw):
    cp, token, (n,) = one_gateway(gw, count=1)
    n.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert n.running()
    assert n.ready()
    assert n.status("/echo/x") == 200
    cp.add_api("after-hup")
    cp.assign("edge", "after-hup")
    propagation([n], "/after-hup/x", 200, timeout=PROPAGATION_LIMIT)


# --------------------------------------------------------------------- tokens


def test_generated_tokens_follow_the_contract(gw):
    cp = gw.control_plane()
    cp.create_gateway("edge")
    keys = cp.keys("edge")
    assert set(keys) >= {"primary", "secondary"} and keys["primary"] != keys["secondary"], keys
    expiry = (now_utc() + datetime.timedelta(days=3)).replace(second=0, microsecond=0)
    for kt in ("primary", "secondary"):
        out = cp.ok("POST", "gateways/edge/generateToken",
                    {"keyType": kt, "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")})
        gid, stamp, sig = token_parts(out["value"])
        assert gid == "edge" and stamp == expiry_stamp(expiry), out
        assert sig == sign(keys[kt], "edge", stamp), "the signature is not HMAC-SHA512(key, id\\nstamp)"
        # and one minted by hand with the listed key is as good
        st, _, _ = cp.configuration("edge", make_token("edge", keys[kt], expiry))
        assert st == 200
    # bad requests
    for body in ({"keyType": "primary", "expiry": (now_utc() + datetime.timedelta(days=31)).strftime(
                  "%Y-%m-%dT%H:%M:%SZ")},
                 {"keyType": "primary", "expiry": (now_utc() - datetime.timedelta(hours=1)).strftime(
                     "%Y-%m-%dT%H:%M:%SZ")},
                 {"keyType": "tertiary", "expiry": (now_utc() + datetime.timedelta(days=1)).strftime(
                     "%Y-%m-%dT%H:%M:%SZ")},
                 {"keyType": "primary", "expiry": "tomorrow"},
                 {"keyType": "primary"}):
        st, _, out = cp.call("POST", "gateways/edge/generateToken", body)
        assert st == 400, (body, st, out)
    st, _, out = cp.call("POST", "gateways/edge/regenerateKey", {"keyType": "nope"})
    assert st == 400, out
    # regenerating the secondary key leaves primary tokens alone
    tp = cp.token("edge", "primary")
    ts = cp.token("edge", "secondary")
    cp.regenerate("edge", "secondary")
    assert cp.configuration("edge", tp)[0] == 200
    st, _, out = cp.configuration("edge", ts)
    assert st == 401 and out["error"]["code"] == "Unauthorized", out
    assert cp.keys("edge")["primary"] == keys["primary"]
    assert cp.keys("edge")["secondary"] != keys["secondary"]


def test_bad_expired_and_regenerated_tokens_are_refused_clearly(gw):
    cp = gw.control_plane()
    cp.create_gateway("edge")
    cp.assign("edge", "echo")
    keys = cp.keys("edge")
    forged = make_token("edge", "not-the-key", now_utc() + datetime.timedelta(days=1))
    expired = make_token("edge", keys["secondary"], now_utc() - datetime.timedelta(hours=1))  # a key that stays
    old = cp.token("edge", "primary")
    cp.regenerate("edge", "primary")
    fresh = cp.token("edge", "primary")
    assert cp.configuration("edge", fresh)[0] == 200

    refused = {"forged": gw.node(forged, wait=False), "expired": gw.node(expired, wait=False),
               "regenerated": gw.node(old, wait=False)}
    time.sleep(3)  # several attempts' worth (1 s backoff first)
    for why, n in refused.items():
        assert n.running(), why
        st, _, body = n.get(READY_PATH)
        assert st == 503 and json.loads(body) == NOT_READY, (why, st, body)
        assert n.status("/echo/x") == 503, why
        log = n.log_text().lower()
        if why == "expired":
            assert "expired" in log, log[-2000:]
        else:
            assert any(w in log for w in ("401", "unauthorized", "signature", "refused")), (why, log[-2000:])
    assert cp.nodes("edge") == [], "refused nodes must not be listed"
    # the control plane's answers to the same tokens
    st, _, out = cp.configuration("edge", expired)
    assert st == 401 and out["error"]["code"] == "TokenExpired", out
    for t in (forged, old):
        st, _, out = cp.configuration("edge", t)
        assert st == 401 and out["error"]["code"] == "Unauthorized", out
    # a good node beside them works, and is the only one listed
    good = gw.node(fresh, node_id="good")
    assert good.status("/echo/x") == 200
    wait_for(lambda: [x["id"] for x in cp.nodes("edge")] == ["good"], timeout=5, what="only the good node listed")


def test_a_token_near_its_expiry_is_warned_about(gw):
    cp = gw.control_plane()
    token = gw.gateway("edge", apis=["echo"], days=1)
    n = gw.node(token, metrics_port=free_port())
    left = n.metric("portico_gateway_token_expiry_seconds")
    assert left is not None and 23 * 3600 < left <= 24 * 3600 + 60, left
    wait_for(lambda: "expires in" in n.log_text(), timeout=5, what="the warning in the log")
    far = gw.node(cp.token("edge", days=20), metrics_port=free_port())
    assert far.metric("portico_gateway_token_expiry_seconds") > 19 * 86400
    assert "expires in" not in far.log_text()


def test_a_token_that_expires_while_the_node_runs_stops_syncing_not_serving(gw):
    """Slow (up to 80 s): tokens expire on whole minutes."""
    cp = gw.control_plane(apis=("echo", "other"))
    cp.create_gateway("edge")
    cp.assign("edge", "echo")
    now = now_utc()
    at = now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    if (at - now).total_seconds() < 20:
        at += datetime.timedelta(minutes=1)
    out = cp.ok("POST", "gateways/edge/generateToken", {"keyType": "primary",
                                                          "expiry": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
    n = gw.node(out["value"], metrics_port=free_port())
    assert n.status("/echo/x") == 200
    time.sleep(max(0.0, (at - now_utc()).total_seconds()) + 2)
    wait_for(lambda: "expired" in n.log_text(), timeout=10, what="the node to say its token expired")
    cp.assign("edge", "other")
    time.sleep(3)  # absence: the node no longer syncs (it tries once a minute)
    assert n.status("/other/x") == 404
    assert n.status("/echo/x") == 200 and n.ready()
    assert n.metric("portico_gateway_token_expiry_seconds") <= 0


def test_a_running_node_whose_key_is_regenerated_keeps_serving_but_stops_syncing(gw):
    cp, token, (n,) = one_gateway(gw, apis=("echo", "other"), count=1)
    cp.regenerate("edge", "primary")
    time.sleep(1.5)  # the regeneration itself may still reach the node (it is a publish)
    cp.assign("edge", "other")
    # absence: nothing later can show it; the node had several attempts meanwhile
    time.sleep(3)
    assert n.status("/other/x") == 404
    assert n.status("/echo/x") == 200 and n.ready()
    log = n.log_text().lower()
    assert any(w in log for w in ("401", "unauthorized", "signature", "refused")), log[-2000:]


def test_a_rotated_token_file_is_read_again(gw, workdir):
    cp = gw.control_plane(apis=("echo", "other"))
    token = gw.gateway("edge", apis=["echo"])
    path = os.path.join(workdir, "token")
    with open(path, "w") as f:
        f.write(token + "\n")  # as a Secret mounts it: with a final newline
    n = gw.node(None, token_file=path)
    assert n.status("/echo/x") == 200
    cp.regenerate("edge", "primary")
    time.sleep(1.5)
    cp.assign("edge", "other")
    time.sleep(2)
    assert n.status("/other/x") == 404  # refused meanwhile (absence: see the test above)
    with open(path + ".tmp", "w") as f:
        f.write(cp.token("edge", "secondary") + "\n")
    os.replace(path + ".tmp", path)  # how a Kubernetes Secret's file changes
    t0 = time.monotonic()
    propagation([n], "/other/x", 200, timeout=45, what="the node to sync with the rotated token")
    figure("resync after the token file was rotated", time.monotonic() - t0)


def test_a_backup_written_before_a_token_rotation_still_starts_the_node(gw, workdir):
    """The backup's key comes from the token: after the token file is rotated
    (no change of configuration meanwhile), a restart during an outage must
    still find a backup it can read."""
    cp = gw.control_plane()
    token = gw.gateway("edge", apis=["echo"])
    path = os.path.join(workdir, "token")
    with open(path, "w") as f:
        f.write(token + "\n")
    n = gw.node(None, token_file=path, poll_wait=1)
    wait_for(lambda: os.path.exists(n.backup_path), timeout=5, what="the backup")
    with open(path + ".tmp", "w") as f:
        f.write(cp.token("edge", "secondary") + "\n")  # both keys stay valid: only the token changes
    os.replace(path + ".tmp", path)
    time.sleep(4)  # several long-polls of 1 s with the new token
    cp.stop()
    n.stop()
    n.start(wait=False)
    n.wait_ready(timeout=10)
    assert n.status("/echo/x") == 200


# ------------------------------------------------- the sync protocol's checks


def test_sync_protocol_attacks(gw):
    cp = gw.control_plane(apis=("echo", "other"))
    ta = gw.gateway("east", apis=["echo"])
    tb = gw.gateway("west", apis=["other"])
    ka = cp.keys("east")

    def refused(st, out, code="Unauthorized"):
        assert st == 401, (st, out)
        assert out["error"]["code"] == code, out
        text = json.dumps(out)
        for k in (ka["primary"], ka["secondary"]):
            assert k not in text, "the key leaked into an error"

    # the token of gateway east asking for west's configuration, or heartbeating as west
    st, _, out = cp.configuration("west", ta)
    refused(st, out)
    st, _, body = cp.sync("POST", "/management/gateways/west/heartbeat", ta,
                          {"nodeId": "spy", "version": "x", "generation": 0, "hostname": "h", "listen": [],
                           "configError": None})
    refused(st, json.loads(body))
    # east's token with west's id written into it: the signature does not match
    _, stamp, sig = token_parts(ta)
    st, _, out = cp.configuration("west", "GatewayKey west&%s&%s" % (stamp, sig))
    refused(st, out)
    # a forged signature, a changed expiry, an expired one, malformed ones
    st, _, out = cp.configuration("east", make_token("east", "guessed", now_utc() + datetime.timedelta(days=1)))
    refused(st, out)
    later = expiry_stamp(now_utc() + datetime.timedelta(days=29))
    st, _, out = cp.configuration("east", "GatewayKey east&%s&%s" % (later, sig))
    refused(st, out)
    st, _, out = cp.configuration("east", make_token("east", ka["primary"], now_utc() - datetime.timedelta(minutes=5)))
    refused(st, out, "TokenExpired")
    for bad in (None, "", "GatewayKey", "GatewayKey east", "GatewayKey east&&", "GatewayKey east&2027&x",
                "GatewayKey east&%s&%s" % (stamp, "A" * 88), "Bearer " + TOKEN, "Bearer " + ta,
                ta + "x", "Basic ZWFzdDp4"):
        st, _, out = cp.configuration("east", bad)
        assert st == 401 and out["error"]["code"] == "Unauthorized", (bad and bad[:60], st, out)
    st, _, _ = cp.configuration("east", "GatewayKey east&%s&%s" % (stamp, "e" * 5000))
    assert 400 <= st < 500 and st != 404, st
    # the admin's bearer token is no GatewayKey either: heartbeats refuse it
    st, _, body = cp.sync("POST", "/management/gateways/east/heartbeat", "Bearer " + TOKEN, {"nodeId": "x"})
    assert st == 401, body
    # an unknown gateway
    st, _, _ = cp.configuration("nosuch", make_token("nosuch", "k", now_utc() + datetime.timedelta(days=1)))
    assert st == 404
    # a deleted gateway: its tokens are worth nothing
    cp.ok("DELETE", "gateways/west")
    st, _, _ = cp.configuration("west", tb)
    assert st in (401, 404)
    # the good token still works; the management API is not opened by it
    assert cp.configuration("east", ta)[0] == 200
    st, _, _ = cp.raw("GET", "/management/apis", headers={"Authorization": ta})
    assert st == 401
    st, _, _ = cp.raw("GET", "/management/gateways/east/nodes", headers={"Authorization": ta})
    assert st == 401


def test_heartbeats_are_checked_and_the_node_table_is_bounded(gw):
    cp = gw.control_plane()
    token = gw.gateway("edge", apis=["echo"])
    g = cp.generation("edge", token)
    hb = {"nodeId": "n1", "version": "test", "generation": g, "hostname": "h1", "listen": ["127.0.0.1:1"],
          "configError": None}
    st, _, body = cp.sync("POST", "/management/gateways/edge/heartbeat", token, hb)
    assert st == 200 and json.loads(body) == {"generation": g}, (st, body)
    # analytics that are not a batch: 400 naming the reason
    st, _, body = cp.sync("POST", "/management/gateways/edge/heartbeat", token, dict(hb, analytics="nonsense"))
    assert st == 400, (st, body)
    # not JSON at all
    st, _, _ = cp.raw("POST", "/management/gateways/edge/heartbeat", b"{nope",
                      {"Authorization": token, "Content-Type": "application/json"})
    assert st == 400
    # a configError is shown as sent
    cp.sync("POST", "/management/gateways/edge/heartbeat", token, dict(hb, nodeId="sick", configError="broken x"))
    sick = [x for x in cp.nodes("edge") if x["id"] == "sick"]
    assert sick and sick[0]["configError"] == "broken x", sick
    # a flood of node ids: at most 1,000 kept per gateway
    for i in range(1010):
        st, _, _ = cp.sync("POST", "/management/gateways/edge/heartbeat", token, dict(hb, nodeId="flood-%d" % i),
                           timeout=10)
        assert st in (200, 429, 503), st  # kept, or refused while the table is full of live nodes
    listed = cp.ok("GET", "gateways/edge/nodes")
    assert listed["count"] <= 1000, listed["count"]
    assert cp.call("GET", "gateways")[0] == 200  # the control plane is fine


def test_sync_endpoints_refuse_bad_parameters_and_keep_the_log_clean(gw):
    cp = gw.control_plane()
    token = gw.gateway("edge", apis=["echo"])
    conf = "/management/gateways/edge/configuration?"
    for q in ("wait=61", "wait=-1", "wait=abc", "wait=1.5", "wait=0&node=" + "n" * 300):
        st, _, body = cp.sync("GET", conf + q, token, timeout=10)
        assert st == 400, (q[:40], st, body[:200])
    assert cp.sync("POST", conf + "wait=0", token)[0] == 405
    assert cp.sync("GET", "/management/gateways/edge/heartbeat", token)[0] == 405
    # heartbeats: bounded, shaped, no NUL
    st, _, _ = cp.raw("POST", "/management/gateways/edge/heartbeat", b"{" + b" " * (9 << 20) + b"}",
                      {"Authorization": token, "Content-Type": "application/json"})
    assert st == 413
    hb = {"nodeId": "n1", "version": "v", "generation": 0, "hostname": "h", "listen": [], "configError": None}
    for bad in (dict(hb, nodeId=""), dict(hb, nodeId="x" * 300), dict(hb, generation=-1), dict(hb, generation="1"),
                dict(hb, listen="0.0.0.0:8080"), dict(hb, nodeId="a\u0000b"), [hb]):
        st, _, body = cp.sync("POST", "/management/gateways/edge/heartbeat", token, bad)
        assert st == 400, (str(bad)[:80], st, body[:200])
    assert cp.nodes("edge") == []
    # a refused request's node name cannot write lines of its own into the control plane's log
    forged = make_token("edge", "wrong", now_utc() + datetime.timedelta(days=1))
    st, _, _ = cp.sync("GET", conf + "wait=0&node=evil%0a2026-01-01T00:00:00.000Z%20[error]%20FORGED%1b[31m", forged)
    assert st == 401
    st, _, _ = cp.sync("POST", "/management/gateways/edge/heartbeat", forged, dict(hb, nodeId="x\n2026 [error] FORGED2"))
    assert st == 401
    wait_for(lambda: "evil" in cp.log_text(), timeout=5, what="the refusal logged")
    for line in cp.log_text().splitlines():
        assert not line.startswith("2026-01-01T00:00:00.000Z"), line
        assert "FORGED" not in line or line.startswith(time.strftime("%Y-")), line
        assert "\x1b" not in line, repr(line)


def test_the_configuration_document_is_filtered_for_the_gateway(gw):
    cp = gw.control_plane(apis=("echo", "other"))
    token = gw.gateway("edge", apis=["echo"])
    cp.ok("PUT", "products/p", {"displayName": "P", "subscriptionRequired": True, "approvalRequired": False,
                                "state": "published"})
    cp.ok("PUT", "products/p/apis/echo")
    cp.ok("PUT", "products/p/apis/other")
    cp.ok("PUT", "users/u1", {"email": "u1@example.com", "firstName": "U", "lastName": "One"})
    for sid, scope in (("s-echo", "/apis/echo"), ("s-other", "/apis/other"), ("s-prod", "/products/p")):
        cp.ok("PUT", "subscriptions/" + sid, {"displayName": sid, "scope": scope, "ownerId": "/users/u1",
                                              "state": "active"})
    cp.ok("PUT", "namedValues/hidden", {"displayName": "hidden", "value": "sekrit-value-42", "secret": True})
    echo_key = cp.ok("POST", "subscriptions/s-echo/listSecrets")["primaryKey"]

    st, hd, doc = cp.configuration("edge", token)
    assert st == 200
    assert doc["gateway"] == "edge" and isinstance(doc["generation"], int)
    assert hd["etag"] == '"%d"' % doc["generation"]
    ent = doc["entities"]
    assert "gateways" not in ent
    assert [a["id"] for a in ent["apis"]] == ["echo"]
    prods = {p["id"]: p for p in ent["products"]}
    assert prods["p"]["apis"] == ["echo"], prods["p"]
    subs = {s["id"]: s for s in ent["subscriptions"]}
    assert set(subs) >= {"s-echo", "s-prod"} and "s-other" not in subs, sorted(subs)
    assert subs["s-echo"]["primaryKey"] == echo_key  # keys in clear: the node needs them
    nvs = {v["id"]: v for v in ent.get("namedValues", [])}
    assert nvs["hidden"]["value"] == "sekrit-value-42"
    assert any(u["id"] == "u1" for u in ent["users"])
    assert "portal" not in ent
    assert all(s["scope"] != "/apis/other" for s in ent["subscriptions"])

    # unchanged: 304 once `wait` ran out, no body
    t0 = time.monotonic()
    st, hd, body = cp.configuration("edge", token, wait=1, etag=doc["generation"])
    took = time.monotonic() - t0
    assert st == 304 and body is None and 0.8 <= took < 5, (st, took)
    # a change wakes a waiting poll at once
    result = {}

    def poll():
        result["answer"] = cp.configuration("edge", token, wait=20, etag=doc["generation"], node="probe")
        result["at"] = time.monotonic()
    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    t_write = time.monotonic()
    cp.ok("PUT", "apis/echo/policies/policy", {"inbound": ["base", {"set-header": {"name": "X-A", "value": "1"}}]})
    th.join(30)
    st, hd, new = result["answer"]
    assert st == 200 and new["generation"] != doc["generation"], st
    woke = result["at"] - t_write
    assert woke < 3, woke
    figure("long-poll answered after a write", woke)
    # an unassigned API's change is a new generation too (or not): either way the document stays filtered
    st, hd, body = cp.raw("GET", "/management/gateways/edge/configuration?wait=0",
                          headers={"Authorization": token, "Accept-Encoding": "gzip"})
    assert st == 200
    if hd.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    assert json.loads(body)["generation"] == new["generation"]


# ---------------------------------------------------------------------- backup


def test_the_backup_is_encrypted_and_a_corrupted_one_is_refused(gw, workdir):
    cp, token, (n,) = one_gateway(gw, count=1)
    cp.ok("PUT", "namedValues/hidden", {"displayName": "hidden", "value": "sekrit-value-42", "secret": True})
    cp.ok("PUT", "users/u1", {"email": "u1@example.com", "firstName": "U", "lastName": "One"})
    cp.ok("PUT", "subscriptions/s1", {"displayName": "s1", "scope": "/apis/echo", "ownerId": "/users/u1",
                                      "state": "active"})
    key = cp.ok("POST", "subscriptions/s1/listSecrets")["primaryKey"]

    def has_all():
        try:
            data = n.read_backup()
        except FileNotFoundError:
            return False
        return len(data) > 100 and n.ready()
    wait_for(has_all, timeout=10, what="the backup")
    time.sleep(1.5)  # the last change's backup written
    data = n.read_backup()
    assert data.startswith(b"PTCB1\n"), data[:10]
    assert b"sekrit-value-42" not in data and key.encode() not in data and b"u1@example.com" not in data
    assert stat.S_IMODE(os.stat(n.backup_path).st_mode) == 0o600
    assert not [f for f in os.listdir(os.path.dirname(n.backup_path)) if f.startswith("config-backup") and
                f != "config-backup"], "a temporary file was left behind"

    cp.stop()
    n.stop()
    good = data
    cases = {
        "flipped": good[:len(good) // 2] + bytes([good[len(good) // 2] ^ 0x01]) + good[len(good) // 2 + 1:],
        "truncated": good[:len(good) - 20],
        "magic only": b"PTCB1\n",
        "no magic": b"{}",
        "empty": b"",
    }
    for why, blob in cases.items():
        with open(n.backup_path, "wb") as f:
            f.write(blob)
        n.start(wait=False)
        n.wait_listening()
        # a wrong tag is the contract's message; a file that is not a backup at all may say only "corrupted"
        phrase = "corrupted, or written with another gateway token" if why == "flipped" else "corrupted"
        wait_for(lambda: phrase in n.log_text(), timeout=5, what="the error for a %s backup" % why)
        assert n.backup_path in n.log_text() or os.path.basename(n.backup_path) in n.log_text()
        st, _, body = n.get(READY_PATH)
        assert st == 503 and json.loads(body) == NOT_READY, (why, st)
        assert n.status("/echo/x") == 503
        n.stop()
        open(n.error_log, "w").close()
        open(n.stderr_path, "w").close()

    # a good backup read with another gateway's token: refused likewise
    cp.start()
    other = gw.gateway("other-gw", apis=["echo"])
    cp.stop()
    with open(n.backup_path, "wb") as f:
        f.write(good)
    stranger = gw.node(other, backup=n.backup_path, wait=False, start=False)
    stranger.start(wait=False)
    stranger.wait_listening()
    wait_for(lambda: "corrupted, or written with another gateway token" in stranger.log_text(), timeout=5,
             what="the error for another gateway's backup")
    assert stranger.status(READY_PATH) == 503
    stranger.stop()
    # and the good one works with its own token
    n.start(wait=False)
    n.wait_ready(timeout=10)
    assert n.status("/echo/x") == 200


# ---------------------------------------------------------------- nodes list


def test_the_nodes_list_shows_each_node(gw):
    cp = gw.control_plane()
    token = gw.gateway("edge", apis=["echo"])
    a = gw.node(token, node_id="node-a")
    b = gw.node(token, node_id="node-b")
    c = gw.node(token)  # default id: <hostname>:<port of the first listener>
    c_id = "%s:%d" % (socket.gethostname(), c.port)
    g = cp.generation("edge", token)

    def listed():
        return {x["id"]: x for x in cp.nodes("edge")}
    wait_for(lambda: set(listed()) >= {"node-a", "node-b", c_id} and
             all(x["generation"] == g for x in listed().values()), timeout=10,
             what="three nodes listed at the current generation: %s" % list(listed()))
    nodes = listed()
    assert set(nodes) == {"node-a", "node-b", c_id}, sorted(nodes)
    now = now_utc()
    for x in nodes.values():
        assert x["status"] == "connected", x
        assert x["configError"] is None, x
        assert x["version"], x
        assert "127.0.0.1" in x["address"], x
        assert x["lastHeartbeat"].endswith("Z"), x
        assert abs((now - parse_iso(x["lastHeartbeat"])).total_seconds()) < 10, x
    first = parse_iso(nodes["node-a"]["lastHeartbeat"])
    wait_for(lambda: parse_iso(listed()["node-a"]["lastHeartbeat"]) > first, timeout=5,
             what="a later heartbeat")
    # a change: every node reports the new generation
    cp.add_api("fresh")
    cp.assign("edge", "fresh")
    g2 = cp.generation("edge", token)
    assert g2 != g
    wait_for(lambda: all(x["generation"] == g2 for x in listed().values()), timeout=10,
             what="every node at the new generation")
    # a stopped node turns disconnected after 3 heartbeats (1 s each here)
    b.stop()
    t0 = time.monotonic()
    wait_for(lambda: listed()["node-b"]["status"] == "disconnected", timeout=10, what="node-b disconnected")
    assert time.monotonic() - t0 >= 1.0
    assert listed()["node-a"]["status"] == "connected"
    # restarted under the same id: one entry, connected again
    b.start()
    wait_for(lambda: listed()["node-b"]["status"] == "connected", timeout=10, what="node-b connected again")
    assert len(cp.nodes("edge")) == 3
    # the managed gateway and other gateways list none of them
    st, _, out = cp.call("GET", "gateways")
    assert st == 200 and out["value"][0]["id"] == "managed", out
    assert [g_["id"] for g_ in out["value"]][:2] == ["managed", "edge"]
    cp.create_gateway("empty")
    assert cp.nodes("empty") == []
    assert a.running() and c.running()


# ----------------------------------------------------------------- analytics


def report_total(cp, api, since):
    flt = urllib.parse.quote("timestamp ge %s and apiId eq '%s'" % (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)), api))
    out = cp.ok("GET", "reports/byApi?$filter=" + flt)
    return out["value"][0]["callCountTotal"] if out["value"] else 0


def test_analytics_from_nodes_reach_the_control_planes_reports(gw):
    cp, token, nodes = one_gateway(gw)
    since = time.time() - 120
    for i, n in enumerate(nodes):
        for j in range(i + 2):  # 2, 3, 4 calls
            assert n.status("/echo/items/%d" % j) == 200
    sent = 2 + 3 + 4
    for _ in range(5):
        assert cp.request("GET", "/echo/managed")[0] == 200  # the managed gateway's own calls
    t0 = time.monotonic()
    wait_for(lambda: report_total(cp, "echo", since) >= sent + 5, timeout=30,
             what="the nodes' calls in the control plane's report")
    figure("analytics delay (nodes' calls in the report)", time.monotonic() - t0)
    time.sleep(3)  # nothing counted twice (a putback after a lost answer would show here)
    assert report_total(cp, "echo", since) == sent + 5


# -------------------------------------------------------------- status paths


def test_status_and_readiness_paths(gw, backend):
    cp, token, (n,) = one_gateway(gw, count=1)
    for port in (cp.port, n.port):
        st, hd, body = http_get(port, LIVE_PATH)
        assert st == 200 and body == b"", (port, st, body)
        assert http_get(port, LIVE_PATH + "?probe=1")[0] == 200
        assert http_get(port, LIVE_PATH, method="HEAD")[0] == 200
        st, hd, body = http_get(port, READY_PATH)
        assert st == 200 and json.loads(body) == {"status": "ready"}, (port, st, body)
        assert http_get(port, READY_PATH, method="HEAD")[0] == 200
        # only GET and HEAD: anything else is routed as usual (no API there: 404)
        assert http_get(port, LIVE_PATH, method="POST", body=b"x")[0] == 404
        assert http_get(port, LIVE_PATH + "/more")[0] == 404
    assert not [r for r in backend.requests if "status-0123456789abcdef" in r.target]

    # a node that cannot reach any control plane, without a backup: alive, not ready
    dead = free_port()
    lone = Node(os.path.join(gw.workdir, "lone"), "http://127.0.0.1:%d" % dead, token=token, backup="")
    gw.procs.append(lone)
    lone.start(wait=False)
    lone.wait_listening()
    assert lone.status(LIVE_PATH) == 200
    st, hd, body = lone.get(READY_PATH)
    assert st == 503 and json.loads(body) == NOT_READY and "json" in hd.get("content-type", ""), (st, hd, body)
    st, _, body = lone.get("/echo/x?a=1", headers={MARK: "lone"})
    assert st == 503 and json.loads(body) == NOT_READY
    assert not backend_saw(backend, "lone")
    entries = lone.access_entries(wait_for=1)
    assert any("GatewayNotReady" in json.dumps(e) for e in entries), entries


# ---------------------------------------------------------- changes under load


def test_zero_failed_requests_while_changes_apply_under_load(gw):
    cp, token, nodes = one_gateway(gw)
    stop = threading.Event()
    results = []
    lock = threading.Lock()

    def client(seed):
        rnd = random.Random(seed)
        import http.client as hc
        conns = {n.port: hc.HTTPConnection("127.0.0.1", n.port, timeout=10) for n in nodes}
        got = []
        while not stop.is_set():
            port = rnd.choice(list(conns))
            try:
                conns[port].request("GET", "/echo/items/%d" % rnd.randint(1, 100))
                r = conns[port].getresponse()
                r.read()
                got.append(r.status)
            except Exception as e:  # noqa: BLE001 -- any failure is what this test counts
                got.append(repr(e))
                conns[port].close()
        for c in conns.values():
            c.close()
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for i in range(12):
            cp.ok("PUT", "apis/echo/policies/policy",
                  {"inbound": ["base"], "outbound": ["base", {"set-header": {"name": "X-Round", "value": str(i)}}]})
            cp.add_api("load%d" % i)
            cp.assign("edge", "load%d" % i)
            cp.ok("PUT", "users/lu%d" % i, {"email": "lu%d@example.com" % i, "firstName": "L", "lastName": str(i)})
            time.sleep(0.2)
        propagation(nodes, "/echo/x", 200, check=lambda h, b: h.get("x-round") == "11", timeout=PROPAGATION_LIMIT)
        propagation(nodes, "/load11/x", 200, timeout=PROPAGATION_LIMIT)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    bad = [r for r in results if r != 200]
    print("under load: %d requests, %d not 200" % (len(results), len(bad)))
    assert len(results) > 200, len(results)
    assert not bad, bad[:10]


# ------------------------------------------------------------- node's file


A_TOKEN = make_token("g", "some key", datetime.datetime(2099, 1, 1, tzinfo=datetime.timezone.utc))
NODE_FILE = """listen: ["127.0.0.1:%(port)d"]
workers: 1
controlPlane:
  url: "http://127.0.0.1:%(cp)d"
  token: "%(token)s"
%(extra)s"""

REFUSED = [
    ("apis", "apis:\n  - {id: x, path: x, serviceUrl: \"http://127.0.0.1:1\"}\n", 6, 1, "apis: a gateway node takes"),
    ("products", "products: []\n", 6, 1, "products: a gateway node takes"),
    ("subscriptions", "subscriptions: []\n", 6, 1, "subscriptions: a gateway node takes"),
    ("namedValues", "namedValues: []\n", 6, 1, "namedValues: a gateway node takes"),
    ("policies", "policies: {inbound: []}\n", 6, 1, "policies: a gateway node takes"),
    ("gateways", "gateways: []\n", 6, 1, "gateways: a gateway node takes"),
    ("management", "management:\n  listen: \"127.0.0.1:%(m)d\"\n", None, None, "management"),
    ("portal", "portal:\n  listen: \"127.0.0.1:%(m)d\"\n", None, None, "portal"),
]


@pytest.mark.parametrize("name,extra,line,col,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_node_file_with_entities_or_listeners_is_refused(workdir, name, extra, line, col, message):
    path = os.path.join(workdir, "node.yaml")
    with open(path, "w") as f:
        f.write(NODE_FILE % {"port": free_port(), "cp": free_port(), "token": A_TOKEN,
                             "extra": extra % {"m": free_port()}})
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, cwd=workdir)
    err = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0, err
    if line is not None:
        assert "node.yaml:%d:%d: %s" % (line, col, message) in err, err
        assert "from the control plane" in err
    else:
        assert re.search(r"node\.yaml:[67]:\d+: .*%s" % message, err), err
    # and a real start refuses it the same way, before listening
    p = subprocess.run([BIN, "-c", path], capture_output=True, timeout=30, cwd=workdir)
    assert p.returncode != 0
    assert "node.yaml:" in (p.stdout + p.stderr).decode(errors="replace")


def test_a_node_file_must_name_a_token(workdir):
    path = os.path.join(workdir, "node.yaml")
    with open(path, "w") as f:
        f.write('listen: ["127.0.0.1:%d"]\ncontrolPlane:\n  url: "http://127.0.0.1:%d"\n' % (free_port(), free_port()))
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, cwd=workdir)
    err = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode != 0 and "token" in err, err
    for url in ("ftp://127.0.0.1:1", "http://127.0.0.1:1/management", "not a url"):
        with open(path, "w") as f:
            f.write('listen: ["127.0.0.1:%d"]\ncontrolPlane:\n  url: "%s"\n  token: "%s"\n'
                    % (free_port(), url, A_TOKEN))
        r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, cwd=workdir)
        err = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode != 0 and "node.yaml:3:" in err, (url, err)


# ------------------------------------------------------- the container case


def _port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def test_a_node_from_the_environment_only(gw, workdir):
    if not _port_free(8080):
        pytest.skip("port 8080 (the node's built-in listener) is in use")
    default_conf = subprocess.run([BIN, "-h"], capture_output=True, timeout=10).stdout.decode() + \
        subprocess.run([BIN, "-h"], capture_output=True, timeout=10).stderr.decode()
    m = re.search(r"default (\S+portico\.yaml)", default_conf)
    if m and os.path.exists(m.group(1)):
        pytest.skip("a file exists at the default path %s" % m.group(1))
    cp = gw.control_plane()
    token = gw.gateway("edge", apis=["echo"])
    n = gw.node(token, env_only=True, node_id="container-1", backup=os.path.join(workdir, "container-backup"))
    assert n.port == 8080
    assert n.status("/echo/x") == 200
    wait_for(lambda: [x["id"] for x in cp.nodes("edge")] == ["container-1"], timeout=10,
             what="the node listed under PORTICO_NODE_ID")
    wait_for(lambda: os.path.exists(n.backup_path), timeout=5, what="the backup at PORTICO_CONFIG_BACKUP")
    listen = cp.nodes("edge")[0]
    assert listen["status"] == "connected"


def test_environment_overrides_the_file(gw, workdir):
    cp = gw.control_plane()
    token = gw.gateway("edge", apis=["echo"])
    backup = os.path.join(workdir, "env-backup")
    # the file names a control plane nobody listens on and a token that is no good
    n = gw.node(make_token("edge", "wrong", now_utc() + datetime.timedelta(days=1)), start=False, node_id="from-file",
                env={"PORTICO_CONTROL_PLANE_URL": cp.url, "PORTICO_GATEWAY_TOKEN": token,
                     "PORTICO_NODE_ID": "from-env", "PORTICO_CONFIG_BACKUP": backup})
    n.config["controlPlane"]["url"] = "http://127.0.0.1:%d" % free_port()
    n.write_config(n.config)
    n.start(wait=False)
    n.wait_ready()
    assert n.status("/echo/x") == 200
    wait_for(lambda: [x["id"] for x in cp.nodes("edge")] == ["from-env"], timeout=10, what="the env's node id")
    wait_for(lambda: os.path.exists(backup), timeout=5, what="the backup at the env's path")


# ----------------------------------------------------------------- HTTPS


def test_https_control_plane_checks_the_certificate(gw, workdir):
    from tls_helpers import Pki
    os.makedirs(os.path.join(workdir, "pki"))
    pki = Pki(os.path.join(workdir, "pki"))
    cert, key = pki.leaf("mgmt", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"))
    cp = gw.control_plane(tls=(cert, key, pki.ca))
    assert cp.url.startswith("https://")
    token = gw.gateway("edge", apis=["echo"])
    good = gw.node(token, ca_file=pki.ca, node_id="trusting")
    assert good.status("/echo/x") == 200
    # the system's CAs do not know the test CA; another CA neither
    for nid, kw in (("system", {}), ("other-ca", {"ca_file": pki.other_ca})):
        n = gw.node(token, wait=False, node_id=nid, backup="", **kw)
        time.sleep(2)
        assert n.status(READY_PATH) == 503, nid
        log = n.log_text().lower()
        assert "certificate" in log or "verify" in log, (nid, log[-2000:])
    # --ca-file on the command line wins over the file's caFile
    fixed = gw.node(token, node_id="flag", ca_file=pki.other_ca, extra_args=["--ca-file", pki.ca], wait=False)
    fixed.wait_ready()
    wait_for(lambda: {x["id"] for x in cp.nodes("edge")} == {"trusting", "flag"}, timeout=5,
             what="the two trusting nodes listed, and only them")


# --------------------------------------------------- management API and roles


def test_gateway_entities_over_the_management_api(gw):
    cp = gw.control_plane()
    st, _, out = cp.call("GET", "gateways")
    assert st == 200 and out["value"][0]["id"] == "managed", out
    # the built-in gateway is read-only
    for method, path, body in (("PUT", "gateways/managed", {"locationData": {"name": "x"}}),
                               ("PATCH", "gateways/managed", {"description": "x"}),
                               ("DELETE", "gateways/managed", None),
                               ("PUT", "gateways/managed/apis/echo", None),
                               ("DELETE", "gateways/managed/apis/echo", None),
                               ("POST", "gateways/managed/regenerateKey", {"keyType": "primary"}),
                               ("POST", "gateways/managed/generateToken",
                                {"keyType": "primary", "expiry": "2099-01-01T00:00:00Z"})):
        st, _, out = cp.call(method, path, body)
        assert st == 400, (method, path, st, out)
    # ids and required fields
    for bad in ("x" * 81, "a%20b", "a%2Fb", "%C3%A9t%C3%A9"):
        st, _, out = cp.call("PUT", "gateways/" + bad, {"locationData": {"name": "n"}})
        assert st in (400, 404), (bad, st, out)
    assert cp.call("PUT", "gateways/" + "x" * 80, {"locationData": {"name": "n"}})[0] == 201
    st, _, out = cp.call("PUT", "gateways/edge", {"description": "no location"})
    assert st == 400 and "locationData" in json.dumps(out), out
    st, _, out = cp.call("PUT", "gateways/edge", {"locationData": {"city": "no name"}})
    assert st == 400 and "name" in json.dumps(out), out
    body = {"description": "d", "locationData": {"name": "n", "city": "c", "district": "d", "countryOrRegion": "r"}}
    st, _, out = cp.call("PUT", "gateways/edge", body)
    assert st == 201, out
    got = cp.ok("GET", "gateways/edge")
    assert got["id"] == "edge" and got["locationData"] == body["locationData"], got
    keys = cp.keys("edge")
    assert keys["primary"] not in json.dumps(got) and keys["secondary"] not in json.dumps(got)
    assert cp.call("PUT", "gateways/edge", body)[0] == 200
    cp.ok("PATCH", "gateways/edge", {"description": "patched"})
    assert cp.ok("GET", "gateways/edge")["description"] == "patched"
    listed = [g["id"] for g in cp.ok("GET", "gateways")["value"]]
    assert listed[0] == "managed" and "edge" in listed
    # roles: a reader reads but writes nothing and sees no keys
    reader = cp.ok("PUT", "tokens/r1", {"role": "reader"})["token"]
    assert cp.call("GET", "gateways/edge", token=reader)[0] == 200
    assert cp.call("GET", "gateways/edge/nodes", token=reader)[0] == 200
    for method, path, b in (("PUT", "gateways/g2", {"locationData": {"name": "n"}}),
                            ("PUT", "gateways/edge/apis/echo", None),
                            ("POST", "gateways/edge/listKeys", None),
                            ("POST", "gateways/edge/generateToken", {"keyType": "primary",
                                                                      "expiry": "2099-01-01T00:00:00Z"}),
                            ("POST", "gateways/edge/regenerateKey", {"keyType": "primary"}),
                            ("DELETE", "gateways/edge", None)):
        st, _, out = cp.call(method, path, b, token=reader)
        assert st == 403, (method, path, st, out)
    # a workspace-scoped user: as for other service-level entities
    cp.ok("PUT", "workspaces/ws1", {"displayName": "ws1"})
    member = cp.ok("PUT", "tokens/w1", {"role": "workspaceContributor", "workspace": "ws1"})["token"]
    for method, path, b in (("GET", "gateways", None), ("GET", "gateways/edge", None),
                            ("POST", "gateways/edge/listKeys", None),
                            ("POST", "gateways/edge/generateToken", {"keyType": "primary",
                                                                      "expiry": "2099-01-01T00:00:00Z"}),
                            ("GET", "workspaces/ws1/gateways/edge", None),
                            ("PUT", "workspaces/ws1/gateways/edge2", {"locationData": {"name": "n"}})):
        st, _, out = cp.call(method, path, b, token=member)
        assert st in (403, 404), (method, path, st, out)
    # deleting a gateway
    assert cp.call("DELETE", "gateways/edge")[0] == 204
    assert cp.call("GET", "gateways/edge")[0] == 404


def test_declared_gateways_apply_and_export(gw):
    cp = gw.control_plane(apis=("echo", "other"))
    doc = {"gateways": [{"id": "applied", "description": "from apply", "locationData": {"name": "lab"},
                         "apis": ["echo", "other"]}]}
    st, _, out = cp.call("POST", "apply", doc)
    assert 200 <= st < 300, out
    assert [a["id"] for a in cp.ok("GET", "gateways/applied/apis")["value"]] == ["echo", "other"]
    keys = cp.keys("applied")
    st, _, text = cp.raw("GET", "/management/export", headers={"Authorization": "Bearer " + TOKEN})
    assert st == 200
    exported = json.loads(text)
    g = [x for x in exported["gateways"] if x["id"] == "applied"]
    assert g and sorted(g[0]["apis"]) == ["echo", "other"], exported.get("gateways")
    assert keys["primary"].encode() not in text and keys["secondary"].encode() not in text
    assert not [x for x in exported["gateways"] if x["id"] == "managed"]
    # applying it again keeps the keys
    assert 200 <= cp.call("POST", "apply", {"gateways": exported["gateways"]})[0] < 300
    assert cp.keys("applied") == keys
    # an unknown API in the list is refused, naming it
    st, _, out = cp.call("POST", "apply", {"gateways": [{"id": "bad", "locationData": {"name": "x"},
                                                         "apis": ["nosuch"]}]})
    assert st == 400 and "nosuch" in json.dumps(out), out


def test_a_file_declared_gateway_keeps_its_keys_across_restarts(gw):
    cp = gw.control_plane(apis=(), start=False)
    cfg = dict(cp.config)
    cfg["apis"] = [{"id": "echo", "path": "echo", "serviceUrl": gw.backend.url + "/echo",
                    "subscriptionRequired": False,
                    "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]}]
    cfg["gateways"] = [{"id": "filed", "description": "declared", "locationData": {"name": "rack 1"},
                        "apis": ["echo"]}]
    cp.write_config(cfg)
    cp.start()
    st, _, out = cp.call("PUT", "gateways/filed", {"locationData": {"name": "elsewhere"}})
    assert st == 409, out
    token = cp.token("filed")
    keys = cp.keys("filed")
    n = gw.node(token)
    assert n.status("/echo/x") == 200
    cp.stop()
    cp.start()
    assert cp.keys("filed") == keys, "keys are generated once and kept"
    assert cp.configuration("filed", token)[0] == 200
    # removed from the file: gone, and its tokens with it
    cfg["gateways"] = []
    cp.write_config(cfg)
    assert cp.reload()
    assert cp.call("GET", "gateways/filed")[0] == 404
    assert cp.configuration("filed", token)[0] in (401, 404)


# ------------------------------------------------------------- certificates


def test_a_node_gets_the_certificates_it_uses_and_no_other_key(gw, workdir):
    """A stored certificate named by an assigned API's authentication-certificate reaches an mTLS
    backend through the node; an unused certificate's key never reaches the node; a CA certificate
    goes without a key (trust); the node logs and reports the used one's near expiry."""
    import tempfile
    from tls_helpers import Pki, TLSEchoBackend
    with tempfile.TemporaryDirectory(prefix="portico-pki-") as d:
        pki = Pki(d)
        client = pki.leaf("client", "gateway", [], eku="clientAuth", days=10)
        spare = pki.leaf("spare", "spare", [], eku="clientAuth")
        be = TLSEchoBackend(*pki.leaf("be", "localhost", ["DNS:localhost"]), client_ca=pki.ca)
        try:
            cp = gw.control_plane(apis=())

            def pem(pair):
                with open(pair[0]) as c, open(pair[1]) as k:
                    return c.read() + k.read()

            cp.ok("PUT", "certificates/used", {"data": pem(client)})
            cp.ok("PUT", "certificates/unused", {"data": pem(spare)})
            with open(pki.ca) as f:
                cp.ok("PUT", "certificates/ca", {"data": f.read(), "ca": True})
            cp.ok("PUT", "apis/mt", {"path": "mt", "serviceUrl": be.url, "subscriptionRequired": False})
            cp.ok("PUT", "apis/mt/operations/all", {"method": "*", "urlTemplate": "/*"})
            cp.ok("PUT", "apis/mt/policies/policy",
                  {"inbound": ["base", {"authentication-certificate": {"certificate-id": "used"}}]})
            token = gw.gateway("edge", apis=("mt",))
            st, _, doc = cp.configuration("edge", token)
            assert st == 200, st
            certs = {c["id"]: c for c in doc["entities"].get("certificates", [])}
            assert sorted(certs) == ["ca", "used"], sorted(certs)
            assert "PRIVATE KEY" in certs["used"]["data"]
            assert "PRIVATE KEY" not in certs["ca"]["data"] and "BEGIN CERTIFICATE" in certs["ca"]["data"]
            with open(spare[1]) as f:  # the unused key is nowhere in the document
                key_body = "".join(l for l in f.read().splitlines() if not l.startswith("-----"))
            # its end: every P-256 key starts with the same ASN.1 header
            assert key_body[-40:] not in json.dumps(doc).replace("\\n", "")
            node = gw.node(token, extra={"upstream": {"caFile": pki.ca}}, metrics_port=free_port())
            st, _, body = node.get("/mt/items/1")
            assert st == 200, (st, body)
            assert be.client_cns == ["gateway"]  # the node presented the stored certificate
            wait_for(lambda: "certificate 'used' expires" in node.log_text(), timeout=10, what="the expiry log")
            assert "certificate 'unused'" not in node.log_text()
            left = node.metric('portico_certificate_expiry_seconds{id="used"}')
            assert left is not None and 8 * 86400 < left <= 10 * 86400, left
            assert node.metric('portico_certificate_expiry_seconds{id="unused"}') is None
        finally:
            be.close()
