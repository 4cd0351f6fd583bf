#!/usr/bin/env python3
"""Mixed load with reloads and management writes: a long run, not a CI test.

    tests/soak/mixed.py [--bin build/portico] [--duration 30m] [--workers 2]
                        [--sample 10s] [--warmup 60s] [--connections N]
                        [--memory BYTES] [--rss-slope KiB/min] [--rss-growth %]

Starts the real gateway (a generated configuration in a temporary folder,
its own echo backend) and, for the given duration (default 30 minutes):

  keep-alive       two clients, each on one persistent connection, GETs
  new connection   one client, a new connection for every request
  streaming        a chunked download trickled by the backend, then a
                   256 KiB upload whose length and SHA-256 the backend
                   reports back
  WebSocket        connect, 20 echoed messages, close
  HTTP/2           one h2c connection (prior knowledge), rounds of 8
                   concurrent streams: 6 GETs and 2 POSTs of 64 KiB whose
                   SHA-256 the backend reports back; a new connection after
                   every 200 rounds
  reload           SIGHUP every 10 s; every other one with a real change
                   (limits.connections and limits.memory moved by one
                   step), each confirmed by portico_config_generation
  management       a write every second (PUT of one of 20 groups)

Every answer is checked (status, body); anything else -- an error, a
reset, a wrong body -- is a failed request.  Every `--sample` it records
the process's resident size (VmRSS) and its open descriptors, and at the
end prints the samples, the failures, and whether RSS stayed flat after
the warm-up and the descriptors came back to where they were.

limits.connections is set a little above the number of client connections
(--connections, default 7 for the 6 clients), so workers pause at the
node's cap and resume; limits.memory (--memory, default 256m) is set so the
held bytes are added up.  Requests held at the cap wait: none may fail.

Exit status 1 when a request failed, a reload was refused or not applied,
descriptors grew, or RSS was not flat after the warm-up: the least-squares
slope over the second half of the samples above --rss-slope (KiB per
minute, default 64) or the last sample more than --rss-growth (default 5 %)
above the first.  One client per kind on Python threads is light load: it
hunts leaks and drift, it does not push the gateway into overload.  Traffic goes to 127.0.0.1 only; it stops only the processes it
started; every loop ends with the duration.
"""

import argparse
import hashlib
import http.client
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from backends import EchoBackend, ws_frame, ws_read_frame  # noqa: E402
from conftest import Portico, basic_config, free_port  # noqa: E402
from h2_helpers import H2Client  # noqa: E402
from mgmt_helpers import TOKEN, Mgmt  # noqa: E402


def seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError("a duration like 300, 90s, 5m or 1h")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


