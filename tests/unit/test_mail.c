/*
 * test_mail -- building mail messages (pt_mail_format): the headers cannot
 * be extended by what a user typed (CR/LF in a subject, a name or an
 * address), non-ASCII subjects are RFC 2047 encoded words, the body is
 * quoted-printable with short lines and decodes back to the text; the
 * template filler; the outbox (one .eml, written whole, mode 0600).
 * SMTP delivery is tested against a real server by tests/e2e/test_mail_smtp.py.
 */
#include "http/pt_mail.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static const struct pt_mail_cf cf0 = {.from = "Portico <portal@example.test>", .outbox = "/nonexistent"};

/* The header block of a message (up to the blank line), malloc'd. */
static char *head_of(const char *msg)
{
    const char *end = strstr(msg, "\r\n\r\n");
    assert_non_null(end);
    return strndup(msg, (size_t)(end - msg) + 2);
}

/* Counts the header lines that start with name (e.g. "Bcc:"). */
static int header_count(const char *head, const char *name)
{
    int n = 0;
    size_t len = strlen(name);
    for (const char *p = head; p && *p;) {
        if (strncasecmp(p, name, len) == 0)
            n++;
        p = strstr(p, "\r\n");
        if (p)
            p += 2;
    }
    return n;
}

/* Every line ends with CRLF (no bare CR or LF), is at most max long, and
   every byte is 7-bit. */
