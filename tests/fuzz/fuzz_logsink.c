/*
 * fuzz_logsink -- what the log sinks do with a message's bytes (they come
 * from requests, through log-to-eventhub expressions): the RFC 5424 frame
 * (pt_logsink_syslog_format) with the bytes as message, hostname, MSGID
 * and structured data, and the UTF-8-safe cut.  Checks: the frame stays
 * within its maximum, its header has the fixed shape, the structured data
 * is well formed (every " \ ] of a value escaped), a cut never splits a
 * sequence of valid UTF-8.
 */
#include "http/pt_logsink.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t k = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (!k || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = 480 + (size_t)data[0] * 16; /* 480 .. 4560 */
    size_t split = size > 2 ? data[1] % (size - 1) : 0;
    const char *rest = (const char *)data + 2;
    size_t n = size - 2;
    if (split > n)
        split = n;
    char *host = strndup(rest, split < 300 ? split : 300); /* stops at a NUL: that is fine */
    struct pt_logsink_sd sd[2] = {{"logger", {"fz", 2}}, {"partitionKey", {rest, split}}};
    char *out = malloc(max + 1);
    size_t len = pt_logsink_syslog_format(out, max, data[0], 1796552430456ULL, host, "app", 7, host,
                                          "portico@32473", sd, 2, rest + split, n - split);
    assert(len <= max);
    assert(len > 10 && out[0] == '<');
    /* header: PRI VERSION TIMESTAMP HOSTNAME APP PROCID MSGID: six spaces, no control byte before SD */
    size_t sp = 0, i = 0;
    for (; i < len && sp < 6; i++) {
        assert((unsigned char)out[i] >= 33 || out[i] == ' ');
        sp += out[i] == ' ';
    }
    assert(sp == 6 && i < len);
    if (out[i] == '[') { /* [portico@32473 name="value"...] with escapes */
        bool in = false;
        for (i++; i < len; i++) {
            if (in && out[i] == '\\') {
                i++;
                assert(i < len && (out[i] == '"' || out[i] == '\\' || out[i] == ']'));
            } else if (out[i] == '"')
                in = !in;
            else if (!in && out[i] == ']')
                break;
            else if (in)
                assert(out[i] != ']');
        }
        assert(i < len && out[i] == ']');
    } else
        assert(out[i] == '-');
    /* the cut: at most m bytes, at most 3 fewer, and in valid UTF-8 never before a continuation byte */
    bool utf8 = valid_utf8((const unsigned char *)rest, n);
    for (size_t m = 0; m < n && m < 64; m++) {
        size_t c = pt_logsink_cut(rest, n, m);
        assert(c <= m && c + 3 >= m);
        if (utf8)
            assert(((unsigned char)rest[c] & 0xC0) != 0x80);
    }
    free(out);
    free(host);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_logsink";
const char *const fuzz_seeds[] = {
    "\x10\x05hostnthe message",
    "\xff\x03a\"]\\ \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 tail",
    "\x00\x00\x80\x80\x80\x80\x80\x80\x80",
    "\x20\x08key]]]]\"\"message with\nnewlines\r\n and \x01 control",
    NULL,
};
