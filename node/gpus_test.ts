import assert from "node:assert/strict";
import { join } from "node:path";
import { createGpuPool, gpuEnv, listGpus, parseGpus } from "./gpus.ts";

Deno.test("nvidia-smi's CSV is parsed; names may hold commas; lines that do not parse are skipped", () => {
  const gpus = parseGpus(
    "0, GPU-1111, NVIDIA A100-SXM4-40GB, 40960\n1, GPU-2222, Tesla, rev 2, 16384\nNo devices were found\n\n",
  );
  assert.deepEqual(gpus, [
    { index: 0, uuid: "GPU-1111", name: "NVIDIA A100-SXM4-40GB", memoryMiB: 40960 },
    { index: 1, uuid: "GPU-2222", name: "Tesla, rev 2", memoryMiB: 16384 },
  ]);
  assert.deepEqual(parseGpus("x, y\n"), []);
});

Deno.test("no GPUs when nvidia-smi is missing or fails", async () => {
  assert.deepEqual(await listGpus("/nonexistent/nvidia-smi"), []);
  const dir = await Deno.makeTempDir();
  try {
    const failing = join(dir, "nvidia-smi");
    await Deno.writeTextFile(failing, "#!/bin/sh\necho '0, GPU-1, X, 1'\nexit 9\n", { mode: 0o755 });
    assert.deepEqual(await listGpus(failing), []);
    const working = join(dir, "ok");
    await Deno.writeTextFile(
      working,
      `#!/bin/sh\n[ "$1" = "--query-gpu=index,uuid,name,memory.total" ] && echo '3, GPU-9, X, 1'\n`,
      {
        mode: 0o755,
      },
    );
    assert.deepEqual((await listGpus(working)).map((g) => g.index), [3]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("each GPU goes to one instance at a time; the environment names those given", () => {
  const pool = createGpuPool([0, 1, 2]);
  const a = pool.take(2)!;
  assert.deepEqual(a, [0, 1]);
  assert.equal(pool.take(2), null, "only one is free");
  assert.deepEqual(pool.take(1), [2]);
  pool.release(a);
  assert.equal(pool.free, 2);
  const env: Record<string, string> = {};
  gpuEnv(env, [1, 2]);
  assert.equal(env.CUDA_VISIBLE_DEVICES, "1,2");
  assert.equal(env.NVIDIA_VISIBLE_DEVICES, "1,2");
  gpuEnv(env, []);
  assert.equal(env.CUDA_VISIBLE_DEVICES, "", "an instance that asked for none sees none");
});
