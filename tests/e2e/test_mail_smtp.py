"""Mail over SMTP through libcurl (http/pt_mail.c) against a real SMTP server
on loopback (smtp_helpers.SmtpServer): STARTTLS with a generated
certificate, implicit TLS, AUTH PLAIN and LOGIN, and the refusals that keep
credentials and messages safe (no STARTTLS offered, an untrusted
certificate, a wrong password, credentials without TLS, a recipient or a
template value trying to add a recipient or a header).

Messages are sent by tests/unit/mail_send (one pt_mail_send call), built
beside the portico binary; each test checks what the server received.
"""

import email
import email.policy
import http.client
import os
import socket
import subprocess
import time

import pytest

from conftest import basic_config, free_port
from portal_helpers import Client
from smtp_helpers import SmtpServer
from tls_helpers import Pki

BUILD = os.path.dirname(os.environ.get("PORTICO_BIN", "./portico"))
SENDER = os.path.join(BUILD, "tests", "unit", "mail_send")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = Pki(str(tmp_path_factory.mktemp("smtp-pki")))
    cert, key = p.leaf("smtp", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"))
    p.smtp_cert, p.smtp_key = cert, key
    return p


@pytest.fixture
def servers():
    made = []

    def make(pki=None, **kw):
        s = SmtpServer(cert=pki.smtp_cert if pki else None, key=pki.smtp_key if pki else None, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def send(url, to="dev@example.test", subject="Hello", body="Body text\n", user="mailer", password="s3cret-pass",
         ca=None, starttls=True, frm="Portico Portal <portal@example.test>", template=None):
    if not os.path.exists(SENDER):
        pytest.skip("tests/unit/mail_send is not built (configure without cmocka?)")
    args = [SENDER, "-f", frm]
    if user:
        args += ["-u", user, "-p", password]
    if ca:
        args += ["-c", ca]
    if not starttls:
        args.append("-n")
    if template:
        args += ["-t", template]
    args += [url, to, subject, body]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stderr


def parse(msg):
    return email.message_from_bytes(msg["data"], policy=email.policy.default)


def text_of(parsed):
    return parsed.get_content().replace("\r\n", "\n")


def test_starttls_auth_plain_delivers(pki, servers):
    s = servers(pki, mechanisms=("PLAIN",))
    rc, err = send(s.url, subject="Grüße from the portal", body="Hello Ada,\nthe link: http://x/confirm?token=abc\n",
                   ca=pki.ca)
    assert rc == 0, err
    assert len(s.messages) == 1
    m = s.messages[0]
    assert m["tls"] and m["user"] == "mailer"
    assert m["from"] == "<portal@example.test>" and m["to"] == ["<dev@example.test>"]
    parsed = parse(m)
    assert parsed["Subject"] == "Grüße from the portal"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["dev@example.test"]
    assert parsed["From"].addresses[0].display_name == "Portico Portal"
    assert parsed["From"].addresses[0].addr_spec == "portal@example.test"
    assert parsed["Message-ID"] and parsed["Date"] and parsed["MIME-Version"] == "1.0"
    assert parsed.get_content_type() == "text/plain" and parsed.get_content_charset() == "utf-8"
    assert text_of(parsed) == "Hello Ada,\nthe link: http://x/confirm?token=abc\n"
    verbs = s.verbs()
    # encryption came first: nothing but EHLO and STARTTLS went in clear text
    assert [c for c, tls in s.commands if not tls] == ["EHLO", "STARTTLS"]
    assert verbs.index("STARTTLS") < verbs.index("AUTH") < verbs.index("MAIL")


def test_auth_login(pki, servers):
    s = servers(pki, mechanisms=("LOGIN",))
    rc, err = send(s.url, ca=pki.ca)
    assert rc == 0, err
    assert len(s.messages) == 1 and s.messages[0]["user"] == "mailer"


def test_implicit_tls(pki, servers):
    s = servers(pki, implicit_tls=True)
    rc, err = send(s.url, ca=pki.ca)
    assert rc == 0, err
    assert len(s.messages) == 1 and s.messages[0]["tls"]
    assert all(tls for _, tls in s.commands)


def test_server_without_starttls_gets_nothing(servers, pki):
    # a server (or a man in the middle) that does not offer STARTTLS: no
    # credentials and no message leave in clear text
    s = servers(None, require_auth=False)
    rc, err = send(s.url, ca=pki.ca)
    assert rc != 0
    assert "smtp:" in err
    assert s.messages == []
    assert "AUTH" not in s.verbs() and "MAIL" not in s.verbs()


def test_untrusted_certificate_refused(pki, servers):
    s = servers(pki)
    rc, err = send(s.url, ca=pki.other_ca)
    assert rc != 0
    assert "SSL" in err or "certificate" in err.lower()
    assert s.messages == []
    assert "AUTH" not in s.verbs()


def test_wrong_password(pki, servers):
    s = servers(pki)
    rc, err = send(s.url, password="wrong", ca=pki.ca)
    assert rc != 0
    assert "smtp:" in err
    assert s.messages == []


def test_no_credentials_in_clear_text(servers):
    s = servers(None, require_auth=False)
    rc, err = send(s.url, starttls=False)
    assert rc != 0
    assert "without TLS" in err
    assert s.commands == [] and s.messages == []


def test_plain_relay_without_auth(servers):
    # starttls off and no credentials: a local relay on loopback
    s = servers(None, require_auth=False)
    rc, err = send(s.url, user=None, starttls=False)
    assert rc == 0, err
    assert len(s.messages) == 1 and not s.messages[0]["tls"]


def test_recipient_injection_refused(pki, servers):
    s = servers(pki)
    for to in ("dev@example.test>\r\nRCPT TO:<evil@attacker.test", "dev@example.test, evil@attacker.test",
               "dev@example.test\nBcc: evil@attacker.test"):
        rc, err = send(s.url, to=to, ca=pki.ca)
        assert rc != 0 and "not a mail address" in err
    assert s.commands == [] and s.messages == []


def test_template_values_cannot_add_headers(pki, servers):
    s = servers(pki)
    # mail_send -t: SUBJECT fills {{firstName}}, BODY fills {{link}}
    rc, err = send(s.url, template="confirm-signup", subject="Ada\r\nBcc: evil@attacker.test",
                   body="http://127.0.0.1/confirm?token=T0K", ca=pki.ca)
    assert rc == 0, err
    m = s.messages[0]
    assert m["to"] == ["<dev@example.test>"]
    parsed = parse(m)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Confirm your account on Test portal"
    text = text_of(parsed)
    assert "http://127.0.0.1/confirm?token=T0K" in text
    assert "Hello Ada\nBcc: evil@attacker.test," in text  # in the body, where it is only text


def test_portal_sends_through_smtp(pki, servers, backend, portico, workdir):
    """The whole path: portal.mail.smtp in the file (STARTTLS, AUTH, caFile), a password reset on the
    portal, the mail at the SMTP server with the portal's link; nothing in the outbox."""
    s = servers(pki, mechanisms=("PLAIN", "LOGIN"))
    cfg = basic_config(backend.url)
    cfg["data"] = os.path.join(workdir, "data")
    cfg["users"] = [{"id": "dev", "email": "dev@example.test", "firstName": "Dev", "lastName": "Eloper",
                     "groups": ["developers"]}]
    cfg["portal"] = {"listen": "127.0.0.1:%d" % free_port(),
                     "mail": {"from": "Acme Portal <portal@example.test>",
                              "outbox": os.path.join(workdir, "outbox"),
                              "smtp": {"url": s.url, "username": "mailer", "password": "s3cret-pass",
                                       "caFile": pki.ca}}}
    p = portico(cfg)
    status, _, _ = Client(p).post("/reset-password", {"email": "dev@example.test"}, page_path="/reset-password")
    assert status in (200, 303)
    deadline = time.time() + 10
    while not s.messages and time.time() < deadline:
        time.sleep(0.05)
    assert len(s.messages) == 1
    m = s.messages[0]
    assert m["tls"] and m["user"] == "mailer" and m["to"] == ["<dev@example.test>"]
    parsed = parse(m)
    assert parsed["From"].addresses[0].addr_spec == "portal@example.test"
    assert p.portal_url + "/reset-password/confirm?token=" in text_of(parsed)
    assert not os.path.exists(os.path.join(workdir, "outbox")) or not os.listdir(os.path.join(workdir, "outbox"))


def test_a_silent_smtp_server_does_not_stall_the_portal(backend, portico, workdir):
    """An SMTP server that accepts and never answers: the portal's answers do not wait for it (the
    delivery runs on the mail thread), and the management API keeps answering meanwhile."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held = []
    try:
        cfg = basic_config(backend.url)
        cfg["data"] = os.path.join(workdir, "data")
        cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
        cfg["users"] = [{"id": "dev", "email": "dev@example.test", "firstName": "Dev", "lastName": "Eloper",
                         "groups": ["developers"]}]
        cfg["portal"] = {"listen": "127.0.0.1:%d" % free_port(),
                         "mail": {"smtp": {"url": "smtp://127.0.0.1:%d" % silent.getsockname()[1]}}}
        p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": "t0ken"})
        c = Client(p)
        c.get("/reset-password")
        token = c.csrf()
        for _ in range(3):
            t0 = time.time()
            status, _, _ = c.post("/reset-password", {"email": "dev@example.test"}, csrf=token)
            assert status in (200, 303) and time.time() - t0 < 3, time.time() - t0
        silent.settimeout(5)
        held.append(silent.accept()[0])  # the mail thread did connect, and waits for a greeting
        t0 = time.time()
        mport = int(cfg["management"]["listen"].rsplit(":", 1)[1])
        mc = http.client.HTTPConnection("127.0.0.1", mport, timeout=30)
        try:
            mc.request("GET", "/management/portal/site", headers={"Authorization": "Bearer t0ken"})
            status = mc.getresponse().status
        finally:
            mc.close()
        assert status == 200 and time.time() - t0 < 2
        assert c.get("/")[0] == 200
    finally:
        for h in held:
            h.close()
        silent.close()
