"""The developer portal's content: site settings, pages, media, revisions and
mail templates, through the management API (/management/portal/...), the
configuration file (portal.site, portal.pages, portal.templates; export)
and the administrator's pages (/admin/...), and what guests then see.

A client here is a small browser (cookies, forms with the page's CSRF
token, redirects not followed).  The administrator gets a password through
the reset mail in the outbox.  Attacks are tests too: script in pages,
links and attributes; media that is not what it says or too large; a
non-administrator on /admin; forged POSTs without the CSRF token.
"""

import json
import os
import re
import urllib.parse

import pytest

from conftest import basic_config, free_port, to_yaml
from mgmt_helpers import TOKEN, Mgmt
import portal_helpers
from portal_helpers import last_mail, mail_paths, set_password_by_mail, token_of

ADMIN = "admin@example.com"
DEV = "dev@example.com"

# a 1x1 PNG, and the magic bytes of the other accepted types
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00" \
      b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L" + b"\x00" * 32
ICO = b"\x00\x00\x01\x00\x01\x00" + b"\x00" * 40
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(1)</script></svg>'


# ------------------------------------------------------------------ helpers

def portal_config(backend, workdir, portal=None, users=None, **extra):
    cfg = basic_config(backend.url)
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    cfg["data"] = os.path.join(workdir, "data")
    p = {"listen": "127.0.0.1:%d" % free_port(), "mail": {"outbox": os.path.join(workdir, "outbox")},
         "media": {"maxSize": "4k"}}
    p.update(portal or {})
    cfg["portal"] = p
    cfg["users"] = users if users is not None else [
        {"id": "admin", "email": ADMIN, "firstName": "Ada", "lastName": "Admin", "groups": ["administrators"]},
        {"id": "dev", "email": DEV, "firstName": "Dev", "lastName": "Eloper", "groups": ["developers"]}]
    cfg.update(extra)
    return cfg


def start(portico, backend, workdir, **kw):
    p = portico(portal_config(backend, workdir, **kw), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    return p, Mgmt(p)


class Client(portal_helpers.Client):
    """The shared browser, and multipart uploads for the media forms."""

    def upload(self, path, data, filename="logo.png", ctype="image/png", fields=None, csrf=True):
        boundary = "----portico-test-boundary-7d3"
        parts = []
        f = dict(fields or {})
        if csrf:
            self.get("/admin/site")
            f["csrf"] = self.csrf()
        for k, v in f.items():
            parts.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, k, v))
                         .encode())
        parts.append(("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\nContent-Type: "
                      "%s\r\n\r\n" % (boundary, filename, ctype)).encode() + data + b"\r\n")
        parts.append(("--%s--\r\n" % boundary).encode())
        return self.request("POST", path, body=b"".join(parts),
                            headers={"Content-Type": "multipart/form-data; boundary=" + boundary})


def signed_in(p, workdir, mail):
    """A browser signed in as `mail` (a user declared in the file), its password set through the reset mail."""
    c = Client(p)
    set_password_by_mail(c, workdir, mail)
    status, _, _ = c.signin(mail)
    assert status == 303, c.last[:1000]
    return c


def guest_sees(p, path):
    return Client(p).get(path)


def main_of(page):
    """The page's <main> (what the content put there, without the layout's own script tags)."""
    m = re.search(r'<main id="main">(.*)</main>', page, re.S)
    return m.group(1) if m else ""


def detail_text(out):
    return json.dumps(out)


# ------------------------------------------------------- management API

