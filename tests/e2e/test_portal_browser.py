"""The developer portal's user scenarios (issue 12) in a real browser.

Headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)
against the real portico binary with its portal listener, a real backend
behind the gateway, the real store and the mail outbox folder.  One test per
scenario: a guest, a developer, an administrator.  Every page visited is
also checked (browser.py): no request outside the portal's origin, no
console error (a CSP violation shows there), no serious or critical axe-core
finding, no sideways scrolling at phone width; screenshots at desktop and
phone width go to <build>/tests/e2e/artifacts/portal/.

The URLs, forms and element ids are those of the portal's contract
(docs/portal.md).  One portal and one browser serve the whole module; each
test makes its own users, so a test also runs alone (-k).  Tools missing:
skipped with a message, except under CI, where that fails.
PORTICO_SKIP_BROWSER=1 skips the module (the sanitizer pass of .ci/run).
"""

import http.client
import json
import os
import re
import shutil
import struct
import tempfile
import time
import zlib

import pytest

from backends import EchoBackend, stop_server
from browser import Browser, Outbox, artifacts_dir, missing_tools
from conftest import Portico, free_port, wait_for
from mgmt_helpers import TOKEN, Mgmt

# Skips mark every test rather than the module: a module skipped whole collects no test, and pytest
# then exits 5, which `make check` counts as a failure.
_why = None
if os.environ.get("PORTICO_SKIP_BROWSER"):
    _why = "PORTICO_SKIP_BROWSER is set (the sanitizer pass runs no browser)"
else:
    _missing = missing_tools()
    if _missing:
        _why = "browser tests need: " + "; ".join(_missing) + " (see docs/testing.md)"
        if os.environ.get("CI"):
            raise RuntimeError(_why)  # CI must run them: a missing tool fails the file
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

ADMIN_EMAIL = "admin@example.com"
SITE_TITLE = "Acme APIs"
HOME_MD = "# Welcome to Acme\n\nBuild with the **Echo API** and the catalog.\n"
TERMS_MD = "Be kind to the *echo* backend."
LOAD_BOUND_MS = 5000  # the issue wants < 1 s on loopback; only a generous bound is asserted
CATALOG_SDL = "type Query {\n  items(first: Int): [Item!]!\n}\n\ntype Item {\n  id: ID!\n  name: String\n}\n"

ORDERS_WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:tns="urn:orders" targetNamespace="urn:orders"
    name="Orders">
  <wsdl:portType name="OrdersPort">
    <wsdl:operation name="GetOrder"/>
  </wsdl:portType>
</wsdl:definitions>
"""

STOCK_PROTO = """// Stock levels, streamed as they change.
syntax = "proto3";
package stock.v1;

// Tells and watches the stock of an item.
service Stock {
  // The level now.
  rpc GetLevel(Item) returns (Level);
  // Every change from now on.
  rpc WatchLevels(Item) returns (stream Level);
}

