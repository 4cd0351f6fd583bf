/*
 * pt_html -- Markdown to HTML (libcmark), and an allow-list sanitizer for
 * HTML that a provider wrote (portal pages, the home page, terms) before a
 * browser sees it.
 *
 * The sanitizer parses with libxml2's HTML parser (the same tolerant
 * reading a browser does: unclosed tags, stray end tags, entities) and
 * writes the tree back itself, keeping only allowed elements and
 * attributes:
 *   - elements: p, h1-h6, a, img, ul, ol, li, dl, dt, dd, pre, code, kbd,
 *     samp, blockquote, em, strong, b, i, s, del, ins, sub, sup, small,
 *     mark, table, caption, thead, tbody, tfoot, tr, th, td, hr, br, span,
 *     div; other harmless elements (u, font, center, section...) are
 *     unwrapped to their content; script, style, iframe, object, embed,
 *     form and its controls, svg, math, template and the document's head
 *     parts are dropped with everything inside;
 *   - attributes: a[href, title], img[src, alt, title, width, height],
 *     ol[start], th/td[colspan, rowspan, align], class on span, div, pre
 *     and code (letters, digits, '-', '_', spaces); nothing else (no
 *     style, no on*, no id);
 *   - URLs (after dropping the control characters and white space browsers
 *     ignore): http, https, mailto and relative ones; for img also
 *     data:image/png|jpeg|gif|webp;base64 (never SVG).  An absolute link
 *     gets rel="nofollow noopener noreferrer".
 * Input is bounded (PT_HTML_MAX_INPUT) and so is nesting: elements deeper
 * than PT_HTML_MAX_DEPTH keep their text only.
 *
 * Depends on libc, libcmark and libxml2 only.
 */
#ifndef PT_HTML_H
#define PT_HTML_H

#include <stdbool.h>
#include <stddef.h>

#define PT_HTML_MAX_INPUT (1024 * 1024)
#define PT_HTML_MAX_DEPTH 48

/* Markdown (CommonMark; raw HTML inside it allowed, then sanitized) to
   safe HTML.  malloc'd; NULL when md is longer than PT_HTML_MAX_INPUT or
   memory ran out. */
char *pt_html_markdown(const char *md, size_t len);
/* An HTML fragment through the allow-list.  malloc'd; NULL as above. */
char *pt_html_sanitize(const char *html, size_t len);
/* May url be the value of an href (img false) or of an img's src (img
   true)?  The URL as checked (control characters and white space removed)
   goes to out (outlen bytes, NUL-terminated) when out is not NULL. */
bool pt_html_url_ok(const char *url, bool img, char *out, size_t outlen);

#endif
