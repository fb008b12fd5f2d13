/**
 * End to end: `[resources]` hold on a node: CPUs pinned and thread pools
 * sized, GPUs of their own per instance (a fake nvidia-smi on PATH), memory
 * enforced, and what each attempt used recorded and shown.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { InstanceView, NodeRecord } from "../core/schema.ts";
import {
  listInstances,
  makeZip,
  nodesReady,
  runCli,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const logOf = async (tm: { api(path: string): Promise<Response> }, id: string, index: number) =>
  await (await tm.api(`/api/v1/tasks/${id}/instances/${index}/logs`)).text();

Deno.test({
  name: "a cpus = 1 instance sees one CPU of its own and thread pools of one; usage is recorded and shown",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    await using _node = startNodeProcess(tm.manager.natsUrl, "cpu-node", join(work.path, "n"), ["--slots=2"]);
    await nodesReady(tm.api, 1);
    const zip = await makeZip({
      "task.toml": `[task]\nname = "pin"\nentrypoint = "run.sh"\ninstances = 2\n[resources]\ncpus = 1\n` +
        `[env]\nMKL_NUM_THREADS = "7"\n`,
      "run.sh": {
        mode: 0o755,
        content: `#!/bin/sh\n` +
          // Burns CPU for a moment, so that both instances run at once and the usage is measurable.
          `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done\n` +
          `echo "nproc=$(nproc) omp=$OMP_NUM_THREADS mkl=$MKL_NUM_THREADS openblas=$OPENBLAS_NUM_THREADS"\n` +
          `grep Cpus_allowed_list /proc/self/status\n`,
      },
    });
    const res = await submitZip(tm, zip, "pin");
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = await res.json();
    const task = await tm.waitForTask(id);
    assert.equal(task.state, "succeeded");
    const cpus = new Set<string>();
    for (const i of [0, 1]) {
      const log = await logOf(tm, id, i);
      assert.match(log, /nproc=1 omp=1 mkl=7 openblas=1/, "[env] keeps its own MKL_NUM_THREADS");
      cpus.add(/Cpus_allowed_list:\s*(\S+)/.exec(log)![1]);
    }
    assert.equal(cpus.size, 2, `two instances at once on two CPUs share none: ${[...cpus]}`);
    for (const inst of await listInstances(tm.api, id)) {
      const last = inst.history.at(-1)!;
      assert.ok((last.cpuMs ?? 0) > 0, `instance ${inst.index} cpuMs ${last.cpuMs}`);
      assert.ok((last.maxRssBytes ?? 0) > 0, `instance ${inst.index} maxRssBytes ${last.maxRssBytes}`);
    }
    assert.ok((task.cpuMs ?? 0) > 0 && (task.wallMs ?? 0) > 0 && (task.maxRssBytes ?? 0) > 0, JSON.stringify(task));
    const status = await runCli(tm, "status", id);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /Usage\s+CPU [\d.]+s of [\d.]+s asked \(1 cpus × wall\), efficiency [\d.]+%/);
    const metrics = await (await tm.api("/metrics")).text();
    assert.match(metrics, /parallelic_instance_cpu_seconds_total\{owner="admin"\} [\d.e-]+/);
  },
});

Deno.test({
  name: "on a fake two-GPU node two gpus = 1 instances get distinct devices; an instance over its memory fails",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const bin = join(work.path, "bin");
    await Deno.mkdir(bin);
    await Deno.writeTextFile(
      join(bin, "nvidia-smi"),
      `#!/bin/sh\necho "0, GPU-aaaa-0001, NVIDIA Fake A100, 40960"\necho "1, GPU-aaaa-0002, NVIDIA Fake A100, 40960"\n`,
      { mode: 0o755 },
    );
    await using _node = startNodeProcess(tm.manager.natsUrl, "gpu-node", join(work.path, "n"), ["--slots=2"], {
      PATH: `${bin}:${Deno.env.get("PATH")}`,
    });
    const [node] = await nodesReady(tm.api, 1) as NodeRecord[];
    assert.equal(node.gpus, 2);
    assert.deepEqual(node.gpuDevices?.map((g) => g.uuid), ["GPU-aaaa-0001", "GPU-aaaa-0002"]);
    assert.ok(node.limits, "the node says how it holds limits");

    const gpuZip = await makeZip({
      "task.toml": `[task]\nname = "gpu"\nentrypoint = "run.sh"\ninstances = 2\n[resources]\ngpus = 1\n`,
      "run.sh": {
        mode: 0o755,
        content: `#!/bin/sh\nsleep 0.5\necho "cuda=$CUDA_VISIBLE_DEVICES nv=$NVIDIA_VISIBLE_DEVICES"\n`,
      },
    });
    const gpuRes = await submitZip(tm, gpuZip, "gpu");
    assert.equal(gpuRes.status, 201, await gpuRes.clone().text());
    const gpuTask = await tm.waitForTask((await gpuRes.json()).id);
    assert.equal(gpuTask.state, "succeeded");
    const seen = new Set<string>();
    for (const i of [0, 1]) {
      const m = /cuda=(\d+) nv=(\d+)/.exec(await logOf(tm, gpuTask.id, i));
      assert.ok(m && m[1] === m[2], `instance ${i} sees one device in both variables`);
      seen.add(m[1]);
    }
    assert.deepEqual([...seen].sort(), ["0", "1"]);

    // Touches 200 MiB, more than three times its 64 MiB, and holds it.
    const memZip = await makeZip({
      "task.toml": `[task]\nname = "mem"\nentrypoint = "run.sh"\n[resources]\nmemory = "64MiB"\n`,
      "run.sh": {
        mode: 0o755,
        content: `#!/bin/sh\nexec python3 -c "import time; b = b'x' * (200 * 2 ** 20); time.sleep(30)"\n`,
      },
    });
    const memRes = await submitZip(tm, memZip, "mem");
    assert.equal(memRes.status, 201, await memRes.clone().text());
    const memTask = await tm.waitForTask((await memRes.json()).id);
    assert.equal(memTask.state, "failed");
    const [inst] = await listInstances(tm.api, memTask.id) as InstanceView[];
    assert.match(inst.history[0].error ?? "", /^exceeded its memory of 64 MiB \(peak \d+ MiB\)$/);
    assert.ok((inst.history[0].maxRssBytes ?? 0) > 64 * 2 ** 20, `peak ${inst.history[0].maxRssBytes}`);
  },
});
