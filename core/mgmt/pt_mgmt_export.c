/*
 * pt_mgmt_export -- YAML out: the emitter (block style, strings plain only
 * where a reader cannot take them for something else), policy documents as
 * YAML on request, and GET /export, every entity as a document that apply
 * and the configuration file accept.
 */
#include "conf/pt_cert.h"
#include "conf/pt_content.h"
#include "conf/pt_idp.h"
#include "conf/pt_model.h"
#include "mgmt/pt_mgmt_int.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* Whether a string reads back as the same string when written plain:
   simple words and paths that no YAML reader takes for a number, a
   boolean or null.  Anything else is double-quoted. */
static bool plain_safe(const char *s, size_t n)
{
    static const char *const typed[] = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", NULL};
    if (!n || !(((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z') || s[0] == '/' || s[0] == '_') || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        bool word = ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z') || (s[i] >= '0' && s[i] <= '9');
        if (!word && !(s[i] && strchr("_./- ", s[i])))
            return false;
    }
    for (int i = 0; typed[i]; i++)
        if (strlen(typed[i]) == n && !strncasecmp(typed[i], s, n))
            return false;
    return true;
}

/* YAML out: block style; strings plain when that is unambiguous, else double-quoted. */
static bool emit(yaml_emitter_t *e, const json_t *j)
{
    yaml_event_t ev;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        if (!yaml_emitter_emit(e, &ev))
            return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)k, (int)strlen(k), 1, 1,
                                         YAML_ANY_SCALAR_STYLE);
            if (!yaml_emitter_emit(e, &ev) || !emit(e, v))
                return false;
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(e, &ev);
    }
    case JSON_ARRAY: {
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        if (!yaml_emitter_emit(e, &ev))
            return false;
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            if (!emit(e, v))
                return false;
        }
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(e, &ev);
    }
    case JSON_STRING: {
        bool plain = plain_safe(json_string_value(j), json_string_length(j));
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)json_string_value(j),
                                     (int)json_string_length(j), plain, 1,
                                     plain ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE);
        return yaml_emitter_emit(e, &ev);
    }
    default: {
        char *t = json_dumps(j, JSON_ENCODE_ANY);
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)t, (int)strlen(t), 1, 0,
                                     YAML_PLAIN_SCALAR_STYLE);
        bool ok = yaml_emitter_emit(e, &ev);
        free(t);
        return ok;
    }
    }
}

static int yaml_out(void *data, unsigned char *buf, size_t size)
{
    evbuffer_add(data, buf, size);
    return 1;
}

/* ?format=yaml, or an Accept header naming YAML (the query wins). */
bool pt_mgmt_export_wants_yaml(struct mreq *m)
{
    const char *fmt = pt_mgmt_req_param(m, "format");
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(m->r), "Accept");
    return fmt ? !strcmp(fmt, "yaml") : accept && strstr(accept, "yaml");
}

bool pt_mgmt_export_yaml(struct evbuffer *out, const json_t *doc)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    yaml_emitter_initialize(&e);
    yaml_emitter_set_output(&e, yaml_out, out);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&e, &ev) &&
              yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&e, &ev) &&
              emit(&e, doc) && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&e, &ev) &&
              yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&e, &ev);
    yaml_emitter_delete(&e);
    return ok;
}

/* A 200 with doc as a YAML document, after an optional comment line. */
void pt_mgmt_export_send_yaml(struct mreq *m, const json_t *doc, const char *comment, const char *etag)
{
    struct evbuffer *b = evbuffer_new();
    if (comment)
        evbuffer_add(b, comment, strlen(comment));
    if (!pt_mgmt_export_yaml(b, doc)) {
        evbuffer_free(b);
        pt_mgmt_req_send_error(m, 500, "YamlFailed", "YAML output failed");
        return;
    }
    struct evkeyvalq *oh = evhttp_request_get_output_headers(m->r);
    evhttp_add_header(oh, "Content-Type", "application/yaml; charset=utf-8");
    evhttp_add_header(oh, "Cache-Control", "no-store");
    if (etag) {
        char q[40];
        snprintf(q, sizeof(q), "\"%s\"", etag);
        evhttp_add_header(oh, "ETag", q);
    }
    evhttp_send_reply(m->r, 200, "OK", b);
    evbuffer_free(b);
}

/* Every subscription with its state: those declared without one (the file,
   apply) are active, as the gateway reads them. */
static void with_states(json_t *doc)
{
    size_t i;
    json_t *sub;
    json_array_foreach(json_object_get(doc, "subscriptions"), i, sub)
    {
        if (json_is_object(sub) && !json_object_get(sub, "state"))
            json_object_set_new(sub, "state", json_string("active"));
    }
}

/* Private keys never leave the store: an export holds each certificate's chain only, written
   back by the PEM reader (so no key form can slip through); one that cannot be read is left out
   rather than exported with its key. */
static void strip_cert_keys(json_t *doc)
{
    json_t *certs = json_object_get(doc, "certificates");
    for (size_t i = 0; i < json_array_size(certs);) {
        json_t *c = json_array_get(certs, i);
        char *chain = pt_cert_chain_only(json_string_value(json_object_get(c, "data")));
        if (!chain) {
            json_array_remove(certs, i);
            continue;
        }
        json_object_set_new(c, "data", json_string(chain));
        free(chain);
        json_object_del(c, "sealedKey");
        i++;
    }
}

void pt_mgmt_export_serve(struct mreq *m)
{
    struct pt_errors errs = {0};
    /* what the file declares is in the file: left out unless asked for */
    const char *all = pt_mgmt_req_param(m, "includeFile");
    json_t *doc = pt_model_entities(pt_mgmt_req_store, pt_model_secret_key(pt_mgmt_req_hooks->file()),
                                    all && !strcmp(all, "true") ? NULL : "api", &errs);
    if (!doc) {
        pt_mgmt_req_send_errors(m, 500, "ExportFailed", "the store cannot be exported", &errs, NULL);
        pt_node_errors_clear(&errs);
        return;
    }
    with_states(doc);
    strip_cert_keys(doc);
    /* the portal's content (site, pages, templates) as the file's portal: map holds it */
    json_t *portal = pt_content_export(pt_mgmt_req_store, all && !strcmp(all, "true") ? NULL : "api");
    /* identity providers, without their client secrets (conf/pt_idp.h) */
    json_t *idps = pt_idp_export(pt_mgmt_req_store, all && !strcmp(all, "true") ? NULL : "api");
    if (idps && !portal)
        portal = json_object();
    if (idps)
        json_object_set_new(portal, "identityProviders", idps);
    if (portal)
        json_object_set_new(doc, "portal", portal);
    if (pt_mgmt_export_wants_yaml(m)) {
        pt_mgmt_export_send_yaml(m, doc, "# Portico entities, exported by the management API\n", NULL);
        json_decref(doc);
        return;
    }
    pt_mgmt_req_send_json(m, 200, doc, NULL);
}
