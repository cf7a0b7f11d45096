/** The parts of `--help` that are not options: examples, environment, exit codes. */

export const EXIT_CODES_HELP = `
Exit codes:
  0    every task succeeded (or was skipped)
  1    a task failed or timed out, or abort_if stopped the run
  2    usage error, or a workflow that does not load or validate
  130  interrupted (Ctrl-C / SIGTERM)`;

export const TOP_HELP = `
Getting started:
  sloth-runner new hello && sloth-runner agent &     a starter workflow and an agent
  sloth-runner run -f hello/workflow.lua            run it
  sloth-runner <command> --help                     every command's options

Environment:
  SLOTH_AGENT_TOKEN        token sent to agents (agents: the token to require)
  SLOTH_TLS_CA, SLOTH_TLS_CERT, SLOTH_TLS_KEY
                           defaults for --tls-ca, --tls-cert, --tls-key
  SLOTH_INVENTORY          the inventory of agents and pools, when -i is not given
  SLOTH_DNS_SERVER         host:port of the name server for dns pools
  SLOTH_LUA_TIMEOUT        longest a workflow file may take to load (default 10s)
  SLOTH_LUA_MEMORY         memory each Lua state may use (default 256M; e.g. 512M, 1G)
  NO_COLOR                 no colours
  SLOTH_DEBUG              stack traces for internal errors
${EXIT_CODES_HELP}`;

export const RUN_HELP = `
Examples:
  sloth-runner run                              workflow.lua in this directory, all groups
  sloth-runner run -f ci.lua -g build           one group
  sloth-runner run -t deploy                    one task and what it depends on
  sloth-runner run --dry-run                    the order, and where each task would run
  sloth-runner run -v prod.yaml                 with a values file (the \`values\` global)
  sloth-runner run --report junit=report.xml    a JUnit report for CI
  sloth-runner run -o json | jq .               one JSON event per line

Output: on a terminal, a live view of the running tasks (--verbose for every line,
--plain for plain lines); elsewhere, each line prefixed with its task. A summary
table ends every run.

Remote tasks (\`delegate_to\`, or \`agent\` with a group's \`agents\`) need a running
agent: \`sloth-runner agent -p 50051\` on that machine. Their token is SLOTH_AGENT_TOKEN
or the agent definition's \`token_env\`; a loopback agent started by the same user
needs none. Agents and pools of the inventory (-i FILE, SLOTH_INVENTORY, or
./sloth-inventory.yaml) are named the same way: delegate_to = "web-1",
{ pool = "web" } (one member per attempt), { each = "web" } (every member).

Environment:
  SLOTH_AGENT_TOKEN        token for agents whose definition has no token_env
  SLOTH_TLS_CA, SLOTH_TLS_CERT, SLOTH_TLS_KEY
                           defaults for --tls-ca, --tls-cert, --tls-key
  SLOTH_LUA_TIMEOUT        longest the workflow file may take to load (default 10s)
  SLOTH_LUA_MEMORY         memory each Lua state may use (default 256M; e.g. 512M, 1G)
  SLOTH_SYNC_MAX_BYTES, SLOTH_SYNC_MAX_ENTRIES, SLOTH_SYNC_MAX_FILE_BYTES
                           limits on what agents send back (defaults 64G, 1000000, 16G)
  NO_COLOR                 no colours
${EXIT_CODES_HELP}`;

/** For the commands that only load a workflow. */
const LOAD_ENVIRONMENT = `
Environment:
  SLOTH_LUA_TIMEOUT        longest the workflow file may take to load (default 10s)
  SLOTH_LUA_MEMORY         memory each Lua state may use (default 256M; e.g. 512M, 1G)`;

export const LIST_HELP = `
Example:
  sloth-runner list -f ci.lua
${LOAD_ENVIRONMENT}`;

export const VALIDATE_HELP = `
Example:
  sloth-runner validate -f ci.lua && echo ok     exits 2 and says why if it is not
${LOAD_ENVIRONMENT}`;

