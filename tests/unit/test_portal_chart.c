/*
 * test_portal_chart -- the usage page's server-side SVG charts
 * (pt_portal_chart_svg): well-formed XML whatever the labels hold, every
 * text escaped, the accessible parts (role, <title>, <desc>, the data
 * table), no style attributes (the portal's CSP forbids them), the number of
 * shapes the data asks for, bounds on points and series, and values that are
 * not numbers.
 */
#include "base/pt_xml.h"
#include "portal/pt_portal_int.h"

#include <event2/buffer.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Renders a chart; the text (free it). */
static char *render(const char *title, const char *const *labels, int n, const struct pt_portal_series *s,
                    int ns, bool stacked, const char *unit)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "<root>"); /* a figure and a details element: one root for the parser */
    pt_portal_chart_svg(b, title, labels, n, s, ns, stacked, unit);
    evbuffer_add_printf(b, "</root>");
    size_t len = evbuffer_get_length(b);
    char *out = malloc(len + 1);
    evbuffer_remove(b, out, len);
    out[len] = '\0';
    evbuffer_free(b);
    return out;
}

static xmlDocPtr parse(const char *text)
{
    struct pt_xml_error e;
    xmlDocPtr d = pt_xml_read(text, strlen(text), 1 << 24, &e);
    if (!d)
        fail_msg("not well-formed: line %d column %d: %s\n%s", e.line, e.column, e.what, text);
    return d;
}

static int count(xmlDocPtr d, const char *xpath)
{
    xmlXPathContextPtr cx = xmlXPathNewContext(d);
    xmlXPathRegisterNs(cx, BAD_CAST "svg", BAD_CAST "http://www.w3.org/2000/svg");
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xpath, cx);
    int n = o && o->nodesetval ? o->nodesetval->nodeNr : 0;
    xmlXPathFreeObject(o);
    xmlXPathFreeContext(cx);
    return n;
}

static char *text_of(xmlDocPtr d, const char *xpath)
{
    xmlXPathContextPtr cx = xmlXPathNewContext(d);
    xmlXPathRegisterNs(cx, BAD_CAST "svg", BAD_CAST "http://www.w3.org/2000/svg");
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xpath, cx);
    char *out = NULL;
    if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
        xmlChar *c = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
        out = strdup((const char *)c);
        xmlFree(c);
    }
    xmlXPathFreeObject(o);
    xmlXPathFreeContext(cx);
    return out;
}

static const double ok_[4] = {5, 0, 2, 7}, blocked_[4] = {1, 1, 0, 0}, failed_[4] = {0, 3, 0, 1},
                    other_[4] = {0, 0, 0, 2};
static const char *const labels4[4] = {"00:00", "01:00", "02:00", "03:00"};

static void test_stacked_well_formed_and_accessible(void **state)
{
    (void)state;
    struct pt_portal_series s[] = {{"Successful", "var(--chart-success)", ok_},
                                   {"Blocked", "var(--chart-blocked)", blocked_},
                                   {"Failed", "var(--chart-failed)", failed_},
                                   {"Other", "var(--chart-other)", other_}};
    char *t = render("Calls by outcome", labels4, 4, s, 4, true, "calls");
    xmlDocPtr d = parse(t);
    assert_int_equal(count(d, "/root/figure[@class='chart']/svg:svg[@role='img']"), 1);
    /* aria-labelledby names the <title> and <desc> */
    char *ids = text_of(d, "//svg:svg/@aria-labelledby");
    assert_non_null(ids);
    char tid[64], did[64];
    assert_int_equal(sscanf(ids, "%63s %63s", tid, did), 2);
    char q[200];
    snprintf(q, sizeof(q), "//svg:svg/svg:title[@id='%s']", tid);
    assert_int_equal(count(d, q), 1);
    snprintf(q, sizeof(q), "//svg:svg/svg:desc[@id='%s']", did);
    assert_int_equal(count(d, q), 1);
    char *title = text_of(d, "//svg:title");
    assert_string_equal(title, "Calls by outcome");
    char *desc = text_of(d, "//svg:desc");
    assert_non_null(strstr(desc, "Successful: total 14, highest 7 calls."));
    /* one rect per non-zero value, in one group per series; 4 legend swatches */
    assert_int_equal(count(d, "//svg:g[contains(@class,'bar')]/svg:rect"), 3 + 2 + 2 + 1);
    assert_int_equal(count(d, "//svg:g[@class='legend']/svg:rect"), 4);
    /* the data table: a header row and a row per point, a column per series */
    assert_int_equal(count(d, "//table[@class='chart-data']/tbody/tr"), 4);
    assert_int_equal(count(d, "//table[@class='chart-data']/thead/tr/th"), 5);
    char *cell = text_of(d, "//table[@class='chart-data']/tbody/tr[4]/td[1]");
    assert_string_equal(cell, "7");
    /* the y axis: four round steps from 0 to at least the highest stack (10) */
    assert_int_equal(count(d, "//svg:g[@class='grid']/svg:text"), 5);
    char *top = text_of(d, "//svg:g[@class='grid']/svg:text[5]");
    char *step = text_of(d, "//svg:g[@class='grid']/svg:text[2]");
    assert_string_equal(top, "10");
    assert_string_equal(step, "2.5");
    free(top);
    free(step);
    /* colours from CSS variables come through classes, never style="" */
    assert_null(strstr(t, "style="));
    assert_null(strstr(t, "var("));
    free(cell);
    free(desc);
    free(title);
    free(ids);
    xmlFreeDoc(d);
    free(t);
}

