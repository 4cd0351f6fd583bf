/*
 * pt_mgmt_polxml -- APIM's XML policy documents read into Portico's form
 * (see the header).
 */
#include "mgmt/pt_mgmt_polxml.h"

#include "base/pt_utf8.h"
#include "conf/pt_import_xml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLXML_MAX_DEPTH PT_MGMT_POLXML_MAX_DEPTH

/* ------------------------------------------------------------- rawxml */

/* Appends s (n bytes) to the growing buffer; false when out of room. */
static bool put(char *out, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at + n >= cap)
        return false;
    memcpy(out + *at, s, n);
    *at += n;
    return true;
}

/*
 * rawxml: inside an expression (@(...) or @{...}, balanced, string
 * literals skipped) < > & " ' are written as entities, so that the
 * document parses as XML and the expression reads back as written.
 * out has room for 6 times the input (the longest entity) plus one.
 */
static bool escape_expressions(const char *in, size_t len, char *out, size_t cap, size_t *outlen)
{
    size_t at = 0;
    for (size_t i = 0; i < len;) {
        if (in[i] != '@' || i + 1 >= len || (in[i + 1] != '(' && in[i + 1] != '{')) {
            if (!put(out, cap, &at, in + i, 1))
                return false;
            i++;
            continue;
        }
        char open = in[i + 1], close = open == '(' ? ')' : '}';
        int depth = 0;
        char quote = 0;
        if (!put(out, cap, &at, in + i, 1))
            return false;
        i++;
        for (; i < len; i++) { /* ends at the closing bracket or the end of the text */
            char c = in[i];
            if (quote) {
                if (c == '\\' && i + 1 < len) { /* an escaped character stays in the literal */
                    const char *e = in[i + 1] == '"' ? "&quot;" : in[i + 1] == '\'' ? "&apos;" : NULL;
                    if (!put(out, cap, &at, "\\", 1) ||
                        !(e ? put(out, cap, &at, e, strlen(e)) : put(out, cap, &at, in + i + 1, 1)))
                        return false;
                    i++;
                    continue;
                }
                if (c == quote)
                    quote = 0;
            } else if (c == '"' || c == '\'')
                quote = c;
            else if (c == open)
                depth++;
            else if (c == close)
                depth--;
            const char *e = c == '<'    ? "&lt;"
                            : c == '>'  ? "&gt;"
                            : c == '&'  ? "&amp;"
                            : c == '"'  ? "&quot;"
                            : c == '\'' ? "&apos;"
                                        : NULL;
            if (!(e ? put(out, cap, &at, e, strlen(e)) : put(out, cap, &at, &c, 1)))
                return false;
            if (!quote && depth == 0) {
                i++;
                break;
            }
        }
    }
    out[at] = 0;
    *outlen = at;
    return true;
}

/* ---------------------------------------------------------- the mapping */

struct polxml {
    char *err;
    size_t errlen;
};

static json_t *fail(struct polxml *px, const xmlNode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pt_import_xml_vmessage(px->err, px->errlen, at, fmt, ap);
    va_end(ap);
    return NULL;
}

static const char *name_of(const xmlNode *n)
{
    return (const char *)n->name;
}

/* The element's text, trimmed, malloc'd ("" when none). */
static char *text_of(xmlNodePtr n)
{
    xmlChar *t = xmlNodeGetContent(n);
    const char *s = t ? (const char *)t : "";
    size_t b = strspn(s, " \t\r\n"), e = strlen(s);
    while (e > b && strchr(" \t\r\n", s[e - 1]))
        e--;
    char *out = strndup(s + b, e - b);
    xmlFree(t);
    return out;
}

static bool has_elements(xmlNodePtr n)
{
    return pt_import_xml_elem(n->children) != NULL;
}

static json_t *statements(struct polxml *px, xmlNodePtr parent, int depth);

/* An element as an attribute value: its text, or a map of its attributes and children. */
static json_t *attributes(struct polxml *px, xmlNodePtr n, int depth)
{
    if (depth > POLXML_MAX_DEPTH)
        return fail(px, n, "elements nested too deeply");
    if (!n->properties && !has_elements(n)) {
        char *t = text_of(n);
        json_t *v = *t ? json_string(t) : json_object();
        free(t);
        return v;
    }
    json_t *o = json_object();
    for (xmlAttrPtr a = n->properties; a; a = a->next) {
        xmlChar *v = xmlNodeListGetString(n->doc, a->children, 1);
        json_object_set_new(o, (const char *)a->name, json_string(v ? (const char *)v : ""));
        xmlFree(v);
    }
    for (xmlNodePtr c = pt_import_xml_elem(n->children); c; c = pt_import_xml_elem(c->next)) {
        json_t *v = attributes(px, c, depth + 1);
        if (!v) {
            json_decref(o);
            return NULL;
        }
        json_t *prev = json_object_get(o, name_of(c));
        if (!prev)
            json_object_set_new(o, name_of(c), v);
        else if (json_is_array(prev)) /* values are strings or maps: a list is a repetition */
            json_array_append_new(prev, v);
        else {
            json_t *l = json_pack("[O]", prev);
            json_array_append_new(l, v);
            json_object_set_new(o, name_of(c), l);
        }
    }
    return o;
}

