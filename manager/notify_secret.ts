/**
 * The notify secret: the key every webhook notification is signed with
 * (see `core/notify.ts`). Given in a file (`--notify-secret-file`), or made
 * at first start and kept in the data dir (`DIR/notify-secret`, mode 0600),
 * like the join token; admins read it with `GET /api/v1/notify`.
 *
 * @module
 */
import { join } from "node:path";
import { ValidationError } from "../core/errors.ts";
import { randomToken } from "../core/ids.ts";

/** Shortest secret accepted, in characters. */
export const MIN_NOTIFY_SECRET_CHARS = 16;

/** The notify secret and where it is kept. */
export interface NotifySecret {
  secret: string;
  file: string;
}

/**
 * Reads the secret from `file`, or from `DIR/notify-secret`, made there
 * (32 random bytes) when it does not exist.
 *
 * @throws {ValidationError} When the given file cannot be read or holds too short a secret.
 */
export async function loadNotifySecret(dataDir: string, file?: string): Promise<NotifySecret> {
  const path = file ?? join(dataDir, "notify-secret");
  let secret: string | null = null;
  try {
    secret = (await Deno.readTextFile(path)).trim();
  } catch (e) {
    if (file || !(e instanceof Deno.errors.NotFound)) {
      throw new ValidationError(`Cannot read the notify secret from '${path}': ${(e as Error).message}`, {
        code: "invalid_config",
      });
    }
  }
  if (secret === null) {
    secret = randomToken(32);
    await Deno.writeTextFile(path, secret + "\n", { mode: 0o600 });
    await Deno.chmod(path, 0o600);
  }
  if (secret.length < MIN_NOTIFY_SECRET_CHARS) {
    throw new ValidationError(
      `The notify secret in '${path}' is ${secret.length} characters: give at least ${MIN_NOTIFY_SECRET_CHARS} ` +
        "(e.g. openssl rand -hex 32)",
      { code: "invalid_config" },
    );
  }
  return { secret, file: path };
}
