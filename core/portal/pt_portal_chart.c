/*
 * pt_portal_chart -- charts drawn on the server as SVG (the usage page).
 *
 * Why our own instead of a JavaScript chart library: the usage page must
 * work without JavaScript, the data is a few dozen points, and an SVG built
 * here needs no script-src exception, no bundle and no lockfile.  A chart is
 *
 *   <figure class="chart">
 *     <svg role="img" aria-labelledby="T D"> <title id=T> <desc id=D> axes,
 *       grid lines, bars (stacked) or lines, a legend </svg>
 *     <figcaption>title</figcaption>
 *   </figure>
 *   <table class="chart-data"> the same numbers </table>
 *
 * Colours: each series has the class sN (N its index); the stylesheet
 * (portal/subs.css) gives .sN its colour from the theme's CSS variables.  A
 * series whose colour is a literal (not var(...)) also gets it as a fill or
 * stroke presentation attribute.  No style attributes (the CSP forbids
 * them) and no <style> element.  Every text is escaped; sizes are bounded
 * (at most PT_CHART_MAX_POINTS points, PT_CHART_MAX_SERIES series).
 */
#include "portal/pt_portal_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PT_CHART_MAX_POINTS 400
#define PT_CHART_MAX_SERIES 8

/* The drawing area inside the viewBox (units are the SVG's own). */
#define W 640
#define H 260
#define LEFT 64
#define RIGHT 12
#define TOP 12
#define BOTTOM 64

/* XML-escapes s (text and attribute values alike). */
static void esc(struct evbuffer *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            evbuffer_add(out, "&amp;", 5);
            break;
        case '<':
            evbuffer_add(out, "&lt;", 4);
            break;
        case '>':
            evbuffer_add(out, "&gt;", 4);
            break;
        case '"':
            evbuffer_add(out, "&quot;", 6);
            break;
        case '\'':
            evbuffer_add(out, "&#39;", 5);
            break;
        default:
            /* control characters are not allowed in XML 1.0 */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n' && *s != '\r')
                evbuffer_add(out, "?", 1);
            else
                evbuffer_add(out, s, 1);
        }
    }
}

static double value(const struct pt_portal_series *s, int i)
{
    double v = s->y ? s->y[i] : 0;
    return isfinite(v) && v > 0 ? v : 0; /* counts, bytes and times are never negative */
}

/* A round number at or above v (1, 2, 2.5, 5 times a power of ten). */
static double nice_ceiling(double v)
{
    if (v <= 0)
        return 1;
    double p = pow(10, floor(log10(v)));
    static const double steps[] = {1, 2, 2.5, 5, 10};
    for (size_t i = 0; i < PT_ARRAY_LEN(steps); i++)
        if (steps[i] * p >= v)
            return steps[i] * p;
    return 10 * p;
}

/* A number for people: integers as they are, others with at most 2 decimals;
   large ones with k/M/G. */
static void fmt_num(char *buf, size_t size, double v, bool short_form)
{
    if (short_form && v >= 1e9)
        snprintf(buf, size, "%.3gG", v / 1e9);
    else if (short_form && v >= 1e6)
        snprintf(buf, size, "%.3gM", v / 1e6);
    else if (short_form && v >= 1e4)
        snprintf(buf, size, "%.3gk", v / 1e3);
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, size, "%.0f", v);
    else {
        snprintf(buf, size, "%.2f", v);
        char *e = buf + strlen(buf); /* 2.50 -> 2.5 */
        while (e > buf && e[-1] == '0')
            *--e = '\0';
        if (e > buf && e[-1] == '.') /* 3.999 -> 4.00 -> 4 */
            *--e = '\0';
    }
}

/* A unique prefix for the ids of one chart on a page. */
static unsigned chart_seq;

static bool literal_colour(const char *c)
{
    return c && *c && strncmp(c, "var(", 4) != 0;
}

