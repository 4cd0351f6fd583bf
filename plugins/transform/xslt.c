/*
 * xslt.c -- XSLT 1.0 with libxslt, hardened (xslt.h says against what and
 * how).
 *
 * The memory guard.  libxslt has no memory limit of its own, and a
 * stylesheet of a few lines can ask for gigabytes (a string or a result
 * tree fragment doubled thirty times: thirty template calls, far below
 * any depth or instruction cap).  So xslt_init() installs allocator
 * functions in libxml2 (xmlMemSetup: libxslt allocates through the same
 * pointers) that call malloc, realloc and free as before and, only while a
 * thread has armed its guard, add up malloc_usable_size of what that
 * thread gets and gives back.  No header is added to blocks, so memory
 * allocated before the switch (or by another thread) may be freed through
 * it and the other way round.  Past the cap an allocation fails: libxml2
 * and libxslt report it as an error, and the guard also stops the
 * transformation (its state, and its XPath context's operation budget),
 * so it ends at the next instruction.  Every 64th allocation also compares
 * the clock with the deadline.
 */
#define _GNU_SOURCE
#include "xslt.h"

#include "pt_xml.h"

#include <libxml/xmlerror.h>
#include <libxml/xmlmemory.h>
#include <libxml/xpath.h>
#include <libxslt/documents.h>
#include <libxslt/security.h>
#include <libxslt/transform.h>
#include <libxslt/variables.h>
#include <libxslt/xslt.h>
#include <libxslt/xsltInternals.h>
#include <libxslt/xsltutils.h>

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct xslt_sheet {
    xsltStylesheetPtr style;
    const char *method, *media_type, *encoding; /* in style's memory */
};

/* ============================================================ the guard */

struct guard {
    bool armed, tripped;
    int64_t used, max; /* bytes; used may go below 0 (blocks from before the guard was armed) */
    unsigned tick;
    uint64_t deadline_ms;
    const char *why;              /* the limit that was broken */
    xsltTransformContextPtr ctxt; /* the transformation to stop, when there is one */
};

static _Thread_local struct guard guard;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Stops the running transformation: no further instruction, no further XPath operation. */
static void guard_trip(const char *why)
{
    if (!guard.tripped) {
        guard.tripped = true;
        guard.why = why;
    }
    xsltTransformContextPtr t = guard.ctxt;
    if (t) {
        t->state = XSLT_STATE_STOPPED;
        if (t->xpathCtxt) {
            t->xpathCtxt->opLimit = 1;
            t->xpathCtxt->opCount = 1;
        }
    }
}

/* May this thread take n more bytes? */
static bool guard_admit(size_t n)
{
    if ((++guard.tick & 63) == 0 && now_ms() > guard.deadline_ms)
        guard_trip("the time limit");
    if (n > (size_t)INT64_MAX || (int64_t)n > guard.max - guard.used) {
        guard_trip("the memory limit");
        return false;
    }
    return true;
}

static void *g_malloc(size_t n)
{
    if (guard.armed && !guard_admit(n))
        return NULL;
    void *p = malloc(n);
    if (p && guard.armed)
        guard.used += (int64_t)malloc_usable_size(p);
    return p;
}

static void *g_realloc(void *p, size_t n)
{
    if (!guard.armed)
        return realloc(p, n);
    size_t old = p ? malloc_usable_size(p) : 0;
    if (n > old && !guard_admit(n - old))
        return NULL;
    void *q = realloc(p, n);
    if (q)
        guard.used += (int64_t)malloc_usable_size(q) - (int64_t)old;
    return q;
}

static void g_free(void *p)
{
    if (p && guard.armed)
        guard.used -= (int64_t)malloc_usable_size(p);
    free(p);
}

static char *g_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = g_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static void guard_arm(size_t max, uint32_t ms)
{
    guard = (struct guard){.armed = true, .max = (int64_t)max, .deadline_ms = now_ms() + ms};
}

static void guard_disarm(void)
{
    guard.armed = false;
    guard.ctxt = NULL;
}

/* ============================================================= messages */

/*
 * libxslt reports an error as two calls of the handler: a context line
 * ("compilation error: file stylesheet line 12 element value-of", or
 * "runtime error: ...") and then the message.  The first error (a message
 * that follows a context line) is kept with its line; warnings (messages
 * without one) only when there is no error.  Bounded: messages past the
 * first few are counted, not kept (xsl:message in a loop).
 */
