#!/usr/bin/env python3
"""Faults under load, on loopback: a run to compare builds, not a CI test.

    tests/soak/faults.py [--bin build/portico] [--quick]

Starts the real gateway with a generated configuration in a temporary
folder, next to a backend of its own, and runs, one after another:

  slow clients      heads sent a byte at a time: cut with 408 at the header
                    timeout while normal clients are served
  idle connections  keep-alive connections doing nothing: memory each
  backend faults    refused, silent, half body, slow body, reset
  client aborts     uploads and downloads closed or reset mid-way: 499,
                    descriptors back to rest
  kill -9           management writes while the process is killed: every
                    acknowledged write is there after the restart
  reload storm      SIGHUP after SIGHUP under load: no failed request

and prints one table.  Every loop is bounded; traffic goes to 127.0.0.1
only; it stops only the processes it started.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from backends import EchoBackend  # noqa: E402
from conftest import Portico, basic_config, free_port  # noqa: E402
from mgmt_helpers import TOKEN, Mgmt  # noqa: E402

ROWS = []


def row(scenario, metric, value):
    ROWS.append((scenario, metric, value))
    print("  %-18s %-46s %s" % (scenario, metric, value), flush=True)


def fds(p):
    return len(os.listdir("/proc/%d/fd" % p.proc.pid))


def rss_kb(p):
    return p.rss_kb("VmRSS")


def get(port, path, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        c.close()


def settle(p, rest, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline and fds(p) > rest:
        time.sleep(0.05)
    return fds(p)


def slow_clients(p, n):
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            s.sendall(b"GET /echo/items/1 HTTP/1.1\r\nHo")
            socks.append(s)
        except OSError:
            break
    served = 0
    t0 = time.time()
    while time.time() - t0 < 3:
        served += get(p.port, "/echo/items/1") == 200
    cut = 0
    deadline = time.time() + 6
    for s in socks:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            cut += s.recv(64).startswith(b"HTTP/1.1 408")
        except OSError:
            pass
        s.close()
    row("slow clients", "%d slow heads: cut with 408 at the header timeout" % len(socks), cut)
    row("slow clients", "normal requests served meanwhile (3 s)", served)


def idle_connections(p, n):
    before = rss_kb(p)
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", p.port), timeout=5))
        except OSError:
            break
    time.sleep(0.5)
    after = rss_kb(p)
    row("idle connections", "%d idle: KB each" % len(socks), "%.2f" % ((after - before) / max(1, len(socks))))
    row("idle connections", "served while they idle", get(p.port, "/echo/items/1") == 200)
    for s in socks:
        s.close()


def backend_faults(workdir, backend):
    refused = free_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    cfg = basic_config(backend.url, upstream={"readTimeout": "1s", "connectTimeout": "1s"})
    cfg["apis"] += [
        {"id": "refused", "path": "refused", "serviceUrl": "http://127.0.0.1:%d" % refused,
         "subscriptionRequired": False, "operations": [{"id": "a", "method": "*", "urlTemplate": "/*"}]},
        {"id": "silent", "path": "silent", "serviceUrl": "http://127.0.0.1:%d" % silent.getsockname()[1],
         "subscriptionRequired": False, "operations": [{"id": "a", "method": "*", "urlTemplate": "/*"}]},
    ]
    p = Portico(workdir, cfg).start()
    try:
        cases = [("refused", "/refused/x", 502), ("silent", "/silent/x", 504), ("half body", "/echo/close-mid", None),
                 ("slow body", "/echo/stream?chunks=5&size=10&delay=100", 200),
                 ("reset", "/echo/close-before", 502)]
        for name, path, want in cases:
            got = [get(p.port, path) for _ in range(10)]
            ok = sum(1 for g in got if (g == want if want else g in (200, None)))
            row("backend faults", "%s: expected answer in 10" % name, ok)
        row("backend faults", "healthy API still served", get(p.port, "/echo/items/1") == 200)
    finally:
        p.stop()
        silent.close()


def client_aborts(p, n):
    rest = settle(p, fds(p))
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        if i % 2:
            s.sendall(b"POST /echo/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 65536)
        else:
            s.sendall(b"GET /echo/big?bytes=10000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1000)
        if i % 4 < 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    back = settle(p, rest)
    row("client aborts", "%d aborted uploads/downloads: fds back to rest" % n, back <= rest)
    time.sleep(0.5)
    entries = p.access_entries()
    aborted = [e for e in entries if e.get("path") in ("/echo/sink", "/echo/big")]
    held = [e for e in aborted if e.get("status") == 408]
    row("client aborts", "logged 499 ClientConnectionFailure", sum(e.get("status") == 499 for e in aborted))
    row("client aborts", "held until a timeout (408)", len(held))


def kill9_writes(workdir, backend, rounds):
    lost = acked = 0
    for r in range(rounds):
        cfg = basic_config(backend.url)
        cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
        cfg["data"] = os.path.join(workdir, "kill9")
        p = Portico(workdir, cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN}).start()
        m = Mgmt(p)
        done = []
        stop = threading.Event()

        def writer():
            for i in range(100000):
                if stop.is_set():
                    return
                gid = "g%d-%d" % (r, i)
                try:
                    st, _, _ = m.call("PUT", "groups/" + gid, {"displayName": gid})
                except OSError:
                    return
                if st in (200, 201):
                    done.append(gid)
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait()
        stop.set()
        t.join()
        p2 = Portico(workdir, cfg, env={"PORTICO_ADMIN_TOKEN": TOKEN}).start()
        m2 = Mgmt(p2)
        for gid in done:
            acked += 1
            lost += m2.call("GET", "groups/" + gid)[0] != 200
        p2.stop()
    row("kill -9", "%d rounds: acknowledged writes" % rounds, acked)
    row("kill -9", "acknowledged writes lost", lost)


def reload_storm(p, n):
    failed = total = 0
    stop = threading.Event()

    def load():
        nonlocal failed, total
        while not stop.is_set():
            st = get(p.port, "/echo/items/1")
            total += 1
            failed += st != 200
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(n):
        p.proc.send_signal(signal.SIGHUP)
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    row("reload storm", "%d reloads under load: requests" % n, total)
    row("reload storm", "failed requests", failed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "..", "build", "portico"))
    ap.add_argument("--quick", action="store_true", help="smaller numbers, for a look")
    a = ap.parse_args()
    os.environ["PORTICO_BIN"] = os.path.abspath(a.bin)
    import conftest
    conftest.BIN = os.path.abspath(a.bin)
    q = a.quick
    backend = EchoBackend()
    with tempfile.TemporaryDirectory(prefix="portico-soak-") as workdir:
        cfg = basic_config(backend.url, timeouts={"header": "3s"})
        p = Portico(workdir, cfg).start()
        try:
            print("%-20s %-46s %s" % ("scenario", "figure", "value"))
            slow_clients(p, 100 if q else 1000)
            idle_connections(p, 500 if q else 5000)
            client_aborts(p, 40 if q else 400)
            reload_storm(p, 5 if q else 20)
        finally:
            p.stop()
        backend_faults(workdir, backend)
        kill9_writes(workdir, backend, 1 if q else 5)
    backend.close()
    print("\n| scenario | figure | value |\n|---|---|---|")
    for s, m, v in ROWS:
        print("| %s | %s | %s |" % (s, m, v))


if __name__ == "__main__":
    main()