export const AGENT_START_HELP = `
Examples:
  sloth-runner agent                                    127.0.0.1:50051, for masters of this user
  SLOTH_AGENT_TOKEN=s3cret sloth-runner agent --bind 0.0.0.0
  sloth-agent -p 50051 --bind 10.0.0.5 --token-file /etc/sloth/token \\
      --tls-cert agent.pem --tls-key agent-key.pem

Listening anywhere but loopback needs a token (--token-file or SLOTH_AGENT_TOKEN),
or --tls-client-ca, or --insecure. Tasks run in a temporary copy of the master's
directory under --work-root; shell commands run under bubblewrap when it works,
and as nobody when the agent runs as root (--task-user).
SIGINT or SIGTERM: running jobs are cancelled, then the agent exits.

Environment:
  SLOTH_AGENT_TOKEN        the token masters must send (if no --token-file); tasks never see it,
                           but it stays in the agent's /proc/PID/environ: prefer --token-file
  SLOTH_LUA_TIMEOUT, SLOTH_LUA_MEMORY
                           limits of the Lua of the jobs it runs (see sloth-runner --help)
  TMPDIR                   default --work-root`;

export const PING_HELP = `
Example:
  sloth-runner agent ping 10.0.0.5:50051 --token-file ~/.config/sloth/token
Exit code 0 when it answers, 1 when it does not (the reason is printed).`;

export const NEW_HELP = `
Example:
  sloth-runner new my-pipeline
  sloth-runner agent &                  the agent its "build" task runs on
  sloth-runner run -f my-pipeline/workflow.lua`;

export const TYPES_HELP = `
Example (in the directory of your workflows):
  sloth-runner types        writes .sloth/sloth.lua and, if missing, .luarc.json
Then open the directory in VS Code with the "Lua" extension (sumneko.lua): it reads
.luarc.json and completes TaskDefinitions, task fields and every module function.`;

export const COMPLETION_HELP = `
Examples:
  source <(sloth-runner completion bash)           this shell (add it to ~/.bashrc to keep it)
  sloth-runner completion bash > ~/.local/share/bash-completion/completions/sloth-runner
  sloth-runner completion zsh > "\${fpath[1]}/_sloth-runner"
  sloth-runner completion fish > ~/.config/fish/completions/sloth-runner.fish
Completing -g and -t runs \`sloth-runner list\` on the workflow (its top-level Lua);
SLOTH_COMPLETION_NO_LIST=1 turns that off.`;

export const AGENT_HELP = `
Examples:
  sloth-runner agent -p 50051              an agent (agent start; its options: agent start --help)
  sloth-runner agent ping 127.0.0.1:50051  is it up? version and running jobs`;

export const VERSION_HELP = `
Example:
  sloth-runner version     sloth-runner 0.1.0 (deno 2.9.6); --version prints the number alone`;

export const AGENTS_HELP = `
Every agent of the inventory, and every member DNS gives a dns pool, is asked at once.
Examples:
  sloth-runner agents -i fleet.yaml
  sloth-runner agents -o json | jq '.[] | select(.reachable | not) | .name'
Each agent's token: its token_env variable, else SLOTH_AGENT_TOKEN.
Exit code 0 when every agent answers, 1 when any does not (the reason is on its row).`;

export const EXEC_HELP = `
TARGET is an agent or a pool of the inventory, or host:port. A pool means one
member (reachable, least loaded), like delegate_to = { pool = ... }; --each means
every member, like { each = ... }. One argument is a shell line; several are
quoted and run as one command. Nothing is sent unless --sync DIR; nothing comes back.
Examples:
  sloth-runner exec web --each -- uptime
  sloth-runner exec build-1 -- "df -h / | tail -1"
  sloth-runner exec web --each --sync ./scripts -- sh check.sh
Output lines are prefixed with the agent's name; each host's result goes to stderr.
Exit code 0 when every host succeeded, 1 when any failed, 130 when interrupted.`;
