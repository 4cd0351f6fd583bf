/*
 * mail_send -- sends one message with pt_mail_send, for
 * tests/e2e/test_mail_smtp.py (which runs a small SMTP server on loopback).
 *
 * Usage: mail_send [-u USER] [-p PASSWORD] [-c CAFILE] [-n] [-f FROM] [-t TEMPLATE]
 *                  URL-OR-OUTBOX TO SUBJECT BODY
 *   -n  no STARTTLS for smtp://    -t  send the built-in template TEMPLATE
 *       (SUBJECT and BODY then fill {{firstName}} and {{link}}) through the
 *       queue (pt_mail_send_template, then pt_mail_flush); without -t the
 *       message is delivered at once (pt_mail_deliver), its error printed
 * Exits 0 when the message was handed over; else prints the error, exits 1.
 */
#include "http/pt_mail.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct pt_mail_cf cf = {.starttls = true};
    const char *tmpl = NULL;
    int c;
    while ((c = getopt(argc, argv, "u:p:c:nf:t:")) != -1) {
        switch (c) {
        case 'u':
            cf.smtp_username = optarg;
            break;
        case 'p':
            cf.smtp_password = optarg;
            break;
        case 'c':
            cf.smtp_ca_file = optarg;
            break;
        case 'n':
            cf.starttls = false;
            break;
        case 'f':
            cf.from = optarg;
            break;
        case 't':
            tmpl = optarg;
            break;
        default:
            return 2;
        }
    }
    if (argc - optind != 4) {
        fprintf(stderr,
                "usage: mail_send [-u U] [-p P] [-c CA] [-n] [-f FROM] [-t ID] URL|OUTBOX TO SUBJECT BODY\n");
        return 2;
    }
    const char *where = argv[optind];
    if (strncmp(where, "smtp://", 7) == 0 || strncmp(where, "smtps://", 8) == 0)
        cf.smtp_url = (char *)where;
    else
        cf.outbox = (char *)where;
    char err[512] = "";
    bool ok;
    if (tmpl) {
        json_t *vars = json_pack("{s:s, s:s, s:s}", "firstName", argv[optind + 2], "link", argv[optind + 3],
                                 "siteTitle", "Test portal");
        /* the portal's way: queued, then the queue is waited for */
        ok = pt_mail_send_template(NULL, &cf, tmpl, argv[optind + 1], vars, err, sizeof(err)) &&
             pt_mail_flush(60000);
        json_decref(vars);
    } else {
        ok = pt_mail_deliver(&cf, argv[optind + 1], argv[optind + 2], argv[optind + 3], err, sizeof(err));
    }
    if (!ok) {
        fprintf(stderr, "mail_send: %s\n", err);
        return 1;
    }
    return 0;
}
