"""HTTP/2 from clients: h2 by ALPN on TLS listeners, h2c with prior knowledge on
plain ones (`protocols: [http/1.1, h2]`).  Real clients (curl, the Python `h2`
library over a raw socket for frame-level checks), a real backend that must
receive HTTP/1.1; and the attacks: rapid reset, too many streams, oversized
header lists, CONTINUATION, SETTINGS and PING floods, a window never opened,
a body over the limit."""

import base64
import hashlib
import json
import socket
import subprocess
import tempfile
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest

from conftest import BIN, basic_config, free_port, raw_exchange, wait_for
from h2_helpers import H2Client
from mgmt_helpers import TOKEN
from test_metrics import scrape, value
from tls_helpers import Pki

KEY = "k" * 32


@pytest.fixture(scope="module")
def pki():
    with tempfile.TemporaryDirectory(prefix="portico-pki-") as d:
        p = Pki(d)
        p.server = p.leaf("server", "localhost", ["DNS:localhost"])
        p.alice = p.leaf("alice", "alice", ["DNS:alice.example"], eku="clientAuth")
        yield p


def h2c_config(backend, protocols=("http/1.1", "h2"), **extra):
    cfg = basic_config(backend.url, **extra)
    port = int(cfg["listen"][0].rsplit(":", 1)[1])
    cfg["listen"] = [{"address": "127.0.0.1:%d" % port, "protocols": list(protocols)}]
    return cfg, port


def tls_config(backend, pki, protocols=None, **extra):
    cfg = basic_config(backend.url, **extra)
    port = free_port()
    item = {"address": "127.0.0.1:%d" % port, "certificate": pki.server[0], "key": pki.server[1]}
    if protocols:
        item["protocols"] = list(protocols)
    cfg["listen"] = cfg["listen"] + [item]
    return cfg, port


def status(st):
    return int(st["headers"][":status"])


def echoed(st):
    return json.loads(bytes(st["data"]))


def header(echo, name):
    vals = [v for k, v in echo["headers"] if k.lower() == name.lower()]
    return vals[0] if vals else None


def curl(*args, timeout=30):
    r = subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return r


def access_line(p, path, timeout=5.0):
    found = []

    def seen():
        found[:] = [e for e in p.access_entries() if e.get("path") == path]
        return bool(found)
    wait_for(seen, timeout, "the access-log line of " + path)
    return found[-1]


# ------------------------------------------------------------------ the basics

def test_h2c_get_reaches_the_backend_as_http11(backend, portico):
    cfg, port = h2c_config(backend)
    p = portico(cfg)
    r = curl("--http2-prior-knowledge", "-D", "-", "-H", "X-Thing: one",
             "http://127.0.0.1:%d/echo/items/7?q=1" % port)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200")
    assert b"\r\nconnection:" not in head.lower()
    e = json.loads(body)
    assert e["version"] == "HTTP/1.1" and e["method"] == "GET"
    assert e["target"] == "/base/items/7?q=1"
    assert header(e, "X-Thing") == "one"
    assert header(e, "X-Forwarded-Host") == "127.0.0.1:%d" % port, "the Host came from :authority"
    line = access_line(p, "/echo/items/7")
    assert line["protocol"] == "HTTP/2.0" and line["status"] == 200


def test_h2c_post_with_and_without_a_length(backend, portico):
    cfg, port = h2c_config(backend)
    portico(cfg)
    c = H2Client(port)
    body = b"0123456789" * 1000
    known = c.request("POST", "/echo/items", [("content-length", str(len(body))),
                                              ("content-type", "text/plain"),
                                              ("cookie", "a=1"), ("cookie", "b=2")], body=body)
    unknown = c.request("POST", "/echo/items", [("content-type", "text/plain")], body=body)
    a, b = c.response(known), c.response(unknown)
    assert status(a) == 200 and status(b) == 200
    ea, eb = echoed(a), echoed(b)
    assert base64.b64decode(ea["body"]) == body and not ea["chunked"]
    assert header(ea, "Content-Length") == str(len(body))
    assert header(ea, "Cookie") == "a=1; b=2", "HTTP/2 cookie fields are one line over HTTP/1.1"
    assert base64.b64decode(eb["body"]) == body and eb["chunked"], "no length: chunked to the backend"
    c.close()


