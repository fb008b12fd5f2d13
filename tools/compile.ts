/**
 * Builds single `parallelic` binaries (manager, node and CLI in one) with
 * `deno compile`, for linux x86_64 and aarch64, into dist/.
 *
 *   deno task compile [--target x86_64-unknown-linux-gnu] [--out dist]
 *
 * `deno compile` downloads its runtime (denort) for each target unless
 * DENORT_BIN names one; a target that cannot be built is reported with the
 * reason, and the exit code is 1 when none could be built.
 *
 * @module
 */
import { join } from "node:path";

/** The targets built by default. */
export const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

/** The target of this machine. */
export const HOST_TARGET = `${Deno.build.arch}-unknown-linux-gnu`;

/** Compiles main.ts for `target` into `out`; returns null on success, else why it failed. */
export async function compile(target: string, out: string): Promise<string | null> {
  const root = join(import.meta.dirname!, "..");
  const denort = Deno.env.get("DENORT_BIN");
  if (denort && target !== HOST_TARGET) {
    return `DENORT_BIN is a ${HOST_TARGET} runtime; ${target} needs its own denort (download blocked here)`;
  }
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["compile", "-A", "--target", target, "--output", out, join(root, "main.ts")],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (result.success) return null;
  const lines = new TextDecoder().decode(result.stderr).split("\n");
  // The deepest cause says most ("error sending request for url (...denort...)").
  const text = lines.find((l) => /error sending request/.test(l))?.replace(/^\s*\d+: /, "") ??
    lines.find((l) => /error/i.test(l))?.trim() ?? "";
  return `deno compile failed: ${text}${
    denort ? "" : " (set DENORT_BIN to a denort binary where its download is blocked)"
  }`;
}

if (import.meta.main) {
  const args = Deno.args;
  const pick = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const outDir = pick("out") ?? "dist";
  const targets = pick("target") ? [pick("target")!] : TARGETS;
  await Deno.mkdir(outDir, { recursive: true });
  let built = 0;
  for (const target of targets) {
    const out = join(outDir, `parallelic-${target.split("-")[0]}-linux`);
    const why = await compile(target, out);
    if (why) console.error(`skipped ${target}: ${why}`);
    else {
      built++;
      console.error(`built ${out}`);
    }
  }
  Deno.exit(built > 0 ? 0 : 1);
}