struct msgs {
    char first[256];    /* the first error's message */
    char fallback[256]; /* the first message of any kind */
    int line, pending_line;
    bool after_context, have_error;
};

static _Thread_local struct msgs msgs;

static void msgs_reset(void)
{
    memset(&msgs, 0, sizeof(msgs));
}

/* Copies a message without its trailing newline and spaces. */
static void keep(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s);
    size_t l = strlen(dst);
    while (l && (dst[l - 1] == '\n' || dst[l - 1] == ' ' || dst[l - 1] == '\r'))
        dst[--l] = '\0';
}

static void msgs_add(const char *s)
{
    if (!strncmp(s, "compilation error:", 18) || !strncmp(s, "runtime error:", 14)) {
        const char *l = strstr(s, " line ");
        msgs.pending_line = l ? atoi(l + 6) : 0;
        msgs.after_context = true;
        return;
    }
    if (msgs.after_context && !msgs.have_error) {
        keep(msgs.first, sizeof(msgs.first), s);
        msgs.line = msgs.pending_line;
        msgs.have_error = true;
    }
    msgs.after_context = false;
    if (!msgs.fallback[0])
        keep(msgs.fallback, sizeof(msgs.fallback), s);
}

static void on_generic(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    msgs_add(buf);
}

#if LIBXML_VERSION >= 21200
static void on_structured(void *ctx, const xmlError *e)
#else
static void on_structured(void *ctx, xmlErrorPtr e)
#endif
{
    (void)ctx;
    if (e && e->message && !msgs.fallback[0])
        keep(msgs.fallback, sizeof(msgs.fallback), e->message);
}

/* The best message gathered: the first error, else the first message, else def. */
static const char *msgs_best(const char *def)
{
    if (msgs.have_error && msgs.first[0])
        return msgs.first;
    return msgs.fallback[0] ? msgs.fallback : def;
}

/* libxml2's per-thread handlers, pointed at msgs for the length of a call and put back after. */
struct saved_handlers {
    xmlGenericErrorFunc generic;
    void *generic_ctx;
    xmlStructuredErrorFunc structured;
    void *structured_ctx;
};

static void handlers_capture(struct saved_handlers *h)
{
    h->generic = xmlGenericError;
    h->generic_ctx = xmlGenericErrorContext;
    h->structured = xmlStructuredError;
    h->structured_ctx = xmlStructuredErrorContext;
    xmlSetGenericErrorFunc(NULL, on_generic);
    xmlSetStructuredErrorFunc(NULL, on_structured);
    msgs_reset();
}

static void handlers_restore(const struct saved_handlers *h)
{
    xmlSetGenericErrorFunc(h->generic_ctx, h->generic);
    xmlSetStructuredErrorFunc(h->structured_ctx, h->structured);
}

/* ===================================================== loading, security */

static xsltSecurityPrefsPtr forbid_all;

/* Nothing is ever loaded: not for xsl:import/include, not for document(). */
static xmlDocPtr load_nothing(const xmlChar *uri, xmlDictPtr dict, int options, void *ctxt, xsltLoadType type)
{
    (void)uri;
    (void)dict;
    (void)options;
    (void)ctxt;
    (void)type;
    return NULL;
}

static xmlFreeFunc old_free;
static xmlMallocFunc old_malloc;
static xmlReallocFunc old_realloc;
static xmlStrdupFunc old_strdup;
static bool ready;

void xslt_init(void)
{
    if (ready)
        return;
    pt_xml_init();
    xmlMemGet(&old_free, &old_malloc, &old_realloc, &old_strdup);
    xmlMemSetup(g_free, g_malloc, g_realloc, g_strdup);
    xsltInit();
    xsltSetGenericErrorFunc(NULL, on_generic);
    xsltSetLoaderFunc(load_nothing);
    forbid_all = xsltNewSecurityPrefs();
    if (forbid_all) {
        xsltSetSecurityPrefs(forbid_all, XSLT_SECPREF_READ_FILE, xsltSecurityForbid);
        xsltSetSecurityPrefs(forbid_all, XSLT_SECPREF_WRITE_FILE, xsltSecurityForbid);
        xsltSetSecurityPrefs(forbid_all, XSLT_SECPREF_CREATE_DIRECTORY, xsltSecurityForbid);
        xsltSetSecurityPrefs(forbid_all, XSLT_SECPREF_READ_NETWORK, xsltSecurityForbid);
        xsltSetSecurityPrefs(forbid_all, XSLT_SECPREF_WRITE_NETWORK, xsltSecurityForbid);
        xsltSetDefaultSecurityPrefs(forbid_all);
    }
    ready = true;
}

