/*
 * fuzz_polxml -- APIM's XML policy documents as the management API receives
 * them (pt_mgmt_polxml_read, format "xml" or "rawxml": the driver's first
 * byte picks which; the document is the rest, not NUL-terminated).
 *
 * Whatever the bytes, the reader either fails with no document and a
 * non-empty, terminated message that is valid UTF-8 (it becomes the
 * "message" of a 400's JSON body), or returns a map of the four sections,
 * each a list of statements ("base" or {name: value}), no deeper than the
 * documented nesting allows.  It never reads or writes out of bounds or
 * leaks (run under ASan or valgrind).  Once per run, documents nested past
 * the limit (policies in policies, elements in elements) must be refused.
 */
#include "mgmt/pt_mgmt_polxml.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A statement nesting level takes at most 4 JSON levels (statement, value, list, statement of
   choose/when/then), an element in an attribute at most 2 (map, list of repetitions); the
   document and a section take 2 more. */
#define MAX_JSON_DEPTH (2 + 4 * (PT_MGMT_POLXML_MAX_DEPTH + 2))

static int depth_of(json_t *v)
{
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach(v, k, c)
        {
            int e = depth_of(c);
            d = e > d ? e : d;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            int e = depth_of(c);
            d = e > d ? e : d;
        }
    } else if (!json_is_string(v))
        abort(); /* only maps, lists and strings come out of XML */
    return d + 1;
}

static void check_statements(json_t *l)
{
    if (!json_is_array(l))
        abort();
    size_t i;
    json_t *s;
    json_array_foreach(l, i, s)
    {
        if (json_is_string(s) && !strcmp(json_string_value(s), "base"))
            continue;
        if (!json_is_object(s) || json_object_size(s) != 1)
            abort();
    }
}

static void check(json_t *doc, const char *err, size_t errlen)
{
    if (!memchr(err, '\0', errlen))
        abort();
    if (!doc) {
        json_t *m = json_string(err); /* NULL when not valid UTF-8 */
        if (!err[0] || !m) {
            fprintf(stderr, "bad message: '%s'\n", err);
            abort();
        }
        json_decref(m);
        return;
    }
    if (!json_is_object(doc))
        abort();
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        if (strcmp(k, "inbound") && strcmp(k, "backend") && strcmp(k, "outbound") && strcmp(k, "on-error"))
            abort();
        check_statements(v);
    }
    if (depth_of(doc) > MAX_JSON_DEPTH) {
        fprintf(stderr, "document %d levels deep\n", depth_of(doc));
        abort();
    }
    char *s = json_dumps(doc, 0);
    if (!s)
        abort();
    free(s);
    json_decref(doc);
}

/* n levels of open (each "<tag>"), then "<leaf/>", then n closes, in <policies><inbound>. */
static char *nested(const char *open, const char *close, int n)
{
    size_t cap = 64 + (strlen(open) + strlen(close)) * (size_t)n;
    char *s = malloc(cap), *p = s;
    if (!s)
        abort();
    p += sprintf(p, "<policies><inbound>");
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s", open);
    p += sprintf(p, "<base/>");
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s", close);
    sprintf(p, "</inbound></policies>");
    return s;
}

/* Just past the limit is refused, just within it is read, by statement and by element. */
static void check_limits(void)
{
    static const char *const shapes[][2] = {
        {"<retry count=\"1\">", "</retry>"},
        {"<choose><when condition=\"1\">", "</when></choose>"},
        {"<x a=\"1\">", "</x>"},
    };
    char err[300];
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        char *deep = nested(shapes[i][0], shapes[i][1], PT_MGMT_POLXML_MAX_DEPTH + 8);
        json_t *d = pt_mgmt_polxml_read(deep, strlen(deep), false, err, sizeof(err));
        if (d || !strstr(err, "nested too deeply")) {
            fprintf(stderr, "%s: nesting past the limit read: %s\n", shapes[i][0], d ? "" : err);
            abort();
        }
        free(deep);
        char *ok = nested(shapes[i][0], shapes[i][1], PT_MGMT_POLXML_MAX_DEPTH - 2);
        d = pt_mgmt_polxml_read(ok, strlen(ok), false, err, sizeof(err));
        if (!d) {
            fprintf(stderr, "%s: nesting within the limit refused: %s\n", shapes[i][0], err);
            abort();
        }
        check(d, err, sizeof(err));
        free(ok);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool limits_checked;
    if (!limits_checked) {
        limits_checked = true;
        check_limits();
    }
    if (!size)
        return 0;
    bool raw = data[0] & 1;
    data++;
    size--;
    /* exactly the bytes, not NUL-terminated, so that a read past them is seen */
    char *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    char err[300]; /* as the management API passes it */
    memset(err, 0x5a, sizeof(err));
    json_t *doc = pt_mgmt_polxml_read(copy, size, raw, err, sizeof(err));
    check(doc, err, sizeof(err));
    free(copy);
    return 0;
}

/* Seeds for the standalone runner (standalone.c): documents, after the first byte it adds. */
const char *fuzz_name = "fuzz_polxml";
const char *const fuzz_seeds[] = {
    "<policies><inbound><base/><set-header name=\"X-A\" exists-action=\"override\"><value>1</value>"
    "<value>2</value></set-header><rate-limit calls=\"5\" renewal-period=\"60\"/></inbound>"
    "<backend><base/></backend><outbound><base/></outbound><on-error><base/></on-error></policies>",
    "<policies><inbound><choose><when condition=\"@(context.Request.Method == &quot;GET&quot;)\">"
    "<return-response><set-status code=\"200\" reason=\"OK\"/><set-body>hi</set-body></return-response>"
    "</when><otherwise><base/></otherwise></choose></inbound></policies>",
    "<policies><inbound><set-variable name=\"v\" value=\"@(context.Request.Headers.GetValueOrDefault(\"a\","
    "\"<b>&\") + 'x' + \"\\\"\")\" /><set-body>@{ var x = 1 < 2 && 3 > 2; return \"<p>\"; }</set-body>"
    "</inbound></policies>",
    "<policies><backend><retry condition=\"@(context.Response.StatusCode >= 500)\" count=\"3\" "
    "interval=\"1\"><forward-request timeout=\"10\"/></retry><wait for=\"all\"><send-request mode=\"new\" "
    "response-variable-name=\"r\"><set-url>http://127.0.0.1/x</set-url></send-request></wait>"
    "<limit-concurrency key=\"k\" max-count=\"1\"><forward-request/></limit-concurrency></backend>"
    "</policies>",
    "<policies><inbound><validate-jwt header-name=\"Authorization\"><openid-config "
    "url=\"https://127.0.0.1/\"/>"
    "<audiences><audience>a</audience><audience>b</audience></audiences><required-claims><claim "
    "name=\"c\" match=\"any\"><value>1</value></claim></required-claims></validate-jwt>"
    "<cors><allowed-origins><origin>*</origin></allowed-origins></cors></inbound></policies>",
    "<policies><inbound><choose><when><base/></when><bogus/></choose></inbound><inbound/></policies>",
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><!-- c --><policies xmlns:a=\"urn:a\"><inbound a:x=\"1\">"
    "<![CDATA[<x>]]>&#233;&lt;<a:p a:q=\"&#x1F600;\">t&amp;</a:p></inbound></policies>",
    "<!DOCTYPE policies [<!ENTITY x \"yy\">]><policies><inbound>&x;</inbound></policies>",
    "<notpolicies/>",
    /* a long name in the message, cut inside a character unless cut with care */
    "<policies><inbound/><\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "/></policies>",
    NULL,
};
