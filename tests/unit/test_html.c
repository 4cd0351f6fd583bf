/*
 * test_html -- the portal's Markdown and HTML allow-list (base/pt_html.c)
 * against XSS vectors in the style of OWASP's filter-evasion list (written
 * for this test): script in every spelling, event handlers, javascript: and
 * data: URLs hidden with entities, white space and case, SVG and MathML,
 * styles, forms, frames, comments and broken markup; and what must stay
 * (Markdown's structure, safe links and images, classes on code).
 * Every output must also have the allow-list's shape (tests/fuzz/html_check.h).
 */
#include "base/pt_html.h"
#include "html_check.h"

#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The tags of out, lower-cased, without the text between them. */
static char *tags_of(const char *out)
{
    char *t = calloc(1, strlen(out) + 1), *o = t;
    int in = 0;
    for (const char *p = out; *p; p++) {
        if (*p == '<')
            in = 1;
        if (in)
            *o++ = (char)tolower((unsigned char)*p);
        if (*p == '>')
            in = 0;
    }
    return t;
}

/* Sanitized (md false) or rendered: passes the shape check, and no tag
   carries script, an event handler, a style, or a dangerous URL. */
static char *safe(const char *in, bool md)
{
    char *out = md ? pt_html_markdown(in, strlen(in)) : pt_html_sanitize(in, strlen(in));
    assert_non_null(out);
    const char *why = html_check(out);
    if (why)
        fail_msg("%s: %s\n  in:  %s\n  out: %s", md ? "markdown" : "html", why, in, out);
    char *tags = tags_of(out);
    static const char *const bad[] = {"script", "javascript", "vbscript",    " on",    "style",      "iframe",
                                      "svg",    "data:text",  "expression(", "<form",  "<object",    "<embed",
                                      "<base",  "<meta",      "<link",       "srcdoc", "formaction", NULL};
    for (int i = 0; bad[i]; i++)
        if (strstr(tags, bad[i]))
            fail_msg("tag holds \"%s\"\n  in:  %s\n  out: %s", bad[i], in, out);
    free(tags);
    return out;
}

static void expect(const char *in, bool md, const char *want)
{
    char *out = safe(in, md);
    if (strcmp(out, want) != 0)
        fail_msg("\n  in:   %s\n  out:  %s\n  want: %s", in, out, want);
    free(out);
}