def test_site_round_trip_defaults_and_checks(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    s = m.ok("GET", "portal/site")
    assert s["title"] == "Portico developer portal" and s["signupEnabled"] is True and s["logo"] is None
    assert set(s["colors"]) == {"primary", "background", "text", "link"}
    s = m.ok("PUT", "portal/site", {"title": "Acme APIs", "colors": {"primary": "#aa0000"}, "terms": "Be nice."})
    assert s["title"] == "Acme APIs" and s["colors"]["primary"] == "#aa0000"
    assert s["colors"]["background"] == "#ffffff"  # defaults stay for keys not given
    s = m.ok("PATCH", "portal/site", {"colors": {"link": "rgb(10, 20, 30)"}, "requireSignin": False})
    assert s["colors"] == dict(s["colors"], primary="#aa0000", link="rgb(10, 20, 30)")
    assert m.ok("GET", "portal/site")["terms"] == "Be nice."
    # values that would break out of the theme's CSS, unknown keys, wrong types: 400 naming the place
    for body, where in [({"colors": {"primary": "red;} body { display: none"}}, "colors.primary"),
                        ({"fonts": {"body": "x\"; } * { color: red"}}, "fonts.body"),
                        ({"customCss": ["not", "text"]}, "customCss"),
                        ({"title": ""}, "title"), ({"signupEnabled": "yes"}, "signupEnabled"),
                        ({"logo": "../etc/passwd"}, "logo"), ({"colour": "red"}, "colour")]:
        status, _, out = m.call("PATCH", "portal/site", body)
        assert status == 400, (body, out)
        assert out["error"]["code"] == "ValidationError" and where in detail_text(out), out
    assert m.ok("GET", "portal/site")["colors"]["primary"] == "#aa0000"  # nothing changed
    # ETag preconditions
    status, h, _ = m.call("GET", "portal/site")
    status, _, _ = m.call("PATCH", "portal/site", {"title": "X"}, headers={"If-Match": '"stale"'})
    assert status == 412
    status, _, _ = m.call("PATCH", "portal/site", {"title": "X"}, headers={"If-Match": h["etag"]})
    assert status == 200


def test_pages_crud_and_checks(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    status, _, out = m.call("PUT", "portal/pages/guide", {"title": "Guide", "markdown": "# Hi", "menuOrder": 2})
    assert status == 201 and out["id"] == "guide" and out["groups"] == []
    status, _, out = m.call("PUT", "portal/pages/faq", {"title": "FAQ", "markdown": "Q?", "groups": ["developers"]})
    assert status == 201 and out["menuOrder"] is None
    lst = m.ok("GET", "portal/pages")
    assert [x["id"] for x in lst["value"]] == ["guide", "faq"] and lst["count"] == 2  # menu order, then the rest
    assert m.ok("PATCH", "portal/pages/guide", {"title": "The guide"})["markdown"] == "# Hi"
    out = m.ok("PATCH", "portal/pages/guide", {"html": "<p>now HTML</p>"})
    assert "markdown" not in out and out["html"] == "<p>now HTML</p>"
    for body in [{"title": "x", "markdown": "a", "html": "b"}, {"markdown": "no title"},
                 {"title": "x", "menuOrder": "first"}, {"title": "x", "groups": "developers"},
                 {"title": "x", "groups": ["<script>"]}, {"title": "x", "id": "other"},
                 {"title": "x", "script": "y"}]:
        status, _, out = m.call("PUT", "portal/pages/bad", body)
        assert status == 400, (body, out)
    for bad in ["..", ".hidden", "a" * 81, "with space"]:
        status, _, _ = m.call("PUT", "portal/pages/" + urllib.parse.quote(bad), {"title": "x"})
        assert status in (400, 404), bad
    status, _, _ = m.call("GET", "portal/pages/bad")
    assert status == 404
    status, _, _ = m.call("DELETE", "portal/pages/faq")
    assert status == 204
    status, _, _ = m.call("GET", "portal/pages/faq")
    assert status == 404
    status, _, _ = m.call("DELETE", "portal/pages/faq")
    assert status == 404


def test_publish_and_rollback_change_what_guests_see(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    assert m.ok("GET", "portal/revisions")["value"] == []
    m.ok("PUT", "portal/site", {"title": "First title", "home": "Welcome to **one**"})
    m.ok("PUT", "portal/pages/about", {"title": "About us", "markdown": "About page text", "menuOrder": 1})
    # a draft is not visible before it is published
    status, _, page = guest_sees(p, "/")
    assert "First title" not in page and "Portico developer portal" in page
    assert guest_sees(p, "/pages/about")[0] == 404
    status, _, out = m.call("POST", "portal/revisions", {"comment": "launch"})
    assert status == 201 and out["id"] == 1
    status, _, page = guest_sees(p, "/")
    assert "First title" in page and "<strong>one</strong>" in page
    assert 'href="/pages/about"' in page  # in the menu
    status, _, page = guest_sees(p, "/pages/about")
    assert status == 200 and "About page text" in page
    # change the draft: guests keep the published revision until the next publish
    m.ok("PATCH", "portal/site", {"title": "Second title"})
    assert m.call("DELETE", "portal/pages/about")[0] == 204
    assert "First title" in guest_sees(p, "/")[2]
    assert guest_sees(p, "/pages/about")[0] == 200
    assert m.ok("POST", "portal/revisions", {"comment": "rename"})["id"] == 2
    assert "Second title" in guest_sees(p, "/")[2]
    assert guest_sees(p, "/pages/about")[0] == 404
    revs = m.ok("GET", "portal/revisions")["value"]
    assert [(r["id"], r["comment"]) for r in revs] == [(2, "rename"), (1, "launch")]
    assert "site" not in revs[0]  # the list is a summary
    r1 = m.ok("GET", "portal/revisions/1")
    assert r1["site"]["title"] == "First title" and [x["id"] for x in r1["pages"]] == ["about"]
    # roll back: a copy of revision 1 becomes revision 3 and the draft
    status, _, out = m.call("POST", "portal/revisions/1/restore")
    assert status == 201 and out == {"id": 3, "restored": 1}
    status, _, page = guest_sees(p, "/")
    assert "First title" in page and "Second title" not in page
    assert guest_sees(p, "/pages/about")[0] == 200
    assert m.ok("GET", "portal/site")["title"] == "First title"
    assert m.ok("GET", "portal/pages/about")["title"] == "About us"
    assert m.call("POST", "portal/revisions/99/restore")[0] == 404
    assert m.call("GET", "portal/revisions/0")[0] == 404
    assert m.call("POST", "portal/revisions", {"comment": 5})[0] == 400


def test_hidden_page_is_404_for_other_groups(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    m.ok("PUT", "portal/pages/staff", {"title": "Staff only", "markdown": "secret staff notes", "menuOrder": 1,
                                       "groups": ["administrators"]})
    m.ok("PUT", "portal/pages/devs", {"title": "Developers", "markdown": "developer notes", "menuOrder": 2,
                                      "groups": ["developers"]})
    m.ok("PUT", "portal/pages/all", {"title": "Everyone", "markdown": "public notes", "menuOrder": 3})
    m.ok("POST", "portal/revisions", {"comment": "pages"})
    status, _, page = guest_sees(p, "/pages/staff")
    assert status == 404 and "secret staff notes" not in page
    assert guest_sees(p, "/pages/devs")[0] == 404
    status, _, page = guest_sees(p, "/pages/all")
    assert status == 200 and "public notes" in page
    assert "/pages/staff" not in page and "/pages/devs" not in page  # not in the guest's menu either
    dev = signed_in(p, workdir, DEV)
    assert dev.get("/pages/staff")[0] == 404
    status, _, page = dev.get("/pages/devs")
    assert status == 200 and "developer notes" in page
    admin = signed_in(p, workdir, ADMIN)
    status, _, page = admin.get("/pages/staff")
    assert status == 200 and "secret staff notes" in page


XSS_MARKDOWN = """# Notes

<script>alert('xss-script')</script>

[click me](javascript:alert('xss-link'))
[also](JaVaScRiPt:alert('xss-link2'))
<a href="java&#x09;script:alert('xss-entity')">entity</a>

<img src="x" onerror="alert('xss-onerror')">
<p onclick="alert('xss-onclick')" style="color:red">styled</p>
<iframe src="https://evil.example/"></iframe>
<svg onload="alert('xss-svg')"></svg>
<form action="https://evil.example/"><input name="q"></form>

Safe [link](https://example.com/docs) and **bold** text.
"""


def assert_clean(html):
    """No markup of html can run anything: its tags (text is escaped, so inert) hold no script, handler,
    javascript: URL, frame, SVG, form or style; and no script element's text is left."""
    tags = " ".join(re.findall(r"<[^>]*>", html)).lower()
    for bad in ["<script", "alert(", "javascript:", " on", "<iframe", "<svg", "<form", "style=", "evil.example",
                "data:image/svg"]:
        assert bad not in tags, (bad, html)
    assert "xss-script" not in html and "xss-raw2" not in html and "xss-terms" not in html, html


def test_sanitization_end_to_end(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    m.ok("PUT", "portal/pages/md", {"title": "Markdown", "markdown": XSS_MARKDOWN})
    m.ok("PUT", "portal/pages/raw", {"title": "HTML", "html": "<h2 onmouseover=\"alert('xss-h2')\">Raw</h2>"
                                     "<a href=\"javascript:alert('xss-raw')\">x</a><script>alert('xss-raw2')</script>"
                                     "<img src=\"data:image/svg+xml;base64,PHN2Zz4=\"><p>kept</p>"})
    m.ok("PUT", "portal/site", {"home": "Home <img src=x onerror=alert('xss-home')> [a](javascript:alert(1))",
                                "terms": "Terms <script>alert('xss-terms')</script> apply"})
    m.ok("POST", "portal/revisions", {})
    status, h, page = guest_sees(p, "/pages/md")
    assert status == 200
    body = main_of(page)
    assert_clean(body)
    assert '<a href="https://example.com/docs" rel="nofollow noopener noreferrer">link</a>' in body
    assert "<strong>bold</strong>" in body and "styled" in body and "<h1>Notes</h1>" in body
    assert "script-src 'self'" in h["content-security-policy"]
    status, _, page = guest_sees(p, "/pages/raw")
    body = main_of(page)
    assert status == 200 and "<p>kept</p>" in body and ">Raw</h2>" in body
    assert_clean(body)
    assert "data:image/svg" not in body
    for path in ["/", "/terms"]:
        status, _, page = guest_sees(p, path)
        assert status == 200
        assert_clean(main_of(page))
    # the stored content keeps what was written (the API returns it as sent); only what is shown is cleaned
    assert "<script>" in m.ok("GET", "portal/pages/md")["markdown"]


def test_media_types_and_limits(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    for mid, data, ctype in [("logo.png", PNG, "image/png"), ("a.gif", GIF, "image/gif"),
                             ("b.jpg", JPEG, "image/jpeg"), ("c.webp", WEBP, "image/webp"),
                             ("fav.ico", ICO, "image/x-icon")]:
        status, _, out = m.call("PUT", "portal/media/" + mid, raw=data, content_type=ctype)
        assert status == 201 and out == {"id": mid, "contentType": ctype, "size": len(data)}, out
    status, h, out = m.call("GET", "portal/media/logo.png")
    assert status == 200 and h["content-type"] == "image/png"
    lst = m.ok("GET", "portal/media")
    assert {x["id"] for x in lst["value"]} == {"logo.png", "a.gif", "b.jpg", "c.webp", "fav.ico"}
    assert all("data" not in x for x in lst["value"])
    # the portal serves it to anyone, as an image and nothing else
    c = Client(p)
    status, h, _ = c.get("/media/logo.png")
    assert status == 200 and c.raw == PNG and h["content-type"] == "image/png"
    assert h["x-content-type-options"] == "nosniff"
    status, _, _ = c.request("GET", "/media/logo.png", headers={"If-None-Match": h["etag"]})
    assert status == 304
    assert c.get("/media/nothing.png")[0] == 404
    # refusals: SVG (scripts), bytes that are not what they say, unknown types, too large, empty
    for data, ctype, code in [(SVG, "image/svg+xml", 415), (SVG, "image/png", 415), (GIF, "image/png", 415),
                              (b"<html><script>alert(1)</script></html>", "image/png", 415),
                              (PNG, "image/tiff", 415), (PNG, "text/html", 400),
                              (PNG, "application/octet-stream", 400),
                              (PNG + b"\x00" * 5000, "image/png", 413), (b"", "image/png", 400)]:
        status, _, out = m.call("PUT", "portal/media/evil", raw=data, content_type=ctype)
        assert status == code, (ctype, status, out)
        assert out["error"]["code"] in ("UnsupportedMediaType", "PayloadTooLarge", "InvalidRequestBody")
    assert m.call("GET", "portal/media/evil")[0] == 404
    assert c.get("/media/evil")[0] == 404
    status, _, out = m.call("PUT", "portal/media/too-big", raw=PNG + b"\x00" * 5000, content_type="image/png")
    assert status == 413 and "maxSize" in out["error"]["message"]
    assert m.call("DELETE", "portal/media/a.gif")[0] == 204
    assert c.get("/media/a.gif")[0] == 404


def test_templates_through_the_api_reach_the_mails(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    lst = m.ok("GET", "portal/templates")["value"]
    assert {t["id"] for t in lst} == {"confirm-signup", "reset-password", "account-exists", "invite",
                                      "subscription-submitted",
                                      "subscription-approved", "subscription-rejected"}
    assert all(t["builtIn"] for t in lst)
    out = m.ok("PUT", "portal/templates/reset-password",
               {"subject": "Reset for {{firstName}} at {{siteTitle}}", "body": "Open {{link}} -- Acme"})
    assert out["builtIn"] is False
    assert m.call("PUT", "portal/templates/unknown", {"subject": "x"})[0] == 404
    assert m.call("PUT", "portal/templates/invite", {"subject": "x", "extra": 1})[0] == 400
    before = mail_paths(workdir)
    c = Client(p)
    c.post("/reset-password", {"email": DEV}, page_path="/reset-password")
    subject, body, link = last_mail(workdir, DEV, after=before)
    assert subject.startswith("Reset for Dev at ")
    assert "-- Acme" in body and token_of(link)
    # back to the built-in text
    assert m.call("DELETE", "portal/templates/reset-password")[0] == 204
    assert m.ok("GET", "portal/templates/reset-password")["builtIn"] is True
    before = mail_paths(workdir)
    c.post("/reset-password", {"email": DEV}, page_path="/reset-password")
    subject, _, _ = last_mail(workdir, DEV, after=before)
    assert not subject.startswith("Reset for")


# ------------------------------------------------------------ the file

FILE_CONTENT = {
    "site": {"title": "From the file", "colors": {"primary": "#123456"}, "home": "File *home*"},
    "pages": [{"id": "guide", "title": "File guide", "markdown": "Guide text", "menuOrder": 1}],
    "templates": [{"id": "invite", "subject": "Join {{siteTitle}}", "body": "Go to {{link}}"}],
}


def test_file_content_applied_exported_and_owned(backend, portico, workdir):
    p, m = start(portico, backend, workdir, portal=dict(FILE_CONTENT))
    # applied and published at start
    status, _, page = guest_sees(p, "/")
    assert "From the file" in page and "<em>home</em>" in page
    assert "Guide text" in guest_sees(p, "/pages/guide")[2]
    assert m.ok("GET", "portal/templates/invite")["subject"] == "Join {{siteTitle}}"
    revs = m.ok("GET", "portal/revisions")["value"]
    assert len(revs) == 1 and revs[0]["comment"] == "configuration file"
    # owned by the file: the API may not change it
    for method, path, body in [("PATCH", "portal/site", {"title": "x"}), ("PUT", "portal/pages/guide", {"title": "x"}),
                               ("DELETE", "portal/pages/guide", None), ("PUT", "portal/templates/invite",
                                                                       {"subject": "x"})]:
        status, _, out = m.call(method, path, body)
        assert status == 409 and "configuration file" in out["error"]["message"], (path, out)
    # the API's own pages live beside the file's
    m.ok("PUT", "portal/pages/extra", {"title": "Extra", "markdown": "extra text"})
    exp = m.ok("GET", "export")
    assert exp["portal"] == {"pages": [m.ok("GET", "portal/pages/extra")]}
    full = m.ok("GET", "export?includeFile=true")
    assert full["portal"]["site"]["title"] == "From the file"
    assert [x["id"] for x in full["portal"]["pages"]] == ["guide", "extra"]
    assert full["portal"]["templates"][0]["id"] == "invite"
    # a restart publishes nothing new (the file did not change)
    p.stop()
    p.start()
    assert len(m.ok("GET", "portal/revisions")["value"]) == 1
    # a reload with a changed file publishes the file's part, and keeps the API's draft page a draft
    cfg = portal_config(backend, workdir, portal={
        "site": {"title": "Changed in the file"},
        "pages": [{"id": "guide2", "title": "Second guide", "markdown": "Second text"}]})
    cfg["management"] = p.config["management"]
    cfg["portal"]["listen"] = p.config["portal"]["listen"]
    cfg["listen"] = p.config["listen"]
    assert p.reload(cfg)
    assert "Changed in the file" in guest_sees(p, "/")[2]
    assert guest_sees(p, "/pages/guide")[0] == 404  # the file dropped it
    assert guest_sees(p, "/pages/guide2")[0] == 200
    assert guest_sees(p, "/pages/extra")[0] == 404  # never published
    assert m.call("GET", "portal/pages/guide")[0] == 404
    assert m.ok("GET", "portal/templates/invite")["builtIn"] is True  # the file dropped the template too
    # a bad reload is refused with file:line:column and the portal keeps what it had
    bad = json.loads(json.dumps(cfg))
    bad["portal"]["site"]["colors"] = {"primary": "red; } body { display: none"}
    bad["portal"]["pages"][0]["groups"] = "everyone"
    assert not p.reload(bad)
    log = p.log_text()
    assert re.search(r"portico\.yaml:\d+:\d+: not a color", log), log[-3000:]
    assert re.search(r"portico\.yaml:\d+:\d+: expected a list of at most 64 group ids", log), log[-3000:]
    assert "Changed in the file" in guest_sees(p, "/")[2]


def test_file_check_names_positions(backend, portico, workdir):
    cfg = portal_config(backend, workdir, portal={
        "site": {"title": "ok", "colours": {}, "signupEnabled": "maybe"},
        "pages": [{"id": "a", "title": "A"}, {"id": "a", "title": "again"}, {"title": "no id", "markdown": "x",
                                                                              "html": "y"}],
        "templates": [{"id": "welcome", "subject": "x"}]})
    p = portico(cfg, start=False)
    rc, out = p.check()
    assert rc != 0
    for msg in ["site: unknown key 'colours'", "expected true or false", "the page id 'a' is used twice",
                "page: id is required", "give markdown or html, not both", "template: id must be one of"]:
        assert re.search(r"portico\.yaml:\d+:\d+: .*" + re.escape(msg), out), (msg, out)


def test_export_applies_to_another_portal(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    m.ok("PUT", "portal/site", {"title": "Promoted", "terms": "Terms v1"})
    m.ok("PUT", "portal/pages/howto", {"title": "How to", "markdown": "Steps", "groups": ["developers"]})
    m.ok("PUT", "portal/templates/invite", {"subject": "Hello from {{siteTitle}}"})
    doc = m.ok("GET", "export")
    assert set(doc["portal"]) == {"site", "pages", "templates"}
    p.stop()
    # a second gateway (another store) gets the document through apply
    other = os.path.join(workdir, "other")
    os.makedirs(other)
    q = portico(portal_config(backend, other), env={"PORTICO_ADMIN_TOKEN": TOKEN})
    mq = Mgmt(q)
    status, _, out = mq.call("POST", "apply", doc)
    assert status in (200, 201), out
    assert mq.ok("GET", "portal/site")["title"] == "Promoted"
    assert mq.ok("GET", "portal/pages/howto")["groups"] == ["developers"]
    assert mq.ok("GET", "portal/templates/invite")["subject"] == "Hello from {{siteTitle}}"
    status, _, page = guest_sees(q, "/")
    assert "Promoted" in page  # applying a document publishes it, like the other entities go live


# --------------------------------------------------- the administrator's pages

ADMIN_PAGES = ["/admin", "/admin/site", "/admin/pages", "/admin/pages/x", "/admin/revisions"]


def test_admin_pages_are_404_for_everyone_else(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    m.ok("PUT", "portal/pages/x", {"title": "X", "markdown": "x"})
    guest = Client(p)
    dev = signed_in(p, workdir, DEV)
    for c in (guest, dev):
        for path in ADMIN_PAGES:
            status, _, page = c.get(path)
            assert status == 404, path
            assert "site-form" not in page and "page-form" not in page
        # their POSTs too, with their own valid CSRF token
        c.get("/")
        token = c.csrf() or "none"
        for path in ["/admin/site", "/admin/publish", "/admin/pages/x", "/admin/pages/x/delete",
                     "/admin/revisions/1/restore", "/admin/media"]:
            status, _, _ = c.request("POST", path, form={"csrf": token, "title": "pwned", "comment": "x"})
            assert status in (404, 403), path
        status, h, out = c.request("POST", "/api/preview", body=b'{"markdown":"x"}',
                                   headers={"Content-Type": "application/json", "X-CSRF-Token": token})
        assert status == 404 and h["content-type"].startswith("application/json")
    assert m.ok("GET", "portal/revisions")["value"] == []
    assert m.ok("GET", "portal/pages/x")["title"] == "X"
    assert m.ok("GET", "portal/site")["title"] != "pwned"
    # a guest asking for the draft gets the published content
    m.ok("PATCH", "portal/site", {"title": "Draft title"})
    assert "Draft title" not in guest.get("/?preview=1")[2]
    assert "Draft title" not in dev.get("/?preview=1")[2]


def test_admin_edits_previews_publishes_and_restores(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    admin = signed_in(p, workdir, ADMIN)
    status, _, page = admin.get("/admin")
    assert status == 200 and 'href="/admin/site"' in page
    status, _, page = admin.get("/admin/site")
    assert status == 200 and 'id="site-form"' in page and 'name="colors[primary]"' in page
    form = {"title": "Admin title", "colors[primary]": "#336699", "colors[background]": "#ffffff",
            "colors[text]": "#111111", "colors[link]": "#0000ee", "fonts[body]": "Georgia, serif",
            "fonts[heading]": "'Helvetica Neue', sans-serif", "customCss": ".x { color: red }",
            "home": "Hello **admins**", "terms": "", "signupEnabled": "on", "logo": "", "favicon": ""}
    # without the CSRF token: refused, nothing changes
    status, _, _ = admin.post("/admin/site", form, csrf=False)
    assert status == 403
    assert m.ok("GET", "portal/site")["title"] != "Admin title"
    # a bad color: the form again with the error, nothing saved
    status, _, page = admin.post("/admin/site", dict(form, **{"colors[primary]": "red;}"}), page_path="/admin/site")
    assert status == 400 and 'class="error" role="alert"' in page and "colors.primary" in page
    assert 'value="Admin title"' in page  # what was typed is kept
    status, h, page = admin.post("/admin/site", form, page_path="/admin/site")
    assert status == 303 and h["location"] == "/admin/site", re.findall(r'class="error" role="alert">([^<]*)', page)
    s = m.ok("GET", "portal/site")
    assert s["title"] == "Admin title" and s["requireSignin"] is False and s["fonts"]["body"] == "Georgia, serif"
    # the draft: administrators preview it, guests do not see it
    assert "Admin title" not in guest_sees(p, "/")[2]
    status, _, page = admin.get("/?preview=1")
    assert "Admin title" in page and "<strong>admins</strong>" in page and "preview-note" in page
    # a page through the editor
    status, _, page = admin.get("/admin/pages/start")
    assert status == 200 and 'id="page-form"' in page and 'id="page-preview"' in page
    assert re.search(r'<script src="/assets/editor[^"]*\.js" defer>', page)
    status, _, _ = admin.post("/admin/pages/start", {"title": "Getting started", "markdown": "Step <b>one</b>"
                              "<script>alert(1)</script>", "groups": "developers, partners", "menuOrder": "3"})
    assert status == 303
    pg = m.ok("GET", "portal/pages/start")
    assert pg["groups"] == ["developers", "partners"] and pg["menuOrder"] == 3 and pg["title"] == "Getting started"
    status, _, page = admin.get("/admin/pages")
    assert 'data-page="start"' in page
    status, _, page = admin.post("/admin/pages/start", {"title": "T", "markdown": "x", "menuOrder": "soon"},
                                 page_path="/admin/pages/start")
    assert status == 400 and "menuOrder" in page
    # publish with a comment
    status, h, _ = admin.post("/admin/publish", {"comment": "from the browser"}, page_path="/admin")
    assert status == 303 and h["location"] == "/admin/revisions"
    assert "Admin title" in guest_sees(p, "/")[2]
    status, _, page = admin.get("/admin/revisions")
    assert 'id="revisions"' in page and "from the browser" in page and 'data-revision="1"' in page
    # another change, published, then restore revision 1
    admin.post("/admin/site", dict(form, title="Later title"), page_path="/admin/site")
    admin.post("/admin/publish", {"comment": "later"}, page_path="/admin")
    assert "Later title" in guest_sees(p, "/")[2]
    status, h, _ = admin.post("/admin/revisions/1/restore", {}, page_path="/admin/revisions")
    assert status == 303
    assert "Admin title" in guest_sees(p, "/")[2]
    assert [r["comment"] for r in m.ok("GET", "portal/revisions")["value"]][0] == "restored revision 1"
    # restore without the CSRF token: refused
    assert admin.post("/admin/revisions/2/restore", {}, csrf=False)[0] == 403
    # delete the page from the draft
    status, _, _ = admin.post("/admin/pages/start/delete", {}, page_path="/admin/pages/start")
    assert status == 303 and m.call("GET", "portal/pages/start")[0] == 404


def test_live_preview_endpoint(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    admin = signed_in(p, workdir, ADMIN)
    admin.get("/admin/pages/new")
    token = admin.csrf()
    body = json.dumps({"markdown": "# T\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)> **b**"}).encode()
    status, _, out = admin.request("POST", "/api/preview", body=body, headers={"Content-Type": "application/json"})
    assert status == 403  # no X-CSRF-Token
    status, h, out = admin.request("POST", "/api/preview", body=body,
                                   headers={"Content-Type": "application/json", "X-CSRF-Token": token})
    assert status == 200 and h["content-type"].startswith("application/json")
    html = json.loads(out)["html"]
    assert "<h1>T</h1>" in html and "<strong>b</strong>" in html
    assert_clean(html)
    status, _, _ = admin.request("POST", "/api/preview", body=b"{}",
                                 headers={"Content-Type": "application/json", "X-CSRF-Token": token})
    assert status == 400
    # the editor's script is served by the portal itself
    status, h, js = Client(p).get(re.search(r'src="(/assets/editor[^"]*\.js)"', admin.get("/admin/pages/new")[2])
                                  .group(1))
    assert status == 200 and "/api/preview" in js and "X-CSRF-Token" in js


def test_media_upload_form(backend, portico, workdir):
    p, m = start(portico, backend, workdir)
    admin = signed_in(p, workdir, ADMIN)
    status, h, _ = admin.upload("/admin/media", PNG, filename="Company Logo.PNG", fields={"use": "logo"})
    assert status == 303 and h["location"] == "/admin/site", admin.last
    lst = m.ok("GET", "portal/media")["value"]
    assert [x["id"] for x in lst] == ["company-logo.png"]
    assert m.ok("GET", "portal/site")["logo"] == "company-logo.png"
    m.ok("POST", "portal/revisions", {"comment": "logo"})
    status, _, page = guest_sees(p, "/")
    assert 'src="/media/company-logo.png"' in page
    c = Client(p)
    assert c.get("/media/company-logo.png")[0] == 200 and c.raw == PNG
    # refused: SVG, a script named .png, too large, no CSRF token
    for data, name, code in [(SVG, "logo.svg", 415), (b"<script>alert(1)</script>", "x.png", 415),
                             (PNG + b"\x00" * 5000, "big.png", 413)]:
        status, _, page = admin.upload("/admin/media", data, filename=name)
        assert status == code, (name, status)
        assert 'class="error" role="alert"' in page
    status, _, _ = admin.upload("/admin/media", PNG, filename="nocsrf.png", csrf=False)
    assert status == 403
    assert [x["id"] for x in m.ok("GET", "portal/media")["value"]] == ["company-logo.png"]