message Item { string sku = 1; }
message Level { string sku = 1; int64 count = 2; }
"""

ITEM_SCHEMA = {"type": "object", "required": ["id", "name"],
               "properties": {"id": {"type": "integer", "description": "The item's number"},
                              "name": {"type": "string", "example": "Widget"},
                              "price": {"type": "number", "minimum": 0},
                              "tags": {"type": "array", "items": {"type": "string"}}}}


def echo_api(backend):
    """A documented API: parameters, request and response representations
    with schemas and examples."""
    return {
        "id": "echo", "displayName": "Echo API", "path": "echo", "serviceUrl": backend.url + "/base",
        "description": "Answers with what it **received**.", "subscriptionRequired": True,
        "operations": [
            {"id": "get-item", "displayName": "Get an item", "method": "GET", "urlTemplate": "/items/{id}",
             "description": "Reads one item by its number.",
             "templateParameters": [{"name": "id", "type": "integer", "required": True,
                                     "description": "The item's number"}],
             "request": {"queryParameters": [{"name": "verbose", "type": "boolean",
                                              "description": "Adds the item's history"}],
                         "headers": [{"name": "X-Request-Id", "type": "string", "required": False}]},
             "responses": [
                 {"statusCode": 200, "description": "The item",
                  "representations": [{"contentType": "application/json", "schema": ITEM_SCHEMA,
                                       "examples": {"default": {"value": {"id": 42, "name": "Widget",
                                                                          "price": 9.5, "tags": ["blue"]}}}}]},
                 {"statusCode": 404, "description": "No such item"}]},
            {"id": "create-item", "displayName": "Create an item", "method": "POST", "urlTemplate": "/items",
             "description": "Adds an item.",
             "request": {"description": "The new item", "representations": [
                 {"contentType": "application/json", "schema": ITEM_SCHEMA,
                  "examples": {"default": {"value": {"id": 7, "name": "Gadget"}}}}]},
             "responses": [{"statusCode": 201, "description": "Created"}]},
            {"id": "anything", "displayName": "Any call", "method": "*", "urlTemplate": "/*",
             "description": "Any other path."},
        ]}


def portal_config(backend, workdir):
    gw, mg, pp = free_port(), free_port(), free_port()
    return {
        "listen": ["127.0.0.1:%d" % gw],
        "workers": 1,
        "data": os.path.join(workdir, "data"),
        "management": {"listen": "127.0.0.1:%d" % mg, "adminToken": TOKEN},
        "analytics": {"flushInterval": "200ms"},
        "portal": {
            "listen": "127.0.0.1:%d" % pp,
            "mail": {"from": "Acme portal <portal@localhost>", "outbox": os.path.join(workdir, "outbox")},
            # no site or pages here: content the file declares is the file's,
            # and the administrator's scenario changes it in the browser
        },
        "apis": [
            echo_api(backend),
            {"id": "catalog", "displayName": "Catalog GraphQL", "path": "catalog", "apiType": "graphql",
             "serviceUrl": backend.url + "/gql", "subscriptionRequired": True,
             "description": "The catalog as a graph.",
             "schemas": [{"id": "sdl", "contentType": "application/vnd.ms-azure-apim.graphql.schema",
                          "value": CATALOG_SDL}]},
            {"id": "orders", "displayName": "Orders SOAP", "path": "orders", "serviceUrl": backend.url + "/soap",
             "subscriptionRequired": True, "description": "Orders, described by a WSDL.",
             "schemas": [{"id": "wsdl", "contentType": "application/vnd.ms-azure-apim.wsdl+xml",
                          "value": ORDERS_WSDL}],
             "operations": [{"id": "get-order", "displayName": "GetOrder", "method": "POST", "urlTemplate": "/",
                             "description": "SOAP action GetOrder."}]},
            {"id": "stock", "displayName": "Stock gRPC", "path": "stock", "serviceUrl": backend.url,
             "subscriptionRequired": True, "import": {"format": "grpc", "value": STOCK_PROTO}},
            {"id": "secret-api", "displayName": "Secret API", "path": "secret", "serviceUrl": backend.url,
             "subscriptionRequired": True,
             "operations": [{"id": "all", "method": "*", "urlTemplate": "/*"}]},
        ],
        "products": [
            {"id": "starter", "displayName": "Starter", "description": "Free access to the Echo API.",
             "state": "published", "subscriptionRequired": True, "approvalRequired": False,
             "terms": "Starter terms: 100 calls a day.", "apis": ["echo", "catalog", "orders", "stock"],
             "groups": ["guests", "developers"]},
            {"id": "premium", "displayName": "Premium", "description": "More calls, after approval.",
             "state": "published", "subscriptionRequired": True, "approvalRequired": True, "apis": ["echo"],
             "groups": ["developers"]},
            {"id": "internal", "displayName": "Internal", "description": "Staff only.", "state": "published",
             "subscriptionRequired": True, "apis": ["secret-api"], "groups": ["administrators"]},
        ],
        "users": [{"id": "admin", "email": ADMIN_EMAIL, "firstName": "Ada", "lastName": "Admin",
                   "groups": ["administrators"]}],
    }


class World:
    """The portal under test, its outbox, its management API and the browser."""

    def __init__(self, backend, p, browser, outbox, mgmt):
        self.backend, self.p, self.b, self.outbox, self.mgmt = backend, p, browser, outbox, mgmt
        self.admin_password = None
        self.gateway_port = p.port

    def subscriptions(self):
        return self.mgmt.ok("GET", "subscriptions")["value"]

    def subscription(self, sid):
        return self.mgmt.ok("GET", "subscriptions/%s" % sid)

    def user_by_email(self, addr):
        for u in self.mgmt.ok("GET", "users")["value"]:
            if u.get("email", "").lower() == addr.lower():
                return u
        return None


@pytest.fixture(scope="module")
def world():
    backend = EchoBackend()
    workdir = tempfile.mkdtemp(prefix="portico-browser-")
    os.makedirs(os.path.join(workdir, "data"))
    p = Portico(workdir, portal_config(backend, workdir))
    browser = None
    try:
        p.start()  # a refused configuration raises here, with portico's message
        port = int(p.config["portal"]["listen"].rsplit(":", 1)[1])
        base = "http://127.0.0.1:%d" % port
        wait_for(lambda: _listening(port), 10, "the portal's listener")
        m = Mgmt(p)
        publish_first_content(m)
        browser = Browser(base, artifacts_dir())
        yield World(backend, p, browser, Outbox(p.config["portal"]["mail"]["outbox"], base), m)
    finally:
        if browser is not None:
            browser.close()
        backend.close()
    # the portal ends as it should, without sanitizer reports
    running = p.proc.poll() is None
    rc = p.stop()
    err = p.proc.stderr.read().decode(errors="replace") if p.proc.stderr else ""
    # portico's error log beside the screenshots, for a failure seen in CI
    if os.path.exists(p.error_log):
        shutil.copyfile(p.error_log, os.path.join(artifacts_dir(), "portico-error.log"))
    shutil.rmtree(workdir, ignore_errors=True)
    assert "ERROR: AddressSanitizer" not in err and "runtime error:" not in err, err
    assert running, "portico ended during the browser tests (%s):\n%s" % (rc, err[-3000:])
    assert rc == 0, "portico exited %s on SIGINT:\n%s" % (rc, err[-3000:])


def publish_first_content(m):
    """The provider's first content, through the management API, published
    as revision 1."""
    m.ok("PUT", "portal/site", {"title": SITE_TITLE, "home": HOME_MD, "terms": TERMS_MD})
    m.ok("PUT", "portal/pages/getting-started", {"title": "Getting started", "groups": [], "menuOrder": 1,
                                                 "markdown": "## First steps\n\n1. Sign up\n2. Subscribe\n"})
    m.ok("POST", "portal/revisions", {"comment": "first content"})


def _listening(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/terms")
        c.getresponse().read()
        c.close()
        return True
    except OSError:
        return False


@pytest.fixture
def b(world):
    """The browser, with no signed-in user.  A test ends with
    b.assert_clean(), failing on the page checks' findings; one that failed
    earlier reports them here."""
    world.b.reset()
    world.b.console_errors()  # what an earlier test left in the console
    world.b.problems = []
    world.outbox.skip_all()
    yield world.b
    world.b.assert_clean()


# ------------------------------------------------------------ helpers

def signed_in(b):
    return b.has("#signout-form")


def sign_up(w, addr, password, first, last, shot):
    """Sign-up with the terms accepted, the confirmation mail, confirming."""
    b = w.b
    b.step("sign up as %s" % addr)
    b.visit("/signup", shot + "-signup")
    # the site has terms of use: the form asks for their acceptance
    assert b.has('#signup-form input[type=checkbox][name=terms]'), "sign-up asks no acceptance of the terms"
    fields = {"email": addr, "password": password, "firstName": first, "lastName": last, "terms": True}
    b.submit("#signup-form", fields)
    if b.errors():
        b.fail("sign-up refused: %s" % b.errors())
    b.check_page(shot + "-signed-up")
    b.step("confirmation mail to %s" % addr)
    link = w.outbox.link(addr, "/confirm")
    assert "token=" in link, link
    b.step("confirm %s" % addr)
    b.visit(link, shot + "-confirm")
    b.submit("#confirm-form")
    if b.errors():
        b.fail("confirmation refused: %s" % b.errors())
    u = w.user_by_email(addr)
    assert u is not None and u.get("state") == "active", u


def sign_in(w, addr, password, expect_ok=True):
    b = w.b
    if signed_in(b):
        sign_out(w)
    b.open("/signin")
    b.submit("#signin-form", {"email": addr, "password": password})
    if expect_ok and not signed_in(b):
        b.fail("sign-in of %s failed: %s %s" % (addr, b.errors(), b.flash()))
    if not expect_ok:
        if signed_in(b):
            b.fail("sign-in of %s with a wrong password succeeded" % addr)
        b.console_errors()  # the refusal (a 401 page) is logged there


def sign_out(w):
    if not signed_in(w.b):
        w.b.open("/")  # the page shown may be one a guest saw (guest_view)
    w.b.submit("#signout-form")
    assert not signed_in(w.b), "still signed in after signing out"


def admin_sign_in(w):
    """Signs the declared administrator (users[] in group administrators) in.
    Its first password is set through the forgotten-password mail, which
    the contract gives every active user."""
    b = w.b
    if w.admin_password is None:
        b.step("the administrator sets a password by the reset mail")
        if signed_in(b):
            sign_out(w)
        w.outbox.skip_all()
        b.open("/reset-password")
        b.submit("#reset-form", {"email": ADMIN_EMAIL})
        link = w.outbox.link(ADMIN_EMAIL, "/reset-password/confirm")
        b.open(link)
        pw = "Admin-pass-%d" % int(time.time())
        b.submit("#reset-confirm-form", {"password": pw})
        if b.errors():
            b.fail("the administrator's password reset was refused: %s" % b.errors())
        w.admin_password = pw
    b.step("the administrator signs in")
    sign_in(w, ADMIN_EMAIL, w.admin_password)
    assert b.has("#admin-link"), "an administrator has no #admin-link"


def row(b, sid):
    return b.find('tr[data-subscription="%s"]' % sid)


def subscribe(w, product, name, shot):
    """Subscribes the signed-in developer; returns the new subscription's id."""
    b = w.b
    b.step("subscribe to %s" % product)
    before = {s["id"] for s in w.subscriptions()}
    b.visit("/products/%s" % product, shot + "-product")
    fields = {"name": name}
    if w.mgmt.ok("GET", "products/%s" % product).get("terms"):
        assert b.has("#subscribe-form [name=terms]"), "the product's terms are not asked for"
        assert w.mgmt.ok("GET", "products/%s" % product)["terms"] in b.text("#main"), "the terms are not shown"
        fields["terms"] = True
    b.submit("#subscribe-form", fields)
    if b.errors():
        b.fail("subscribing to %s refused: %s" % (product, b.errors()))
    new = [s for s in w.subscriptions() if s["id"] not in before]
    assert len(new) == 1, ("one new subscription in the store", new)
    assert new[0].get("scope", "").endswith("/products/%s" % product), new[0]
    assert new[0].get("displayName") == name, new[0]
    return new[0]["id"]


