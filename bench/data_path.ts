/**
 * Data-path memory benchmark: a data set of one large file (1 GiB
 * by default) is uploaded the way `parallelic data put` does it, then one
 * node fetches it for a task. It reports
 *
 * - the peak resident memory (VmHWM in /proc/PID/status) of the manager
 *   process and of the node process (target: under 300 MiB each);
 * - the upload and the fetch rate in MB/s, each as a fraction of a plain
 *   object-store put and get of the same file on the same NATS server
 *   (`@nats-io/obj` put and get, native SHA-256, 1 MiB chunks, file to file).
 *
 * The manager (with its embedded nats-server, whose memory is not counted)
 * and the node run as their own processes, started from this checkout.
 *
 *   deno run -A bench/data_path.ts [--size-mib 1024] [--record]
 *
 * `--record` appends the figures, with the command, the date, the commit and
 * the load average, in bench/results/runs.md.
 *
 * @module
 */
import { StorageType } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import { connect } from "@nats-io/transport-node";
import { join } from "node:path";
import { startNatsServer } from "../core/nats_server.ts";
import { parseArgs } from "../cli/args.ts";
import { Client } from "../cli/client.ts";
import { dataSources } from "../cli/data.ts";
import { CHUNK_BYTES } from "../core/objects.ts";
import { zipFolder } from "../core/package_zip.ts";
import { tarStream } from "../core/tar.ts";
import { removeTree } from "../node/readonly.ts";
import { ROOT, RUNS_FILE } from "./_util.ts";
import { startMainProcess } from "../tools/main_process.ts";

const TOKEN = "bench-data-path-token";
const MiB = 2 ** 20;

/** What one run measured. */
export interface DataPathResult {
  sizeBytes: number;
  /** Seconds. */
  plainPut: number;
  plainGet: number;
  upload: number;
  fetch: number;
  /** Peak resident memory, bytes. */
  managerPeakBytes: number;
  nodePeakBytes: number;
}

/** Peak resident memory of a live process, in bytes (VmHWM). */
export async function peakRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** A child process whose output is kept, with a way to wait for a line (`tools/main_process.ts`). */
export function spawn(args: string[], env: Record<string, string> = {}) {
  const process = startMainProcess(args, { env });
  return { child: process.child, waitFor: process.waitFor, stop: () => process.kill(), output: process.output };
}

/** Writes `bytes` of real data (not sparse), 1 MiB at a time, each MiB different. */
export async function writeFile(path: string, bytes: number) {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = new Uint8Array(MiB);
  crypto.getRandomValues(block.subarray(0, 65536));
  for (let i = 65536; i < MiB; i += 65536) block.copyWithin(i, 0, 65536);
  for (let n = 0; n * MiB < bytes; n++) {
    new DataView(block.buffer).setUint32(0, n);
    await file.write(block.subarray(0, Math.min(MiB, bytes - n * MiB)));
  }
  file.close();
}

