#!/usr/bin/env bash
# Smoke test of a sloth-runner build, as the release workflow runs it on each
# target's own runner before publishing:
#
#   1. `version` of both executables (the one expected, when SLOTH_EXPECT_VERSION is set);
#   2. a local workflow: shell and Lua tasks, outputs flowing into inputs, files
#      written, and a failing task giving exit code 1;
#   3. an agent on 127.0.0.1, port 0, with a token file (as in production): a
#      master delegates a shell task and a Lua task to it; their output is shown
#      here, their files and outputs come back; a wrong token is refused; SIGTERM
#      stops the agent, which leaves its work root empty;
#   4. (not on Windows) a loopback agent without a token: the token file it writes
#      for this user's masters (0600) lets `agent ping` in, and is gone after it stops.
#
# Usage:
#   SLOTH_RUNNER=dist/release/sloth-runner-TARGET SLOTH_AGENT=dist/release/sloth-agent-TARGET \
#     bash scripts/smoke.sh
#   deno run -A scripts/smoke_here.ts      # the same against `deno run` of main.ts and agent.ts
#
# SLOTH_RUNNER and SLOTH_AGENT are command lines, split on spaces (so a path in
# them must not contain one). SLOTH_EXPECT_VERSION (a leading "v" is ignored) is
# the version both must print. Runs under bash on Linux and macOS, and Git Bash on
# Windows, where shell-command tasks are left out: they run with /bin/sh and
# process groups, which Windows does not have (SLOTH_SMOKE_NO_SHELL=1 leaves them
# out anywhere). Exits 0 when everything passed;
# otherwise 1, after printing what failed and the output that shows why.
set -euo pipefail
export NO_COLOR=1 RUST_BACKTRACE=0
# Tokens are passed per command below; one from the caller's environment must not leak in.
unset SLOTH_AGENT_TOKEN

fail() {
  echo "smoke: FAILED: $*" >&2
  exit 1
}

[ -n "${SLOTH_RUNNER:-}" ] || fail "set SLOTH_RUNNER to the sloth-runner command (see the top of $0)"
[ -n "${SLOTH_AGENT:-}" ] || fail "set SLOTH_AGENT to the sloth-agent command (see the top of $0)"
read -r -a runner <<<"$SLOTH_RUNNER"
read -r -a agent <<<"$SLOTH_AGENT"
# The commands run from temporary directories: a relative executable path must not break.
case "${runner[0]}" in /* | [A-Za-z]:*) ;; */*) runner[0]="$PWD/${runner[0]}" ;; esac
case "${agent[0]}" in /* | [A-Za-z]:*) ;; */*) agent[0]="$PWD/${agent[0]}" ;; esac
expect_version="${SLOTH_EXPECT_VERSION:-}"
expect_version="${expect_version#v}"

windows=false
case "$(uname -s)" in MINGW* | MSYS* | CYGWIN*) windows=true ;; esac
# Paths handed to the executables: native ones on Windows (C:/...), as they are elsewhere.
native() {
  if $windows; then cygpath -m "$1"; else printf '%s' "$1"; fi
}

tmp=$(mktemp -d 2>/dev/null || mktemp -d -t sloth-smoke)
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ]; then kill -KILL "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# So that being stopped (a CI timeout) still runs cleanup and takes the agent down.
trap 'exit 143' TERM INT

ok() { echo "ok - $*"; }

# expect FILE TEXT WHAT: FILE contains TEXT (a fixed string), else fail showing FILE.
expect() {
  if ! grep -qF -- "$2" "$1"; then
    echo "--- $(basename "$1") ---" >&2
    cat "$1" >&2
    echo "---" >&2
    fail "$3: expected to find \"$2\""
  fi
}

