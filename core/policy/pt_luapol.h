/*
 * pt_luapol -- custom policies written in Lua (see pt_luapol.c for the
 * file format).  docs/lua-api.md documents it for policy authors.
 */
#ifndef PT_LUAPOL_H
#define PT_LUAPOL_H

#include "policy/pt_policy.h"

/* A Lua policy: the definition the registry holds comes first. */
struct pt_luapol {
    struct pt_policy_def def;
    struct pt_attr_def *attrs;
    int nattrs;
    int expr_id;      /* the file's code in the generation's expression table */
    const char *file;
};

/* One statement using a Lua policy: its compiled attribute values. */
struct pt_luapol_inst {
    const struct pt_luapol *lp;
    struct pt_value **vals; /* per attribute of lp, NULL when absent */
};

/* Loads every policy file of the folders into reg; false if any failed
   (errors name the file). */
bool pt_luapol_load(struct pt_polctx *pc, struct pt_registry *reg, char **dirs, int ndirs);

#endif
