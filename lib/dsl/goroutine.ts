/**
 * The `goroutine` Lua module: several `exec.run` (and `net.*`, `goroutine.sleep`)
 * of one task function in flight at once, as the Go sloth-runner's module of the
 * same name allows, with its names and return shapes.
 *
 * Goroutines here are Lua coroutines in the task's own Lua state, run by a
 * cooperative scheduler written in Lua (`GOROUTINE_LUA`). A goroutine runs until
 * it waits: for a host promise (a command, a fetch, a timer), which wasmoon's
 * `promise:await()` yields to the scheduler, or for another goroutine (a wait
 * group, a channel, a handle), which the scheduler's own wait does. When nothing
 * can run, the task's thread waits for any watched promise at once (`Wakeups`),
 * so the commands of many goroutines run side by side in the main thread.
 */

/** Live goroutines of one Lua state at once (pool workers and internal timers count). */
export const MAX_GOROUTINES = 1000;
/** Jobs one pool may hold waiting for a worker (the Go tool's pools hold twice their workers). */
export const MAX_POOL_QUEUE = 10_000;

/**
 * Which watched promises have settled, by the token `watch` gave each. One
 * Lua state has one scheduler, so one `ready()` is outstanding at a time.
 */
export class Wakeups {
  #next = 0;
  #ready: number[] = [];
  #wake: (() => void) | undefined;

  watch(promise: unknown): number {
    const token = ++this.#next;
    const mark = () => {
      this.#ready.push(token);
      const wake = this.#wake;
      this.#wake = undefined;
      wake?.();
    };
    if (typeof (promise as PromiseLike<unknown> | undefined)?.then === "function") {
      (promise as PromiseLike<unknown>).then(mark, mark);
    } else {
      queueMicrotask(mark);
    }
    return token;
  }

