"""xsl-transform (plugins/transform/xsl_transform.c, xslt.c): XSLT 1.0 on
the current message's XML body with libxslt.

Every test runs the real gateway with the transform plugin and checks what
the client got and what the backend received (EchoBackend; its /raw path
answers with bytes the test chooses).  The hostile cases cover both sides:
documents a client or a backend sends (entities, external DTDs, depth) and
stylesheets an operator might paste (file access through include/import/
document(), writing files, endless or exponential recursion, memory bombs),
refused when the configuration is loaded (file:line:column) or stopped at a
limit at run time, with the gateway serving on afterwards.
"""

import concurrent.futures
import http.client
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import BIN, basic_config

# Under AddressSanitizer freed memory sits in its quarantine, so the process's RSS says nothing about
# the transform's memory cap (the sanitizer's leak check at exit judges there instead).
SANITIZED = "AddressSanitizer" in subprocess.run([BIN, "-v"], capture_output=True, text=True, timeout=10).stdout


def rss_bounded(p, kb):
    return SANITIZED or p.rss_kb() < kb


# ------------------------------------------------------------------ helpers

def call(p, method, path, body=None, headers=None, timeout=15):
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        c.close()


def hget(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def raw_response(body, content_type="application/xml", status="200 OK"):
    if isinstance(body, str):
        body = body.encode()
    head = "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (status, content_type, len(body))
    return (head.encode() + body).hex()


def from_backend(p, body, content_type="application/xml", headers=None):
    """A GET whose backend answers `body`: what the client got (status, headers, body)."""
    h = {"X-Raw-Response": raw_response(body, content_type)}
    h.update(headers or {})
    return call(p, "GET", "/echo/raw", headers=h)


ON_ERROR_REPORT = [
    {"set-header": {"name": "X-Error-Reason", "value": "@(context.lastError.reason)"}},
    {"set-header": {"name": "X-Error-Message", "value": "@(context.lastError.message)"}},
]


def config(backend, stylesheet, where="outbound", params=None, only_anything=False, **extra):
    """The API with an xsl-transform in section `where` (only on the "/*" operation, which /echo/raw
    reaches, when only_anything)."""
    stmt = {"stylesheet": stylesheet}
    if params:
        stmt["parameter"] = params
    cfg = basic_config(backend.url, **extra)
    pol = {where: ["base", {"xsl-transform": stmt}], "on-error": ["base"] + ON_ERROR_REPORT}
    if only_anything:
        cfg["apis"][0]["operations"][2]["policies"] = pol
    else:
        cfg["apis"][0]["policies"] = pol
    return cfg


def sheet(templates, output="", extra_ns=""):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"%s>\n'
            '%s\n%s\n</xsl:stylesheet>\n' % (extra_ns, output, templates))


# APIM's documented example: strips a namespace-free copy and adds the caller's User-Agent
APIM_EXAMPLE = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
    <xsl:output method="xml" indent="yes" />
    <xsl:param name="User-Agent" />
    <xsl:template match="* | @* | node()">
        <xsl:copy>
            <xsl:if test="self::* and not(parent::*)">
                <xsl:attribute name="User-Agent">
                    <xsl:value-of select="$User-Agent" />
                </xsl:attribute>
            </xsl:if>
            <xsl:apply-templates select="* | @* | node()" />
        </xsl:copy>
    </xsl:template>
</xsl:stylesheet>"""

ORDERS = b"""<?xml version="1.0"?>
<orders region="eu">
  <order id="1"><item>pen</item><qty>3</qty></order>
  <order id="2"><item>ink &amp; nib</item><qty>1</qty></order>
