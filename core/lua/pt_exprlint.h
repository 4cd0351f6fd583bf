/*
 * pt_exprlint -- expressions written for APIM (C#) and unknown members of
 * `context`, caught when a policy is saved rather than at the first request.
 *
 * The text is tokenized as Lua (strings and comments skipped), so a string
 * literal that mentions "context.Request" is never refused. What is found:
 *  - C# names of `context` members (`context.Request.Headers`) and C#
 *    methods (`.GetValueOrDefault(`, `.As<JObject>(`, `.ToString()`), casts
 *    (`(string)x`), `DateTime.UtcNow`, `string.Format(`, `new JObject(`,
 *    `null`, `!=`, `&&`, `||`: the message names each and gives the Lua
 *    equivalent of the whole expression where it can be rewritten;
 *  - members of `context` that do not exist (`context.requets`), with the
 *    closest existing name.
 * Names the text declares itself (a `local context`, a `function t.Trim`)
 * are never second-guessed.
 */
#ifndef PT_EXPRLINT_H
#define PT_EXPRLINT_H

#include <stdbool.h>
#include <stddef.h>

/* Checks the text between `@(` `)` (block false) or `@{` `}` (block true).
   Returns true when nothing was found; false with a message in err. */
bool pt_exprlint_check(const char *src, size_t len, bool block, char *err, size_t errlen);
/* True when some member of the model of `context` the check knows is called
   name: the model must know every member pt_context answers, or the check
   refuses a valid expression (a test compares the two). */
bool pt_exprlint_knows_member(const char *name);

#endif
