"""A small SMTP server on loopback for the mail tests (RFC 5321 subset).

SmtpServer speaks EHLO/HELO, STARTTLS (Python `ssl`, with a test
certificate), implicit TLS (smtps), AUTH PLAIN and AUTH LOGIN (offered only
once the connection is encrypted, as real servers do), MAIL, RCPT, DATA
(dot-unstuffed), RSET, NOOP and QUIT.  It records every command it was sent
(`commands`, with whether the connection was encrypted then) and every
message it accepted (`messages`), so a test checks what reached the server,
not only what the client said.
"""

import base64
import socket
import ssl
import threading


class SmtpServer:
    def __init__(self, cert=None, key=None, implicit_tls=False, offer_starttls=True, mechanisms=("PLAIN", "LOGIN"),
                 users=None, require_auth=True):
        self.cert, self.key = cert, key
        self.implicit_tls = implicit_tls
        self.offer_starttls = offer_starttls and cert is not None
        self.mechanisms = mechanisms
        self.users = users if users is not None else {"mailer": "s3cret-pass"}
        self.require_auth = require_auth
        self.commands = []  # (verb, encrypted)
        self.messages = []  # {"from", "to", "data", "tls", "user"}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("smtps" if self.implicit_tls else "smtp", self.port)

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    def verbs(self):
        with self.lock:
            return [c for c, _ in self.commands]

    def _ctx(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        try:
            if self.implicit_tls:
                conn = self._ctx().wrap_socket(conn, server_side=True)
            self._session(conn, self.implicit_tls)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _session(self, conn, tls):
        rf = conn.makefile("rb")

        def say(line):
            conn.sendall(line.encode() + b"\r\n")

        def read():
            line = rf.readline(4096)
            if not line:
                raise ValueError("closed")
            return line.rstrip(b"\r\n").decode("utf-8", "replace")

        say("220 localhost ESMTP portico-test")
        user, mail_from, rcpts = None, None, []
        for _ in range(1000):
            line = read()
            verb = line.split(" ", 1)[0].upper()
            with self.lock:
                self.commands.append((verb, tls))
            arg = line[len(verb):].strip()
            if verb in ("EHLO", "HELO"):
                caps = ["localhost"]
                if self.offer_starttls and not tls:
                    caps.append("STARTTLS")
                if tls and self.mechanisms:
                    caps.append("AUTH " + " ".join(self.mechanisms))
                caps.append("8BITMIME")
                for c in caps[:-1]:
                    say("250-" + c)
                say("250 " + caps[-1])
            elif verb == "STARTTLS":
                if not self.offer_starttls or tls:
                    say("502 5.5.1 not offered")
                    continue
                say("220 2.0.0 ready")
                conn = self._ctx().wrap_socket(conn, server_side=True)
                rf = conn.makefile("rb")
                tls, user, mail_from, rcpts = True, None, None, []
            elif verb == "AUTH":
                parts = arg.split()
                mech = parts[0].upper() if parts else ""
                if not tls or mech not in self.mechanisms:
                    say("504 5.5.4 mechanism not available")
                    continue
                if mech == "PLAIN":
                    resp = parts[1] if len(parts) > 1 else None
                    if resp is None:
                        say("334 ")
                        resp = read()
                    try:
                        _, u, p = base64.b64decode(resp).decode().split("\0")
                    except ValueError:
                        say("501 5.5.2 bad response")
                        continue
                else:
                    if len(parts) > 1:
                        u = base64.b64decode(parts[1]).decode()
                    else:
                        say("334 " + base64.b64encode(b"Username:").decode())
                        u = base64.b64decode(read()).decode()
                    say("334 " + base64.b64encode(b"Password:").decode())
                    p = base64.b64decode(read()).decode()
                if self.users.get(u) == p:
                    user = u
                    say("235 2.7.0 authenticated")
                else:
                    say("535 5.7.8 authentication failed")
            elif verb == "MAIL":
                if self.require_auth and user is None:
                    say("530 5.7.0 authentication required")
                    continue
                mail_from, rcpts = arg.split(":", 1)[1].strip(), []
                say("250 2.1.0 ok")
            elif verb == "RCPT":
                if mail_from is None:
                    say("503 5.5.1 MAIL first")
                    continue
                rcpts.append(arg.split(":", 1)[1].strip())
                say("250 2.1.5 ok")
            elif verb == "DATA":
                if not rcpts:
                    say("503 5.5.1 RCPT first")
                    continue
                say("354 end with .")
                data = []
                for _ in range(100000):
                    raw = rf.readline(10000)
                    if not raw:
                        raise ValueError("closed in DATA")
                    if raw == b".\r\n":
                        break
                    data.append(raw[1:] if raw.startswith(b"..") else raw)
                with self.lock:
                    self.messages.append({"from": mail_from, "to": list(rcpts), "data": b"".join(data),
                                          "tls": tls, "user": user})
                mail_from, rcpts = None, []
                say("250 2.0.0 queued")
            elif verb == "RSET":
                mail_from, rcpts = None, []
                say("250 2.0.0 ok")
            elif verb == "NOOP":
                say("250 2.0.0 ok")
            elif verb == "QUIT":
                say("221 2.0.0 bye")
                return
            else:
                say("502 5.5.2 unknown command")
