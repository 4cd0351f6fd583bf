"""Loggers (file, syslog, http) and the log-to-eventhub / log-to policies.

The receivers are the test's own: a syslog server on UDP, TCP (RFC 6587
octet counting) and a unix datagram socket, and HTTP collectors that
accept, fail first or are down.  Every message that a sink delivers is
parsed as RFC 5424 or JSON and checked field by field.
"""

import http.server
import json
import os
import re
import socket
import threading
import time

import pytest

from conftest import basic_config, free_port, wait_for
from mgmt_helpers import TOKEN, Mgmt, mgmt_config
from backends import stop_server

MAX = 200 * 1024

# ------------------------------------------------------------ receivers

RFC5424 = re.compile(r"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (.*)$", re.S)


def parse_5424(frame):
    """{pri, time, host, app, procid, msgid, sd: {name: value}, msg} of one RFC 5424 message."""
    text = frame.decode("utf-8")
    m = RFC5424.match(text)
    assert m, "not RFC 5424: %r" % text[:200]
    rest = m.group(7)
    sd = {}
    if rest.startswith("-"):
        rest = rest[1:]
    else:
        assert rest.startswith("["), rest[:100]
        i = rest.index(" ")
        sd_id = rest[1:i]
        assert sd_id == "portico@32473"
        while rest[i] == " ":
            j = rest.index('="', i)
            name = rest[i + 1:j]
            k, val = j + 2, []
            while rest[k] != '"':
                if rest[k] == "\\":
                    k += 1
                    assert rest[k] in '"\\]', "bad escape in %r" % rest
                val.append(rest[k])
                k += 1
            sd[name] = "".join(val)
            i = k + 1
        assert rest[i] == "]", rest
        rest = rest[i + 1:]
    msg = rest[1:] if rest.startswith(" ") else rest
    pri = int(m.group(1))
    return {"pri": pri, "facility": pri // 8, "severity": pri % 8, "time": m.group(2), "host": m.group(3),
            "app": m.group(4), "procid": m.group(5), "msgid": m.group(6), "sd": sd, "msg": msg}


class SyslogUDP:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.frames = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(1 << 17)
            except OSError:
                return
            self.frames.append(data)

    @property
    def address(self):
        return "udp://127.0.0.1:%d" % self.port

    def close(self):
        self.sock.close()


class SyslogUnix(SyslogUDP):
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.frames = []
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def address(self):
        return "unix://" + self.path


class SyslogTCP:
    """RFC 6587 octet counting: "LEN SP FRAME"; `drop_after` closes each connection after that
    many frames (the sink must reconnect)."""

    def __init__(self, drop_after=None):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.frames = []
        self.connections = 0
        self.drop_after = drop_after
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return "tcp://127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        got = 0
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while True:
                    sp = buf.find(b" ")
                    if sp < 0:
                        break
                    assert buf[:sp].isdigit(), "not octet counting: %r" % buf[:40]
                    n = int(buf[:sp])
                    if len(buf) < sp + 1 + n:
                        break
                    self.frames.append(buf[sp + 1:sp + 1 + n])
                    buf = buf[sp + 1 + n:]
                    got += 1
                    if self.drop_after and got >= self.drop_after:
                        return

    def close(self):
        self.srv.close()


class Collector:
    """An HTTP receiver of POSTed batches; the first `fail_first` POSTs get a 500."""

    def __init__(self, fail_first=0):
        me = self
        self.posts = []  # (headers, body)
        self.attempts = 0
        self.fail_first = fail_first

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                me.attempts += 1
                if me.attempts <= me.fail_first:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                me.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/ingest" % self.port

    def records(self):
        out = []
        for h, body in list(self.posts):
            if h.get("content-type") == "application/json":
                out += json.loads(body)
            else:
                assert h.get("content-type") == "application/x-ndjson", h
                out += [json.loads(line) for line in body.decode().splitlines() if line]
        return out

    def close(self):
        stop_server(self.srv)