static void draw_axes(struct evbuffer *out, double top, const char *const *x_labels, int n, const char *unit)
{
    const int ph = H - TOP - BOTTOM, pw = W - LEFT - RIGHT;
    char num[32];
    evbuffer_add_printf(out, "<g class=\"grid\">");
    for (int k = 0; k <= 4; k++) {
        double y = TOP + ph - ph * k / 4.0;
        fmt_num(num, sizeof(num), top * k / 4.0, true);
        evbuffer_add_printf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>", LEFT, y, W - RIGHT,
                            y);
        evbuffer_add_printf(out, "<text class=\"tick\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", LEFT - 6,
                            y + 4);
        esc(out, num);
        evbuffer_add_printf(out, "</text>");
    }
    evbuffer_add_printf(out, "</g>");
    if (unit && *unit) {
        evbuffer_add_printf(out, "<text class=\"unit\" x=\"4\" y=\"%d\">", TOP + 4);
        esc(out, unit);
        evbuffer_add_printf(out, "</text>");
    }
    /* at most 8 labels under the x axis, evenly spread, the newest point's always */
    int every = n > 8 ? (n + 7) / 8 : 1;
    double slot = n > 0 ? (double)pw / n : pw;
    evbuffer_add_printf(out, "<g class=\"x-labels\">");
    for (int i = (n - 1) % every; i < n; i += every) {
        evbuffer_add_printf(out, "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">",
                            LEFT + slot * i + slot / 2, H - BOTTOM + 16);
        esc(out, x_labels && x_labels[i] ? x_labels[i] : "");
        evbuffer_add_printf(out, "</text>");
    }
    evbuffer_add_printf(out, "</g><line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>", LEFT,
                        H - BOTTOM, W - RIGHT, H - BOTTOM);
}

static void draw_bars(struct evbuffer *out, double top, int n, const struct pt_portal_series *series, int ns)
{
    const int ph = H - TOP - BOTTOM, pw = W - LEFT - RIGHT;
    double slot = (double)pw / n, bw = slot * 0.7;
    for (int s = 0; s < ns; s++) {
        evbuffer_add_printf(out, "<g class=\"bar s%d\"", s);
        if (literal_colour(series[s].color)) {
            evbuffer_add_printf(out, " fill=\"");
            esc(out, series[s].color);
            evbuffer_add_printf(out, "\"");
        }
        evbuffer_add_printf(out, ">");
        for (int i = 0; i < n; i++) {
            double below = 0;
            for (int t = 0; t < s; t++)
                below += value(&series[t], i);
            double v = value(&series[s], i);
            if (v <= 0)
                continue;
            double h = ph * v / top, y = TOP + ph - ph * (below + v) / top;
            evbuffer_add_printf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>",
                                LEFT + slot * i + (slot - bw) / 2, y, bw, h);
        }
        evbuffer_add_printf(out, "</g>");
    }
}

static void draw_lines(struct evbuffer *out, double top, int n, const struct pt_portal_series *series, int ns)
{
    const int ph = H - TOP - BOTTOM, pw = W - LEFT - RIGHT;
    double slot = (double)pw / n;
    for (int s = 0; s < ns; s++) {
        evbuffer_add_printf(out, "<polyline class=\"line s%d\" fill=\"none\"", s);
        if (literal_colour(series[s].color)) {
            evbuffer_add_printf(out, " stroke=\"");
            esc(out, series[s].color);
            evbuffer_add_printf(out, "\"");
        }
        evbuffer_add_printf(out, " points=\"");
        for (int i = 0; i < n; i++)
            evbuffer_add_printf(out, "%s%.1f,%.1f", i ? " " : "", LEFT + slot * i + slot / 2,
                                TOP + ph - ph * value(&series[s], i) / top);
        evbuffer_add_printf(out, "\"/>");
    }
}

static void draw_legend(struct evbuffer *out, const struct pt_portal_series *series, int ns, bool stacked)
{
    evbuffer_add_printf(out, "<g class=\"legend\">");
    for (int s = 0; s < ns; s++) {
        int x = LEFT + (s % 4) * 140, y = H - 26 + (s / 4) * 16;
        evbuffer_add_printf(out, "<rect class=\"%s s%d\" x=\"%d\" y=\"%d\" width=\"10\" height=\"10\"",
                            stacked ? "bar" : "swatch", s, x, y - 9);
        if (literal_colour(series[s].color)) {
            evbuffer_add_printf(out, " fill=\"");
            esc(out, series[s].color);
            evbuffer_add_printf(out, "\"");
        }
        evbuffer_add_printf(out, "/><text x=\"%d\" y=\"%d\">", x + 14, y);
        esc(out, series[s].name);
        evbuffer_add_printf(out, "</text>");
    }
    evbuffer_add_printf(out, "</g>");
}

