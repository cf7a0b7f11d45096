-- What the migration notes say differs: Lua 5.4, :user and :artifacts as requirements.
assert(setfenv == nil and getfenv == nil and module == nil and table.getn == nil, "5.1 functions")
assert(unpack == table.unpack and 7 // 2 == 3 and math.type(1) == "integer" and math.type(1.0) == "float")
assert(require("values") == values, "require(\"values\") is the values table")
local AGENT = os.getenv("SLOTH_COMPAT_AGENT")
local ME = os.getenv("SLOTH_COMPAT_USER")

workflow.define("requirements", {
  tasks = {
    task("as_me"):user(ME):delegate_to(AGENT or false):command("id -un > who.txt"):artifacts("who.txt"):build(),
    task("as_other"):user("no-such-user-here"):delegate_to(AGENT or false):command("touch never.txt"):build(),
    task("makes_nothing"):delegate_to(AGENT or false):command("true"):artifacts({ "dist/*.tar.gz" }):build(),
    task("uses_it"):depends_on("as_me"):consumes("who.txt"):delegate_to(AGENT or false):command("cat who.txt"):build(),
    task("uses_none"):consumes({ "who.txt", "absent/*.bin" }):delegate_to(AGENT or false):command("touch ran.txt"):build(),
  },
})