static const char *const vectors[] = {
    "<script>alert('XSS')</script>",
    "<SCRIPT SRC=//xss.example/xss.js></SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<script/xss src=x.js></script>",
    "<<SCRIPT>alert(\"XSS\");//<</SCRIPT>",
    "<script>alert(1)<!--",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=`javascript:alert(\"XSS\")`>",
    "<IMG \"\"\"><SCRIPT>alert(\"XSS\")</SCRIPT>\"\\>",
    "<IMG SRC=javascript:alert(String.fromCharCode(88,83,83))>",
    "<IMG SRC=# onmouseover=\"alert('xxs')\">",
    "<IMG SRC= onmouseover=\"alert('xxs')\">",
    "<IMG onmouseover=\"alert('xxs')\">",
    "<IMG SRC=/ onerror=\"alert(String.fromCharCode(88,83,83))\"></img>",
    "<img src=x "
    "onerror=\"&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#"
    "0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083&#"
    "0000039&#0000041\">",
    "<IMG "
    "SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#"
    "39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG "
    "SRC=&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058&"
    "#0000097>",
    "<IMG "
    "SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27&#x58&#"
    "x53&#x53&#x27&#x29>",
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0D;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    "<a href=\"\x01javascript:alert(1)\">x</a>",
    "<a href=\"java\x00script:alert(1)\">x</a>",
    "<SCRIPT/XSS SRC=\"http://xss.example/xss.js\"></SCRIPT>",
    "<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert(\"XSS\")>",
    "<BODY ONLOAD=alert('XSS')>",
    "<iframe src=http://xss.example/scriptlet.html <",
    "<IMG SRC=\"javascript:alert('XSS')\"",
    "</TITLE><SCRIPT>alert(\"XSS\");</SCRIPT>",
    "<INPUT TYPE=\"IMAGE\" SRC=\"javascript:alert('XSS');\">",
    "<BGSOUND SRC=\"javascript:alert('XSS');\">",
    "<LINK REL=\"stylesheet\" HREF=\"javascript:alert('XSS');\">",
    "<STYLE>@import'http://xss.example/xss.css';</STYLE>",
    "<META HTTP-EQUIV=\"refresh\" CONTENT=\"0;url=javascript:alert('XSS');\">",
    "<META HTTP-EQUIV=\"refresh\" CONTENT=\"0;url=data:text/html "
    "base64,PHNjcmlwdD5hbGVydCgnWFNTJyk8L3NjcmlwdD4K\">",
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    "<FRAMESET><FRAME SRC=\"javascript:alert('XSS');\"></FRAMESET>",
    "<TABLE BACKGROUND=\"javascript:alert('XSS')\"><TD BACKGROUND=\"javascript:alert('XSS')\">x</TD></TABLE>",
    "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">x</DIV>",
    "<DIV STYLE=\"width: expression(alert('XSS'));\">x</DIV>",
    "<span style=\"x:expr/**/ession(alert(1))\">x</span>",
    "<BASE HREF=\"javascript:alert('XSS');//\">",
    "<OBJECT TYPE=\"text/x-scriptlet\" DATA=\"http://xss.example/scriptlet.html\"></OBJECT>",
    "<EMBED SRC=\"data:image/svg+xml;base64,PHN2ZyB4bWxuczpzdmc9Imh0dH "
    "A6Ly93d3cudzMub3JnLzIwMDAvc3ZnIiB4bWxucz0iaHR0cDovL3d3dy53My5vcmcv\" type=\"image/svg+xml\"></EMBED>",
    "<svg/onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text>x</text></a></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    "<math href=\"javascript:alert(1)\">x</math>",
    "<a href=\"javascript&colon;alert(1)\">x</a>",
    "<a href=\"jAvAsCrIpT&#58;alert(1)\">x</a>",
    "<a href=\"&#x6A;avascript:alert(1)\">x</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
    "<a href=\"vbscript:msgbox(1)\">x</a>",
    "<a href=\"file:///etc/passwd\">x</a>",
    "<img src=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+\">",
    "<img src=\"data:text/html,<script>alert(1)</script>\">",
    "<img src=\"data:image/png;base64,iVBOR<script>\">",
    "<form action=\"javascript:alert(1)\"><button formaction=javascript:alert(1)>x</button></form>",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=\"alert(1)\"></video>",
    "<audio src=x onerror=alert(1)>",
    "<marquee onstart=alert(1)>x</marquee>",
    "<isindex action=javascript:alert(1) type=image>",
    "<template><script>alert(1)</script></template>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
    "<p title=\"</p><script>alert(1)</script>\">t</p>",
    "<!--<img src=x onerror=alert(1)>-->",
    "<!--[if gte IE 4]><SCRIPT>alert('XSS');</SCRIPT><![endif]-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<?xml-stylesheet href=\"javascript:alert(1)\"?>",
    "<xmp><img src=x onerror=alert(1)></xmp>",
    "<textarea><script>alert(1)</script></textarea>",
    "<title><img src=x onerror=alert(1)></title>",
    "<div id=\"x\" class=\"a\" onclick=\"alert(1)\" data-x=\"y\" tabindex=1>x</div>",
    "<a href=\"https://ok.example/\" target=\"_blank\" onclick=\"alert(1)\" ping=\"http://x\">ok</a>",
    "<img src=\"https://ok.example/a.png\" srcset=\"javascript:alert(1)\" width=\"100\" height=\"50\">",
    "<span class='\"><script>alert(1)</script>'>x</span>",
    "<a href=\"https://x/\"\"onmouseover=\"alert(1)\">x</a>",
    "<a href='https://x/' onmouseover='alert(1)'//>x</a>",
    "<IMG SRC=\"http://ok.example/a.png\" STYLE=\"xss:expr/*XSS*/ession(alert('XSS'))\">",
    NULL,
};

static void test_vectors_html(void **state)
{
    (void)state;
    for (int i = 0; vectors[i]; i++)
        free(safe(vectors[i], false));
}

