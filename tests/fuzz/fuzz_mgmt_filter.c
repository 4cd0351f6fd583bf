/*
 * fuzz_mgmt_filter -- the management API's OData `$filter` reader
 * (pt_mgmt_filter_parse) on arbitrary text, as any management client may
 * send it, and each condition it accepts evaluated against a small object;
 * the same text as the reports' ISO 8601 date-time and interval
 * (pt_mgmt_reports_datetime, pt_mgmt_reports_interval).
 *
 * Whatever the bytes, the reader must accept at most the conditions asked
 * for, with NUL-terminated fields, and never read or write out of bounds
 * (run under ASan).
 */
#include "mgmt/pt_mgmt_int.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* the reader gets a C string, as from the query */
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct pt_mgmt_filter_cond c[PT_MGMT_FILTER_MAX + 1];
    memset(c, 0x5a, sizeof(c)); /* a condition past the maximum must stay untouched */
    int n = pt_mgmt_filter_parse(text, c, PT_MGMT_FILTER_MAX);
    if (n > PT_MGMT_FILTER_MAX)
        abort();
    for (size_t i = 0; i < sizeof(c[0]); i++)
        if (((const unsigned char *)&c[PT_MGMT_FILTER_MAX])[i] != 0x5a)
            abort(); /* written past what it was given */
    json_t *o = json_pack("{s:s, s:i, s:b, s:n}", "displayName", "Alpha team", "count", 7, "ok", 1, "gone");
    for (int i = 0; i < n; i++) {
        if (!memchr(c[i].field, '\0', sizeof(c[i].field)) || !memchr(c[i].op, '\0', sizeof(c[i].op)) ||
            !memchr(c[i].value, '\0', sizeof(c[i].value)))
            abort(); /* a field without its terminator */
        (void)pt_mgmt_filter_holds(&c[i], o);
    }
    json_decref(o);
    int64_t ms = 0;
    if (pt_mgmt_reports_datetime(text, &ms) && ms < 0)
        abort(); /* a date-time before 1970 is refused */
    int64_t iv = pt_mgmt_reports_interval(text);
    if (iv != -1 && (iv <= 0 || iv % 60))
        abort(); /* an interval is a positive number of whole minutes */
    free(text);
    return 0;
}

/* Seeds for the standalone runner (standalone.c). */
const char *fuzz_name = "fuzz_mgmt_filter";
const char *const fuzz_seeds[] = {
    "displayName eq 'Alpha team'",
    "contains(displayName,'team') and count ne '3'",
    "startswith(displayName,'al') and endswith(displayName,'TEAM') and ok eq 'true'",
    "name eq 'it''s'",
    "gone eq '' and missing ne 'x'",
    "a eq 'b' and c eq 'd' and e eq 'f' and g eq 'h' and i eq 'j' and k eq 'l' and m eq 'n' and o eq 'p'",
    "tolower(name) eq 'x'",
    "name eq 'unterminated",
    "timestamp ge datetime'2026-01-02T03:04:05Z' and timestamp le 2026-01-02T04:00:00.123+01:00",
    "2026-02-30T00:00:00Z",
    "1970-01-01T00:00:00-05:00",
    "P1DT12H30M",
    "PT99999999999999999999M",
    NULL,
};