class Tally:
    """Requests and failures per kind, shared by the load threads."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.ok = {}
        self.failed = {}
        self.examples = []

    def count(self, kind, good, why=""):
        with self.lock:
            if good:
                self.ok[kind] = self.ok.get(kind, 0) + 1
            else:
                self.failed[kind] = self.failed.get(kind, 0) + 1
                if len(self.examples) < 20:
                    self.examples.append("%.1f s %s: %s" % (time.monotonic() - self.t0, kind, why))

    def totals(self):
        with self.lock:
            return sum(self.ok.values()), sum(self.failed.values())


def keepalive_client(port, stop, tally, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while not stop.is_set():
        i += 1
        path = "/echo/items/k%d-%d" % (n, i)
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            good = r.status == 200 and b'"/base/items/k' in body
            tally.count("keep-alive", good, "status %d" % r.status)
        except (OSError, http.client.HTTPException) as e:
            tally.count("keep-alive", False, repr(e))
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.close()


def new_connection_client(port, stop, tally):
    while not stop.is_set():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            c.request("GET", "/echo/items/new", headers={"Connection": "close"})
            r = c.getresponse()
            r.read()
            tally.count("new connection", r.status == 200, "status %d" % r.status)
        except (OSError, http.client.HTTPException) as e:
            tally.count("new connection", False, repr(e))
        finally:
            c.close()


UPLOAD = os.urandom(256 * 1024)
UPLOAD_SHA = hashlib.sha256(UPLOAD).hexdigest()


def streaming_client(port, stop, tally):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        try:
            c.request("GET", "/echo/stream?chunks=10&size=4096&delay=10")
            r = c.getresponse()
            body = r.read()
            tally.count("streaming", r.status == 200 and len(body) == 10 * 4096, "download %d/%d" %
                        (r.status, len(body)))
            c.request("POST", "/echo/sink", body=UPLOAD, headers={"Content-Type": "application/octet-stream"})
            r = c.getresponse()
            body = r.read()
            tally.count("streaming", r.status == 200 and UPLOAD_SHA.encode() in body, "upload %d" % r.status)
        except (OSError, http.client.HTTPException) as e:
            tally.count("streaming", False, repr(e))
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.close()


def websocket_client(port, stop, tally):
    while not stop.is_set():
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"GET /chat HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            f = s.makefile("rb")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                ch = f.read(1)
                if not ch:
                    raise EOFError("closed during the handshake")
                head += ch
            if not head.startswith(b"HTTP/1.1 101"):
                tally.count("WebSocket", False, head[:40])
                continue
            good = True
            for i in range(20):
                msg = b"message %d" % i
                s.sendall(ws_frame(1, msg, mask=True))
                op, data = ws_read_frame(f)
                good &= op == 1 and data == msg
            s.sendall(ws_frame(8, b"\x03\xe8", mask=True))
            op, _ = ws_read_frame(f)
            tally.count("WebSocket", good and op == 8, "echo mismatch")
        except (OSError, EOFError, ValueError) as e:
            tally.count("WebSocket", False, repr(e))
        finally:
            if s:
                s.close()


H2_UPLOAD = os.urandom(64 * 1024)
H2_UPLOAD_SHA = hashlib.sha256(H2_UPLOAD).hexdigest()


def h2_round(c, tally):
    """8 streams at once on one connection; each answer checked."""
    gets = [c.request("GET", "/echo/items/h2-%d" % i) for i in range(6)]
    posts = [c.request("POST", "/echo/sink", body=H2_UPLOAD, headers=[("content-type", "application/octet-stream")])
             for _ in range(2)]
    for sid in gets + posts:
        st = c.response(sid, timeout=30)
        code = int(st["headers"][":status"]) if st["headers"] else 0
        want = b'"/base/items/h2-' if sid in gets else H2_UPLOAD_SHA.encode()
        tally.count("HTTP/2", st["reset"] is None and code == 200 and want in st["data"],
                    "status %d reset %s" % (code, st["reset"]))
        del c.streams[sid]


def h2_client(port, stop, tally):
    c = None
    rounds = 0
    while not stop.is_set():
        try:
            if c is None or c.goaway is not None or c.closed or rounds >= 200:
                if c:
                    c.close()
                c, rounds = H2Client(port, timeout=30), 0
            h2_round(c, tally)
            rounds += 1
        except (OSError, AssertionError, KeyError, ValueError) as e:
            tally.count("HTTP/2", False, repr(e))
            if c:
                c.close()
            c = None
    if c:
        c.close()


def reloader(p, cfg, stop, every, counts, tally):
    """SIGHUP every `every` s; every other one after writing a changed configuration (the node
    cap and the memory mark one step up or back).  A reload counts as applied once the
    configuration generation moved past the one before it."""
    n = 0
    while not stop.wait(every):
        n += 1
        if n % 2 == 0:
            limits = dict(cfg["limits"])
            step = (n // 2) % 2
            limits["connections"] = cfg["limits"]["connections"] + step
            limits["memory"] = cfg["limits"]["memory"] + step * 1024 * 1024
            p.write_config(dict(cfg, limits=limits))
        before = gauge(p, "portico_config_generation", tally)
        p.proc.send_signal(signal.SIGHUP)
        counts["reloads"] += 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and gauge(p, "portico_config_generation", tally) <= before:
            time.sleep(0.05)
        if gauge(p, "portico_config_generation", tally) > before:
            counts["applied"] += 1
            counts["changed"] += n % 2 == 0


def writer(p, stop, tally, counts):
    m = Mgmt(p)
    i = 0
    while not stop.wait(1.0):
        i += 1
        gid = "soak-%d" % (i % 20)
        try:
            st, _, _ = m.call("PUT", "groups/" + gid, {"displayName": "soak write %d" % i})
            tally.count("management", st in (200, 201), "status %d" % st)
        except OSError as e:
            tally.count("management", False, repr(e))
        counts["writes"] += 1


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def gauge(p, name, tally=None):
    """A gauge without labels from the gateway's /metrics (0 when missing, -1 when /metrics did not
    answer within the client's timeout: a failed request of kind "metrics" when a tally is given)."""
    try:
        st, _, text = Mgmt(p).call("GET", "/metrics")
    except OSError as e:
        if tally:
            tally.count("metrics", False, repr(e))
        return -1
    m = re.search(r"^%s ([-+0-9.eE]+)$" % name, text if isinstance(text, str) else "", re.M)
    return int(float(m.group(1))) if st == 200 and m else 0


