/*
 * pt_accesslog -- the access log: one JSON line per request, secrets
 * redacted.
 */
#include "base/pt_log.h"
#include "base/pt_url.h"
#include "conf/pt_router.h"
#include "event/pt_io.h"
#include "event/pt_tls.h"
#include "http/pt_http.h"
#include "http/pt_msg.h"
#include "lua/pt_lua.h"
#include "policy/pt_corepol.h"
#include "policy/pt_gen.h"
#include "policy/pt_pipeline.h"
#include "proxy/pt_proxy.h"
#include "proxy/pt_worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void log_num_ms(struct pt_buf *b, uint64_t us)
{
    pt_buf_u64(b, us / 1000);
    char frac[4] = {'.', (char)('0' + (us / 100) % 10), (char)('0' + (us / 10) % 10), (char)('0' + us % 10)};
    pt_buf_add(b, frac, 4);
}

static void log_str_field(struct pt_buf *b, const char *name, pt_str v)
{
    pt_buf_add(b, ",\"", 2);
    pt_buf_add(b, name, strlen(name));
    pt_buf_add(b, "\":\"", 3);
    pt_buf_json(b, v);
    pt_buf_add(b, "\"", 1);
}

/* "clientCertificate": {"subject", "issuer", "verify"} when the client
   presented one ("verify": "ok" or why it does not verify against clientCa). */
static void log_client_cert(struct pt_buf *b, struct pt_conn *c)
{
    SSL *ssl = pt_io_ssl(c->io);
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    if (!x)
        return;
    char subject[512], issuer[512];
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    X509_NAME_oneline(X509_get_issuer_name(x), issuer, sizeof(issuer));
    long v = SSL_get_verify_result(ssl);
    pt_buf_lit(b, ",\"clientCertificate\":{\"subject\":\"");
    pt_buf_json(b, pt_str_c(subject));
    pt_buf_lit(b, "\",\"issuer\":\"");
    pt_buf_json(b, pt_str_c(issuer));
    pt_buf_lit(b, "\",\"verify\":\"");
    pt_buf_json(b, pt_str_c(v == X509_V_OK ? "ok" : X509_verify_cert_error_string(v)));
    pt_buf_lit(b, "\"}");
}

/* Is this query parameter one whose value the access log must not hold:
   the subscription key (the API's subscriptionKeyParameterNames.query,
   "subscription-key" before an API is known) or one the API lists in
   secretQueryParameters? */
static bool secret_param(const struct pt_req *req, pt_str k)
{
    if (pt_str_eq(k, pt_str_c(req->api ? req->api->cf->key_query : "subscription-key")))
        return true;
    for (int i = 0; req->api && i < req->api->cf->secret_query.n; i++)
        if (pt_str_eq(k, pt_str_c(req->api->cf->secret_query.v[i])))
            return true;
    return false;
}

/* The query for the access log and the request records, secret values
   written as REDACTED: logs travel further than keys may. */
pt_str pt_accesslog_redact_query(struct pt_req *req)
{
    pt_str q = req->h.query;
    struct pt_buf b;
    pt_buf_init(&b, req->pool, q.len + 16);
    bool changed = false, first = true;
    struct pt_url_qitem it;
    while (pt_url_query_next(&q, &it)) {
        if (!first)
            pt_buf_lit(&b, "&");
        first = false;
        if (it.has_value && secret_param(req, it.key)) {
            pt_buf_str(&b, it.key);
            pt_buf_lit(&b, "=REDACTED");
            changed = true;
        } else
            pt_buf_str(&b, it.item);
    }
    return changed ? (pt_str){b.p, b.n} : req->h.query;
}

void pt_accesslog_line(struct pt_req *req, const char *second, uint64_t wall, struct pt_buf *out)
{
    struct pt_buf b;
    uint64_t now = pt_clock_now_us();
    pt_buf_init(&b, req->pool, 512);
    pt_buf_lit(&b, "{\"time\":\"");
    pt_buf_add(&b, second, 20); /* "YYYY-MM-DDTHH:MM:SS." */
    char ms[4] = {(char)('0' + (wall / 100) % 10), (char)('0' + (wall / 10) % 10), (char)('0' + wall % 10),
                  'Z'};
    pt_buf_add(&b, ms, 4);
    pt_buf_lit(&b, "\"");
    log_str_field(&b, "requestId", (pt_str){req->id, req->idn});
    log_str_field(&b, "clientIp", pt_str_c(req->c->peer.ip));
    log_str_field(&b, "method", req->h.method);
    if (req->c->peer.h2) /* HTTP/1.x lines stay as they were */
        log_str_field(&b, "protocol", PT_STR("HTTP/2.0"));
    log_str_field(&b, "path", req->h.path);
    if (req->h.query.len)
        log_str_field(&b, "query", pt_accesslog_redact_query(req));
    if (req->api)
        log_str_field(&b, "api", pt_str_c(req->api->cf->id));
    if (req->op)
        log_str_field(&b, "operation", pt_str_c(req->op->cf->id));
    if (req->product)
        log_str_field(&b, "product", pt_str_c(req->product->cf->id));
    if (req->sub) {
        log_str_field(&b, "subscription", pt_str_c(req->sub->cf->id));
        if (req->sub->owner)
            log_str_field(&b, "user", pt_str_c(req->sub->owner->cf->id));
    }
    if (req->c->peer.tls)
        log_client_cert(&b, req->c);
    pt_buf_lit(&b, ",\"status\":");
    pt_buf_u64(&b, (uint64_t)req->status);
    if (req->backend_status) {
        pt_buf_lit(&b, ",\"backendStatus\":");
        pt_buf_u64(&b, (uint64_t)req->backend_status);
    }
    static const char *const cache[] = {"none", "hit", "miss"};
    log_str_field(&b, "cache", pt_str_c(cache[req->cache_status < 3 ? req->cache_status : 0]));
    pt_buf_lit(&b, ",\"bytesIn\":");
    pt_buf_u64(&b, req->bytes_in);
    pt_buf_lit(&b, ",\"bytesOut\":");
    pt_buf_u64(&b, req->bytes_out);
    if (req->tb0) {
        pt_buf_lit(&b, ",\"backendTime\":");
        log_num_ms(&b, (req->tb1 ? req->tb1 : now) - req->tb0);
    }
    pt_buf_lit(&b, ",\"totalTime\":");
    log_num_ms(&b, now - req->t0);
    if (req->reason)
        log_str_field(&b, "reason", pt_str_c(req->reason));
    pt_buf_lit(&b, "}");
    *out = b;
}
