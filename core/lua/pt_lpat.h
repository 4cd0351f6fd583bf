/*
 * pt_lpat -- Lua's string patterns (find, match, gmatch, gsub) with a
 * budget.
 *
 * LuaJIT's own pattern functions are C code that no hook interrupts: a
 * pattern such as ".-.-.-.-b" backtracks polynomially and a few kilobytes
 * of subject keep a worker busy for minutes.  These functions implement the
 * same pattern language and the same results as LuaJIT's (see
 * tests/unit/test_lpat.c, which compares the two), but poll a callback every
 * few thousand steps and stop with an error when it says the time is up.
 */
#ifndef PT_LPAT_H
#define PT_LPAT_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

struct pt_lpat_env {
    size_t max_subject;    /* longer subjects are refused (0 = no limit); plain finds are exempt */
    bool (*expired)(void); /* polled while matching; true ends the call with "time limit exceeded" */
};

/* Replaces find, match, gmatch and gsub in the table at index `tbl` with the
   budgeted ones (plain finds too: a windowed memmem that polls the deadline).
   `env` must outlive the state. */
void pt_lpat_install(lua_State *L, int tbl, const struct pt_lpat_env *env);

#endif
