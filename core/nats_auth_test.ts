import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/kit/mod.ts";
import {
  externalNatsExample,
  isUserPublicKey,
  joinPermissions,
  managerPermissions,
  newNkeyUser,
  nodePermissions,
  publicKeyOf,
  renderAuthorization,
} from "./nats_auth.ts";

Deno.test("renderAuthorization() writes a configuration nats-server accepts", async () => {
  await using dir = await tempDir();
  const text = renderAuthorization([
    { nkey: newNkeyUser().publicKey, permissions: managerPermissions(), comment: "the manager" },
    { nkey: newNkeyUser().publicKey, permissions: joinPermissions() },
    { user: "node-a", password: "secret", permissions: nodePermissions("a") },
  ]);
  const file = join(dir.path, "t.conf");
  await Deno.writeTextFile(file, `listen: "127.0.0.1:-1"\n${text}`);
  const out = await new Deno.Command("nats-server", { args: ["-t", "-c", file], stdout: "piped", stderr: "piped" })
    .output();
  const said = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, said);
  assert.match(text, /"parallelic\.node\.a\.logs"/);
});

Deno.test("nodePermissions() names only the node's own subjects, and no JetStream or object-store subject", () => {
  const p = nodePermissions("n1");
  assert.ok(
    // Only its own subjects, served by the manager: none that JetStream answers (log chunks too go through the manager).
    p.publish.every((s) => s.startsWith("parallelic.node.n1.")),
    String(p.publish),
  );
  assert.ok(!p.publish.some((s) => s.startsWith("$") || s.includes(">")), String(p.publish));
  assert.deepEqual(p.subscribe, [
    "parallelic.node.n1.assign",
    "parallelic.node.n1.kill",
    "parallelic.node.n1.rejoin",
    "parallelic.node.n1.drain",
    "_INBOX_n1.>",
  ]);
  assert.ok(
    p.publish.includes("parallelic.node.n1.objects.read") && p.publish.includes("parallelic.node.n1.objects.write"),
  );
});

Deno.test("publicKeyOf() turns a seed into its public key and refuses anything else", () => {
  const u = newNkeyUser();
  assert.equal(publicKeyOf(u.seed), u.publicKey);
  assert.ok(isUserPublicKey(u.publicKey));
  assert.ok(!isUserPublicKey("UNOTAKEY"));
  assert.throws(() => publicKeyOf("not a seed"), /not an nkey user seed/);
});

Deno.test("docs/operations.md shows the external server's users exactly as the code renders them", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/operations.md", import.meta.url));
  assert.ok(doc.includes(externalNatsExample()), "docs/operations.md's external NATS configuration is out of date");
});