/* A sentence for screen readers: the totals of each series. */
static void describe(struct evbuffer *out, const char *title, int n, const struct pt_portal_series *series,
                     int ns, const char *unit)
{
    esc(out, title);
    evbuffer_add_printf(out, ": %d points.", n);
    for (int s = 0; s < ns; s++) {
        double sum = 0, max = 0;
        for (int i = 0; i < n; i++) {
            sum += value(&series[s], i);
            max = fmax(max, value(&series[s], i));
        }
        char a[32], b[32];
        fmt_num(a, sizeof(a), sum, false);
        fmt_num(b, sizeof(b), max, false);
        evbuffer_add_printf(out, " ");
        esc(out, series[s].name);
        evbuffer_add_printf(out, ": total %s, highest %s", a, b);
        if (unit && *unit) {
            evbuffer_add_printf(out, " ");
            esc(out, unit);
        }
        evbuffer_add_printf(out, ".");
    }
}

static void data_table(struct evbuffer *out, const char *title, const char *const *x_labels, int n,
                       const struct pt_portal_series *series, int ns, const char *unit)
{
    evbuffer_add_printf(out, "<details class=\"chart-data\"><summary>Data: ");
    esc(out, title);
    evbuffer_add_printf(out, "</summary><table class=\"chart-data\"><caption>");
    esc(out, title);
    if (unit && *unit) {
        evbuffer_add_printf(out, " (");
        esc(out, unit);
        evbuffer_add_printf(out, ")");
    }
    evbuffer_add_printf(out, "</caption><thead><tr><th scope=\"col\">Time</th>");
    for (int s = 0; s < ns; s++) {
        evbuffer_add_printf(out, "<th scope=\"col\">");
        esc(out, series[s].name);
        evbuffer_add_printf(out, "</th>");
    }
    evbuffer_add_printf(out, "</tr></thead><tbody>");
    for (int i = 0; i < n; i++) {
        evbuffer_add_printf(out, "<tr><th scope=\"row\">");
        esc(out, x_labels && x_labels[i] ? x_labels[i] : "");
        evbuffer_add_printf(out, "</th>");
        for (int s = 0; s < ns; s++) {
            char num[32];
            fmt_num(num, sizeof(num), value(&series[s], i), false);
            evbuffer_add_printf(out, "<td>%s</td>", num);
        }
        evbuffer_add_printf(out, "</tr>");
    }
    evbuffer_add_printf(out, "</tbody></table></details>");
}

void pt_portal_chart_svg(struct evbuffer *out, const char *title, const char *const *x_labels, int n,
                         const struct pt_portal_series *series, int nseries, bool stacked, const char *unit)
{
    if (n < 0)
        n = 0;
    if (n > PT_CHART_MAX_POINTS)
        n = PT_CHART_MAX_POINTS;
    if (nseries < 0 || !series)
        nseries = 0;
    if (nseries > PT_CHART_MAX_SERIES)
        nseries = PT_CHART_MAX_SERIES;
    title = title ? title : "";
    double max = 0;
    for (int i = 0; i < n; i++) {
        double sum = 0;
        for (int s = 0; s < nseries; s++) {
            sum = stacked ? sum + value(&series[s], i) : fmax(sum, value(&series[s], i));
        }
        max = fmax(max, sum);
    }
    double top = 4 * nice_ceiling(max / 4); /* four round steps: the grid's labels stay round */
    unsigned id = ++chart_seq;

    evbuffer_add_printf(out,
                        "<figure class=\"chart\"><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d "
                        "%d\" role=\"img\" aria-labelledby=\"chart%u-t chart%u-d\" class=\"%s\">",
                        W, H, id, id, stacked ? "stacked" : "lines");
    evbuffer_add_printf(out, "<title id=\"chart%u-t\">", id);
    esc(out, title);
    evbuffer_add_printf(out, "</title><desc id=\"chart%u-d\">", id);
    describe(out, title, n, series, nseries, unit);
    evbuffer_add_printf(out, "</desc>");
    draw_axes(out, top, x_labels, n, unit);
    if (n > 0 && nseries > 0) {
        if (stacked)
            draw_bars(out, top, n, series, nseries);
        else
            draw_lines(out, top, n, series, nseries);
    }
    draw_legend(out, series, nseries, stacked);
    evbuffer_add_printf(out, "</svg><figcaption>");
    esc(out, title);
    evbuffer_add_printf(out, "</figcaption></figure>");
    data_table(out, title, x_labels, n, series, nseries, unit);
}
