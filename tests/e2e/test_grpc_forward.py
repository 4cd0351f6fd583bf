"""gRPC calls forwarded to a real gRPC backend (Python grpcio's server, h2c) by a
real client (grpcio over h2c to the gateway): every call kind, metadata and
trailers both ways, the backend's errors, deadlines, cancellation, large
streams, keys and policies on the way.  The API comes from a .proto import;
no forward-request is written: a grpc API speaks HTTP/2 to its backend."""

import hashlib
import threading
import time
from concurrent import futures

import grpc
import pytest

from conftest import basic_config, free_port, wait_for
from mgmt_helpers import TOKEN
from test_metrics import scrape, value

PROTO = """syntax = "proto3";
package demo.v1;
message Msg { bytes data = 1; }
service Echo {
  rpc Unary(Msg) returns (Msg);
  rpc Download(Msg) returns (stream Msg);
  rpc Upload(stream Msg) returns (Msg);
  rpc Chat(stream Msg) returns (stream Msg);
}
"""
SVC = "/demo.v1.Echo/"
KEY = "grpc-forward-key-0000000001"


class Backend:
    """A gRPC server with generic handlers (raw bytes, no generated code) that records what it saw."""

    def __init__(self):
        self.seen = []  # (method, metadata dict) per call
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
        h = {"Unary": grpc.unary_unary_rpc_method_handler(self.unary),
             "Download": grpc.unary_stream_rpc_method_handler(self.download),
             "Upload": grpc.stream_unary_rpc_method_handler(self.upload),
             "Chat": grpc.stream_stream_rpc_method_handler(self.chat)}
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.v1.Echo", h),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def note(self, name, ctx):
        with self.lock:
            self.seen.append((name, dict(ctx.invocation_metadata())))

    def unary(self, req, ctx):
        self.note("Unary", ctx)
        md = dict(ctx.invocation_metadata())
        if req.startswith(b"fail:"):
            ctx.set_trailing_metadata((("why-bin", b"\x00\x01"), ("x-detail", "no such thing")))
            ctx.abort(grpc.StatusCode.NOT_FOUND, req[5:].decode())
        if req.startswith(b"sleep:"):
            end = time.monotonic() + float(req[6:].decode())
            while time.monotonic() < end and ctx.is_active():
                time.sleep(0.01)
            if not ctx.is_active():
                self.cancelled.set()
            return b"late"
        ctx.set_trailing_metadata((("x-trailer", "t-" + md.get("x-tag", "")),))
        return b"echo:" + req

    def download(self, req, ctx):
        self.note("Download", ctx)
        finished = []
        # called when the call ends, however it ends: a cancelled stream may be blocked in a send
        ctx.add_callback(lambda: finished or self.cancelled.set())
        n, size = (int(x) for x in req.decode().split(":"))
        for i in range(n):
            yield (b"%08d" % i) + b"x" * (size - 8)
        finished.append(True)

    def upload(self, it, ctx):
        self.note("Upload", ctx)
        h, n = hashlib.sha256(), 0
        for m in it:
            h.update(m)
            n += 1
        return b"%d:%s" % (n, h.hexdigest().encode())

    def chat(self, it, ctx):
        self.note("Chat", ctx)
        for m in it:
            yield b"re:" + m

    def close(self):
        self.server.stop(grace=None)


@pytest.fixture
def grpc_backend():
    b = Backend()
    yield b
    b.close()


def config(grpc_backend, **api_extra):
    cfg = basic_config("http://127.0.0.1:9")  # the echo API is not used
    port = int(cfg["listen"][0].rsplit(":", 1)[1])
    cfg["listen"] = [{"address": "127.0.0.1:%d" % port, "protocols": ["http/1.1", "h2"]}]
    api = {"id": "demo", "path": "", "serviceUrl": "http://127.0.0.1:%d" % grpc_backend.port,
           "subscriptionRequired": True, "import": {"format": "grpc", "value": PROTO}}
    api.update(api_extra)
    cfg["apis"] = [api]
    cfg["subscriptions"] = [{"id": "s1", "scope": "/apis/demo", "state": "active", "primaryKey": KEY}]
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}  # /metrics
    return cfg, port


@pytest.fixture
def gw(grpc_backend, portico):
    cfg, port = config(grpc_backend)
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN})
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    yield p, ch
    ch.close()


MD = (("ocp-apim-subscription-key", KEY),)


def call(ch, kind, name):
    return getattr(ch, kind)(SVC + name, request_serializer=None, response_deserializer=None)