</orders>"""


# ------------------------------------------------------------------ working

def test_apim_example_with_an_expression_parameter(backend, portico):
    p = portico(config(backend, APIM_EXAMPLE, params=[
        {"parameter-name": "User-Agent",
         "value": "@(context.request.headers:get('User-Agent', 'non-specified'))"}]))
    status, headers, body = from_backend(p, ORDERS, headers={"User-Agent": "tester/1.0"})
    assert status == 200, body
    root = ET.fromstring(body)
    assert root.tag == "orders" and root.get("User-Agent") == "tester/1.0" and root.get("region") == "eu"
    assert [o.find("item").text for o in root.findall("order")] == ["pen", "ink & nib"]
    assert hget(headers, "Content-Type") == ["application/xml"]
    assert hget(headers, "Content-Length") == [str(len(body))]
    # the default when the header is missing, through the same compiled stylesheet
    status, _, body = call(p, "GET", "/echo/raw", headers={"X-Raw-Response": raw_response(ORDERS),
                                                           "User-Agent": ""})
    assert status == 200
    assert ET.fromstring(body).get("User-Agent") in ("", "non-specified")


def test_parameters_are_strings_not_xpath(backend, portico):
    """A parameter value is passed as a string: quotes and XPath in it stay text."""
    xsl = sheet('<xsl:param name="a"/><xsl:param name="b" select="\'default\'"/><xsl:param name="c"/>'
                '<xsl:template match="/"><r a="{$a}" b="{$b}"><xsl:value-of select="$c"/></r></xsl:template>')
    hostile = "x' | document('/etc/passwd') | y[\"'"
    p = portico(config(backend, xsl, params=[
        {"parameter-name": "a", "value": "literal"},
        {"parameter-name": "c", "value": "@(context.request.headers:get('X-C', ''))"}]))
    status, _, body = from_backend(p, b"<in/>", headers={"X-C": hostile})
    assert status == 200, body
    root = ET.fromstring(body)
    assert root.get("a") == "literal" and root.get("b") == "default" and root.text == hostile
    assert b"root:" not in body


def test_output_methods_set_the_content_type(backend, portico):
    text = sheet('<xsl:template match="/">total=<xsl:value-of select="sum(//qty)"/></xsl:template>',
                 output='<xsl:output method="text"/>')
    p = portico(config(backend, text))
    status, headers, body = from_backend(p, ORDERS, "text/xml; charset=utf-8")
    assert (status, body) == (200, b"total=4")
    assert hget(headers, "Content-Type") == ["text/plain; charset=UTF-8"]
    p.stop()

    media = sheet('<xsl:template match="/">{"orders": <xsl:value-of select="count(//order)"/>}</xsl:template>',
                  output='<xsl:output method="text" media-type="application/json"/>')
    p = portico(config(backend, media))
    status, headers, body = from_backend(p, ORDERS)
    assert json.loads(body) == {"orders": 2}
    assert hget(headers, "Content-Type") == ["application/json; charset=UTF-8"]
    p.stop()

    html = sheet('<xsl:template match="/"><html><body><p><xsl:value-of select="//item"/></p></body></html>'
                 '</xsl:template>', output='<xsl:output method="html"/>')
    p = portico(config(backend, html))
    status, headers, body = from_backend(p, ORDERS)
    assert b"<p>pen</p>" in body and hget(headers, "Content-Type") == ["text/html; charset=UTF-8"]
    p.stop()

    # xml without a media-type: the message's XML type stays (its parameters dropped)
    plain = sheet('<xsl:template match="/"><n><xsl:value-of select="count(//order)"/></n></xsl:template>')
    p = portico(config(backend, plain))
    status, headers, body = from_backend(p, ORDERS, "application/atom+xml; charset=utf-8")
    assert ET.fromstring(body).text == "2" and hget(headers, "Content-Type") == ["application/atom+xml"]
    status, headers, body = from_backend(p, ORDERS, "text/plain")
    assert ET.fromstring(body).text == "2" and hget(headers, "Content-Type") == ["application/xml"]


def test_output_encoding_is_applied(backend, portico):
    xsl = sheet('<xsl:template match="/"><r><xsl:value-of select="//item"/></r></xsl:template>',
                output='<xsl:output method="xml" encoding="ISO-8859-1" media-type="text/xml"/>')
    p = portico(config(backend, xsl))
    status, headers, body = from_backend(p, "<i><item>caf\u00e9</item></i>".encode())
    assert status == 200
    assert hget(headers, "Content-Type") == ["text/xml; charset=ISO-8859-1"]
    assert b"caf\xe9" in body and ET.fromstring(body).text == "caf\u00e9"


def test_inbound_transforms_the_request_for_the_backend(backend, portico):
    xsl = sheet('<xsl:template match="/orders"><summary count="{count(order)}">'
                '<xsl:for-each select="order"><i><xsl:value-of select="item"/></i></xsl:for-each>'
                '</summary></xsl:template>')
    p = portico(config(backend, xsl, where="inbound"))
    status, _, _ = call(p, "POST", "/echo/items", body=ORDERS, headers={"Content-Type": "text/xml"})
    assert status == 200
    r = backend.last()
    root = ET.fromstring(r.body)
    assert root.tag == "summary" and root.get("count") == "2"
    assert [i.text for i in root] == ["pen", "ink & nib"]
    assert r.header("Content-Type") == "text/xml" and r.header("Content-Length") == str(len(r.body))
    # an empty body is left alone
    status, _, _ = call(p, "POST", "/echo/items", body=b"", headers={"Content-Type": "text/xml"})
    assert status == 200 and backend.last().body == b""


def test_shared_stylesheet_under_concurrency_and_reload(backend, portico):
    """Two workers share one compiled stylesheet; a reload compiles the new one."""
    xsl = sheet('<xsl:param name="n"/><xsl:template match="/"><r n="{$n}" c="{count(//x)}"/></xsl:template>')
    cfg = config(backend, xsl, params=[{"parameter-name": "n",
                                       "value": "@(context.request.headers:get('X-N', ''))"}], workers=2)
    p = portico(cfg)

    def one(i):
        doc = "<d>%s</d>" % ("<x/>" * (i % 7))
        status, _, body = from_backend(p, doc.encode(), headers={"X-N": str(i)})
        root = ET.fromstring(body)
        return status, root.get("n"), root.get("c")

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(200)))
    assert results == [(200, str(i), str(i % 7)) for i in range(200)]
    cfg2 = config(backend, sheet('<xsl:template match="/"><v2/></xsl:template>'), workers=2)
    p.reload(cfg2, wait=1.0)
    status, _, body = from_backend(p, b"<a/>")
    assert status == 200 and ET.fromstring(body).tag == "v2"


# ----------------------------------------------------------- hostile input

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<foo>&xxe;</foo>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE foo SYSTEM "http://127.0.0.1:9/evil.dtd">
<foo>x</foo>"""

