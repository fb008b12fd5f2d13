/**
 * The CLI's client commands (those that talk to a manager over its HTTP
 * API): their flags parsed, a client made, and each dispatched to its
 * command function. Each command's module is imported when it runs: a
 * command loads only what it uses (`data` its tar code, `doctor` NATS), so
 * that `submit` starts as fast as it can.
 *
 * @module
 */
import { intFlag, parseArgs } from "./args.ts";
import { Client, defaultDataDir, resolveSettings, usage } from "./client.ts";
import { checkVerbFlags, CLIENT_COMMAND_FLAGS } from "./help.ts";
import { logger } from "./log_flags.ts";
import { natsCredentials, natsTls } from "./security_flags.ts";

/** The client commands, by name. */
export const CLIENT_COMMANDS: readonly string[] = [
  "submit",
  "status",
  "wait",
  "logs",
  "cancel",
  "rerun",
  "set",
  "hold",
  "release",
  "explain",
  "nodes",
  "doctor",
  "login",
  "users",
  "tokens",
  "audit",
  "results",
  "rm",
  "data",
];

/** Runs the client command `command` with its arguments; resolves to the exit code. */
export async function runClientCommand(command: string, rest: string[]): Promise<number> {
  const p = parseArgs(rest, CLIENT_COMMAND_FLAGS[command], command);
  if (p.flags.instance !== undefined && p.flags.finalize === true) {
    usage(`'parallelic ${command}' takes --instance N or --finalize, not both`);
  }
  checkVerbFlags(command, p._[0], p.flags);
  const log = logger(p.flags);
  log.step("cli.start");
  const client = new Client({
    ...await resolveSettings(p.flags as { manager?: string; token?: string; "ca-file"?: string }),
    log,
  }, log.step);
  const json = p.flags.json === true;
  const id = p._[0];
  const need = (what: string) => id ?? usage(`Usage: parallelic ${command} ${what}`);
  const commands = () => import("./commands.ts");
  const data = () => import("./data.ts");
  const tasks = () => import("./task_commands.ts");
  const security = () => import("./security_commands.ts");
  switch (command) {
    case "submit":
      return await (await commands()).submit(
        client,
        need("PATH"),
        (p.flags.wait as boolean | undefined) ?? Deno.stdout.isTerminal(),
        json,
        (p.flags.set as string[] | undefined) ?? [],
        p.flags.strict === true,
        p.flags.after as string | undefined,
      );
    case "status":
      return await (await commands()).showStatus(client, id, json, intFlag(p, "limit"));
    case "wait":
      return await (await tasks()).waitTask(
        client,
        need("ID [--timeout 1h]"),
        p.flags.timeout as string | undefined,
        json,
      );
    case "logs":
      return await (await commands()).showLogs(
        client,
        need("ID [--instance N | --finalize] [--follow]"),
        p.flags.finalize === true ? "finalize" : intFlag(p, "instance", 0)!,
        p.flags.follow === true,
      );
    case "results":
      return await (await data()).results(client, need("ID [-o DIR|FILE.zip] [--instance N | --finalize]"), {
        output: (p.flags.o ?? p.flags.output) as string | undefined,
        instance: intFlag(p, "instance"),
        finalize: p.flags.finalize === true,
      });
    case "rm":
      return await (await data()).rmTask(client, need("ID"));
    case "data": {
      const [verb, arg, path] = p._;
      const { dataLs, dataPut, dataRm, dataShare } = await data();
      if (verb === "put" && arg && path) {
        return await dataPut(client, arg, path, p.flags.shared as boolean | undefined);
      }
      if ((verb === "share" || verb === "unshare") && arg) return await dataShare(client, arg, verb === "share");
      if (verb === "ls") return await dataLs(client, arg, json);
      if (verb === "rm" && arg) return await dataRm(client, arg);
      return usage(
        "Usage: parallelic data put NAME PATH [--shared] | data share|unshare NAME | data ls [NAME] | data rm NAME[@VERSION]",
      );
    }
    case "cancel":
      return await (await commands()).cancel(client, need("ID"));
    case "set":
      return await (await tasks()).setTask(client, need("ID priority=80"), p._.slice(1));
    case "hold":
    case "release":
      return await (await tasks()).holdTask(client, need("ID"), command === "hold");
    case "rerun":
      return await (await tasks()).rerun(client, need("ID [--failed | --instances 3,7-9 | --finalize]"), {
        failed: p.flags.failed === true,
        instances: p.flags.instances as string | undefined,
        finalize: p.flags.finalize === true,
      });
    case "explain":
      return await (await commands()).explain(client, need("ID [--instance N]"), intFlag(p, "instance"));
    case "nodes":
      return await (await security()).nodesSecurity(client, p._, p.flags.rotate === true) ??
        await (await commands()).nodes(client, p._, json);
    case "login":
      return await (await commands()).login(client);
    case "doctor": {
      const { doctor, printChecks } = await import("./doctor.ts");
      return printChecks(
        await doctor({
          client,
          natsUrl: (p.flags.nats as string) ?? "nats://127.0.0.1:4222",
          dataDir: (p.flags["data-dir"] as string) ?? defaultDataDir(),
          workDir: p.flags["work-dir"] as string | undefined,
          natsCredentials: await natsCredentials(p.flags),
          natsTls: natsTls(p.flags),
        }),
      );
    }
    case "users":
      return await (await security()).users(client, p._, p.flags.role as string | undefined, json);
    case "tokens":
      return await (await security()).tokens(client, p._);
    case "audit":
      return await (await security()).audit(client, intFlag(p, "limit"), json);
  }
  return 2;
}
