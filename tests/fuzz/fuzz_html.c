/*
 * fuzz_html -- provider-written Markdown and HTML through pt_html: the
 * first byte picks Markdown (odd) or HTML (even), the rest is the text.
 *
 * Whatever the bytes, nothing may read out of bounds or leak (ASan), and
 * the output must have the allow-list's shape (html_check.h): only allowed
 * elements and attributes, escaped text, URLs that pass the check.  The
 * output sanitized again must keep that shape.
 */
#include "base/pt_html.h"
#include "html_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    char *out = (data[0] & 1) ? pt_html_markdown(text, n) : pt_html_sanitize(text, n);
    if (!out)
        return 0;
    const char *why = html_check(out);
    if (why) {
        fprintf(stderr, "fuzz_html: %s in:\n%s\n", why, out);
        abort();
    }
    char *again = pt_html_sanitize(out, strlen(out));
    why = again ? html_check(again) : NULL;
    if (why) {
        fprintf(stderr, "fuzz_html: sanitized again, %s in:\n%s\n", why, again);
        abort();
    }
    free(again);
    free(out);
    /* the same bytes as one URL */
    char *url = malloc(n + 1);
    memcpy(url, text, n);
    url[n] = 0;
    char checked[8192];
    if (pt_html_url_ok(url, data[0] & 2, checked, sizeof(checked))) {
        for (const char *p = checked; *p; p++)
            if ((unsigned char)*p <= 0x20 || *p == 0x7f)
                abort(); /* no white space or control survives in an accepted URL */
    }
    free(url);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_html";
const char *const fuzz_seeds[] = {
    "# Title\n\nSome *text* with [a link](https://example.com \"t\") and `code`.\n\n- a\n- b\n",
    "<p onclick=\"x()\" style=\"color:red\">hi <b>there</b><script>alert(1)</script></p>",
    "<a href=\" java&#x09;script:alert(1)\">y</a><a href=\"HTTPS://e.com/a b\">z</a>",
    "<img src=x onerror=alert(1)><img src=\"data:image/png;base64,iVBO\" width=10>",
    "<svg><script>alert(1)</script></svg><math><mi xlink:href=\"javascript:alert(1)\">x</mi></math>",
    "<table><tr><td colspan=2 onmouseover=x>a</td></tr></table><iframe src=x></iframe><u>under</u>",
    "<!--<img src=x onerror=alert(1)>--><p title=\"</p><script>alert(1)</script>\">t</p>",
    "> > > > > > > > > > > > > > > > > > > > > > > > > nested\n\n1. one\n   2. two\n      - three\n",
    "<div><div><div><div><div><div><div><div><div><div><div><div>deep</div></div></div></div></div></div>",
    "```html\n<script>x</script>\n```\n\n<details open ontoggle=alert(1)>",
    "[x](javascript:alert(1)) ![y](data:image/svg+xml;base64,PHN2Zz4=) <mailto:a@b.c>",
    "<a href=\"&#106;avascript:alert(1)\">e</a><object data=x></object><form><input></form>",
    NULL,
};
