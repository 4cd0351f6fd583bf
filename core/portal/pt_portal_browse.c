/*
 * pt_portal_browse -- what guests and developers browse: the home page, the
 * APIs and their reference, products, downloads of definitions, the
 * provider's pages, terms and media; and who may see what (visibility).
 */
#include "portal/pt_portal_int.h"

#include <event2/buffer.h>
#include <string.h>

void pt_portal_browse_home(struct pt_portal_req *r, const char *a1, const char *a2)
{
    (void)a1;
    (void)a2;
    const json_t *site = json_object_get(pt_portal_content_get(r), "site");
    pt_portal_render_begin(r, "Home");
    evbuffer_add_printf(r->out, "<div class=\"markdown home\">");
    pt_portal_render_markdown(r->out, json_string_value(json_object_get(site, "home")));
    evbuffer_add_printf(r->out, "</div>");
    pt_portal_render_end(r);
}

bool pt_portal_browse_product_visible(struct pt_portal_req *r, const json_t *product)
{
    (void)r;
    (void)product;
    return false;
}

bool pt_portal_browse_api_visible(struct pt_portal_req *r, const char *api_id)
{
    (void)r;
    (void)api_id;
    return false;
}

#define STUB(name)                                                                                           \
    void name(struct pt_portal_req *r, const char *a1, const char *a2)                                       \
    {                                                                                                        \
        (void)a1;                                                                                            \
        (void)a2;                                                                                            \
        pt_portal_render_not_found(r);                                                                       \
    }
STUB(pt_portal_browse_apis)
STUB(pt_portal_browse_api)
STUB(pt_portal_browse_operation)
STUB(pt_portal_browse_definition)
STUB(pt_portal_browse_products)
STUB(pt_portal_browse_product)
STUB(pt_portal_browse_page)
STUB(pt_portal_browse_terms)
STUB(pt_portal_browse_media)

void pt_portal_browse_free(void)
{
}
