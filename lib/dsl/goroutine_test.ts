/**
 * The `goroutine` Lua module, in real Lua states running real commands. Line 2
 * of workflow.lua is the first line of the body each test gives.
 */
import assert from "node:assert/strict";
import { processAlive, waitFor } from "../../tests/_helpers/mod.ts";
import { runLua } from "./_testing.ts";
import { MAX_GOROUTINES } from "./goroutine.ts";

/**
 * A command that leaves its marker, then waits (up to 5 s) until all `n` markers
 * are there: it ends with code 0 only if the others started while it ran.
 */
function meet(name: string, n: number): string {
  return `touch start.${name}; i=0; while [ "$(ls start.* | wc -l)" -lt ${n} ]; do ` +
    `i=$((i+1)); [ $i -gt 100 ] && exit 7; sleep 0.05; done; echo ${name}`;
}

Deno.test("goroutine.spawn: three exec.run in goroutines and one in the task function run at once", async () => {
  const r = await runLua(`local wg, out = goroutine.wait_group(), {}
  for i = 1, 3 do
    wg:add(1)
    goroutine.spawn(function()
      local res = exec.run([[${meet("$SLOTH_N", 4)}]], { env = { SLOTH_N = tostring(i) } })
      out[i] = res.exit_code .. ":" .. res.stdout
      wg:done()
    end)
  end
  local mine = exec.run([[${meet("4", 4)}]])
  out[4] = mine.exit_code .. ":" .. mine.stdout
  wg:wait()
  return true, "", out`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, ["0:1\n", "0:2\n", "0:3\n", "0:4\n"]);
});

Deno.test("goroutine.spawn_many passes each goroutine its number; goroutines share the task's variables", async () => {
  const r = await runLua(`local seen, wg = {}, goroutine.wait_group()
  wg:add(4)
  goroutine.spawn_many(4, function(id)
    goroutine.sleep(30 * (5 - id))
    seen[#seen + 1] = id
    wg:done()
  end)
  wg:wait()
  return true, "", seen`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, [4, 3, 2, 1]);
});

Deno.test("goroutine.async and await give the function's values; await_all and create/wait_all give a table each", async () => {
  const r = await runLua(`local h = goroutine.async(function(a, b)
    local echoed = exec.run("echo " .. a).stdout
    return echoed, nil, a + b
  end, 40, 2)
  local ok, echoed, missing, sum = goroutine.await(h)
  local again = { goroutine.await(h) }
  local all = goroutine.await_all({
    goroutine.async(function() return "a", "b" end),
    goroutine.async(function() error("nope") end),
  })
  local waited = goroutine.wait_all({ goroutine.create(function() return { server = "web-01" } end) }, 60)
  return true, "", {
    ok = ok, echoed = echoed, missing = missing == nil, sum = sum, again = #again,
    all = all, waited = waited,
  }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, {
    ok: true,
    echoed: "40\n",
    missing: true,
    sum: 42,
    again: 4,
    all: [
      { success: true, values: ["a", "b"], value: "a" },
      { success: false, error: "workflow.lua:10: nope" },
    ],
    waited: [{ success: true, values: [{ server: "web-01" }], value: { server: "web-01" } }],
  });
});

Deno.test("goroutine.await of a failed goroutine returns false and the error's file:line", async () => {
  const r = await runLua(`local h = goroutine.async(function()
    local x = nil
    return x.field
  end)
  return true, "", { goroutine.await(h) }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, [false, "workflow.lua:4: attempt to index a nil value (local 'x')"]);
});

Deno.test("an error in a spawned goroutine fails the task where it waits, with both file:lines", async () => {
  const r = await runLua(`local wg = goroutine.wait_group()
  wg:add(2)
  goroutine.spawn(function() goroutine.sleep(10) wg:done() end)
  goroutine.spawn(function()
    exec.run("true")
    error("deploy to web-02 failed")
  end)
  wg:wait()
  return true`);
  assert.equal(
    r.error,
    "workflow.lua:7: deploy to web-02 failed (in the goroutine started at workflow.lua:5)",
  );
});

