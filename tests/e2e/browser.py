"""Headless Chromium for the portal's browser tests (test_portal_browser.py).

Selenium (Debian's python3-selenium) drives Debian's chromium through its
chromedriver.  One Browser serves a whole test module: starting Chromium
takes a second or two, so tests share it and only drop cookies between
users.

What a page visit checks besides what the test asserts (Browser.visit):
  - nothing the page loaded left the portal's origin (the DevTools network
    events of the performance log: every request the page made, scripts,
    styles, images, fonts, fetches -- the portal must work on closed
    networks, so any other host is a failure);
  - no console errors (a Content-Security-Policy violation shows there:
    an inline script or style the policy refuses);
  - axe-core finds no serious or critical accessibility violation;
  - at phone width (375x812, a mobile viewport) the page does not scroll
    sideways;
  - screenshots at desktop and phone width land in
    <build>/tests/e2e/artifacts/portal/ for people to look at.
Those findings are collected (Browser.problems) and the test fails on them
at its end (Browser.assert_clean), so one accessibility finding does not
hide whether the rest of the scenario works.

Tools: $PORTICO_CHROMIUM (/usr/bin/chromium), $PORTICO_CHROMEDRIVER
(/usr/bin/chromedriver), axe-core from tests/browser/node_modules (`npm ci
--prefix tests/browser`).  missing_tools() names what is absent; a test
module skips then, except under CI (CI set), where it fails.
"""

import base64
import email
import email.policy
import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = os.environ.get("PORTICO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PORTICO_CHROMEDRIVER", "/usr/bin/chromedriver")
AXE_JS = os.environ.get("PORTICO_AXE_JS") or os.path.join(HERE, "..", "browser", "node_modules", "axe-core",
                                                          "axe.min.js")
PHONE = (375, 812)
DESKTOP = (1280, 900)
WAIT = 10.0  # seconds: the longest a page or an element may take to appear
MAX_SHOT_HEIGHT = 4000  # pixels: a full-page screenshot stops there


def artifacts_dir():
    """<build>/tests/e2e/artifacts/portal: `make check` runs in the build
    folder (the current directory); a run by hand from elsewhere uses the
    directory of $PORTICO_BIN, which is the build folder too."""
    base = os.getcwd()
    binary = os.environ.get("PORTICO_BIN")
    if binary and not os.path.exists(os.path.join(base, "Makefile")):
        base = os.path.dirname(os.path.abspath(binary))
    path = os.path.join(base, "tests", "e2e", "artifacts", "portal")
    os.makedirs(path, exist_ok=True)
    return path


def missing_tools():
    """What the browser tests need and this machine lacks (empty when all is there)."""
    out = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("python3-selenium (import selenium failed)")
    if not os.access(CHROMIUM, os.X_OK):
        out.append("chromium (%s)" % CHROMIUM)
    if not os.access(CHROMEDRIVER, os.X_OK):
        out.append("chromium-driver (%s)" % CHROMEDRIVER)
    if not os.path.isfile(AXE_JS):
        out.append("axe-core (%s: run `npm ci --prefix tests/browser`)" % os.path.normpath(AXE_JS))
    return out


# Where content pushes the page wider than the screen: for the innermost
# elements past the right edge (none of their children is), the first
# ancestor that still fits -- the box whose layout lets its content out (a
# grid or flex item without min-width: 0, a table, a <pre> without
# overflow) -- with the widest child path seen in it.
WIDE_JS = """
var w = arguments[0], seen = {}, out = [];
function name(e) {
  var c = typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : '';
  return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + c;
}
function px(e) { return Math.round(e.getBoundingClientRect().width) + 'px'; }
function past(e) { return e.getBoundingClientRect().right > w + 1; }
var all = document.querySelectorAll('body *');
for (var i = 0; i < all.length && out.length < 3; i++) {
  var e = all[i];
  if (!past(e) || Array.prototype.some.call(e.children, past)) continue;
  var chain = [], a = e;
  while (a.parentElement && a.parentElement !== document.documentElement && past(a)) {
    chain.push(name(a) + ' ' + px(a));
    a = a.parentElement;
  }
  var key = name(a);
  if (seen[key]) continue;
  seen[key] = true;
  var s = getComputedStyle(a);
  out.push(key + ' (' + px(a) + ', display ' + s.display + ') holds ' + chain.reverse().join(' > '));
}
return out;
"""


class BrowserError(AssertionError):
    pass


