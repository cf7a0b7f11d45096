import assert from "node:assert/strict";
import { runLua } from "./_testing.ts";

Deno.test("a task function's ok, message and outputs come back as given", async () => {
  const r = await runLua(`return true, "built " .. params.name, { n = 2, list = { "a", "b" } }`, {
    params: { name: "x" },
  });
  assert.deepEqual({ ok: r.ok, message: r.message, outputs: r.outputs }, {
    ok: true,
    message: "built x",
    outputs: { n: 2, list: ["a", "b"] },
  });
});

Deno.test("a task function that returns no boolean fails with a message that says so", async () => {
  assert.equal(
    (await runLua(`return "done"`)).error,
    'the task function must return true or false as its first value, got string "done"',
  );
  assert.equal(
    (await runLua(`return`)).error,
    "the task function must return true or false as its first value, got nil",
  );
});

Deno.test("error() in a task function fails with the Lua file:line", async () => {
  const r = await runLua(`local x = 1\n  error("deploy went wrong")`);
  assert.equal(r.error, "workflow.lua:3: deploy went wrong");
});

Deno.test("outputs that hold a function are refused with a clear message", async () => {
  const r = await runLua(`return true, "ok", { f = function() end }`);
  assert.equal(
    r.error,
    "the task function returned outputs that cannot be kept: outputs.f is a function; only strings, numbers, booleans and tables can be kept",
  );
});

Deno.test("log.* and print reach the task's log with their level", async () => {
  const r = await runLua(
    `log.info("a", 1) log.warn("b") log.error("c") log.debug("d") print("e", true) return true`,
  );
  assert.deepEqual(r.logs, ["info:a 1", "warn:b", "error:c", "debug:d", "print:e true"]);
});

Deno.test("exec.run returns stdout, stderr, exit_code and success, in the task's workdir", async () => {
  const r = await runLua(
    `
    local ok = exec.run("echo hi; echo err >&2; pwd")
    local bad = exec.run("exit 4")
    local env = exec.run("echo $FOO-$SLOTH_TASK", { env = { FOO = "bar" } })
    local sub = exec.run("pwd", { workdir = "sub" })
    return true, "", { ok = ok, bad = bad, env = env.stdout, sub = sub.stdout }`,
    {
      files: { "sub/.keep": "" },
    },
  );
  const out = r.outputs as Record<string, Record<string, unknown>>;
  assert.deepEqual(out.ok, {
    stdout: `hi\n${r.dir}\n`,
    stderr: "err\n",
    exit_code: 0,
    success: true,
  });
  assert.equal(out.bad.exit_code, 4);
  assert.equal(out.bad.success, false);
  assert.equal(out.env, "bar-t\n");
  assert.equal(out.sub, `${r.dir}/sub\n`);
});

Deno.test("exec.run gives output byte for byte: no newline added, CRs kept, none at the end when none was written", async () => {
  const r = await runLua(
    `
    local hi = exec.run("printf hi")
    local crlf = exec.run("printf 'a\\r\\nb\\r\\n'")
    local err = exec.run("printf oops >&2")
    local empty = exec.run("true")
    return true, "", { hi = hi.stdout, n = #hi.stdout, crlf = crlf.stdout, err = err.stderr,
      empty = empty.stdout }`,
  );
  assert.deepEqual(r.outputs, { hi: "hi", n: 2, crlf: "a\r\nb\r\n", err: "oops", empty: "" });
});

Deno.test("exec.run keeps bytes that are not UTF-8, NULs and a byte order mark, as the command wrote them", async () => {
  const r = await runLua(
    `
    local function hex(s)
      local out = {}
      for i = 1, #s do out[#out + 1] = string.format("%02x", s:byte(i)) end
      return table.concat(out, " ")
    end
    local bad = exec.run("printf '\\\\377\\\\376a\\\\303\\\\251\\\\200z\\\\r\\\\n'")
    local bom = exec.run("printf '\\\\357\\\\273\\\\277caf\\\\303\\\\251'")
    local err = exec.run("printf '\\\\300x' >&2")
    local nul = exec.run("printf 'a\\\\000b\\\\000'")
    return true, "", { bad = hex(bad.stdout), bom = hex(bom.stdout), err = hex(err.stderr),
      n = #bad, nul = hex(nul.stdout) }`,
  );
  assert.deepEqual(r.outputs, {
    bad: "ff fe 61 c3 a9 80 7a 0d 0a",
    bom: "ef bb bf 63 61 66 c3 a9",
    err: "c0 78",
    n: 9,
    nul: "61 00 62 00",
  });
});

Deno.test("exec.run stops a command at its timeout", async () => {
  const started = Date.now();
  const r = await runLua(`local res = exec.run("sleep 20", { timeout = "200ms" })
    return true, "", { code = res.exit_code, success = res.success }`);
  assert.deepEqual(r.outputs, { code: 124, success: false });
  assert.ok(Date.now() - started < 5000);
});

Deno.test("fs functions read, write and list files relative to the task's workdir", async () => {
  const r = await runLua(`
    fs.mkdir("out/deep")
    fs.write("out/a.txt", "hello")
    fs.append("out/a.txt", " world")
    fs.copy("out/a.txt", "out/b.txt")
    fs.rename("out/b.txt", "out/c.txt")
    local tmp = fs.tmpname()
    local result = {
      read = fs.read("out/a.txt"), size = fs.size("out/a.txt"), ls = fs.ls("out"),
      exists = fs.exists("out/c.txt"), missing = fs.exists("nope"), tmp = fs.exists(tmp),
    }
    fs.rm(tmp)
    fs.rm("out/c.txt")
    fs.rm_r("out/deep")
    result.after = fs.ls("out")
    return true, "", result`);
  assert.deepEqual(r.outputs, {
    read: "hello world",
    size: 11,
    ls: ["a.txt", "c.txt", "deep"],
    exists: true,
    missing: false,
    tmp: true,
    after: ["a.txt"],
  });
});

