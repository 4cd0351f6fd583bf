/*
 * html_check -- the shape pt_html's output must have, checked as a grammar
 * (for tests/fuzz/fuzz_html.c and tests/unit/test_html.c): text without a
 * raw '<' or '>', tags of the allowed elements only, attributes of the
 * allowed names only, each as name="value" with no '"' or '<' inside and
 * every href or src a URL pt_html_url_ok accepts.  Returns NULL when the
 * output passes, else what is wrong (static text).
 */
#ifndef HTML_CHECK_H
#define HTML_CHECK_H

#include "base/pt_html.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *const html_check_elements[] = {
    "p",     "h1",    "h2",    "h3",  "h4",  "h5",   "h6",  "a",     "img",        "ul",    "ol",
    "li",    "dl",    "dt",    "dd",  "pre", "code", "kbd", "samp",  "blockquote", "em",    "strong",
    "b",     "i",     "s",     "del", "ins", "sub",  "sup", "small", "mark",       "table", "caption",
    "thead", "tbody", "tfoot", "tr",  "th",  "td",   "hr",  "br",    "span",       "div",   NULL};
static const char *const html_check_attrs[] = {"href",   "title", "src",     "alt",     "width",
                                               "height", "start", "colspan", "rowspan", "align",
                                               "class",  "rel",   NULL};

static int html_check_in(const char *const *list, const char *s, size_t n)
{
    for (; *list; list++)
        if (strlen(*list) == n && strncmp(*list, s, n) == 0)
            return 1;
    return 0;
}

static const char *html_check(const char *s)
{
    while (*s) {
        if (*s == '>')
            return "a raw '>' in text";
        if (*s == '&') {
            if (strncmp(s, "&amp;", 5) && strncmp(s, "&lt;", 4) && strncmp(s, "&gt;", 4) &&
                strncmp(s, "&quot;", 6))
                return "an '&' that is not one of the four escapes";
            s++;
            continue;
        }
        if (*s != '<') {
            s++;
            continue;
        }
        s++;
        int closing = *s == '/';
        if (closing)
            s++;
        const char *name = s;
        while (islower((unsigned char)*s) || isdigit((unsigned char)*s))
            s++;
        if (!html_check_in(html_check_elements, name, (size_t)(s - name)))
            return "an element that is not allowed";
        while (!closing && *s == ' ') {
            s++;
            const char *an = s;
            while (islower((unsigned char)*s))
                s++;
            if (!html_check_in(html_check_attrs, an, (size_t)(s - an)))
                return "an attribute that is not allowed";
            int url =
                (s - an == 4 && strncmp(an, "href", 4) == 0) || (s - an == 3 && strncmp(an, "src", 3) == 0);
            if (s[0] != '=' || s[1] != '"')
                return "an attribute without =\"";
            s += 2;
            const char *v = s;
            while (*s && *s != '"') {
                if (*s == '<' || *s == '>')
                    return "a raw '<' or '>' in an attribute";
                s++;
            }
            if (!*s)
                return "an unterminated attribute";
            if (url) {
                /* undo the escapes, then the URL must pass the check again */
                char *u = malloc((size_t)(s - v) + 1), *o = u;
                for (const char *p = v; p < s;) {
                    if (strncmp(p, "&amp;", 5) == 0)
                        *o++ = '&', p += 5;
                    else if (strncmp(p, "&quot;", 6) == 0)
                        *o++ = '"', p += 6;
                    else if (strncmp(p, "&lt;", 4) == 0)
                        *o++ = '<', p += 4;
                    else if (strncmp(p, "&gt;", 4) == 0)
                        *o++ = '>', p += 4;
                    else
                        *o++ = *p++;
                }
                *o = 0;
                int ok = pt_html_url_ok(u, an[0] == 's', NULL, 0);
                /* an independent look: no scheme but the allowed ones */
                for (char *q = u; *q; q++)
                    *q = (char)tolower((unsigned char)*q);
                int js = strncmp(u, "javascript:", 11) == 0 || strncmp(u, "vbscript:", 9) == 0 ||
                         strncmp(u, "data:text", 9) == 0 || strncmp(u, "data:image/svg", 14) == 0 ||
                         strncmp(u, "file:", 5) == 0;
                free(u);
                if (!ok || js)
                    return "a URL the check refuses";
            }
            s++;
        }
        if (*s != '>')
            return "a tag not closed by '>'";
        s++;
    }
    return NULL;
}

#endif
