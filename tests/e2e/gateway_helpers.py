"""Self-hosted gateways from the outside (issue 14; docs/gateways.md): a real
control plane and real gateway nodes, all `portico` processes on loopback.

    def test_x(gw):                       # the fixture: everything stopped by PID at teardown
        cp = gw.control_plane()           # management listener, data folder in tmp, admin token
        cp.add_api("echo")                # an API at /echo on conftest's EchoBackend (over REST)
        token = gw.gateway("edge", apis=["echo"])   # create, assign, generate a token
        nodes = gw.nodes(3, token)        # three nodes (file-based), each ready
        node = gw.node(token, env_only=True)   # the container case: no file, environment only
        cp.kill(); cp.start()             # SIGKILL, and back on the same ports and data

A control plane is the ordinary binary with `management.listen`; a node is
the binary with a `controlPlane:` map in its file (or only environment
variables).  Nodes report readiness on READY_PATH; `Node.wait_ready()` waits
for 200 there (or only for the listener when a node is expected to stay
unready).  The sync protocol's calls (configuration, heartbeat) can be made
by hand with `ControlPlane.sync()` to test the control plane's checks.
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import signal
import ssl
import subprocess
import time

import pytest

from conftest import BIN, Portico, free_port
from mgmt_helpers import TOKEN

LIVE_PATH = "/status-0123456789abcdef"
READY_PATH = "/internal-status-0123456789abcdef"
NOT_READY = {"statusCode": 503, "message": "The gateway has no configuration yet"}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
# environment variables a node reads: never inherited from the test's own environment
NODE_ENV = ("PORTICO_CONTROL_PLANE_URL", "PORTICO_GATEWAY_TOKEN", "PORTICO_CONTROL_PLANE_CA_FILE",
            "PORTICO_CONFIG_BACKUP", "PORTICO_NODE_ID", "PORTICO_ADMIN_TOKEN")


# ------------------------------------------------------------------ tokens

def expiry_stamp(when):
    """The token's expiry field: yyyyMMddHHmm in UTC."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M")


