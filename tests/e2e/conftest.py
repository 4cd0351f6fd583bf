"""Fixtures shared by the end-to-end tests.

Every test starts the real `portico` binary on free loopback ports with a
configuration it generates, next to real backends (backends.py), and talks
to it with real clients: raw sockets for bytes no library would send,
http.client, curl.  The binary is $PORTICO_BIN (set by `make check`), else
the build tree's ./portico.
"""

import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from backends import EchoBackend  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("PORTICO_BIN") or os.path.abspath(os.path.join(HERE, "..", "..", "portico"))


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


_EPHEMERAL = _ephemeral_range()
_given_ports = set()


def free_port(family=socket.AF_INET):
    """A port nothing listens on, for a server the test starts next.

    Taken below the kernel's ephemeral range: a port from bind(0) comes from
    that range, and an outgoing connection made before the server binds it
    (the gateway's to a backend, a client's) may take it as its source port
    ("address already in use" at the server's start).  Never the same port
    twice in one run; bind(0) only when no port below the range is free."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    lo = max(1024, _EPHEMERAL[0] - 12000)
    hi = _EPHEMERAL[0] - 1
    for _ in range(200 if hi > lo else 0):
        port = random.randint(lo, hi)
        if port in _given_ports:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def yaml_quote(s):
    return json.dumps(s)


def is_config(value):
    """A whole configuration (not an entity document or a part of one)."""
    return isinstance(value, dict) and ("listen" in value or "controlPlane" in value)


def without_samples_text(text):
    """The same for a configuration written as YAML text (a block mapping):
    `samples: false` appended, unless the text sets it."""
    if text.lstrip().startswith("{") or re.search(r"^samples\s*:", text, re.M) or \
            not re.search(r"^(listen|controlPlane)\s*:", text, re.M):
        return text
    return text + ("" if text.endswith("\n") else "\n") + "samples: false\n"


def to_yaml(value, indent=0):
    """Minimal YAML writer (JSON is valid YAML; this keeps files readable).
    A whole configuration gets `samples: false` (last, so no line moves)
    unless it sets samples: tests start from an empty store, as they count
    and name entities; the tests about samples say `samples: true`."""
    if indent == 0 and is_config(value) and "samples" not in value:
        value = dict(value, samples=False)
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
            else:
                lines.append("%s%s: %s" % (pad, k, to_yaml(v, 0)))
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for v in value:
            if isinstance(v, dict) and v:
                inner = to_yaml(v, indent + 1).lstrip()
                lines.append("%s- %s" % (pad, inner))
            else:
                lines.append("%s- %s" % (pad, to_yaml(v, 0)))
        return "\n".join(lines)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return yaml_quote(str(value))


class Portico:
    """A running portico process with its config, logs and helpers."""

    def __init__(self, workdir, config, extra_args=(), env=None):
        self.workdir = workdir
        self.config_path = os.path.join(workdir, "portico.yaml")
        self.access_log = os.path.join(workdir, "access.log")
        self.error_log = os.path.join(workdir, "error.log")
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        self.write_config(config)
        self.proc = None
        self.extra_args = list(extra_args)
        self.ended_by = None  # the signal a test ended the process with

    def write_config(self, config):
        if isinstance(config, dict):
            config = dict(config)
            config.setdefault("log", {})
            config["log"] = dict(config["log"])
            config["log"].setdefault("access", self.access_log)
            config["log"].setdefault("error", self.error_log)
            config["log"].setdefault("accessBuffer", 0)
            config["log"].setdefault("level", "info")
            self.config = config
            text = to_yaml(config) + "\n"
        else:
            self.config = None
            text = without_samples_text(config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    @property
    def port(self):
        addr = self.config["listen"][0]
        if isinstance(addr, dict):
            addr = addr["address"]
        return int(addr.rsplit(":", 1)[1])

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def portal_url(self):
        """The developer portal's base URL (portal.listen; https when it has a certificate)."""
        p = (self.config or {}).get("portal") or {}
        scheme = "https" if p.get("certificate") else "http"
        return "%s://%s" % (scheme, p["listen"])

    def check(self):
        """`portico -t` on this configuration: (exit code, stdout + stderr)."""
        r = subprocess.run([BIN, "-t", "-c", self.config_path], capture_output=True, timeout=30, cwd=self.workdir)
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")

    def start(self, wait=True):
        self.proc = subprocess.Popen([BIN, "-c", self.config_path] + self.extra_args, cwd=self.workdir,
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        """Until the gateway's and the control thread's listeners accept connections."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("portico exited with %s:\n%s" % (self.proc.returncode, self.exit_output()))
            try:
                for port in [self.port] + self.control_ports():
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        pass
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("portico did not start listening" + self.start_failure_detail())

    def exit_output(self):
        """What a process that exited during its start printed."""
        out, err = self.proc.communicate()
        return out.decode() + err.decode()

    def start_failure_detail(self):
        return ""

    def control_ports(self):
        """The control thread's own listeners (management, metrics, portal): they open after the gateway's."""
        cfg = self.config if isinstance(getattr(self, "config", None), dict) else {}
        out = []
        for section in ("management", "metrics", "portal"):
            addr = (cfg.get(section) or {}).get("listen") if isinstance(cfg.get(section), dict) else None
            if isinstance(addr, str) and addr.startswith("127.0.0.1:"):
                out.append(int(addr.rsplit(":", 1)[1]))
        return out

    def send_signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGQUIT):
            self.ended_by = sig  # the test ends the process: its exit is expected
        self.proc.send_signal(sig)

    def reload(self, config=None, wait=0.3):
        if config is not None:
            self.write_config(config)
        before = self.log_text().count("configuration reloaded") + self.log_text().count("reload refused")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            t = self.log_text()
            if t.count("configuration reloaded") + t.count("reload refused") > before:
                time.sleep(wait)  # workers pick the new generation up at their next loop turn
                return "configuration reloaded" in t[-2000:] and "reload refused" not in t.split("reloading")[-1]
            time.sleep(0.02)
        raise RuntimeError("reload was not logged")

    def stop(self, sig=signal.SIGINT, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.ended_by = sig
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return self.proc.returncode

    def log_text(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def access_entries(self, wait_for=0, timeout=5.0):
        """Parsed access-log lines; waits until at least `wait_for` exist."""
        deadline = time.time() + timeout
        while True:
            try:
                with open(self.access_log) as f:
                    lines = [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                lines = []
            if len(lines) >= wait_for or time.time() > deadline:
                return lines
            time.sleep(0.02)

    def rss_kb(self, field="VmHWM"):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def request(self, method, path, body=None, headers=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            c.close()


@pytest.fixture
def backend():
    b = EchoBackend()
    yield b
    b.close()


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="portico-e2e-") as d:
        yield d


@pytest.fixture
def portico(workdir):
    """Factory: portico(config_dict) -> started Portico; stopped at teardown."""
    started = []

    def make(config, start=True, **kw):
        p = Portico(workdir, config, **kw)
        started.append(p)
        if start:
            p.start()
        return p
    yield make
    problems = []
    for p in started:
        if p.proc is None:
            continue
        # every gateway a test started ends as it should: stopped at the end
        # (SIGINT: exit 0), or by the test's own signal -- never on its own
        running = p.proc.poll() is None
        try:
            rc = p.stop()
        except subprocess.TimeoutExpired:
            problems.append("portico did not stop within 15 s of SIGINT")
            rc = None
        if running and rc not in (0, None):
            problems.append("portico exited %s on SIGINT" % rc)
        elif not running and p.ended_by is None and rc != 0:
            problems.append("portico exited %s by itself during the test" % rc)
        elif not running and p.ended_by in (signal.SIGINT, signal.SIGTERM) and rc != 0:
            problems.append("portico exited %s after the test's %s" % (rc, signal.Signals(p.ended_by).name))
        if p.proc is not None:
            try:
                err = p.proc.stderr.read().decode(errors="replace") if p.proc.stderr else ""
            except ValueError:  # already read by wait_ready after a failed start
                err = ""
            # sanitizer reports fail the test that caused them
            assert "ERROR: AddressSanitizer" not in err and "runtime error:" not in err, err
            assert "ERROR: LeakSanitizer" not in err, err
            assert "ERROR: AddressSanitizer" not in p.log_text()
            if problems:  # what the gateway said last, to tell why it ended
                problems.append("stderr: " + err[-2000:])
                problems.append("log: " + p.log_text()[-2000:])
    assert not problems, problems


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


@pytest.fixture(autouse=True)
def _sanitizer_scan_of_portico_runs(monkeypatch):
    """Every `portico` a test runs through subprocess.run (portico -t, the CLI)
    is scanned for sanitizer reports, whatever exit code the test expects: an
    `rc != 0` check would otherwise accept a sanitizer abort."""
    real_run = subprocess.run
    reports = []

    def run(args, *a, **kw):
        r = real_run(args, *a, **kw)
        argv0 = args[0] if isinstance(args, (list, tuple)) and args else args
        if isinstance(argv0, str) and os.path.basename(argv0) == "portico":
            for stream in (r.stdout, r.stderr):
                text = stream.decode(errors="replace") if isinstance(stream, bytes) else (stream or "")
                if any(mark in text for mark in SANITIZER_MARKS):
                    reports.append(text[-4000:])
        return r
    monkeypatch.setattr(subprocess, "run", run)
    yield
    assert not reports, reports[0]


# ------------------------------------------------------------- waiting

def wait_for(predicate, timeout=5.0, what="the condition", step=0.01):
    """Polls `predicate` until it returns something true, and returns that.
    Fails the test with "timed out ... waiting for <what>" after `timeout` s.
    For something that must happen: the deadline only bounds a failure, a
    passing test never waits longer than the event takes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(step)


def assert_stays(predicate, for_seconds, what="the condition", step=0.01):
    """`predicate` holds now and for the next `for_seconds` s.  Only for an
    absence that no later event can show (the caller says why): where one
    can, send a marker that would arrive after the forbidden event instead.
    A slow machine makes this check less sensitive, never flaky."""
    deadline = time.monotonic() + for_seconds
    while True:
        assert predicate(), "%s stopped holding" % what
        if time.monotonic() >= deadline:
            return
        time.sleep(step)


def _tcp4_sockets():
    """{(local port, remote port): (state, tx_queue, rx_queue, inode)} for the IPv4 TCP sockets on 127.0.0.1."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            (lip, lport), (rip, rport) = (a.split(":") for a in parts[1:3])
            if lip != "0100007F" or rip != "0100007F":
                continue
            tx, rx = (int(n, 16) for n in parts[4].split(":"))
            out[(int(lport, 16), int(rport, 16))] = (parts[3], tx, rx, parts[9])
    return out


def peer_has_read(pid, sock):
    """True once process `pid` has accepted the connection of the client
    socket `sock` (127.0.0.1) and read every byte sent on it so far: its end
    of the connection is one of its descriptors, nothing sent is still
    unacknowledged, and nothing waits in its receive queue."""
    here, there = sock.getsockname()[1], sock.getpeername()[1]
    table = _tcp4_sockets()
    mine, theirs = table.get((here, there)), table.get((there, here))
    if mine is None or theirs is None or mine[1] or theirs[2]:
        return False
    target = "socket:[%s]" % theirs[3]
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                return True
        except OSError:
            continue
    return False


# ------------------------------------------------- refusals and the backend

CALL_MARK = "X-Call-Mark"
_WATCHED_BACKENDS = []


@pytest.fixture
def refusals_leave_the_backend_alone(request):
    """Used by a module (pytestmark) whose calls carry CALL_MARK: the test's
    `backend` is watched, and check_call_mark() looks for a call in it."""
    if "backend" in request.fixturenames:
        _WATCHED_BACKENDS.append(request.getfixturevalue("backend"))
    yield
    _WATCHED_BACKENDS.clear()


def new_call_mark():
    return uuid.uuid4().hex


def check_call_mark(mark, status, accepted_must_arrive=True):
    """A refused call (4xx) never reached the watched backend; an accepted
    one (200) reached it once (when accepted_must_arrive)."""
    for b in _WATCHED_BACKENDS:
        with b.lock:
            seen = [q for q in b.requests if q.header(CALL_MARK) == mark]
        if 400 <= status < 500:
            assert not seen, "a refused call (%d) reached the backend" % status
        elif status == 200 and accepted_must_arrive:
            assert len(seen) == 1, "an accepted call never reached the backend"


def basic_config(backend_url, port=None, **extra):
    """One open API 'echo' at /echo with the three operations of the README."""
    cfg = {
        "listen": ["127.0.0.1:%d" % (port or free_port())],
        "workers": 1,
        "apis": [{
            "id": "echo",
            "path": "echo",
            "serviceUrl": backend_url + "/base",
            "subscriptionRequired": False,
            "operations": [
                {"id": "get-item", "method": "GET", "urlTemplate": "/items/{id}"},
                {"id": "create-item", "method": "POST", "urlTemplate": "/items"},
                {"id": "anything", "method": "*", "urlTemplate": "/*"},
            ],
        }],
    }
    cfg.update(extra)
    return cfg


def raw_exchange(port, data, timeout=3.0, read_all=True, host="127.0.0.1"):
    """Sends raw bytes and returns everything received until close or timeout."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        out = bytearray()
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
            if not read_all:
                break
        return bytes(out)
    finally:
        s.close()


def parse_responses(data):
    """Splits raw bytes into [(status, headers dict lowercased, body)] (Content-Length or chunked)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode("latin1")
        if "content-length" in headers:
            n = int(headers["content-length"])
            body, data = rest[:n], rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = bytearray()
            while True:
                line, _, rest = rest.partition(b"\r\n")
                size = int(line, 16)
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            data = rest
            body = bytes(body)
        else:
            body, data = rest, b""
        out.append((status, headers, body))
    return out