class Browser:
    """One headless Chromium; `base` is the portal's origin (http://127.0.0.1:PORT)."""

    def __init__(self, base, shots=None):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.base = base.rstrip("/")
        self.origin = self._origin(self.base)
        self.shots = shots or artifacts_dir()
        os.makedirs(self.shots, exist_ok=True)
        self.profile = tempfile.mkdtemp(prefix="portico-chromium-")
        self.downloads = os.path.join(self.profile, "downloads")
        os.makedirs(self.downloads)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--user-data-dir=" + self.profile, "--window-size=%d,%d" % DESKTOP,
                    # the browser's own traffic (updates, sync, safe browsing)
                    # would be noise for the origin check and needs a network
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-default-apps", "--disable-extensions",
                    "--lang=en-US", "--font-render-hinting=none",
                    # no name resolves but loopback: a page that names another
                    # host fails to load it (and the origin check reports it)
                    # without a DNS query leaving the machine
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"):
            opts.add_argument(arg)
        opts.add_experimental_option("prefs", {"download.default_directory": self.downloads,
                                               "download.prompt_for_download": False})
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(30)
        self.driver.set_script_timeout(30)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": self.downloads})
        with open(AXE_JS, encoding="utf-8") as f:
            self.axe_source = f.read()
        self.problems = []      # findings of the page checks, reported by assert_clean
        self.offsite = []       # URLs requested outside the portal's origin
        self.documents = []     # (url, status) of every page (document) loaded, in order
        self.visited = []       # names of the pages visited (screenshots)
        self.step_name = ""

    # ------------------------------------------------------------ basics

    @staticmethod
    def _origin(url):
        u = urllib.parse.urlsplit(url)
        return "%s://%s" % (u.scheme, u.netloc)

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def url(self, path):
        return path if "://" in path else self.base + path

    @property
    def path(self):
        """The current page's path and query."""
        u = urllib.parse.urlsplit(self.driver.current_url)
        return u.path + ("?" + u.query if u.query else "")

    def step(self, name):
        """Names the scenario step being done: failures say which one."""
        self.step_name = name
        print("step:", name)

    def fail(self, msg):
        raise BrowserError("[step: %s] at %s: %s" % (self.step_name, self.driver.current_url, msg))

    def wait(self, predicate, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = predicate()
            except Exception as e:  # an element mid-replacement: try again until the deadline
                value, last = None, e
            else:
                last = None
            if value:
                return value
            if time.monotonic() >= deadline:
                self.fail("timed out after %.0f s waiting for %s%s" % (timeout, what,
                                                                      " (%s)" % last if last else ""))
            time.sleep(0.05)

    def _ready(self):
        return self.driver.execute_script("return document.readyState") == "complete"

    def open(self, path):
        """Loads a page of the portal (path) and waits for it to finish loading."""
        self.driver.get(self.url(path))
        self.wait(self._ready, "the page to load")
        self._drain()
        return self

    def reset(self):
        """Forgets the signed-in user (cookies) for the next scenario or user."""
        if self._origin(self.driver.current_url) != self.origin:
            self.driver.get(self.base + "/terms")  # a page of the origin: cookies are per origin
        self.driver.delete_all_cookies()

    # ------------------------------------------------------- the log

    def _drain(self):
        """Reads the DevTools events logged so far: requests outside the
        origin, and the status of every document loaded."""
        for entry in self.driver.get_log("performance"):
            try:
                msg = json.loads(entry["message"])["message"]
            except (KeyError, ValueError):
                continue
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Network.requestWillBeSent":
                u = params.get("request", {}).get("url", "")
                scheme = u.split(":", 1)[0]
                if scheme in ("data", "blob", "about", "chrome", "devtools"):
                    continue
                if self._origin(u) != self.origin:
                    self.offsite.append(u)
                    self.problems.append("%s: requested %s (outside the portal's origin %s)"
                                         % (self.path, u, self.origin))
            elif method == "Network.responseReceived" and params.get("type") == "Document":
                r = params.get("response", {})
                self.documents.append((r.get("url", ""), r.get("status")))

    def status(self):
        """HTTP status of the last page (document) loaded."""
        self._drain()
        if not self.documents:
            self.fail("no page was loaded")
        return self.documents[-1][1]

    def console_errors(self):
        """Console errors since the last call (CSP violations, script errors);
        the failed load of a page the test expects to fail is not one."""
        out = []
        for e in self.driver.get_log("browser"):
            if e.get("level") != "SEVERE":
                continue
            out.append(e.get("message", ""))
        return out

    # ------------------------------------------------------- elements

    def find(self, css, timeout=WAIT):
        from selenium.webdriver.common.by import By
        return self.wait(lambda: self.driver.find_elements(By.CSS_SELECTOR, css)[0:1] and
                         self.driver.find_elements(By.CSS_SELECTOR, css)[0], "element %s" % css, timeout)

    def finds(self, css):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def has(self, css):
        return bool(self.finds(css))

    def text(self, css="body"):
        els = self.finds(css)
        return els[0].text if els else ""

    def attr(self, css, name):
        return self.find(css).get_attribute(name)

    def fill(self, form_css, fields):
        """Sets the fields of a form (a CSS selector: "#signup-form") by name:
        text, textarea, select (value), checkbox (bool), file (a path)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.select import Select
        form = self.find(form_css) if isinstance(form_css, str) else form_css
        form_id = form_css if isinstance(form_css, str) else "form"
        for name, value in fields.items():
            els = form.find_elements(By.NAME, name)
            if not els:
                self.fail("form %s has no field named %r (fields: %s)" % (
                    form_id, name, sorted({e.get_attribute("name") for e in
                                           form.find_elements(By.CSS_SELECTOR, "[name]")})))
            el = els[0]
            kind = (el.get_attribute("type") or "").lower()
            tag = el.tag_name.lower()
            if kind == "checkbox":
                if el.is_selected() != bool(value):
                    self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
                    el.click()
            elif kind == "radio":
                for r in els:
                    if r.get_attribute("value") == str(value):
                        r.click()
            elif tag == "select":
                Select(el).select_by_value(str(value))
            elif kind == "file":
                el.send_keys(value)
            elif kind == "hidden" or len(str(value)) > 120 or "\n" in str(value):
                # long texts (CSS, Markdown) set at once, then the events an
                # editor listens to; typing them key by key takes seconds
                self.driver.execute_script(
                    "arguments[0].value = arguments[1];"
                    "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
                    "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));", el, str(value))
            else:
                el.clear()
                el.send_keys(str(value))
        return form

    def submit(self, form_css, fields=None, navigate=True, button=None):
        """Fills (fields) and submits a form (CSS selector or element) by
        clicking its submit button (or `button`, an element), as a person
        would; waits for the next page when it navigates."""
        from selenium.webdriver.common.by import By
        form = self.fill(form_css, fields or {})
        form_id = form_css if isinstance(form_css, str) else "the form"
        old = self.driver.find_element(By.TAG_NAME, "html")
        buttons = [button] if button is not None else form.find_elements(
            By.CSS_SELECTOR, "button[type=submit], input[type=submit], button:not([type])")
        if buttons:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", buttons[0])
            buttons[0].click()
        else:
            form.submit()
        if navigate:
            self.wait(lambda: self._stale(old) and self._ready(), "the page after submitting %s" % form_id)
            self._drain()
        return self

    @staticmethod
    def _stale(el):
        try:
            el.tag_name
            return False
        except Exception:
            return True

    def click(self, css, navigate=True):
        from selenium.webdriver.common.by import By
        el = self.find(css)
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
        if navigate:
            self.wait(lambda: self._stale(old) and self._ready(), "the page after clicking %s" % css)
            self._drain()
        return self

    def flash(self):
        return self.text("#flash")

    def errors(self):
        return [e.text for e in self.finds("p.error[role=alert]")]

    # --------------------------------------------------------- checks

    def screenshot(self, name):
        """A full-page PNG (up to MAX_SHOT_HEIGHT pixels) in the artifacts folder."""
        m = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = m.get("cssContentSize") or m.get("contentSize")
        width = self.driver.execute_script("return window.innerWidth")
        height = min(int(size["height"]) + 1, MAX_SHOT_HEIGHT)
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
        path = os.path.join(self.shots, re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return path

    def axe(self, name):
        """Runs axe-core on the page; serious and critical violations become
        problems naming the rule, its help and the elements."""
        self.driver.execute_script(self.axe_source)
        result = self.driver.execute_async_script(
            "var done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(function (r) { done({ok: r.violations}); }, function (e) { done({error: String(e)}); });")
        if "error" in result:
            self.problems.append("%s: axe-core failed: %s" % (name, result["error"]))
            return []
        bad = [v for v in result["ok"] if v.get("impact") in ("serious", "critical")]
        for v in bad:
            nodes = "; ".join("%s %s" % (",".join(map(str, n.get("target", []))), n.get("html", "")[:120])
                              for n in v.get("nodes", [])[:5])
            self.problems.append("%s (%s): axe %s [%s]: %s -- %s" % (name, self.path, v["id"], v["impact"],
                                                                     v.get("help", ""), nodes))
        return bad

    def phone(self, name):
        """The page at phone width (a 375x812 mobile viewport): a screenshot,
        and a problem when the page is wider than the screen."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True})
        try:
            time.sleep(0.05)  # one layout at the new size
            # a phone browser zooms out to show a too-wide page whole (its
            # window grows past the screen): measured against the screen
            sizes = self.driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            if max(sizes) > PHONE[0] + 1:
                wide = self.driver.execute_script(WIDE_JS, PHONE[0])
                self.problems.append("%s (%s): at phone width the page is %d px wide for a %d px screen; "
                                     "the box that lets it out: %s"
                                     % (name, self.path, max(sizes), PHONE[0], "; ".join(wide)))
            self.screenshot(name + "-phone")
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def check_page(self, name, expect_status=200):
        """The checks every page visited gets (see the module's text)."""
        self._drain()
        status = self.documents[-1][1] if self.documents else None
        if expect_status is not None and status != expect_status:
            self.fail("expected HTTP %s, got %s (%s)" % (expect_status, status, self.text("main")[:300]))
        for msg in self.console_errors():
            if expect_status and expect_status >= 400 and "status of %d" % expect_status in msg:
                continue
            if "favicon.ico" in msg:  # the browser's own guess when a page names no icon
                continue
            self.problems.append("%s (%s): console error: %s" % (name, self.path, msg))
        self.visited.append(name)
        self.screenshot(name)
        self.axe(name)
        self.phone(name)
        self._drain()
        return self

    def visit(self, path, name, expect_status=200):
        """Opens a page and gives it the checks of check_page."""
        self.open(path)
        return self.check_page(name, expect_status)

    def assert_clean(self):
        """Fails with every finding of the page checks so far, then forgets them."""
        self._drain()
        problems, self.problems = self.problems, []
        if problems:
            raise BrowserError("%d problem(s) found on the pages visited:\n  %s"
                               % (len(problems), "\n  ".join(problems)))

    def load_time_ms(self):
        """The current page's load time from the Navigation Timing entry:
        request start to the end of the load event."""
        return self.driver.execute_script(
            "var n = performance.getEntriesByType('navigation')[0];"
            "return n ? n.loadEventEnd - n.startTime : -1;")

    def download(self, css, timeout=WAIT):
        """Clicks a download link and returns the downloaded file's path."""
        before = set(os.listdir(self.downloads))
        self.click(css, navigate=False)

        sizes = {}

        def done():
            # the final name may appear before its bytes: done once it holds
            # bytes and its size held still between two looks
            for n in set(os.listdir(self.downloads)) - before:
                if n.endswith(".crdownload") or n.endswith(".tmp"):
                    continue
                path = os.path.join(self.downloads, n)
                size = os.path.getsize(path)
                if size > 0 and sizes.get(path) == size:
                    return path
                sizes[path] = size
            return None
        return self.wait(done, "the download from %s" % css, timeout)


class Outbox:
    """The portal's mail outbox folder: one .eml per message."""

    def __init__(self, folder, base):
        self.folder = folder
        self.base = base.rstrip("/")
        self.seen = set()

    def messages(self):
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(".eml"))
        except FileNotFoundError:
            return []
        return [os.path.join(self.folder, n) for n in names]

    @staticmethod
    def parse(path):
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        return msg, body

    def wait(self, to, timeout=WAIT, what="a mail"):
        """The first message not yet taken whose To names `to`: (message, body)."""
        deadline = time.monotonic() + timeout
        while True:
            for path in self.messages():
                if path in self.seen:
                    continue
                msg, body = self.parse(path)
                if to.lower() in str(msg.get("To", "")).lower():
                    self.seen.add(path)
                    return msg, body
            if time.monotonic() >= deadline:
                raise BrowserError("timed out after %.0f s waiting for %s to %s in %s (%d messages there: %s)"
                                   % (timeout, what, to, self.folder, len(self.messages()),
                                      [os.path.basename(p) for p in self.messages()[-5:]]))
            time.sleep(0.05)

    def skip_all(self):
        """Takes every message there now (so wait() sees only newer ones)."""
        self.seen.update(self.messages())

    def link(self, to, path_prefix, timeout=WAIT):
        """The path (and query) of the link to the portal starting with
        path_prefix in the next mail to `to`."""
        msg, body = self.wait(to, timeout, "a mail with a link to %s" % path_prefix)
        for u in re.findall(r"https?://[^\s<>\"')\]]+", body):
            parts = urllib.parse.urlsplit(u)
            if parts.path.startswith(path_prefix):
                if "%s://%s" % (parts.scheme, parts.netloc) != self.base:
                    raise BrowserError("mail %r links %s, outside the portal's address %s"
                                       % (msg.get("Subject"), u, self.base))
                return parts.path + ("?" + parts.query if parts.query else "")
        raise BrowserError("mail %r to %s has no link to %s; its text:\n%s"
                           % (msg.get("Subject"), to, path_prefix, body[:2000]))
