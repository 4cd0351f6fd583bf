/*
 * pt_html -- Markdown and the HTML allow-list (see pt_html.h).
 *
 * The sanitizer never hands libxml2's tree to a serializer: it walks the
 * tree itself, iteratively (parent and sibling pointers, no recursion, so a
 * deep tree costs no stack), and writes each allowed element with its
 * allowed attributes, double-quoted and escaped, and each text node
 * escaped.  So what the browser parses is exactly the tree written here:
 * no raw-text element (script, style...) is ever written, and no '<', '>',
 * '&' or '"' of the input reaches the output unescaped.
 */
#include "base/pt_html.h"
#include "base/pt_sbuf.h"

#include <cmark.h>
#include <ctype.h>
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ output */

/* Text or an attribute value with &, <, > and " escaped. */
static void put_esc(struct pt_sbuf *o, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '&'   ? "&amp;"
                          : *s == '<' ? "&lt;"
                          : *s == '>' ? "&gt;"
                          : *s == '"' ? "&quot;"
                                      : NULL;
        if (!rep)
            continue;
        pt_sbuf_add(o, run, (size_t)(s - run));
        pt_sbuf_str(o, rep);
        run = s + 1;
    }
    pt_sbuf_add(o, run, (size_t)(s - run));
}

/* ------------------------------------------------------------ URLs */

static bool base64_tail(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/' && *s != '=')
            return false;
    return true;
}

bool pt_html_url_ok(const char *url, bool img, char *out, size_t outlen)
{
    char buf[8192];
    size_t n = 0;
    if (!url)
        return false;
    /* what browsers ignore: leading and trailing controls and spaces, tabs
       and line breaks anywhere; other controls inside are refused, spaces
       inside are encoded */
    const char *b = url, *e = url + strlen(url);
    while (b < e && (unsigned char)*b <= 0x20)
        b++;
    while (e > b && (unsigned char)e[-1] <= 0x20)
        e--;
    for (const char *p = b; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\t' || c == '\n' || c == '\r')
            continue;
        if (c < 0x20 || c == 0x7f)
            return false;
        const char *piece = c == ' ' ? "%20" : NULL;
        size_t k = piece ? 3 : 1;
        if (n + k + 1 > sizeof(buf))
            return false;
        memcpy(buf + n, piece ? piece : p, k);
        n += k;
    }
    buf[n] = 0;
    if (n == 0)
        return false;
    /* the scheme: what comes before a ':' that precedes any '/', '?' or '#' */
    size_t colon = strcspn(buf, ":/?#");
    /* an entity the HTML parser did not know ("javascript&colon;...") is
       written escaped, but a name part with '&' is refused all the same */
    if (memchr(buf, '&', colon))
        return false;
    bool ok;
    if (buf[colon] != ':') {
        ok = true; /* relative (path, query, fragment, or //host) */
    } else {
        char scheme[16];
        bool valid = colon > 0 && colon < sizeof(scheme) && isalpha((unsigned char)buf[0]);
        for (size_t i = 0; valid && i < colon; i++) {
            unsigned char c = (unsigned char)buf[i];
            valid = isalnum(c) || c == '+' || c == '-' || c == '.';
            scheme[i] = (char)tolower(c);
        }
        if (!valid)
            return false;
        scheme[colon] = 0;
        ok = strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0 ||
             (!img && strcmp(scheme, "mailto") == 0);
        if (!ok && img && strcmp(scheme, "data") == 0) {
            static const char *const types[] = {"data:image/png;base64,", "data:image/jpeg;base64,",
                                                "data:image/gif;base64,", "data:image/webp;base64,"};
            for (size_t i = 0; i < sizeof(types) / sizeof(types[0]) && !ok; i++) {
                size_t tl = strlen(types[i]);
                ok = strncasecmp(buf, types[i], tl) == 0 && base64_tail(buf + tl);
            }
        }
    }
    if (ok && out) {
        if (n + 1 > outlen)
            return false;
        memcpy(out, buf, n + 1);
    }
    return ok;
}

/* ------------------------------------------------------------ the lists */

enum cls { DROP, UNWRAP, ALLOW };

