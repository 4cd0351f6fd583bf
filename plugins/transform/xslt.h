/*
 * xslt.h -- XSLT 1.0 with libxslt, hardened for stylesheets and documents
 * nobody vouches for: what xsl-transform (xsl_transform.c) runs, and what
 * the fuzz driver (tests/fuzz/fuzz_xslt.c) exercises.  It knows nothing of
 * the SDK: text in, text out through a writer.
 *
 * Safety, in layers:
 *  - Reading: the stylesheet and every input document go through
 *    core/base/pt_xml's reader (size cap, no network, a DOCTYPE refused
 *    before any entity is declared, libxml2's depth limit of 256).
 *  - Loading: xsl:import and xsl:include are refused when compiling, as
 *    are the elements that write files (xsl:document and the saxon, xalan
 *    and libxslt output/write extensions); a document loader that loads
 *    nothing is installed (document() finds nothing), and the security
 *    preferences forbid reading and writing files, creating folders and
 *    the network, both by default and on every transformation.
 *  - Running: template depth, variables, instructions and XPath operations
 *    are capped on the transformation context; the memory libxml2 and
 *    libxslt allocate on this thread while a transformation runs is counted
 *    (malloc_usable_size) and refused past a cap; a deadline is checked
 *    every few allocations; the serialized result is capped by the writer.
 *    Breaking a limit stops the transformation (XSLT_STATE_STOPPED) and it
 *    fails with a message naming the limit.
 *
 * A compiled stylesheet is immutable and shared by every thread; each
 * transformation gets its own context.  xslt_init() must run before any
 * thread uses this file (it replaces libxml2's allocator functions and
 * libxslt's error handler, loader and default security preferences:
 * process-wide settings, made while only the control thread runs);
 * xslt_fini() puts them back.
 */
#ifndef PORTICO_PLUGINS_XSLT_H
#define PORTICO_PLUGINS_XSLT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xslt_sheet;

/* What one transformation may use (zeros: the defaults below). */
struct xslt_limits {
    size_t max_input;        /* the input document's bytes (XSLT_MAX_INPUT) */
    size_t max_memory;       /* bytes allocated on the thread meanwhile (XSLT_MAX_MEMORY) */
    unsigned long max_instr; /* XSLT instructions run (XSLT_MAX_INSTR) */
    unsigned long max_xpath; /* XPath operations (XSLT_MAX_XPATH) */
    int max_depth;   /* nested sequence constructors: about three per recursive call (XSLT_MAX_DEPTH) */
    uint32_t max_ms; /* wall time (XSLT_MAX_MS) */
};

#define XSLT_MAX_INPUT ((size_t)64 << 20)
#define XSLT_MAX_MEMORY ((size_t)64 << 20)
#define XSLT_MAX_INSTR 2000000UL
#define XSLT_MAX_XPATH 20000000UL
#define XSLT_MAX_DEPTH 1000
#define XSLT_MAX_MS 2000u
#define XSLT_MAX_STYLESHEET ((size_t)1 << 20)

enum xslt_result {
    XSLT_OK = 0,
    XSLT_BAD_INPUT, /* the input is not a well-formed XML document (or has a DOCTYPE) */
    XSLT_FAILED,    /* the transformation failed or broke a limit */
    XSLT_TOO_LARGE, /* the writer refused more output */
};

/* Sets libxml2 and libxslt up (see above); once, before any other call. */
void xslt_init(void);
void xslt_fini(void);

/*
 * Compiles a stylesheet from text.  NULL on failure with err (a
 * terminated message) and *line / *column in the text (1-based; 0 when
 * unknown).  Free the result with xslt_free.
 */
struct xslt_sheet *xslt_compile(const char *text, size_t len, char *err, size_t errlen, int *line,
                                int *column);
void xslt_free(struct xslt_sheet *s);

/* The stylesheet's xsl:output: method ("xml", "html", "text"; NULL when not given), media-type and
   encoding (NULL when not given). */
const char *xslt_method(const struct xslt_sheet *s);
const char *xslt_media_type(const struct xslt_sheet *s);
const char *xslt_encoding(const struct xslt_sheet *s);

/* Where the result goes: 0 to continue, -1 to stop (the output is too large). */
typedef int (*xslt_writer)(void *arg, const char *data, size_t len);

/*
 * Transforms the document `in` (len bytes).  params holds nparams pairs
 * (name, value): NUL-terminated names (QNames the stylesheet may declare
 * with xsl:param) and string values (valid UTF-8; passed as strings, never
 * evaluated as XPath).  The result is serialized as xsl:output says, in
 * pieces, to write.  Returns XSLT_OK, or another xslt_result with err.
 */
enum xslt_result xslt_apply(const struct xslt_sheet *s, const char *in, size_t len, const char *const *params,
                            int nparams, const struct xslt_limits *lim, xslt_writer write, void *arg,
                            char *err, size_t errlen);

#endif
