/*
 * pt_url -- parsing the absolute URLs that configuration names (serviceUrl),
 * and small helpers for URL pieces of requests.
 */
#ifndef PT_URL_H
#define PT_URL_H

#include "base/pt.h"
#include "base/pt_pool.h"

struct pt_url {
    bool https;
    char *host; /* without brackets for IPv6 */
    int port;   /* explicit or the scheme's default */
    bool default_port;
    char *authority; /* "host[:port]" as sent in Host (brackets kept, default port omitted) */
    char *path;      /* "" or starting with '/', no trailing '/' */
};

/*
 * Parses an absolute http(s) URL without query, fragment or user info.
 * Returns NULL on success, else a static message saying what is wrong.
 */
const char *pt_url_parse(struct pt_pool *pool, const char *text, struct pt_url *out);

/* true when s is a valid Host header value: reg-name / IPv4 / [IPv6] with optional :port */
bool pt_url_host_valid(pt_str s);
/* The host part of a Host value, port removed, brackets kept. */
pt_str pt_url_host_strip_port(pt_str s);
/* Decodes %XX in place into out (size >= in.n); returns the length or -1 on bad escapes. */
ssize_t pt_url_pct_decode(pt_str in, char *out, bool plus_is_space);

/* One key[=value] item of a query string (raw: nothing decoded). */
struct pt_url_qitem {
    pt_str item, key, value;
    bool has_value;
};
/* Takes the next item off the front of q; false when none is left. */
bool pt_url_query_next(pt_str *q, struct pt_url_qitem *it);
/* Finds a query parameter's raw value (PT_NULL_STR for a key without '='). */
bool pt_url_query_param(pt_str q, pt_str name, pt_str *value);

#endif
