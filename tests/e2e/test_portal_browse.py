"""The developer portal as a guest sees it: the layout, the API list and
reference, products, downloads, provider pages; visibility (what a guest may
not see is a 404, whatever id is guessed); requireSignin; assets (hashed
URLs, caching, gzip, the provider's themeDir); the security headers of every
answer; HTTPS; and bad requests answered with a clean 4xx."""

import gzip
import hashlib
import html
import html.parser
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest
import yaml

from conftest import basic_config, free_port, raw_exchange, wait_for
from mgmt_helpers import Mgmt
from portal_helpers import (PASSWORD, cookie_header, csrf_of, keep_cookies, last_mail, mail_paths, path_of,
                            token_of)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


# ------------------------------------------------------------------ a tiny DOM

class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, dict(attrs), parent, [], []

    def all(self):
        yield self
        for c in self.children:
            yield from c.all()

    def find_all(self, tag=None, **attrs):
        out = []
        for n in self.all():
            if tag and n.tag != tag:
                continue
            ok = True
            for k, v in attrs.items():
                k = k.rstrip("_").replace("_", "-")
                have = n.attrs.get(k)
                if k == "class":
                    ok = ok and have is not None and v in have.split()
                else:
                    ok = ok and have == v
            if ok:
                out.append(n)
        return out

    def find(self, tag=None, **attrs):
        found = self.find_all(tag, **attrs)
        return found[0] if found else None

    def get_text(self):
        return "".join(t if isinstance(t, str) else t.get_text() for t in self.text)


VOID = {"meta", "link", "input", "img", "br", "hr", "source", "area", "base", "col", "embed", "wbr"}


class DomBuilder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        self.cur.text.append(n)
        if tag not in VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        self.cur.text.append(n)

    def handle_endtag(self, tag):
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.text.append(data)


def dom(text):
    b = DomBuilder()
    b.feed(text)
    b.close()
    return b.root


# ------------------------------------------------------------------- clients

class Client:
    def __init__(self, base, context=None):
        m = re.match(r"(https?)://([^:/]+):(\d+)", base)
        self.scheme, self.host, self.port = m.group(1), m.group(2), int(m.group(3))
        self.context = context

    def request(self, method, path, body=None, headers=None):
        if self.scheme == "https":
            c = http.client.HTTPSConnection(self.host, self.port, timeout=10, context=self.context)
        else:
            c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def page(self, path, status=200):
        st, h, body = self.get(path)
        assert st == status, (path, st, body[:500])
        return h, body.decode(), dom(body.decode())


def assert_layout(doc):
    """The contract's ids on every page."""
    assert doc.find("a", id="site-title") is not None
    assert doc.find("a", id="site-title").attrs.get("href") == "/"
    assert doc.find("nav", id="menu") is not None
    assert doc.find("main", id="main") is not None
    assert doc.find("header") is not None


def assert_secure_headers(h, path):
    assert h.get("content-security-policy") == CSP, (path, h)
    assert h.get("x-content-type-options") == "nosniff", path
    assert h.get("referrer-policy") == "same-origin", path


def assert_no_inline(text, path):
    """The CSP forbids inline scripts and styles: the pages use none."""
    for m in re.finditer(r"<script\b[^>]*>", text):
        assert "src=" in m.group(0), (path, m.group(0))
    assert "<style" not in text, path
    assert not re.search(r"\sstyle\s*=", text), path
    assert not re.search(r"\son[a-z]+\s*=", text), path  # no onclick= etc.


# ------------------------------------------------------------------ the setup

ITEMS_SCHEMA = {
    "components": {"schemas": {
        "Order": {
            "type": "object", "required": ["id", "lines"], "description": "An order",
            "properties": {
                "id": {"type": "integer", "format": "int64", "description": "The order's number"},
                "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "Labels by name"},
                "status": {"type": "string", "enum": ["open", "shipped"]},
                "parent": {"$ref": "#/components/schemas/Order"},
                "payment": {"oneOf": [{"$ref": "#/components/schemas/Card"}, {"type": "string"}]},
            },
        },
        "Line": {"type": "object", "properties": {
            "sku": {"type": "string", "description": "Stock keeping unit"},
            "quantity": {"type": "integer", "minimum": 1}}},
        "Card": {"type": "object", "properties": {"last4": {"type": "string", "pattern": "^[0-9]{4}$"}}},
    }},
}

SHOP_OPS = [
    {"id": "get-order", "method": "GET", "urlTemplate": "/orders/{orderId}", "displayName": "Get an order",
     "description": "Reads **one** order.",
     "templateParameters": [{"name": "orderId", "type": "integer", "required": True,
                             "description": "The order's number", "defaultValue": "7"}],
     "request": {"queryParameters": [{"name": "expand", "type": "string", "values": ["lines", "payment"],
                                      "description": "What to include"}],
                 "headers": [{"name": "X-Trace", "type": "string", "description": "A trace id"}]},
     "responses": [{"statusCode": 200, "description": "The order",
                    "headers": [{"name": "X-Remaining", "type": "integer", "description": "Calls left"}],
                    "representations": [{"contentType": "application/json", "schemaId": "shop",
                                         "typeName": "Order",
                                         "examples": {"default": {"value": {"id": 7, "lines": []}}}}]},
                   {"statusCode": 404, "description": "No such order"}]},
    {"id": "create-order", "method": "POST", "urlTemplate": "/orders", "displayName": "Create an order",
     "request": {"description": "The new order",
                 "representations": [{"contentType": "application/json", "schemaId": "shop",
                                      "typeName": "Order",
                                      "examples": {"one": {"value": {"id": 1, "lines": [
                                          {"sku": "UMB-1", "quantity": 2}]}}}}]},
     "responses": [{"statusCode": 201, "description": "Created"}]},
]


