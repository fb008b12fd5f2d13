import assert from "node:assert/strict";
import { ValidationError } from "../core/errors.ts";
import { boundaryOf, streamFileField } from "./multipart.ts";

/** A multipart body as the runtime writes it, and its boundary. */
async function formBody(form: FormData): Promise<{ bytes: Uint8Array; boundary: string }> {
  const req = new Request("http://x/", { method: "POST", body: form });
  return { bytes: new Uint8Array(await req.arrayBuffer()), boundary: boundaryOf(req.headers.get("content-type")!) };
}

/** `bytes` as a stream of pieces of `size` bytes. */
function pieces(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength; at += size) out.push(bytes.slice(at, at + size));
  return ReadableStream.from(out);
}

async function extract(body: ReadableStream<Uint8Array>, boundary: string, field = "package") {
  const chunks: Uint8Array[] = [];
  const filename = await streamFileField(body, boundary, field, (c) => Promise.resolve(void chunks.push(c)));
  return { filename, bytes: new Uint8Array(await new Blob(chunks as Uint8Array<ArrayBuffer>[]).arrayBuffer()) };
}

Deno.test("streamFileField() extracts the file field whatever the pieces the body arrives in", async () => {
  // Content holding what looks like delimiters, CRLFs and the boundary's dashes.
  const content = new Uint8Array(200_000).map((_, i) => i % 7 === 0 ? 13 : i % 11 === 0 ? 10 : i % 5 ? 45 : i % 256);
  const form = new FormData();
  form.append("note", "a field before");
  form.append("package", new File([content], "job.zip"));
  form.append("other", new File([new Uint8Array(10)], "after.bin"));
  const { bytes, boundary } = await formBody(form);
  for (const size of [1, 7, 64, 1000, 65536, bytes.byteLength]) {
    const got = await extract(pieces(bytes, size), boundary);
    assert.equal(got.filename, "job.zip", `pieces of ${size}`);
    assert.deepEqual(got.bytes, content, `pieces of ${size}`);
  }
});

Deno.test("streamFileField() answers null for a missing or non-file field, and refuses a broken body", async () => {
  const form = new FormData();
  form.append("package", "not a file");
  const { bytes, boundary } = await formBody(form);
  assert.equal((await extract(pieces(bytes, 100), boundary)).filename, null);
  assert.equal((await extract(pieces(bytes, 100), boundary, "absent")).filename, null);
  // Cut short: no closing boundary.
  await assert.rejects(extract(pieces(bytes.subarray(0, bytes.byteLength - 10), 100), boundary), ValidationError);
  await assert.rejects(extract(pieces(new TextEncoder().encode("no multipart here"), 4), boundary), ValidationError);
  assert.throws(() => boundaryOf("multipart/form-data"), ValidationError);
  assert.equal(boundaryOf(`multipart/form-data; boundary="a b"`), "a b");
});