Deno.test("an fs error is a Lua error at the caller's line, without a JavaScript stack", async () => {
  const r = await runLua(`\n  local text = fs.read("missing.txt")\n  return true`);
  assert.match(
    r.error ?? "",
    /^workflow\.lua:3: fs\.read: missing\.txt: no such file or directory/,
  );
  assert.doesNotMatch(r.error ?? "", /at |\.ts:/);
});

Deno.test("data converts JSON and YAML both ways, keeping lists and nested maps", async () => {
  const r = await runLua(`
    local j = data.parse_json('{"a": [1, 2, {"b": "c"}], "n": null}')
    local y = data.parse_yaml("list:\\n  - x\\n  - y\\nmap:\\n  k: v\\n")
    return true, "", {
      j = j, y = y, json = data.to_json({ k = { 1, 2 } }), yaml = data.to_yaml({ k = "v" }),
    }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, {
    j: { a: [1, 2, { b: "c" }] },
    y: { list: ["x", "y"], map: { k: "v" } },
    json: '{"k":[1,2]}',
    yaml: "k: v\n",
  });
  const bad = await runLua(`local v = data.parse_json("{oops")\n  return true`);
  assert.match(bad.error ?? "", /^workflow\.lua:2: data\.parse_json: invalid JSON/);
});

Deno.test("net.http_get, http_post and download talk to a server", async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      const url = new URL(req.url);
      if (url.pathname === "/missing") return new Response("no", { status: 404 });
      const body = req.method === "POST" ? await req.text() : "";
      return Response.json({ method: req.method, body, type: req.headers.get("content-type") });
    },
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const r = await runLua(`
    local get = net.http_get("${base}/x")
    local post = net.http_post("${base}/y", { a = 1 })
    local dl = net.download("${base}/z", "saved.json")
    local ok404, err404 = pcall(net.download, "${base}/missing", "nope.json")
    return true, "", {
      get = data.parse_json(get.body).method, status = get.status, ok = get.ok,
      post = data.parse_json(post.body), saved = fs.read("saved.json") ~= nil,
      bytes = dl.bytes > 0, failed = not ok404, err = err404,
    }`);
  assert.equal(r.error, undefined);
  const out = r.outputs as Record<string, unknown>;
  assert.equal(out.get, "GET");
  assert.equal(out.status, 200);
  assert.equal(out.ok, true);
  assert.deepEqual(out.post, { method: "POST", body: '{"a":1}', type: "application/json" });
  assert.equal(out.saved, true);
  assert.equal(out.bytes, true);
  assert.equal(out.failed, true);
  assert.match(String(out.err), /net\.download: .*answered 404/);
});

Deno.test("os.getenv sees the real environment and the task's variables", async () => {
  Deno.env.set("SLOTH_TEST_VAR", "visible");
  try {
    const r = await runLua(
      `return true, "", { v = os.getenv("SLOTH_TEST_VAR"), t = os.getenv("SLOTH_TASK"), g = os.getenv("SLOTH_GROUP") }`,
    );
    assert.deepEqual(r.outputs, { v: "visible", t: "t", g: "g" });
  } finally {
    Deno.env.delete("SLOTH_TEST_VAR");
  }
});

Deno.test("unpack is table.unpack, for Lua 5.1 scripts", async () => {
  const r = await runLua(`local a, b = unpack({ 1, 2 }) return true, "", { s = a + b }`);
  assert.deepEqual(r.outputs, { s: 3 });
});

Deno.test("os.execute and io.popen raise an error that points to exec.run", async () => {
  for (const call of [`os.execute("ls")`, `io.popen("ls")`]) {
    const r = await runLua(`${call}\n return true`);
    assert.match(
      r.error ?? "",
      /^workflow\.lua:2: .* is not available in sloth-runner; use exec\.run\(cmd\)/,
    );
  }
});

Deno.test("a module of the Go sloth-runner read at run time fails with one line at the reader's line", async () => {
  const read = await runLua(`local name = "sys" .. "temd"\n  return _G[name].restart("nginx")`);
  assert.equal(
    read.error,
    'workflow.lua:3: "systemd" is a module of the Go sloth-runner that sloth-runner does not ' +
      'provide; use exec.run("systemctl ...")',
  );
  const required = await runLua(
    `local name = "dock" .. "er"\n  local m = require(name)\n  return m`,
  );
  assert.equal(
    required.error,
    'workflow.lua:3: "docker" is a module of the Go sloth-runner that sloth-runner does not ' +
      'provide; use exec.run("docker ...")',
  );
  // Other missing globals stay nil, as in Lua.
  assert.equal((await runLua(`return not_defined_anywhere == nil`)).ok, true);
});

Deno.test("require of a module of the Go sloth-runner through pcall says what to use instead", async () => {
  const r = await runLua(`local ok, e = pcall(require, "pulumi")\n  return ok, e`);
  assert.deepEqual({ ok: r.ok, message: r.message }, {
    ok: false,
    message: 'workflow.lua:2: "pulumi" is a module of the Go sloth-runner that sloth-runner does ' +
      'not provide; use exec.run("pulumi ...")',
  });
});
