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
import { LATE_IMPORTS } from "../main.ts";

/** The targets built by default. */
export const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];

/** The target of this machine. */
export const HOST_TARGET = `${Deno.build.arch}-unknown-linux-gnu`;

/**
 * Compiles main.ts for `target` into `out`; returns null on success, else why
 * it failed. A binary for this machine is run once built: one that does not
 * answer as Parallelic (a DENORT_BIN that is plain deno) is a failure.
 */
export async function compile(
  target: string,
  out: string,
  denort = Deno.env.get("DENORT_BIN"),
): Promise<string | null> {
  const root = join(import.meta.dirname!, "..");
  if (denort && target !== HOST_TARGET) {
    return `DENORT_BIN is a ${HOST_TARGET} runtime; ${target} needs its own denort (download blocked here)`;
  }
  const result = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "-A",
      // Imported by a specifier deno compile cannot follow (see LATE_IMPORTS): named here so that the binary holds them.
      ...Object.values(LATE_IMPORTS).flatMap((m) => ["--include", join(root, m)]),
      "--target",
      target,
      "--output",
      out,
      join(root, "main.ts"),
    ],
    cwd: root,
    env: { NO_COLOR: "1", ...(denort ? { DENORT_BIN: denort } : {}) },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (result.success) return target === HOST_TARGET ? await checkBinary(out, denort) : null;
  const lines = new TextDecoder().decode(result.stderr).split("\n");
  // The deepest cause says most ("error sending request for url (...denort...)").
  const text = lines.find((l) => /error sending request/.test(l))?.replace(/^\s*\d+: /, "") ??
    lines.find((l) => /error/i.test(l))?.trim() ?? "";
  return `deno compile failed: ${text}${
    denort ? "" : " (set DENORT_BIN to a denort binary where its download is blocked)"
  }`;
}

/** How a failed check of a built binary begins. */
export const NOT_PARALLELIC = "the built binary is not Parallelic";

/** Runs a built binary (`--version`, `help`); null when it answers as Parallelic, else what it did. */
export async function checkBinary(out: string, denort: string | undefined): Promise<string | null> {
  const run = async (arg: string) => {
    try {
      const r = await new Deno.Command(out, { args: [arg], stdout: "piped", stderr: "piped", stdin: "null" }).output();
      const text = new TextDecoder().decode(r.stdout).trim() || new TextDecoder().decode(r.stderr).trim();
      return { ok: r.success, text };
    } catch (e) {
      return { ok: false, text: (e as Error).message };
    }
  };
  const version = await run("--version");
  const help = await run("help");
  if (version.ok && /^parallelic \d/.test(version.text) && /^parallelic: run many instances/.test(help.text)) {
    return null;
  }
  const said = (version.text.split("\n")[0] || "nothing").slice(0, 120);
  await Deno.remove(out).catch(() => {}); // Nothing that passes for a release is left in dist/.
  return `${NOT_PARALLELIC}: '${out} --version' answered '${said}'` +
    (denort ? ` (DENORT_BIN=${denort} must be the denort runtime of this Deno version, not a deno binary)` : "");
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
  let wrong = false;
  for (const target of targets) {
    const out = join(outDir, `parallelic-${target.split("-")[0]}-linux`);
    const why = await compile(target, out);
    if (why?.startsWith(NOT_PARALLELIC)) {
      wrong = true;
      console.error(`error: ${target}: ${why}`);
    } else if (why) console.error(`skipped ${target}: ${why}`);
    else {
      built++;
      console.error(`built ${out}`);
    }
  }
  Deno.exit(built > 0 && !wrong ? 0 : 1);
}
