"""Helpers shared by the developer portal's tests: a small browser (cookie
jar, forms posted with the page's CSRF token, redirects not followed) and
readers of the mail outbox folder."""

import email
import email.policy
import glob
import http.client
import os
import re
import urllib.parse

from conftest import wait_for

PASSWORD = "correct horse battery"


def keep_cookies(jar, set_cookies):
    """Applies Set-Cookie headers to `jar` (a dict): a max-age=0 or empty value removes the cookie."""
    for sc in set_cookies:
        name, _, rest = sc.partition("=")
        value = rest.split(";", 1)[0]
        if "max-age=0" in sc.lower() or not value:
            jar.pop(name, None)
        else:
            jar[name] = value


def cookie_header(jar):
    return "; ".join("%s=%s" % kv for kv in jar.items())


def csrf_of(page):
    """The CSRF token of a portal form on `page`, or None."""
    m = re.search(r'name="csrf" value="([^"]*)"', page)
    return m.group(1) if m else None


class Client:
    """One browser: its own cookies, optionally its own source address.  `p` is a started Portico with a
    portal, or the portal's base URL."""

    def __init__(self, p, source="127.0.0.1", context=None):
        u = urllib.parse.urlsplit(p if isinstance(p, str) else p.portal_url)
        self.host, self.port, self.https = u.hostname, u.port, u.scheme == "https"
        self.source = source
        self.context = context
        self.cookies = {}
        self.last = ""
        self.raw = b""
        self.set_cookies = []  # the raw Set-Cookie headers of the last answer

    def request(self, method, path, form=None, headers=None, body=None):
        if self.https:
            c = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.context,
                                            source_address=(self.source, 0))
        else:
            c = http.client.HTTPConnection(self.host, self.port, timeout=30, source_address=(self.source, 0))
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = cookie_header(self.cookies)
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            self.raw = r.read()
            self.set_cookies = r.headers.get_all("Set-Cookie") or []
            keep_cookies(self.cookies, self.set_cookies)
            self.last = self.raw.decode(errors="replace")
            return r.status, {k.lower(): v for k, v in r.getheaders()}, self.last
        finally:
            c.close()

    def get(self, path):
        return self.request("GET", path)

    def csrf(self, page=None):
        return csrf_of(page if page is not None else self.last)

    def post(self, path, form, page_path=None, csrf=True):
        """POSTs a form; with csrf=True the token comes from `page_path` (GET first) or the last page."""
        form = dict(form)
        if csrf is True:
            if page_path:
                self.get(page_path)
            token = self.csrf()
            assert token, "no CSRF token on the page before POST %s:\n%s" % (path, self.last[:2000])
            form["csrf"] = token
        elif isinstance(csrf, str):
            form["csrf"] = csrf
        return self.request("POST", path, form)

    @property
    def session(self):
        return self.cookies.get("__Host-portico_session") or self.cookies.get("portico_session")

    def signed_in(self):
        status, h, _ = self.get("/profile")
        return status == 200

    def signin(self, mail, password=PASSWORD):
        return self.post("/signin", {"email": mail, "password": password}, page_path="/signin")


def outbox_mails(workdir):
    """(mtime, path, message) of every mail in the outbox, by path."""
    out = []
    for path in sorted(glob.glob(os.path.join(workdir, "outbox", "*.eml"))):
        with open(path, "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        out.append((os.path.getmtime(path), path, msg))
    return out


def last_mail(workdir, to, subject_has=None, after=0):
    """(subject, body, link) of the newest mail to `to` not in `after` (waits a little for it)."""
    def find():
        for _, path, msg in reversed(outbox_mails(workdir)):
            if to.lower() not in str(msg["To"]).lower() or path in after_paths:
                continue
            body = msg.get_body(preferencelist=("plain",)).get_content()
            m = re.search(r"(https?://\S+[?&]token=[A-Za-z0-9_-]+)", body)
            return str(msg["Subject"]), body, m.group(1) if m else None
        return None
    after_paths = set(after) if isinstance(after, (set, list)) else set()
    return wait_for(find, timeout=5, what="a mail to %s" % to)


def mail_paths(workdir):
    return {path for _, path, _ in outbox_mails(workdir)}


def path_of(link):
    u = urllib.parse.urlsplit(link)
    return u.path + ("?" + u.query if u.query else "")


def token_of(link):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]


def set_password_by_mail(c, workdir, mail, password=PASSWORD):
    """Sets the password of `mail` through the reset mail, with the browser `c` (not signed in after)."""
    before = mail_paths(workdir)
    c.post("/reset-password", {"email": mail}, page_path="/reset-password")
    _, _, link = last_mail(workdir, mail, after=before)
    c.get(path_of(link))
    status, _, _ = c.post("/reset-password/confirm", {"token": token_of(link), "password": password})
    assert status == 303, c.last[:1000]
