import assert from "node:assert/strict";
import { chooseTaskUser, lookupUser, switchUserArgv, type TaskUserError } from "./task_user.ts";

const nobody = await lookupUser("nobody");

Deno.test({
  name: "chooseTaskUser() gives tasks of a root agent to nobody unless told otherwise",
  ignore: nobody === undefined,
}, async () => {
  assert.deepEqual(await chooseTaskUser(undefined, 0), { user: nobody, name: "nobody" });
  assert.deepEqual(await chooseTaskUser("nobody", 0), { user: nobody, name: "nobody" });
  assert.deepEqual(await chooseTaskUser(String(nobody!.uid), 0), {
    user: nobody,
    name: "nobody",
  });
  assert.deepEqual(await chooseTaskUser(`nobody:${nobody!.gid + 1}`, 0), {
    user: { ...nobody!, gid: nobody!.gid + 1 },
    name: "nobody",
  });
});

Deno.test("chooseTaskUser() takes root only when asked, with a warning, and switches to no one", async () => {
  const choice = await chooseTaskUser("root", 0);
  assert.equal(choice.user, undefined);
  assert.equal(choice.name, "root");
  assert.match(
    choice.warning ?? "",
    /^WARNING: --task-user root: tasks' shell commands run as root/,
  );
});

Deno.test({
  name: "chooseTaskUser() of an agent that is not root: its own user, and no other",
  ignore: nobody === undefined,
}, async () => {
  const self = await chooseTaskUser(undefined, nobody!.uid);
  assert.deepEqual(self, { name: "nobody" });
  assert.deepEqual(await chooseTaskUser("nobody", nobody!.uid), { name: "nobody" });
  await assert.rejects(
    chooseTaskUser("root", nobody!.uid),
    (e: TaskUserError) =>
      /--task-user root: the agent runs as nobody, not root, so its tasks run as nobody/.test(
        e.message,
      ) && /start the agent as root/.test(e.hint ?? ""),
  );
});

Deno.test("chooseTaskUser() refuses users and groups that do not exist, and malformed values", async () => {
  const refuses = (spec: string, pattern: RegExp) =>
    assert.rejects(chooseTaskUser(spec, 0), (e: TaskUserError) => pattern.test(e.message));
  await refuses("no-such-user-sloth", /--task-user no-such-user-sloth: no such user/);
  await refuses("4000000123", /uid 4000000123 has no entry in the user database/);
  await refuses("root:no-such-group-sloth", /no such group no-such-group-sloth/);
  await refuses("a:b:c", /is not USER, UID, USER:GROUP or UID:GID/);
  await refuses(":0", /is not USER/);
  // A uid without an entry is fine with its group given.
  assert.deepEqual(await chooseTaskUser("4000000123:4000000123", 0), {
    user: { name: "4000000123", uid: 4000000123, gid: 4000000123 },
    name: "4000000123",
  });
});

Deno.test({
  name: "switchUserArgv() leaves no groups, capabilities or new privileges",
  ignore: Deno.build.os !== "linux",
}, () => {
  assert.deepEqual(switchUserArgv(undefined), []);
  const argv = switchUserArgv({ name: "x", uid: 1234, gid: 5678 });
  assert.match(argv[0], /setpriv$/);
  assert.deepEqual(argv.slice(1), [
    "--reuid=1234",
    "--regid=5678",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
    "--",
  ]);
});