def portal_config(backend_url, **portal):
    cfg = basic_config(backend_url)
    gw = cfg["listen"][0]
    cfg["management"] = {"listen": "127.0.0.1:%d" % free_port()}
    # the echo API documented a little: the code samples must run as they are
    cfg["apis"][0]["displayName"] = "Echo API"
    cfg["apis"][0]["operations"][1].update({
        "displayName": "Create an item",
        "request": {"representations": [{"contentType": "application/json",
                                         "examples": {"default": {"value": {"name": "it's \"quoted\""}}}}]}})
    cfg["apis"] += [
        {"id": "shop", "path": "shop/v1", "displayName": "Shop API", "description": "Orders and *lines*.",
         "serviceUrl": backend_url, "subscriptionKeyParameterNames": {"header": "X-Shop-Key"},
         "schemas": [{"id": "shop", "contentType": "application/vnd.oai.openapi.components+json",
                      "document": ITEMS_SCHEMA},
                     {"id": "wsdl", "contentType": "application/vnd.ms-azure-apim.wsdl+xml",
                      "value": "<definitions xmlns=\"http://schemas.xmlsoap.org/wsdl/\"/>"},
                     {"id": "sdl", "contentType": "application/vnd.ms-azure-apim.graphql.schema",
                      "value": "type Query { order(id: Int!): String }"}],
         "operations": SHOP_OPS},
        {"id": "devapi", "path": "dev", "displayName": "Developers only", "serviceUrl": backend_url,
         "operations": [{"id": "op", "method": "GET", "urlTemplate": "/x"}]},
        {"id": "draftapi", "path": "draft", "displayName": "Draft API", "serviceUrl": backend_url,
         "operations": [{"id": "op", "method": "GET", "urlTemplate": "/x"}]},
        {"id": "partnerapi", "path": "partner", "displayName": "Partner API", "serviceUrl": backend_url,
         "operations": [{"id": "op", "method": "GET", "urlTemplate": "/x"}]},
        {"id": "orphan", "path": "orphan", "displayName": "Orphan API", "serviceUrl": backend_url,
         "operations": [{"id": "op", "method": "GET", "urlTemplate": "/x"}]},
    ]
    cfg["groups"] = [{"id": "partners", "displayName": "Partners"}]
    cfg["products"] = [
        {"id": "public", "displayName": "Public", "description": "For everyone", "state": "published",
         "terms": "Be *nice*.", "apis": ["echo", "shop"], "groups": ["guests", "developers"]},
        {"id": "devs", "displayName": "Devs", "state": "published", "apis": ["devapi"], "groups": ["developers"]},
        {"id": "draft", "displayName": "Draft", "state": "notPublished", "apis": ["draftapi"],
         "groups": ["guests", "developers"]},
        {"id": "partners", "displayName": "Partners", "state": "published", "apis": ["partnerapi"],
         "groups": ["partners"]},
        {"id": "nogroups", "displayName": "Nobody", "state": "published", "apis": ["orphan"]},
    ]
    p = {"listen": "127.0.0.1:%d" % free_port(),
         "gatewayUrl": "http://%s" % gw,
         "site": {"title": "Acme <APIs>", "home": "Hello **developers**", "terms": "The terms.",
                  "colors": {"primary": "#123456"},
                  "customCss": ".x { color: blue } /* <script>alert(1) */"},
         "pages": [{"id": "about", "title": "About us", "markdown": "About <b>us</b>", "menuOrder": 2},
                   {"id": "faq", "title": "FAQ", "markdown": "Questions", "menuOrder": 1},
                   {"id": "unlisted", "title": "Unlisted", "markdown": "not in the menu"},
                   {"id": "staff", "title": "Staff only", "markdown": "secret", "groups": ["administrators"],
                    "menuOrder": 3}]}
    p.update(portal)
    cfg["portal"] = p
    return cfg


@pytest.fixture
def site(backend, portico):
    cfg = portal_config(backend.url)
    p = portico(cfg)
    return p, Client(p.portal_url)


# --------------------------------------------------------------------- tests

def test_home_layout_menu_and_escaping(site):
    p, c = site
    h, text, doc = c.page("/")
    assert_layout(doc)
    assert_secure_headers(h, "/")
    assert_no_inline(text, "/")
    # the site's title is text, never markup
    assert "Acme &lt;APIs&gt;" in text and "<APIs>" not in text
    assert doc.find("a", id="site-title").get_text().strip() == "Acme <APIs>"
    assert "developers" in doc.find("main", id="main").get_text()
    # guests get the sign-in and sign-up links, no user links
    assert doc.find("a", id="signin-link") is not None and doc.find("a", id="signup-link") is not None
    assert doc.find(id="profile-link") is None and doc.find(id="signout-form") is None
    # the menu: pages with a menuOrder the guest may see, in that order; the staff page is not there
    links = [a.attrs["href"] for a in doc.find("nav", id="menu").find_all("a")]
    assert links == ["/apis", "/products", "/pages/faq", "/pages/about"], links
    # pages are not cached by shared caches (they show who is signed in)
    assert h.get("cache-control") == "no-store"


def test_api_list_shows_only_visible_apis(site):
    p, c = site
    h, text, doc = c.page("/apis")
    assert_layout(doc)
    ul = doc.find("ul", id="api-list")
    hrefs = sorted(a.attrs["href"] for li in ul.find_all("li") for a in li.find_all("a"))
    assert hrefs == ["/apis/echo", "/apis/shop"], hrefs
    # search narrows the list
    _, _, doc = c.page("/apis?q=orders")
    hrefs = [a.attrs["href"] for a in doc.find("ul", id="api-list").find_all("a")]
    assert hrefs == ["/apis/shop"]