static void test_vectors_in_markdown(void **state)
{
    (void)state;
    for (int i = 0; vectors[i]; i++) {
        free(safe(vectors[i], true));
        /* inside Markdown structure too */
        char buf[4096];
        snprintf(buf, sizeof(buf), "# Title\n\n- item %s\n\n> quote %s\n", vectors[i], vectors[i]);
        free(safe(buf, true));
    }
    static const char *const md[] = {
        "[x](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "[x]( javascript:alert(1) )",
        "[x](<javascript:alert(1)>)",
        "[x](java&#115;cript:alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](data:text/html,<script>alert(1)</script>)",
        "![x](javascript:alert(1))",
        "![x](data:image/svg+xml;base64,PHN2Zz4=)",
        "<javascript:alert(1)>",
        "[x][r]\n\n[r]: javascript:alert(1)",
        "[x](vbscript:msgbox(1) \"t\")",
        "<a href=\"javascript:alert(1)\">x</a>",
        "```\n</code></pre><script>alert(1)</script>\n```",
        "`<script>alert(1)</script>`",
        "<div onclick=\"alert(1)\">\n\n*x*\n\n</div>",
        NULL,
    };
    for (int i = 0; md[i]; i++)
        free(safe(md[i], true));
}

static void test_kept(void **state)
{
    (void)state;
    expect("<p onclick=\"x()\" style=\"color:red\">hi <b>there</b><script>alert(1)</script></p>", false,
           "<p>hi <b>there</b></p>");
    expect(
        "<a href=\"https://e.com/a b?x=1&amp;y=2\" title=\"T\">z</a>", false,
        "<a href=\"https://e.com/a%20b?x=1&amp;y=2\" title=\"T\" rel=\"nofollow noopener noreferrer\">z</a>");
    expect("<a href=\"/pages/x#top\">r</a><a href=\"mailto:a@b.c\">m</a><a href=\"javascript:x\">j</a>",
           false, "<a href=\"/pages/x#top\">r</a><a href=\"mailto:a@b.c\">m</a><a>j</a>");
    expect("<img src=\"/media/logo\" alt=\"Logo &amp; co\" width=\"10\" height=\"10px\" onerror=\"x\">",
           false, "<img src=\"/media/logo\" alt=\"Logo &amp; co\" width=\"10\">");
    expect("<img src=\"data:image/png;base64,iVBORw0KGgo=\">", false,
           "<img src=\"data:image/png;base64,iVBORw0KGgo=\">");
    expect("<img src=\"javascript:alert(1)\" alt=\"a\"><img alt=\"no src\">", false, "");
    expect(
        "<table><thead><tr><th align=\"center\" style=\"x\">h</th></tr></thead><tbody><tr><td colspan=\"2\" "
        "rowspan=\"x\">d</td></tr></tbody></table>",
        false,
        "<table><thead><tr><th align=\"center\">h</th></tr></thead><tbody><tr><td colspan=\"2\">d</td></tr>"
        "</tbody></table>");
    expect("<div class=\"note warn\" id=\"x\"><span class=\"a;b\">s</span></div><p class=\"c\">p</p>", false,
           "<div class=\"note warn\"><span>s</span></div><p>p</p>");
    expect("<u>under</u> <center>c</center> <font color=red>f</font>", false, "under c f");
    expect("a < b & c > d", false, "<p>a &lt; b &amp; c &gt; d</p>"); /* text alone gets a paragraph */
    expect("<ol start=\"3\"><li>x</li></ol><ul><li>y<br>z</li></ul><hr>", false,
           "<ol start=\"3\"><li>x</li></ol><ul><li>y<br>z</li></ul><hr>");
    expect("", false, "");
    expect("# Title\n\nSome *text* and **bold** with [ok](https://x.y \"t\") and `a<b`.\n", true,
           "<h1>Title</h1>\n<p>Some <em>text</em> and <strong>bold</strong> with <a href=\"https://x.y\" "
           "title=\"t\" rel=\"nofollow noopener noreferrer\">ok</a> and <code>a&lt;b</code>.</p>\n");
    expect("```js\nlet a = 1 < 2;\n```\n", true,
           "<pre><code class=\"language-js\">let a = 1 &lt; 2;\n</code></pre>\n");
    expect("> quoted\n\n1. one\n2. two\n\n---\n\n![logo](/media/logo)\n", true,
           "<blockquote>\n<p>quoted</p>\n</blockquote>\n<ol>\n<li>one</li>\n<li>two</li>\n</ol>\n<hr>\n"
           "<p><img src=\"/media/logo\" alt=\"logo\"></p>\n");
    expect("[x](javascript:alert(1)) <script>alert(1)</script>\n", true, "<p><a>x</a> </p>\n");
}

