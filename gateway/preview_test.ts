import assert from "node:assert/strict";
import { NotFoundError } from "../core/errors.ts";
import { makePng, pngSize } from "../tests/kit/png.ts";
import { createPreviewCache, findMagick, makePreview } from "./preview.ts";

const streamOf = (bytes: Uint8Array) => new Blob([bytes as Uint8Array<ArrayBuffer>]).stream();

Deno.test("a PNG preview is at most the size asked for (scaled by ImageMagick when installed)", async () => {
  const png = await makePng(600, 300, [200, 40, 40]);
  const preview = await makePreview("'a.png'", "png", png.length, streamOf(png), 128);
  assert.equal(preview.type, "image/png");
  const { width, height } = pngSize(preview.bytes);
  if (await findMagick()) assert.deepEqual([width, height], [128, 64]);
  else assert.deepEqual([width, height], [600, 300], "served as it is");
});

Deno.test("a broken image gives a clear 'no preview' error, never a crash", async () => {
  const junk = new TextEncoder().encode("this is not a picture at all");
  const error = await makePreview("'bad.png'", "png", junk.length, streamOf(junk), 128).then(
    () => null,
    (e) => e,
  );
  if (!(await findMagick())) return assert.equal(error, null, "without ImageMagick a small file is served as it is");
  assert.ok(error instanceof NotFoundError);
  assert.equal(error.code, "preview_unavailable");
  assert.match(error.message, /^No preview of 'bad\.png': ImageMagick could not read it/);
});

Deno.test("an EXR preview says what to install when nothing here reads EXR", async () => {
  const magick = await findMagick();
  const junk = new Uint8Array(64);
  const error = await makePreview("'a.exr'", "exr", junk.length, streamOf(junk), 128).then(() => null, (e) => e);
  assert.ok(error instanceof NotFoundError);
  if (!magick?.exr) assert.match(error.message, /no preview for EXR: install imagemagick with OpenEXR/);
  else assert.match(error.message, /ImageMagick could not read it/);
});

Deno.test("an image over the size a preview reads is refused before it is read", async () => {
  const error = await makePreview("'huge.png'", "png", 2 ** 30, streamOf(new Uint8Array(8)), 128).then(
    () => null,
    (e) => e,
  );
  assert.match(String(error?.message), /it is over 256 MiB/);
});

Deno.test("the preview cache keeps the most recently used within its bytes", () => {
  const cache = createPreviewCache(8000);
  const of = (n: number) => ({ bytes: new Uint8Array(n), type: "image/png" });
  cache.set("a", of(900));
  cache.set("b", of(900));
  cache.get("a");
  for (const k of ["c", "d", "e", "f", "g", "h", "i"]) cache.set(k, of(900));
  assert.ok(cache.bytes <= 8000);
  assert.ok(cache.get("a"), "recently read: kept");
  assert.equal(cache.get("b"), undefined, "least recently used: dropped");
  cache.set("big", of(1001));
  assert.equal(cache.get("big"), undefined, "over an eighth of the cache: not kept");
});
