-- prelude.lua -- helpers Portico adds to the environment of every script.
--
-- Loaded once into each worker's Lua state (this code keeps the JIT); the
-- table it returns is merged into the read-only globals that expressions
-- and Lua policies see.  Each helper checks its arguments and stays linear
-- in the size of its input.

local find, sub, gsub, lower = string.find, string.sub, string.gsub, string.lower
local insert, concat = table.insert, table.concat

local helpers = {}

-- split("a,b,,c", ",") --> {"a", "b", "", "c"}; the separator is plain text
function helpers.split(s, sep, max)
  assert(type(s) == "string", "split: a string is expected")
  sep = sep or ","
  assert(type(sep) == "string" and #sep > 0, "split: a non-empty separator is expected")
  local out, start, n = {}, 1, 0
  while true do
    if max and n + 1 >= max then break end
    local i, j = find(s, sep, start, true)
    if not i then break end
    insert(out, sub(s, start, i - 1))
    n = n + 1
    start = j + 1
  end
  insert(out, sub(s, start))
  return out
end

-- trim("  x ") --> "x"
function helpers.trim(s)
  assert(type(s) == "string", "trim: a string is expected")
  local i, j = 1, #s
  while i <= j and find(" \t\r\n", sub(s, i, i), 1, true) do i = i + 1 end
  while j >= i and find(" \t\r\n", sub(s, j, j), 1, true) do j = j - 1 end
  return sub(s, i, j)
end

function helpers.startsWith(s, prefix)
  return type(s) == "string" and sub(s, 1, #prefix) == prefix
end

function helpers.endsWith(s, suffix)
  return type(s) == "string" and (#suffix == 0 or sub(s, -#suffix) == suffix)
end

-- contains(s, part[, ignoreCase])
function helpers.contains(s, part, ignoreCase)
  if type(s) ~= "string" or type(part) ~= "string" then return false end
  if ignoreCase then s, part = lower(s), lower(part) end
  return find(s, part, 1, true) ~= nil
end

-- join({"a", "b"}, ", ") --> "a, b"
function helpers.join(list, sep)
  assert(type(list) == "table", "join: a list is expected")
  local parts = {}
  for i = 1, #list do parts[i] = tostring(list[i]) end
  return concat(parts, sep or ",")
end

-- now() --> "2026-11-26T15:09:23Z" (UTC)
function helpers.now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

-- isBlank(nil) / isBlank("  ") --> true
function helpers.isBlank(s)
  return s == nil or (type(s) == "string" and helpers.trim(s) == "")
end

return helpers