@pytest.mark.parametrize("path", [
    "/products/draft", "/products/devs", "/products/partners", "/products/nogroups", "/products/nope",
    "/apis/draftapi", "/apis/devapi", "/apis/partnerapi", "/apis/orphan", "/apis/nope",
    "/apis/devapi/operations/op", "/apis/draftapi/operations/op", "/apis/echo/operations/nope",
    "/apis/devapi/definition?format=openapi", "/apis/draftapi/definition?format=openapi%2Bjson",
    "/apis/orphan/definition?format=swagger", "/pages/staff", "/pages/nope", "/media/nope",
    "/nowhere", "/apis/echo/nowhere",
])
def test_hidden_or_unknown_is_the_same_404(site, path):
    """The attacker guesses ids: unpublished products, products of other groups, APIs only in them,
    and ids that do not exist all answer the same 404 page."""
    p, c = site
    st, h, body = c.get(path)
    assert st == 404, (path, st)
    assert_secure_headers(h, path)
    if h["content-type"].startswith("text/html"):
        doc = dom(body.decode())
        assert_layout(doc)
        assert doc.find("h1").get_text() == "Not found"
        # nothing of the hidden entity leaks into the page
        for name in ("Draft API", "Developers only", "Partner API", "Orphan API", "Staff only", "secret"):
            assert name not in body.decode(), (path, name)


def test_products_list_and_page(site):
    p, c = site
    _, _, doc = c.page("/products")
    ul = doc.find("ul", id="product-list")
    assert [a.attrs["href"] for a in ul.find_all("a")] == ["/products/public"]
    _, text, doc = c.page("/products/public")
    assert_layout(doc)
    main = doc.find("main", id="main")
    assert "For everyone" in main.get_text()
    assert sorted(a.attrs["href"] for a in main.find("ul", class_="product-apis").find_all("a")) == \
        ["/apis/echo", "/apis/shop"]
    assert "nice" in main.find("div", class_="terms").get_text()
    # a guest cannot subscribe: no form, a sign-in link instead
    assert doc.find("form", id="subscribe-form") is None
    assert main.find("a", href="/signin") is not None


def test_api_reference(site, backend):
    p, c = site
    h, text, doc = c.page("/apis/shop")
    assert_layout(doc)
    assert_no_inline(text, "/apis/shop")
    main = doc.find("main", id="main")
    assert doc.find("h1").get_text() == "Shop API"
    assert "lines" in main.find("div", class_="markdown").get_text()  # the description (Markdown)
    sections = main.find_all("section", class_="operation")
    assert sorted(s.attrs["id"] for s in sections) == ["op-create-order", "op-get-order"]
    get = main.find("section", id="op-get-order")
    assert get.find("span", class_="method").get_text() == "GET"
    gw = p.config["portal"]["gatewayUrl"]
    assert get.find("code", class_="url-template").get_text() == gw + "/shop/v1/orders/{orderId}"
    # parameters: path, query and header, with their descriptions and allowed values
    rows = [[td.get_text() for td in tr.find_all("td")] for tr in get.find("table", class_="parameters").find_all("tr")
            if tr.find("td")]
    by_name = {r[0]: r for r in rows}
    assert by_name["orderId"][1:4] == ["path", "integer", "yes"]
    assert by_name["expand"][1] == "query" and "lines" in by_name["expand"][4]
    assert by_name["X-Trace"][1] == "header" and "A trace id" in by_name["X-Trace"][4]
    # the response schema as a nested tree: arrays of objects, dictionaries, enums, alternatives, recursion
    tree = get.find("div", class_="schema")
    props = [s.get_text() for s in tree.find_all("span", class_="prop")]
    for want in ("Order", "id", "lines", "[item]", "sku", "quantity", "labels", "status", "parent", "payment",
                 "option 1", "last4"):
        assert want in props, (want, props)
    types = " | ".join(s.get_text() for s in tree.find_all("span", class_="type"))
    assert "array of Line" in types and "map of string to string" in types and "integer (int64)" in types
    assert '"open"' in types and "^[0-9]{4}$" in types
    assert "required" in [s.get_text() for s in tree.find_all("span", class_="req")]
    # the recursive type is shown by name and not expanded forever
    assert props.count("parent") == 1
    # the response's header and example
    assert "X-Remaining" in get.get_text()
    example = json.loads(get.find("div", class_="response").find("pre").get_text())
    assert example == {"id": 7, "lines": []}
    # code samples: the gateway URL, the API's path and its key header with a placeholder key
    samples = {pre.attrs["data-lang"]: pre.get_text() for pre in get.find_all("pre", class_="sample")}
    assert set(samples) == {"curl", "python", "javascript"}
    for lang, code in samples.items():
        assert gw + "/shop/v1/orders/7" in code, (lang, code)
        assert "X-Shop-Key" in code and "<your-subscription-key>" in code, (lang, code)
    # the request body of create-order is the example, in every language
    create = main.find("section", id="op-create-order")
    for pre in create.find_all("pre", class_="sample"):
        assert "UMB-1" in pre.get_text()
    # download links: the formats this API has, each a working download
    downloads = sorted(a.attrs["href"] for a in main.find_all("a", class_="download"))
    assert downloads == sorted("/apis/shop/definition?format=" + f
                               for f in ("openapi", "openapi%2Bjson", "swagger", "wsdl", "graphql"))
    for href in downloads:
        st, hh, _ = c.get(href)
        assert st == 200 and hh["content-disposition"].startswith("attachment;"), (href, st, hh)


