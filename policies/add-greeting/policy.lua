-- add-greeting: an example of a custom policy written in Lua.
--
--   policies:
--     inbound:
--       - add-greeting: {greeting: "hello", header: X-Greeting}
--
-- Inbound it adds the header to the request the backend receives; outbound
-- to the response the client receives.  `times` repeats the greeting.
return {
  name = "add-greeting",
  description = "Adds a greeting header to the request (inbound) or the response (outbound).",
  sections = {"inbound", "outbound"},
  attributes = {
    greeting = {type = "string", required = true, expression = true, doc = "the greeting"},
    header = {type = "string", default = "X-Greeting", doc = "the header to set"},
    times = {type = "int", default = 1, min = 1, max = 10, doc = "how many times to repeat it"},
  },
  inbound = function(context, attrs)
    context.request.headers:set(attrs.header, string.rep(attrs.greeting, attrs.times, " "))
  end,
  outbound = function(context, attrs)
    context.response.headers:set(attrs.header, string.rep(attrs.greeting, attrs.times, " "))
  end,
}