def test_response_framings_become_data_frames(backend, portico):
    """Each way the pipeline frames a response body (length, chunked, until close, none for HEAD)
    arrives as HTTP/2 frames, without connection-specific fields."""
    cfg, port = h2c_config(backend)
    portico(cfg)
    c = H2Client(port)
    chunked = c.request("GET", "/echo/stream?chunks=4&size=1000&delay=10")
    until_close = c.request("GET", "/echo/until-close?bytes=300000")
    head = c.request("HEAD", "/echo/head-length")
    expect = c.request("POST", "/echo/items", [("expect", "100-continue"), ("content-length", "2")], end=False)
    st = c.response(chunked)
    assert status(st) == 200 and bytes(st["data"]) == b"a" * 1000 + b"b" * 1000 + b"c" * 1000 + b"d" * 1000
    assert "transfer-encoding" not in st["headers"] and "connection" not in st["headers"]
    st = c.response(until_close, timeout=20)
    assert status(st) == 200 and bytes(st["data"]) == b"y" * 300000 and st["reset"] is None
    st = c.response(head)
    assert status(st) == 200 and st["headers"]["content-length"] == "1234" and len(st["data"]) == 0
    c.pump(lambda: c.streams[expect].get("interim"), what="100 Continue")
    assert c.streams[expect]["interim"][0][":status"] == "100"
    c.send_body(expect, b"ok")
    st = c.response(expect)
    assert status(st) == 200 and base64.b64decode(echoed(st)["body"]) == b"ok"
    c.close()


def test_tls_alpn_offers_h2_and_http11_on_one_listener(backend, portico, pki):
    cfg, port = tls_config(backend, pki)
    p = portico(cfg)
    r = curl("--http2", "--cacert", pki.ca, "-o", "/dev/null", "-w", "%{http_version}",
             "https://localhost:%d/echo/items/1" % port, "--resolve", "localhost:%d:127.0.0.1" % port)
    assert r.returncode == 0 and r.stdout == b"2", (r.stdout, r.stderr)
    r = curl("--http1.1", "--cacert", pki.ca, "-o", "/dev/null", "-w", "%{http_version}",
             "https://localhost:%d/echo/items/2" % port, "--resolve", "localhost:%d:127.0.0.1" % port)
    assert r.returncode == 0 and r.stdout == b"1.1", (r.stdout, r.stderr)
    assert access_line(p, "/echo/items/1")["protocol"] == "HTTP/2.0"
    assert "protocol" not in access_line(p, "/echo/items/2"), "HTTP/1.1 lines stay as they were"
    c = H2Client(port, ca=pki.ca)
    sid = c.request("GET", "/echo/items/3")
    st = c.response(sid)
    assert status(st) == 200
    assert header(echoed(st), "X-Forwarded-Proto") == "https"
    c.close()


def test_client_certificates_over_h2(backend, portico, pki):
    """The stream's request sees the connection's TLS: validate-client-certificate decides over h2 too."""
    cfg, port = tls_config(backend, pki)
    cfg["listen"][1].update({"clientCertificate": "optional", "clientCa": pki.ca})
    cfg["apis"][0]["policies"] = {"inbound": ["base", {"validate-client-certificate": {}}]}
    p = portico(cfg)
    c = H2Client(port, ca=pki.ca, cert=pki.alice)
    st = c.response(c.request("GET", "/echo/items/5"))
    assert status(st) == 200
    line = access_line(p, "/echo/items/5")
    assert "alice" in line["clientCertificate"]["subject"] and line["protocol"] == "HTTP/2.0"
    c.close()
    backend.clear()
    anon = H2Client(port, ca=pki.ca)
    st = anon.response(anon.request("GET", "/echo/items/6"))
    assert status(st) == 401
    assert access_line(p, "/echo/items/6")["reason"] == "ClientCertificateMissing"
    assert backend.last() is None
    anon.close()


def test_tls_listener_without_h2_speaks_http11_only(backend, portico, pki):
    cfg, port = tls_config(backend, pki, protocols=["http/1.1"])
    portico(cfg)
    r = curl("--http2", "--cacert", pki.ca, "-o", "/dev/null", "-w", "%{http_version}",
             "https://localhost:%d/echo/items/1" % port, "--resolve", "localhost:%d:127.0.0.1" % port)
    assert r.returncode == 0 and r.stdout == b"1.1", (r.stdout, r.stderr)


def test_h2_only_tls_listener_refuses_http11_clients(backend, portico, pki):
    cfg, port = tls_config(backend, pki, protocols=["h2"])
    portico(cfg)
    r = curl("--http1.1", "--cacert", pki.ca, "-o", "-", "-w", "%{http_code}",
             "https://localhost:%d/echo/items/1" % port, "--resolve", "localhost:%d:127.0.0.1" % port)
    assert r.stdout.endswith(b"505"), (r.stdout, r.stderr)
    assert backend.last() is None
    r = curl("--http2", "--cacert", pki.ca, "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
             "https://localhost:%d/echo/items/1" % port, "--resolve", "localhost:%d:127.0.0.1" % port)
    assert r.stdout == b"2 200", (r.stdout, r.stderr)


def test_settings_advertise_the_limits(backend, portico):
    cfg, port = h2c_config(backend, limits={"http2": {"maxConcurrentStreams": 7, "hpackTableSize": "2k",
                                                      "initialWindow": "32k", "maxFrameSize": "32k",
                                                      "headerListSize": "8k"}})
    portico(cfg)
    c = H2Client(port)
    codes = h2.settings.SettingCodes
    c.pump(lambda: codes.MAX_FRAME_SIZE in c.remote_settings, what="the server's SETTINGS")
    assert c.remote_settings[codes.MAX_CONCURRENT_STREAMS] == 7
    assert c.remote_settings[codes.HEADER_TABLE_SIZE] == 2048
    assert c.remote_settings[codes.INITIAL_WINDOW_SIZE] == 32768
    assert c.remote_settings[codes.MAX_FRAME_SIZE] == 32768
    assert c.remote_settings[codes.MAX_HEADER_LIST_SIZE] == 8192
    assert c.remote_settings.get(codes.ENABLE_PUSH, 0) == 0
    c.close()