def form_for(b, action_suffix, field=None, value=None):
    """The form (and its button) posting to an action ending in action_suffix;
    with field/value, the one whose field (input or button) has that value."""
    from selenium.webdriver.common.by import By
    for f in b.finds('form[action$="%s"]' % action_suffix):
        if field is None:
            return f, None
        for el in f.find_elements(By.NAME, field):
            if el.tag_name.lower() == "select":
                from selenium.webdriver.support.select import Select
                Select(el).select_by_value(value)
                return f, None
            if el.get_attribute("value") == value:
                return f, (el if el.tag_name.lower() == "button" or el.get_attribute("type") == "submit" else None)
    b.fail("no form posting to ...%s%s" % (action_suffix, " with %s=%s" % (field, value) if field else ""))


def gateway_get(w, path, key):
    c = http.client.HTTPConnection("127.0.0.1", w.gateway_port, timeout=10)
    try:
        c.request("GET", path, headers={"Ocp-Apim-Subscription-Key": key})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def tiny_png(rgb=(200, 30, 60), size=8):
    """A real PNG image of one colour (the logo upload)."""
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# ------------------------------------------------------------ the guest

def test_guest_reads_the_docs_and_downloads_a_definition_but_cannot_call(b):
    b.step("the branded home page")
    b.visit("/", "guest-01-home")
    assert b.text("#site-title") == SITE_TITLE, b.text("#site-title")
    assert b.attr("#site-title", "href").endswith("/")
    assert "Welcome to Acme" in b.text("#main h1"), b.text("#main")
    assert b.find("#main strong").text == "Echo API"  # the home page's Markdown, rendered
    assert b.has("#signin-link") and b.has("#signup-link")
    assert not b.has("#profile-link") and not b.has("#subscriptions-link") and not b.has("#admin-link")
    menu = b.find("#menu")
    assert "Getting started" in menu.text, menu.text

    b.step("the API list shows what guests may see")
    b.visit("/apis", "guest-02-apis")
    links = {a.get_attribute("href").split("://", 1)[1].split("/", 1)[1] for a in b.finds("#api-list li a")}
    assert "apis/echo" in links and "apis/catalog" in links, links
    assert "apis/secret-api" not in links, links
    b.visit("/apis/secret-api", "guest-03-hidden-api", expect_status=404)

    b.step("the product list shows what guests may see")
    b.visit("/products", "guest-04-products")
    listed = b.text("#product-list")
    assert "Starter" in listed, listed
    assert "Premium" not in listed and "Internal" not in listed, listed  # developers' and staff's
    b.visit("/products/starter", "guest-05-product")
    assert "Free access to the Echo API." in b.text("#main")
    assert b.has('#main a[href$="/apis/echo"]'), "the product page does not link its API"
    assert not b.has("#subscribe-form"), "a guest is offered to subscribe"
    b.visit("/products/internal", "guest-06-hidden-product", expect_status=404)

    b.step("the API reference")
    b.visit("/apis/echo", "guest-07-reference")
    load_ms = b.load_time_ms()
    print("API reference page load time: %.1f ms" % load_ms)
    with open(os.path.join(b.shots, "timings.txt"), "a") as f:
        f.write("%s /apis/echo load %.1f ms\n" % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_ms))
    assert 0 <= load_ms < LOAD_BOUND_MS, load_ms
    op = b.find("section.operation#op-get-item")
    t = op.text
    for want in ("GET", "/items/{id}", "Reads one item by its number.", "verbose", "X-Request-Id",
                 "The item's number", "application/json", "Widget", "price"):
        assert want in t, "the reference of get-item lacks %r:\n%s" % (want, t[:1500])
    assert op.find_elements("css selector", "table"), "get-item has no parameters table"
    for lang in ("curl", "python", "javascript"):
        samples = op.find_elements("css selector", 'pre.sample[data-lang="%s"]' % lang)
        assert samples, "get-item has no %s sample" % lang
        src = samples[0].get_attribute("textContent")
        assert "/echo/items/" in src, (lang, src)
    curl = op.find_element("css selector", 'pre.sample[data-lang="curl"]').get_attribute("textContent")
    assert "Ocp-Apim-Subscription-Key" in curl, curl  # a sample that would work with a key
    post = b.find("section.operation#op-create-item").text
    assert "POST" in post and "Gadget" in post and "The new item" in post, post

    b.step("download the definition")
    got = {}
    for a in b.finds("a.download"):
        href = a.get_attribute("href")
        fmt = re.search(r"format=([^&]+)", href)
        got[fmt.group(1).replace("%2B", "+") if fmt else href] = href
    assert "openapi" in got and "openapi+json" in got, got
    path = b.download('a.download[href*="format=openapi"]:not([href*="json"])')
    with open(path) as f:
        text = f.read()
    assert re.search(r"^openapi: ", text, re.M) and "/items/{id}" in text, text[:500]
    path = b.download('a.download[href*="openapi%2Bjson"], a.download[href*="openapi+json"]')
    with open(path) as f:
        doc = json.load(f)
    assert "/items/{id}" in doc["paths"] and doc["info"]["title"] == "Echo API", list(doc)
    b.visit("/apis/catalog", "guest-08-graphql-reference")
    path = b.download('a.download[href*="format=graphql"]')
    with open(path) as f:
        assert "type Item" in f.read()
    b.visit("/apis/orders", "guest-08-wsdl-reference")
    path = b.download('a.download[href*="format=wsdl"]')
    with open(path) as f:
        text = f.read()
    assert "<wsdl:definitions" in text and "GetOrder" in text, text[:300]
    b.visit("/apis/stock", "guest-08-grpc-reference")
    services = b.text("section.grpc-services")
    for want in ("stock.v1.Stock", "GetLevel", "unary", "WatchLevels", "server-streaming",
                 "stock.v1.Item", "stream stock.v1.Level"):
        assert want in services, "the gRPC reference lacks %r:\n%s" % (want, services)
    path = b.download('a.download[href*="format=proto"]')
    with open(path) as f:
        assert f.read() == STOCK_PROTO
    b.visit("/apis/stock/operations/Stock-WatchLevels", "guest-08-grpc-operation")
    assert b.has(".grpc-no-console") and not b.has("form#console")
    assert b.text("dd.grpc-kind") == "server-streaming", b.text("#main")

    b.step("a guest cannot call or get keys")
    b.visit("/apis/echo/operations/get-item", "guest-09-operation")
    assert not b.has("form#console"), "a guest is given the console"
    assert "sign in" in b.text("#main").lower(), b.text("#main")
    assert not b.has("code.key")
    b.open("/subscriptions")
    assert b.path.startswith("/signin") or b.status() in (401, 403), (b.path, b.status())
    assert not b.has("code.key") and not b.has("#subscriptions")
    b.open("/products/starter")
    assert not b.has("#subscribe-form")
    # and the relay refuses a guest outright
    st, body = js_fetch(b, "/api/console", {"subscription": "x", "key": "primary", "method": "GET",
                                            "path": "/echo/items/1", "headers": [], "body": ""})
    assert st in (401, 403), (st, body)
    b.step("the page checks (origin, console, axe-core, phone width)")
    b.assert_clean()


