import assert from "node:assert/strict";
import { join } from "node:path";
import { systemClock } from "../../core/clock.ts";
import { AuthError, ConflictError, NotFoundError, ValidationError } from "../../core/errors.ts";
import type { TaskRecord } from "../../core/schema.ts";
import { tarStream } from "../../core/tar.ts";
import { parseTaskToml } from "../../core/task_toml.ts";
import { startTestNats, testLogger } from "../../tests/kit/mod.ts";
import { createDataService } from "./mod.ts";
import { dataSetKey } from "../../core/kv.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const file = (content: string) => {
  const bytes = new TextEncoder().encode(content);
  return tarStream([{ path: "f.txt", size: bytes.byteLength, mode: 0o644, open: () => ReadableStream.from([bytes]) }]);
};
const alice = { user: "alice", admin: false };
const bob = { user: "bob", admin: false };
const root = { user: "root", admin: true };
const submit = (data: Awaited<ReturnType<typeof createDataService>>, by: typeof alice, name = "private") => {
  const toml = `[task]\nentrypoint = "r.sh"\n[data]\nin = "${name}"\n`;
  return data.submitWith(
    parseTaskToml(toml),
    toml,
    (spec) => Promise.resolve({ id: "t", spec } as unknown as TaskRecord),
    by,
  );
};

async function setup(nats: { nc: import("@nats-io/transport-node").NatsConnection; dir: string }) {
  const kv = await Deno.openKv(join(nats.dir, "state.kv"));
  const data = await createDataService({ nc: nats.nc, kv, clock: systemClock, log: testLogger() });
  return { kv, data, [Symbol.asyncDispose]: () => Promise.resolve(kv.close()) };
}

Deno.test({
  name: "an unshared data set is seen and used only by its owner and admins; sharing opens it to every user",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    await using t = await setup(nats);
    const { kv, data } = t;
    const put = (name: string, by: typeof alice, content: string, shared?: boolean) =>
      data.put(name, file(content), { format: { kind: "tar" }, owner: by.user, admin: by.admin, shared });
    await put("private", alice, "a1");
    assert.deepEqual((await data.list(alice)).map((d) => [d.name, d.owner, d.shared]), [["private", "alice", false]]);
    assert.deepEqual(await data.list(bob), [], "bob does not see alice's data set");
    assert.equal((await data.list(root)).length, 1, "an admin sees it");
    await assert.rejects(data.get("private", bob), NotFoundError);
    await assert.rejects(
      submit(data, bob),
      (e) =>
        e instanceof ValidationError && e.code === "unknown_data_set" &&
        /key 'data.in' = "private": data set 'private' does not exist or is not shared with you/.test(e.message),
    );
    assert.equal((await submit(data, alice)).id, "t");
    assert.equal((await submit(data, root)).id, "t");
    await assert.rejects(
      put("private", bob, "b1"),
      (e) => e instanceof ConflictError && /choose another/.test(e.message),
    );
    await assert.rejects(data.remove("private", undefined, bob), NotFoundError);
    await assert.rejects(data.share("private", true, bob), NotFoundError);

    // Shared: bob sees and uses it, but neither adds versions nor changes sharing.
    assert.equal((await data.share("private", true, alice)).shared, true);
    assert.equal((await data.get("private", bob)).owner, "alice");
    assert.equal((await submit(data, bob)).id, "t");
    await assert.rejects(
      put("private", bob, "b2"),
      (e) => e instanceof AuthError && /belongs to 'alice'/.test(e.message),
    );
    await assert.rejects(data.share("private", false, bob), AuthError);
    await assert.rejects(put("private", alice, "a2", true).then(() => put("private", bob, "b3", false)), AuthError);
    // An admin may unshare it; then bob is refused again.
    assert.equal((await data.share("private", false, root)).shared, false);
    await assert.rejects(submit(data, bob), ValidationError);

    // Shared at upload.
    await put("open", bob, "o1", true);
    assert.deepEqual((await data.list(alice)).map((d) => d.name), ["open", "private"]);

    // Deleting every version forgets the owner: the name is free again.
    await data.remove("private", undefined, alice);
    assert.equal((await kv.get(dataSetKey("private"))).value, null);
    assert.equal((await put("private", bob, "b4")).created, true);
    assert.equal((await data.get("private", bob)).owner, "bob");
  },
});

Deno.test({
  name: "a data set stored before owners were kept stays shared, owned by its oldest version's owner",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    await using t = await setup(nats);
    const { kv, data } = t;
    await data.put("old", file("x"), { format: { kind: "tar" }, owner: "alice" });
    await kv.delete(dataSetKey("old")); // as the records of an earlier version have it
    const seen = await data.get("old", bob);
    assert.deepEqual([seen.owner, seen.shared], ["alice", true]);
    assert.equal((await submit(data, bob, "old")).id, "t");
    // As before, any submitter may add a version; only the owner or an admin may change its sharing.
    assert.equal((await data.put("old", file("y"), { format: { kind: "tar" }, owner: "bob" })).created, true);
    await assert.rejects(data.share("old", false, bob), AuthError);
    assert.equal((await data.share("old", false, alice)).shared, false);
    assert.deepEqual(await data.list(bob), []);
  },
});
