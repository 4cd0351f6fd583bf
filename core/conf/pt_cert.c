/*
 * pt_cert -- the certificate store's reader (see pt_cert.h).
 */
#include "conf/pt_cert.h"
#include <ctype.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool fail(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    ERR_clear_error();
    return false;
}

/* The password callback of PEM_read_bio_PrivateKey: the entry's password, if any. */
static int pem_password(char *buf, int size, int rwflag, void *arg)
{
    (void)rwflag;
    const char *pw = arg ? arg : "";
    int n = (int)strlen(pw);
    if (n > size)
        return -1;
    memcpy(buf, pw, (size_t)n);
    return n;
}

/* Base64 text (whitespace allowed) decoded into *out; false when it is not base64. */
static bool unbase64(const char *data, size_t len, unsigned char **out, size_t *outlen)
{
    char *clean = malloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '/' || c == '=')) {
            free(clean);
            return false;
        }
        clean[n++] = c;
    }
    if (n == 0 || n % 4) {
        free(clean);
        return false;
    }
    *out = malloc(n / 4 * 3 + 1);
    int got = EVP_DecodeBlock(*out, (unsigned char *)clean, (int)n);
    if (got >= 0) /* EVP_DecodeBlock counts the padding as bytes */
        for (size_t i = n; i > 0 && clean[i - 1] == '='; i--)
            got--;
    free(clean);
    if (got <= 0) {
        free(*out);
        *out = NULL;
        return false;
    }
    *outlen = (size_t)got;
    return true;
}

static void name_text(const X509_NAME *name, char *buf, size_t size)
{
    BIO *b = BIO_new(BIO_s_mem());
    /* "CN=a, O=b": the most specific part first, as APIM shows it */
    X509_NAME_print_ex(b, name, 0,
                       (XN_FLAG_RFC2253 & ~XN_FLAG_SEP_MASK & ~ASN1_STRFLGS_ESC_MSB) | XN_FLAG_SEP_CPLUS_SPC);
    char *t;
    size_t n = (size_t)BIO_get_mem_data(b, &t);
    if (n >= size) { /* a long name is cut, never inside a UTF-8 sequence: reads show it as JSON */
        n = size - 1;
        while (n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(buf, t, n);
    buf[n] = '\0';
    BIO_free(b);
}

/* PEM text of what write(bio, x) writes; malloc'd. */
static char *bio_text(BIO *b)
{
    char *t;
    long n = BIO_get_mem_data(b, &t);
    char *s = malloc((size_t)n + 1);
    memcpy(s, t, (size_t)n);
    s[n] = '\0';
    return s;
}

/* Fills ci from the leaf, its chain and key (checked to match). */
static bool describe(X509 *leaf, STACK_OF(X509) * chain, EVP_PKEY *key, struct pt_cert_info *ci, char *err,
                     size_t errlen)
{
    if (key && X509_check_private_key(leaf, key) != 1)
        return fail(err, errlen, "the private key does not belong to the certificate");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    X509_digest(leaf, EVP_sha1(), md, &mdlen);
    static const char hx[] = "0123456789ABCDEF";
    for (unsigned int i = 0; i < mdlen && i < 20; i++) {
        ci->thumbprint[2 * i] = hx[md[i] >> 4];
        ci->thumbprint[2 * i + 1] = hx[md[i] & 15];
    }
    ci->thumbprint[40] = '\0';
    name_text(X509_get_subject_name(leaf), ci->subject, sizeof(ci->subject));
    name_text(X509_get_issuer_name(leaf), ci->issuer, sizeof(ci->issuer));
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) != 1)
        return fail(err, errlen, "the certificate's expiry date cannot be read");
    ci->not_after = (int64_t)timegm(&tm);
    strftime(ci->expiration, sizeof(ci->expiration), "%Y-%m-%dT%H:%M:%SZ", &tm);
    ci->is_ca = X509_check_ca(leaf) == 1;
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, leaf);
    for (int i = 0; chain && i < sk_X509_num(chain); i++)
        PEM_write_bio_X509(b, sk_X509_value(chain, i));
    ci->chain_pem = bio_text(b);
    BIO_free(b);
    if (key) {
        b = BIO_new(BIO_s_mem());
        PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
        ci->key_pem = bio_text(b);
        BIO_free(b);
    }
    return true;
}

/* Bounds on the key derivation a password costs (PBKDF2 or PKCS#12 iterations): data made to
   keep the gateway busy for minutes is refused rather than worked on (exports use 2000-10000).
   One derivation is bounded, and so is the sum over one upload: the MAC, every encrypted
   authsafe and every shrouded key, counted as often as they are derived. */