/* choose: [{when: CONDITION, then: [...]}, ..., {otherwise: [...]}] */
static json_t *choose(struct polxml *px, xmlNodePtr n, int depth)
{
    json_t *l = json_array();
    for (xmlNodePtr c = pt_import_xml_elem(n->children); c; c = pt_import_xml_elem(c->next)) {
        bool when = !strcmp(name_of(c), "when");
        if (!when && strcmp(name_of(c), "otherwise")) {
            json_decref(l);
            return fail(px, c, "choose holds <when> and <otherwise>, not <%s>", name_of(c));
        }
        json_t *body = statements(px, c, depth + 1);
        if (!body) {
            json_decref(l);
            return NULL;
        }
        if (when) {
            const char *cond = pt_import_xml_attr(c, "condition");
            if (!cond) {
                json_decref(body);
                json_decref(l);
                return fail(px, c, "<when> needs the attribute 'condition'");
            }
            json_array_append_new(l, json_pack("{s:s,s:o}", "when", cond, "then", body));
        } else
            json_array_append_new(l, json_pack("{s:o}", "otherwise", body));
    }
    return l;
}

/* Policies whose child elements are statements (Portico: their `policies`). */
static bool nests_statements(const char *name)
{
    return !strcmp(name, "retry") || !strcmp(name, "wait") || !strcmp(name, "limit-concurrency");
}

static json_t *statement(struct polxml *px, xmlNodePtr n, int depth)
{
    const char *name = name_of(n);
    if (depth > POLXML_MAX_DEPTH)
        return fail(px, n, "policies nested too deeply");
    if (!strcmp(name, "base"))
        return json_string("base");
    json_t *v;
    if (!strcmp(name, "choose"))
        v = choose(px, n, depth);
    else if (nests_statements(name)) {
        json_t *body = statements(px, n, depth + 1);
        v = body ? json_object() : NULL;
        for (xmlAttrPtr a = v ? n->properties : NULL; a; a = a->next) {
            xmlChar *s = xmlNodeListGetString(n->doc, a->children, 1);
            json_object_set_new(v, (const char *)a->name, json_string(s ? (const char *)s : ""));
            xmlFree(s);
        }
        if (v)
            json_object_set_new(v, "policies", body);
    } else
        v = attributes(px, n, depth + 1);
    return v ? json_pack("{s:o}", name, v) : NULL;
}

static json_t *statements(struct polxml *px, xmlNodePtr parent, int depth)
{
    json_t *l = json_array();
    for (xmlNodePtr c = pt_import_xml_elem(parent->children); c; c = pt_import_xml_elem(c->next)) {
        json_t *s = statement(px, c, depth);
        if (!s) {
            json_decref(l);
            return NULL;
        }
        json_array_append_new(l, s);
    }
    return l;
}

static json_t *document(struct polxml *px, xmlNodePtr root)
{
    if (!root || strcmp(name_of(root), "policies"))
        return fail(px, root, "a policy document's root element is <policies>, not <%s>",
                    root ? name_of(root) : "");
    json_t *doc = json_object();
    for (xmlNodePtr c = pt_import_xml_elem(root->children); c; c = pt_import_xml_elem(c->next)) {
        const char *s = name_of(c);
        if (strcmp(s, "inbound") && strcmp(s, "backend") && strcmp(s, "outbound") && strcmp(s, "on-error")) {
            json_decref(doc);
            return fail(px, c, "<policies> holds <inbound>, <backend>, <outbound> and <on-error>, not <%s>",
                        s);
        }
        if (json_object_get(doc, s)) {
            json_decref(doc);
            return fail(px, c, "<%s> appears twice", s);
        }
        json_t *l = statements(px, c, 0);
        if (!l) {
            json_decref(doc);
            return NULL;
        }
        json_object_set_new(doc, s, l);
    }
    return doc;
}

/*
 * The message ends at its last whole UTF-8 sequence: it names elements of
 * the document (UTF-8, any length), and snprintf cuts at a byte count, so a
 * long name could end in half a character, which jansson refuses as the
 * "message" of the 400 (the answer would have no body).  Anything else that
 * is not UTF-8 (none expected) becomes '?'.
 */
static void whole_utf8(char *err)
{
    size_t n = strlen(err);
    for (size_t i = 0; i < n;) {
        size_t l = pt_utf8_seq((const unsigned char *)err + i, n - i);
        if (l) {
            i += l;
            continue;
        }
        /* a cut sequence: its lead byte with only continuation bytes after it */
        size_t k = i + 1;
        while (k < n && ((unsigned char)err[k] & 0xc0) == 0x80)
            k++;
        if (k == n && ((unsigned char)err[i] & 0xc0) == 0xc0) {
            err[i] = 0;
            return;
        }
        err[i++] = '?';
    }
}

static json_t *read_document(const char *text, size_t len, bool raw, char *err, size_t errlen)
{
    snprintf(err, errlen, "cannot read the document");
    if (len > PT_IMPORT_XML_MAX_SIZE / 6) {
        snprintf(err, errlen, "larger than %u bytes", PT_IMPORT_XML_MAX_SIZE / 6);
        return NULL;
    }
    char *esc = NULL;
    if (raw) {
        size_t cap = len * 6 + 1, n = 0;
        esc = malloc(cap);
        if (!esc || !escape_expressions(text, len, esc, cap, &n)) {
            free(esc);
            return NULL;
        }
        text = esc;
        len = n;
    }
    xmlDocPtr d = pt_import_xml_read(text, len, err, errlen);
    free(esc);
    if (!d)
        return NULL;
    struct polxml px = {err, errlen};
    json_t *doc = document(&px, xmlDocGetRootElement(d));
    xmlFreeDoc(d);
    return doc;
}

json_t *pt_mgmt_polxml_read(const char *text, size_t len, bool raw, char *err, size_t errlen)
{
    json_t *doc = read_document(text, len, raw, err, errlen);
    if (!doc && errlen)
        whole_utf8(err);
    return doc;
}
