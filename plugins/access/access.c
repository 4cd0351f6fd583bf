/*
 * access.c -- the access-restriction family's descriptor: the policy
 * table, PT_PLUGIN and init/fini.
 *
 * rate-limit, rate-limit-by-key, quota, quota-by-key, limit-concurrency,
 * ip-filter, check-header, cors, validate-jwt, validate-client-certificate,
 * authentication-certificate and authentication-basic, named and shaped
 * after Azure API Management's.  Each lives in its own file (the two
 * rate limits share rate_limit.c, the two quotas quota.c); access.h says
 * what they share.  Decisions where APIM leaves room are documented at
 * each policy.
 */
#include "access.h"

const struct pt_api *access_api;

/* ============================================================ the family */

static const struct pt_policy_def policies[] = {
    {"rate-limit", PT_SECTION_INBOUND, PT_SCOPE_PRODUCT | PT_SCOPE_API | PT_SCOPE_OPERATION,
     PT_POLICY_ONCE_PER_SECTION, rate_limit_attrs, rate_limit_compile, rate_limit_run, NULL,
     "Limits calls per subscription in a sliding window (429 RateLimitExceeded with Retry-After); nested api "
     "and operation elements add limits of their own. Calls without a subscription are not limited."},
    {"rate-limit-by-key", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, rate_limit_by_key_attrs,
     rate_limit_by_key_compile, rate_limit_by_key_run, NULL,
     "Limits calls per key value in a sliding window; one counter per value shared by every policy that uses "
     "it. With increment-condition the call is counted once its response is known."},
    {"quota", PT_SECTION_INBOUND, PT_SCOPE_PRODUCT, PT_POLICY_ONCE_PER_SECTION, quota_attrs, quota_compile,
     quota_run, NULL,
     "Limits calls and/or kilobytes per subscription in fixed periods counted from the subscription's "
     "creation (403 QuotaExceeded with Retry-After). Counts survive restarts."},
    {"quota-by-key", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, quota_by_key_attrs, quota_by_key_compile,
     quota_by_key_run, NULL,
     "Limits calls and/or kilobytes per key value in fixed periods counted from first-period-start; a "
     "request counts once per key even if several policies use it."},
    {"limit-concurrency", PT_SECTION_ALL, PT_SCOPE_ALL, 0, limit_concurrency_attrs, limit_concurrency_compile,
     limit_concurrency_run, NULL,
     "Runs its statements for at most max-count requests at once per key; the others get 429 at once. A "
     "request holds its slot until it is over."},
    {"ip-filter", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, ip_filter_attrs, ip_filter_compile, ip_filter_run,
     NULL,
     "Allows only, or forbids, callers by address and range, IPv4 and IPv6 (403 CallerIpNotAllowed / "
     "CallerIpBlocked). The caller is the peer, or the X-Forwarded-For client when the peer is in "
     "trustedProxies."},
    {"check-header", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, check_header_attrs, check_header_compile,
     check_header_run, NULL,
     "Requires a request header, optionally with one of the listed values (HeaderNotFound, "
     "HeaderValueNotAllowed with the configured status and message)."},
    {"cors", PT_SECTION_INBOUND, PT_SCOPE_ALL, PT_POLICY_ONCE_PER_SECTION | PT_POLICY_PREFLIGHT, cors_attrs,
     cors_compile, cors_run, NULL,
     "Cross-origin resource sharing: answers preflight requests itself (put it first in inbound) and adds "
     "the Access-Control headers to the responses of allowed origins."},
    {"validate-jwt", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, validate_jwt_attrs, validate_jwt_compile,
     validate_jwt_run, validate_jwt_free,
     "Validates a JSON Web Token from a header (Authorization by default), a query parameter or an "
     "expression: signature (HS256/384/512, RS256/384/512, PS256, ES256/384 with inline keys), exp, nbf, "
     "audiences, issuers, required claims. Refusals are 401 by default with reasons TokenNotPresent, "
     "JwtInvalid, TokenExpired, TokenSignatureInvalid, TokenSignatureKeyNotFound, TokenAudienceNotAllowed, "
     "TokenIssuerNotAllowed, TokenClaimNotFound, TokenClaimValueNotAllowed."},
    {"validate-client-certificate", PT_SECTION_INBOUND, PT_SCOPE_ALL, PT_POLICY_CLIENT_CERT,
     validate_client_certificate_attrs, validate_client_certificate_compile, validate_client_certificate_run,
     validate_client_certificate_free,
     "Checks the TLS client certificate (listeners with clientCertificate: optional or required): trust "
     "against the listener's clientCa or the certificate store's CA certificates, dates, revocation "
     "(the store's CRLs), and identities (thumbprint, serial-number, common-name, subject, dns-name, "
     "issuer-subject, issuer-thumbprint, issuer-certificate-id). Refusals are 401: "
     "ClientCertificateMissing, ClientCertificateNotTrusted, ClientCertificateExpired, "
     "ClientCertificateNotYetValid, ClientCertificateRevoked, ClientCertificateRevocationUnknown (the "
     "issuer's CRL "
     "has expired), ClientCertificateIdentityNotAllowed."},
    {"authentication-certificate", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, authentication_certificate_attrs,
     authentication_certificate_compile, authentication_certificate_run, NULL,
     "Presents a client certificate (of the certificate store, or PEM files) to an https backend; "
     "connections made with it are pooled "
     "apart."},
    {"authentication-basic", PT_SECTION_INBOUND, PT_SCOPE_ALL, 0, authentication_basic_attrs,
     authentication_basic_compile, authentication_basic_run, NULL,
     "Sends the backend an Authorization: Basic header made of username and password."},
    {0},
};

static int access_init(const struct pt_api *api, const char **err)
{
    if (api->abi_minor < 3 || !api->counter || !api->tls_client_cert || !api->http_get) {
        *err = "needs a gateway with the 1.3 plugin interface";
        return -1;
    }
    access_api = api;
    return 0;
}

static void access_fini(void)
{
    oidc_fini();
}

PT_PLUGIN("access", "1.0.0", policies, access_init, access_fini);