#define MAX_ITERATIONS 600000
#define MAX_UPLOAD_ITERATIONS 2000000
#define MAX_ENCRYPTED_AUTHSAFES 4

/* What an upload may still spend on key derivation. */
struct budget {
    long left;
};

/* Charges times derivations of it iterations to b; false when one is too
   long or the upload's total would pass its bound. */
static bool charge(struct budget *b, const ASN1_INTEGER *it, int times)
{
    long v = it ? ASN1_INTEGER_get(it) : 1;
    if (v <= 0 || v > MAX_ITERATIONS || v * times > b->left)
        return false;
    b->left -= v * times;
    return true;
}

/* Whether opening what alg encrypts costs a bounded derivation (PBES2 with PBKDF2, or PKCS#12's PBE). */
static bool pbe_ok(const X509_ALGOR *alg, struct budget *b, int times)
{
    const ASN1_OBJECT *obj;
    int ptype;
    const void *pval;
    X509_ALGOR_get0(&obj, &ptype, &pval, alg);
    if (ptype != V_ASN1_SEQUENCE)
        return false;
    const ASN1_STRING *seq = pval;
    const unsigned char *p = ASN1_STRING_get0_data(seq);
    bool ok = false;
    if (OBJ_obj2nid(obj) == NID_pbes2) {
        PBE2PARAM *pbe2 = d2i_PBE2PARAM(NULL, &p, ASN1_STRING_length(seq));
        const ASN1_TYPE *kp = pbe2 ? pbe2->keyfunc->parameter : NULL;
        if (kp && OBJ_obj2nid(pbe2->keyfunc->algorithm) == NID_id_pbkdf2 && kp->type == V_ASN1_SEQUENCE) {
            const unsigned char *q = kp->value.sequence->data;
            PBKDF2PARAM *kdf = d2i_PBKDF2PARAM(NULL, &q, kp->value.sequence->length);
            ok = kdf && charge(b, kdf->iter, times);
            PBKDF2PARAM_free(kdf);
        }
        PBE2PARAM_free(pbe2);
    } else {
        PBEPARAM *pbe = d2i_PBEPARAM(NULL, &p, ASN1_STRING_length(seq));
        ok = pbe && charge(b, pbe->iter, times);
        PBEPARAM_free(pbe);
    }
    return ok;
}

/* The shrouded keys of bags cost a bounded derivation; nested bags are not read (their depth is
   the file's to choose). */
static bool bags_ok(const STACK_OF(PKCS12_SAFEBAG) * bags, struct budget *b)
{
    for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
        const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);
        int nid = PKCS12_SAFEBAG_get_nid(bag);
        const X509_ALGOR *alg;
        if (nid == NID_safeContentsBag)
            return false;
        if (nid == NID_pkcs8ShroudedKeyBag) {
            X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(bag), &alg, NULL);
            if (!pbe_ok(alg, b, 1)) /* opened once, by PKCS12_parse */
                return false;
        }
    }
    return true;
}

/* Whether opening p12 with pw costs a bounded work (what PKCS12_parse would do unchecked).  An
   encrypted authsafe is opened here and again by PKCS12_parse: it is charged twice. */
static bool p12_cost_ok(const PKCS12 *p12, const char *pw, struct budget *b)
{
    STACK_OF(PKCS7) *safes = PKCS12_unpack_authsafes(p12);
    bool ok = safes != NULL && sk_PKCS7_num(safes) <= 16;
    int encrypted = 0;
    for (int i = 0; ok && i < sk_PKCS7_num(safes); i++) {
        PKCS7 *p7 = sk_PKCS7_value(safes, i);
        STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
        int nid = OBJ_obj2nid(p7->type);
        if (nid == NID_pkcs7_data)
            bags = PKCS12_unpack_p7data(p7);
        else if (nid == NID_pkcs7_encrypted && ++encrypted <= MAX_ENCRYPTED_AUTHSAFES && p7->d.encrypted &&
                 p7->d.encrypted->enc_data && pbe_ok(p7->d.encrypted->enc_data->algorithm, b, 2))
            bags = PKCS12_unpack_p7encdata(p7, pw, -1);
        ok = bags && sk_PKCS12_SAFEBAG_num(bags) <= 64 && bags_ok(bags, b);
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    }
    sk_PKCS7_pop_free(safes, PKCS7_free);
    return ok;
}

