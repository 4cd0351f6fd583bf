-- require-header: refuses requests that lack a header (an example of a Lua
-- policy that answers by itself).
--
--   - require-header: {name: X-Api-Version, status: 400}
return {
  name = "require-header",
  description = "Answers with an error when the request lacks a header.",
  sections = {"inbound"},
  attributes = {
    name = {type = "string", required = true, doc = "the header that must be present"},
    status = {type = "int", default = 400, min = 400, max = 499, doc = "status of the refusal"},
  },
  inbound = function(context, attrs)
    if not context.request.headers:has(attrs.name) then
      return "fail", attrs.status, "HeaderNotFound", "the request must carry " .. attrs.name
    end
  end,
}