static const char *const allowed[] = {
    "p",     "h1",    "h2",    "h3",  "h4",  "h5",   "h6",  "a",     "img",        "ul",    "ol",
    "li",    "dl",    "dt",    "dd",  "pre", "code", "kbd", "samp",  "blockquote", "em",    "strong",
    "b",     "i",     "s",     "del", "ins", "sub",  "sup", "small", "mark",       "table", "caption",
    "thead", "tbody", "tfoot", "tr",  "th",  "td",   "hr",  "br",    "span",       "div",   NULL};

/* Dropped with everything inside: active content, forms, foreign content,
   raw text and the document's head. */
static const char *const dropped[] = {
    "script",   "style",   "iframe",   "frame",  "frameset",  "object",   "embed",  "applet", "form",
    "input",    "button",  "select",   "option", "optgroup",  "textarea", "svg",    "math",   "template",
    "noscript", "noembed", "noframes", "xmp",    "plaintext", "title",    "head",   "base",   "link",
    "meta",     "param",   "audio",    "video",  "source",    "track",    "canvas", "portal", "dialog",
    "slot",     "marquee", "keygen",   "output", "datalist",  "isindex",  NULL};

static bool in(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (strcmp(*list, name) == 0)
            return true;
    return false;
}

static enum cls classify(const xmlNode *n)
{
    const char *name = (const char *)n->name;
    if (!name || n->ns) /* namespaced (foreign) elements are never HTML's */
        return DROP;
    if (in(dropped, name))
        return DROP;
    if (in(allowed, name))
        return ALLOW;
    /* unknown names: the text inside stays */
    return UNWRAP;
}

static bool is_void(const char *name)
{
    return strcmp(name, "br") == 0 || strcmp(name, "hr") == 0 || strcmp(name, "img") == 0;
}

static bool digits(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

static bool class_ok(const char *s)
{
    if (strlen(s) > 200)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != ' ')
            return false;
    return true;
}

static void put_attr(struct pt_sbuf *o, const char *name, const char *value)
{
    pt_sbuf_str(o, " ");
    pt_sbuf_str(o, name);
    pt_sbuf_str(o, "=\"");
    put_esc(o, value);
    pt_sbuf_str(o, "\"");
}

/* The opening tag with its allowed attributes; false when the element is
   not written at all (an img without an acceptable src). */
static bool open_tag(struct pt_sbuf *o, const xmlNode *n)
{
    const char *name = (const char *)n->name;
    bool is_a = strcmp(name, "a") == 0, is_img = strcmp(name, "img") == 0;
    bool classy = strcmp(name, "span") == 0 || strcmp(name, "div") == 0 || strcmp(name, "pre") == 0 ||
                  strcmp(name, "code") == 0;
    bool cell = strcmp(name, "td") == 0 || strcmp(name, "th") == 0;
    struct pt_sbuf attrs = {.first = 1024};
    bool has_src = false, absolute = false;
    for (const xmlAttr *a = n->properties; a; a = a->next) {
        const char *an = (const char *)a->name;
        if (!an || a->ns)
            continue;
        xmlChar *v = xmlNodeGetContent((const xmlNode *)a);
        const char *val = v ? (const char *)v : "";
        char url[8192];
        if (is_a && strcmp(an, "href") == 0) {
            if (pt_html_url_ok(val, false, url, sizeof(url))) {
                put_attr(&attrs, "href", url);
                absolute = strncasecmp(url, "http", 4) == 0 || strncmp(url, "//", 2) == 0;
            }
        } else if (is_img && strcmp(an, "src") == 0) {
            if (pt_html_url_ok(val, true, url, sizeof(url))) {
                put_attr(&attrs, "src", url);
                has_src = true;
            }
        } else if ((is_a || is_img) && strcmp(an, "title") == 0 && strlen(val) <= 1000) {
            put_attr(&attrs, an, val);
        } else if (is_img && strcmp(an, "alt") == 0 && strlen(val) <= 1000) {
            put_attr(&attrs, an, val);
        } else if (is_img && (strcmp(an, "width") == 0 || strcmp(an, "height") == 0) && digits(val, 4)) {
            put_attr(&attrs, an, val);
        } else if (strcmp(name, "ol") == 0 && strcmp(an, "start") == 0 && digits(val, 9)) {
            put_attr(&attrs, an, val);
        } else if (cell && (strcmp(an, "colspan") == 0 || strcmp(an, "rowspan") == 0) && digits(val, 3)) {
            put_attr(&attrs, an, val);
        } else if (cell && strcmp(an, "align") == 0 &&
                   (strcmp(val, "left") == 0 || strcmp(val, "center") == 0 || strcmp(val, "right") == 0)) {
            put_attr(&attrs, an, val);
        } else if (classy && strcmp(an, "class") == 0 && class_ok(val)) {
            put_attr(&attrs, an, val);
        }
        xmlFree(v);
    }
    if (is_img && !has_src) {
        free(attrs.p);
        return false;
    }
    if (is_a && absolute)
        put_attr(&attrs, "rel", "nofollow noopener noreferrer");
    pt_sbuf_str(o, "<");
    pt_sbuf_str(o, name);
    if (attrs.p)
        pt_sbuf_str(o, attrs.p);
    if (attrs.failed)
        o->failed = true;
    pt_sbuf_str(o, ">");
    free(attrs.p);
    return true;
}