/* An encrypted PKCS#8 key ("ENCRYPTED PRIVATE KEY") costs a bounded derivation to open. */
static bool pkcs8_cost_ok(const char *data, size_t len)
{
    if (!strstr(data, "-----BEGIN ENCRYPTED PRIVATE KEY-----"))
        return true;
    BIO *b = BIO_new_mem_buf(data, (int)len);
    X509_SIG *p8 = PEM_read_bio_PKCS8(b, NULL, NULL, NULL);
    BIO_free(b);
    const X509_ALGOR *alg = NULL;
    if (p8)
        X509_SIG_get0(p8, &alg, NULL);
    struct budget budget = {MAX_UPLOAD_ITERATIONS};
    bool ok = alg && pbe_ok(alg, &budget, 1);
    X509_SIG_free(p8);
    return ok;
}

static bool read_pem(const char *data, size_t len, const char *password, struct pt_cert_info *ci, char *err,
                     size_t errlen)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *x;
    bool ok = leaf != NULL;
    while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_num(chain) >= PT_CERT_MAX_CHAIN) {
            X509_free(x);
            ok = fail(err, errlen, "too many certificates (at most 16 in a chain)");
            break;
        }
        sk_X509_push(chain, x);
    }
    BIO_free(b);
    EVP_PKEY *key = NULL;
    if (ok && strstr(data, "PRIVATE KEY-----") && !pkcs8_cost_ok(data, len))
        ok = fail(err, errlen, "the encrypted private key asks for too many key derivation iterations");
    if (ok && strstr(data, "PRIVATE KEY-----")) {
        b = BIO_new_mem_buf(data, (int)len);
        key = PEM_read_bio_PrivateKey(b, NULL, pem_password, (void *)password);
        BIO_free(b);
        if (!key)
            ok = fail(err, errlen,
                      strstr(data, "ENCRYPTED") ? "the private key cannot be decrypted (wrong password?)"
                                                : "the private key cannot be read");
    }
    if (!leaf)
        ok = fail(err, errlen, "no certificate found in the PEM data");
    if (ok)
        ok = describe(leaf, chain, key, ci, err, errlen);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return ok;
}

static bool read_pkcs12(const unsigned char *der, size_t len, const char *password, struct pt_cert_info *ci,
                        char *err, size_t errlen)
{
    const unsigned char *p = der;
    PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (!p12)
        return false;
    const char *pw = password ? password : "";
    bool ok;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    const ASN1_INTEGER *mac_iter = NULL;
    const X509_ALGOR *mac_alg = NULL;
    if (PKCS12_mac_present(p12))
        PKCS12_get0_mac(NULL, &mac_alg, NULL, &mac_iter, p12);
    const ASN1_OBJECT *mac_oid = NULL;
    if (mac_alg)
        X509_ALGOR_get0(&mac_oid, NULL, NULL, mac_alg);
    struct budget budget = {MAX_UPLOAD_ITERATIONS};
    if (mac_oid && OBJ_obj2nid(mac_oid) == NID_pbmac1) /* its derivation's cost sits where we do not look */
        ok = fail(err, errlen, "the PKCS#12 data's MAC (PBMAC1) is not supported");
    else if (!charge(&budget, mac_iter, 2)) /* verified here and by PKCS12_parse */
        ok = fail(err, errlen, "the PKCS#12 data asks for too many key derivation iterations");
    else if (PKCS12_mac_present(p12) && PKCS12_verify_mac(p12, pw, -1) != 1)
        ok = fail(err, errlen, "the password does not open the PKCS#12 data");
    else if (!p12_cost_ok(p12, pw, &budget))
        ok = fail(
            err, errlen,
            "the PKCS#12 data cannot be opened (wrong password, nested bags, more than 4 encrypted parts, "
            "or too many key derivation iterations: at most 600000 for one, 2000000 in all)");
    else if (PKCS12_parse(p12, pw, &key, &leaf, &chain) != 1)
        ok = fail(err, errlen, "the PKCS#12 data cannot be read (wrong password or unsupported encryption)");
    else if (!leaf)
        ok = fail(err, errlen, "the PKCS#12 data holds no certificate");
    else if (chain && sk_X509_num(chain) > PT_CERT_MAX_CHAIN)
        ok = fail(err, errlen, "too many certificates (at most 16 in a chain)");
    else
        ok = describe(leaf, chain, key, ci, err, errlen);
    PKCS12_free(p12);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return ok;
}

/* A DER certificate alone (APIM's .cer upload, base64). */
static bool read_der_cert(const unsigned char *der, size_t len, struct pt_cert_info *ci, char *err,
                          size_t errlen)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x)
        return false;
    bool ok = p == der + len ? describe(x, NULL, NULL, ci, err, errlen)
                             : fail(err, errlen, "trailing bytes after the certificate");
    X509_free(x);
    return ok;
}

