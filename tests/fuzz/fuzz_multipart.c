/*
 * fuzz_multipart -- multipart/form-data bodies as a browser (or anyone with
 * an administrator's session) may send them to POST /admin/media
 * (pt_portal_admin_multipart).  The first byte picks the boundary's length.
 *
 * Whatever the bytes: nothing is read outside the body (ASan), there are
 * never more parts than asked for, and every part lies inside the body and
 * in order, its names NUL-terminated within their fields.
 */
#include "portal/pt_portal_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const char *const boundaries[] = {"b", "----portico-7d3", "XyZ",
                                             "a-long-boundary-with-many-characters"};
    const char *boundary = boundaries[data[0] % 4];
    /* an exact copy, so that ASan sees a read past the body */
    unsigned char *body = malloc(size - 1 ? size - 1 : 1);
    if (!body)
        return 0;
    memcpy(body, data + 1, size - 1);
    struct pt_portal_part parts[4];
    int n = pt_portal_admin_multipart(body, size - 1, boundary, parts, 4);
    if (n > 4 || n < -1)
        abort();
    const unsigned char *last = body;
    for (int i = 0; i < n; i++) {
        if (parts[i].data < last || parts[i].data + parts[i].len > body + size - 1)
            abort();
        if (!memchr(parts[i].name, 0, sizeof(parts[i].name)) ||
            !memchr(parts[i].filename, 0, sizeof(parts[i].filename)))
            abort();
        last = parts[i].data + parts[i].len;
    }
    free(body);
    return 0;
}

/* Seeds for the standalone runner (standalone.c): the first character picks the boundary. */
const char *fuzz_name = "fuzz_multipart";
const char *const fuzz_seeds[] = {
    "\x01------portico-7d3\r\nContent-Disposition: form-data; "
    "name=\"csrf\"\r\n\r\ntok\r\n------portico-7d3\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"logo.png\"\r\nContent-Type: image/png\r\n\r\n"
    "\x89PNG\r\n\x1a\n....\r\n------portico-7d3--\r\n",
    "\x00--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b\r\n\r\n\r\n--b--",
    "\x02--XyZ\r\nContent-Disposition: form-data; name=\"\"; filename=\"\"\r\n\r\n\r\n--XyZ--\r\n",
    "\x00--b\r\n\r\n--b\r\n\r\n--b\r\n\r\n--b\r\n\r\n--b\r\n\r\n--b--",
    "\x03--a-long-boundary-with-many-characters\r\ncontent-disposition: form-data; NAME=\"f\"\r\n\r\n"
    "--a-long-boundary-with-many-characters--",
    "\x00preamble\r\n--b\r\nContent-Disposition: form-data; name=\"x\r\n\r\n--b--",
    NULL,
};