static void close_tag(struct pt_sbuf *o, const xmlNode *n)
{
    pt_sbuf_str(o, "</");
    pt_sbuf_str(o, (const char *)n->name);
    pt_sbuf_str(o, ">");
}

/* Did open_tag write n?  (Asked again when leaving n, so nothing is kept
   per level.) */
static bool written(const xmlNode *n, int depth)
{
    if (n->type != XML_ELEMENT_NODE || depth >= PT_HTML_MAX_DEPTH || classify(n) != ALLOW)
        return false;
    if (strcmp((const char *)n->name, "img") == 0)
        return false; /* void: never closed */
    return true;
}

static void walk(struct pt_sbuf *o, xmlNode *top)
{
    xmlNode *cur = top->children;
    int depth = 0;
    /* every step either descends, moves to a sibling or climbs: each node is
       entered once and left once */
    while (cur && !o->failed) {
        bool descend = false;
        if (cur->type == XML_TEXT_NODE) {
            if (cur->content)
                put_esc(o, (const char *)cur->content);
        } else if (cur->type == XML_ELEMENT_NODE) {
            enum cls c = classify(cur);
            if (c != DROP) {
                const char *name = (const char *)cur->name;
                bool emit = c == ALLOW && depth < PT_HTML_MAX_DEPTH;
                bool opened = emit && open_tag(o, cur);
                if (is_void(name)) {
                    descend = false;
                } else if (cur->children) {
                    descend = true;
                } else if (opened) {
                    close_tag(o, cur);
                }
            }
        }
        /* comments, CDATA, processing instructions, entity references: nothing */
        if (descend) {
            cur = cur->children;
            depth++;
            continue;
        }
        while (cur && cur != top && !cur->next) {
            cur = cur->parent;
            depth--;
            if (cur && cur != top && written(cur, depth))
                close_tag(o, cur);
        }
        if (!cur || cur == top)
            break;
        cur = cur->next;
    }
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
    xmlInitParser();
}

/* The allow-list over any length that fits libxml2's int. */
static char *sanitize(const char *html, size_t len)
{
    struct pt_sbuf o = {.first = 1024};
    pt_sbuf_add(&o, "", 0);
    if (len == 0 || len > INT32_MAX)
        return o.p;
    pthread_once(&xml_once, xml_init);
    htmlDocPtr doc = htmlReadMemory(html, (int)len, NULL, "UTF-8",
                                    HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET |
                                        HTML_PARSE_NODEFDTD | HTML_PARSE_COMPACT);
    if (doc) {
        /* html, head and body are classified like any element: html and body
           unwrap, head is dropped */
        walk(&o, (xmlNode *)doc);
        xmlFreeDoc(doc);
    }
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    return o.p;
}

char *pt_html_sanitize(const char *html, size_t len)
{
    if (len > PT_HTML_MAX_INPUT)
        return NULL;
    return sanitize(html ? html : "", html ? len : 0);
}

char *pt_html_markdown(const char *md, size_t len)
{
    if (len > PT_HTML_MAX_INPUT)
        return NULL;
    /* raw HTML is kept by cmark (CMARK_OPT_UNSAFE) because the allow-list
       decides what stays of it, links included */
    char *raw =
        cmark_markdown_to_html(md ? md : "", md ? len : 0, CMARK_OPT_UNSAFE | CMARK_OPT_VALIDATE_UTF8);
    if (!raw)
        return NULL;
    /* cmark's output is longer than its input (tags, escapes) but bounded by
       it: the sanitizer takes it whole */
    char *out = sanitize(raw, strlen(raw));
    free(raw);
    return out;
}
