/*
 * pt_url -- URL helpers.
 */
#include "base/pt_url.h"

#include <arpa/inet.h>
#include <stdlib.h>

static bool is_unreserved_or_sub(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~!$&'()*+,;=%", c) != NULL;
}

const char *pt_url_parse(struct pt_pool *pool, const char *text, struct pt_url *u)
{
    memset(u, 0, sizeof(*u));
    const char *p = text;
    if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strncasecmp(p, "https://", 8) == 0) {
        p += 8;
        u->https = true;
    } else
        return "must start with http:// or https://";
    const char *auth = p;
    while (*p && *p != '/' && *p != '?' && *p != '#')
        p++;
    size_t alen = (size_t)(p - auth);
    if (alen == 0)
        return "has no host";
    if (memchr(auth, '@', alen))
        return "must not carry user information";
    if (*p == '?' || *p == '#' || strchr(p, '?') || strchr(p, '#'))
        return "must not have a query or fragment";
    /* split host and port */
    const char *hs = auth, *he, *port = NULL;
    if (*auth == '[') {
        he = memchr(auth, ']', alen);
        if (!he)
            return "has an unterminated IPv6 literal";
        hs = auth + 1;
        if (he + 1 < auth + alen) {
            if (he[1] != ':')
                return "has junk after the IPv6 literal";
            port = he + 2;
        }
    } else {
        he = memchr(auth, ':', alen);
        if (he)
            port = he + 1;
        else
            he = auth + alen;
    }
    if (he == hs)
        return "has an empty host";
    if (*auth == '[') {
        char lit[64];
        struct in6_addr a6;
        if ((size_t)(he - hs) >= sizeof(lit))
            return "has an invalid IPv6 literal";
        memcpy(lit, hs, (size_t)(he - hs));
        lit[he - hs] = '\0';
        if (inet_pton(AF_INET6, lit, &a6) != 1)
            return "has an invalid IPv6 literal";
    } else
        for (const char *c = hs; c < he; c++)
            if (!is_unreserved_or_sub((unsigned char)*c) || *c == '%')
                return "has an invalid character in the host";
    u->port = u->https ? 443 : 80;
    u->default_port = true;
    if (port) {
        const char *pe = auth + alen;
        if (port == pe)
            return "has an empty port";
        long v = 0;
        for (const char *c = port; c < pe; c++) {
            if (*c < '0' || *c > '9')
                return "has an invalid port";
            v = v * 10 + (*c - '0');
            if (v > 65535)
                return "has a port above 65535";
        }
        if (v == 0)
            return "has port 0";
        u->port = (int)v;
        u->default_port = v == (u->https ? 443 : 80);
    }
    u->host = pt_pool_strndup(pool, hs, (size_t)(he - hs));
    for (char *c = u->host; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c |= 0x20;
    if (u->default_port)
        u->authority = *auth == '[' ? pt_pool_printf(pool, "[%s]", u->host) : pt_pool_strdup(pool, u->host);
    else
        u->authority = *auth == '[' ? pt_pool_printf(pool, "[%s]:%d", u->host, u->port)
                                    : pt_pool_printf(pool, "%s:%d", u->host, u->port);
    /* path: keep as written, drop trailing slashes */
    size_t plen = strlen(p);
    while (plen && p[plen - 1] == '/')
        plen--;
    for (size_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' ||
            c == '{' || c == '|' || c == '}')
            return "has a character that must be percent-encoded in the path";
    }
    u->path = pt_pool_strndup(pool, p, plen);
    return NULL;
}

bool pt_url_host_valid(pt_str s)
{
    if (s.len == 0 || s.len > 255)
        return false;
    size_t i = 0;
    if (s.data[0] == '[') {
        for (i = 1; i < s.len && s.data[i] != ']'; i++) {
            char c = s.data[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
                  c == '.'))
                return false;
        }
        if (i >= s.len || i == 1)
            return false;
        i++;
    } else {
        for (; i < s.len && s.data[i] != ':'; i++) {
            unsigned char c = (unsigned char)s.data[i];
            if (!is_unreserved_or_sub(c) || c == '%')
                return false;
        }
        if (i == 0)
            return false;
    }
    if (i == s.len)
        return true;
    if (s.data[i] != ':')
        return false;
    i++;
    if (i == s.len || s.len - i > 5)
        return false;
    unsigned port = 0;
    for (; i < s.len; i++) {
        if (s.data[i] < '0' || s.data[i] > '9')
            return false;
        port = port * 10 + (unsigned)(s.data[i] - '0');
    }
    return port <= 65535;
}

pt_str pt_url_host_strip_port(pt_str s)
{
    if (s.len == 0)
        return s;
    if (s.data[0] == '[') {
        const char *e = memchr(s.data, ']', s.len);
        if (e)
            s.len = (size_t)(e - s.data) + 1;
        return s;
    }
    const char *c = memchr(s.data, ':', s.len);
    if (c)
        s.len = (size_t)(c - s.data);
    return s;
}

ssize_t pt_url_pct_decode(pt_str in, char *out, bool plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.data[i];
        if (c == '%') {
            if (i + 2 >= in.len)
                return -1;
            int h = pt_hexval((unsigned char)in.data[i + 1]), l = pt_hexval((unsigned char)in.data[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_is_space)
            out[o++] = ' ';
        else
            out[o++] = c;
    }
    return (ssize_t)o;
}

bool pt_url_query_next(pt_str *q, struct pt_url_qitem *it)
{
    if (!q->len)
        return false;
    const char *amp = memchr(q->data, '&', q->len);
    size_t len = amp ? (size_t)(amp - q->data) : q->len;
    const char *eq = memchr(q->data, '=', len);
    it->item = (pt_str){q->data, len};
    it->key = (pt_str){q->data, eq ? (size_t)(eq - q->data) : len};
    it->has_value = eq != NULL;
    it->value = eq ? (pt_str){eq + 1, len - it->key.len - 1} : PT_NULL_STR;
    q->data += amp ? len + 1 : len;
    q->len -= amp ? len + 1 : len;
    return true;
}

bool pt_url_query_param(pt_str q, pt_str name, pt_str *value)
{
    struct pt_url_qitem it;
    while (pt_url_query_next(&q, &it))
        if (pt_str_eq(it.key, name)) {
            *value = it.value;
            return true;
        }
    return false;
}