void xslt_fini(void)
{
    if (!ready)
        return;
    xsltSetDefaultSecurityPrefs(NULL);
    if (forbid_all)
        xsltFreeSecurityPrefs(forbid_all);
    forbid_all = NULL;
    xsltSetLoaderFunc(NULL);
    xsltSetGenericErrorFunc(NULL, NULL);
    /* libxslt's registrations (extension modules, functions, elements, its mutex): libxslt is
       unloaded with this plugin */
    xsltCleanupGlobals();
    /* our functions live in this plugin, which is about to be unloaded */
    if (old_malloc)
        xmlMemSetup(old_free, old_malloc, old_realloc, old_strdup);
    ready = false;
}

/* ============================================================ compiling */

#define NS_XSL "http://www.w3.org/1999/XSL/Transform"
#define NS_SAXON "http://icl.com/saxon"
#define NS_XALAN "org.apache.xalan.xslt.extensions.Redirect"
#define NS_XT "http://www.jclark.com/xt"
#define NS_LIBXSLT "http://xmlsoft.org/XSLT/namespace"

static bool in_ns(const xmlNode *n, const char *ns, const char *name)
{
    return n->ns && n->ns->href && !strcmp((const char *)n->ns->href, ns) &&
           !strcmp((const char *)n->name, name);
}

/*
 * Elements a self-contained, side-effect-free stylesheet has no use for:
 * what loads other files and what writes them (or the gateway's stderr).
 * Returns why, with *line, or NULL.  The walk is iterative (the reader
 * already capped the depth at 256 and the size at XSLT_MAX_STYLESHEET).
 */
static const char *refused_element(xmlNodePtr root, int *line)
{
    static const struct {
        const char *ns, *name, *why;
    } refused[] = {
        {NS_XSL, "import", "xsl:import is not allowed (the stylesheet must be self-contained)"},
        {NS_XSL, "include", "xsl:include is not allowed (the stylesheet must be self-contained)"},
        {NS_XSL, "document", "xsl:document is not allowed (it writes files)"},
        {NS_SAXON, "output", "saxon:output is not allowed (it writes files)"},
        {NS_XALAN, "write", "xalan redirect:write is not allowed (it writes files)"},
        {NS_XT, "document", "xt:document is not allowed (it writes files)"},
        {NS_LIBXSLT, "debug", "libxslt:debug is not allowed (it writes to the gateway's output)"},
    };
    xmlNodePtr n = root;
    while (n) {
        if (n->type == XML_ELEMENT_NODE)
            for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
                if (in_ns(n, refused[i].ns, refused[i].name)) {
                    *line = (int)xmlGetLineNo(n);
                    return refused[i].why;
                }
        if (n->type == XML_ELEMENT_NODE && n->children) {
            n = n->children;
            continue;
        }
        while (n && n != root && !n->next)
            n = n->parent;
        if (!n || n == root)
            break;
        n = n->next;
    }
    return NULL;
}

