/**
 * The global modules of the Go sloth-runner that sloth-runner does not provide,
 * and what to write instead. One table for the three places that name them: the
 * check of a workflow's files before it runs (globals.ts), `require("pulumi")`
 * and a read of the global while Lua runs (the prelude, through host.ts).
 *
 * Names from the Go tool's Lua interface (its `L.SetGlobal`, `PreloadModule` and
 * "load every module globally" lists, and its module docs). Names it shares with
 * Lua's own libraries (`math`, `string`) or with ours (`log`, `exec`, `fs`,
 * `data`, `net`, `goroutine`) are not here.
 */
export const GO_MODULES: Readonly<Record<string, string>> = {
  ai: 'exec.run("...") with the tool you use',
  async: "the goroutine module (goroutine.async, goroutine.await)",
  aws: 'exec.run("aws ...")',
  azure: 'exec.run("az ...")',
  chain: "depends_on between tasks",
  circuit: "a task's retries and retry_strategy",
  cmd: 'exec.run("...")',
  core: "exec.run(cmd), fs and os.getenv(name)",
  cron: 'exec.run("crontab ...")',
  crypto: 'exec.run("sha256sum ...") or exec.run("openssl ...")',
  database: 'exec.run("psql ...") (or sqlite3, mysql)',
  db: 'exec.run("psql ...") (or sqlite3, mysql)',
  digitalocean: 'exec.run("doctl ...")',
  docker: 'exec.run("docker ...")',
  event: "a task's post_exec function, or log.info(...)",
  export: 'a task\'s outputs (return true, "done", { key = value })',
  facts: 'exec.run("hostname"), exec.run("uname -a") or os.getenv(...)',
  file_ops: 'fs (fs.write, fs.copy, fs.mkdir, ...) or exec.run("chmod ...")',
  firewall: 'exec.run("ufw ...") or exec.run("iptables ...")',
  flow: "depends_on, run_if and next_if_fail",
  frp: 'exec.run("frpc ...")',
  gcp: 'exec.run("gcloud ...")',
  git: 'exec.run("git ...")',
  gitops: 'exec.run("git ...")',
  helm: 'exec.run("helm ...")',
  help: "sloth-runner --help",
  http: "net.http_get(url) or net.http_post(url, body)",
  incus: 'exec.run("incus ...")',
  infra_test: 'exec.run("test -f ...") and return false from the task when it fails',
  kubernetes: 'exec.run("kubectl ...")',
  lvm: 'exec.run("lvcreate ...")',
  metrics: "log.info(...)",
  monitor: "log.info(...)",
  network: 'net.http_get(url) or exec.run("ping ...")',
  nixos: 'exec.run("nixos-rebuild ...")',
  notifications: "net.http_post(webhook_url, body)",
  notify: "net.http_post(webhook_url, body)",
  observability: "log.info(...)",
  parallel: "tasks with async = true, or the goroutine module",
  perf: "the run's summary (each task's duration), or os.clock()",
  pkg: 'exec.run("apt-get install -y ...") (or your system\'s package manager)',
  pulumi: 'exec.run("pulumi ...")',
  python: 'exec.run("python3 ...")',
  raid: 'exec.run("mdadm ...")',
  reliability: "a task's retries and timeout fields",
  resource: 'exec.run("...") with the tool you use',
  saga: "next_if_fail tasks that undo what failed",
  salt: 'exec.run("salt ...")',
  secrets: "os.getenv(name) (pass secrets in the environment)",
  security: 'exec.run("...") with the tool you use',
  sloth: 'exec.run("sloth-runner ...")',
  ssh: 'a task\'s delegate_to (an agent), or exec.run("ssh host ...")',
  stack: "values (-v values.yaml): read values.stack",
  state: 'a task\'s outputs (return true, "done", { key = value }) for the tasks after it, ' +
    "or fs.write and fs.read",
  stow: 'exec.run("stow ...")',
  strings: "Lua's string library (string.format, s:gsub, s:match, ...)",
  sysctl: 'exec.run("sysctl ...")',
  system: "exec.run(cmd), fs and os.getenv(name)",
  systemd: 'exec.run("systemctl ...")',
  template: "string.format(...) or s:gsub(...)",
  terraform: 'exec.run("terraform ...")',
  time: "os.time(), os.date(...) or os.clock()",
  user: 'exec.run("useradd ...")',
  validate: 'plain Lua checks (type(x) == "string", s:match(...))',
  watcher: "a watcher of your own (cron, a systemd path unit, CI) that runs sloth-runner",
  when: "a task's run_if",
  workdir: 'the task\'s workdir field, or os.getenv("SLOTH_WORKDIR")',
};

/** The one line said wherever a workflow uses such a module; `undefined` for other names. */
export function goModuleMessage(name: string): string | undefined {
  if (!Object.hasOwn(GO_MODULES, name)) return undefined;
  return `"${name}" is a module of the Go sloth-runner that sloth-runner does not provide; ` +
    `use ${GO_MODULES[name]}`;
}

/** Every module's line, by name: what the prelude raises (host.ts hands it over). */
export function goModuleMessages(): Record<string, string> {
  return Object.fromEntries(Object.keys(GO_MODULES).map((name) => [name, goModuleMessage(name)!]));
}