def expiry_iso(days=7, minutes=0):
    """An expiry for generateToken, `days` ahead (whole minutes, UTC)."""
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days, minutes=minutes)
    return t.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(key, gateway_id, stamp):
    """The contract's signature: base64 of HMAC-SHA512(key text, "<id>\\n<stamp>")."""
    mac = hmac.new(key.encode(), ("%s\n%s" % (gateway_id, stamp)).encode(), hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


def make_token(gateway_id, key, when):
    """A token minted by the test itself (with a key from listKeys, or a forged one)."""
    stamp = expiry_stamp(when)
    return "GatewayKey %s&%s&%s" % (gateway_id, stamp, sign(key, gateway_id, stamp))


def token_parts(token):
    """(gateway id, stamp, signature) of a `GatewayKey ...` text."""
    assert token.startswith("GatewayKey "), token
    gid, stamp, sig = token[len("GatewayKey "):].split("&", 2)
    return gid, stamp, sig


# ------------------------------------------------------------ small clients

def http_get(port, path, method="GET", headers=None, timeout=5.0, body=None):
    """(status, headers lower-cased, body bytes), or (None, {}, b"") when the
    connection fails: a node that is down or restarting answers nothing."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    except (OSError, http.client.HTTPException):
        return None, {}, b""
    finally:
        c.close()


def status_of(port, path, headers=None, timeout=5.0):
    return http_get(port, path, headers=headers, timeout=timeout)[0]


def parse_iso(text):
    """ISO 8601 UTC ("...Z", with or without fractions) -> aware datetime."""
    t = text.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(t)


def timed_until(predicate, timeout, what, step=0.005):
    """Seconds until `predicate()` held (polled), or AssertionError after `timeout`."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(step)


# -------------------------------------------------------------- processes

class _Proc(Portico):
    """A portico process of this module: stdout and stderr go to files (a
    node that logs to stderr must never block on a full pipe), and the
    error log is the file plus that stderr."""

    def start(self, wait=True):
        self.stdout_path = os.path.join(self.workdir, "stdout.log")
        self.stderr_path = os.path.join(self.workdir, "stderr.log")
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen(self.argv(), cwd=self.workdir, env=self.env, stdout=out, stderr=err)
        finally:
            out.close()
            err.close()
        self.ended_by = None
        if wait:
            self.wait_ready()
        return self

    def argv(self):
        return [BIN, "-c", self.config_path] + self.extra_args

    def stderr_text(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except (FileNotFoundError, AttributeError):
            return ""

    def log_text(self):
        return Portico.log_text(self) + self.stderr_text()

    def wait_listening(self, timeout=15.0):
        Portico.wait_ready(self, timeout)

    def wait_ready(self, timeout=15.0):
        self.wait_listening(timeout)

    def exit_output(self):
        return self.log_text()[-3000:]

    def start_failure_detail(self):
        return ":\n" + self.log_text()[-3000:]

    def kill(self):
        """SIGKILL, as a crash; waits for the process to be gone."""
        self.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def running(self):
        return self.proc is not None and self.proc.poll() is None


class ControlPlane(_Proc):
    """The control plane: a gateway listener (the `managed` gateway), the
    management API with the admin token, a data folder of its own."""

    def __init__(self, workdir, backend, extra=None, tls=None):
        os.makedirs(workdir, exist_ok=True)
        self.backend = backend
        self.tls = tls  # (certificate, key, CA file) for an HTTPS management listener
        self.mgmt_port = free_port()
        cfg = {
            "listen": ["127.0.0.1:%d" % free_port()],
            "workers": 1,
            "data": os.path.join(workdir, "var"),
            "management": {"listen": "127.0.0.1:%d" % self.mgmt_port},
        }
        if tls:
            cfg["management"]["certificate"], cfg["management"]["key"] = tls[0], tls[1]
        cfg.update(extra or {})
        super().__init__(workdir, cfg)
        for k in NODE_ENV:
            self.env.pop(k, None)
        self.env["PORTICO_ADMIN_TOKEN"] = TOKEN

    @property
    def url(self):
        """What a node's `controlPlane.url` names: the management listener's base."""
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.mgmt_port)

    def control_ports(self):
        return [self.mgmt_port]

    # --- the management API (bearer token) and the sync protocol (GatewayKey)

    def _connection(self, timeout):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[2])
            return http.client.HTTPSConnection("127.0.0.1", self.mgmt_port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.mgmt_port, timeout=timeout)

    def raw(self, method, path, body=None, headers=None, timeout=30.0):
        """(status, headers lower-cased, body bytes) of one call on the management listener."""
        c = self._connection(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def call(self, method, path, body=None, token=None, headers=None):
        """A management call: (status, headers, parsed JSON or text or None)."""
        h = dict(headers or {})
        h["Authorization"] = "Bearer " + (TOKEN if token is None else token)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        path = path if path.startswith("/") else "/management/" + path
        st, hd, text = self.raw(method, path, data, h)
        out = None
        if text:
            try:
                out = json.loads(text)
            except ValueError:
                out = text.decode(errors="replace")
        return st, hd, out

    def ok(self, method, path, body=None, **kw):
        st, _, out = self.call(method, path, body, **kw)
        assert 200 <= st < 300, (method, path, st, out)
        return out

    def sync(self, method, path, token, body=None, headers=None, timeout=70.0):
        """A sync-protocol call with `Authorization: <token>` (the whole
        `GatewayKey ...` text, or anything a test wants to send)."""
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        return self.raw(method, path, data, h, timeout=timeout)

    def configuration(self, gid, token, wait=0, etag=None, node=None, headers=None, timeout=70.0):
        """GET .../configuration: (status, headers, parsed body or None)."""
        q = "wait=%d" % wait + ("&node=%s" % node if node else "")
        h = dict(headers or {})
        if etag is not None:
            h["If-None-Match"] = '"%s"' % etag
        st, hd, data = self.sync("GET", "/management/gateways/%s/configuration?%s" % (gid, q), token, headers=h,
                                 timeout=timeout)
        out = None
        if data and hd.get("content-encoding") != "gzip":
            out = json.loads(data)
        return st, hd, out

    def generation(self, gid, token):
        """The gateway's current generation (from the configuration's ETag)."""
        st, hd, out = self.configuration(gid, token)
        assert st == 200, (st, out)
        assert hd.get("etag") == '"%d"' % out["generation"], (hd.get("etag"), out["generation"])
        return out["generation"]

    # --- entities

    def add_api(self, api_id, path=None, subscription_required=False, policies=None):
        """An API at /<path> on the backend, with one "*" "/*" operation."""
        self.ok("PUT", "apis/" + api_id, {"displayName": api_id, "path": path or api_id,
                                           "serviceUrl": self.backend.url + "/" + api_id,
                                           "subscriptionRequired": subscription_required})
        self.ok("PUT", "apis/%s/operations/all" % api_id, {"method": "*", "urlTemplate": "/*"})
        if policies is not None:
            self.ok("PUT", "apis/%s/policies/policy" % api_id, policies)

    def create_gateway(self, gid, name="loopback", description="a test gateway"):
        return self.ok("PUT", "gateways/" + gid, {"description": description,
                                                  "locationData": {"name": name, "city": "Here"}})

    def assign(self, gid, api_id):
        return self.ok("PUT", "gateways/%s/apis/%s" % (gid, api_id))

    def unassign(self, gid, api_id):
        return self.ok("DELETE", "gateways/%s/apis/%s" % (gid, api_id))

    def token(self, gid, key_type="primary", days=7, minutes=0):
        out = self.ok("POST", "gateways/%s/generateToken" % gid,
                      {"keyType": key_type, "expiry": expiry_iso(days, minutes)})
        assert out["value"].startswith("GatewayKey %s&" % gid), out
        return out["value"]

    def keys(self, gid):
        return self.ok("POST", "gateways/%s/listKeys" % gid)

    def regenerate(self, gid, key_type="primary"):
        st, _, out = self.call("POST", "gateways/%s/regenerateKey" % gid, {"keyType": key_type})
        assert st == 204, (st, out)

    def nodes(self, gid):
        out = self.ok("GET", "gateways/%s/nodes" % gid)
        assert out["count"] == len(out["value"]), out
        return out["value"]


DEFAULT = object()  # "leave the key out of the node's file": the contract's default applies


class Node(_Proc):
    """A gateway node.  File-based (a `controlPlane:` map) unless `env_only`,
    where the process gets no -c and only environment variables (it listens on
    the built-in 0.0.0.0:8080 then)."""

    def __init__(self, workdir, cp_url, token=None, token_file=None, backup=DEFAULT, node_id=None, heartbeat=1,
                 poll_wait=None, ca_file=None, env_only=False, env=None, extra=None, metrics_port=None,
                 extra_args=()):
        os.makedirs(workdir, exist_ok=True)
        self.env_only = env_only
        self.node_id = node_id
        self.backup_path = (os.path.join(workdir, "data", "config-backup") if backup is DEFAULT else backup)
        if env_only:
            self.workdir = workdir
            self.config_path = os.path.join(workdir, "absent.yaml")
            self.access_log = os.path.join(workdir, "access.log")
            self.error_log = os.path.join(workdir, "error.log")
            self.config = None
            self.proc = None
            self.extra_args = list(extra_args)
            self.ended_by = None
            self._port = 8080
        else:
            cp = {"url": cp_url}
            if token is not None:
                cp["token"] = token
            if token_file is not None:
                cp["tokenFile"] = token_file
            if backup is not DEFAULT:
                cp["backup"] = backup
            if node_id is not None:
                cp["nodeId"] = node_id
            if heartbeat is not None:
                cp["heartbeat"] = heartbeat
            if poll_wait is not None:
                cp["pollWait"] = poll_wait
            if ca_file is not None:
                cp["caFile"] = ca_file
            cfg = {"listen": ["127.0.0.1:%d" % free_port()], "workers": 1, "data": os.path.join(workdir, "data"),
                   "controlPlane": cp}
            if metrics_port:
                cfg["metrics"] = {"listen": "127.0.0.1:%d" % metrics_port, "auth": "none"}
            cfg.update(extra or {})
            super().__init__(workdir, cfg, extra_args=extra_args)
            self._port = None
        self.env = dict(os.environ)
        for k in NODE_ENV:
            self.env.pop(k, None)
        if env_only:
            self.env.update({"PORTICO_CONTROL_PLANE_URL": cp_url, "PORTICO_GATEWAY_TOKEN": token or ""})
            if self.backup_path is not None:
                self.env["PORTICO_CONFIG_BACKUP"] = self.backup_path
            if node_id:
                self.env["PORTICO_NODE_ID"] = node_id
        self.env.update(env or {})
        self.metrics_port = metrics_port

    def argv(self):
        if self.env_only:
            return [BIN] + self.extra_args
        return [BIN, "-c", self.config_path] + self.extra_args

    @property
    def port(self):
        return self._port if self._port else Portico.port.fget(self)

    def control_ports(self):
        return [self.metrics_port] if self.metrics_port else []

    def get(self, path, headers=None, timeout=5.0):
        return http_get(self.port, path, headers=headers, timeout=timeout)

    def status(self, path, headers=None, timeout=5.0):
        return http_get(self.port, path, headers=headers, timeout=timeout)[0]

    def ready(self):
        return self.status(READY_PATH, timeout=2.0) == 200

    def wait_ready(self, timeout=15.0):
        """Listening, then 200 on the readiness path (the first configuration applied)."""
        self.wait_listening(timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ready():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("node on %d not ready:\n%s" % (self.port, self.log_text()[-3000:]))

    def metrics(self):
        """{series text: value} of the node's /metrics (metrics.listen, auth none)."""
        st, _, body = http_get(self.metrics_port, "/metrics")
        assert st == 200, st
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def metric(self, name):
        """The value of the series `name` (any labels), None when absent."""
        for k, v in self.metrics().items():
            if k == name or k.startswith(name + "{"):
                return v
        return None

    def read_backup(self):
        with open(self.backup_path, "rb") as f:
            return f.read()


class GatewayEnv:
    """What the `gw` fixture gives a test: factories of control planes and
    nodes in the test's folder, all stopped by PID at teardown."""

    def __init__(self, workdir, backend):
        self.workdir = workdir
        self.backend = backend
        self.procs = []
        self.cp = None
        self.count = 0

    def _dir(self, kind):
        self.count += 1
        return os.path.join(self.workdir, "%s%d" % (kind, self.count))

    def control_plane(self, apis=("echo",), start=True, **kw):
        cp = ControlPlane(self._dir("cp"), self.backend, **kw)
        self.procs.append(cp)
        if start:
            cp.start()
            for a in apis:
                cp.add_api(a)
        self.cp = cp
        return cp

    def gateway(self, gid, apis=(), cp=None, **kw):
        """Creates gateway `gid`, assigns `apis`, returns a fresh token."""
        cp = cp or self.cp
        cp.create_gateway(gid)
        for a in apis:
            cp.assign(gid, a)
        return cp.token(gid, **kw)

    def node(self, token, cp=None, start=True, wait=True, **kw):
        cp = cp or self.cp
        n = Node(self._dir("node"), cp.url, token=token if "token_file" not in kw else None, **kw)
        self.procs.append(n)
        if start:
            n.start(wait=False)
            if wait:
                n.wait_ready()
            else:
                n.wait_listening()
        return n

    def nodes(self, count, token, **kw):
        """`count` nodes, started together, then each waited for."""
        out = [self.node(token, wait=False, **kw) for _ in range(count)]
        for n in out:
            n.wait_ready()
        return out

    def close(self):
        problems = []
        for p in reversed(self.procs):  # nodes first, the control plane last
            if p.proc is None:
                continue
            running = p.proc.poll() is None
            try:
                rc = p.stop(timeout=20)
            except subprocess.TimeoutExpired:
                problems.append("%s did not stop within 20 s of SIGINT" % p.workdir)
                rc = None
            if running and rc not in (0, None):
                problems.append("%s exited %s on SIGINT" % (p.workdir, rc))
            elif not running and p.ended_by is None and rc != 0:
                problems.append("%s exited %s by itself during the test" % (p.workdir, rc))
            text = p.log_text()
            for mark in SANITIZER_MARKS:
                if mark in text:
                    problems.append("%s: %s" % (p.workdir, text[-3000:]))
            if problems and len(problems) < 4:
                problems.append("log of %s: %s" % (p.workdir, text[-1500:]))
        assert not problems, problems


@pytest.fixture
def gw(workdir, backend):
    env = GatewayEnv(workdir, backend)
    yield env
    env.close()


def all_serve(nodes, path, want=200, headers=None, check=None):
    """True when every node answers `path` with `want` (and `check(headers, body)`)."""
    for n in nodes:
        st, hd, body = n.get(path, headers=headers, timeout=2.0)
        if st != want:
            return False
        if check is not None and not check(hd, body):
            return False
    return True


def propagation(nodes, path, want=200, headers=None, check=None, timeout=5.0, what=None):
    """Seconds from now until every node serves the change (polled)."""
    return timed_until(lambda: all_serve(nodes, path, want, headers, check), timeout,
                       what or "every node to answer %s with %s" % (path, want))
