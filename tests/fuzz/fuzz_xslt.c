/*
 * fuzz_xslt -- xsl-transform's engine (plugins/transform/xslt.c) on a
 * stylesheet and a document an attacker chose: the input after its first
 * byte (the driver's own, as standalone.c provides) is split at the first
 * "\n@@\n" into the stylesheet and the document (no separator: a fixed
 * small document).
 *
 * Whatever the bytes, compiling either fails with a terminated message or
 * gives a stylesheet; applying it either fails with a terminated message or
 * writes a result within the writer's cap; the limits (small ones here, so
 * a run stays fast) hold; nothing reads or writes out of bounds, leaks
 * (under ASan) or touches a file: the loader and the security preferences
 * refuse everything, which the driver checks by counting calls to a
 * canary path.
 */
#include "xslt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_CAP ((size_t)1 << 20)

struct sink {
    size_t n;
};

static int sink_write(void *arg, const char *d, size_t len)
{
    struct sink *s = arg;
    (void)d;
    if (s->n + len > OUT_CAP)
        return -1;
    s->n += len;
    return 0;
}

static void terminated(const char *err, size_t cap)
{
    if (!memchr(err, '\0', cap))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        xslt_init();
        ready = 1;
    }
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    const char *sep = NULL;
    for (size_t i = 0; i + 4 <= n; i++)
        if (!memcmp(text + i, "\n@@\n", 4)) {
            sep = text + i;
            break;
        }
    const char *doc = "<a x=\"1\"><b>t</b><b>u</b><c/></a>";
    size_t sheet_len = n, doc_len = strlen(doc);
    if (sep) {
        sheet_len = (size_t)(sep - text);
        doc = sep + 4;
        doc_len = n - sheet_len - 4;
    }
    char err[256];
    int line, column;
    struct xslt_sheet *s = xslt_compile(text, sheet_len, err, sizeof(err), &line, &column);
    terminated(err, sizeof(err));
    if (!s) {
        if (!err[0])
            abort(); /* a failure always says why */
        return 0;
    }
    const char *params[] = {"p", "va'l\"ue", "q", "<x/>"};
    struct xslt_limits lim = {.max_memory = (size_t)16 << 20,
                              .max_instr = 20000,
                              .max_xpath = 200000,
                              .max_depth = 50,
                              .max_ms = 200};
    struct sink out = {0};
    enum xslt_result r = xslt_apply(s, doc, doc_len, params, 2, &lim, sink_write, &out, err, sizeof(err));
    terminated(err, sizeof(err));
    if (r != XSLT_OK && !err[0])
        abort();
    if (out.n > OUT_CAP)
        abort();
    xslt_free(s);
    if (access("/tmp/portico-fuzz-xslt-canary", F_OK) == 0)
        abort(); /* a stylesheet wrote a file */
    return 0;
}

const char *fuzz_name = "fuzz_xslt";
const char *const fuzz_seeds[] = {
    "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
    "<xsl:param name=\"p\"/><xsl:template match=\"/\"><r p=\"{$p}\"><xsl:apply-templates/></r></xsl:template>"
    "<xsl:template match=\"b\"><i><xsl:value-of select=\"concat(., $p)\"/></i></xsl:template>"
    "</xsl:stylesheet>\n@@\n<a><b>1</b><b>2</b></a>",
    "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
    "<xsl:output method=\"text\"/><xsl:key name=\"k\" match=\"b\" use=\".\"/>"
    "<xsl:template match=\"/\"><xsl:for-each select=\"//b\"><xsl:sort select=\".\" order=\"descending\"/>"
    "<xsl:value-of select=\"count(key('k', .))\"/>,</xsl:for-each></xsl:template></xsl:stylesheet>",
    "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
    "<xsl:template match=\"/\"><xsl:call-template name=\"r\"><xsl:with-param name=\"n\" select=\"30\"/>"
    "</xsl:call-template></xsl:template><xsl:template name=\"r\"><xsl:param name=\"n\"/>"
    "<xsl:if test=\"$n &gt; 0\"><x><xsl:call-template name=\"r\"><xsl:with-param name=\"n\" select=\"$n - "
    "1\"/>"
    "</xsl:call-template></x></xsl:if></xsl:template></xsl:stylesheet>",
    "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
    "<xsl:template match=\"/\"><r><xsl:copy-of select=\"document('/tmp/portico-fuzz-xslt-canary')\"/>"
    "<xsl:copy-of select=\"document('')\"/></r></xsl:template></xsl:stylesheet>",
    "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\" "
    "xmlns:saxon=\"http://icl.com/saxon\" extension-element-prefixes=\"saxon\">"
    "<xsl:template match=\"/\"><saxon:output href=\"/tmp/portico-fuzz-xslt-canary\"><x/></saxon:output>"
    "</xsl:template></xsl:stylesheet>",
    "<xsl:stylesheet version=\"1.1\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
    "<xsl:template match=\"/\"><xsl:document href=\"/tmp/portico-fuzz-xslt-canary\"><x/></xsl:document>"
    "</xsl:template></xsl:stylesheet>",
    "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
    "<xsl:output method=\"html\" encoding=\"ISO-8859-1\"/><xsl:template match=\"@*|node()\">"
    "<xsl:copy><xsl:apply-templates select=\"@*|node()\"/></xsl:copy></xsl:template></xsl:stylesheet>"
    "\n@@\n<html><body a=\"&amp;\">caf\xc3\xa9<![CDATA[x]]><!-- c --><?pi x?></body></html>",
    "<r xsl:version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
    "<xsl:value-of select=\"string(number('x'))\"/><xsl:number value=\"12345678901\" format=\"i\"/></r>",
    "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">"
    "<xsl:variable name=\"v\"><a/><a/></xsl:variable><xsl:template match=\"/\">"
    "<xsl:message>m</xsl:message><xsl:element name=\"{name(/*)}\"><xsl:attribute name=\"x\">"
    "<xsl:value-of select=\"format-number(1234.5, '#,##0.00')\"/></xsl:attribute>"
    "<xsl:copy-of select=\"$v\"/></xsl:element></xsl:template></xsl:stylesheet>",
    "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
    "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\"/>",
    NULL,
};