  /** The tokens settled since the last call; waits for one when there is none. */
  ready(): Promise<number[]> {
    if (this.#ready.length > 0) return Promise.resolve(this.#ready.splice(0));
    // A waiter left behind (its Lua state gave up on it) is answered, not leaked.
    this.#wake?.();
    return new Promise((resolve) => {
      this.#wake = () => resolve(this.#ready.splice(0));
    });
  }
}

/** The host functions the Lua scheduler uses (prefixed `go_` in `__sloth_host`). */
export function goroutineHost(): Record<string, unknown> {
  const wakeups = new Wakeups();
  const timers = new Map<unknown, { id: ReturnType<typeof setTimeout>; resolve: () => void }>();
  return {
    go_watch: (promise: unknown) => wakeups.watch(promise),
    go_ready: () => wakeups.ready(),
    // The Lua side checks ms (0 to 2^31-1: setTimeout's range).
    go_sleep: (ms: number) => {
      const { promise, resolve } = Promise.withResolvers<void>();
      const id = setTimeout(() => {
        timers.delete(promise);
        resolve();
      }, ms);
      timers.set(promise, { id, resolve });
      return promise;
    },
    // Ends a sleep nobody waits for any more (a timeout's timer): an agent's worker
    // with a host call in flight is replaced rather than reused for the next job.
    go_stop: (promise: unknown) => {
      const timer = timers.get(promise);
      if (!timer) return;
      clearTimeout(timer.id);
      timers.delete(promise);
      timer.resolve();
    },
  };
}

/**
 * The scheduler and the module, as a Lua expression the prelude evaluates once
 * with its host table and its `caller` (the file:line of the workflow code that
 * called). It gives `{ module, await, main }`: `await(promise)` is how every
 * blocking built-in waits; `main(fn, ...)` runs a task function (or the main
 * chunk) and then the goroutines it left running.
 */
export const GOROUTINE_LUA = String.raw`(function(H, caller)
  local create, resume, status, running, yield, close =
    coroutine.create, coroutine.resume, coroutine.status, coroutine.running, coroutine.yield, coroutine.close
  local pack, unpack, concat, sort = table.pack, table.unpack, table.concat, table.sort
  local MAX_LIVE, MAX_QUEUE, MAX_MS = ${MAX_GOROUTINES}, ${MAX_POOL_QUEUE}, 2147483647

  -- What a goroutine yields when it waits for a Lua condition (it is then in some waiters list).
  local PARKED = {}
  local by_thread, alive, live, next_id = {}, {}, 0, 0
  local queue, head, tail = {}, 1, 0
  -- Promise token -> the goroutine waiting for it, or the task thread's box; how many.
  local watching, pending = {}, 0
  -- The first error of a goroutine that has no handle, not raised yet.
  local failure
  -- Handles whose goroutine failed, in order; those nobody awaited fail the task at its end.
  local failed = {}
  -- The thread running the task function; only it runs the scheduler.
  local root

  local function where()
    local at = caller():gsub(": $", "")
    return at ~= "" and at or "?"
  end

  local function show(v)
    if type(v) == "string" then return string.format("%q", v) end
    if v == nil then return "nil" end
    return type(v) .. (type(v) == "number" and (" " .. tostring(v)) or "")
  end

  local function fail(name, text) error(caller() .. name .. ": " .. text, 0) end

  local function check_function(name, fn)
    if type(fn) ~= "function" then fail(name, "expected a function, got " .. show(fn)) end
  end

  local function check_ms(name, ms, what, max)
    max = max or MAX_MS
    if type(ms) ~= "number" or ms ~= ms or ms < 0 or ms > max then
      fail(name, "expected " .. (what or "milliseconds") .. " (a number from 0 to " .. max ..
        "), got " .. show(ms))
    end
  end

  -- Scheduling ---------------------------------------------------------------

  local function enqueue(g)
    tail = tail + 1
    queue[tail] = g
  end

  local function dequeue()
    if head > tail then return nil end
    local g = queue[head]
    queue[head] = nil
    head = head + 1
    return g
  end

  -- Makes runnable the goroutines parked on obj (they look again at what they wait for).
  local function wake(obj)
    local list = obj.waiters
    if list[1] == nil then return end
    obj.waiters = {}
    for i = 1, #list do
      local g = list[i]
      if g.parked and not g.done then
        g.parked = false
        enqueue(g)
      end
    end
  end

  local function forget(g)
    g.done, g.parked = true, false
    alive[g], by_thread[g.co] = nil, nil
    live = live - 1
    if g.token then
      watching[g.token] = nil
      pending = pending - 1
      g.token = nil
    end
  end

  local function text_of(e)
    if type(e) == "string" then return e end
    return "error() was given a " .. type(e) .. " value, not a message (use error(\"what went wrong\"))"
  end

  local function finish(g, r)
    forget(g)
    local h = g.handle
    if r[1] then
      if h then h.ok, h.values = true, pack(unpack(r, 2, r.n)) end
    else
      local e = text_of(r[2])
      if h then
        h.err = e
        failed[#failed + 1] = h
      elseif failure == nil then
        failure = e .. " (in the goroutine started at " .. g.at .. ")"
      end
    end
    if h then
      h.done = true
      wake(h)
    end
  end

  local function step(g)
    if g.done then return end
    local r = pack(resume(g.co))
    if status(g.co) == "dead" then return finish(g, r) end
    local signal = r[2]
    if signal == PARKED then return end
    if r.n == 2 and type(signal) == "userdata" then
      -- wasmoon's promise:await() in the goroutine: resumed once it has settled.
      local token = H.go_watch(signal)
      g.token = token
      watching[token] = g
      pending = pending + 1
      return
    end
    -- A plain coroutine.yield(): the others run first.
    enqueue(g)
  end

  local function start(fn, at, handle, ...)
    if live >= MAX_LIVE then
      error(at .. ": goroutine: " .. MAX_LIVE .. " goroutines are already running in this task" ..
        " (the limit); wait for some to end (a wait group, goroutine.await) before starting more," ..
        " or give the work to a pool (goroutine.pool_create)", 0)
    end
    local args = pack(...)
    next_id = next_id + 1
    local g = { id = next_id, at = at, handle = handle }
    g.co = create(function() return fn(unpack(args, 1, args.n)) end)
    by_thread[g.co], alive[g] = g, true
    live = live + 1
    if handle then handle.g = g end
    enqueue(g)
    return g
  end

  -- Stops a goroutine where it waits (a timeout); what it started keeps running.
  local function kill(g)
    if g.done then return end
    forget(g)
    close(g.co)
  end

  local function blocked()
    local list = {}
    for g in pairs(alive) do list[#list + 1] = g end
    sort(list, function(a, b) return a.id < b.id end)
    return list
  end

  local function describe_blocked(list)
    local parts = {}
    for i = 1, math.min(#list, 3) do
      local g = list[i]
      parts[i] = (g.waiting and (g.waiting .. " at " .. g.waiting_at) or "waiting") ..
        " (goroutine started at " .. g.at .. ")"
    end
    if #list > 3 then parts[#parts + 1] = "and " .. (#list - 3) .. " more" end
    return concat(parts, ", ")
  end

  local function deadlock(what, at)
    local list = blocked()
    if what then
      if #list == 0 then
        return at .. what .. " waits forever: no goroutine is left that could end the wait (deadlock)"
      end
      return at .. what .. " waits forever: every goroutine is blocked too (deadlock): " ..
        describe_blocked(list)
    end
    local g = list[1]
    local more = #list > 1 and (" (and " .. (#list - 1) .. " more blocked)") or ""
    if g.waiting then
      return g.waiting_at .. ": " .. g.waiting .. " waits forever (deadlock): the goroutine started at " ..
        g.at .. " cannot end, and the task function has returned" .. more
    end
    return "the goroutine started at " .. g.at .. " cannot end (deadlock)" .. more
  end

  -- The task thread's wait: runs the goroutines until ready() holds.
  local function drive(ready, what, at)
    while true do
      if failure then
        local e = failure
        failure = nil
        error(e, 0)
      end
      if ready() then return end
      local g = dequeue()
      if g then
        step(g)
      elseif pending > 0 then
        local tokens = H.go_ready():await()
        for i = 1, #tokens do
          local w = watching[tokens[i]]
          if w then
            watching[tokens[i]] = nil
            pending = pending - 1
            if w.co then
              w.token = nil
              enqueue(w)
            else
              w.settled = true
            end
          end
        end
      else
        error(deadlock(what, at), 0)
      end
    end
  end

  -- Waits until ready() holds; objs' waiters lists are where a goroutine parks meanwhile.
  local function wait_for(objs, ready, what)
    if ready() then return end
    local thread = running()
    local g = by_thread[thread]
    if g then
      g.waiting, g.waiting_at = what, where()
      repeat
        for i = 1, #objs do
          local list = objs[i].waiters
          list[#list + 1] = g
        end
        g.parked = true
        yield(PARKED)
      until ready()
      g.waiting = nil
    elseif thread == root then
      drive(ready, what, caller())
    else
      error(caller() .. what .. " cannot wait inside a coroutine made with coroutine.create or" ..
        " coroutine.wrap; wait in the task function or in a goroutine", 0)
    end
  end

  -- How every blocking built-in waits for its host promise.
  local function await(p)
    if running() ~= root or (live == 0 and failure == nil) then return p:await() end
    local box = {}
    local token = H.go_watch(p)
    watching[token] = box
    pending = pending + 1
    drive(function() return box.settled end)
    return p:await()
  end

  local pools = {}

  local function reset()
    for _, g in ipairs(blocked()) do kill(g) end
    queue, head, tail = {}, 1, 0
    watching, pending = {}, 0
    failure, failed, pools = nil, {}, {}
  end

  local function main(fn, ...)
    local outer = root
    root = running()
    local r = pack(pcall(fn, ...))
    if r[1] and (live > 0 or failure) then
      local ok, e = pcall(drive, function() return live == 0 end)
      if not ok then r = pack(false, e) end
    end
    if r[1] then
      for _, h in ipairs(failed) do
        if not h.observed then
          r = pack(false, h.err .. " (in the goroutine that goroutine.async started at " .. h.at ..
            "; nothing awaited it)")
          break
        end
      end
    end
    failed = {}
    if not r[1] then reset() end
    root = outer
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end

  -- The module ---------------------------------------------------------------

  local M = {}

  local function sleep(ms) await(H.go_sleep(ms)) end

  function M.sleep(ms)
    check_ms("goroutine.sleep", ms)
    sleep(ms)
  end

  function M.spawn(fn, ...)
    check_function("goroutine.spawn", fn)
    start(fn, where(), nil, ...)
  end

  function M.spawn_many(count, fn)
    if type(count) ~= "number" or count ~= math.floor(count) or count < 0 then
      fail("goroutine.spawn_many", "expected how many goroutines (a whole number), got " .. show(count))
    end
    check_function("goroutine.spawn_many", fn)
    local at = where()
    if live + count > MAX_LIVE then
      error(at .. ": goroutine.spawn_many: " .. math.tointeger(count) .. " more goroutines would pass the limit of " ..
        MAX_LIVE .. " in this task (" .. live .. " running); start fewer, or use a pool (goroutine.pool_create)", 0)
    end
    for id = 1, count do start(fn, at, nil, id) end
  end

  -- Handles --------------------------------------------------------------------

  local handles = setmetatable({}, { __mode = "k" })
  local HANDLE = { __name = "goroutine handle", __tostring = function() return "goroutine handle" end }

  local function new_handle(at)
    local h = setmetatable({}, HANDLE)
    local st = { waiters = {}, at = at }
    handles[h] = st
    return h, st
  end

  local function state_of(h, name)
    local st = type(h) == "table" and handles[h] or nil
    if st == nil then fail(name, "expected a handle from goroutine.async, got " .. show(h)) end
    if st.g and st.g.co == running() then fail(name, "a goroutine cannot wait for its own handle") end
    return st
  end

  local function outcome(st)
    st.observed = true
    if st.ok then return true, unpack(st.values, 1, st.values.n) end
    return false, st.err
  end

  local function entry(st)
    st.observed = true
    if st.ok then
      return { success = true, values = { unpack(st.values, 1, st.values.n) }, value = st.values[1] }
    end
    return { success = false, error = st.err }
  end

  local function timer(ms, at)
    local t = { waiters = {} }
    t.g = start(function()
      t.sleep = H.go_sleep(ms)
      await(t.sleep)
      t.fired = true
      wake(t)
    end, at)
    return t
  end

  local function stop_timer(t)
    kill(t.g)
    if t.sleep and not t.fired then H.go_stop(t.sleep) end
  end

  function M.async(fn, ...)
    check_function("goroutine.async", fn)
    local at = where()
    local h, st = new_handle(at)
    start(fn, at, st, ...)
    return h
  end
  M.create = M.async

  function M.await(h)
    local st = state_of(h, "goroutine.await")
    wait_for({ st }, function() return st.done end, "goroutine.await()")
    return outcome(st)
  end

  local function states_of(list, name)
    if type(list) ~= "table" then fail(name, "expected a list of handles, got " .. show(list)) end
    local states = {}
    for i = 1, #list do
      local st = type(list[i]) == "table" and handles[list[i]] or nil
      if st == nil then
        fail(name, "item " .. i .. " is not a handle from goroutine.async (got " .. show(list[i]) .. ")")
      end
      if st.g and st.g.co == running() then fail(name, "a goroutine cannot wait for its own handle") end
      states[i] = st
    end
    return states
  end

  local function all_done(states)
    return function()
      for i = 1, #states do
        if not states[i].done then return false end
      end
      return true
    end
  end

  function M.await_all(list)
    local states = states_of(list, "goroutine.await_all")
    wait_for(states, all_done(states), "goroutine.await_all()")
    local results = {}
    for i, st in ipairs(states) do results[i] = entry(st) end
    return results
  end

  -- The examples of the Go tool's repository call this (with goroutine.create); its timeout is in seconds.
  function M.wait_all(list, seconds)
    local states = states_of(list, "goroutine.wait_all")
    if seconds == nil then return M.await_all(list) end
    check_ms("goroutine.wait_all", seconds, "seconds", MAX_MS // 1000)
    local at = where()
    local t = timer(seconds * 1000, at)
    local objs = { t }
    for i = 1, #states do objs[i + 1] = states[i] end
    local done = all_done(states)
    wait_for(objs, function() return t.fired or done() end, "goroutine.wait_all()")
    stop_timer(t)
    local results = {}
    for i, st in ipairs(states) do
      if st.done then
        results[i] = entry(st)
      else
        if st.g then kill(st.g) end
        st.done, st.err, st.observed = true, "timeout exceeded (" .. seconds .. " s)", true
        results[i] = { success = false, error = st.err }
      end
    end
    return results
  end

  function M.timeout(ms, fn, ...)
    check_ms("goroutine.timeout", ms)
    check_function("goroutine.timeout", fn)
    local at = where()
    local _, st = new_handle(at)
    start(fn, at, st, ...)
    local t = timer(ms, at)
    wait_for({ st, t }, function() return st.done or t.fired end, "goroutine.timeout()")
    stop_timer(t)
    if st.done then return outcome(st) end
    kill(st.g)
    st.observed = true
    return false, "timeout exceeded (" .. ms .. " ms)"
  end

  -- Wait groups ----------------------------------------------------------------

  local groups = setmetatable({}, { __mode = "k" })
  local WG = {}
  local WAIT_GROUP = { __index = WG, __name = "goroutine wait group" }

  local function group(self, method)
    local st = type(self) == "table" and groups[self] or nil
    if st == nil then fail("wg:" .. method, "call it on the wait group with a colon: wg:" .. method .. "()") end
    return st
  end

  function M.wait_group()
    local wg = setmetatable({}, WAIT_GROUP)
    groups[wg] = { n = 0, waiters = {} }
    return wg
  end

  function WG:add(delta)
    local st = group(self, "add")
    if delta == nil then delta = 1 end
    if type(delta) ~= "number" or delta ~= math.floor(delta) then
      fail("wg:add", "expected a whole number, got " .. show(delta))
    end
    if st.n + delta < 0 then
      fail("wg:add", "the counter would go below zero (" .. st.n .. " + " .. delta .. ")")
    end
    st.n = st.n + delta
    if st.n == 0 then wake(st) end
  end

  function WG:done()
    local st = group(self, "done")
    if st.n == 0 then fail("wg:done", "called more times than wg:add counted") end
    st.n = st.n - 1
    if st.n == 0 then wake(st) end
  end

  function WG:wait()
    local st = group(self, "wait")
    wait_for({ st }, function() return st.n == 0 end, "wg:wait()")
  end

  -- Mutexes --------------------------------------------------------------------

  local mutexes = setmetatable({}, { __mode = "k" })
  local MU = {}
  local MUTEX = { __index = MU, __name = "goroutine mutex" }

  local function mutex(self, method)
    local st = type(self) == "table" and mutexes[self] or nil
    if st == nil then fail("mu:" .. method, "call it on the mutex with a colon: mu:" .. method .. "()") end
    return st
  end

  function M.mutex()
    local mu = setmetatable({}, MUTEX)
    mutexes[mu] = { locked = false, waiters = {} }
    return mu
  end

  function MU:lock()
    local st = mutex(self, "lock")
    wait_for({ st }, function() return not st.locked end, "mu:lock()")
    st.locked = true
  end

  function MU:unlock()
    local st = mutex(self, "unlock")
    if not st.locked then fail("mu:unlock", "the mutex is not locked") end
    st.locked = false
    wake(st)
  end

  function MU:try_lock()
    local st = mutex(self, "try_lock")
    if st.locked then return false end
    st.locked = true
    return true
  end

  -- Channels -------------------------------------------------------------------
  -- buf holds the values sent (head..tail, nil allowed); senders, the values of
  -- senders waiting for room, in order; a receive takes from buf, then moves the
  -- first waiting sender's value in.

  local channels = setmetatable({}, { __mode = "k" })
  local CH = {}
  local CHANNEL = { __index = CH, __name = "goroutine channel" }

  local function chan(self, method)
    local st = type(self) == "table" and channels[self] or nil
    if st == nil then fail("ch:" .. method, "call it on the channel with a colon: ch:" .. method .. "(...)") end
    return st
  end

  function M.channel(size, direction)
    if size == nil then size = 0 end
    if type(size) ~= "number" or size ~= math.floor(size) or size < 0 then
      fail("goroutine.channel", "the size must be a whole number of 0 or more, got " .. show(size))
    end
    if direction ~= nil and direction ~= "bidirectional" then
      fail("goroutine.channel", "send-only and receive-only channels are not supported (got " .. show(direction) .. ")")
    end
    local ch = setmetatable({}, CHANNEL)
    channels[ch] = {
      cap = math.tointeger(size), buf = {}, head = 1, tail = 0,
      senders = {}, shead = 1, stail = 0, closed = false, receiving = 0, waiters = {},
    }
    return ch
  end

  local function count(st) return st.tail - st.head + 1 end

  local function push(st, v)
    st.tail = st.tail + 1
    st.buf[st.tail] = v
  end

  -- The first waiting sender's slot (those given up are dropped), or nil.
  local function first_sender(st)
    while st.shead <= st.stail do
      local slot = st.senders[st.shead]
      if not slot.cancelled then return slot end
      st.senders[st.shead] = nil
      st.shead = st.shead + 1
    end
    return nil
  end

  local function pop_sender(st)
    local slot = first_sender(st)
    st.senders[st.shead] = nil
    st.shead = st.shead + 1
    slot.taken = true
    return slot
  end

  local function take(st)
    if count(st) > 0 then
      local v = st.buf[st.head]
      st.buf[st.head] = nil
      st.head = st.head + 1
      if first_sender(st) then push(st, pop_sender(st).value) end
      wake(st)
      return true, v
    end
    if first_sender(st) then
      local slot = pop_sender(st)
      wake(st)
      return true, slot.value
    end
    return false
  end

  function CH:send(v)
    local st = chan(self, "send")
    if st.closed then return false, "send on closed channel" end
    if count(st) < st.cap then
      push(st, v)
      wake(st)
      return true
    end
    local slot = { value = v }
    st.stail = st.stail + 1
    st.senders[st.stail] = slot
    wake(st)
    -- Given up (an error in the wait, or the goroutine stopped): the value is not delivered.
    local _ <close> = setmetatable({}, { __close = function() if not slot.taken then slot.cancelled = true end end })
    wait_for({ st }, function() return slot.taken or st.closed end, "ch:send()")
    if slot.taken then return true end
    return false, "send on closed channel"
  end

  function CH:receive()
    local st = chan(self, "receive")
    while true do
      local ok, v = take(st)
      if ok then return v, true end
      if st.closed then return nil, false end
      st.receiving = st.receiving + 1
      do
        local _ <close> = setmetatable({}, { __close = function() st.receiving = st.receiving - 1 end })
        wait_for({ st }, function() return count(st) > 0 or first_sender(st) ~= nil or st.closed end,
          "ch:receive()")
      end
    end
  end

  function CH:try_send(v)
    local st = chan(self, "try_send")
    if st.closed then return false, "send on closed channel" end
    -- Room in the buffer, or a receiver already waiting that will take it.
    if count(st) < st.cap or st.receiving > count(st) + (st.stail - st.shead + 1) then
      push(st, v)
      wake(st)
      return true
    end
    return false
  end

  function CH:try_receive()
    local ok, v = take(chan(self, "try_receive"))
    if ok then return v, true end
    return nil, false
  end

  function CH:close()
    local st = chan(self, "close")
    if st.closed then return false, "channel already closed" end
    st.closed = true
    -- Waiting senders are told the channel closed; their values are not delivered.
    st.senders, st.shead, st.stail = {}, 1, 0
    wake(st)
    return true
  end

  function CH:len() return count(chan(self, "len")) end
  function CH:cap() return chan(self, "cap").cap end
  function CH:is_closed() return chan(self, "is_closed").closed end

  function CH:range(fn)
    chan(self, "range")
    check_function("ch:range", fn)
    while true do
      local v, ok = self:receive()
      if not ok then return end
      fn(v)
    end
  end

  -- Pools ----------------------------------------------------------------------
  -- A pool runs its jobs on at most workers goroutines, started as jobs come.

  local function pool_worker(p)
    while p.qhead <= p.qtail and not p.closed do
      local job = p.jobs[p.qhead]
      p.jobs[p.qhead] = nil
      p.qhead = p.qhead + 1
      p.active = p.active + 1
      local r = pack(pcall(job.fn, unpack(job.args, 1, job.args.n)))
      p.active = p.active - 1
      if r[1] then
        p.completed = p.completed + 1
      else
        p.failed = p.failed + 1
        if failure == nil then
          failure = text_of(r[2]) .. " (in a job of pool " .. show(p.name) .. " submitted at " .. job.at .. ")"
        end
      end
    end
    p.running = p.running - 1
    wake(p)
  end

  local function pool_name(name, fname)
    if type(name) ~= "string" then fail(fname, "expected a pool name, got " .. show(name)) end
  end

  local function close_pool(p)
    p.closed = true
    p.jobs, p.qhead, p.qtail = {}, 1, 0
    wake(p)
  end

  function M.pool_create(name, options)
    pool_name(name, "goroutine.pool_create")
    if options ~= nil and type(options) ~= "table" then
      fail("goroutine.pool_create", "expected options as a table ({ workers = N }), got " .. show(options))
    end
    local workers = options and options.workers or 4
    if type(workers) ~= "number" or workers ~= math.floor(workers) or workers < 1 or workers > MAX_LIVE then
      fail("goroutine.pool_create", "workers must be a whole number from 1 to " .. MAX_LIVE .. ", got " .. show(workers))
    end
    if pools[name] then close_pool(pools[name]) end
    pools[name] = {
      name = name, workers = math.tointeger(workers), jobs = {}, qhead = 1, qtail = 0,
      running = 0, active = 0, completed = 0, failed = 0, submitted = 0, waiters = {},
    }
    return true
  end

  function M.pool_submit(name, fn, ...)
    pool_name(name, "goroutine.pool_submit")
    check_function("goroutine.pool_submit", fn)
    local p = pools[name]
    if p == nil then return nil, "pool not found: " .. name end
    if p.qtail - p.qhead + 1 >= MAX_QUEUE then
      return nil, "pool queue is full (" .. MAX_QUEUE .. " jobs wait for a worker)"
    end
    local at = where()
    p.qtail = p.qtail + 1
    p.jobs[p.qtail] = { fn = fn, args = pack(...), at = at }
    p.submitted = p.submitted + 1
    if p.running < p.workers then
      p.running = p.running + 1
      local ok, e = pcall(start, pool_worker, at, nil, p)
      if not ok then
        p.running = p.running - 1
        p.jobs[p.qtail] = nil
        p.qtail = p.qtail - 1
        error(e, 0)
      end
    end
    return name .. "-" .. p.submitted
  end

  function M.pool_wait(name)
    pool_name(name, "goroutine.pool_wait")
    local p = pools[name]
    if p == nil then return false, "pool not found: " .. name end
    wait_for({ p }, function() return p.running == 0 end, "goroutine.pool_wait()")
    return true
  end

  function M.pool_close(name)
    pool_name(name, "goroutine.pool_close")
    local p = pools[name]
    if p == nil then return false end
    pools[name] = nil
    close_pool(p)
    return true
  end

  function M.pool_stats(name)
    pool_name(name, "goroutine.pool_stats")
    local p = pools[name]
    if p == nil then return nil end
    return {
      name = p.name, workers = p.workers, active = p.active, completed = p.completed,
      failed = p.failed, queued = p.qtail - p.qhead + 1,
    }
  end

  return { module = M, await = await, main = main }
end)`;
