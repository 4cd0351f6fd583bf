/*
 * pt_conf_int -- what the configuration's files share (core/conf only):
 * the entity lists' tables and readers (pt_conf_entities.c), which the top
 * level table (pt_conf.c) names.
 */
#ifndef PT_CONF_INT_H
#define PT_CONF_INT_H

#include "conf/pt_conf.h"

bool pt_conf_entities_read_node(struct pt_cfctx *cx, struct pt_node *n, void *field);
bool pt_conf_entities_valid_id(const char *s);
extern const struct pt_cfkey pt_conf_entities_api_keys[];
bool pt_conf_entities_read_schemas(struct pt_cfctx *cx, struct pt_node *n, void *field);
bool pt_conf_entities_read_apis(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_product_keys[];
bool pt_conf_entities_read_products(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_group_keys[];
bool pt_conf_entities_read_groups(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_user_keys[];
bool pt_conf_entities_read_users(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_sub_keys[];
bool pt_conf_entities_read_subs(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_cert_keys[];
bool pt_conf_entities_read_certs(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_backend_keys[];
bool pt_conf_entities_read_backends(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_workspace_keys[];
bool pt_conf_entities_read_workspaces(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_vs_keys[];
extern const struct pt_cfkey pt_conf_entities_gateway_keys[];
bool pt_conf_entities_read_gateways(struct pt_cfctx *cx, struct pt_node *n, void *field);
bool pt_conf_entities_read_version_sets(struct pt_cfctx *cx, struct pt_node *n, void *field);
extern const struct pt_cfkey pt_conf_entities_logger_keys[];
bool pt_conf_entities_read_loggers(struct pt_cfctx *cx, struct pt_node *n, void *field);

#endif
