/*
 * fuzz_cert -- certificate store uploads as an administrator (or a hostile
 * file) may give them (pt_cert_read: PEM, base64 of PKCS#12 or DER) and
 * revocation lists (pt_cert_check_crl).
 *
 * Whatever the bytes, reading must never go out of bounds (ASan) or leak;
 * what is read must read again the same: its PEM chain gives the same
 * thumbprint, and a key comes back only with the certificate it belongs to.
 */
#include "conf/pt_cert.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Whether s is well-formed UTF-8 (no cut sequences). */
static bool utf8_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int more = *p < 0x80             ? 0
                   : (*p & 0xE0) == 0xC0 ? 1
                   : (*p & 0xF0) == 0xE0 ? 2
                   : (*p & 0xF8) == 0xF0 ? 3
                                         : -1;
        if (more < 0)
            return false;
        for (p++; more > 0; more--, p++)
            if ((*p & 0xC0) != 0x80)
                return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the first byte picks the password: none ('c'), the empty one ('a') or "pw" ('b') */
    if (size == 0)
        return 0;
    const char *pw = data[0] % 3 == 0 ? NULL : data[0] % 3 == 1 ? "" : "pw";
    char *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    struct pt_cert_info ci, again;
    char err[256];
    if (pt_cert_read(copy, size - 1, pw, &ci, err, sizeof(err))) {
        if (strlen(ci.thumbprint) != 40 || !ci.chain_pem || !utf8_ok(ci.subject) || !utf8_ok(ci.issuer))
            abort(); /* names go out as JSON strings */
        if (!pt_cert_read(ci.chain_pem, strlen(ci.chain_pem), NULL, &again, err, sizeof(err)) ||
            strcmp(again.thumbprint, ci.thumbprint) || again.key_pem)
            abort(); /* what it wrote does not read back as the same certificate */
        pt_cert_info_free(&again);
        pt_cert_info_free(&ci);
    } else if (!err[0])
        abort(); /* refused without a reason */
    /* the same bytes as the CA: a certificate followed by CRL blocks reaches the CRL checks */
    if (!pt_cert_check_crl(copy, copy, err, sizeof(err)) && !err[0])
        abort();
    free(copy);
    return 0;
}

