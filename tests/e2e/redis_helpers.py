"""A real Redis for the end-to-end tests: Debian's redis-server, started on a
free loopback port with nothing saved to disk, stopped by its PID.

    with RedisServer(password="s3cret") as r:   # or r = RedisServer(); r.start() ... r.stop()
        r.url                     # redis://:s3cret@127.0.0.1:PORT/0 for cache.redis
        r.command("GET", "portico:v:k")   # a small RESP client of the test's own
        r.kill()                  # SIGKILL, as a crash; r.start() again on the same port

The `redis_server` fixture is a factory of started servers, all stopped at
teardown.  Tests that need Redis are skipped when redis-server is missing
(scripts/deps installs it).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

needs_redis = pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server is not installed")


class RedisError(Exception):
    """An error reply (-ERR ...)."""


def _read_reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by redis")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError("unexpected reply %r" % line)


def resp_command(port, *args, password=None, username=None, timeout=3.0, tls=None):
    """One command on a new connection; returns the reply (bytes for bulks)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls is not None:
        s = tls.wrap_socket(s, server_hostname="localhost")
    try:
        f = s.makefile("rb")
        cmds = []
        if password is not None:
            cmds.append(("AUTH", username, password) if username else ("AUTH", password))
        cmds.append(args)
        for c in cmds:
            parts = [a if isinstance(a, bytes) else str(a).encode() for a in c]
            s.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        reply = None
        for _ in cmds:
            reply = _read_reply(f)
        return reply
    finally:
        s.close()


class RedisServer:
    """redis-server on 127.0.0.1:port (a free one by default), no persistence."""

    def __init__(self, password=None, port=None, username=None, tls=None, extra=()):
        self.password = password
        self.username = username
        self.port = port or free_port()
        self.tls = tls  # (certificate, key, ca) for --tls-port: the plain port is closed then
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix="portico-redis-")
        self.proc = None
        self.log = os.path.join(self.dir, "redis.log")

    @property
    def url(self):
        auth = ""
        if self.password is not None:
            auth = "%s:%s@" % (self.username or "", self.password)
        return "%s://%s127.0.0.1:%d/0" % ("rediss" if self.tls else "redis", auth, self.port)

    def start(self, timeout=10.0):
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--logfile", self.log, "--daemonize", "no", "--protected-mode", "no"]
        if self.tls:
            cert, key, ca = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key,
                     "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password is not None and not self.username:
            args += ["--requirepass", self.password]
        if self.username:
            args += ["--user", "default", "off", "--user", self.username, "on", ">" + self.password, "~*", "+@all"]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s: %s" % (self.proc.returncode,
                                                                       self.proc.stderr.read().decode()))
            try:
                if self.ping():
                    return self
            except (OSError, ConnectionError, RedisError):
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING on port %d" % self.port)

    def _tls_context(self):
        if not self.tls:
            return None
        import ssl
        ctx = ssl.create_default_context(cafile=self.tls[2])
        return ctx

    def command(self, *args):
        return resp_command(self.port, *args, password=self.password, username=self.username,
                            tls=self._tls_context())

    def ping(self):
        return self.command("PING") == "PONG"

    def pause(self, seconds):
        """The server stops answering commands (CLIENT PAUSE), connections stay open."""
        return self.command("CLIENT", "PAUSE", int(seconds * 1000))

    def kill(self):
        """SIGKILL: a crash; the port is free again once it is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


@pytest.fixture
def redis_server():
    """Factory: redis_server(password=None, ...) -> a started RedisServer; all stopped at teardown."""
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    started = []

    def make(**kw):
        r = RedisServer(**kw)
        started.append(r)
        return r.start()
    yield make
    for r in started:
        r.cleanup()
