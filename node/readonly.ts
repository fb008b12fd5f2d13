/**
 * Read-only folders for instances: data set versions in the node's cache
 * and the workspace finalize reads. Files become mode 0444 (0555 when
 * executable) and folders 0555, so writing, creating or deleting fails. A
 * node running as root ignores modes, so there the tree is also made
 * immutable (`chattr +i`), which stops root too (on file systems that
 * support it: ext4, xfs, btrfs; elsewhere a warning says modes are all
 * there is).
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../core/log.ts";

const isRoot = () => Deno.uid() === 0;
let warned = false;

async function chattr(flag: "+i" | "-i", dir: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("chattr", { args: ["-R", "-f", flag, dir], stdout: "null", stderr: "piped" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

async function chmodTree(dir: string, dirMode: number, fileMode: (mode: number) => number): Promise<void> {
  for await (const item of Deno.readDir(dir)) {
    const path = join(dir, item.name);
    if (item.isDirectory) await chmodTree(path, dirMode, fileMode);
    else if (item.isFile) await Deno.chmod(path, fileMode((await Deno.stat(path)).mode ?? 0o644));
  }
  await Deno.chmod(dir, dirMode);
}

/**
 * Makes the tree at `dir` read-only. Returns how: `"immutable"` (root, with
 * chattr) or `"modes"`.
 */
export async function lockTree(dir: string, log?: Logger): Promise<"immutable" | "modes"> {
  await chmodTree(dir, 0o555, (mode) => (mode & 0o111) ? 0o555 : 0o444);
  if (!isRoot()) return "modes";
  if (await chattr("+i", dir)) return "immutable";
  if (!warned) {
    warned = true;
    log?.warn("node:readonly-modes-only", {
      dir,
      reason: "running as root and 'chattr +i' failed here: only file modes protect data views, which root ignores",
    });
  }
  return "modes";
}

/** Undoes {@linkcode lockTree} so that the tree can be changed or removed. */
export async function unlockTree(dir: string): Promise<void> {
  if (isRoot()) await chattr("-i", dir);
  await chmodTree(dir, 0o755, (mode) => mode | 0o200).catch(() => {});
}

/** Removes a tree, read-only or not; a missing tree is fine. */
export async function removeTree(dir: string): Promise<void> {
  try {
    await Deno.lstat(dir);
  } catch {
    return;
  }
  await unlockTree(dir);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