def test_code_samples_run_against_the_gateway(site, backend, workdir):
    """The curl and Python samples of the echo API are real programs: they reach the backend."""
    p, c = site
    _, _, doc = c.page("/apis/echo")
    create = doc.find("section", id="op-create-item")
    samples = {pre.attrs["data-lang"]: pre.get_text() for pre in create.find_all("pre", class_="sample")}
    py = os.path.join(workdir, "sample.py")
    with open(py, "w") as f:
        f.write(samples["python"])
    r = subprocess.run([sys.executable, py], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("200"), (r.stdout, r.stderr)
    wait_for(lambda: [q for q in backend.requests if q.method == "POST"], what="the Python sample's call")
    r = subprocess.run(["sh", "-c", samples["curl"].replace("curl ", "curl -s -o /dev/null -w '%{http_code}' ", 1)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "200", (r.stdout, r.stderr, samples["curl"])
    posts = wait_for(lambda: len([q for q in backend.requests if q.method == "POST"]) == 2 and
                     [q for q in backend.requests if q.method == "POST"], what="the curl sample's call")
    for q in posts:
        assert q.target == "/base/items", q.target
        assert json.loads(q.body) == {"name": "it's \"quoted\""}, q.body


def test_operation_page_and_console_for_guests(site):
    p, c = site
    h, text, doc = c.page("/apis/shop/operations/get-order")
    assert_layout(doc)
    assert doc.find("h1").get_text() == "Get an order"
    assert doc.find("section", id="op-get-order") is not None
    # a guest sees no console, a way to sign in instead
    assert doc.find("form", id="console") is None
    assert "sign in to try it" in doc.find("main", id="main").get_text()


def test_downloads_are_the_served_definition(site):
    p, c = site
    gw = p.config["portal"]["gatewayUrl"]
    st, h, body = c.get("/apis/shop/definition?format=openapi")
    assert st == 200 and h["content-type"].startswith("application/yaml")
    assert h["content-disposition"] == 'attachment; filename="shop.openapi.yaml"'
    doc = yaml.safe_load(body)
    assert doc["openapi"].startswith("3.0")
    assert doc["servers"][0]["url"] == gw + "/shop/v1"
    assert doc["paths"]["/orders/{orderId}"]["get"]["operationId"] == "get-order"
    assert doc["paths"]["/orders"]["post"]["operationId"] == "create-order"
    assert "Order" in doc["components"]["schemas"]
    st, h, body = c.get("/apis/shop/definition?format=openapi%2Bjson")
    j = json.loads(body)
    assert st == 200 and j == doc  # the same document in JSON
    st, h, body = c.get("/apis/shop/definition?format=swagger")
    s = json.loads(body)
    assert st == 200 and s["swagger"] == "2.0" and "/orders/{orderId}" in s["paths"]
    assert h["content-disposition"] == 'attachment; filename="shop.swagger.json"'
    st, h, body = c.get("/apis/shop/definition?format=wsdl")
    assert st == 200 and body.startswith(b"<definitions") and h["content-type"].startswith("text/xml")
    st, h, body = c.get("/apis/shop/definition?format=graphql")
    assert st == 200 and b"type Query" in body
    # formats the API has no document for, and unknown ones, are 404
    for bad in ("wsdl", "graphql", "pdf", "../../etc/passwd"):
        st, _, _ = c.get("/apis/echo/definition?format=" + bad.replace("/", "%2F"))
        assert st == 404, bad
    # the echo page links only what exists
    _, _, d = c.page("/apis/echo")
    fmts = sorted(a.attrs["href"].split("=")[1] for a in d.find_all("a", class_="download"))
    assert fmts == ["openapi", "openapi%2Bjson", "swagger"]


def test_pages_terms_and_flash_are_escaped(site):
    p, c = site
    _, text, doc = c.page("/pages/about")
    assert doc.find("h1").get_text() == "About us"
    assert "us" in doc.find("div", class_="page").get_text()
    assert "<script" not in text.split("<main", 1)[1]
    _, text, doc = c.page("/pages/unlisted")
    assert "not in the menu" in doc.find("main", id="main").get_text()
    _, text, doc = c.page("/terms")
    assert "The terms." in doc.find("main", id="main").get_text()
    # a flash cookie is shown once, as text
    st, h, body = c.get("/", headers={"Cookie": "pt_flash=Saved%20%3Cscript%3Ealert(1)%3C%2Fscript%3E"})
    d = dom(body.decode())
    flash = d.find("p", id="flash")
    assert flash is not None and flash.attrs.get("role") == "status"
    assert flash.get_text() == "Saved <script>alert(1)</script>"
    assert "<script>alert" not in body.decode()
    assert "pt_flash=;" in h.get("set-cookie", "") and "Max-Age=0" in h.get("set-cookie", "")


def test_theme_css_is_css_only(site):
    p, c = site
    _, text, doc = c.page("/")
    links = [l.attrs["href"] for l in doc.find_all("link", rel="stylesheet")]
    theme = [l for l in links if l.startswith("/theme.css?v=")]
    assert len(theme) == 1, links
    # customCss is never in the HTML: a separate text/css answer
    assert "alert(1)" not in text and ".x { color: blue }" not in text
    st, h, body = c.get(theme[0])
    css = body.decode()
    assert st == 200 and h["content-type"].startswith("text/css")
    assert h["x-content-type-options"] == "nosniff"
    assert "--pt-primary: #123456;" in css
    assert ".x { color: blue }" in css
    # the versioned URL is cached for long, another version is revalidated
    assert "immutable" in h["cache-control"]
    st, h, _ = c.get("/theme.css?v=old")
    assert st == 200 and h["cache-control"] == "no-cache"


def test_theme_values_cannot_leave_their_declaration(backend, portico):
    """A color or font that would end its declaration is refused by the configuration's checks, or left
    out of /theme.css; customCss that would close a <style> never reaches a page either way."""
    cfg = portal_config(backend.url)
    cfg["portal"]["site"]["colors"] = {"primary": "#123456", "text": "red; } body { display: none"}
    cfg["portal"]["site"]["fonts"] = {"body": "x; } * { content: 'pwned'"}
    p = portico(cfg, start=False)
    rc, out = p.check()
    if rc != 0:
        assert "not a color" in out or "colors" in out, out
        return
    p.start()
    c = Client(p.portal_url)
    _, text, doc = c.page("/")
    theme = [l.attrs["href"] for l in doc.find_all("link", rel="stylesheet") if l.attrs["href"].startswith("/theme")]
    st, h, body = c.get(theme[0])
    css = body.decode()
    assert st == 200 and "display: none" not in css and "pwned" not in css and "--pt-text" not in css
    assert "--pt-primary: #123456;" in css


def test_assets_hashed_cached_gzipped(site):
    p, c = site
    _, _, doc = c.page("/")
    css = [l.attrs["href"] for l in doc.find_all("link", rel="stylesheet") if l.attrs["href"].startswith("/assets/")]
    assert len(css) == 1 and re.match(r"^/assets/portal\.[0-9a-f]{10}\.css$", css[0]), css
    st, h, plain = c.get(css[0])
    assert st == 200 and h["content-type"].startswith("text/css")
    assert h["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-encoding" not in h
    # the hash in the URL is the content's
    assert hashlib.sha256(plain).hexdigest()[:10] == css[0].split(".")[1]
    assert b"--pt-primary" in plain  # CSS variables
    st, hz, zipped = c.get(css[0], headers={"Accept-Encoding": "gzip, deflate"})
    assert st == 200 and hz["content-encoding"] == "gzip" and "accept-encoding" in hz["vary"].lower()
    assert gzip.decompress(zipped) == plain and len(zipped) < len(plain)
    # each encoding is its own representation: its own ETag, each revalidates
    assert hz["etag"] != h["etag"]
    st, _, body = c.get(css[0], headers={"Accept-Encoding": "gzip", "If-None-Match": hz["etag"]})
    assert st == 304 and body == b""
    st, hz, body = c.get(css[0], headers={"Accept-Encoding": "gzip;q=0"})
    assert st == 200 and "content-encoding" not in hz and body == plain
    # ETag revalidation
    st, h2, body = c.get(css[0], headers={"If-None-Match": h["etag"]})
    assert st == 304 and body == b""
    # the plain name is served too, revalidated
    st, h3, body = c.get("/assets/portal.css")
    assert st == 200 and body == plain and h3["cache-control"] == "no-cache"
    # the script the pages load exists and is JavaScript
    scripts = [s.attrs["src"] for s in doc.find_all("script")]
    assert scripts and all(s.startswith("/assets/") for s in scripts)
    st, h, _ = c.get(scripts[0])
    assert st == 200 and h["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("path", [
    "/assets/..%2f..%2fetc%2fpasswd", "/assets/..%2F..%2F..%2Fetc%2Fpasswd", "/assets/%2e%2e/%2e%2e/etc/passwd",
    "/assets/../../etc/passwd", "/assets/./portal.css", "/assets/portal.css%00.js", "/assets/..\\..\\etc\\passwd",
    "/assets/%5c..%5cetc",
])
def test_asset_path_traversal_is_refused(site, path):
    p, c = site
    # sent as is (http.client does not normalise the path)
    st, h, body = c.get(path)
    assert st in (400, 404), (path, st)
    assert b"root:" not in body
    assert_secure_headers(h, path)


@pytest.mark.parametrize("path", ["/assets/.hidden", "/assets/nope.css", "/assets/portal.0000000000.txt",
                                  "/assets/portal", "/assets/"])
def test_unknown_assets_are_404(site, path):
    p, c = site
    st, _, _ = c.get(path)
    assert st == 404, path


def test_theme_dir_overrides_shipped_assets_without_restart(backend, portico, workdir):
    theme = os.path.join(workdir, "theme")
    os.mkdir(theme)
    with open(os.path.join(theme, "portal.css"), "w") as f:
        f.write(":root { --pt-primary: #ff00ff; } /* provider v1 */\n")
    cfg = portal_config(backend.url, themeDir="theme")
    p = portico(cfg)
    c = Client(p.portal_url)

    def css_url():
        _, _, doc = c.page("/")
        return [l.attrs["href"] for l in doc.find_all("link", rel="stylesheet")
                if l.attrs["href"].startswith("/assets/")][0]
    first = css_url()
    st, _, body = c.get(first)
    assert st == 200 and b"provider v1" in body
    with open(os.path.join(theme, "portal.css"), "w") as f:
        f.write(":root { --pt-primary: #00ff00; } /* provider v2, a longer file */\n")
    # picked up within a second or two, with a new hashed URL
    second = wait_for(lambda: css_url() != first and css_url(), timeout=5, what="the new theme file")
    st, _, body = c.get(second)
    assert st == 200 and b"provider v2" in body
    # the old URL no longer promises the old content forever
    st, h, body = c.get(first)
    assert st == 200 and h["cache-control"] == "no-cache" and b"provider v2" in body
    # a file of the theme that is not an asset type is never served
    with open(os.path.join(theme, "notes.md"), "w") as f:
        f.write("private")
    # templates: the footer and a banner, with the site's title escaped; never served as files
    with open(os.path.join(theme, "footer.html"), "w") as f:
        f.write('<p class="provider-footer">(c) {{siteTitle}} {{year}}{{terms}} {{unknown}}</p>')
    with open(os.path.join(theme, "banner.html"), "w") as f:
        f.write('<div class="provider-banner">Maintenance tonight</div>')

    def footer():
        _, text, doc = c.page("/")
        f = doc.find("p", class_="provider-footer")
        return f and (text, doc, f)
    text, doc, f = wait_for(footer, timeout=5, what="the provider's footer")
    assert f.get_text().startswith("(c) Acme <APIs> 20") and "{{unknown}}" in f.get_text()
    assert "Acme &lt;APIs&gt;" in text
    assert f.find("a", href="/terms") is not None
    assert doc.find("div", class_="provider-banner").get_text() == "Maintenance tonight"
    for name in ("notes.md", "footer.html", "banner.html"):
        assert c.get("/assets/" + name)[0] == 404, name


def test_require_signin(backend, portico):
    cfg = portal_config(backend.url)
    cfg["portal"]["site"]["requireSignin"] = True
    p = portico(cfg)
    c = Client(p.portal_url)
    for path in ("/", "/apis", "/apis/echo", "/products", "/products/public", "/pages/about",
                 "/apis/echo/definition?format=openapi", "/apis/nope"):
        st, h, _ = c.get(path)
        assert st == 303 and h["location"] == "/signin", (path, st, h)
        assert_secure_headers(h, path)
    # what a guest needs to sign in stays open
    for path in ("/terms", "/theme.css", "/assets/portal.css"):
        st, _, _ = c.get(path)
        assert st == 200, path
    for path in ("/signin", "/signup", "/confirm?token=x", "/reset-password", "/invitation", "/media/x"):
        st, h, _ = c.get(path)
        assert st != 303, path  # never sent round in circles


def test_security_headers_on_every_answer(site):
    p, c = site
    paths = ["/", "/apis", "/apis/shop", "/apis/shop/operations/get-order", "/products", "/products/public",
             "/pages/about", "/terms", "/theme.css", "/assets/portal.css", "/apis/shop/definition?format=openapi",
             "/nope", "/products/draft"]
    for path in paths:
        st, h, body = c.get(path)
        assert_secure_headers(h, path)
        assert h.get("x-frame-options") == "DENY", path
        if h["content-type"].startswith("text/html"):
            assert_no_inline(body.decode(), path)
    st, h, body = c.request("HEAD", "/apis/shop")
    assert st == 200 and body == b"" and h["content-security-policy"] == CSP


def test_https_listener(backend, portico, workdir):
    from tls_helpers import Pki, client_context
    pki = Pki(workdir)
    cert, key = pki.leaf("portal", "localhost", sans=("DNS:localhost", "IP:127.0.0.1"))
    cfg = portal_config(backend.url, certificate=cert, key=key)
    p = portico(cfg)
    assert p.portal_url.startswith("https://")
    c = Client(p.portal_url, context=client_context(pki.ca))
    h, text, doc = c.page("/apis/shop")
    assert_layout(doc)
    assert "max-age" in h.get("strict-transport-security", "")
    # a cookie the portal sets over HTTPS is Secure
    st, h, _ = c.get("/", headers={"Cookie": "pt_flash=hi"})
    assert "Secure" in h["set-cookie"] and "HttpOnly" in h["set-cookie"] and "SameSite=Lax" in h["set-cookie"]
    # plain HTTP on the HTTPS port gets no page
    port = int(cfg["portal"]["listen"].rsplit(":", 1)[1])
    out = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)
    assert b"<html" not in out


def alive(c):
    st, _, _ = c.get("/")
    return st == 200


def test_bad_requests_get_clean_4xx(site):
    p, c = site
    port = int(p.config["portal"]["listen"].rsplit(":", 1)[1])
    # methods the portal does not serve
    for m in ("DELETE", "PUT", "PATCH", "OPTIONS"):
        st, h, _ = c.request(m, "/apis")
        assert st == 405 and "GET" in h.get("allow", ""), (m, st)
    st, _, _ = c.request("POST", "/apis", body=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 405
    # a method nobody knows: 501 Not Implemented (RFC 9110 15.6.2), from the HTTP parser
    out = raw_exchange(port, b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert re.match(rb"HTTP/1\.[01] (4\d\d|501)", out), out[:100]
    # a huge header block
    out = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", timeout=3)
    assert re.match(rb"HTTP/1\.[01] 4\d\d", out), out[:100]
    # a huge body (past the media limit and the form limit): refused on its Content-Length
    out = raw_exchange(port, b"POST /apis HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                       b"Content-Length: %d\r\n\r\na=b" % (2 * 1024 * 1024), timeout=5)
    assert re.match(rb"HTTP/1\.[01] 413", out), out[:100]
    # a path past the bound, a NUL, a bad query, garbage
    st, _, _ = c.get("/apis/" + "a" * 5000)
    assert st == 414
    st, _, _ = c.get("/apis/%00")
    assert st == 400
    st, _, _ = c.get("/apis?q=%zz")
    assert st in (200, 400)
    out = raw_exchange(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n", timeout=3)
    assert out == b"" or re.match(rb"HTTP/1\.[01] 4\d\d", out), out[:100]
    out = raw_exchange(port, b"GET /" + b"/" * 100 + b"apis HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert re.match(rb"HTTP/1\.[01] (200|404)", out), out[:100]
    # still serving, and nothing crashed
    assert alive(c)
    assert p.proc.poll() is None


def test_reload_applies_content_and_warns_for_start_only_keys(backend, portico):
    cfg = portal_config(backend.url)
    p = portico(cfg)
    c = Client(p.portal_url)
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["portal"]["site"]["title"] = "Renamed portal"
    assert p.reload(cfg2)
    wait_for(lambda: "Renamed portal" in c.page("/")[1], what="the new title after a reload")
    # the listener is read at start only: the old one keeps serving, and the log says so
    cfg3 = json.loads(json.dumps(cfg2))
    cfg3["portal"]["listen"] = "127.0.0.1:%d" % free_port()
    assert p.reload(cfg3)
    assert "read at start only" in p.log_text()
    assert c.get("/")[0] == 200


def test_hostile_schemas_render_bounded(backend, portico):
    """Schemas that hold themselves, fan out, nest deep or point nowhere: the reference still renders,
    quickly and bounded."""
    deep = {"type": "string"}
    for i in range(14):  # deeper than the tree draws (the configuration allows about this much)
        deep = {"type": "object", "properties": {"level%d" % i: deep}}
    wide = {"type": "object", "properties": {"p%d" % i: {"$ref": "#/components/schemas/Wide"} for i in range(40)}}
    schemas = {"components": {"schemas": {
        "Loop": {"type": "array", "items": {"$ref": "#/components/schemas/Loop"}},
        "Map": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Map"}},
        "Wide": wide, "Deep": deep,
        "Broken": {"type": "object", "properties": {"x": {"$ref": "#/components/schemas/Nowhere"},
                                                    "y": {"$ref": "http://example.com/elsewhere"}}},
    }}}
    cfg = portal_config(backend.url)
    cfg["apis"].append({
        "id": "weird", "path": "weird", "displayName": "Weird", "serviceUrl": backend.url,
        "schemas": [{"id": "s", "contentType": "application/vnd.oai.openapi.components+json", "document": schemas}],
        "operations": [{"id": "w", "method": "POST", "urlTemplate": "/w",
                        "request": {"representations": [{"contentType": "application/json", "schemaId": "s",
                                                         "typeName": "Wide"}]},
                        "responses": [{"statusCode": 200, "representations": [
                            {"contentType": "application/json", "schemaId": "s", "typeName": name}
                            for name in ("Loop", "Map", "Deep", "Broken")]}]}]})
    cfg["products"][0]["apis"].append("weird")
    p = portico(cfg)
    c = Client(p.portal_url)
    t = time.time()
    st, h, body = c.get("/apis/weird")
    assert st == 200, body[:300]
    assert time.time() - t < 5
    assert len(body) < 2 * 1024 * 1024
    text = body.decode()
    assert text.count('<span class="prop">p39</span>') == 1  # the wide recursive type is named, not unfolded
    assert "array of" in text and "map of string to" in text
    assert "level13" in text and "level0" not in text  # nesting stops at the tree's depth
    for path in ("/apis/weird/operations/w", "/apis/weird/definition?format=openapi"):
        assert c.get(path)[0] == 200, path
    assert alive(c)


# ------------------------------------------- signed-in visitors (with accounts)

ADMIN_TOKEN = "portal-browse-admin-token"


class Browser(Client):
    """A client with cookies, for the signed-in tests."""

    def __init__(self, base, context=None):
        super().__init__(base, context)
        self.cookies = {}
        self.last = ""

    def request(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = cookie_header(self.cookies)
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            keep_cookies(self.cookies, r.headers.get_all("Set-Cookie") or [])
            self.last = data.decode(errors="replace")
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def post_form(self, path, form, page):
        """POSTs a form with the CSRF token of `page` (fetched first)."""
        self.get(page)
        token = csrf_of(self.last)
        assert token, "no CSRF token on %s" % page
        form = dict(form, csrf=token)
        return self.request("POST", path, urllib.parse.urlencode(form).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture
def accounts(backend, portico, workdir):
    """The site with accounts: a developer, a partner developer and an administrator (skipped while the
    portal has no sign-in)."""
    cfg = portal_config(backend.url)
    outbox = os.path.join(workdir, "outbox")
    cfg["portal"]["mail"] = {"outbox": outbox}
    cfg["users"] = [{"id": "admin", "email": "admin@example.com", "firstName": "Ada", "lastName": "Admin",
                     "groups": ["administrators"]}]
    p = portico(cfg, env={"PORTICO_ADMIN_TOKEN": ADMIN_TOKEN})
    if Client(p.portal_url).get("/signin")[0] == 404:
        pytest.skip("the portal has no sign-in yet (portal-accounts not merged)")

    def developer(mail):
        b = Browser(p.portal_url)
        before = mail_paths(workdir)
        st, h, _ = b.post_form("/signup", {"email": mail, "password": PASSWORD, "firstName": "Dev",
                                           "lastName": "Eloper", "terms": "on"}, "/signup")
        assert st in (200, 303), b.last[:500]
        link = path_of(last_mail(workdir, mail, after=before)[2])
        b.get(link)
        st, h, _ = b.post_form("/confirm", {"token": token_of(link)}, link)
        assert st == 303, b.last[:500]
        st, h, _ = b.post_form("/signin", {"email": mail, "password": PASSWORD}, "/signin")
        assert st == 303, b.last[:500]
        return b

    def admin():
        b = Browser(p.portal_url)
        before = mail_paths(workdir)
        b.post_form("/reset-password", {"email": "admin@example.com"}, "/reset-password")
        link = path_of(last_mail(workdir, "admin@example.com", after=before)[2])
        st, _, _ = b.post_form("/reset-password/confirm", {"token": token_of(link), "password": PASSWORD}, link)
        assert st == 303, b.last[:500]
        st, _, _ = b.post_form("/signin", {"email": "admin@example.com", "password": PASSWORD}, "/signin")
        assert st == 303, b.last[:500]
        return b
    return p, developer, admin


def visible(b):
    _, _, body = b.get("/products")
    prods = sorted(a.attrs["href"] for a in dom(body.decode()).find("ul", id="product-list").find_all("a"))
    _, _, body = b.get("/apis")
    apis = sorted(a.attrs["href"] for a in dom(body.decode()).find("ul", id="api-list").find_all("a"))
    return prods, apis


def test_developers_see_their_groups_products(accounts, backend):
    p, developer, admin = accounts
    dev = developer("dev@example.com")
    prods, apis = visible(dev)
    assert prods == ["/products/devs", "/products/public"], prods
    assert apis == ["/apis/devapi", "/apis/echo", "/apis/shop"], apis
    for path in ("/products/draft", "/products/partners", "/products/nogroups", "/apis/partnerapi",
                 "/apis/draftapi", "/apis/orphan", "/pages/staff"):
        assert dev.get(path)[0] == 404, path
    _, _, body = dev.get("/products/public")
    d = dom(body.decode())
    form = d.find("form", id="subscribe-form")
    assert form is not None and form.find("input", name="csrf").attrs.get("value")
    assert d.find("a", id="profile-link") is not None and d.find("form", id="signout-form") is not None
    assert d.find("a", id="admin-link") is None and d.find("a", id="signin-link") is None
    _, _, body = dev.get("/apis/shop/operations/get-order")
    assert dom(body.decode()).find("form", id="console") is not None
    # a developer added to the partners group (management API) sees the partners' product
    m = Mgmt(p, token=ADMIN_TOKEN)
    users = m.ok("GET", "users")
    items = users["value"] if isinstance(users, dict) else users
    uid = [u["id"] for u in items if u.get("email") == "dev@example.com"][0]
    m.ok("PUT", "groups/partners/users/" + uid)
    prods, apis = wait_for(lambda: "/products/partners" in visible(dev)[0] and visible(dev),
                           what="the partners' product")
    assert prods == ["/products/devs", "/products/partners", "/products/public"], prods
    assert "/apis/partnerapi" in apis


def test_administrators_see_everything(accounts):
    p, developer, admin = accounts
    a = admin()
    prods, apis = visible(a)
    assert prods == ["/products/devs", "/products/draft", "/products/nogroups", "/products/partners",
                     "/products/public"], prods
    assert apis == ["/apis/devapi", "/apis/draftapi", "/apis/echo", "/apis/orphan", "/apis/partnerapi",
                    "/apis/shop"], apis
    for path in ("/products/draft", "/apis/orphan", "/apis/draftapi/definition?format=openapi", "/pages/staff"):
        assert a.get(path)[0] == 200, path
    _, _, body = a.get("/")
    d = dom(body.decode())
    assert d.find("a", id="admin-link") is not None
    assert "/pages/staff" in [x.attrs["href"] for x in d.find("nav", id="menu").find_all("a")]


def test_allof_fan_out_renders_bounded_and_control_thread_answers(backend, portico):
    """The attack: allOf parts that point back at their own schema (x20), and an 8-level chain of schemas
    each made of 20 allOf parts of the next. Unbounded, the first view of the API makes ~20^9 calls and
    hangs the control thread (portal and management API)."""
    comps = {"Self": {"allOf": [{"$ref": "#/components/schemas/Self"}] * 20 +
                      [{"type": "object", "properties": {"own": {"type": "string"}}}]}}
    for i in range(8):
        comps["C%d" % i] = {"allOf": [{"$ref": "#/components/schemas/C%d" % (i + 1)}] * 20}
    comps["C8"] = {"type": "object", "properties": {"leaf": {"type": "integer"}}}
    cfg = portal_config(backend.url)
    cfg["apis"].append({
        "id": "fan", "path": "fan", "displayName": "Fan", "serviceUrl": backend.url,
        "schemas": [{"id": "s", "contentType": "application/vnd.oai.openapi.components+json",
                     "document": {"components": {"schemas": comps}}}],
        "operations": [{"id": "f", "method": "POST", "urlTemplate": "/f",
                        "request": {"representations": [{"contentType": "application/json", "schemaId": "s",
                                                         "typeName": "Self"}]},
                        "responses": [{"statusCode": 200, "representations": [
                            {"contentType": "application/json", "schemaId": "s", "typeName": "C0"}]}]}]})
    cfg["products"][0]["apis"].append("fan")
    p = portico(cfg)
    c = Client(p.portal_url)
    t = time.time()
    st, _, body = c.get("/apis/fan")
    took = time.time() - t
    assert st == 200, body[:300]
    assert took < 15, took  # unbounded it would not end; bounded it takes milliseconds
    text = body.decode()
    assert '<span class="prop">own</span>' in text  # the self-made part's own property is shown, once
    assert text.count('<span class="prop">own</span>') == 1
    assert '<span class="prop">leaf</span>' in text
    assert len(body) < 2 * 1024 * 1024
    # the control thread is free: the management API answers at once
    port = int(cfg["management"]["listen"].rsplit(":", 1)[1])
    t = time.time()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    conn.request("GET", "/management/apis")
    assert conn.getresponse().status in (200, 401, 403)
    assert time.time() - t < 2
    assert alive(c)
