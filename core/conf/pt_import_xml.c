/*
 * pt_import_xml -- safe reading of untrusted XML for the converters.
 */
#include "conf/pt_import_xml.h"

#include "base/pt_xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

xmlDocPtr pt_import_xml_read(const char *text, size_t len, char *err, size_t errlen)
{
    struct pt_xml_error e;
    xmlDocPtr doc = pt_xml_read(text, len, PT_IMPORT_XML_MAX_SIZE, &e);
    if (doc)
        return doc;
    if (e.fail == PT_XML_TOO_LARGE)
        snprintf(err, errlen, "the document is larger than %u bytes (4 MB)", PT_IMPORT_XML_MAX_SIZE);
    else if (e.fail == PT_XML_NOMEM)
        snprintf(err, errlen, "out of memory");
    else if (e.fail == PT_XML_DOCTYPE)
        snprintf(err, errlen, "line %d: documents with a DOCTYPE (DTD, entities) are refused", e.line);
    else
        snprintf(err, errlen, "line %d, column %d: %s", e.line, e.column,
                 e.what[0] ? e.what : "not a well-formed XML document");
    return NULL;
}

void pt_import_xml_vmessage(char *out, size_t outlen, const xmlNode *at, const char *fmt, va_list ap)
{
    int off = at ? snprintf(out, outlen, "line %ld: ", xmlGetLineNo(at)) : 0;
    if (off < 0 || (size_t)off >= outlen)
        off = 0;
    vsnprintf(out + off, outlen - (size_t)off, fmt, ap);
}

bool pt_import_xml_is(const xmlNode *n, const char *ns, const char *local)
{
    if (!n || n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, local))
        return false;
    if (!ns)
        return !n->ns || !n->ns->href;
    return n->ns && n->ns->href && !strcmp((const char *)n->ns->href, ns);
}

xmlNodePtr pt_import_xml_elem(xmlNodePtr n)
{
    while (n && n->type != XML_ELEMENT_NODE)
        n = n->next;
    return n;
}

const char *pt_import_xml_attr(const xmlNode *n, const char *name)
{
    for (const xmlAttr *a = n->properties; a; a = a->next)
        if (!a->ns && !strcmp((const char *)a->name, name))
            return a->children && a->children->content ? (const char *)a->children->content : "";
    return NULL;
}

char *pt_import_xml_child_text(xmlNodePtr n, const char *ns, const char *local)
{
    for (xmlNodePtr c = pt_import_xml_elem(n->children); c; c = pt_import_xml_elem(c->next))
        if (pt_import_xml_is(c, ns, local)) {
            xmlChar *t = xmlNodeGetContent(c);
            if (!t)
                return NULL;
            /* trim */
            char *s = (char *)t;
            size_t b = 0, e = strlen(s);
            while (b < e && strchr(" \t\r\n", s[b]))
                b++;
            while (e > b && strchr(" \t\r\n", s[e - 1]))
                e--;
            char *out = NULL;
            if (e > b) {
                out = malloc(e - b + 1);
                if (out) {
                    memcpy(out, s + b, e - b);
                    out[e - b] = '\0';
                }
            }
            xmlFree(t);
            return out;
        }
    return NULL;
}

const char *pt_import_xml_nsattr(const xmlNode *n, const char *ns, const char *name)
{
    xmlAttrPtr a = xmlHasNsProp(n, (const xmlChar *)name, (const xmlChar *)ns);
    if (!a || a->type != XML_ATTRIBUTE_NODE)
        return NULL;
    return a->children && a->children->content ? (const char *)a->children->content : "";
}

bool pt_import_xml_qname(xmlNodePtr n, const char *qname, const char **ns, const char **local)
{
    const char *colon = strchr(qname, ':');
    char prefix[128];
    const xmlChar *p = NULL;
    if (colon) {
        size_t pl = (size_t)(colon - qname);
        if (pl == 0 || pl >= sizeof(prefix))
            return false;
        memcpy(prefix, qname, pl);
        prefix[pl] = '\0';
        p = (const xmlChar *)prefix;
        *local = colon + 1;
    } else
        *local = qname;
    xmlNsPtr x = xmlSearchNs(n->doc, n, p);
    if (!x) {
        *ns = NULL;
        return !colon;
    }
    *ns = (const char *)x->href;
    return true;
}

void pt_import_xml_normalize(const char *name, char *out, size_t outlen)
{
    size_t n = 0, max = outlen > 77 ? 76 : outlen - 1;
    bool dash = false;
    for (const unsigned char *s = (const unsigned char *)name; *s && n < max; s++) {
        unsigned char c = *s;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (dash && n)
                out[n++] = '-';
            dash = false;
            if (n < max)
                out[n++] = (char)c;
        } else if (c >= 'A' && c <= 'Z') {
            if (dash && n)
                out[n++] = '-';
            dash = false;
            if (n < max)
                out[n++] = (char)(c - 'A' + 'a');
        } else
            dash = true;
    }
    while (n && out[n - 1] == '-')
        n--;
    out[n] = '\0';
}