static void test_labels_are_escaped(void **state)
{
    (void)state;
    const char *evil = "<script>alert(\"x\")</script> & 'q' \x01";
    const char *const labels[2] = {evil, "</svg><img src=x onerror=alert(1)>"};
    const double y[2] = {1, 2};
    struct pt_portal_series s[] = {{"<b>name</b>\"", "red\" onload=\"alert(1)", y}};
    char *t = render("Title </title><script>x</script>", labels, 2, s, 1, false, "<ms>");
    xmlDocPtr d = parse(t);
    assert_null(strstr(t, "<script"));
    assert_null(strstr(t, "<img"));
    assert_null(strstr(t, "<b>"));
    assert_null(strstr(t, "onload=\""));
    /* the text is kept, as text */
    char *title = text_of(d, "//svg:title");
    assert_string_equal(title, "Title </title><script>x</script>");
    char *row = text_of(d, "//table[@class='chart-data']/tbody/tr[1]/th");
    assert_string_equal(row, "<script>alert(\"x\")</script> & 'q' ?"); /* control characters replaced */
    char *stroke = text_of(d, "//svg:polyline/@stroke");
    assert_string_equal(stroke,
                        "red\" onload=\"alert(1)"); /* a literal colour: an attribute value, escaped */
    assert_int_equal(count(d, "//svg:polyline"), 1);
    assert_int_equal(count(d, "//*[@onload or @onerror]"), 0);
    free(stroke);
    free(row);
    free(title);
    xmlFreeDoc(d);
    free(t);
}

static void test_bounds_and_odd_values(void **state)
{
    (void)state;
    enum { N = 5000 };
    double *y = calloc(N, sizeof(double));
    const char **labels = calloc(N, sizeof(char *));
    for (int i = 0; i < N; i++) {
        y[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? -5 : INFINITY;
        labels[i] = "x";
    }
    struct pt_portal_series s[12];
    for (int i = 0; i < 12; i++)
        s[i] = (struct pt_portal_series){"s", "var(--c)", y};
    char *t = render("Big", labels, N, s, 12, true, NULL);
    xmlDocPtr d = parse(t);
    assert_true(count(d, "//table[@class='chart-data']/tbody/tr") <= 400);
    assert_true(count(d, "//table[@class='chart-data']/thead/tr/th") <= 9);
    assert_int_equal(count(d, "//svg:g[contains(@class,'bar')]/svg:rect"), 0); /* nothing positive to draw */
    assert_null(strstr(t, "nan"));
    assert_null(strstr(t, "inf"));
    xmlFreeDoc(d);
    free(t);
    /* no points, no series: still a well-formed, labelled chart */
    t = render(NULL, NULL, 0, NULL, 0, false, "ms");
    d = parse(t);
    assert_int_equal(count(d, "//svg:svg[@role='img']"), 1);
    xmlFreeDoc(d);
    free(t);
    free(y);
    free(labels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stacked_well_formed_and_accessible),
        cmocka_unit_test(test_labels_are_escaped),
        cmocka_unit_test(test_bounds_and_odd_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
