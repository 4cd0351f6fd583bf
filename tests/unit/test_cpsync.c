/*
 * test_cpsync -- a gateway node's token parsing and its encrypted configuration backup.
 */
#include "base/pt_gwtoken.h"
#include "base/pt_log.h"
#include "conf/pt_conf.h"
#include "http/pt_cpsync.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* tokens made by base/pt_gwtoken.c, expiring 2027-01-05T00:00Z (setup) */
static char TOKEN[PT_GWTOKEN_MAX], TOKEN_OTHER_SIG[PT_GWTOKEN_MAX], TOKEN_OTHER_GW[PT_GWTOKEN_MAX];

static int setup(void **state)
{
    (void)state;
    return pt_gwtoken_make("gw-1", "the-key", 1799107200, TOKEN) &&
                   pt_gwtoken_make("gw-1", "another-key", 1799107200, TOKEN_OTHER_SIG) &&
                   pt_gwtoken_make("gw-2", "the-key", 1799107200, TOKEN_OTHER_GW)
               ? 0
               : -1;
}

static void test_token_parse(void **state)
{
    (void)state;
    char id[96];
    int64_t exp = 0;
    const char *sig = NULL;
    assert_true(pt_conf_cp_token_parse(TOKEN, id, sizeof(id), &exp, &sig));
    assert_string_equal(id, "gw-1");
    assert_int_equal(exp, 1799107200); /* 2027-01-05T00:00:00Z */
    assert_int_equal(strlen(sig), 88);
    assert_ptr_equal(sig, TOKEN + strlen(TOKEN) - 88); /* into the text: the HKDF input as written */
    char bad[300];
    snprintf(bad, sizeof(bad), "%s\r\nX: y", TOKEN); /* nothing after it */
    assert_false(pt_conf_cp_token_parse(bad, id, sizeof(id), &exp, &sig));
    assert_false(pt_conf_cp_token_parse("GatewayKey gw-1&202701050000&c2ln", id, sizeof(id), &exp, &sig));
    assert_false(pt_conf_cp_token_parse("", id, sizeof(id), &exp, &sig));
    assert_false(pt_conf_cp_token_parse(TOKEN, id, 4, &exp, &sig)); /* no room for the id */
}

static void test_seal_open_round_trip(void **state)
{
    (void)state;
    const char *doc = "{\"gateway\":\"gw-1\",\"generation\":3,\"entities\":{\"namedValues\":[{\"id\":\"s\","
                      "\"value\":\"top-secret\",\"secret\":true}]}}";
    unsigned char *a, *b;
    size_t alen, blen, plen;
    char err[256];
    assert_true(pt_cpsync_backup_seal(TOKEN, doc, strlen(doc), &a, &alen, err, sizeof(err)));
    assert_true(pt_cpsync_backup_seal(TOKEN, doc, strlen(doc), &b, &blen, err, sizeof(err)));
    assert_int_equal(alen, 6 + 12 + strlen(doc) + 16);
    assert_memory_equal(a, "PTCB1\n", 6);
    assert_memory_not_equal(a + 6, b + 6, 12); /* a fresh nonce each time */
    assert_null(memmem(a, alen, "top-secret", 10));
    char *plain = pt_cpsync_backup_open(TOKEN, a, alen, &plen, err, sizeof(err));
    assert_non_null(plain);
    assert_int_equal(plen, strlen(doc));
    assert_string_equal(plain, doc);
    free(plain);
    /* another token, another gateway: not readable */
    assert_null(pt_cpsync_backup_open(TOKEN_OTHER_SIG, a, alen, &plen, err, sizeof(err)));
    assert_string_equal(err, "corrupted, or written with another gateway token");
    assert_null(pt_cpsync_backup_open(TOKEN_OTHER_GW, a, alen, &plen, err, sizeof(err)));
    assert_string_equal(err, "corrupted, or written with another gateway token");
    /* any one bit flipped anywhere: refused */
    for (size_t i = 0; i < alen; i++) {
        a[i] ^= 0x10;
        assert_null(pt_cpsync_backup_open(TOKEN, a, alen, &plen, err, sizeof(err)));
        assert_non_null(strstr(err, "corrupted"));
        a[i] ^= 0x10;
    }
    /* every truncation: refused */
    for (size_t n = 0; n < alen; n++)
        assert_null(pt_cpsync_backup_open(TOKEN, a, n, &plen, err, sizeof(err)));
    /* an empty document is still a document */
    free(b);
    assert_true(pt_cpsync_backup_seal(TOKEN, "", 0, &b, &blen, err, sizeof(err)));
    plain = pt_cpsync_backup_open(TOKEN, b, blen, &plen, err, sizeof(err));
    assert_non_null(plain);
    assert_int_equal(plen, 0);
    free(plain);
    /* a token that is not one: no key */
    assert_false(pt_cpsync_backup_seal("Bearer x", doc, strlen(doc), &b, &blen, err, sizeof(err)));
    free(a);
    free(b);
}