@pytest.fixture
def receivers():
    made = []

    def make(cls, *a, **kw):
        r = cls(*a, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def logged_api(cfg, statements, section="inbound"):
    cfg["apis"][0]["policies"] = {section: statements}
    return cfg


# ------------------------------------------------------------------ syslog

def test_syslog_udp_tcp_and_unix_receive_rfc5424(backend, portico, receivers, workdir):
    udp = receivers(SyslogUDP)
    tcp = receivers(SyslogTCP)
    unix = receivers(SyslogUnix, os.path.join(workdir, "log.sock"))
    cfg = basic_config(backend.url)
    cfg["loggers"] = [
        {"id": "u", "loggerType": "syslog", "syslog": {"address": udp.address, "facility": "local3",
                                                        "severity": "warning", "appName": "gw-test",
                                                        "hostname": "edge-1"}},
        {"id": "t", "loggerType": "syslog", "syslog": {"address": tcp.address}},
        {"id": "x", "loggerType": "syslog", "syslog": {"address": unix.address, "facility": "user"}},
    ]
    msg = "@('hit ' .. context.request.method .. ' ' .. context.request.url.path)"
    logged_api(cfg, [
        {"log-to-eventhub": {"logger-id": "u", "partition-id": "3", "value": msg}},
        {"log-to-eventhub": {"logger-id": "t", "partition-key": '@("k]\\"" .. context.request.method)',
                             "value": "caf\u00e9 \"quoted\" ] line"}},
        {"log-to": {"logger-id": "x", "value": msg}},
    ])
    p = portico(cfg)
    for i in range(3):
        st, _, _ = p.request("GET", "/echo/items/%d" % i)
        assert st == 200
    wait_for(lambda: len(udp.frames) >= 3 and len(tcp.frames) >= 3 and len(unix.frames) >= 3,
             what="three messages at each syslog receiver")
    u = [parse_5424(f) for f in udp.frames]
    assert [m["msg"] for m in u] == ["hit GET /echo/items/%d" % i for i in range(3)] or \
        [m["msg"] for m in u] == ["hit GET /base/items/%d" % i for i in range(3)], u
    for m in u:
        assert (m["facility"], m["severity"]) == (19, 4)  # local3, warning
        assert m["app"] == "gw-test" and m["host"] == "edge-1" and m["msgid"] == "log-to"
        assert m["procid"] == str(p.proc.pid)
        assert m["sd"] == {"logger": "u", "partitionId": "3"}
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", m["time"])
    t = [parse_5424(f) for f in tcp.frames]
    for m in t:
        assert m["pri"] == 16 * 8 + 6  # local0.informational by default
        assert m["app"] == "portico" and m["host"] == socket.gethostname()[:255]
        assert m["msg"] == "caf\u00e9 \"quoted\" ] line"
        assert m["sd"] == {"logger": "t", "partitionKey": 'k]"GET'}  # escaped in the frame, read back
    assert b'partitionKey="k\\]\\"GET"' in tcp.frames[0]
    x = [parse_5424(f) for f in unix.frames]
    assert all(m["facility"] == 1 and m["msg"].startswith("hit GET ") for m in x)


def test_tcp_syslog_reconnects(backend, portico, receivers):
    tcp = receivers(SyslogTCP, drop_after=2)
    cfg = basic_config(backend.url)
    cfg["loggers"] = [{"id": "t", "loggerType": "syslog", "syslog": {"address": tcp.address}}]
    logged_api(cfg, [{"log-to": {"logger-id": "t", "value": "@('n=' .. context.request.url.query:get('n'))"}}])
    p = portico(cfg)
    for i in range(6):
        assert p.request("GET", "/echo/items/1?n=%d" % i)[0] == 200
        time.sleep(0.3)  # let each connection break before the next message
    wait_for(lambda: len(tcp.frames) >= 4, timeout=10, what="messages after reconnections")
    assert tcp.connections >= 2
    got = [parse_5424(f)["msg"] for f in tcp.frames]
    assert got[:2] == ["n=0", "n=1"], got


# ---------------------------------------------------------------- http

def test_http_logger_batches_json_lines(backend, portico, receivers):
    col = receivers(Collector)
    cfg = basic_config(backend.url)
    cfg["namedValues"] = [{"id": "sink-token", "value": "s3cret", "secret": True}]
    cfg["loggers"] = [{"id": "h", "loggerType": "http",
                       "http": {"url": col.url, "batchSize": 5, "flushInterval": "300ms",
                                "headers": {"Authorization": "Bearer {{sink-token}}", "X-Tag": "edge"}}}]
    logged_api(cfg, [{"log-to-eventhub": {"logger-id": "h", "partition-key": "@(context.request.method)",
                                          "value": "@('{\"path\":\"' .. context.request.url.path .. '\"}')"}}])
    p = portico(cfg)
    for i in range(12):
        assert p.request("GET", "/echo/items/%d" % i)[0] == 200
    wait_for(lambda: len(col.records()) >= 12, what="12 records at the collector")
    recs = col.records()
    assert len(recs) == 12
    assert all(len(body.splitlines()) <= 5 for _, body in col.posts)  # batchSize
    assert len(col.posts) >= 3
    for h, _ in col.posts:
        assert h["authorization"] == "Bearer s3cret" and h["x-tag"] == "edge"
    for i, r in enumerate(recs):
        assert r["logger"] == "h" and r["source"] == "log-to" and r["partitionKey"] == "GET"
        assert json.loads(r["message"])["path"].endswith("/items/%d" % i)
        assert re.match(r"^\d{4}-\d\d-\d\dT", r["time"])


def test_http_logger_retries_a_failing_receiver(backend, portico, receivers):
    col = receivers(Collector, fail_first=2)
    cfg = basic_config(backend.url)
    cfg["loggers"] = [{"id": "h", "loggerType": "http",
                       "http": {"url": col.url, "batchSize": 1, "retries": 3, "format": "array"}}]
    logged_api(cfg, [{"log-to": {"logger-id": "h", "value": "one"}}])
    p = portico(cfg)
    assert p.request("GET", "/echo/items/1")[0] == 200
    wait_for(lambda: col.records(), timeout=8, what="the batch after two 500s")
    assert col.attempts == 3
    assert [r["message"] for r in col.records()] == ["one"]
    assert col.posts[0][0]["content-type"] == "application/json"


def test_http_logger_down_does_not_slow_requests_and_drops_are_counted(backend, portico):
    cfg = mgmt_config(backend.url)
    dead = free_port()  # nothing listens there
    cfg["loggers"] = [{"id": "down", "loggerType": "http", "maxQueue": 4,
                       "http": {"url": "http://127.0.0.1:%d/x" % dead, "batchSize": 1, "retries": 100,
                                "timeout": "2s"}}]
    logged_api(cfg, [{"log-to": {"logger-id": "down", "value": "@(context.request.url.path)"}}])
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    t0 = time.time()
    for i in range(40):
        st, _, _ = p.request("GET", "/echo/items/%d" % i, timeout=2)
        assert st == 200
    assert time.time() - t0 < 3, "requests waited for the logger"
    m = Mgmt(p)
    st, _, body = m.call("GET", "loggers/down")
    assert st == 200
    # the queue holds 4 messages at most, the sink one more being retried: the rest were dropped
    stats = wait_for(lambda: (lambda s: s if s["dropped"] >= 30 else None)(logger_stats(m, "down")),
                     what="drops counted")
    assert stats["sent"] == 0 and stats["dropped"] + stats["queued"] + 1 >= 39


def logger_stats(m, lid):
    """The logger's counters as the management API shows them (GET /loggers/{id} -> stats)."""
    st, _, body = m.call("GET", "loggers/%s" % lid)
    assert st == 200, body
    return body["stats"]


# ---------------------------------------------------------------- file

def test_file_logger_and_access_log_to_a_logger(backend, portico, workdir):
    cfg = basic_config(backend.url)
    cfg["loggers"] = [
        {"id": "f", "loggerType": "file", "file": {"path": "events.log"}},
        {"id": "acc", "loggerType": "file", "description": "the access log", "file": {"path": "acc.log"}},
    ]
    cfg["log"] = {"access": "logger:acc", "accessBuffer": "4k", "accessFlush": "100ms"}
    logged_api(cfg, [{"log-to-eventhub": {"logger-id": "f", "value": "@('line ' .. context.request.url.path)"}}])
    p = portico(cfg)
    for i in range(5):
        assert p.request("GET", "/echo/items/%d" % i)[0] == 200
    path = os.path.join(workdir, "events.log")
    wait_for(lambda: os.path.exists(path) and open(path).read().count("\n") >= 5, what="five lines")
    lines = open(path).read().splitlines()
    assert [l.split("/")[-1] for l in lines] == [str(i) for i in range(5)] and lines[0].startswith("line /")
    acc = os.path.join(workdir, "acc.log")
    wait_for(lambda: os.path.exists(acc) and open(acc).read().count("\n") >= 5, what="access lines")
    entries = [json.loads(l) for l in open(acc).read().splitlines()]
    assert len(entries) == 5 and all(e["status"] == 200 for e in entries)
    assert not os.path.exists(p.access_log) or os.path.getsize(p.access_log) == 0


def test_access_log_to_syslog_and_back_to_a_file(backend, portico, receivers, workdir):
    udp = receivers(SyslogUDP)
    cfg = basic_config(backend.url)
    cfg["loggers"] = [{"id": "s", "loggerType": "syslog", "syslog": {"address": udp.address}}]
    cfg["log"] = {"access": "logger:s", "accessFlush": "100ms"}
    p = portico(cfg)
    assert p.request("GET", "/echo/items/7")[0] == 200
    wait_for(lambda: udp.frames, what="the access line over syslog")
    m = parse_5424(udp.frames[0])
    assert m["msgid"] == "access" and json.loads(m["msg"])["status"] == 200
    # a reload puts the access log back into its file
    cfg2 = dict(cfg)
    cfg2["log"] = {"access": p.access_log}
    assert p.reload(cfg2)
    assert p.request("GET", "/echo/items/8")[0] == 200
    assert p.access_entries(wait_for=1)[-1]["status"] == 200


def test_log_to_message_over_200kb_is_cut(backend, portico, workdir):
    cfg = basic_config(backend.url)
    cfg["loggers"] = [{"id": "f", "loggerType": "file", "file": {"path": "big.log"}}]
    # 100,000 x "é" (2 bytes) + "tail": 200,004 bytes... make it larger: 110,000 x "é" = 220,000 bytes
    logged_api(cfg, [{"log-to": {"logger-id": "f", "value": "@(string.rep('a', 3) .. string.rep('\u00e9', 110000))"}}])
    cfg["lua"] = {"patternLimit": "1m"}
    p = portico(cfg)
    assert p.request("GET", "/echo/items/1")[0] == 200
    path = os.path.join(workdir, "big.log")
    wait_for(lambda: os.path.exists(path) and open(path, "rb").read().endswith(b"\n"), what="the cut message")
    data = open(path, "rb").read()[:-1]
    # 204,800 bytes at most, cut at a character boundary: 3 + 2 * 102,398 = 204,799 bytes
    assert len(data) == 204799
    assert data.decode("utf-8") == "aaa" + "\u00e9" * 102398


# -------------------------------------------------------------- errors

def test_unknown_logger_id_is_a_configuration_error(backend, portico):
    cfg = basic_config(backend.url)
    cfg["loggers"] = [{"id": "f", "loggerType": "file", "file": {"path": "x.log"}}]
    logged_api(cfg, [{"log-to-eventhub": {"logger-id": "nope", "value": "x"}}])
    p = portico(cfg, start=False)
    p.start(wait=False)
    rc = p.proc.wait(timeout=15)
    out = p.proc.stderr.read().decode()
    assert rc != 0
    text = open(p.config_path).read().splitlines()
    line = next(i for i, l in enumerate(text, 1) if "nope" in l)
    assert re.search(r"portico\.yaml:%d:\d+: .*there is no logger 'nope'" % line, out), out
    p.proc = None


@pytest.mark.parametrize("logger,message", [
    ({"id": "a", "loggerType": "syslog", "syslog": {"address": "udp://127.0.0.1"}}, "needs a host and a port"),
    ({"id": "a", "loggerType": "syslog", "syslog": {"address": "ftp://h:1"}}, "must be udp://"),
    ({"id": "a", "loggerType": "syslog", "syslog": {"address": "udp://h:1", "facility": "local9"}}, "'local9' is not one of: kern"),
    ({"id": "a", "loggerType": "http", "http": {"url": "ftp://x"}}, "must start with http://"),
    ({"id": "a", "loggerType": "http", "http": {"url": "http://x", "headers": {"Content-Length": "1"}}},
     "set by the gateway"),
    ({"id": "a", "loggerType": "file"}, "needs its settings in 'file"),
    ({"id": "a", "loggerType": "file", "file": {"path": "x"}, "http": {"url": "http://x"}}, "'http' settings"),
    ({"id": "a", "loggerType": "kafka"}, "'kafka' is not one of: file, syslog, http"),
    ({"id": "a", "loggerType": "file", "file": {"path": "x"}, "colour": 1}, "unknown key 'colour'"),
])
def test_bad_logger_settings_point_at_their_key(backend, portico, logger, message):
    cfg = basic_config(backend.url)
    cfg["loggers"] = [logger]
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0 and message in out, out
    assert re.search(r"portico\.yaml:\d+:\d+: ", out), out


def test_access_log_naming_an_unknown_logger(backend, portico):
    cfg = basic_config(backend.url)
    cfg["log"] = {"access": "logger:ghost"}
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0 and "no logger 'ghost'" in out, out
    assert re.search(r"portico\.yaml:\d+:\d+: ", out), out


def test_access_log_to_a_logger_too_small_for_one_buffer(backend, portico, workdir):
    cfg = basic_config(backend.url)
    cfg["loggers"] = [{"id": "tiny", "loggerType": "file", "file": {"path": "a.log"}, "maxQueueSize": "64k"}]
    cfg["log"] = {"access": "logger:tiny", "accessBuffer": "1m"}
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0 and "less than log.accessBuffer" in out, out
    assert re.search(r"portico\.yaml:\d+:\d+: ", out), out


# ---------------------------------------------------------- management

def file_logger(path, **kw):
    d = {"loggerType": "file", "file": {"path": path}}
    d.update(kw)
    return d


def test_loggers_crud_and_changes_apply_without_restart(backend, portico, workdir, receivers):
    udp = receivers(SyslogUDP)
    cfg = mgmt_config(backend.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    assert m.call("GET", "loggers")[2]["value"] == []
    st, _, body = m.call("PUT", "loggers/ev", file_logger(os.path.join(workdir, "ev.log"), description="d"))
    assert st in (200, 201), body
    st, _, body = m.call("GET", "loggers/ev")
    assert st == 200 and body["loggerType"] == "file" and body["description"] == "d"
    # a policy using it, through the API
    st, _, body = m.call("PUT", "apis/echo/policies/policy",
                         {"inbound": [{"log-to": {"logger-id": "ev", "value": "@(context.request.url.path)"}}]})
    assert st in (200, 201, 204), body
    assert p.request("GET", "/echo/items/1")[0] == 200
    ev = os.path.join(workdir, "ev.log")
    wait_for(lambda: os.path.exists(ev) and open(ev).read().count("\n") == 1, what="the first line")
    # the logger becomes a syslog one: the next message goes there
    st, _, body = m.call("PUT", "loggers/ev", {"loggerType": "syslog", "syslog": {"address": udp.address}})
    assert st == 200, body
    assert p.request("GET", "/echo/items/2")[0] == 200
    wait_for(lambda: udp.frames, what="the message at the new destination")
    assert parse_5424(udp.frames[0])["msg"].endswith("/items/2")
    # PATCH
    st, _, body = m.call("PATCH", "loggers/ev", {"description": "patched"})
    assert st == 200 and m.call("GET", "loggers/ev")[2]["description"] == "patched"
    # in use: cannot be deleted
    st, _, body = m.call("DELETE", "loggers/ev")
    assert st == 409, body
    assert m.call("GET", "loggers/ev")[0] == 200
    assert p.request("GET", "/echo/items/3")[0] == 200
    wait_for(lambda: len(udp.frames) >= 2, what="the logger still working after the refused delete")
    assert m.call("DELETE", "apis/echo/policies/policy")[0] in (200, 204)
    assert m.call("DELETE", "loggers/ev")[0] == 204
    assert m.call("GET", "loggers/ev")[0] == 404


def test_loggers_written_through_the_api_stay_in_the_configurations_folder(backend, portico, workdir, tmp_path):
    """The attack: an administrator token (leaked, or a CI job's) used to append to any file the
    gateway may write, or to talk to any local socket, through a logger."""
    cfg = mgmt_config(backend.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA owner\n")
    link = os.path.join(workdir, "innocent.log")
    os.symlink(str(victim), link)
    for path in (str(victim), str(outside / "new.log"), "../" + os.path.relpath(str(victim), os.path.dirname(workdir)),
                 link):
        st, _, body = m.call("PUT", "loggers/evil", file_logger(path))
        assert st == 400 and "configuration's folder" in json.dumps(body), (path, st, body)
    st, _, body = m.call("PUT", "loggers/evil", {"loggerType": "syslog", "syslog": {"address": "unix:///run/docker.sock"}})
    assert st == 400, body
    # PATCH onto a good logger and apply are held to the same rule
    st, _, body = m.call("PUT", "loggers/ok", file_logger(os.path.join(workdir, "ok.log")))
    assert st in (200, 201), body
    st, _, body = m.call("PATCH", "loggers/ok", {"file": {"path": str(victim)}})
    assert st == 400, body
    st, _, body = m.call("POST", "apply", {"loggers": [dict(file_logger(str(victim)), id="viaapply")]})
    assert st == 400, body
    assert m.call("GET", "loggers/viaapply")[0] == 404
    assert m.ok("GET", "loggers/ok")["file"]["path"].endswith("ok.log")
    assert victim.read_text() == "ssh-ed25519 AAAA owner\n"


def test_management_write_naming_an_unknown_logger_is_refused(backend, portico, workdir):
    cfg = mgmt_config(backend.url)
    cfg["loggers"] = [{"id": "f", "loggerType": "file", "file": {"path": "f.log"}}]
    logged_api(cfg, [{"log-to": {"logger-id": "f", "value": "kept"}}])
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    st, _, body = m.call("PUT", "apis/echo/operations/get-item/policies/policy",
                         {"inbound": ["base", {"log-to-eventhub": {"logger-id": "ghost", "value": "x"}}]})
    assert st == 400, body
    assert "ghost" in json.dumps(body)
    assert m.call("GET", "apis/echo/operations/get-item/policies/policy")[0] == 404
    # the running configuration is unchanged: the file logger still gets its messages
    assert p.request("GET", "/echo/items/1")[0] == 200
    f = os.path.join(workdir, "f.log")
    wait_for(lambda: os.path.exists(f) and open(f).read() == "kept\n", what="the running logger's line")
    # a logger declared in the file cannot be changed through the API
    st, _, body = m.call("PUT", "loggers/f", file_logger("other.log"))
    assert st == 409, body
    # bad settings through the API: 400 with the key
    st, _, body = m.call("PUT", "loggers/bad", {"loggerType": "syslog", "syslog": {"address": "udp://nohost"}})
    assert st == 400 and "address" in json.dumps(body), body
    assert m.call("GET", "loggers/bad")[0] == 404


def test_http_header_secrets_are_redacted_and_kept(backend, portico, receivers):
    col = receivers(Collector)
    cfg = mgmt_config(backend.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    st, _, body = m.call("PUT", "loggers/h", {"loggerType": "http", "http": {
        "url": col.url, "batchSize": 1, "headers": {"X-Key": "literal-secret", "X-Ref": "{{nv}}"}}})
    assert st == 400, body  # the named value does not exist
    assert m.call("PUT", "namedValues/nv", {"value": "from-nv", "secret": True})[0] in (200, 201)
    st, _, body = m.call("PUT", "loggers/h", {"loggerType": "http", "http": {
        "url": col.url, "batchSize": 1, "headers": {"X-Key": "literal-secret", "X-Ref": "{{nv}}"}}})
    assert st in (200, 201), body
    st, _, got = m.call("GET", "loggers/h")
    assert got["http"]["headers"] == {"X-Key": "***", "X-Ref": "{{nv}}"}
    assert "literal-secret" not in json.dumps(m.call("GET", "loggers")[2])
    # writing back what GET showed keeps the secret
    got["http"]["batchSize"] = 1
    st, _, body = m.call("PUT", "loggers/h", got)
    assert st == 200, body
    assert m.call("PUT", "apis/echo/policies/policy",
                  {"inbound": [{"log-to": {"logger-id": "h", "value": "x"}}]})[0] in (200, 201, 204)
    assert p.request("GET", "/echo/items/1")[0] == 200
    wait_for(lambda: col.posts, what="a POST")
    h = col.posts[0][0]
    assert h["x-key"] == "literal-secret" and h["x-ref"] == "from-nv"
    # the export (administrators) has the real values, and applies back
    st, _, doc = m.call("GET", "export")
    assert st == 200
    lg = next(l for l in doc["loggers"] if l["id"] == "h")
    assert lg["http"]["headers"]["X-Key"] == "literal-secret"


def test_export_apply_round_trip(backend, portico, workdir):
    cfg = mgmt_config(backend.url)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    doc = {"loggers": [
        {"id": "a", "loggerType": "file", "file": {"path": os.path.join(workdir, "a.log")}, "isBuffered": False},
        {"id": "b", "loggerType": "syslog", "maxQueue": 50,
         "syslog": {"address": "tcp://127.0.0.1:%d" % free_port(), "facility": "daemon"}},
        {"id": "c", "loggerType": "http", "http": {"url": "http://127.0.0.1:9/x", "flushInterval": "2s"}},
    ]}
    st, _, body = m.call("POST", "apply", doc)
    assert st == 200, body
    st, _, exp = m.call("GET", "export")
    assert st == 200
    got = sorted(exp["loggers"], key=lambda l: l["id"])
    assert got == doc["loggers"]
    # applying the export again changes nothing
    st, _, body = m.call("POST", "apply", {"loggers": got})
    assert st == 200, body
    assert sorted(m.call("GET", "export")[2]["loggers"], key=lambda l: l["id"]) == got


def test_loggers_are_service_level_admin_writes_only(backend, portico):
    cfg = mgmt_config(backend.url)
    cfg["workspaces"] = [{"id": "team"}]
    cfg["loggers"] = [{"id": "f", "loggerType": "file", "file": {"path": "f.log"}}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    m = Mgmt(p)
    tokens = {}
    for role, ws in (("reader", None), ("workspaceContributor", "team"), ("apiDeveloper", "team")):
        body = {"role": role}
        if ws:
            body["workspace"] = ws
        st, _, t = m.call("PUT", "tokens/t-%s" % role, body)
        assert st in (200, 201), t
        tokens[role] = t["token"]
    # a reader reads, writes nothing
    assert m.call("GET", "loggers", token=tokens["reader"])[0] == 200
    assert m.call("PUT", "loggers/x", file_logger("x.log"), token=tokens["reader"])[0] == 403
    # workspace roles reach no logger, not even through their workspace's path
    for role in ("workspaceContributor", "apiDeveloper"):
        assert m.call("GET", "loggers", token=tokens[role])[0] == 403
        assert m.call("PUT", "loggers/x", file_logger("/etc/x.log"), token=tokens[role])[0] == 403
        st, _, _ = m.call("PUT", "workspaces/team/loggers/x", file_logger("/tmp/x.log"), token=tokens[role])
        assert st in (403, 404)
        st, _, _ = m.call("GET", "workspaces/team/loggers", token=tokens[role])
        assert st in (403, 404)
    assert m.call("GET", "loggers/x")[0] == 404