bool pt_cert_read(const char *data, size_t len, const char *password, struct pt_cert_info *out, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!data || len == 0)
        return fail(err, errlen, "no certificate data");
    if (len > PT_CERT_MAX_DATA)
        return fail(err, errlen, "the certificate data is larger than 256 KB");
    if (memchr(data, '\0', len))
        return fail(err, errlen, "the certificate data holds a NUL byte");
    /* PEM text, or base64 of PKCS#12 / DER; raw binary given as text is not a case */
    char *text = malloc(len + 1);
    memcpy(text, data, len);
    text[len] = '\0';
    bool ok;
    err[0] = '\0';
    if (strstr(text, "-----BEGIN ")) {
        ok = read_pem(text, len, password, out, err, errlen);
    } else {
        unsigned char *der = NULL;
        size_t dlen = 0;
        if (!unbase64(text, len, &der, &dlen))
            ok = fail(err, errlen, "the data is neither PEM nor base64 (PKCS#12 or a DER certificate)");
        else {
            ok = read_pkcs12(der, dlen, password, out, err, errlen);
            if (!ok && !err[0])
                ok = read_der_cert(der, dlen, out, err, errlen);
            if (!ok && !err[0])
                fail(err, errlen, "the data is neither a PKCS#12 file nor a DER certificate");
            free(der);
        }
    }
    free(text);
    ERR_clear_error();
    if (!ok)
        pt_cert_info_free(out);
    return ok;
}

void pt_cert_info_free(struct pt_cert_info *ci)
{
    free(ci->chain_pem);
    if (ci->key_pem) {
        OPENSSL_cleanse(ci->key_pem, strlen(ci->key_pem));
        free(ci->key_pem);
    }
    ci->chain_pem = ci->key_pem = NULL;
}

/* A CRL block is acceptable when it is a CRL, names ca as its issuer and
   carries ca's signature: a CRL of another CA with the same name must not
   revoke ca's clients. */
static const char *crl_block_why(X509_CRL *crl, X509 *ca)
{
    if (!crl)
        return "the CRL is not a PEM X509 CRL";
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)))
        return "the CRL's issuer is not this certificate's subject";
    if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1)
        return "the CRL is not signed by this certificate's key";
    return NULL;
}

/* Text that is PEM blocks only: nothing but white space before the first and after the last. */
static bool only_pem(const char *pem)
{
    while (isspace((unsigned char)*pem))
        pem++;
    size_t n = strlen(pem);
    while (n && isspace((unsigned char)pem[n - 1]))
        n--;
    return !strncmp(pem, "-----BEGIN ", 11) && n >= 5 && !strncmp(pem + n - 5, "-----", 5);
}

static size_t count_pem_blocks(const char *pem)
{
    size_t n = 0;
    for (const char *p = pem; (p = strstr(p, "-----BEGIN ")) != NULL; p++)
        n++;
    return n;
}

bool pt_cert_check_crl(const char *crl_pem, const char *ca_pem, char *err, size_t errlen)
{
    size_t len = strlen(crl_pem);
    if (len > PT_CERT_MAX_DATA)
        return fail(err, errlen, "the CRL is larger than 256 KB");
    BIO *cb = BIO_new_mem_buf(ca_pem, -1);
    X509 *ca = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    BIO_free(cb);
    const char *why = !only_pem(crl_pem) ? "the CRL is not a PEM X509 CRL (text around its blocks)"
                      : ca               ? NULL
                                         : "the certificate a CRL is stored with cannot be read";
    size_t blocks = count_pem_blocks(crl_pem), good = 0;
    BIO *b = BIO_new_mem_buf(crl_pem, (int)len);
    while (!why && good < blocks) {
        X509_CRL *c = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
        why = crl_block_why(c, ca);
        X509_CRL_free(c);
        good += why == NULL;
    }
    BIO_free(b);
    X509_free(ca);
    ERR_clear_error();
    if (!why && !good)
        why = "the CRL is not a PEM X509 CRL";
    return why ? fail(err, errlen, why) : true;
}

char *pt_cert_chain_only(const char *data)
{
    struct pt_cert_info ci;
    char err[160];
    if (!data || !pt_cert_read(data, strlen(data), NULL, &ci, err, sizeof(err)))
        return NULL;
    char *chain = ci.chain_pem;
    ci.chain_pem = NULL;
    pt_cert_info_free(&ci);
    return chain;
}
