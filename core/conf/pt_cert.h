/*
 * pt_cert -- the certificate store's reader: PEM (certificates, an optional
 * private key) or PKCS#12 (base64, with its password) into PEM
 * text and what the management API shows of it.
 */
#ifndef PT_CERT_H
#define PT_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bound on what one certificate entry may hold (data as given). */
#define PT_CERT_MAX_DATA (256 * 1024)
/* Bound on the certificates of one chain. */
#define PT_CERT_MAX_CHAIN 16
/* A certificate expiring within this many seconds is reported as near expiry. */
#define PT_CERT_NEAR_EXPIRY_S (30 * 86400)

struct pt_cert_info {
    char *chain_pem;     /* the certificate first, then the rest of the chain (malloc'd) */
    char *key_pem;       /* the unencrypted private key (malloc'd), or NULL */
    char thumbprint[41]; /* SHA-1 of the first certificate, upper-case hex (APIM's) */
    char subject[512];   /* RFC 2253 order and escapes, ", " between parts ("CN=a, O=b"); a longer
                            name is cut on a UTF-8 boundary */
    char issuer[512];
    char expiration[32]; /* notAfter, ISO 8601 UTC */
    int64_t not_after;   /* seconds since the epoch */
    bool is_ca;          /* basicConstraints CA:TRUE */
};

/* Reads data (len bytes): PEM text, or a PKCS#12 file as base64
   (password may be NULL: the empty one).  On success fills out (free with
   pt_cert_info_free) and returns true; otherwise writes a reason to err. */
bool pt_cert_read(const char *data, size_t len, const char *password, struct pt_cert_info *out, char *err,
                  size_t errlen);
void pt_cert_info_free(struct pt_cert_info *ci);

/* The certificates of data (a stored certificate's PEM, its key included), written back by the PEM
   reader without any key, whatever form the key takes; malloc'd, NULL when data cannot be read. */
char *pt_cert_chain_only(const char *data);

/* Checks crl_pem (one or more X509 CRLs in PEM, nothing else): every one
   must be issued and signed by ca_pem's first certificate, the certificate
   it is stored with; false with a reason. */
bool pt_cert_check_crl(const char *crl_pem, const char *ca_pem, char *err, size_t errlen);

#endif