static void assert_lines(const char *msg, size_t max)
{
    size_t col = 0;
    for (const char *p = msg; *p; p++) {
        assert_true((unsigned char)*p < 0x80);
        if (*p == '\r') {
            assert_int_equal(p[1], '\n');
            p++;
            col = 0;
            continue;
        }
        assert_true(*p != '\n');
        col++;
        assert_true(col <= max);
    }
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes the quoted-printable body (after the blank line). */
static char *qp_decode(const char *msg)
{
    const char *p = strstr(msg, "\r\n\r\n") + 4;
    char *out = malloc(strlen(p) + 1), *o = out;
    while (*p) {
        if (*p == '=' && p[1] == '\r' && p[2] == '\n') {
            p += 3;
        } else if (*p == '=') {
            assert_true(hexv(p[1]) >= 0 && hexv(p[2]) >= 0);
            *o++ = (char)(hexv(p[1]) * 16 + hexv(p[2]));
            p += 3;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return out;
}

static void test_addresses(void **state)
{
    (void)state;
    const char *good[] = {"a@b.c", "first.last+tag@example.com", "x_y-z@sub.example.org", "u@localhost",
                          NULL};
    const char *bad[] = {
        "",         "a",       "@b.c",   "a@",      "a@b@c",       "a b@c.d",   "a@b.c\r\nBcc: evil@x.y",
        "a@b.c\nx", "<a@b.c>", "a@b.c>", "a,b@c.d", "a@b.c;d@e.f", "\"a\"@b.c", "a@b..c",
        "a@.b",     "a@b.",    ".a@b.c", "a.@b.c",  "a@b_c.d",     "a@b.c\t",   "\xc3\xa9@b.c",
        NULL};
    for (int i = 0; good[i]; i++)
        assert_true(pt_mail_address_ok(good[i]));
    for (int i = 0; bad[i]; i++) {
        if (pt_mail_address_ok(bad[i]))
            fail_msg("accepted %s", bad[i]);
    }
    char a[256];
    assert_true(pt_mail_from_address("Portico <portal@localhost>", a, sizeof(a)));
    assert_string_equal(a, "portal@localhost");
    assert_true(pt_mail_from_address("portal@localhost", a, sizeof(a)));
    assert_false(pt_mail_from_address("Evil\r\nBcc: x@y.z <portal@localhost>", a, sizeof(a)));
    assert_false(pt_mail_from_address("Name <a@b.c> trailing", a, sizeof(a)));
    assert_false(pt_mail_from_address("Name <a@b.c", a, sizeof(a)));
}

static void test_headers(void **state)
{
    (void)state;
    char err[256];
    char *m = pt_mail_format(&cf0, "dev@example.test", "Hello", "Body\n", err, sizeof(err));
    assert_non_null(m);
    char *h = head_of(m);
    assert_int_equal(header_count(h, "Date: "), 1);
    assert_int_equal(header_count(h, "From: Portico <portal@example.test>\r\n"), 1);
    assert_int_equal(header_count(h, "To: <dev@example.test>\r\n"), 1);
    assert_int_equal(header_count(h, "Subject: Hello\r\n"), 1);
    assert_int_equal(header_count(h, "Message-ID: <"), 1);
    assert_non_null(strstr(h, "@example.test>\r\n"));
    assert_int_equal(header_count(h, "MIME-Version: 1.0\r\n"), 1);
    assert_int_equal(header_count(h, "Content-Type: text/plain; charset=utf-8\r\n"), 1);
    assert_int_equal(header_count(h, "Content-Transfer-Encoding: quoted-printable\r\n"), 1);
    /* Date: "Sun, 06 Dec 2026 12:36:28 +0000" */
    const char *d = strstr(h, "Date: ") + 6;
    assert_int_equal(d[3], ',');
    assert_memory_equal(d + 25, " +0000\r\n", 8);
    assert_lines(m, 998);
    free(h);
    free(m);
}

static void test_injection(void **state)
{
    (void)state;
    char err[256];
    /* a subject cannot start a header: its CR/LF become spaces */
    char *m = pt_mail_format(&cf0, "dev@example.test", "Hi\r\nBcc: evil@attacker.test\r\n\r\nfake body", "b",
                             err, sizeof(err));
    assert_non_null(m);
    char *h = head_of(m);
    assert_int_equal(header_count(h, "Bcc:"), 0);
    assert_int_equal(header_count(h, "Subject: Hi Bcc: evil@attacker.test fake body\r\n"), 1);
    free(h);
    free(m);
    /* a lone LF or CR, a NUL-free tab, DEL */
    m = pt_mail_format(&cf0, "dev@example.test", "a\nCc: x@y.z\rTo: q@r.s\t\x7f", "b", err, sizeof(err));
    h = head_of(m);
    assert_int_equal(header_count(h, "Cc:"), 0);
    assert_int_equal(header_count(h, "To:"), 1);
    assert_int_equal(header_count(h, "Subject: a Cc: x@y.z To: q@r.s\r\n"), 1);
    free(h);
    free(m);
    /* a recipient with a header behind it, or a second recipient, is refused */
    assert_null(
        pt_mail_format(&cf0, "dev@example.test\r\nBcc: evil@attacker.test", "s", "b", err, sizeof(err)));
    assert_non_null(strstr(err, "not a mail address"));
    assert_null(pt_mail_format(&cf0, "dev@example.test, evil@attacker.test", "s", "b", err, sizeof(err)));
    assert_null(
        pt_mail_format(&cf0, "dev@example.test>\r\nRCPT TO:<evil@attacker.test", "s", "b", err, sizeof(err)));
    /* a From with a line break in its display name is refused */
    struct pt_mail_cf cf = cf0;
    cf.from = "Evil\nBcc: x@y.z <portal@example.test>";
    assert_null(pt_mail_format(&cf, "dev@example.test", "s", "b", err, sizeof(err)));
    assert_non_null(strstr(err, "portal.mail.from"));
    /* display names: specials quoted, quotes escaped, non-ASCII encoded */
    cf.from = "Acme, Inc. \"APIs\" <portal@example.test>";
    m = pt_mail_format(&cf, "dev@example.test", "s", "b", err, sizeof(err));
    assert_non_null(strstr(m, "From: \"Acme, Inc. \\\"APIs\\\"\" <portal@example.test>\r\n"));
    free(m);
    cf.from = "\"Quoted\" <portal@example.test>";
    m = pt_mail_format(&cf, "dev@example.test", "s", "b", err, sizeof(err));
    assert_non_null(strstr(m, "From: Quoted <portal@example.test>\r\n"));
    free(m);
    cf.from = "Caf\xc3\xa9 <portal@example.test>";
    m = pt_mail_format(&cf, "dev@example.test", "s", "b", err, sizeof(err));
    assert_non_null(strstr(m, "From: =?UTF-8?B?Q2Fmw6k=?= <portal@example.test>\r\n"));
    free(m);
    /* a body line ".": encoded, so it cannot end SMTP's DATA early */
    m = pt_mail_format(&cf0, "dev@example.test", "s", "a\r\n.\r\nMAIL FROM:<x@y.z>\r\n", err, sizeof(err));
    assert_null(strstr(m, "\r\n.\r\n"));
    assert_non_null(strstr(m, "\r\n=2E\r\n"));
    free(m);
}

static void test_encoded_subject(void **state)
{
    (void)state;
    char err[256];
    char *m = pt_mail_format(&cf0, "dev@example.test",
                             "Gr\xc3\xbc\xc3\x9f"
                             "e",
                             "b", err, sizeof(err));
    assert_non_null(strstr(m, "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"));
    free(m);
    /* a long non-ASCII subject: several encoded words of at most 75
       characters on folded lines, never splitting a character */
    char subj[400] = "";
    for (int i = 0; i < 60; i++)
        strcat(subj, "\xe2\x82\xac"); /* the euro sign, 3 bytes */
    m = pt_mail_format(&cf0, "dev@example.test", subj, "b", err, sizeof(err));
    char *h = head_of(m);
    const char *s = strstr(h, "Subject: ") + 9;
    int words = 0;
    while (strncmp(s, "=?UTF-8?B?", 10) == 0) {
        const char *e = strstr(s, "?=");
        assert_true(e - s + 2 <= 75);
        assert_int_equal((e - s - 10) % 4, 0);
        words++;
        s = e + 2;
        if (strncmp(s, "\r\n ", 3) == 0)
            s += 3;
    }
    assert_int_equal(words, 4);                     /* 180 bytes in 45-byte pieces */
    assert_memory_equal(s, "\r\nMessage-ID: ", 14); /* the words were the whole subject */
    assert_lines(m, 998);
    free(h);
    free(m);
    /* invalid UTF-8 becomes '?' */
    m = pt_mail_format(&cf0, "dev@example.test",
                       "a\xff"
                       "b",
                       "b", err, sizeof(err));
    assert_non_null(strstr(m, "Subject: a?b\r\n"));
    free(m);
}

static void test_qp_body(void **state)
{
    (void)state;
    char err[256];
    char body[2000] = "";
    strcat(body, "Hello caf\xc3\xa9 = 1+1\n");
    for (int i = 0; i < 30; i++)
        strcat(body, "0123456789");
    strcat(body, "\ntrailing space \r\nlast\rline");
    char *m = pt_mail_format(&cf0, "dev@example.test", "s", body, err, sizeof(err));
    assert_non_null(m);
    assert_lines(m, 76);
    assert_non_null(strstr(m, "caf=C3=A9 =3D 1+1\r\n"));
    assert_non_null(strstr(m, "trailing space=20\r\n"));
    char *dec = qp_decode(m);
    char want[2000] = "Hello caf\xc3\xa9 = 1+1\r\n";
    for (int i = 0; i < 30; i++)
        strcat(want, "0123456789");
    strcat(want, "\r\ntrailing space \r\nlast\r\nline\r\n");
    assert_string_equal(dec, want);
    free(dec);
    free(m);
    /* too long */
    char *big = malloc(PT_MAIL_BODY_MAX + 2);
    memset(big, 'a', PT_MAIL_BODY_MAX + 1);
    big[PT_MAIL_BODY_MAX + 1] = 0;
    assert_null(pt_mail_format(&cf0, "dev@example.test", "s", big, err, sizeof(err)));
    assert_non_null(strstr(err, "too long"));
    free(big);
}

static void test_fill(void **state)
{
    (void)state;
    json_t *vars = json_pack("{s:s, s:s, s:i}", "firstName", "Ada", "link", "https://p/x?token=T", "n", 3);
    char *s = pt_mail_fill("Hi {{firstName}}, {{ link }} {{missing}}{{n}}.", vars);
    assert_string_equal(s, "Hi Ada, https://p/x?token=T .");
    free(s);
    s = pt_mail_fill("{{a b}} {{ }} {{x-y}} {{ {{firstName}} {{unclosed", vars);
    assert_string_equal(s, "{{a b}} {{ }} {{x-y}} {{ Ada {{unclosed");
    free(s);
    /* a value holding braces is not filled again */
    json_object_set_new(vars, "lastName", json_string("{{link}}"));
    s = pt_mail_fill("{{lastName}}", vars);
    assert_string_equal(s, "{{link}}");
    free(s);
    s = pt_mail_fill(NULL, vars);
    assert_string_equal(s, "");
    free(s);
    json_decref(vars);
}

static void test_templates(void **state)
{
    (void)state;
    int n = 0;
    for (const char *const *id = pt_mail_template_ids; *id; id++, n++) {
        const char *subject, *body;
        assert_true(pt_mail_template_default(*id, &subject, &body));
        assert_true(strlen(subject) > 0 && strlen(body) > 0);
        json_t *t = pt_mail_template_get(NULL, *id);
        assert_non_null(t);
        assert_string_equal(json_string_value(json_object_get(t, "subject")), subject);
        assert_true(json_is_true(json_object_get(t, "builtIn")));
        json_decref(t);
    }
    assert_int_equal(n, 6);
    const char *subject, *body;
    assert_false(pt_mail_template_default("nope", &subject, &body));
    assert_null(pt_mail_template_get(NULL, "nope"));
    assert_true(pt_mail_template_default("confirm-signup", &subject, &body));
    assert_non_null(strstr(body, "{{link}}"));
}

static void test_outbox(void **state)
{
    (void)state;
    char dir[] = "/tmp/pt_mail_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char box[300];
    snprintf(box, sizeof(box), "%s/outbox", dir); /* created on first use */
    struct pt_mail_cf cf = cf0;
    cf.outbox = box;
    char err[256];
    json_t *vars = json_pack("{s:s, s:s, s:s}", "firstName", "Ada", "link", "http://p/confirm?token=abc",
                             "siteTitle", "Dev");
    /* without siteTitle (and without a store): the default site's title */
    assert_true(pt_mail_send_template(NULL, &cf, "invite", "ada@example.test", NULL, err, sizeof(err)));
    assert_true(
        pt_mail_send_template(NULL, &cf, "confirm-signup", "ada@example.test", vars, err, sizeof(err)));
    assert_false(pt_mail_send_template(NULL, &cf, "unknown", "ada@example.test", vars, err, sizeof(err)));
    assert_false(pt_mail_send(&cf, "bad address", "s", "b", err, sizeof(err)));
    json_decref(vars);
    DIR *d = opendir(box);
    assert_non_null(d);
    struct dirent *e;
    int files = 0;
    char name[1024] = "";
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        files++;
        assert_non_null(strstr(e->d_name, ".eml"));
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", box, e->d_name);
        FILE *g = fopen(path, "rb");
        char head[2048];
        size_t k = fread(head, 1, sizeof(head) - 1, g);
        head[k] = 0;
        fclose(g);
        if (strstr(head, "Subject: Confirm"))
            snprintf(name, sizeof(name), "%s", path);
        else {
            assert_non_null(strstr(head, "Subject: You are invited to Portico developer portal\r\n"));
            unlink(path);
        }
    }
    closedir(d);
    assert_int_equal(files, 2); /* no temporary file left, nothing for the refused ones */
    struct stat stt;
    assert_int_equal(stat(name, &stt), 0);
    assert_int_equal(stt.st_mode & 0777, 0600);
    FILE *f = fopen(name, "rb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_non_null(strstr(buf, "Subject: Confirm your account on Dev\r\n"));
    char *dec = qp_decode(buf);
    assert_non_null(strstr(dec, "Hello Ada,"));
    assert_non_null(strstr(dec, "http://p/confirm?token=abc"));
    free(dec);
    unlink(name);
    rmdir(box);
    rmdir(dir);
    /* nothing configured */
    struct pt_mail_cf none = {0};
    assert_false(pt_mail_send(&none, "a@b.c", "s", "b", err, sizeof(err)));
    assert_non_null(strstr(err, "not configured"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses), cmocka_unit_test(test_headers),
        cmocka_unit_test(test_injection), cmocka_unit_test(test_encoded_subject),
        cmocka_unit_test(test_qp_body),   cmocka_unit_test(test_fill),
        cmocka_unit_test(test_templates), cmocka_unit_test(test_outbox),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