static void test_urls(void **state)
{
    (void)state;
    char out[256];
    assert_true(pt_html_url_ok("  https://x.y/a\tb\n ", false, out, sizeof(out)));
    assert_string_equal(out, "https://x.y/ab");
    assert_true(pt_html_url_ok("HTTP://X", false, NULL, 0));
    assert_true(pt_html_url_ok("//cdn.example/x", false, NULL, 0));
    assert_true(pt_html_url_ok("?q=1", false, NULL, 0));
    assert_true(pt_html_url_ok("#frag", false, NULL, 0));
    assert_true(pt_html_url_ok("a/b:c", false, NULL, 0)); /* the ':' after a '/' is no scheme */
    assert_true(pt_html_url_ok("mailto:a@b.c", false, NULL, 0));
    assert_false(pt_html_url_ok("mailto:a@b.c", true, NULL, 0));
    assert_true(pt_html_url_ok("data:image/webp;base64,AAAA", true, NULL, 0));
    assert_true(pt_html_url_ok("DATA:IMAGE/GIF;BASE64,R0lG", true, NULL, 0));
    assert_false(pt_html_url_ok("data:image/webp;base64,AAAA", false, NULL, 0));
    assert_false(pt_html_url_ok("data:image/svg+xml;base64,AAAA", true, NULL, 0));
    assert_false(pt_html_url_ok("data:image/png,rawbytes<", true, NULL, 0));
    assert_false(pt_html_url_ok("data:image/png;base64,AA AA\"", true, NULL, 0));
    assert_false(pt_html_url_ok("javascript:alert(1)", false, NULL, 0));
    assert_false(pt_html_url_ok("java\tscript:alert(1)", false, NULL, 0));
    assert_false(pt_html_url_ok("java\x0bscript:alert(1)", false, NULL, 0));
    assert_false(pt_html_url_ok("\x01javascript:alert(1)", false, NULL, 0));
    assert_false(pt_html_url_ok("jav\xc2\xa0"
                                "ascript:alert(1)",
                                false, NULL, 0));
    assert_false(pt_html_url_ok("1http:x", false, NULL, 0));
    assert_false(pt_html_url_ok("ftp://x", false, NULL, 0));
    assert_false(pt_html_url_ok("", false, NULL, 0));
    assert_false(pt_html_url_ok("   ", false, NULL, 0));
    assert_false(pt_html_url_ok(NULL, false, NULL, 0));
    assert_false(pt_html_url_ok("https://x.y/long", false, out, 5)); /* does not fit: refused, not cut */
}

static void test_bounds(void **state)
{
    (void)state;
    /* over the input bound: refused */
    size_t n = PT_HTML_MAX_INPUT + 1;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = 0;
    assert_null(pt_html_markdown(big, n));
    assert_null(pt_html_sanitize(big, n));
    /* deep nesting: bounded, still the right shape, quick */
    n = PT_HTML_MAX_INPUT;
    for (size_t i = 0; i + 5 <= n; i += 5)
        memcpy(big + i, "<div>", 5);
    big[n - n % 5] = 0;
    char *out = pt_html_sanitize(big, strlen(big));
    assert_non_null(out);
    assert_null(html_check(out));
    size_t divs = 0;
    for (const char *p = out; (p = strstr(p, "<div>")); p++)
        divs++;
    assert_true(divs <= PT_HTML_MAX_DEPTH);
    free(out);
    for (size_t i = 0; i + 2 <= n; i += 2)
        memcpy(big + i, "> ", 2);
    big[n - n % 2] = 0;
    out = pt_html_markdown(big, strlen(big));
    assert_non_null(out);
    assert_null(html_check(out));
    free(out);
    memset(big, '[', n);
    big[n] = 0;
    out = pt_html_markdown(big, n);
    assert_non_null(out);
    assert_null(html_check(out));
    free(out);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_html), cmocka_unit_test(test_vectors_in_markdown),
        cmocka_unit_test(test_kept),         cmocka_unit_test(test_urls),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