Deno.test("the error of a spawned goroutine can be caught around the wait, and is raised once", async () => {
  const r = await runLua(`local wg = goroutine.wait_group()
  wg:add(1)
  goroutine.spawn(function() error("first") end)
  local ok, e = pcall(wg.wait, wg)
  wg:done()
  wg:wait()
  return true, "", { ok, e }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, [
    false,
    "workflow.lua:4: first (in the goroutine started at workflow.lua:4)",
  ]);
});

Deno.test("a failed goroutine.async that nothing awaited fails the task when its function returns", async () => {
  const r = await runLua(`goroutine.async(function() error("lost") end)
  return true`);
  assert.equal(
    r.error,
    "workflow.lua:2: lost (in the goroutine that goroutine.async started at workflow.lua:2; nothing awaited it)",
  );
});

Deno.test("goroutines still running when the task function returns are waited for", async () => {
  const r = await runLua(
    `goroutine.spawn(function()
    goroutine.sleep(50)
    exec.run("echo late > late.txt")
  end)
  return true`,
    {
      after: async (dir) => assert.equal(await Deno.readTextFile(`${dir}/late.txt`), "late\n"),
    },
  );
  assert.equal(r.error, undefined);
});

Deno.test("channels pass values in order, nil included; close ends a receive loop", async () => {
  const r = await runLua(`local results = {}
  for _, size in ipairs({ 0, 2 }) do
    local ch, got = goroutine.channel(size), {}
    goroutine.spawn(function()
      for i = 1, 5 do
        if i == 3 then ch:send(nil) else ch:send(i) end
      end
      ch:close()
    end)
    while true do
      local v, ok = ch:receive()
      if not ok then break end
      got[#got + 1] = tostring(v)
    end
    results[#results + 1] = table.concat(got, ",")
  end
  return true, "", results`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, ["1,2,nil,4,5", "1,2,nil,4,5"]);
});

Deno.test("a channel's other methods: try_send, try_receive, len, cap, is_closed, range, closing twice", async () => {
  const r = await runLua(`local ch = goroutine.channel(2)
  local out = {}
  out.sent = { ch:try_send("a"), ch:try_send("b"), ch:try_send("c") }
  out.len, out.cap = ch:len(), ch:cap()
  out.first = { ch:try_receive() }
  out.closed = { ch:close() }
  out.again = { ch:close() }
  out.send_closed = { ch:send("x") }
  out.is_closed = ch:is_closed()
  out.ranged = {}
  ch:range(function(v) out.ranged[#out.ranged + 1] = v end)
  out.empty = { ok = select(2, ch:try_receive()) }
  local unbuffered = goroutine.channel()
  out.nobody = unbuffered:try_send(1)
  return true, "", out`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, {
    sent: [true, true, false],
    len: 2,
    cap: 2,
    first: ["a", true],
    closed: [true],
    again: [false, "channel already closed"],
    send_closed: [false, "send on closed channel"],
    is_closed: true,
    ranged: ["b"],
    empty: { ok: false },
    nobody: false,
  });
});

Deno.test("goroutine.sleep takes milliseconds; timers end in the order they are due", async () => {
  const r = await runLua(`local order, wg = {}, goroutine.wait_group()
  for _, ms in ipairs({ 300, 100, 200 }) do
    wg:add(1)
    goroutine.spawn(function() goroutine.sleep(ms) order[#order + 1] = ms wg:done() end)
  end
  goroutine.sleep(1)
  wg:wait()
  local ok, e = pcall(goroutine.sleep, "1s")
  return true, "", { order = order, e = e }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, {
    order: [100, 200, 300],
    e: 'workflow.lua:9: goroutine.sleep: expected milliseconds (a number from 0 to 2147483647), got "1s"',
  });
});

Deno.test("goroutine.timeout gives the values in time, else false and stops the goroutine where it waits", async () => {
  const r = await runLua(`local finished = false
  local quick = { goroutine.timeout(5000, function() return "fast", 1 end) }
  local slow = { goroutine.timeout(50, function()
    goroutine.sleep(300)
    finished = true
  end) }
  goroutine.sleep(500)
  return true, "", { quick = quick, slow = slow, finished = finished }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, {
    quick: [true, "fast", 1],
    slow: [false, "timeout exceeded (50 ms)"],
    finished: false,
  });
});

Deno.test("goroutine.wait_all with a timeout in seconds fails and stops the goroutines not done by then", async () => {
  const r = await runLua(`local finished = false
  local results = goroutine.wait_all({
    goroutine.create(function() return "quick" end),
    goroutine.create(function() goroutine.sleep(400) finished = true end),
  }, 0.05)
  goroutine.sleep(600)
  return true, "", { results = results, finished = finished }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, {
    results: [
      { success: true, values: ["quick"], value: "quick" },
      { success: false, error: "timeout exceeded (0.05 s)" },
    ],
    finished: false,
  });
});

Deno.test(`more than ${MAX_GOROUTINES} live goroutines is an error at the caller's line; ended ones make room`, async () => {
  const r = await runLua(`local gate = goroutine.channel()
  for i = 1, ${MAX_GOROUTINES} do goroutine.spawn(function() gate:receive() end) end
  local ok, e = pcall(goroutine.spawn, function() end)
  gate:close()
  goroutine.sleep(1)
  local h = goroutine.async(function() return "room again" end)
  return true, "", { e = e, again = select(2, goroutine.await(h)) }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, {
    e: `workflow.lua:4: goroutine: ${MAX_GOROUTINES} goroutines are already running in this task ` +
      "(the limit); wait for some to end (a wait group, goroutine.await) before starting more, " +
      "or give the work to a pool (goroutine.pool_create)",
    again: "room again",
  });
});

Deno.test("a wait that nothing can end is a deadlock error at its line", async () => {
  const alone = await runLua(`local ch = goroutine.channel()
  ch:receive()
  return true`);
  assert.equal(
    alone.error,
    "workflow.lua:3: ch:receive() waits forever: no goroutine is left that could end the wait (deadlock)",
  );
  const both = await runLua(`local ch, wg = goroutine.channel(), goroutine.wait_group()
  wg:add(1)
  goroutine.spawn(function() ch:send(1) wg:done() end)
  goroutine.spawn(function() ch:send(2) end)
  wg:wait()
  ch:receive()
  return true`);
  assert.equal(
    both.error,
    "workflow.lua:6: wg:wait() waits forever: every goroutine is blocked too (deadlock): " +
      "ch:send() at workflow.lua:4 (goroutine started at workflow.lua:4), " +
      "ch:send() at workflow.lua:5 (goroutine started at workflow.lua:5)",
  );
  const left = await runLua(`local ch = goroutine.channel()
  goroutine.spawn(function()
    ch:receive()
  end)
  return true`);
  assert.equal(
    left.error,
    "workflow.lua:4: ch:receive() waits forever (deadlock): the goroutine started at workflow.lua:3 " +
      "cannot end, and the task function has returned",
  );
});

Deno.test("wait groups and mutexes say how they were misused", async () => {
  const r = await runLua(`local wg, mu = goroutine.wait_group(), goroutine.mutex()
  return true, "", {
    select(2, pcall(function() wg.add(1) end)),
    select(2, pcall(function() wg:done() end)),
    select(2, pcall(function() mu:unlock() end)),
    select(2, pcall(function() goroutine.spawn("not a function") end)),
    select(2, pcall(function() goroutine.await({}) end)),
    select(2, pcall(function() goroutine.wait_all({}, 1e10) end)),
  }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, [
    "workflow.lua:4: wg:add: call it on the wait group with a colon: wg:add()",
    "workflow.lua:5: wg:done: called more times than wg:add counted",
    "workflow.lua:6: mu:unlock: the mutex is not locked",
    'workflow.lua:7: goroutine.spawn: expected a function, got "not a function"',
    "workflow.lua:8: goroutine.await: expected a handle from goroutine.async, got table",
    "workflow.lua:9: goroutine.wait_all: expected seconds (a number from 0 to 2147483), got number 10000000000.0",
  ]);
});

Deno.test("a mutex held across exec.run keeps the other goroutines out", async () => {
  const r = await runLua(
    `local mu, wg, inside, most = goroutine.mutex(), goroutine.wait_group(), 0, 0
  for i = 1, 3 do
    wg:add(1)
    goroutine.spawn(function()
      mu:lock()
      inside = inside + 1
      most = math.max(most, inside)
      exec.run("sleep 0.05")
      inside = inside - 1
      mu:unlock()
      wg:done()
    end)
  end
  wg:wait()
  return true, "", { most = most, free = mu:try_lock() }`,
  );
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, { most: 1, free: true });
});

Deno.test("a pool runs its jobs on at most its workers and counts them", async () => {
  const r = await runLua(`local go = require("goroutine")
  go.pool_create("p", { workers = 3 })
  local inside, most, ids = 0, 0, {}
  for i = 1, 10 do
    ids[i] = go.pool_submit("p", function(n)
      inside = inside + 1
      most = math.max(most, inside)
      go.sleep(10)
      inside = inside - 1
    end, i)
  end
  go.pool_wait("p")
  local stats = go.pool_stats("p")
  return true, "", {
    most = most, stats = stats, first = ids[1], closed = go.pool_close("p"),
    missing = select(2, go.pool_submit("p", function() end)),
  }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, {
    most: 3,
    stats: { name: "p", workers: 3, active: 0, completed: 10, failed: 0, queued: 0 },
    first: "p-1",
    closed: true,
    missing: "pool not found: p",
  });
});

Deno.test("an error in a pool's job fails the task with the job's file:line and where it was submitted", async () => {
  const r = await runLua(`goroutine.pool_create("deploy", { workers = 2 })
  for _, host in ipairs({ "web-01", "web-02" }) do
    goroutine.pool_submit("deploy", function()
      if host == "web-02" then error("cannot reach " .. host) end
    end)
  end
  goroutine.pool_wait("deploy")
  return true`);
  assert.equal(
    r.error,
    'workflow.lua:5: cannot reach web-02 (in a job of pool "deploy" submitted at workflow.lua:4)',
  );
});

Deno.test("a wait inside a plain Lua coroutine is refused with a message that says where to wait", async () => {
  const r = await runLua(`local wg = goroutine.wait_group()
  wg:add(1)
  local co = coroutine.create(function() wg:wait() end)
  return true, "", { coroutine.resume(co) }`);
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, [
    false,
    "workflow.lua:4: wg:wait() cannot wait inside a coroutine made with coroutine.create or " +
    "coroutine.wrap; wait in the task function or in a goroutine",
  ]);
});

Deno.test("a cancelled task leaves none of its goroutines' commands running", async () => {
  const pids: number[] = [];
  const r = await runLua(
    `for i = 1, 3 do
    goroutine.spawn(function() exec.run("echo $$ > pid." .. i .. "; exec sleep 37") end)
  end
  goroutine.sleep(60000)
  return true`,
    {
      during: async (dir, cancel) => {
        const pid = async (i: number) => {
          try {
            const text = await Deno.readTextFile(`${dir}/pid.${i}`);
            return text.endsWith("\n") ? Number(text) : undefined;
          } catch {
            return undefined;
          }
        };
        await waitFor(async () =>
          (await pid(1)) && (await pid(2)) && (await pid(3)) ? true : false
        );
        for (const i of [1, 2, 3]) pids.push((await pid(i))!);
        assert.ok(pids.every(processAlive));
        cancel.abort("cancelled");
      },
    },
  );
  assert.equal(r.error, "cancelled");
  await waitFor(() => !pids.some(processAlive), 3000);
});

Deno.test('require("goroutine") is the module; goroutines at the top level end before the tasks run', async () => {
  const r = await runLua(
    `return true, "", { same = require("goroutine") == goroutine, top = top_value }`,
    {
      top: `goroutine.spawn(function() goroutine.sleep(5) top_value = "set" end)`,
    },
  );
  assert.equal(r.error, undefined);
  assert.deepEqual(r.outputs, { same: true, top: "set" });
});