/** Runs the benchmark once. */
export async function runDataPath(sizeBytes: number): Promise<DataPathResult> {
  const tmp = await Deno.makeTempDir({ prefix: "parallelic-bench-data-" });
  const stops: Array<() => Promise<void>> = [];
  try {
    const setDir = join(tmp, "set");
    await Deno.mkdir(setDir);
    const file = join(setDir, "big.bin");
    await writeFile(file, sizeBytes);

    // A nats-server of the benchmark's own, without users, so that the plain object-store baseline runs on it too.
    const natsServer = await startNatsServer({ storeDir: join(tmp, "nats"), port: 0 });
    stops.push(() => natsServer.stop());
    const natsUrl = natsServer.url;
    const manager = spawn(
      ["manager", `--data-dir=${join(tmp, "manager")}`, "--port=0", `--nats=${natsUrl}`, "--no-local-node"],
      { PARALLELIC_TOKEN: TOKEN },
    );
    stops.push(manager.stop);
    const url = (await manager.waitFor(/gateway:\s+(http:\/\/\S+)/, "the manager"))[1];
    const node = spawn([
      "node",
      `--nats=${natsUrl}`,
      "--name=bench-data",
      `--work-dir=${join(tmp, "node")}`,
      "--slots=1",
      `--cache-size=${2 * sizeBytes + MiB}`,
    ]);
    stops.push(node.stop);
    await node.waitFor(/node:registered/, "the node");

    // The plain object store, on the same server: put from the file, get into a file.
    const nc = await connect({ servers: natsUrl });
    stops.push(() => nc.close());
    const plain = await new Objm(nc).create("bench-plain", { storage: StorageType.File });
    let t0 = performance.now();
    await plain.put({ name: "big", options: { max_chunk_size: CHUNK_BYTES } }, (await Deno.open(file)).readable);
    const plainPut = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const got = (await plain.get("big"))!;
    await got.data.pipeTo((await Deno.open(join(tmp, "plain-copy.bin"), { write: true, create: true })).writable);
    const plainGet = (performance.now() - t0) / 1000;
    await plain.destroy();
    await Deno.remove(join(tmp, "plain-copy.bin"));

    // Parallelic: the CLI's upload (a streamed tar over HTTP), then one node fetching it for a task.
    const client = new Client({ manager: url, token: TOKEN });
    const { sources } = await dataSources(setDir);
    t0 = performance.now();
    await (await client.upload("/api/v1/data/bench", {
      headers: { "content-type": "application/x-tar" },
      body: tarStream(sources),
    })).json();
    const upload = (performance.now() - t0) / 1000;
    const pkgDir = join(tmp, "pkg");
    await Deno.mkdir(pkgDir);
    await Deno.writeTextFile(join(pkgDir, "task.toml"), `[task]\nentrypoint = "run.sh"\n[data]\nbig = "bench"\n`);
    await Deno.writeTextFile(
      join(pkgDir, "run.sh"),
      `#!/bin/sh\ntest "$(wc -c < "$PARALLELIC_DATA_BIG/big.bin")" = ${sizeBytes}\n`,
      { mode: 0o755 },
    );
    const pkg = await zipFolder(pkgDir);
    const { id } = await (await client.fetch("/api/v1/tasks", {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: pkg as Uint8Array<ArrayBuffer>,
    })).json();
    const fetched = await node.waitFor(/node:data-fetched .*bytes=(\d+) ms=(\d+)/, "the fetch", 600_000);
    for (;;) {
      const task = await client.json<{ state: string }>(`/api/v1/tasks/${id}`);
      if (task.state === "succeeded") break;
      if (task.state !== "running" && task.state !== "queued") throw new Error(`The task ${task.state}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      sizeBytes,
      plainPut,
      plainGet,
      upload,
      fetch: Number(fetched[2]) / 1000,
      managerPeakBytes: await peakRss(manager.child.pid),
      nodePeakBytes: await peakRss(node.child.pid),
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await removeTree(tmp);
  }
}

/** The result as a Markdown table. */
export function resultTable(r: DataPathResult): string {
  const mbs = (secs: number) => (r.sizeBytes / 1e6 / secs).toFixed(0);
  const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
  return [
    "| what | time | MB/s | of plain object store |",
    "| --- | --- | --- | --- |",
    `| plain object-store put | ${r.plainPut.toFixed(2)} s | ${mbs(r.plainPut)} | 1.00 |`,
    `| plain object-store get | ${r.plainGet.toFixed(2)} s | ${mbs(r.plainGet)} | 1.00 |`,
    `| data put (HTTP upload, stored) | ${r.upload.toFixed(2)} s | ${mbs(r.upload)} | ${
      (r.plainPut / r.upload).toFixed(2)
    } |`,
    `| node fetch (to its cache) | ${r.fetch.toFixed(2)} s | ${mbs(r.fetch)} | ${(r.plainGet / r.fetch).toFixed(2)} |`,
    "",
    "| process | peak resident memory (VmHWM) | target |",
    "| --- | --- | --- |",
    `| manager | ${mib(r.managerPeakBytes)} | < 300 MiB |`,
    `| node | ${mib(r.nodePeakBytes)} | < 300 MiB |`,
  ].join("\n");
}

async function sh(cmd: string): Promise<string> {
  const out = await new Deno.Command("bash", { args: ["-c", cmd], stdout: "piped", stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

if (import.meta.main) {
  const p = parseArgs(Deno.args, { "size-mib": "string", record: "boolean" });
  const sizeMib = Number(p.flags["size-mib"] ?? 1024);
  const result = await runDataPath(sizeMib * MiB);
  const table = resultTable(result);
  console.log(table);
  if (p.flags.record) {
    const command = `deno run -A bench/data_path.ts${p.flags["size-mib"] ? ` --size-mib ${sizeMib}` : ""} --record`;
    const machine = {
      cores: await sh("nproc"),
      ram: await sh("free -g | awk '/Mem:/{print $2}'"),
      load: await sh("cut -d' ' -f1-3 /proc/loadavg"),
      commit: await sh(`git -C ${ROOT} rev-parse --short HEAD`),
    };
    const entry = [
      `### data_path — ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`,
      "",
      `\`${command}\` on ${machine.cores} cores, ${machine.ram} GiB RAM, load ${machine.load}, commit ${machine.commit}; ` +
      `${sizeMib} MiB data set, one file.`,
      "",
      table,
      "",
    ].join("\n");
    const file = RUNS_FILE;
    const text = await Deno.readTextFile(file).catch(() => "# Benchmark runs\n");
    await Deno.writeTextFile(file, `${text.trimEnd()}\n\n${entry}`);
    console.log(`Recorded in ${file}`);
  }
}
