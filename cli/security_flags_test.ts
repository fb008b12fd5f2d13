import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/kit/mod.ts";
import { gatewayLimits, joinToken } from "./security_flags.ts";

Deno.test("joinToken(): the file, then the flag, then PARALLELIC_JOIN_TOKEN (flags win, as everywhere)", async () => {
  await using dir = await tempDir();
  const before = Deno.env.get("PARALLELIC_JOIN_TOKEN");
  Deno.env.set("PARALLELIC_JOIN_TOKEN", "from-env");
  try {
    assert.equal(await joinToken({ "join-token": "from-flag" }), "from-flag");
    assert.equal(await joinToken({}), "from-env");
    const file = join(dir.path, "join-token");
    await Deno.writeTextFile(file, "from-file\n", { mode: 0o600 });
    assert.equal(await joinToken({ "join-token-file": file, "join-token": "from-flag" }), "from-file");
  } finally {
    if (before === undefined) Deno.env.delete("PARALLELIC_JOIN_TOKEN");
    else Deno.env.set("PARALLELIC_JOIN_TOKEN", before);
  }
});

Deno.test("gatewayLimits(): whole numbers from a configuration or raw flags; a bad one names its flag", () => {
  assert.deepEqual(gatewayLimits({ "rate-limit": 10 }), {
    maxBodyBytes: undefined,
    rate: { perSecond: 10, burst: 40 },
  });
  assert.deepEqual(gatewayLimits({ "max-body-bytes": "2048" }), { maxBodyBytes: 2048, rate: undefined });
  assert.throws(
    () => gatewayLimits({ "rate-burst": "many" }),
    /Flag '--rate-burst' must be a whole number: got 'many'/,
  );
});
