/**
 * Temporary folders and real Deno KV stores for tests, and ways to watch or
 * fault a real store's writes (never a mock of it).
 *
 * @module
 */
import { join } from "node:path";
import { removeTree } from "../../node/readonly.ts";

/** A temporary folder removed by `await using` (read-only data views in it included). */
export async function tempDir(prefix = "parallelic-test-"): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, [Symbol.asyncDispose]: () => removeTree(path) };
}

/** A Deno KV in a temp folder, closed and removed by `await using`. */
export async function tempKv(): Promise<{ kv: Deno.Kv } & AsyncDisposable> {
  const dir = await tempDir("parallelic-kv-");
  const kv = await Deno.openKv(join(dir.path, "state.kv"));
  return {
    kv,
    async [Symbol.asyncDispose]() {
      kv.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

/**
 * The real Deno KV `kv` with some methods replaced, to inject a fault or
 * watch what is written; everything else is the real thing.
 */
export function kvWith(kv: Deno.Kv, overrides: { atomic?: () => Deno.AtomicOperation; get?: Deno.Kv["get"] }): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      const own = (overrides as Record<PropertyKey, unknown>)[prop];
      if (own !== undefined) return own;
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** The real Deno KV `kv`, noting in `atomics` the keys each atomic sets (its first part only with `head`). */
export function recordingAtomics(kv: Deno.Kv, atomics: string[][], head = false): Deno.Kv {
  return kvWith(kv, {
    atomic() {
      const op = kv.atomic();
      const keys: string[] = [];
      atomics.push(keys);
      const set = op.set.bind(op);
      op.set = (key, value, options) => {
        keys.push(head ? String(key[0]) : key.join("/"));
        return set(key, value, options);
      };
      return op;
    },
  });
}
