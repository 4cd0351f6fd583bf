/*
 * pt_luapol -- custom policies written in Lua (see pt_luapol.c for the
 * file format).  docs/lua-api.md documents it for policy authors.
 */
#ifndef PT_LUAPOL_H
#define PT_LUAPOL_H

#include "lua/pt_lua.h"
#include "policy/pt_policy.h"

/* struct pt_luapol and struct pt_luapol_inst are in lua/pt_lua.h: the runtime runs them. */

/* Loads every policy file of the folders into reg; false if any failed
   (errors name the file). */
bool pt_luapol_load(struct pt_polctx *pc, struct pt_registry *reg, char **dirs, int ndirs);

#endif
