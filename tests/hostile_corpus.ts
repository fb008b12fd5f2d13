/**
 * The hostile-package corpus: packages that try to escape the task root,
 * exhaust memory or disk, or confuse the unpacker, each with the error code
 * the gateway must answer and a pattern its message must match.
 *
 * @module
 */
import { makeZip } from "./kit/mod.ts";
import { rawZip } from "./raw_zip.ts";

/** One hostile package. */
export interface HostileCase {
  what: string;
  bytes: Uint8Array;
  status: 400 | 413;
  code: string;
  message: RegExp;
  /** Only task.toml's content is at fault: the node's unpacker (which does not read it) may unpack it. */
  tomlOnly?: boolean;
}

const TOML = `[task]\nentrypoint = "run.sh"\n`;
const RUN = "#!/bin/sh\necho hi\n";

/** Builds the corpus; `outside` is an absolute path that must never be created. */
export async function hostileCorpus(outside: string): Promise<HostileCase[]> {
  const ok = [{ name: "task.toml", data: TOML }, { name: "run.sh", data: RUN, mode: 0o100755 }];
  const zeros = new Uint8Array(64 * 2 ** 20);
  return [
    {
      what: "zip-slip (../)",
      bytes: await makeZip({ "task.toml": TOML, "run.sh": RUN, [`../../../../../../..${outside}`]: "pwned" }),
      status: 400,
      code: "path_escapes_root",
      message: /escapes the task root/,
    },
    {
      what: "absolute path",
      bytes: await makeZip({ "task.toml": TOML, "run.sh": RUN, [outside]: "pwned" }),
      status: 400,
      code: "absolute_path",
      message: /is an absolute path/,
    },
    {
      what: "symlink out of the root",
      bytes: await makeZip({ "task.toml": TOML, "run.sh": RUN, "out": { content: outside, symlink: true } }),
      status: 400,
      code: "symlink_escapes_root",
      message: /symlink to '.*', outside the task root/,
    },
    {
      what: "relative symlink out of the root",
      bytes: await makeZip({ "task.toml": TOML, "run.sh": RUN, "d/up": { content: "../../..", symlink: true } }),
      status: 400,
      code: "symlink_escapes_root",
      message: /outside the task root/,
    },
    {
      what: "a symlink that points back at its own folder, then a link below it (resolved textually it stays in)",
      bytes: await makeZip({
        "task.toml": TOML,
        "run.sh": RUN,
        "x": { content: ".", symlink: true },
        "x/l": { content: "..", symlink: true },
      }),
      status: 400,
      code: "path_through_symlink",
      message: /entry 'x\/l' lies below symlink 'x'/,
    },
    {
      what: "a file written through an in-root symlink",
      bytes: await makeZip({ "task.toml": TOML, "run.sh": RUN, "d": { content: ".", symlink: true }, "d/run.sh": "x" }),
      status: 400,
      code: "path_through_symlink",
      message: /lies below symlink 'd'/,
    },
    {
      what: "task.toml as a symlink to a file outside",
      bytes: await makeZip({ "task.toml": { content: "/etc/passwd", symlink: true }, "run.sh": RUN }),
      status: 400,
      code: "symlink_escapes_root",
      message: /'task.toml' is a symlink to '\/etc\/passwd'/,
    },
    {
      what: "a device node (what a hard-link or device trick would need)",
      bytes: await rawZip([...ok, { name: "dev", mode: 0o020644 }]),
      status: 400,
      code: "special_file",
      message: /entry 'dev' is a device, FIFO or socket/,
    },
    {
      what: "a FIFO",
      bytes: await rawZip([...ok, { name: "fifo", mode: 0o010644 }]),
      status: 400,
      code: "special_file",
      message: /entry 'fifo' is a device, FIFO or socket/,
    },
    {
      what: "duplicate names",
      bytes: await rawZip([...ok, { name: "run.sh", data: "#!/bin/sh\nrm -rf /\n" }]),
      status: 400,
      code: "duplicate_entry",
      message: /entry 'run.sh' appears twice/,
    },
    {
      what: "duplicate names after normalization",
      bytes: await rawZip([...ok, { name: "./run.sh", data: "x" }]),
      status: 400,
      code: "duplicate_entry",
      message: /appears twice/,
    },
    {
      what: "a non-UTF-8 name",
      bytes: await rawZip([...ok, { name: new Uint8Array([0x66, 0xff, 0xfe, 0x2e, 0x74]) }]),
      status: 400,
      code: "bad_entry_name",
      message: /has a name that is not UTF-8/,
    },
    {
      what: "a control character in a name",
      bytes: await rawZip([...ok, { name: "a\nb.txt", data: "x" }]),
      status: 400,
      code: "bad_entry_name",
      message: /control character/,
    },
    {
      what: "a 300-byte path component",
      bytes: await rawZip([...ok, { name: "d/" + "a".repeat(300), data: "x" }]),
      status: 400,
      code: "bad_entry_name",
      message: /path component longer than 255 bytes/,
    },
    {
      what: "deep nesting",
      bytes: await rawZip([...ok, { name: "d/".repeat(100) + "f", data: "x" }]),
      status: 400,
      code: "too_deep",
      message: /nested deeper than 64 folders/,
    },
    {
      what: "a zip bomb (ratio)",
      bytes: await rawZip([...ok, { name: "zeros", data: zeros, deflate: true }]),
      status: 400,
      code: "zip_bomb",
      message: /a zip bomb\?/,
    },
    {
      what: "a zip bomb that lies about its size (task.toml declares 40 bytes, inflates to 64 MiB)",
      bytes: await rawZip([
        { name: "task.toml", data: new Uint8Array(64 * 2 ** 20).fill(0x23), deflate: true, declaredSize: 40 },
        { name: "run.sh", data: RUN },
      ]),
      status: 400,
      code: "zip_bomb",
      message: /'task.toml' unpacks to more than the 40 bytes it declares/,
    },
    {
      what:
        "a file that lies about its size (declares 10 bytes, inflates to 1 MiB; the ratio of what it declares is 0)",
      bytes: await rawZip([...ok, {
        name: "data/frame.exr",
        data: new Uint8Array(2 ** 20).fill(0x41),
        deflate: true,
        declaredSize: 10,
      }]),
      status: 400,
      code: "zip_bomb",
      message: /entry 'data\/frame.exr' unpacks to more than the 10 bytes it declares/,
    },
    {
      what: "a deflate bomb with a false size (a file declares 100 bytes, inflates to 64 MiB)",
      bytes: await rawZip([...ok, { name: "bomb.bin", data: zeros, deflate: true, declaredSize: 100 }]),
      status: 400,
      code: "zip_bomb",
      message: /entry 'bomb.bin' unpacks to more than the 100 bytes it declares: a zip bomb\?/,
    },
    {
      what: "a file that declares more than it holds (5000 bytes declared, 12 inflated)",
      bytes: await rawZip([...ok, { name: "short.txt", data: "twelve bytes", deflate: true, declaredSize: 5000 }]),
      status: 400,
      code: "broken_zip",
      message: /entry 'short.txt' unpacks to 12 bytes, not the 5000 it declares/,
    },
    {
      what: "a stored file whose declared size is not its length",
      bytes: await rawZip([...ok, { name: "stored.txt", data: "x".repeat(64), declaredSize: 8 }]),
      status: 400,
      code: "zip_bomb",
      message: /entry 'stored.txt' unpacks to more than the 8 bytes it declares/,
    },
    ...await Promise.all(
      [
        ["a tab", "a\tb.txt", String.raw`a\u0009b.txt`, "U+0009"],
        ["an escape", "log\x1b[2J", String.raw`log\u001B[2J`, "U+001B"],
        ["DEL", "x\x7f", String.raw`x\u007F`, "U+007F"],
        ["a C1 control (CSI) in a folder's", "d\u009b/f", String.raw`d\u009B/f`, "U+009B"],
      ].map(async ([what, name, shown, codePoint]) => ({
        what: `${what} name`,
        bytes: await rawZip([...ok, { name, data: "x" }]),
        status: 400 as const,
        code: "bad_entry_name",
        message: new RegExp(RegExp.escape(`entry '${shown}' has a control character (${codePoint}) in its name`)),
      })),
    ),
    {
      what: "a huge task.toml",
      bytes: await makeZip({ "task.toml": TOML + "# padding\n".repeat(20_000), "run.sh": RUN }),
      status: 400,
      code: "invalid_package",
      message: /entry 'task.toml' is \d+ bytes, more than the limit of 65536/,
      tomlOnly: true,
    },
    {
      what: "a task.toml nested 20,000 arrays deep",
      bytes: await makeZip({
        "task.toml": TOML + "x = " + "[".repeat(20_000) + "]".repeat(20_000) + "\n",
        "run.sh": RUN,
      }),
      status: 400,
      code: "invalid_task_toml",
      message: /task.toml line 3: .*nested/,
      tomlOnly: true,
    },
    {
      what: "200,000 tiny entries (refused from the directory's headers alone)",
      bytes: await rawZip([...ok, { name: "t" }], { centralCopies: 200_000 / 1 }),
      status: 400,
      code: "too_many_entries",
      message: /more than the limit of 100000/,
    },
    {
      what: "an encrypted entry",
      bytes: await rawZip([...ok, { name: "secret", data: "xxxxxxxxxxxx", flags: 0x801 }]),
      status: 400,
      code: "encrypted_entry",
      message: /entry 'secret' is encrypted/,
    },
    {
      what: "an unsupported compression method (bzip2)",
      bytes: await rawZip([...ok, { name: "b", data: "BZh9", method: 12 }]),
      status: 400,
      code: "unsupported_compression",
      message: /compression method 12/,
    },
    {
      what: "not a zip",
      bytes: new TextEncoder().encode("#!/bin/sh\nrm -rf /\n"),
      status: 400,
      code: "broken_zip",
      message: /not a readable zip/,
    },
    {
      what: "a truncated zip",
      bytes: (await makeZip({ "task.toml": TOML, "run.sh": RUN })).slice(0, 120),
      status: 400,
      code: "broken_zip",
      message: /not a readable zip/,
    },
    {
      what: "an empty body",
      bytes: new Uint8Array(),
      status: 400,
      code: "broken_zip",
      message: /not a readable zip|empty/,
    },
  ];
}