COPY_ALL = sheet('<xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/>'
                 '</xsl:copy></xsl:template>')


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, EXTERNAL_DTD], ids=["billion-laughs", "xxe", "external-dtd"])
def test_documents_with_a_doctype_are_refused(backend, portico, doc):
    p = portico(config(backend, COPY_ALL, where="inbound"))
    t0 = time.time()
    status, headers, body = call(p, "POST", "/echo/items", body=doc, headers={"Content-Type": "text/xml"})
    assert time.time() - t0 < 5
    assert status == 400
    assert hget(headers, "X-Error-Reason") == ["InvalidXml"]
    assert "DOCTYPE" in hget(headers, "X-Error-Message")[0]
    assert b"root:" not in body and b"lollol" not in body
    assert backend.last() is None
    p.stop()

    p = portico(config(backend, COPY_ALL))
    status, headers, body = from_backend(p, doc)
    assert status == 500 and hget(headers, "X-Error-Reason") == ["InvalidXml"]
    assert b"root:" not in body and b"lollol" not in body
    assert rss_bounded(p, 200 * 1024), p.rss_kb()
    assert from_backend(p, b"<ok>1</ok>")[2].endswith(b"<ok>1</ok>\n")


def test_deep_and_malformed_documents(backend, portico):
    p = portico(config(backend, COPY_ALL, where="inbound"))
    deep = b"<a>" * 20000 + b"</a>" * 20000
    status, headers, _ = call(p, "POST", "/echo/items", body=deep, headers={"Content-Type": "text/xml"})
    assert status == 400 and hget(headers, "X-Error-Reason") == ["InvalidXml"]
    for bad in (b"<a><b></a>", b"not xml at all", b"<a>&undefined;</a>", b"\x00\xff<a/>"):
        status, headers, _ = call(p, "POST", "/echo/items", body=bad, headers={"Content-Type": "text/xml"})
        assert status == 400 and hget(headers, "X-Error-Reason") == ["InvalidXml"], bad
    assert backend.last() is None
    # 200 levels is fine (libxml2's limit is 256)
    ok = b"<a>" * 200 + b"</a>" * 200
    assert call(p, "POST", "/echo/items", body=ok, headers={"Content-Type": "text/xml"})[0] == 200
    assert backend.last().body.count(b"<a") == 200


# ------------------------------------------------- hostile stylesheets, load