def test_unary_with_metadata_and_trailers(gw, grpc_backend):
    p, ch = gw
    resp, c = call(ch, "unary_unary", "Unary").with_call(b"hello", metadata=MD + (("x-tag", "abc"),), timeout=10)
    assert resp == b"echo:hello"
    assert c.code() == grpc.StatusCode.OK
    assert ("x-trailer", "t-abc") in c.trailing_metadata()
    name, md = grpc_backend.seen[-1]
    assert name == "Unary" and md.get("x-tag") == "abc"
    assert md.get("x-forwarded-for") == "127.0.0.1"


def test_the_backends_errors_reach_the_client_with_their_trailers(gw):
    p, ch = gw
    with pytest.raises(grpc.RpcError) as e:
        call(ch, "unary_unary", "Unary")(b"fail:no feature here", metadata=MD, timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "no feature here"
    tm = dict(e.value.trailing_metadata())
    assert tm.get("x-detail") == "no such thing" and tm.get("why-bin") == b"\x00\x01"


def test_server_streaming_large(gw):
    p, ch = gw
    got = list(call(ch, "unary_stream", "Download")(b"2000:4096", metadata=MD, timeout=30))
    assert len(got) == 2000 and all(m[:8] == b"%08d" % i for i, m in enumerate(got))
    assert sum(len(m) for m in got) == 2000 * 4096


def test_client_streaming_large(gw):
    p, ch = gw
    msgs = [bytes([i % 251]) * 16384 for i in range(600)]  # ~9.4 MiB
    h = hashlib.sha256(b"".join(msgs)).hexdigest()
    resp = call(ch, "stream_unary", "Upload")(iter(msgs), metadata=MD, timeout=60)
    assert resp == b"600:" + h.encode()


def test_bidi_streaming_is_full_duplex(gw):
    """Each answer comes back before the next message is sent: the gateway must pass the backend's
    messages on while the client's stream is still open."""
    p, ch = gw
    q = []
    ev = threading.Event()
    done = threading.Event()

    def requests():
        for i in range(20):
            yield b"m%d" % i
            if not ev.wait(10):
                return
            ev.clear()
        done.set()

    answers = call(ch, "stream_stream", "Chat")(requests(), metadata=MD, timeout=30)
    for a in answers:
        q.append(a)
        ev.set()
    assert q == [b"re:m%d" % i for i in range(20)]
    assert done.is_set()


def test_a_deadline_ends_the_backend_call(gw, grpc_backend):
    p, ch = gw
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        call(ch, "unary_unary", "Unary")(b"sleep:20", metadata=MD, timeout=1.0)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 15
    # the backend saw its call cancelled (the gateway reset the stream or closed it)
    assert wait_for(grpc_backend.cancelled.is_set, timeout=15)


def test_cancelling_a_stream_reaches_the_backend(gw, grpc_backend):
    p, ch = gw
    it = call(ch, "unary_stream", "Download")(b"1000000:1024", metadata=MD, timeout=60)
    for i, _ in zip(range(50), it):
        pass
    it.cancel()
    assert wait_for(grpc_backend.cancelled.is_set, timeout=15)


def test_refusals_before_the_backend_are_grpc_errors(gw, grpc_backend):
    p, ch = gw
    before = len(grpc_backend.seen)
    with pytest.raises(grpc.RpcError) as e:
        call(ch, "unary_unary", "Unary")(b"x", timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        call(ch, "unary_unary", "Nope")(b"x", metadata=MD, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert len(grpc_backend.seen) == before


def test_a_down_backend_is_unavailable(grpc_backend, portico):
    cfg, port = config(grpc_backend, serviceUrl="http://127.0.0.1:%d" % free_port())
    portico(cfg)
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        with pytest.raises(grpc.RpcError) as e:
            call(ch, "unary_unary", "Unary")(b"x", metadata=MD, timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_many_calls_share_few_backend_connections(gw):
    """300 calls, 16 at a time: streams of one backend connection (one worker), not 300 connections."""
    p, ch = gw
    before = scrape(p)
    with futures.ThreadPoolExecutor(16) as ex:
        out = list(ex.map(lambda i: call(ch, "unary_unary", "Unary")(b"%d" % i, metadata=MD, timeout=20),
                          range(300)))
    assert out == [b"echo:%d" % i for i in range(300)]
    after = scrape(p)
    streams = value(after, "portico_backend_http2_streams_total") - value(before, "portico_backend_http2_streams_total")
    conns = value(after, "portico_backend_http2_connections_total") - value(before,
                                                                            "portico_backend_http2_connections_total")
    assert streams == 300 and conns <= 2, (streams, conns)