static void test_write_read_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/pt-cpsync-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/sub/config-backup", dir); /* the folder is made */
    size_t len;
    assert_null(pt_cpsync_backup_read(path, TOKEN, &len, err, sizeof(err)));
    assert_string_equal(err, ""); /* none: not an error */
    const char *doc = "{\"gateway\":\"gw-1\",\"generation\":1,\"entities\":{}}";
    assert_true(pt_cpsync_backup_write(path, TOKEN, doc, strlen(doc), err, sizeof(err)));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);
    char *plain = pt_cpsync_backup_read(path, TOKEN, &len, err, sizeof(err));
    assert_non_null(plain);
    assert_string_equal(plain, doc);
    free(plain);
    /* the wrong token: the message names the file and says what to think */
    assert_null(pt_cpsync_backup_read(path, TOKEN_OTHER_SIG, &len, err, sizeof(err)));
    char want[512];
    snprintf(want, sizeof(want),
             "configuration backup %s: corrupted, or written with another gateway token; not used", path);
    assert_string_equal(err, want);

    /* pt_cpsync_backup_load: the document, checked to be this gateway's */
    struct pt_cp_cf cp = {.on = true, .token = TOKEN, .backup = path};
    json_t *d = pt_cpsync_backup_load(&cp, err, sizeof(err));
    assert_non_null(d);
    assert_int_equal(json_integer_value(json_object_get(d, "generation")), 1);
    json_decref(d);
    const char *other = "{\"gateway\":\"gw-9\",\"generation\":1,\"entities\":{}}";
    assert_true(pt_cpsync_backup_write(path, TOKEN, other, strlen(other), err, sizeof(err)));
    assert_null(pt_cpsync_backup_load(&cp, err, sizeof(err)));
    assert_non_null(strstr(err, "gw-9"));
    const char *notdoc = "[1,2]";
    assert_true(pt_cpsync_backup_write(path, TOKEN, notdoc, strlen(notdoc), err, sizeof(err)));
    assert_null(pt_cpsync_backup_load(&cp, err, sizeof(err)));
    assert_non_null(strstr(err, "not a configuration document"));
    cp.backup = "";
    assert_null(pt_cpsync_backup_load(&cp, err, sizeof(err)));
    assert_string_equal(err, ""); /* none configured */

    /* the token from a file, trimmed; an empty file is an error */
    char tf[300];
    snprintf(tf, sizeof(tf), "%s/token", dir);
    FILE *f = fopen(tf, "w");
    fprintf(f, "  %s\r\n\n", TOKEN);
    fclose(f);
    struct pt_cp_cf cf2 = {.on = true, .token_file = tf};
    char *t = pt_cpsync_token(&cf2, err, sizeof(err));
    assert_non_null(t);
    assert_string_equal(t, TOKEN);
    free(t);
    f = fopen(tf, "w");
    fclose(f);
    assert_null(pt_cpsync_token(&cf2, err, sizeof(err)));
    assert_non_null(strstr(err, "is empty"));

    unlink(tf);
    unlink(path);
    snprintf(tmp, sizeof(tmp), "%s/sub", dir);
    rmdir(tmp);
    rmdir(dir);
}

int main(void)
{
    pt_log_level = PT_LOG_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_parse),
        cmocka_unit_test(test_seal_open_round_trip),
        cmocka_unit_test(test_write_read_file),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
