/**
 * GPUs: listed with `nvidia-smi` when the node starts, reported to the
 * manager, and handed out so that each instance asking `gpus = N` gets N
 * devices of its own in `CUDA_VISIBLE_DEVICES` and `NVIDIA_VISIBLE_DEVICES`
 * until it ends.
 *
 * @module
 */
import type { GpuDevice } from "../core/schema.ts";

/** The query the node lists its GPUs with (one CSV line per GPU). */
export const GPU_QUERY = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"];

/** Parses what {@linkcode GPU_QUERY} prints; lines that do not parse are skipped. */
export function parseGpus(csv: string): GpuDevice[] {
  const gpus: GpuDevice[] = [];
  for (const line of csv.split("\n")) {
    const fields = line.split(",").map((f) => f.trim());
    if (fields.length < 4) continue;
    // The name may hold commas: index and uuid come first, the memory last.
    const index = Number(fields[0]);
    const memoryMiB = Number(fields[fields.length - 1]);
    if (!Number.isInteger(index) || index < 0 || !fields[1]) continue;
    gpus.push({
      index,
      uuid: fields[1].slice(0, 100),
      name: fields.slice(2, -1).join(", ").slice(0, 100),
      memoryMiB: Number.isInteger(memoryMiB) && memoryMiB >= 0 ? memoryMiB : 0,
    });
  }
  return gpus;
}

/** The node's GPUs as `nvidia-smi` lists them; none when it is missing or fails. */
export async function listGpus(command = "nvidia-smi"): Promise<GpuDevice[]> {
  try {
    const out = await new Deno.Command(command, { args: GPU_QUERY, stdout: "piped", stderr: "null" }).output();
    return out.success ? parseGpus(new TextDecoder().decode(out.stdout)).slice(0, 64) : [];
  } catch {
    return [];
  }
}

/** Hands out GPUs: each to one instance at a time. */
export interface GpuPool {
  /** How many are free. */
  readonly free: number;
  /** Takes `n` free GPU indices; null when fewer are free. */
  take(n: number): number[] | null;
  /** Gives back what {@linkcode GpuPool.take} handed out. */
  release(indices: readonly number[]): void;
}

/** Creates a pool over GPU indices. */
export function createGpuPool(indices: readonly number[]): GpuPool {
  const free = new Set(indices);
  return {
    get free() {
      return free.size;
    },
    take(n) {
      if (n > free.size) return null;
      const taken = [...free].sort((a, b) => a - b).slice(0, n);
      for (const i of taken) free.delete(i);
      return taken;
    },
    release(taken) {
      for (const i of taken) if (indices.includes(i)) free.add(i);
    },
  };
}

/**
 * Sets what an instance sees of the GPUs it was given: their indices, in
 * nvidia-smi's (PCI bus) order. An instance that asked for none sees none.
 */
export function gpuEnv(env: Record<string, string>, indices: readonly number[]): void {
  const list = indices.length > 0 ? indices.join(",") : "";
  env.CUDA_VISIBLE_DEVICES = list;
  env.NVIDIA_VISIBLE_DEVICES = indices.length > 0 ? list : "void";
  // CUDA numbers devices fastest first unless told to follow the bus order nvidia-smi uses.
  env.CUDA_DEVICE_ORDER = "PCI_BUS_ID";
}
