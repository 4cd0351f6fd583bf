"""TLS helpers for the end-to-end tests.

- Pki: a throw-away certificate authority (and a second, untrusted one) made
  with the openssl CLI, issuing leaf certificates with the names a test needs.
- TLSEchoBackend: backends.EchoBackend behind TLS (Python `ssl`), recording
  the SNI name each connection asked for and every failed handshake.
- Small client helpers: a TLS client context trusting the test CA, and a
  reader for one HTTP/1.1 response from a buffered stream.
"""

import os
import socket
import ssl
import subprocess
import threading

from backends import EchoBackend, _Handler, _Server


def _openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s%s" % (" ".join(args), r.stdout.decode(), r.stderr.decode()))
    return r


def _newkey_args(kind):
    if kind == "rsa":
        return ["-newkey", "rsa:2048"]
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]


class Pki:
    """Certificates in `directory`: self.ca (trusted test CA), self.other_ca
    (a CA nobody trusts) and leaves made by leaf(); all paths are absolute."""

    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.ca, self.ca_key = self._make_ca("ca", "Portico Test CA")
        self.other_ca, self.other_ca_key = self._make_ca("other-ca", "Untrusted Test CA")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _make_ca(self, name, cn):
        key, csr, pem, ext = (self.path(name + s) for s in (".key", ".csr", ".pem", ".ext"))
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                    "subjectKeyIdentifier=hash\n")
        _openssl("req", "-new", *_newkey_args("ec"), "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn,
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", csr, "-signkey", key, "-days", "30", "-extfile", ext, "-out", pem,
                 cwd=self.dir)
        return pem, key

    def leaf(self, name, cn, sans=(), issuer="ca", kind="ec", eku="serverAuth", days=30):
        """Issues `name`.pem/.key with CN `cn` and subjectAltName entries
        `sans` (e.g. "DNS:localhost", "IP:127.0.0.1"); no SAN extension at all
        when `sans` is empty.  Returns (certificate path, key path)."""
        ca, ca_key = (self.ca, self.ca_key) if issuer == "ca" else (self.other_ca, self.other_ca_key)
        key, csr, pem, ext = (self.path(name + s) for s in (".key", ".csr", ".pem", ".ext"))
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=" + eku, "subjectKeyIdentifier=hash",
                 "authorityKeyIdentifier=keyid,issuer"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        _openssl("req", "-new", *_newkey_args(kind), "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn,
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", str(days),
                 "-extfile", ext, "-out", pem, cwd=self.dir)
        return pem, key

    def pkcs12(self, name, cert, key, password, iterations=None):
        """`name`.p12 holding cert, its key and the CA, sealed with password (with `iterations` of key
        derivation when given); returns its bytes."""
        out = self.path(name + ".p12")
        extra = ["-iter", str(iterations)] if iterations else []
        _openssl("pkcs12", "-export", "-in", cert, "-inkey", key, "-certfile", self.ca, "-passout",
                 "pass:" + password, "-out", out, *extra, cwd=self.dir)
        with open(out, "rb") as f:
            return f.read()

    def _ca_db(self, name, issuer):
        """A directory with the database `openssl ca` keeps for the CA (`ca` or `other`): (its
        configuration file, CA certificate, CA key)."""
        ca, ca_key = (self.ca, self.ca_key) if issuer == "ca" else (self.other_ca, self.other_ca_key)
        d = self.path("db-%s-%s" % (issuer, name))
        os.makedirs(d, exist_ok=True)
        conf, index = os.path.join(d, "ca.cnf"), os.path.join(d, "index.txt")
        open(index, "w").close()
        for f, v in (("crlnumber", "01"), ("serial", "1000")):
            with open(os.path.join(d, f), "w") as fh:
                fh.write(v + "\n")
        with open(conf, "w") as f:
            f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ncrlnumber = %s/crlnumber\nserial = %s/serial\n"
                    "new_certs_dir = %s\ndefault_md = sha256\ndefault_crl_days = 30\npolicy = p\n"
                    "[p]\ncommonName = supplied\n" % (index, d, d, d))
        return conf, ca, ca_key

    def crl(self, revoked=(), issuer="ca"):
        """A PEM revocation list of the CA (`ca` or `other`) listing the certificates at the paths
        `revoked`; returns its text."""
        conf, ca, ca_key = self._ca_db("crl", issuer)
        d = os.path.dirname(conf)
        for r in revoked:
            _openssl("ca", "-config", conf, "-keyfile", ca_key, "-cert", ca, "-revoke", r, cwd=d)
        out = os.path.join(d, "crl.pem")
        _openssl("ca", "-config", conf, "-keyfile", ca_key, "-cert", ca, "-gencrl", "-out", out, cwd=d)
        with open(out) as f:
            return f.read()

    def expired_leaf(self, name, cn):
        """A certificate of the test CA valid only in January 2020 (`openssl ca` takes dates);
        returns (certificate path, key path)."""
        conf, ca, ca_key = self._ca_db(name, "ca")
        key, csr, pem = (self.path(name + s) for s in (".key", ".csr", ".pem"))
        _openssl("req", "-new", *_newkey_args("ec"), "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn,
                 cwd=self.dir)
        _openssl("ca", "-batch", "-notext", "-config", conf, "-keyfile", ca_key, "-cert", ca, "-in", csr, "-out", pem,
                 "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", cwd=os.path.dirname(conf))
        return pem, key