# run NAME DIR [VAR=VALUE ...] -- ARGS...: runs sloth-runner in DIR; output in $tmp/NAME.out,
# exit code in $code.
run() {
  local name=$1 dir=$2
  shift 2
  local vars=()
  while [ "$1" != "--" ]; do
    vars+=("$1")
    shift
  done
  shift
  code=0
  (cd "$dir" && env ${vars[@]+"${vars[@]}"} "${runner[@]}" "$@") >"$tmp/$name.out" 2>&1 || code=$?
}

# start_agent LOG [VAR=VALUE ...] -- ARGS...: starts sloth-agent on 127.0.0.1, port 0; sets
# $agent_pid and $port once it says where it listens.
start_agent() {
  local log=$1
  shift
  local vars=()
  while [ "$1" != "--" ]; do
    vars+=("$1")
    shift
  done
  shift
  # The log exists before the agent starts: the loop below must never read a missing file
  # (with set -e and pipefail, a failing sed would end the script).
  : >"$log"
  env ${vars[@]+"${vars[@]}"} "${agent[@]}" --bind 127.0.0.1 -p 0 "$@" </dev/null >/dev/null 2>"$log" &
  agent_pid=$!
  port=""
  local waited=0
  # Up to 120 s: a first start may compile or unpack a lot on a slow runner.
  while [ -z "$port" ]; do
    port=$(sed -n 's/.* listening on 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && break
    if ! kill -0 "$agent_pid" 2>/dev/null; then
      agent_pid=""
      cat "$log" >&2
      fail "the agent exited before listening"
    fi
    [ "$waited" -lt 1200 ] || {
      cat "$log" >&2
      fail "the agent did not say where it listens within 120 s"
    }
    sleep 0.1
    waited=$((waited + 1))
  done
}

# stop_agent: SIGTERM, and the agent's exit code in $agent_code (SIGKILL after 30 s).
stop_agent() {
  kill -TERM "$agent_pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$agent_pid" 2>/dev/null && [ "$waited" -lt 300 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -KILL "$agent_pid" 2>/dev/null || true
  agent_code=0
  wait "$agent_pid" 2>/dev/null || agent_code=$?
  agent_pid=""
}

# --- 1. version --------------------------------------------------------------
run version "$tmp" -- version
[ "$code" -eq 0 ] || fail "sloth-runner version exited $code: $(cat "$tmp/version.out")"
expect "$tmp/version.out" "sloth-runner ${expect_version}" "sloth-runner version"
code=0
"${agent[@]}" --version >"$tmp/agent-version.out" 2>&1 || code=$?
[ "$code" -eq 0 ] || fail "sloth-agent --version exited $code: $(cat "$tmp/agent-version.out")"
if [ -n "$expect_version" ]; then
  [ "$(tr -d '\r\n' <"$tmp/agent-version.out")" = "$expect_version" ] ||
    fail "sloth-agent --version said \"$(cat "$tmp/agent-version.out")\", expected $expect_version"
fi
ok "version: $(head -n 1 "$tmp/version.out")"

# --- 2. a local workflow -----------------------------------------------------
shell=true
# SLOTH_SMOKE_NO_SHELL=1 takes the Windows path anywhere (the tests try it on Linux).
if $windows || [ "${SLOTH_SMOKE_NO_SHELL:-}" = 1 ]; then shell=false; fi
mkdir "$tmp/local"
cat >"$tmp/local/workflow.lua" <<'EOF'
-- A shell task (left out where there is no /bin/sh), Lua tasks passing outputs on, a failure.
local tasks = {}
if values.shell then
  table.insert(tasks, {
    name = "shell",
    command = "echo smoke-shell-printed && echo smoke-shell-file > shell.txt",
  })
end
table.insert(tasks, {
  name = "produce",
  command = function()
    fs.write("lua.txt", "smoke-lua-file\n")
    return true, "produced", { answer = 42 }
  end,
})
table.insert(tasks, {
  name = "consume",
  depends_on = "produce",
  command = function(params, inputs)
    print("smoke-consumed answer=" .. inputs.produce.answer .. " " .. fs.read("lua.txt"))
    return true
  end,
})
TaskDefinitions = {
  local_smoke = { tasks = tasks },
  failing = {
    tasks = {
      { name = "planned", command = function() return false, "smoke-planned-failure" end },
    },
  },
}
EOF
printf 'shell: %s\n' "$shell" >"$tmp/local/values.yaml"

run local "$tmp/local" -- run -f workflow.lua -v values.yaml -g local_smoke
[ "$code" -eq 0 ] || {
  cat "$tmp/local.out" >&2
  fail "the local workflow exited $code"
}
expect "$tmp/local.out" "[consume] smoke-consumed answer=42 smoke-lua-file" "a Lua task's outputs and file"
expect "$tmp/local/lua.txt" "smoke-lua-file" "the file a Lua task wrote"
if $shell; then
  expect "$tmp/local.out" "[shell] smoke-shell-printed" "a shell task's output"
  expect "$tmp/local/shell.txt" "smoke-shell-file" "the file a shell task wrote"
  expect "$tmp/local.out" "3 tasks: 3 success" "the summary"
else
  expect "$tmp/local.out" "2 tasks: 2 success" "the summary"
fi
ok "local workflow"

run failing "$tmp/local" -- run -f workflow.lua -v values.yaml -g failing
[ "$code" -eq 1 ] || {
  cat "$tmp/failing.out" >&2
  fail "a workflow with a failing task exited $code, expected 1"
}
expect "$tmp/failing.out" "smoke-planned-failure" "the failing task's message"
ok "a failing task exits 1"

# --- 3. an agent with a token file -------------------------------------------
mkdir "$tmp/work-root" "$tmp/remote" "$tmp/secrets"
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
[ "${#token}" -eq 64 ] || fail "could not make a random token"
printf '%s\n' "$token" >"$tmp/secrets/agent.token"
chmod 600 "$tmp/secrets/agent.token"
start_agent "$tmp/agent.log" -- \
  --token-file "$(native "$tmp/secrets/agent.token")" --work-root "$(native "$tmp/work-root")"
address="127.0.0.1:$port"
expect "$tmp/agent.log" "token required" "the agent's start-up line"

cat >"$tmp/remote/workflow.lua" <<'EOF'
-- Tasks delegated to the agent at values.agent; the last one runs here, with what came back.
local agent = values.agent
local tasks = {}
if values.shell then
  table.insert(tasks, {
    name = "remote_shell",
    delegate_to = agent,
    command = "echo smoke-remote-shell-printed && mkdir -p out && echo smoke-remote-shell-file > out/shell.txt",
  })
end
table.insert(tasks, {
  name = "remote_lua",
  delegate_to = agent,
  command = function()
    fs.mkdir("out")
    fs.write("out/lua.txt", "smoke-remote-lua-file\n")
    print("smoke-remote-lua-printed")
    return true, "ran remotely", { answer = 42 }
  end,
})
table.insert(tasks, {
  name = "back_here",
  depends_on = "remote_lua",
  command = function(params, inputs)
    print("smoke-back answer=" .. inputs.remote_lua.answer .. " " .. fs.read("out/lua.txt"))
    return true
  end,
})
TaskDefinitions = { remote_smoke = { tasks = tasks } }
EOF
printf 'agent: "%s"\nshell: %s\n' "$address" "$shell" >"$tmp/remote/values.yaml"
echo "smoke-input" >"$tmp/remote/input.txt"

run remote "$tmp/remote" "SLOTH_AGENT_TOKEN=$token" -- run -f workflow.lua -v values.yaml
[ "$code" -eq 0 ] || {
  cat "$tmp/remote.out" "$tmp/agent.log" >&2
  fail "the workflow delegating to the agent exited $code"
}
expect "$tmp/remote.out" "[remote_lua@$address] smoke-remote-lua-printed" "output of a remote Lua task"
expect "$tmp/remote.out" "[back_here] smoke-back answer=42 smoke-remote-lua-file" \
  "outputs and files of a remote task, back here"
expect "$tmp/remote/out/lua.txt" "smoke-remote-lua-file" "the file a remote Lua task wrote"
expect "$tmp/agent.log" "remote_smoke.remote_lua (attempt 1) from 127.0.0.1:" "the agent's job line"
if $shell; then
  expect "$tmp/remote.out" "[remote_shell@$address] smoke-remote-shell-printed" \
    "output of a remote shell task"
  expect "$tmp/remote/out/shell.txt" "smoke-remote-shell-file" "the file a remote shell task wrote"
  expect "$tmp/remote.out" "3 tasks: 3 success" "the summary"
else
  expect "$tmp/remote.out" "2 tasks: 2 success" "the summary"
fi
ok "agent round trip on $address: output shown here, files and outputs back"

run ping-wrong "$tmp" "SLOTH_AGENT_TOKEN=not-$token" -- agent ping "$address"
[ "$code" -eq 1 ] || fail "agent ping with a wrong token exited $code, expected 1"
expect "$tmp/ping-wrong.out" "refused the token" "agent ping with a wrong token"
run ping "$tmp" "SLOTH_AGENT_TOKEN=$token" -- agent ping "$address"
[ "$code" -eq 0 ] || fail "agent ping with the token exited $code: $(cat "$tmp/ping.out")"
expect "$tmp/ping.out" "agent $address is reachable: sloth-runner ${expect_version}" "agent ping"
ok "the agent refuses a wrong token and answers the right one"

stop_agent
if ! $windows; then
  # Windows has no SIGTERM to send from here: the agent is just ended there.
  [ "$agent_code" -eq 0 ] || {
    cat "$tmp/agent.log" >&2
    fail "the agent exited $agent_code on SIGTERM"
  }
  expect "$tmp/agent.log" "stopped" "the agent's last line"
  # An agent on port 0 keeps nothing for a later start on the same port.
  [ -z "$(ls -A "$tmp/work-root")" ] || fail "the agent left files in its work root: $(ls -A "$tmp/work-root")"
  ok "the agent stops on SIGTERM and leaves its work root empty"
fi

# --- 4. a loopback agent without a token (its token file is chmod 0600) ------
if ! $windows; then
  runtime="$tmp/runtime"
  mkdir -p "$runtime" "$tmp/elsewhere"
  start_agent "$tmp/agent-local.log" "XDG_RUNTIME_DIR=$runtime" -- --work-root "$tmp/work-root"
  address="127.0.0.1:$port"
  token_file="$runtime/sloth-runner/agent-127.0.0.1-$port.token"
  expect "$tmp/agent-local.log" "token for this user's masters in $token_file" \
    "the start-up line of a loopback agent without a token"
  [ -f "$token_file" ] || fail "no token file at $token_file"
  case "$(ls -l "$token_file")" in -rw-------*) ;; *) fail "$token_file is not mode 0600: $(ls -l "$token_file")" ;; esac
  run ping-local "$tmp" "XDG_RUNTIME_DIR=$runtime" -- agent ping "$address"
  [ "$code" -eq 0 ] || fail "agent ping of a same-user loopback agent exited $code: $(cat "$tmp/ping-local.out")"
  run ping-other "$tmp" "XDG_RUNTIME_DIR=$tmp/elsewhere" -- agent ping "$address"
  [ "$code" -eq 1 ] || fail "agent ping without the agent's token file exited $code, expected 1"
  stop_agent
  [ "$agent_code" -eq 0 ] || fail "the loopback agent exited $agent_code on SIGTERM"
  [ ! -e "$token_file" ] || fail "the agent left its token file $token_file behind"
  ok "a loopback agent without a token: its token file lets this user in, and goes with it"
fi

echo "smoke test passed"
