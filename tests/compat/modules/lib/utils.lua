local M = {}
function M.quote(s) return '"' .. s:gsub("\r", "\\r"):gsub("\n", "\\n") .. '"' end
function M.greet(name) return "hello from " .. name end
return M