def write_yaml_config(workdir, backend, stylesheet_lines):
    """A configuration file written by hand, the stylesheet as a YAML block: returns (path, first line of
    the stylesheet in the file)."""
    port = 0
    head = ("listen: [\"127.0.0.1:%d\"]\nworkers: 1\napis:\n  - id: echo\n    path: echo\n"
            "    serviceUrl: %s\n    subscriptionRequired: false\n    operations:\n"
            "      - {id: anything, method: \"*\", urlTemplate: \"/*\"}\n    policies:\n      outbound:\n"
            "        - base\n        - xsl-transform:\n            stylesheet: |\n" % (port or 1, backend.url))
    first = head.count("\n") + 1
    text = head + "".join("              %s\n" % l for l in stylesheet_lines)
    path = os.path.join(workdir, "hand.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path, first


def portico_t(path):
    import subprocess
    from conftest import BIN
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("lines,bad_line,words", [
    (['<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">',
      '  <xsl:template match="/"><a></b></xsl:template>',
      '</xsl:stylesheet>'], 2, "not well-formed"),
    (['<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">',
      '  <xsl:include href="/etc/passwd"/>',
      '</xsl:stylesheet>'], 2, "xsl:include is not allowed"),
    (['<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">',
      '',
      '  <xsl:import href="http://127.0.0.1:9/x.xsl"/>',
      '</xsl:stylesheet>'], 3, "xsl:import is not allowed"),
    (['<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"',
      '    xmlns:saxon="http://icl.com/saxon" extension-element-prefixes="saxon">',
      '  <xsl:template match="/">',
      '    <saxon:output href="/tmp/portico-xslt-written"><x/></saxon:output>',
      '  </xsl:template>',
      '</xsl:stylesheet>'], 4, "writes files"),
    (['<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">',
      '  <xsl:template match="/">',
      '    <xsl:value-of select="1 +* ]"/>',
      '  </xsl:template>',
      '</xsl:stylesheet>'], 3, ""),
    (['<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">',
      '  <xsl:template match="/">',
      '    <xsl:value-of/>',
      '  </xsl:template>',
      '</xsl:stylesheet>'], 3, ""),
], ids=["not-well-formed", "include", "import", "saxon-output", "bad-xpath", "no-select"])
def test_bad_stylesheets_are_refused_with_positions(backend, workdir, lines, bad_line, words):
    path, first = write_yaml_config(workdir, backend, lines)
    rc, out = portico_t(path)
    assert rc != 0, out
    assert "xsl-transform: 'stylesheet'" in out, out
    assert "hand.yaml:%d:" % (first - 1) in out or "hand.yaml:%d:" % first in out, out
    if bad_line:
        assert "stylesheet line %d" % bad_line in out, out
    assert words in out, out


def test_stylesheet_with_a_doctype_is_refused(backend, workdir):
    lines = ['<?xml version="1.0"?>',
             '<!DOCTYPE x [ <!ENTITY e SYSTEM "file:///etc/passwd"> ]>',
             '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">',
             '  <xsl:template match="/"><r>&e;</r></xsl:template>',
             '</xsl:stylesheet>']
    path, _ = write_yaml_config(workdir, backend, lines)
    rc, out = portico_t(path)
    assert rc != 0 and "DOCTYPE" in out, out
    assert "root:" not in out


def test_parameter_names_are_checked(backend, workdir, portico):
    xsl = sheet('<xsl:template match="/"><r/></xsl:template>')
    for params, words in (([{"parameter-name": "a b", "value": "1"}], "is not a parameter name"),
                          ([{"parameter-name": "p:x", "value": "1"}], "is not a parameter name"),
                          ([{"parameter-name": "a", "value": "1"}, {"parameter-name": "a", "value": "2"}],
                           "given twice"),
                          ([{"value": "1"}], "needs the attribute 'parameter-name'")):
        p = portico(config(backend, xsl, params=params), start=False)
        rc, out = p.check()
        assert rc != 0 and words in out, (params, out)
    p = portico(config(backend, xsl, params=[{"parameter-name": "User-Agent", "value": "x"}]), start=False)
    assert p.check()[0] == 0


# ---------------------------------------------- hostile stylesheets, running

def run_hostile(p, doc=b"<a><b/><b/><b/></a>"):
    t0 = time.time()
    status, headers, body = from_backend(p, doc)
    return time.time() - t0, status, headers, body


def test_document_function_loads_nothing(backend, portico, workdir):
    secret = os.path.join(workdir, "secret.xml")
    with open(secret, "w") as f:
        f.write("<secret>TOPSECRET</secret>")
    xsl = sheet('<xsl:template match="/"><r><a><xsl:copy-of select="document(\'%s\')"/></a>'
                '<b><xsl:copy-of select="document(\'file://%s\')"/></b>'
                '<c><xsl:copy-of select="document(\'http://127.0.0.1:%d/base/x\')"/></c></r></xsl:template>'
                % (secret, secret, backend.port))
    p = portico(config(backend, xsl))
    _, status, headers, body = run_hostile(p)
    assert b"TOPSECRET" not in body
    assert len(backend.requests) == 1  # only the forward-request: document() never called out
    assert status == 500 and hget(headers, "X-Error-Reason") == ["XslTransformFailed"]


def test_writing_files_fails_at_run_time(backend, portico, workdir):
    """Extension elements that write are refused when compiling; what libxslt would still run is
    stopped by the security preferences."""
    target = os.path.join(workdir, "written.xml")
    xsl = sheet('<xsl:template match="/"><exsl:document href="%s"><x/></exsl:document><r/></xsl:template>'
                % target, extra_ns=' xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl"')
    p = portico(config(backend, xsl))
    _, status, _, _ = run_hostile(p)
    assert status in (200, 500)
    assert not os.path.exists(target)


@pytest.mark.parametrize("templates,limit", [
    # endless recursion
    ('<xsl:template match="/"><xsl:call-template name="r"/></xsl:template>'
     '<xsl:template name="r"><x><xsl:call-template name="r"/></x></xsl:template>', "template depth"),
    # exponential work without depth: 2^40 calls
    ('<xsl:template match="/"><xsl:call-template name="f"><xsl:with-param name="n" select="40"/>'
     '</xsl:call-template></xsl:template>'
     '<xsl:template name="f"><xsl:param name="n"/><xsl:if test="$n &gt; 0">'
     '<xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>'
     '<xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>'
     '</xsl:if></xsl:template>', ""),
    # a string doubled 40 times (a few calls, terabytes)
    ('<xsl:template match="/"><xsl:call-template name="d"><xsl:with-param name="s" select="\'xxxxxxxx\'"/>'
     '<xsl:with-param name="n" select="40"/></xsl:call-template></xsl:template>'
     '<xsl:template name="d"><xsl:param name="s"/><xsl:param name="n"/><xsl:choose>'
     '<xsl:when test="$n &gt; 0"><xsl:call-template name="d"><xsl:with-param name="s" select="concat($s, $s)"/>'
     '<xsl:with-param name="n" select="$n - 1"/></xsl:call-template></xsl:when>'
     '<xsl:otherwise><xsl:value-of select="string-length($s)"/></xsl:otherwise></xsl:choose></xsl:template>',
     "memory"),
    # a result tree fragment doubled 40 times
    ('<xsl:template match="/"><xsl:call-template name="t"><xsl:with-param name="n" select="40"/>'
     '<xsl:with-param name="f"><a/><a/></xsl:with-param></xsl:call-template></xsl:template>'
     '<xsl:template name="t"><xsl:param name="n"/><xsl:param name="f"/><xsl:choose>'
     '<xsl:when test="$n &gt; 0"><xsl:call-template name="t"><xsl:with-param name="n" select="$n - 1"/>'
     '<xsl:with-param name="f"><xsl:copy-of select="$f"/><xsl:copy-of select="$f"/></xsl:with-param>'
     '</xsl:call-template></xsl:when><xsl:otherwise><xsl:copy-of select="$f"/></xsl:otherwise></xsl:choose>'
     '</xsl:template>', ""),
    # quadratic-and-worse XPath over a small document
    ('<xsl:template match="/"><r><xsl:value-of select="count(//*[count(//*[count(//*[count(//*) &gt; 0]) &gt; 0]) '
     '&gt; 0])"/></r></xsl:template>', ""),
    # xsl:message terminate
    ('<xsl:template match="/"><xsl:message terminate="yes">stop here</xsl:message></xsl:template>', ""),
], ids=["endless-recursion", "exponential", "string-doubling", "tree-doubling", "xpath-blowup", "terminate"])
def test_runaway_stylesheets_are_stopped(backend, portico, templates, limit):
    p = portico(config(backend, sheet(templates), only_anything=True))
    big = b"<a>" + b"<b><c/><c/><c/></b>" * 50 + b"</a>"
    took, status, headers, body = run_hostile(p, big)
    assert status == 500, body[:200]
    assert hget(headers, "X-Error-Reason") == ["XslTransformFailed"]
    if limit:
        assert limit in hget(headers, "X-Error-Message")[0], hget(headers, "X-Error-Message")
    assert took < 10
    assert rss_bounded(p, 400 * 1024), p.rss_kb()
    assert "xsl-transform" in p.log_text()
    # the worker is fine afterwards, and the next request is stopped the same way
    assert call(p, "GET", "/echo/items/1")[0] == 200
    assert run_hostile(p, big)[1] == 500
