import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/kit/mod.ts";
import { ValidationError } from "./errors.ts";
import { readTar, type TarSource, tarStream } from "./tar.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const source = (path: string, content: Uint8Array, mode = 0o644): TarSource => ({
  path,
  size: content.byteLength,
  mode,
  open: () => ReadableStream.from([content]),
});

async function readAll(stream: ReadableStream<Uint8Array>) {
  const out: Array<{ path: string; type: string; mode: number; content: Uint8Array }> = [];
  for await (const entry of readTar(stream)) {
    out.push({ ...entry, content: new Uint8Array(await new Response(entry.body).arrayBuffer()) });
  }
  return out;
}

const longDir = "d".repeat(120);
const veryLong = `${"x".repeat(150)}/${"y".repeat(150)}/file.bin`;
const big = new Uint8Array(700_000).map((_, i) => i % 251);

Deno.test("tarStream() and readTar() round-trip long paths, unicode, empty and large files", async () => {
  const files = [
    source("a.txt", bytes("hello")),
    source("empty", new Uint8Array(0)),
    source(`${longDir}/short.txt`, bytes("split into prefix and name")),
    source(veryLong, bytes("needs a PAX record")),
    source("ünïcödé/ファイル.txt", bytes("utf-8")),
    source("run.sh", bytes("#!/bin/sh\n"), 0o755),
    source("big.bin", big),
  ];
  const entries = await readAll(tarStream(files));
  assert.deepEqual(entries.map((e) => e.path), files.map((f) => f.path));
  assert.deepEqual(entries[6].content, big);
  assert.equal(new TextDecoder().decode(entries[3].content), "needs a PAX record");
  assert.equal(entries[5].mode, 0o755);
  assert.equal(entries[1].content.length, 0);
});

Deno.test("tarStream() output is read by the system tar, and readTar() reads GNU tar's long names", async () => {
  await using dir = await tempDir();
  const archive = join(dir.path, "ours.tar");
  await tarStream([source(veryLong, bytes("pax")), source("plain.txt", bytes("plain"))])
    .pipeTo((await Deno.open(archive, { write: true, create: true })).writable);
  const listed = await new Deno.Command("tar", { args: ["-tf", archive], stdout: "piped" }).output();
  assert.deepEqual(new TextDecoder().decode(listed.stdout).trim().split("\n"), [veryLong, "plain.txt"]);

  const tree = join(dir.path, "tree");
  const gnuPath = `${"g".repeat(110)}/${"h".repeat(110)}.txt`;
  await Deno.mkdir(join(tree, "g".repeat(110)), { recursive: true });
  await Deno.writeTextFile(join(tree, gnuPath), "gnu long name");
  const made = await new Deno.Command("tar", { args: ["--format=gnu", "-cf", "-", "-C", tree, "."], stdout: "piped" })
    .output();
  const entries = await readAll(ReadableStream.from([made.stdout]));
  const file = entries.find((e) => e.type === "file")!;
  assert.equal(file.path, `./${gnuPath}`);
  assert.equal(new TextDecoder().decode(file.content), "gnu long name");
  assert.ok(entries.some((e) => e.type === "dir"));
});

Deno.test("readTar() skips unread bodies and refuses garbage and truncated input", async () => {
  const stream = tarStream([source("one", bytes("1".repeat(1000))), source("two", bytes("2"))]);
  const names: string[] = [];
  for await (const entry of readTar(stream)) names.push(entry.path);
  assert.deepEqual(names, ["one", "two"]);

  await assert.rejects(readAll(ReadableStream.from([new Uint8Array(512).fill(65)])), /not a tar header/);
  const whole = new Uint8Array(await new Response(tarStream([source("f", big)])).arrayBuffer());
  await assert.rejects(
    readAll(ReadableStream.from([whole.subarray(0, 5000)])),
    (e) => e instanceof ValidationError && /ends in the middle of an entry/.test(e.message),
  );
});

Deno.test("tarStream() fails when a file is not the size it declared", async () => {
  const lying: TarSource = { path: "f", size: 10, open: () => ReadableStream.from([bytes("short")]) };
  await assert.rejects(new Response(tarStream([lying])).arrayBuffer(), /changed size while being read/);
});