def test_plain_listener_without_h2_answers_the_preface_with_400(backend, portico):
    cfg = basic_config(backend.url)
    p = portico(cfg)
    out = raw_exchange(p.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert backend.last() is None


def test_h2_only_listener_refuses_http11_with_505(backend, portico):
    cfg, port = h2c_config(backend, protocols=["h2"])
    portico(cfg)
    out = raw_exchange(port, b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 505 "), out[:100]
    assert backend.last() is None
    c = H2Client(port)
    assert status(c.response(c.request("GET", "/echo/items/1"))) == 200
    c.close()


@pytest.mark.parametrize("value,msg", [("[http/1.1, h3]", "unknown protocol 'h3'"),
                                       ("[]", "expected a non-empty list"),
                                       ("h2", "expected a non-empty list")])
def test_bad_protocols_are_configuration_errors(workdir, value, msg):
    path = workdir + "/bad.yaml"
    with open(path, "w") as f:
        f.write("listen:\n  - address: 127.0.0.1:%d\n    protocols: %s\n" % (free_port(), value))
    r = subprocess.run([BIN, "-t", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode != 0
    err = r.stderr.decode() + r.stdout.decode()
    assert msg in err and "bad.yaml:3:" in err, err


# ------------------------------------------------------------------ many streams, the whole pipeline

def test_concurrent_streams_through_keys_policies_and_errors(backend, portico):
    cfg, port = h2c_config(backend)
    api = cfg["apis"][0]
    api["subscriptionRequired"] = True
    api["policies"] = {"inbound": ["base", {"set-header": {"name": "X-Proto",
                                                          "value": "@(context.request.protocol)"}}]}
    cfg["apis"].append({
        "id": "mock", "path": "mock", "serviceUrl": backend.url, "subscriptionRequired": False,
        "operations": [{"id": "m", "method": "GET", "urlTemplate": "/m"}],
        "policies": {"inbound": [{"return-response": {"set-status": {"code": 202},
                                                      "set-body": "mocked"}}]}})
    cfg["products"] = [{"id": "p", "displayName": "P", "state": "published", "apis": ["echo"]}]
    cfg["subscriptions"] = [{"id": "s1", "scope": "/products/p", "primaryKey": KEY,
                             "secondaryKey": "j" * 32, "createdDate": "2026-01-01T00:00:00Z"}]
    portico(cfg)
    c = H2Client(port)
    want = {}
    for i in range(40):
        kind = i % 4
        if kind == 0:
            sid = c.request("GET", "/echo/items/%d" % i, [("ocp-apim-subscription-key", KEY)])
        elif kind == 1:
            sid = c.request("GET", "/echo/items/%d" % i)
        elif kind == 2:
            sid = c.request("GET", "/mock/m")
        else:
            sid = c.request("GET", "/nowhere/%d" % i)
        want[sid] = (kind, i)
    for sid, (kind, i) in want.items():
        st = c.response(sid)
        assert st["reset"] is None
        if kind == 0:
            assert status(st) == 200
            e = echoed(st)
            assert e["target"] == "/base/items/%d" % i
            assert header(e, "X-Proto") == "HTTP/2.0", "a policy sees the protocol"
        elif kind == 1:
            assert status(st) == 401
            assert "subscription key" in json.loads(bytes(st["data"]))["message"]
        elif kind == 2:
            assert status(st) == 202 and bytes(st["data"]) == b"mocked"
        else:
            assert status(st) == 404
            assert json.loads(bytes(st["data"]))["statusCode"] == 404
    c.close()


def test_large_download_and_upload_stream_with_bounded_memory(backend, portico):
    cfg, port = h2c_config(backend, limits={"memory": "1g"})  # the mark on: the figure is kept
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    size = 8 * 1024 * 1024
    c = H2Client(port)
    sid = c.request("GET", "/echo/big?bytes=%d" % size)
    st = c.response(sid, timeout=60)
    assert status(st) == 200 and len(st["data"]) == size and bytes(st["data"][:10]) == b"x" * 10
    blob = bytes(range(256)) * (size // 256)
    sid = c.request("PUT", "/echo/sink", body=blob)
    st = c.response(sid, timeout=60)
    assert status(st) == 200
    assert json.loads(bytes(st["data"])) == {"length": size, "sha256": hashlib.sha256(blob).hexdigest()}
    c.close()
    # a client that reads nothing of a large download: what the gateway holds stays bounded
    slow = H2Client(port, ack_data=False)
    sid = slow.request("GET", "/echo/big?bytes=%d" % (64 * 1024 * 1024))
    slow.pump(lambda: len(slow.streams[sid]["data"]) >= 65535, what="the first window of data")
    time.sleep(0.5)  # let the backend fill what it may
    held = []
    wait_for(lambda: held.append(value(scrape(p), "portico_memory_buffered_bytes")) or held[-1] > 0, 5,
             "the held bytes counted")
    # the stream's output (256 KiB past its high-water mark), the connection's, the backend's read
    assert held[-1] < 4 * 1024 * 1024, held
    slow.close()
    page = scrape(p)
    assert value(page, "portico_http2_connections_total") >= 2
    assert value(page, "portico_http2_streams_total") >= 3


def test_many_streams_with_shut_windows_hold_little(backend, portico):
    """A client opens maxConcurrentStreams large downloads with SETTINGS_INITIAL_WINDOW_SIZE 0 and reads
    its socket: each stream holds at most its own small output bound, not the HTTP/1.1 one."""
    cfg, port = h2c_config(backend, limits={"memory": "1g"})  # the mark on: the figure is kept
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    n = 100
    c = H2Client(port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}, ack_data=False)
    sids = [c.request("GET", "/echo/big?bytes=%d" % (64 * 1024 * 1024)) for _ in range(n)]
    c.pump(lambda: all(c.streams[s]["headers"] for s in sids), timeout=30, what="every response head")
    assert all(status(c.streams[s]) == 200 and not c.streams[s]["data"] for s in sids)
    held = []

    def settled():  # the figure stops growing: every pipeline has stopped reading its backend
        try:
            c.pump(lambda: False, timeout=0.3)
        except AssertionError:
            pass
        held.append(value(scrape(p), "portico_memory_buffered_bytes"))
        return len(held) >= 4 and held[-1] > 0 and held[-1] <= held[-4]
    try:
        wait_for(settled, 20, "the held bytes to settle")
    except AssertionError:
        pass  # still growing: the bound below decides
    # 100 streams x 256 KiB (the HTTP/1.1 bound) would be 25 MiB; each stream's 64 KiB plus what one
    # backend read brings stays well under 16 MiB
    assert max(held) < 16 * 1024 * 1024, held[-5:]
    assert not c.closed
    c.close()


@pytest.mark.parametrize("frame_size,length,pad", [(16384, True, 0), (512, False, 0), (200, False, 255)])
def test_an_upload_to_a_backend_that_does_not_read_is_not_buffered(portico, frame_size, length, pad):
    """The stream's window reopens only as the backend takes the body: a backend that reads nothing
    stops the client after about its socket buffers, the pipeline's bound and one window.  Padding
    (DATA frames of 200 bytes padded with 255) buys no window: it was once counted as consumed twice,
    which reopened the window for bytes the gateway still held, without end."""
    import threading
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    held = []
    stop = threading.Event()

    def accept():  # takes connections and reads nothing
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            held.append(conn)
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        cfg = basic_config("http://127.0.0.1:%d" % lsock.getsockname()[1])
        port = int(cfg["listen"][0].rsplit(":", 1)[1])
        cfg["listen"] = [{"address": "127.0.0.1:%d" % port, "protocols": ["http/1.1", "h2"]}]
        cfg["timeouts"] = {"bodyIdle": "60s"}
        portico(cfg)
        c = H2Client(port)
        fields = [("content-length", str(256 << 20))] if length else []
        sid = c.request("PUT", "/echo/upload", fields, end=False)
        sent, chunk = 0, b"u" * frame_size
        while sent < (16 << 20):  # past the bound below: the gateway took what it should not
            over = pad + 1 if pad else 0  # the padding and its length byte count against the window
            room = min(c.conn.local_flow_control_window(sid) - over, len(chunk))
            if room <= 0:
                try:
                    c.pump(lambda: c.conn.local_flow_control_window(sid) > over, timeout=2,
                           what="the stream's window")
                except AssertionError:
                    break  # the window stays shut: the gateway holds the upload back
                continue
            c.conn.send_data(sid, chunk[:room], pad_length=pad or None)
            c.flush()
            sent += room
        assert sent < (8 << 20), "the gateway took %d bytes the backend never read" % sent
        assert c.conn.local_flow_control_window(sid) <= (pad + 1 if pad else 0)
        c.close()
    finally:
        stop.set()
        t.join(5)
        for s_ in held:
            s_.close()
        lsock.close()


def test_a_response_complete_before_the_upload_ends_the_stream_as_over_http11(portico):
    """A backend that answers at once, before the body: as over HTTP/1.1 (where the connection then
    closes) the rest of the upload is not wanted.  The client gets the whole response, then RST_STREAM
    NO_ERROR (RFC 9113 8.1), and the request is logged with the backend's status, not as a client
    that left."""
    import threading
    size = 200000
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)

    def serve():
        lsock.settimeout(20)
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        conn.settimeout(20)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                d = conn.recv(65536)
                if not d:
                    return
                data += d
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
            while conn.recv(65536):
                pass
        except OSError:
            pass
        finally:
            conn.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        cfg = basic_config("http://127.0.0.1:%d" % lsock.getsockname()[1])
        port = int(cfg["listen"][0].rsplit(":", 1)[1])
        cfg["listen"] = [{"address": "127.0.0.1:%d" % port, "protocols": ["http/1.1", "h2"]}]
        p = portico(cfg)
        c = H2Client(port)
        sid = c.request("PUT", "/echo/upload", [("content-length", str(size))], body=b"a" * 1000, end=False)
        c.pump(lambda: c.streams[sid]["reset"] is not None, what="the end of the stream")
        st = c.streams[sid]
        assert status(st) == 200 and bytes(st["data"]) == b"early" and st["ended"]
        assert st["reset"] == h2.errors.ErrorCodes.NO_ERROR
        line = access_line(p, "/echo/upload")
        assert line["status"] == 200, line
        c.close()
    finally:
        lsock.close()
        t.join(5)


# ------------------------------------------------------------------ limits and attacks

def test_rapid_reset_is_cut_off_with_goaway(backend, portico):
    cfg, port = h2c_config(backend, limits={"http2": {"resetsPerSecond": 20}})
    p = portico(cfg)
    c = H2Client(port)
    for _ in range(200):
        if c.closed:
            break
        try:
            sid = c.request("GET", "/echo/sleep/200")
            c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            c.flush()
        except (OSError, h2.exceptions.ProtocolError):
            break
    assert c.wait_closed()
    assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert "too many streams reset" in p.log_text()
    # the gateway serves others as before
    d = H2Client(port)
    assert status(d.response(d.request("GET", "/echo/items/1"))) == 200
    d.close()


def test_streams_over_the_concurrency_limit(backend, portico):
    """The limit is advertised.  Streams over it opened before the client had it are refused
    (REFUSED_STREAM, to be retried); a client that opens more once it acknowledged the limit is cut off
    (GOAWAY PROTOCOL_ERROR) and gets nothing more served."""
    cfg, port = h2c_config(backend, limits={"http2": {"maxConcurrentStreams": 4}})
    portico(cfg)
    early = H2Client(port)  # its requests leave with its preface, before the server's SETTINGS arrive
    sids = [early.request("GET", "/echo/sleep/300") for _ in range(8)]
    results = [early.response(s) for s in sids]
    refused = [r for r in results if r["reset"] == h2.errors.ErrorCodes.REFUSED_STREAM]
    served = [r for r in results if r["reset"] is None and status(r) == 200]
    assert len(served) == 4 and len(refused) == 4
    early.close()
    backend.clear()
    c = H2Client(port)
    c.pump(lambda: h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in c.remote_settings,
           what="the server's SETTINGS")
    assert c.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 4
    # the client library keeps to the limit: make it believe in a larger one
    c.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 100
    c.conn.remote_settings.acknowledge()
    for _ in range(8):
        c.request("GET", "/echo/sleep/300")
    assert c.wait_closed()
    assert c.goaway is not None and c.goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert c.goaway.last_stream_id <= 7
    time.sleep(0.5)
    assert len(backend.requests) <= 4
    c.close()


def test_oversized_header_list_gets_431(backend, portico):
    cfg, port = h2c_config(backend, limits={"http2": {"headerListSize": "4k"}})
    portico(cfg)
    c = H2Client(port)
    big = [("x-big-%d" % i, "v" * 200) for i in range(40)]
    sid = c.request("GET", "/echo/items/1", big)
    st = c.response(sid)
    assert status(st) == 431
    assert backend.last() is None
    ok = c.request("GET", "/echo/items/2")
    assert status(c.response(ok)) == 200, "the connection goes on"
    c.close()


def frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def sanitized():
    """An AddressSanitizer build keeps freed memory aside: RSS says nothing there (its leak check does)."""
    with open(BIN, "rb") as f:
        return b"__asan_init" in f.read()


class RawH2:
    """A client of raw frames over one socket, for what a well-behaved library will not send."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
        self.buf = b""
        self.goaway = None
        self.closed = False
        self.next_sid = 1

    def frames(self, deadline):
        """The frames received next (SETTINGS acknowledged); [] once the connection is closed."""
        while True:
            out = []
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                if f[0] == 4 and not f[1] & 1:
                    self.sock.sendall(frame(4, 1, 0, b""))
                if f[0] == 0 and f[3]:  # the connection's window back; streams here are small
                    self.sock.sendall(frame(8, 0, 0, len(f[3]).to_bytes(4, "big")))
                if f[0] == 7:
                    self.goaway = int.from_bytes(f[3][4:8], "big")
                out.append(f)
            if out or self.closed:
                return out
            if time.monotonic() > deadline:
                raise AssertionError("no frame from the gateway in time")
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed = True
            self.buf += data

    def ended(self, sid, timeout=10.0):
        """Frames until stream `sid` ends (END_STREAM or RST_STREAM) or the connection closes."""
        deadline = time.monotonic() + timeout
        while True:
            fs = self.frames(deadline)
            if not fs:
                return False
            for t, fl, i, _ in fs:
                if i == sid and (t == 3 or (t in (0, 1) and fl & 1)):
                    return True
                if t == 7:
                    return False

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def wait_closed(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            try:
                self.frames(deadline)
            except AssertionError:
                break
        return self.closed

    def close(self):
        self.sock.close()


def hpack_literal(name, value):
    """A field as a literal without indexing, new name (RFC 7541 6.2.2), short strings only."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


CONNECT_HEAD = b"\x02\x07CONNECT" + b"\x01\x0fexample.com:443"  # :method CONNECT, :authority


def connect_streams(c, n, batch=40):
    """n CONNECT streams in batches, each batch waited for; the number sent before the connection ended."""
    sent = 0
    while sent < n:
        data, last = b"", c.next_sid
        for _ in range(batch):
            data += frame(1, 4 | 1, c.next_sid, CONNECT_HEAD)
            last, c.next_sid = c.next_sid, c.next_sid + 2
        if not c.send(data) or not c.ended(last):
            return sent
        sent += batch
    return sent


def test_connect_is_refused_without_leaking_and_counts_as_a_reset(backend, portico):
    cfg, port = h2c_config(backend, limits={"http2": {"resetsPerSecond": 1000000}})
    p = portico(cfg)
    c = H2Client(port)
    c.conn.config.validate_outbound_headers = False  # the client library knows only extended CONNECT
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")], end_stream=True)
    c.streams[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
    c.flush()
    st = c.response(sid)
    assert st["reset"] is None and status(st) == 405
    assert "not allowed" in echoed(st)["message"]
    c.close()
    raw = RawH2(port)
    assert connect_streams(raw, 2000) == 2000
    rss0 = p.rss_kb("VmRSS")
    assert connect_streams(raw, 20000) == 20000
    if not sanitized():
        assert p.rss_kb("VmRSS") - rss0 < 4 * 1024, "refused streams leave nothing behind"
    raw.close()
    assert backend.last() is None
    # past the reset limit, refused streams cut the connection
    cfg, port = h2c_config(backend, limits={"http2": {"resetsPerSecond": 20}})
    portico(cfg)
    raw = RawH2(port)
    assert connect_streams(raw, 500, batch=10) < 500
    assert raw.wait_closed()
    assert raw.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    raw.close()


def test_an_unfinished_header_block_meets_the_header_timeout(backend, portico):
    cfg, port = h2c_config(backend, timeouts={"header": "1s", "keepalive": "60s"})
    portico(cfg)
    raw = RawH2(port)
    raw.frames(time.monotonic() + 5)  # the server's SETTINGS, acknowledged before the header block begins
    assert raw.send(frame(1, 0, 1, b"\x82\x84\x86"))  # HEADERS without END_HEADERS, then silence
    t0 = time.monotonic()
    assert raw.wait_closed(timeout=10), "a header block never finished holds the connection"
    assert time.monotonic() - t0 < 10
    assert raw.goaway is None, "closed by the timeout, not as a protocol error"
    raw.close()
    assert backend.last() is None


def test_pings_do_not_keep_an_idle_connection_open(backend, portico):
    cfg, port = h2c_config(backend, timeouts={"keepalive": "2s"})
    portico(cfg)
    c = H2Client(port)
    assert status(c.response(c.request("GET", "/echo/items/1"))) == 200
    t0 = time.monotonic()
    for i in range(60):  # one PING every ~0.2 s for at most ~12 s
        try:
            c.conn.ping(i.to_bytes(8, "big"))
            c.flush()
            c.pump(lambda: False, timeout=0.2)
        except (AssertionError, OSError, h2.exceptions.ProtocolError):
            pass
        if c.closed:
            break
    assert c.closed, "PINGs kept an idle connection open past the keep-alive timeout"
    assert time.monotonic() - t0 < 12
    c.close()


def test_continuation_flood_is_cut_off(backend, portico):
    """A header block growing far past limits.http2.headerListSize closes the connection (GOAWAY
    ENHANCE_YOUR_CALM) well before the gateway has read what the client sends."""
    cfg, port = h2c_config(backend, limits={"http2": {"headerListSize": "16k"}},
                           timeouts={"header": "60s"})
    p = portico(cfg)
    raw = RawH2(port)
    raw.frames(time.monotonic() + 5)  # the server's SETTINGS, acknowledged before the header block begins
    # HEADERS without END_HEADERS, then CONTINUATION frames of one literal field of 16000 bytes each:
    # the third is past twice the header list size.  nghttp2 releases with the CVE-2024-28182 fix stop
    # at their own count of CONTINUATION frames (PROTOCOL_ERROR); the gateway's own bound comes first.
    field = b"\x00\x05x-abc\x7f\x81\x7c" + b"a" * 16000
    assert raw.send(frame(1, 0, 1, b"\x82\x84\x86"))
    rss0 = p.rss_kb("VmRSS")
    for _ in range(20):
        if not raw.send(frame(9, 0, 1, field)):
            break
    assert raw.wait_closed(timeout=10), "the flood was read on"
    assert raw.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    if not sanitized():
        assert p.rss_kb("VmRSS") - rss0 < 2 * 1024, "the gateway kept the flood"
    raw.close()
    assert "header block far over the limit" in p.log_text()
    assert backend.last() is None
    c = H2Client(port)
    assert status(c.response(c.request("GET", "/echo/items/1"))) == 200
    c.close()


BASE = [(":method", "GET"), (":scheme", "http"), (":path", "/echo/items/1"), (":authority", "localhost")]


def fields(*, drop=(), **replace):
    """BASE with pseudo-fields dropped or replaced (keys without their colon), as bytes."""
    out = []
    for k, v in BASE:
        if k[1:] in drop:
            continue
        out.append((k, replace.pop(k[1:], v)))
    return [(k.encode(), v.encode() if isinstance(v, str) else v) for k, v in out]


MALFORMED = {
    "cr in a value": fields() + [(b"x-a", b"a\rb")],
    "lf in a value": fields() + [(b"x-a", b"a\nInjected: 1")],
    "nul in a value": fields() + [(b"x-a", b"a\x00b")],
    "crlf in the path": fields(path=b"/echo/items/1 HTTP/1.1\r\nX-Smuggled: 1\r\n\r\nGET /x"),
    "space in the path": fields(path=b"/echo/items/1 x"),
    "absolute path": fields(path=b"http://evil.example/echo/items/1"),
    "uppercase name": fields() + [(b"X-Upper", b"v")],
    "connection field": fields() + [(b"connection", b"close")],
    "keep-alive field": fields() + [(b"keep-alive", b"timeout=5")],
    "transfer-encoding field": fields() + [(b"transfer-encoding", b"chunked")],
    "te other than trailers": fields() + [(b"te", b"gzip")],
    "no :method": fields(drop=("method",)),
    "no :path": fields(drop=("path",)),
    "no :scheme": fields(drop=("scheme",)),
    "space in :method": fields(method=b"GET /x"),
    "colon in a name": fields() + [(b"x:y", b"v")],
    "pseudo-field after a field": fields()[:2] + [(b"x-a", b"v")] + fields()[2:],
    "content-length without the body": fields(method=b"POST") + [(b"content-length", b"5")],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_are_reset_and_never_reach_the_backend(backend, portico, case):
    cfg, port = h2c_config(backend)
    portico(cfg)
    raw = RawH2(port)
    raw.frames(time.monotonic() + 5)  # the server's SETTINGS
    block = hpack.Encoder().encode(MALFORMED[case], huffman=False)
    assert raw.send(frame(1, 4 | 1, 1, block))  # END_HEADERS | END_STREAM
    deadline = time.monotonic() + 10
    got = []
    while not any(f[2] == 1 and f[0] in (1, 3) or f[0] == 7 for f in got):
        fs = raw.frames(deadline)
        if not fs:
            break
        got += fs
    answers = [f for f in got if (f[2] == 1 and f[0] in (1, 3)) or f[0] == 7]
    assert answers, "no answer to the malformed request"
    t, _, _, payload = answers[0]
    assert t != 1, "the malformed request was answered as a request"
    code = int.from_bytes(payload[:4] if t == 3 else payload[4:8], "big")
    assert code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    raw.close()
    # a good request after it, on a new connection: the only one the backend sees
    c = H2Client(port)
    assert status(c.response(c.request("GET", "/echo/items/2"))) == 200
    c.close()
    assert [r.target for r in backend.requests] == ["/base/items/2"]


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_settings_and_ping_floods_end_the_connection(backend, portico, kind):
    cfg, port = h2c_config(backend)
    p = portico(cfg)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # we read nothing: acks pile up
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
    one = frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64") if kind == "settings" else frame(6, 0, 0, b"12345678")
    cut = False
    try:
        for _ in range(200):
            s.sendall(one * 500)
    except OSError:
        cut = True
    if not cut:
        s.settimeout(10)
        try:
            while s.recv(1 << 20):
                pass
            cut = True
        except socket.timeout:
            cut = False
        except OSError:
            cut = True
    s.close()
    assert cut, "a client flooding %s frames is cut off" % kind
    c = H2Client(port)
    assert status(c.response(c.request("GET", "/echo/items/1"))) == 200
    c.close()


def test_a_window_never_opened_is_closed_after_the_send_timeout(backend, portico):
    cfg, port = h2c_config(backend, timeouts={"send": "1s"})
    p = portico(cfg)
    c = H2Client(port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sid = c.request("GET", "/echo/big?bytes=%d" % (16 * 1024 * 1024))
    c.pump(lambda: c.streams[sid]["headers"] is not None, what="the response head")
    st = c.response(sid, timeout=15)
    assert st["reset"] is not None and len(st["data"]) == 0
    line = access_line(p, "/echo/big")
    assert line["reason"] == "ClientConnectionFailure"
    c.close()


def test_a_client_that_reads_nothing_is_closed_after_the_send_timeout(backend, portico):
    cfg, port = h2c_config(backend, timeouts={"send": "1s"})
    p = portico(cfg)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.increment_flow_control_window(1 << 30)
    for i in range(5):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", "/echo/big?bytes=%d" % (32 << 20)),
                                (":scheme", "http"), (":authority", "x")], end_stream=True)
        conn.increment_flow_control_window(1 << 30, stream_id=sid)
    s.sendall(conn.data_to_send())
    time.sleep(0.2)
    rss0 = p.rss_kb("VmRSS")

    wait_for(lambda: sum(1 for e in p.access_entries() if e.get("path") == "/echo/big") == 5, 20,
             "the five requests ended")
    assert all(e["reason"] == "ClientConnectionFailure" for e in p.access_entries() if e.get("path") == "/echo/big")
    assert p.rss_kb("VmRSS") - rss0 < 64 * 1024
    s.close()


def test_a_body_over_the_limit_gets_413(backend, portico):
    cfg, port = h2c_config(backend, limits={"bodySize": "10k"})
    portico(cfg)
    c = H2Client(port)
    sid = c.request("POST", "/echo/items", [("content-length", "20000")], body=b"a" * 20000)
    st = c.response(sid)
    assert status(st) == 413 and json.loads(bytes(st["data"]))["statusCode"] == 413
    assert backend.last() is None, "refused before the body was read"
    sid = c.request("POST", "/echo/items", body=b"b" * 20000)  # no length: cut when it grows past
    st = c.response(sid)
    assert status(st) == 413
    c.close()


def test_mutated_conversations_do_not_break_the_gateway(backend, portico):
    """Real client conversations with bytes flipped, cut or repeated (a fixed seed: repeatable), each on
    a connection of its own: the gateway answers or closes, and goes on serving."""
    import random
    cfg, port = h2c_config(backend)
    p = portico(cfg)
    conv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conv.initiate_connection()
    conv.send_headers(1, [(":method", "POST"), (":path", "/echo/items"), (":scheme", "http"),
                          (":authority", "x"), ("content-length", "5"), ("cookie", "a=1")])
    conv.send_data(1, b"hello", end_stream=True)
    conv.send_headers(3, [(":method", "GET"), (":path", "/echo/items/2"), (":scheme", "http"),
                          (":authority", "x")], end_stream=True)
    conv.reset_stream(3)
    conv.ping(b"12345678")
    base = conv.data_to_send()
    rng = random.Random(15)
    for i in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(24, len(data))  # the preface stays: the frames are what is tried
            op = rng.random()
            if op < 0.6:
                data[at] = rng.randrange(256)
            elif op < 0.8:
                del data[at:at + rng.randint(1, 16)]
            else:
                data[at:at] = data[at:at + rng.randint(1, 32)]
        # most end their side at once (the streams are cut short); every fifth stays to see them through
        s = socket.create_connection(("127.0.0.1", port), timeout=5 if i % 5 else 0.3)
        try:
            s.sendall(bytes(data))
            if i % 5:
                s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
        finally:
            s.close()
    c = H2Client(port)
    assert status(c.response(c.request("GET", "/echo/items/1"))) == 200
    c.close()
    assert p.proc.poll() is None


# ------------------------------------------------------------------ reload

def test_reload_lets_streams_in_flight_finish(backend, portico):
    cfg, port = h2c_config(backend)
    p = portico(cfg)
    c = H2Client(port)
    slow = c.request("GET", "/echo/sleep/1500")
    c.pump(lambda: backend.last() is not None, what="the request at the backend")
    cfg["apis"].append({"id": "two", "path": "two", "serviceUrl": backend.url + "/second",
                        "subscriptionRequired": False,
                        "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}]})
    p.reload(cfg)
    st = c.response(slow, timeout=15)
    assert status(st) == 200 and st["reset"] is None
    st = c.response(c.request("GET", "/two/x"))
    assert status(st) == 200 and echoed(st)["target"] == "/second/x", "new streams see the new configuration"
    c.close()


def test_stop_sends_goaway_and_finishes_streams_in_flight(backend, portico):
    cfg, port = h2c_config(backend)
    p = portico(cfg)
    # nghttp: a client that reads a stream's response after the GOAWAY (as RFC 9113 6.8 wants)
    client = subprocess.Popen(["nghttp", "-nv", "http://127.0.0.1:%d/echo/sleep/1500" % port],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: backend.last() is not None, 10, "the request at the backend")
        p.send_signal(__import__("signal").SIGTERM)
        out = client.communicate(timeout=20)[0].decode()
    finally:
        if client.poll() is None:
            client.kill()
    assert "recv GOAWAY frame" in out and "error_code=NO_ERROR" in out, out
    assert out.index("recv GOAWAY frame") < out.index(":status: 200"), "the stream in flight finished after it"
    assert "END_STREAM" in out[out.index(":status: 200"):]
    assert p.proc.wait(timeout=15) == 0
