/*
 * pt_mail -- outgoing mail: confirmation, password reset, invitation and
 * subscription notices of the developer portal (and of the management API).
 *
 * A message is plain UTF-8 text.  It goes either to the outbox folder (one
 * RFC 5322 .eml file per message, written to a temporary name and renamed,
 * so a reader never sees half a message) or to an SMTP server through
 * libcurl (smtp:// with STARTTLS required unless turned off, or smtps://;
 * AUTH with a user name and password; bounded connect and total times).
 *
 * Headers are built here only: addresses with anything but the characters
 * of an address are refused, and a subject loses its control characters
 * and is encoded (RFC 2047) when it is not ASCII, so no value a user chose
 * (a name, an address) can add a header or a recipient.
 *
 * The outbox is written before pt_mail_send returns.  An SMTP delivery
 * leaves the caller (the control thread serves the portal and the
 * management API): pt_mail_send checks and builds the message, queues it
 * (at most PT_MAIL_QUEUE_MAX wait) and returns; one thread of this file
 * sends the queue in order, each delivery bounded by PT_MAIL_TIMEOUT_MS,
 * and logs what it could not send.  pt_mail_deliver sends at once instead.
 */
#ifndef PT_MAIL_H
#define PT_MAIL_H

#include "base/pt.h"
#include "conf/pt_conf.h"
#include "conf/pt_store.h"

#include <jansson.h>

/* Bounds of one SMTP delivery (connect, then the whole exchange). */
#define PT_MAIL_CONNECT_TIMEOUT_MS 5000
#define PT_MAIL_TIMEOUT_MS 20000
/* SMTP messages waiting at most (more are refused: the server is not keeping up). */
#define PT_MAIL_QUEUE_MAX 256
/* The longest subject and body accepted (after template substitution). */
#define PT_MAIL_SUBJECT_MAX 998
#define PT_MAIL_BODY_MAX (256 * 1024)
/* The From used when the configuration has none. */
#define PT_MAIL_DEFAULT_FROM "Portico <portal@localhost>"

/* Sends one message (text/plain UTF-8): to the outbox folder as
   <time>-<random>.eml, or by SMTP (queued: see above).  false with err on
   failure (a bad address, settings, a full queue; for the outbox, the
   write). */
bool pt_mail_send(const struct pt_mail_cf *cf, const char *to, const char *subject, const char *body,
                  char *err, size_t errlen);
/* The same, SMTP at once in the calling thread: false with the server's or
   libcurl's error. */
bool pt_mail_deliver(const struct pt_mail_cf *cf, const char *to, const char *subject, const char *body,
                     char *err, size_t errlen);
/* Waits until the SMTP queue is empty and its thread idle, at most ms;
   false when it was not in time. */
bool pt_mail_flush(uint32_t ms);
/* A stored or built-in template by id, {{var}} filled from vars (object of
   strings; siteTitle, when vars has none, is the published site's title),
   then sent. */
bool pt_mail_send_template(struct pt_store *st, const struct pt_mail_cf *cf, const char *id, const char *to,
                           const json_t *vars, char *err, size_t errlen);

/* ---- pieces, for the management API and the tests ---- */

/* The ids of the built-in templates, NULL-terminated. */
extern const char *const pt_mail_template_ids[];
/* The built-in subject and body of a template; false for an unknown id. */
bool pt_mail_template_default(const char *id, const char **subject, const char **body);
/* A template by id as it is used: the stored one (store kind
   PT_MAIL_TEMPLATE_KIND, {id, subject, body}) over the built-in one.  A new
   object {id, subject, body, builtIn}; NULL for an unknown id. */
#define PT_MAIL_TEMPLATE_KIND "portal-template"
json_t *pt_mail_template_get(struct pt_store *st, const char *id);
/* Replaces each {{name}} of text (spaces inside the braces allowed) by the
   string vars[name] ("" when absent or not a string).  malloc'd. */
char *pt_mail_fill(const char *text, const json_t *vars);
/* Is s one address (local@domain) that is safe in a header and an SMTP
   command: printable ASCII, no spaces, quotes, angle brackets, commas or
   semicolons, one '@', a dot-separated domain? */
bool pt_mail_address_ok(const char *s);
/* The bare address of a From value ("Name <a@b>" or "a@b") into out; false
   when it holds none, or holds characters a header may not. */
bool pt_mail_from_address(const char *from, char *out, size_t outlen);
/* The whole message (headers and quoted-printable body, CRLF line ends), as
   it is written to the outbox or sent; malloc'd, NULL with err. */
char *pt_mail_format(const struct pt_mail_cf *cf, const char *to, const char *subject, const char *body,
                     char *err, size_t errlen);

#endif