def js_fetch(b, path, body):
    """A same-origin fetch from the page (as the page's own script would)."""
    r = b.driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify(arguments[1])}).then(function (r) { return r.text().then(function (t) {"
        " done([r.status, t]); }); }, function (e) { done([0, String(e)]); });", path, body)
    b.console_errors()  # the refusal the test asked for is logged there
    return r[0], r[1]


# ------------------------------------------------------------ the developer

def test_developer_signs_up_subscribes_calls_and_manages_the_account(world, b):
    w = world
    addr = "dev-%d@example.com" % int(time.time() * 1000)
    pw = "Correct-horse-1"
    sign_up(w, addr, pw, "Dana", "Developer", "dev-01")

    b.step("sign in")
    sign_in(w, addr, pw)
    b.check_page("dev-02-signed-in")
    for link in ("#profile-link", "#subscriptions-link", "#usage-link"):
        assert b.has(link), "a signed-in developer has no %s" % link
    assert not b.has("#admin-link") and not b.has("#signin-link")
    listed = b.open("/products").text("#product-list")
    assert "Premium" in listed and "Internal" not in listed, listed

    sid = subscribe(w, "starter", "My first app", "dev-03")
    assert w.subscription(sid)["state"] == "active"
    b.step("the subscription and its masked keys")
    b.visit("/subscriptions", "dev-04-subscriptions")
    r = row(b, sid)
    assert "My first app" in r.text and "active" in r.text.lower(), r.text
    keys = w.mgmt.keys(sid)
    primary = r.find_element("css selector", 'code.key[data-key="primary"]')
    secondary = r.find_element("css selector", 'code.key[data-key="secondary"]')
    assert "••••" in primary.text and keys["primaryKey"] not in b.driver.page_source, primary.text
    assert "••••" in secondary.text, secondary.text
    assert keys["secondaryKey"] not in b.driver.page_source

    b.step("show the primary key")
    shows = r.find_elements("css selector", ".show-key")
    assert shows, "no .show-key button in the subscription's row"
    shows[0].click()
    b.wait(lambda: keys["primaryKey"] in row(b, sid).find_element(
        "css selector", 'code.key[data-key="primary"]').text, "the primary key to be shown")
    b.check_page("dev-05-key-shown")

    b.step("regenerate the primary key")
    b.open("/subscriptions")
    f, button = form_for(b, "/subscriptions/%s/regenerate" % sid, "key", "primary")
    b.submit(f, button=button)
    new = w.mgmt.keys(sid)
    assert new["primaryKey"] != keys["primaryKey"], "the primary key did not change"
    assert new["secondaryKey"] == keys["secondaryKey"], "regenerating the primary changed the secondary"
    assert gateway_get(w, "/echo/items/1", keys["primaryKey"]) == 401
    assert gateway_get(w, "/echo/items/1", new["primaryKey"]) == 200
    keys = new

    b.step("rename the subscription")
    f, _ = form_for(b, "/subscriptions/%s/rename" % sid)
    b.submit(f, {"name": "Renamed app"})
    assert w.subscription(sid)["displayName"] == "Renamed app"
    b.open("/subscriptions")
    assert "Renamed app" in row(b, sid).text

    b.step("call an operation from the console")
    console_call(w, sid, keys, "dev-06")

    b.step("usage charts after calls")
    # so far through this subscription: the new key's check, the console's
    # call; now three successes and one backend failure
    for i in range(3):
        assert gateway_get(w, "/echo/items/%d" % i, keys["secondaryKey"]) == 200
    assert gateway_get(w, "/echo/status/500", keys["primaryKey"]) == 500

    def totals():
        return {d.get_attribute("data-total"): float(d.get_attribute("textContent"))
                for d in b.finds("#usage-totals dd[data-total]") if d.get_attribute("data-total") != "bandwidth"}
    for period in ("24h", "7d", "30d", "90d"):
        def counted():
            b.open("/usage?period=%s" % period)
            t = totals()
            return t.get("calls", 0) >= 6 and t.get("failed", 0) >= 1 and t
        t = b.wait(counted, "usage over %s counting the 6 calls made (the page shows %s)"
                   % (period, b.text("#usage-totals")), timeout=15)
        assert t["success"] >= 5, t
        assert len(b.finds("figure.chart svg")) >= 3, "fewer than 3 SVG charts (outcome, bandwidth, time)"
        for table in ("usage-by-subscription", "usage-by-product", "usage-by-api"):
            assert b.has("#%s tbody tr[data-key]" % table), "#%s has no rows" % table
        assert b.has('#usage-by-subscription tr[data-key="%s"]' % sid)
        assert b.has('#usage-by-product tr[data-key="starter"]') and b.has('#usage-by-api tr[data-key="echo"]')
        b.check_page("dev-07-usage-%s" % period)
    b.open("/usage?period=24h&subscription=%s" % sid)
    assert b.finds("figure.chart") and "Renamed app" in b.text("#usage-by-subscription"), b.text("#main")[:500]

    b.step("subscribe to a product that needs approval")
    pending = subscribe(w, "premium", "Premium app", "dev-08")
    assert w.subscription(pending)["state"] == "submitted"
    b.open("/subscriptions")
    assert re.search(r"submitted|pending|awaiting", row(b, pending).text, re.I), row(b, pending).text
    assert not row(b, pending).find_elements("css selector", ".show-key") or \
        w.mgmt.keys(pending)["primaryKey"] not in b.driver.page_source
    w.outbox.wait(ADMIN_EMAIL, what="the subscription-submitted mail to the administrators")
    b.step("an administrator approves it")
    admin_sign_in(w)
    b.visit("/admin/subscriptions", "dev-09-admin-approvals")
    assert pending in b.find("#pending").get_attribute("innerHTML") or "Premium app" in b.text("#pending")
    f, _ = form_for(b, "/admin/subscriptions/%s/approve" % pending)
    b.submit(f, {"comment": "Welcome aboard"} if f.find_elements("css selector", "[name=comment]") else {})
    assert w.subscription(pending)["state"] == "active"
    msg, body = w.outbox.wait(addr, what="the subscription-approved mail")
    assert "Premium" in (str(msg["Subject"]) + body), (msg["Subject"], body)
    sign_in(w, addr, pw)
    b.open("/subscriptions")
    assert "active" in row(b, pending).text.lower(), row(b, pending).text

    b.step("cancel the subscription")
    f, _ = form_for(b, "/subscriptions/%s/cancel" % pending)
    b.submit(f)
    assert w.subscription(pending)["state"] == "cancelled"
    b.check_page("dev-10-cancelled")

    b.step("change the profile")
    b.visit("/profile", "dev-11-profile")
    b.submit("#profile-form", {"firstName": "Dora", "lastName": "Developer"})
    assert w.user_by_email(addr)["firstName"] == "Dora"
    b.open("/profile")
    assert b.find('#profile-form [name="firstName"]').get_attribute("value") == "Dora"

    b.step("change the password")
    pw2 = "Battery-staple-22"
    b.submit("#password-form", {"current": pw, "password": pw2})
    if b.errors():
        b.fail("password change refused: %s" % b.errors())
    # a password change ends every session: signed out here, or still in
    if signed_in(b):
        sign_out(w)
    sign_in(w, addr, pw, expect_ok=False)
    assert b.errors(), "a wrong password gave no error"
    assert b.status() in (200, 400, 401, 403), b.status()
    b.check_page("dev-12-wrong-password", expect_status=b.status())
    sign_in(w, addr, pw2)

    b.step("reset a forgotten password by mail")
    sign_out(w)
    b.visit("/reset-password", "dev-13-reset")
    b.submit("#reset-form", {"email": addr})
    link = w.outbox.link(addr, "/reset-password/confirm")
    b.visit(link, "dev-14-reset-confirm")
    pw3 = "Tr0ub4dor-and-3"
    b.submit("#reset-confirm-form", {"password": pw3})
    if b.errors():
        b.fail("password reset refused: %s" % b.errors())
    sign_in(w, addr, pw2, expect_ok=False)
    sign_in(w, addr, pw3)

    b.step("close the account")
    b.open("/profile")
    b.submit("#close-form", {"password": pw3})
    assert not signed_in(b), "still signed in after closing the account"
    b.check_page("dev-15-closed")
    assert w.subscription(sid)["state"] == "cancelled", w.subscription(sid)
    u = w.user_by_email(addr)
    assert u is None or u.get("state") == "deleted", u
    assert gateway_get(w, "/echo/items/1", keys["primaryKey"]) == 401
    sign_in(w, addr, pw3, expect_ok=False)
    b.step("the page checks (origin, console, axe-core, phone width)")
    b.assert_clean()


def console_call(w, sid, keys, shot):
    """The console on an operation's page (#console: subscription, key,
    method, path, headers, body): the portal's relay fills in the key, the
    call goes through the gateway to the backend, and the page shows its
    status, headers, body and time (#console-response)."""
    b = w.b
    b.visit("/apis/echo/operations/get-item", shot + "-operation")
    form = b.find("form#console")
    b.wait(lambda: sid in [o.get_attribute("value") for o in
                           form.find_elements("css selector", "select[name=subscription] option")],
           "the subscription %s offered in the console" % sid)
    assert "Renamed app" in b.text("form#console select[name=subscription]")
    w.backend.clear()
    t0 = time.time()
    b.submit(form, {"subscription": sid, "key": "secondary", "path": "/items/77?verbose=true"}, navigate=False)
    b.wait(lambda: b.has("#console-response .console-status") or b.errors(), "the console's answer")
    if b.errors():
        b.fail("the console call failed: %s" % b.errors())
    print("console answered in %.0f ms (browser)" % ((time.time() - t0) * 1000))
    status = b.text("#console-response .console-status")
    assert re.match(r"200 in \d+ ms", status), status
    headers = b.text("#console-response .console-headers")
    assert re.search(r"^content-type: application/json", headers, re.I | re.M), headers
    echoed = json.loads(b.find("#console-response .console-body").get_attribute("textContent"))
    assert echoed["method"] == "GET" and echoed["target"] == "/base/items/77?verbose=true", echoed
    got = [r for r in w.backend.requests if r.target.startswith("/base/items/77")]
    assert len(got) == 1, "the backend got %d console calls" % len(got)
    # the relay filled in the key asked for (the gateway forwards the header)
    assert got[0].header("Ocp-Apim-Subscription-Key") == keys["secondaryKey"], got[0].headers
    b.check_page(shot + "-console-answer")


# ------------------------------------------------------------ the administrator

def publish(w, comment, shot=None):
    b = w.b
    b.open("/admin")
    f, _ = form_for(b, "/admin/publish")
    b.submit(f, {"comment": comment} if f.find_elements("css selector", "[name=comment]") else {})
    if b.errors():
        b.fail("publishing refused: %s" % b.errors())
    if shot:
        b.check_page(shot)


def guest_view(w, path):
    """(status, text of #main, text of #menu, whether #signup-link shows) as
    a guest sees path, in a fresh request without the admin's cookies."""
    b = w.b
    cookies = b.driver.get_cookies()
    b.driver.delete_all_cookies()
    try:
        b.open(path)
        return b.status(), b.text("#main"), b.text("#menu"), b.has("#signup-link"), b.text("#site-title")
    finally:
        b.driver.delete_all_cookies()  # a guest's session cookie (CSRF of the sign-up form) too
        for c in cookies:
            b.driver.add_cookie(c)


def test_administrator_customizes_publishes_rolls_back_approves_and_invites(world, b):
    w = world
    admin_sign_in(w)
    b.visit("/admin", "admin-01-admin")
    for href in ("/admin/site", "/admin/pages", "/admin/revisions", "/admin/subscriptions", "/admin/invite"):
        assert b.has('#main a[href$="%s"]' % href), "/admin does not link %s" % href

    b.step("site settings: title, colours, fonts, custom CSS, home, terms, logo")
    b.visit("/admin/site", "admin-02-site")
    for use, rgb in (("logo", (200, 30, 60)), ("favicon", (20, 90, 200))):
        img = os.path.join(b.profile, "%s.png" % use)
        with open(img, "wb") as f:
            f.write(tiny_png(rgb))
        b.open("/admin/site")
        b.submit("#media-form", {"file": img, "use": use})
        if b.errors():
            b.fail("the %s upload was refused: %s" % (use, b.errors()))
        b.check_page("admin-02-site-uploaded-%s" % use)
    site = w.mgmt.ok("GET", "portal/site")
    logo_id, favicon_id = site.get("logo"), site.get("favicon")
    assert logo_id and favicon_id and logo_id != favicon_id, site
    assert {logo_id, favicon_id} <= {m["id"] for m in w.mgmt.ok("GET", "portal/media")["value"]}
    b.submit("#site-form", {"title": "Globex Portal", "colors[primary]": "#7b1fa2",
                            "fonts[body]": "DejaVu Sans, sans-serif", "customCss": "#main h1 { letter-spacing: 1px; }",
                            "home": "# Globex developers\n\nAll our APIs, *one place*.\n",
                            "terms": "Globex terms of use.", "logo": logo_id})
    if b.errors():
        b.fail("site settings refused: %s" % b.errors())
    site = w.mgmt.ok("GET", "portal/site")
    assert site["title"] == "Globex Portal" and site["colors"]["primary"] == "#7b1fa2", site
    assert site["fonts"]["body"] == "DejaVu Sans, sans-serif" and site["logo"] == logo_id, site

    b.step("preview the draft; the published site is unchanged")
    b.visit("/?preview=1", "admin-03-preview")
    assert "Globex developers" in b.text("#main"), b.text("#main")
    st, main, _, _, title = guest_view(w, "/")
    assert st == 200 and "Welcome to Acme" in main and title == SITE_TITLE, (st, main, title)

    b.step("pages: a menu page for everyone, a page for administrators only")
    b.open("/admin/pages/faq")
    b.fill("#page-form", {"title": "FAQ", "markdown": "## Questions\n\nAsk **anything**.\n", "groups": "",
                          "menuOrder": "2"})
    b.wait(lambda: "Questions" in b.text("#page-preview h2"), "the editor's live preview of the Markdown")
    b.check_page("admin-04-page-editor")
    b.submit("#page-form")
    if b.errors():
        b.fail("page faq refused: %s" % b.errors())
    b.open("/admin/pages/staff")
    b.submit("#page-form", {"title": "Staff notes", "markdown": "Only for staff.", "groups": "administrators",
                            "menuOrder": "3"})
    b.visit("/admin/pages", "admin-05-pages")
    assert "FAQ" in b.text("#main") and "Staff notes" in b.text("#main")
    publish(w, "Globex branding", "admin-06-published")
    revisions = w.mgmt.ok("GET", "portal/revisions")["value"]
    assert len(revisions) >= 2, "publishing made no revision"

    b.step("the published site as a guest")
    st, main, menu, signup, title = guest_view(w, "/")
    assert st == 200 and title == "Globex Portal" and "Globex developers" in main, (st, title, main)
    assert "FAQ" in menu and "Staff notes" not in menu, menu
    b.driver.delete_all_cookies()
    b.visit("/", "admin-07-branded-home-guest")
    assert b.has('header img[src*="/media/%s"]' % logo_id), "the logo is not in the header"
    assert b.has('link[rel~="icon"][href*="/media/%s"]' % favicon_id), "the favicon is not linked"
    css_href = b.attr('link[rel="stylesheet"][href*="/theme.css"]', "href")
    assert "v=" in css_href, css_href
    b.open(css_href)
    css = b.text("body")
    assert "#7b1fa2" in css.lower() and "letter-spacing: 1px" in css, css[:800]
    assert "DejaVu Sans" in css, css[:800]
    b.open("/")
    colour = b.driver.execute_script(
        "return getComputedStyle(document.documentElement).getPropertyValue('--color-primary') ||"
        " getComputedStyle(document.documentElement).getPropertyValue('--primary')")
    print("--color-primary as computed:", colour)
    assert b.driver.execute_script(
        "return getComputedStyle(document.querySelector('#main h1')).letterSpacing") == "1px", \
        "the custom CSS does not apply"
    b.visit("/pages/faq", "admin-08-page-guest")
    assert "Ask anything." in b.text("#main").replace("\n", " "), b.text("#main")
    b.visit("/pages/staff", "admin-09-hidden-page-guest", expect_status=404)
    b.visit("/terms", "admin-10-terms")
    assert "Globex terms of use." in b.text("#main")
    admin_sign_in(w)
    b.open("/pages/staff")
    assert b.status() == 200 and "Only for staff." in b.text("#main")

    b.step("close sign-up, require sign-in, and publish")
    b.open("/admin/site")
    b.submit("#site-form", {"signupEnabled": False, "requireSignin": True})
    publish(w, "Sign-up closed")
    st, main, _, signup, _ = guest_view(w, "/apis")
    assert b.path.startswith("/signin"), "a guest reached %s with sign-in required" % b.path
    assert not signup, "#signup-link still shows with sign-up closed"
    st, main, _, _, _ = guest_view(w, "/signup")
    assert st in (403, 404) or "closed" in main.lower(), (st, main)

    b.step("roll back to the revision with sign-up open")
    b.visit("/admin/revisions", "admin-11-revisions")
    listed = b.find("#revisions").text
    assert "Globex branding" in listed and "Sign-up closed" in listed, listed
    restore = [f for f in b.finds('#revisions form[action*="/admin/revisions/"][action$="/restore"]')]
    assert restore, "#revisions has no restore forms"
    target = None
    for f in restore:
        r = f.find_element("xpath", "./ancestor::tr | ./ancestor::li")
        if "Globex branding" in r.text:
            target = f
    assert target is not None, "no restore form in the row of 'Globex branding'"
    b.submit(target)
    st, _, _, signup, title = guest_view(w, "/apis")
    assert st == 200 and b.path == "/apis", "a guest is still sent to %s" % b.path
    assert signup and title == "Globex Portal", (signup, title)
    site = w.mgmt.ok("GET", "portal/site")
    assert site["signupEnabled"] is True and site["requireSignin"] is False, site

    b.step("reject a pending subscription")
    dev = "pending-%d@example.com" % int(time.time() * 1000)
    sign_out(w)
    sign_up(w, dev, "Pending-pass-1", "Pat", "Pending", "admin-12")
    sign_in(w, dev, "Pending-pass-1")
    sid = subscribe(w, "premium", "Hopeful app", "admin-13")
    assert w.subscription(sid)["state"] == "submitted"
    admin_sign_in(w)
    b.visit("/admin/subscriptions", "admin-14-approvals")
    assert "Hopeful app" in b.text("#pending") or sid in b.find("#pending").get_attribute("innerHTML")
    f, _ = form_for(b, "/admin/subscriptions/%s/reject" % sid)
    b.submit(f, {"comment": "Not this quarter"} if f.find_elements("css selector", "[name=comment]") else {})
    assert w.subscription(sid)["state"] == "rejected"
    msg, body = w.outbox.wait(dev, what="the subscription-rejected mail")
    assert "Not this quarter" in body or "reject" in (str(msg["Subject"]) + body).lower(), body

    b.step("invite a user, who sets a password")
    guest = "invitee-%d@example.com" % int(time.time() * 1000)
    b.visit("/admin/invite", "admin-15-invite")
    b.submit("#invite-form", {"email": guest, "firstName": "Ivy", "lastName": "Invited"})
    if b.errors():
        b.fail("invitation refused: %s" % b.errors())
    link = w.outbox.link(guest, "/invitation")
    sign_out(w)
    b.visit(link, "admin-16-invitation")
    b.submit("#invitation-form", {"password": "Invited-pass-1"})
    if b.errors():
        b.fail("accepting the invitation refused: %s" % b.errors())
    if signed_in(b):
        sign_out(w)
    sign_in(w, guest, "Invited-pass-1")
    assert w.user_by_email(guest)["state"] == "active"
    b.check_page("admin-17-invitee-signed-in")
    b.step("the page checks (origin, console, axe-core, phone width)")
    b.assert_clean()



# ------------------------------------------------------------ the checks themselves

BAD_PAGE = b"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Bad page</title></head>
<body><main id="main"><h1>Bad page</h1>
<img src="http://offsite.invalid/tracker.png" alt="">
<script>document.title = 'inline';</script>
<form method="post" action="/x"><input name="email"><button>Go</button></form>
<div class="wide">wider than a phone</div></main></body></html>"""
BAD_CSS = b".wide { width: 600px; }"


def test_the_page_checks_catch_what_they_look_for(world, b):
    """The checks every portal page gets fail on a page that breaks them: a
    request to another host, an inline script the CSP refuses, a field
    without a label, a layout wider than a phone."""
    import http.server
    import threading

    class Bad(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body, ctype = (BAD_CSS, "text/css") if self.path == "/bad.css" else (BAD_PAGE, "text/html")
            if ctype == "text/html":
                body = body.replace(b"</title>", b"</title><link rel=\"stylesheet\" href=\"/bad.css\">")
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'self'")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Bad)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base, origin = b.base, b.origin
    try:
        b.base = "http://127.0.0.1:%d" % server.server_address[1]
        b.origin = b.base
        b.visit("/", "checks-bad-page")
        found, b.problems = b.problems, []
    finally:
        b.base, b.origin = base, origin
        stop_server(server)
    text = "\n".join(found)
    assert "requested http://offsite.invalid/tracker.png (outside the portal's origin" in text, text
    assert "console error" in text and "Content Security Policy" in text, text
    assert "axe label [critical]" in text, text
    assert "at phone width the page is" in text and "div.wide" in text, text
    b.reset()