/* the first seed's certificate and key (below) as PKCS#12, base64, password "pw" */
#define P12                                                                                                  \
    "MIID/AIBAzCCA7IGCSqGSIb3DQEHAaCCA6MEggOfMIIDmzCCAlIGCSqGSIb3DQEHBqCCAkMwggI/AgEAMIICOAYJKoZIhvcNAQc"    \
    "BMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAicCSqLRIuCpQICCAAwDAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEH9"   \
    "RUKDUJZ8YidinUM1NHI2AggHQSlxqYJHeoctgaTfUmQtVvRaIwBBXL9LadmyeSjdx7khAK0u0buOBsr3TOejQIDmnXWtIxP3mbIs"   \
    "hM+osfRE/OvnGQjG949WhWM3lwEen4OX5Naq3YP7tp5GRDoFuqt/y0UHWg6RW+XB6lW2AMo0d4rANdJG7FvMKN9E/VElMI8OoUX+"   \
    "fKVDdkvPmqzuxhaqdQ/JIwtqYhhteMLbVqzwSCYF0V0rUiC6cyFRstcnHFLsCQxwBYBBLRke5heuZjRct2UcQyuMJeSFE871FtSt"   \
    "YWcbwseRrw/X4FITNXw3J1kdj+9ykrZ1G/TFqPSIiz55eJCc3U9rNtCBczO2PckYLtJRKoaz6Lbpq+7cOtb5iu/bdiGZgvRmSRIZ"   \
    "UMapbYTNkOgbyjh6oGBRwvcr4398M5suYfZKSEPmNCKAEeAzVmw0Lica0GzYZOojlBoY7MyJGhFaMf+NOlq5JVpm4g9hZQ9yg5qb"   \
    "nugUrucY6pA0YFTz3zsyzj3zVspDrNvu74nKNYh2cuqVef9DgaJNDW8lgm5s9tQ5zmNTj7xCcr07YTfocvuUU464QY3sLtcYuats"   \
    "SEoo78xxSLY2z0SdeAmkxNii6LWvgpfyCR7bTBc/3uJQwggFBBgkqhkiG9w0BBwGgggEyBIIBLjCCASowggEmBgsqhkiG9w0BDAo"   \
    "BAqCB7zCB7DBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQIr5Qth9fWlyMCAggAMAwGCCqGSIb3DQIJBQAwHQYJYIZIAWU"   \
    "DBAEqBBAXnYaGiIOkbWWIa5eomezCBIGQ82JaiOQXo2EN7+4McfeekRwvV3aU8ZyX3Icxwmy2N0ddcnVEAplNOqHGFAbly2uTwJ1"   \
    "I7XBZcBiCnbvmh7rE/+z4p6in1qU9qMnaKz0i7SXRsBZwmGV5nTaCnlTllmMU/o6qPrEDvEPQ+2fw1Igf8fGjelU5CYv22ZI3kWz"   \
    "vTmLGbZO4fOoK7a38A2bsNRstMSUwIwYJKoZIhvcNAQkVMRYEFC83Cv3w7xJZz4tdB7a7gyM2/JM9MEEwMTANBglghkgBZQMEAgE"   \
    "FAAQgo5+REQwn4PTPqKkBRff1smgVDOaJMNjbZIrueKL6gZYECIEctpFq3sk/AgIIAA=="

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_cert";
const char *const fuzz_seeds[] = {
    /* a self-signed certificate and its key, no password */
    "c-----BEGIN CERTIFICATE-----\nMIIBcjCCARmgAwIBAgIUbjUmUFYJXHatM3Ey9mjF/6qaWIcwCgYIKoZIzj0EAwIw\nDzEN"
    "MAsGA1UEAwwEZnV6ejAeFw0yNjEyMDYyMjExMThaFw0zNjEyMDMyMjExMTha\nMA8xDTALBgNVBAMMBGZ1enowWTATBgcqhkjOPQ"
    "IBBggqhkjOPQMBBwNCAARq4LAe\nB1KtgxfxjZjF/Rvb9lDsC5Xtd0U88+2bmiwsFPUajCCM7bmQFhA9VdWmRvXMhoZl\njVkhgY"
    "/qxzniIuB8o1MwUTAdBgNVHQ4EFgQUwcRQcuxVKTnoDOhxPeDCnma0Gvow\nHwYDVR0jBBgwFoAUwcRQcuxVKTnoDOhxPeDCnma0"
    "GvowDwYDVR0TAQH/BAUwAwEB\n/zAKBggqhkjOPQQDAgNHADBEAiB+x25lI7OVWp5JtkhxCDplmBhT/AWiF0yg7hLA\ntYv0lwIg"
    "OIggydX51tScpTCvymRB0nC2fEydBJr3JrBYJruNhKY=\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----"
    "\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgR5+g8/FurtLsi9+b\nF33KgZcoiUNk3AKGou4eu5mvCVWhRANC"
    "AARq4LAeB1KtgxfxjZjF/Rvb9lDsC5Xt\nd0U88+2bmiwsFPUajCCM7bmQFhA9VdWmRvXMhoZljVkhgY/qxzniIuB8\n-----END"
    " PRIVATE KEY-----\n",
    /* the same as PKCS#12, with its password... */
    "b" P12,
    /* ...and with the wrong (empty) one */
    "a" P12,
    "c-----BEGIN X509 CRL-----\nMIHc\n-----END X509 CRL-----\n",
    "cMIIBszCCAVmgAwIBAgIU",
    "c-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    "a====",
    NULL,
};
