/**
 * The CLI's HTTP client: where the manager is and which token to send,
 * from flags, the environment, the config file, or the local manager's
 * admin-token file.
 *
 * @module
 */
import { AuthError, errorClassOfStatus, UnavailableError, ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { join } from "../core/posix_path.ts";

/**
 * Bodies up to this size go in one `fetch` from memory; larger ones stream
 * (see `upload.ts`, loaded only then: it needs Node's HTTP modules, which
 * take as long to load as the rest of the CLI).
 */
export const SMALL_UPLOAD_BYTES = 8 * 2 ** 20;

/** Where the CLI keeps its settings. */
export function configFile(): string {
  const base = Deno.env.get("XDG_CONFIG_HOME") ?? join(Deno.env.get("HOME") ?? ".", ".config");
  return join(base, "parallelic", "config.toml");
}

/** The manager's default data folder. */
export function defaultDataDir(): string {
  return Deno.env.get("PARALLELIC_DATA_DIR") ??
    join(Deno.env.get("XDG_DATA_HOME") ?? join(Deno.env.get("HOME") ?? ".", ".local", "share"), "parallelic");
}

/** Connection settings. */
export interface ClientSettings {
  manager: string;
  token: string | null;
  /** A CA certificate (PEM) to trust for an HTTPS manager with a private CA. */
  caFile?: string;
  /**
   * How long a read (GET, HEAD) keeps trying while the manager answers 503
   * (NATS failing over: a server lost, a leader being elected). @default {15000}
   */
  retryMs?: number;
  /** Where `--log-level debug` tells each request and its answer, and a retry is told as a warning. */
  log?: Logger;
}

async function readConfig(): Promise<Record<string, unknown>> {
  try {
    const text = await Deno.readTextFile(configFile());
    // Loaded only when there is a file to read: most runs have none, and a TOML parser takes long to load.
    const { parse } = await import("smol-toml");
    return parse(text);
  } catch {
    return {};
  }
}

/** Resolves the manager URL and token: flag, then environment, then config file, then the local admin token. */
export async function resolveSettings(
  flags: { manager?: string; token?: string; "ca-file"?: string },
): Promise<ClientSettings> {
  const config = await readConfig();
  const manager = flags.manager ?? Deno.env.get("PARALLELIC_MANAGER") ??
    (typeof config.manager === "string" ? config.manager : undefined) ?? "http://127.0.0.1:8080";
  let token = flags.token ?? Deno.env.get("PARALLELIC_TOKEN") ??
    (typeof config.token === "string" ? config.token : undefined) ?? null;
  if (!token) {
    try {
      token = (await Deno.readTextFile(join(defaultDataDir(), "admin-token"))).trim();
    } catch { /* not a local manager */ }
  }
  const caFile = flags["ca-file"] ?? Deno.env.get("PARALLELIC_CA_FILE") ??
    (typeof config.ca_file === "string" ? config.ca_file : undefined);
  return { manager: manager.replace(/\/+$/, ""), token, ...(caFile ? { caFile } : {}) };
}

/** Saves settings to the config file, readable only by its owner. */
export async function saveSettings(settings: Partial<ClientSettings>): Promise<string> {
  const file = configFile();
  const { caFile, ...rest } = settings;
  // Written as read back (resolveSettings): `ca_file`.
  const config = { ...(await readConfig()), ...rest, ...(caFile ? { ca_file: caFile } : {}) };
  await Deno.mkdir(join(file, ".."), { recursive: true });
  const text = Object.entries(config).filter(([, v]) => typeof v === "string")
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join("\n") + "\n";
  await Deno.writeTextFile(file, text, { mode: 0o600 });
  await Deno.chmod(file, 0o600);
  return file;
}

/** A small typed client of the gateway's API. */
export class Client {
  #http: Deno.HttpClient | undefined;
  #ca: string | undefined;
  /**
   * @param step Notes a trace step (see Logger.step; `PARALLELIC_TRACE`): `cli.submit`, `cli.answered`, `cli.done`.
   */
  constructor(readonly settings: ClientSettings, readonly step: (step: string) => void = () => {}) {}

  /**
   * Sends a request; throws the API's error as the matching error class. A
   * read answered 503 (the manager could not reach NATS) is tried again, 0.25
   * s later and doubling to 2 s, for up to `retryMs`; anything else is sent
   * once (a submit may have been taken before its answer was lost).
   */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.settings.token) headers.set("authorization", `Bearer ${this.settings.token}`);
    const method = (init.method ?? "GET").toUpperCase();
    const retrying = method === "GET" || method === "HEAD";
    const until = Date.now() + (this.settings.retryMs ?? 15_000);
    for (let waitMs = 250;; waitMs = Math.min(2000, waitMs * 2)) {
      let res: Response;
      try {
        const startedAt = performance.now();
        res = await fetch(`${this.settings.manager}${path}`, { ...init, headers, client: await this.httpClient() });
        this.settings.log?.debug("cli:request", {
          method,
          url: `${this.settings.manager}${path}`,
          status: res.status,
          ms: Math.round(performance.now() - startedAt),
        });
      } catch (e) {
        throw this.unreachable(e);
      }
      if (res.status !== 503 || !retrying || Date.now() + waitMs > until) return await this.check(res);
      this.settings.log?.warn("cli:retry", { method, path, status: res.status, waitMs });
      await res.body?.cancel();
      await new Promise((r) => setTimeout(r, waitMs));
    }
  }

  /**
   * Sends a body of `sizeBytes`: a small one from memory, a large one
   * streamed (see `upload.ts`); throws the API's error as the matching error class.
   */
  async upload(
    path: string,
    init: { method?: string; headers?: Record<string, string>; body: ReadableStream<Uint8Array>; sizeBytes?: number },
  ): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.settings.token) headers.authorization = `Bearer ${this.settings.token}`;
    const url = new URL(`${this.settings.manager}${path}`);
    const method = init.method ?? "POST";
    let res: Response;
    const startedAt = performance.now();
    try {
      if (init.sizeBytes !== undefined && init.sizeBytes <= SMALL_UPLOAD_BYTES) {
        const body = await new Response(init.body).bytes();
        res = await fetch(url, { method, headers, body, client: await this.httpClient() });
      } else {
        const { streamUpload } = await import("./upload.ts");
        const caCerts = this.settings.caFile ? [await this.caCert()] : undefined;
        res = await streamUpload({ url, method, headers, body: init.body, caCerts });
      }
    } catch (e) {
      // A file that changed while being read is the user's to hear about, not a network problem.
      throw e instanceof ValidationError ? e : this.unreachable(e);
    }
    this.settings.log?.debug("cli:request", {
      method,
      url: `${url}`,
      status: res.status,
      ms: Math.round(performance.now() - startedAt),
    });
    return await this.check(res);
  }

  /** The HTTP client that trusts `caFile`, when one is set. */
  private async httpClient(): Promise<Deno.HttpClient | undefined> {
    if (this.settings.caFile && !this.#http) this.#http = Deno.createHttpClient({ caCerts: [await this.caCert()] });
    return this.#http;
  }

  /** The CA certificate (PEM) of `caFile`. */
  private async caCert(): Promise<string> {
    return this.#ca ??= await Deno.readTextFile(this.settings.caFile!);
  }

  private unreachable(e: unknown): UnavailableError {
    return new UnavailableError(
      `Cannot reach the manager at ${this.settings.manager} (${
        (e as Error).message
      }): is it running? Set --manager or PARALLELIC_MANAGER`,
      { cause: e },
    );
  }

  /** Returns `res` when it is a success; throws the API's error as the matching error class. */
  private async check(res: Response): Promise<Response> {
    if (res.ok) return res;
    const text = await res.text();
    let body: { error?: { code: string; message: string } } = {};
    try {
      body = JSON.parse(text);
    } catch { /* not JSON */ }
    const message = body.error?.message ?? `${res.status} ${res.statusText}: ${text.slice(0, 200)}`;
    const code = body.error?.code ?? "http_error";
    if (res.status === 401) {
      throw new AuthError(
        `${message}. Set PARALLELIC_TOKEN, pass --token, or run 'parallelic login'`,
        { code },
      );
    }
    const Class = errorClassOfStatus(res.status);
    // 5xx: the manager (or a proxy before it) could not answer now; other 4xx: the request itself.
    if (!Class) {
      if (res.status >= 500) throw new UnavailableError(message, { code });
      throw new ValidationError(message, { code });
    }
    // A rate limit is not retried by the CLI: the limit is per token, and trying again at once only uses it up.
    const retryAfterMs = Math.max(1, Number(res.headers.get("retry-after") ?? "1") || 1) * 1000;
    throw new Class(message, { code, retryAfterMs });
  }

  /** GETs JSON. */
  async json<T>(path: string, init?: RequestInit): Promise<T> {
    return await (await this.fetch(path, init)).json() as T;
  }
}

/** The manager's size limits (null from a manager that does not say). */
export async function limits(
  client: Client,
): Promise<
  { maxPackageBytes: number; maxUnpackedBytes?: number; maxDataSetBytes: number; maxDataSetFiles?: number } | null
> {
  try {
    return await client.json("/api/v1/limits");
  } catch {
    return null;
  }
}

/** Throws a usage error. */
export function usage(message: string): never {
  throw new ValidationError(message, { code: "usage" });
}