def idle_backend_connections(p):
    """Pooled keep-alive connections to the backend: descriptors the gateway keeps on purpose
    (until upstream.idleTimeout)."""
    return gauge(p, "portico_upstream_connections_idle")


def config(backend, workers, connections, memory):
    cfg = basic_config(backend.url, workers=workers)
    cfg["listen"] = [{"address": cfg["listen"][0], "protocols": ["http/1.1", "h2"]}]  # h2c beside HTTP/1.1
    cfg["limits"] = {"connections": connections, "memory": memory}
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    cfg["apis"].append({"id": "chat", "path": "chat", "apiType": "websocket",
                        "serviceUrl": backend.url.replace("http://", "ws://") + "/ws",
                        "subscriptionRequired": False})
    cfg["log"] = {"access": "off"}  # a 30-minute run would write gigabytes
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "..", "build", "portico"))
    ap.add_argument("--duration", type=seconds, default=1800.0, help="how long (default 30m)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample", type=seconds, default=10.0, help="RSS and descriptors every (default 10s)")
    ap.add_argument("--warmup", type=seconds, default=60.0, help="RSS compared from then on (default 60s)")
    ap.add_argument("--reload-every", type=seconds, default=10.0)
    ap.add_argument("--connections", type=int, default=7,
                    help="limits.connections (default 7: a little above the 6 clients, so workers pause)")
    ap.add_argument("--memory", type=int, default=256 * 1024 * 1024, help="limits.memory in bytes (default 256m)")
    ap.add_argument("--rss-slope", type=float, default=64.0,
                    help="largest RSS slope over the second half, KiB per minute (default 64)")
    ap.add_argument("--rss-growth", type=float, default=5.0,
                    help="largest RSS growth after the warm-up, per cent (default 5)")
    a = ap.parse_args()
    import conftest
    conftest.BIN = os.path.abspath(a.bin)

    backend = EchoBackend()
    tally = Tally()
    counts = {"reloads": 0, "applied": 0, "changed": 0, "writes": 0}
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="portico-soak-") as workdir:
        cfg = config(backend, a.workers, a.connections, a.memory)
        p = Portico(workdir, cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN}).start()
        pid = p.proc.pid
        threads = [threading.Thread(target=keepalive_client, args=(p.port, stop, tally, n)) for n in range(2)]
        threads += [threading.Thread(target=new_connection_client, args=(p.port, stop, tally)),
                    threading.Thread(target=streaming_client, args=(p.port, stop, tally)),
                    threading.Thread(target=websocket_client, args=(p.port, stop, tally)),
                    threading.Thread(target=h2_client, args=(p.port, stop, tally)),
                    threading.Thread(target=reloader, args=(p, cfg, stop, a.reload_every, counts, tally)),
                    threading.Thread(target=writer, args=(p, stop, tally, counts))]
        fd0 = fds(pid)
        t0 = time.monotonic()
        samples = []
        for t in threads:
            t.start()
        print("%8s %10s %6s %10s %8s %10s %10s" % ("seconds", "RSS KiB", "fds", "requests", "failed", "store KiB",
                                                  "held KiB"), flush=True)
        try:
            while True:
                now = time.monotonic() - t0
                ok, bad = tally.totals()
                # the store's memory (SQLite) and what connections hold (limits.memory's figure)
                # tell a growing RSS from a leak
                samples.append((now, rss_kb(pid), fds(pid), ok + bad, bad,
                                gauge(p, "portico_store_memory_bytes", tally) // 1024,
                                gauge(p, "portico_memory_buffered_bytes", tally) // 1024))
                print("%8.0f %10d %6d %10d %8d %10d %10d" % samples[-1], flush=True)
                # the run reads none of the backend's records of requests: kept, millions of them grew
                # this script to the machine's whole memory within 30 minutes and stalled everything
                backend.clear()
                if now >= a.duration:
                    break
                time.sleep(min(a.sample, max(0.0, a.duration - now)))
        except BaseException:
            stop.set()
            p.stop()  # never leave the gateway running behind a broken run
            raise
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        # at rest: every client connection closed; the descriptors come back
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and fds(pid) > fd0:
            time.sleep(0.1)
        fd_end = fds(pid)
        pooled = idle_backend_connections(p)
        waits = gauge(p, "portico_connections_limit_waits_total")
        refusals = gauge(p, "portico_overload_refusals_total")
        log = p.log_text()
        refused = log.count("reload refused")
        if tally.totals()[1]:  # the gateway's own account of a failed run outlives the temporary folder
            kept = "/tmp/portico-soak-%d.log" % pid
            with open(kept, "w") as f:
                f.write(log)
            print("the gateway's log: " + kept)
        p.stop()
        err = p.proc.stderr.read().decode(errors="replace") if p.proc.stderr else ""
        sanitizer = "Sanitizer" in err or "runtime error:" in err  # a --enable-asan build's reports
        if sanitizer:
            print(err[-4000:])
    backend.close()

    ok, bad = tally.totals()
    after = [s for s in samples if s[0] >= a.warmup] or samples[-1:]
    rss_first, rss_last = after[0][1], after[-1][1]
    rss_max = max(s[1] for s in after)
    slope = rss_slope(after[len(after) // 2:])
    growth = 100.0 * (rss_last - rss_first) / max(1, rss_first)
    rss_flat = slope <= a.rss_slope and growth <= a.rss_growth
    print("\nduration %.0f s, %d workers" % (samples[-1][0], a.workers))
    print("requests %d, failed %d" % (ok + bad, bad))
    for kind in sorted(set(tally.ok) | set(tally.failed)):
        print("  %-15s %8d ok %6d failed" % (kind, tally.ok.get(kind, 0), tally.failed.get(kind, 0)))
    for e in tally.examples:
        print("  failure: " + e)
    print("reloads %d (applied %d, %d of them with a changed configuration; refused %d), management writes %d"
          % (counts["reloads"], counts["applied"], counts["changed"], refused, counts["writes"]))
    print("node cap %d: workers paused at it %d times; overload refusals %d" % (a.connections, waits, refusals))
    print("RSS after warm-up (%.0f s): first %d KiB, last %d KiB, max %d KiB (%+.1f %%, limit %+.1f %%); "
          "slope over the second half %.0f KiB/min (limit %.0f): %s" %
          (a.warmup, rss_first, rss_last, rss_max, growth, a.rss_growth, slope, a.rss_slope,
           "flat" if rss_flat else "NOT FLAT"))
    print("descriptors: %d at start, %d at the end under load, %d at rest of which %d pooled backend "
          "connections" % (fd0, samples[-1][2], fd_end, pooled))
    reloads_bad = refused or counts["applied"] < counts["reloads"]
    return 1 if bad or reloads_bad or sanitizer or fd_end - pooled > fd0 or not rss_flat else 0


def rss_slope(samples):
    """Least-squares slope of RSS (KiB) over time, in KiB per minute; 0 with fewer than 2 samples."""
    if len(samples) < 2:
        return 0.0
    ts = [s[0] for s in samples]
    ys = [s[1] for s in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    if not var:
        return 0.0
    return 60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var


if __name__ == "__main__":
    sys.exit(main())