def client_context(ca=None, check_hostname=True):
    """A TLS client context trusting only `ca` (verification on)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca:
        ctx.load_verify_locations(cafile=ca)
    return ctx


def tls_connect(port, ca, server_hostname="localhost", check_hostname=True, timeout=10.0, host="127.0.0.1"):
    """Connects to host:port, completes the TLS handshake and returns the SSLSocket."""
    ctx = client_context(ca, check_hostname=check_hostname)
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def peer_names(sslsock):
    """(subject CN, [DNS subjectAltNames]) of the verified peer certificate."""
    cert = sslsock.getpeercert()
    cn = None
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v
    dns = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    return cn, dns


def read_http_response(rfile, head_only=False):
    """Reads one HTTP/1.1 response from a buffered binary stream:
    (status, {lower-case name: value}, body).  Bodies framed by
    Content-Length or chunked; without framing, read until close."""
    line = rfile.readline(65536)
    if not line:
        raise EOFError("connection closed before a response")
    parts = line.split(b" ", 2)
    status = int(parts[1])
    headers = {}
    for _ in range(200):
        line = rfile.readline(65536)
        if not line:
            raise EOFError("connection closed in the response head")
        if line in (b"\r\n", b"\n"):
            break
        k, _, v = line.partition(b":")
        name = k.strip().lower().decode("latin1")
        value = v.strip().decode("latin1")
        headers[name] = headers[name] + ", " + value if name in headers else value
    else:
        raise AssertionError("too many header lines")
    if head_only or status in (101, 204, 304) or 100 <= status < 200:
        return status, headers, b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        for _ in range(1 << 20):
            size = int(rfile.readline(65536).split(b";")[0], 16)
            if size == 0:
                for _ in range(200):
                    if rfile.readline(65536) in (b"\r\n", b"\n", b""):
                        break
                break
            data = rfile.read(size)
            if len(data) != size:
                raise EOFError("connection closed in a chunk")
            body += data
            rfile.readline(65536)
        return status, headers, bytes(body)
    if "content-length" in headers:
        n = int(headers["content-length"])
        data = rfile.read(n)
        if len(data) != n:
            raise EOFError("connection closed in the body (%d of %d bytes)" % (len(data), n))
        return status, headers, data
    return status, headers, rfile.read()


class _TLSHandler(_Handler):
    def setup(self):
        # the handshake runs in the connection's own thread, not the accept loop
        self.request.settimeout(15)
        self.request.do_handshake()
        self.request.settimeout(None)
        cert = self.request.getpeercert()
        with self.server.owner.lock:
            self.server.owner.handshakes += 1
            if cert:
                cn = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
                self.server.owner.client_cns.append(cn[0] if cn else "")
        super().setup()


class _TLSServer(_Server):
    def get_request(self):
        sock, addr = super().get_request()
        return self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        import sys
        exc = sys.exc_info()[1]
        with self.owner.lock:
            self.owner.tls_errors.append(repr(exc))

    def shutdown_request(self, request):
        try:
            request.close()
        except OSError:
            pass


class TLSEchoBackend(EchoBackend):
    """EchoBackend speaking HTTPS with certificate `cert`/`key`.

    `sni` lists the server name each TLS connection asked for (None when
    the client sent no SNI), `handshakes` counts completed handshakes and
    `tls_errors` records failed ones."""

    def __init__(self, cert, key, sink_all=False, host="127.0.0.1", client_ca=None):
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = []
        self.errors = []
        self.sni = []
        self.tls_errors = []
        self.handshakes = 0
        self.sink_all = sink_all
        self.client_cns = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_ca:  # client certificates required, from this CA
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=client_ca)

        def on_sni(sslobj, name, context):
            with self.lock:
                self.sni.append(name)
            return None
        ctx.sni_callback = on_sni
        self.server = _TLSServer((host, 0), _TLSHandler)
        self.server.ssl_ctx = ctx
        self.server.owner = self
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "https://localhost:%d" % self.port

    @property
    def ip_url(self):
        return "https://127.0.0.1:%d" % self.port