struct xslt_sheet *xslt_compile(const char *text, size_t len, char *err, size_t errlen, int *line,
                                int *column)
{
    *line = *column = 0;
    snprintf(err, errlen, "%s", "");
    if (len > XSLT_MAX_STYLESHEET) {
        snprintf(err, errlen, "the stylesheet is larger than %zu bytes", XSLT_MAX_STYLESHEET);
        return NULL;
    }
    struct saved_handlers h;
    handlers_capture(&h);
    guard_arm(XSLT_MAX_MEMORY, XSLT_MAX_MS);
    struct pt_xml_error xe;
    struct xslt_sheet *s = NULL;
    xmlDocPtr doc = pt_xml_read(text, len, XSLT_MAX_STYLESHEET, &xe);
    if (!doc) {
        *line = xe.line;
        *column = xe.column;
        if (xe.fail == PT_XML_DOCTYPE)
            snprintf(err, errlen, "the stylesheet has a DOCTYPE (DTDs and entities are refused)");
        else if (xe.fail == PT_XML_NOMEM)
            snprintf(err, errlen, "out of memory reading the stylesheet");
        else
            snprintf(err, errlen, "the stylesheet is not well-formed XML%s%s", xe.what[0] ? ": " : "",
                     xe.what);
        goto out;
    }
    /* a name for the document, so that libxslt's messages carry line numbers */
    doc->URL = xmlStrdup((const xmlChar *)"stylesheet");
    const char *why = refused_element(xmlDocGetRootElement(doc), line);
    if (why) {
        snprintf(err, errlen, "%s", why);
        xmlFreeDoc(doc);
        goto out;
    }
    xsltStylesheetPtr style = xsltParseStylesheetDoc(doc);
    if (!style || guard.tripped) {
        if (style)
            xsltFreeStylesheet(style);
        else
            xmlFreeDoc(doc);
        *line = msgs.have_error ? msgs.line : 0;
        snprintf(err, errlen, "%s",
                 guard.tripped ? (guard.why ? guard.why : "a limit")
                               : msgs_best("not a valid XSLT 1.0 stylesheet"));
        goto out;
    }
    if (style->encoding) {
        xmlCharEncodingHandlerPtr enc = xmlFindCharEncodingHandler((const char *)style->encoding);
        if (!enc) {
            snprintf(err, errlen, "xsl:output names an unknown encoding '%.60s'",
                     (const char *)style->encoding);
            xsltFreeStylesheet(style);
            goto out;
        }
        xmlCharEncCloseFunc(enc);
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        xsltFreeStylesheet(style);
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    s->style = style;
    s->method = (const char *)style->method;
    s->media_type = (const char *)style->mediaType;
    s->encoding = (const char *)style->encoding;
out:
    guard_disarm();
    handlers_restore(&h);
    return s;
}

void xslt_free(struct xslt_sheet *s)
{
    if (!s)
        return;
    xsltFreeStylesheet(s->style);
    free(s);
}

const char *xslt_method(const struct xslt_sheet *s)
{
    return s->method;
}

const char *xslt_media_type(const struct xslt_sheet *s)
{
    return s->media_type;
}

const char *xslt_encoding(const struct xslt_sheet *s)
{
    return s->encoding;
}

/* ============================================================== running */

struct out {
    xslt_writer write;
    void *arg;
    bool refused;
};

static int out_write(void *ctx, const char *buf, int len)
{
    struct out *o = ctx;
    if (len <= 0)
        return 0;
    if (o->write(o->arg, buf, (size_t)len) != 0) {
        o->refused = true;
        return -1;
    }
    return len;
}

static int out_close(void *ctx)
{
    (void)ctx;
    return 0;
}

/* Serializes the result as xsl:output says.  XSLT_OK, XSLT_TOO_LARGE or XSLT_FAILED. */
static enum xslt_result serialize(const struct xslt_sheet *s, xmlDocPtr res, xslt_writer write, void *arg)
{
    struct out o = {write, arg, false};
    xmlCharEncodingHandlerPtr enc = NULL;
    if (s->encoding) {
        enc = xmlFindCharEncodingHandler(s->encoding);
        if (enc && !strcasecmp(enc->name, "UTF-8")) {
            xmlCharEncCloseFunc(enc);
            enc = NULL;
        }
    }
    xmlOutputBufferPtr ob = xmlOutputBufferCreateIO(out_write, out_close, &o, enc);
    if (!ob) {
        if (enc)
            xmlCharEncCloseFunc(enc);
        return XSLT_FAILED;
    }
    int n = xsltSaveResultTo(ob, res, s->style);
    int rc = xmlOutputBufferClose(ob);
    if (o.refused)
        return XSLT_TOO_LARGE;
    return n < 0 || rc < 0 ? XSLT_FAILED : XSLT_OK;
}

static void fail_msg(char *err, size_t errlen, const char *what, const char *detail, int line)
{
    if (line > 0)
        snprintf(err, errlen, "%s: %s (stylesheet line %d)", what, detail, line);
    else
        snprintf(err, errlen, "%s: %s", what, detail);
}

enum xslt_result xslt_apply(const struct xslt_sheet *s, const char *in, size_t len, const char *const *params,
                            int nparams, const struct xslt_limits *lim, xslt_writer write, void *arg,
                            char *err, size_t errlen)
{
    static const struct xslt_limits defaults = {0};
    if (!lim)
        lim = &defaults;
    size_t max_input = lim->max_input ? lim->max_input : XSLT_MAX_INPUT;
    size_t max_memory = lim->max_memory ? lim->max_memory : XSLT_MAX_MEMORY;
    snprintf(err, errlen, "%s", "");

    enum xslt_result r = XSLT_FAILED;
    struct saved_handlers h;
    handlers_capture(&h);
    guard_arm(max_memory, lim->max_ms ? lim->max_ms : XSLT_MAX_MS);
    xsltTransformContextPtr ctxt = NULL;
    xmlDocPtr res = NULL;
    struct pt_xml_error xe;
    xmlDocPtr doc = pt_xml_read(in, len, max_input, &xe);
    if (!doc) {
        r = XSLT_BAD_INPUT;
        if (xe.fail == PT_XML_TOO_LARGE)
            snprintf(err, errlen, "the document is larger than %zu bytes", max_input);
        else if (xe.fail == PT_XML_DOCTYPE)
            snprintf(err, errlen, "documents with a DOCTYPE (DTD, entities) are refused");
        else if (xe.fail == PT_XML_NOMEM)
            snprintf(err, errlen, "%s",
                     guard.tripped ? "the document is too large for the memory limit" : "out of memory");
        else if (xe.what[0])
            snprintf(err, errlen, "not well-formed (line %d): %s", xe.line, xe.what);
        else
            snprintf(err, errlen, "not well-formed");
        goto out;
    }
    ctxt = xsltNewTransformContext(s->style, doc);
    if (!ctxt) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    guard.ctxt = ctxt;
    ctxt->maxTemplateDepth = lim->max_depth > 0 ? lim->max_depth : XSLT_MAX_DEPTH;
    ctxt->opLimit = lim->max_instr ? lim->max_instr : XSLT_MAX_INSTR;
    ctxt->opCount = 0;
    if (ctxt->xpathCtxt) {
        ctxt->xpathCtxt->opLimit = lim->max_xpath ? lim->max_xpath : XSLT_MAX_XPATH;
        ctxt->xpathCtxt->opCount = 0;
    }
    xsltSetTransformErrorFunc(ctxt, NULL, on_generic);
    if (!forbid_all || xsltSetCtxtSecurityPrefs(forbid_all, ctxt) != 0) {
        snprintf(err, errlen, "the security preferences could not be set");
        goto out;
    }
    if (nparams > 0) {
        const char **p = calloc((size_t)nparams * 2 + 1, sizeof(*p));
        if (!p) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        memcpy(p, params, (size_t)nparams * 2 * sizeof(*p));
        int q = xsltQuoteUserParams(ctxt, p);
        free(p);
        if (q != 0) {
            fail_msg(err, errlen, "a parameter was refused", msgs_best("invalid parameter"), 0);
            goto out;
        }
    }
    res = xsltApplyStylesheetUser(s->style, doc, NULL, NULL, NULL, ctxt);
    if (guard.tripped) {
        snprintf(err, errlen, "the transformation broke %s", guard.why);
        goto out;
    }
    if (!res || ctxt->state != XSLT_STATE_OK) {
        const char *m = msgs_best("the transformation failed"), *limit = NULL;
        if (ctxt->opCount >= ctxt->opLimit || strstr(m, "Operation limit exceeded"))
            limit = "the instruction limit";
        else if (ctxt->xpathCtxt && ctxt->xpathCtxt->opCount >= ctxt->xpathCtxt->opLimit)
            limit = "the XPath operation limit";
        else if (strstr(m, "infinite template recursion"))
            limit = "the template depth limit";
        else if (strstr(m, "infinite recursion") || strstr(m, "xsltMaxVars"))
            limit = "the variable limit";
        if (limit)
            snprintf(err, errlen, "the transformation broke %s", limit);
        else
            fail_msg(err, errlen, "the transformation failed", m, msgs.have_error ? msgs.line : 0);
        goto out;
    }
    r = serialize(s, res, write, arg);
    if (guard.tripped) {
        snprintf(err, errlen, "the transformation broke %s", guard.why);
        r = XSLT_FAILED;
    } else if (r == XSLT_TOO_LARGE)
        snprintf(err, errlen, "the result is too large");
    else if (r != XSLT_OK)
        snprintf(err, errlen, "the result could not be written");
out:
    if (res)
        xmlFreeDoc(res);
    if (ctxt)
        xsltFreeTransformContext(ctxt);
    if (doc)
        xmlFreeDoc(doc);
    guard_disarm();
    handlers_restore(&h);
    return r;
}
