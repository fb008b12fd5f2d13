import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Hono } from "hono";
import { DEFAULT_PACKAGE_LIMITS } from "../core/package.ts";
import { MEMORY_BYTES, readUpload } from "./upload.ts";

/** An app that reads an upload and says where it was held and what it read. */
function app(spoolDir: string, maxPackageBytes = DEFAULT_PACKAGE_LIMITS.maxPackageBytes) {
  const hono = new Hono();
  hono.post("/", async (c) => {
    let file: string | null = null;
    {
      await using upload = await readUpload(c, { ...DEFAULT_PACKAGE_LIMITS, maxPackageBytes }, spoolDir);
      file = upload.file;
      const read = new Uint8Array(await new Response(await upload.open()).arrayBuffer());
      const spooled = [...Deno.readDirSync(spoolDir)].length;
      assert.equal(read.byteLength, upload.size);
      return c.json({ inMemory: upload.bytes !== null, spooled, digest: upload.digest, size: upload.size, file });
    }
  });
  hono.onError((e) => Response.json({ error: (e as Error).name }, { status: 500 }));
  return hono;
}

const sha = (b: Uint8Array) => `sha256-${createHash("sha256").update(b).digest("hex")}`;

Deno.test("readUpload() holds a small package in memory and spools a large one to a file it removes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const [size, inMemory] of [[1000, true], [MEMORY_BYTES + 1, false]] as const) {
      const body = new Uint8Array(size).map((_, i) => i % 251);
      const res = await app(dir).request("/", { method: "POST", headers: { "content-type": "application/zip" }, body });
      const got = await res.json();
      assert.equal(got.inMemory, inMemory, `${size} bytes`);
      assert.equal(got.spooled, inMemory ? 0 : 1);
      assert.equal(got.size, size);
      assert.equal(got.digest, sha(body));
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no spool file is left");
    }
    // Past the limit: refused, and nothing left either.
    const big = new Uint8Array(MEMORY_BYTES + 10);
    const res = await app(dir, MEMORY_BYTES + 5).request("/", { method: "POST", body: big });
    assert.deepEqual(await res.json(), { error: "TooLargeError" });
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
