/**
 * A typed bus over NATS: every payload is checked against the zod schema of
 * its subject at both edges. A message that fails its schema is dropped,
 * logged and counted; it never crashes an actor. So is one whose sender
 * field does not match its subject (see `Subject.sender`), and one that a
 * JetStream consumer delivered (its reply subject starts with `$JS.`): no
 * Parallelic subject is ever fed by a stream, so such a message is a replay.
 * A request is answered only into the requester's own inbox (see
 * `inboxOf`); one that wants its answer anywhere else is dropped. Each drop
 * is counted in `rejected` and told to `onReject` (the manager audits it).
 *
 * A request on an exact subject that the same bus serves (the gateway asking
 * the task actor in the manager's process) is answered in-process, with the
 * same JSON copy, schema checks and timeout as over NATS, but without the two
 * trips through nats-server. Everything between processes goes over NATS.
 * Its answer can overtake what the handler published before answering (over
 * NATS): a handler whose events must reach this process's subscribers before
 * its caller hears back flushes first (`nodesDrain` does).
 *
 * Likewise a subscription that asks for it (`inProcess`: the gateway's live
 * events) takes what the same bus publishes in-process, as it is published;
 * the copy that comes back through nats-server (marked with this bus's
 * origin) is skipped, so each message reaches it once.
 *
 * @module
 */
import { headers, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { z } from "zod";
import { ERROR_CLASSES, RateLimitError, UnavailableError, ValidationError } from "./errors.ts";
import type { TimerId } from "./clock.ts";
import type { Logger } from "./log.ts";
import type { ErrorBody, RequestSubject, Subject } from "./schema.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options of {@linkcode Bus.subscribe} and {@linkcode Bus.serve}. */
export interface SubscribeOptions {
  /** Queue group: one member of the group gets each message. */
  queue?: string;
  /** Stops the subscription. */
  signal?: AbortSignal;
  /**
   * Also takes what this bus publishes, in-process and at once, without the
   * trip through nats-server (not with `queue`). For fan-out that nothing
   * orders against other subjects: it may overtake messages from elsewhere.
   */
  inProcess?: boolean;
}

/** The header that marks what a bus published to its own in-process subscriptions too. */
const ORIGIN_HEADER = "Parallelic-Origin";

/** Whether a NATS subject pattern (`*`: one token, `>`: one or more at the end) matches a subject's tokens. */
export function subjectMatches(pattern: string[], subject: string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] === ">") return subject.length > i;
    if (i >= subject.length || (pattern[i] !== "*" && pattern[i] !== subject[i])) return false;
  }
  return pattern.length === subject.length;
}

/** Answers a request: its value (or what it gives `reply` first) is the answer. */
export type ServeHandler<Q extends z.ZodType, R extends z.ZodType> = (
  message: z.output<Q>,
  subject: string,
  reply: (answer: z.input<R>) => void,
) => Promise<z.input<R>> | z.input<R>;

/** A typed publish/subscribe/request bus. */
export interface Bus {
  /** The NATS connection underneath (for JetStream and the object store). */
  readonly nc: NatsConnection;
  /** Messages dropped because they failed their schema. */
  readonly rejected: number;
  /** Publishes a message after checking it against the subject's schema (or its `sendSchema`). */
  publish<S extends z.ZodType>(subject: Subject<S>, message: z.input<S>): void;
  /** Calls `handler` with each valid message on `subject`. */
  subscribe<S extends z.ZodType>(
    subject: Subject<S>,
    handler: (message: z.output<S>, subject: string) => void | Promise<void>,
    options?: SubscribeOptions,
  ): Subscription;
  /**
   * Answers requests on `subject`. A thrown error becomes an `{ ok: false,
   * error }` reply; a request that fails its schema gets one too. A handler
   * may answer before its promise settles, with `reply`: the answer goes out
   * then, at once (in one write with what else is sent in that turn), not
   * microtasks later as a promise's value; the promise's is not sent again.
   */
  serve<Q extends z.ZodType, R extends z.ZodType>(
    subject: RequestSubject<Q, R>,
    handler: ServeHandler<Q, R>,
    options?: SubscribeOptions,
  ): Subscription;
  /** Sends a request and checks the reply against the subject's reply schema. */
  request<Q extends z.ZodType, R extends z.ZodType>(
    subject: RequestSubject<Q, R>,
    message: z.input<Q>,
    options?: { timeoutMs?: number },
  ): Promise<z.output<R>>;
}

/**
 * Words the first problem zod found: `path: message`. Of a union (the two
 * shapes of a reply), the branch the value meant: not one whose literal
 * (`ok: true` or `ok: false`) it contradicts, then the one with fewest problems.
 */
export function describeIssue(error: z.ZodError, what = "message"): string {
  let issues: z.core.$ZodIssue[] = error.issues;
  let prefix: PropertyKey[] = [];
  const missesLiteral = (branch: z.core.$ZodIssue[]) =>
    branch.some((i) => i.code === "invalid_value" && i.values?.length === 1);
  const rank = (branch: z.core.$ZodIssue[]) => (missesLiteral(branch) ? 1_000_000 : 0) + branch.length;
  for (;;) {
    const issue = issues[0];
    const branches = issue?.code === "invalid_union" ? (issue.errors ?? []).filter((b) => b.length > 0) : [];
    if (branches.length > 0) {
      prefix = [...prefix, ...issue.path];
      issues = branches.sort((a, b) => rank(a) - rank(b))[0];
      continue;
    }
    const path = [...prefix, ...(issue?.path ?? [])].map(String).join(".");
    return `${path || what}: ${issue?.message ?? "invalid"}`;
  }
}

/** Turns an error into the body a reply or the API carries. */
export function errorBody(error: unknown): ErrorBody {
  const e = error as Error & { code?: string };
  return {
    code: typeof e?.code === "string" ? e.code : "internal",
    message: e?.message ?? String(error),
    name: e?.name,
    ...(error instanceof RateLimitError ? { retryAfterMs: error.retryAfterMs } : {}),
  };
}

/** Turns an error body from a reply back into the error class it came from (unknown ones: unavailable). */
export function errorFromBody(body: ErrorBody): Error {
  const Class = (body.name !== undefined && Object.hasOwn(ERROR_CLASSES, body.name))
    ? ERROR_CLASSES[body.name]
    : UnavailableError;
  return new Class(body.message, { code: body.code, retryAfterMs: body.retryAfterMs ?? 1000 });
}

/** Returns the reply's value, or throws the error it carries. */
export function unwrap<T extends { ok: boolean }>(
  reply: T | { ok: false; error: ErrorBody },
): Extract<T, { ok: true }> {
  if (!reply.ok) throw errorFromBody((reply as { error: ErrorBody }).error);
  return reply as Extract<T, { ok: true }>;
}

/** Options of {@linkcode createBus}. */
export interface BusOptions {
  /**
   * The inbox prefix of this bus's own connection: a request on a subject
   * that no node sends on is answered only to a reply subject under it.
   * @default {"_INBOX"}
   */
  inbox?: string;
  /** Told of every dropped message (the manager audits them). */
  onReject?: (subject: string, reason: string) => void;
}

/**
 * The inbox a request on `subject` must want its answer in: the sender's own
 * (`_INBOX_<name>` on a subject that carries a node's name), the subject's
 * (the join user's), or else this process's.
 */
function inboxOf(subject: { subject: string; sender?: string; inbox?: string }, name: string, own: string): string {
  if (subject.sender) return `_INBOX_${name.split(".")[subject.subject.split(".").indexOf("*")]}.`;
  return `${subject.inbox ?? own}.`;
}

/**
 * A bus's `inProcess` subscriptions: what the bus publishes on their
 * subjects reaches them at once, and its NATS copy carries the bus's origin
 * so that they skip it.
 */
function inProcessDelivery(nc: NatsConnection) {
  const listeners = new Set<{ pattern: string[]; sub: Subscription; take: (subject: string, json: string) => void }>();
  const origin = crypto.randomUUID();
  return {
    /** Publishes `json` on `name` over NATS, and to the in-process subscriptions of `name` in a microtask. */
    publish(name: string, json: string): void {
      const here = listeners.size === 0 ? [] : [...listeners].filter((l) => subjectMatches(l.pattern, name.split(".")));
      if (here.length === 0) return nc.publish(name, encoder.encode(json));
      const marked = headers();
      marked.set(ORIGIN_HEADER, origin);
      nc.publish(name, encoder.encode(json), { headers: marked });
      queueMicrotask(() => {
        for (const l of here) if (!l.sub.isClosed()) l.take(name, json);
      });
    },
    /** Whether `msg` is the NATS copy of what this bus published to its in-process subscriptions. */
    isOwn: (msg: Msg) => msg.headers?.get(ORIGIN_HEADER) === origin,
    /** Adds subscription `sub` of `pattern`, which `take`s each message in-process, until it closes. */
    listen(pattern: string, sub: Subscription, take: (subject: string, json: string) => void): void {
      const listener = { pattern: pattern.split("."), sub, take };
      listeners.add(listener);
      const forget = () => void listeners.delete(listener);
      void sub.closed.then(forget, forget);
    },
  };
}

/**
 * How a bus answers its requests on `subject`: `answer(message, name, send)`
 * calls `send` once, with the handler's answer (checked against the reply
 * schema) or the error it threw as an error reply; undefined `message`: it
 * failed its schema.
 */
function answerer<Q extends z.ZodType, R extends z.ZodType>(
  subject: RequestSubject<Q, R>,
  handler: ServeHandler<Q, R>,
  nc: NatsConnection,
  log: Logger,
) {
  const failed = (e: unknown, subjectName: string) => {
    // Failed because this side is shutting down (its connection draining): not the request's fault. Said
    // as such, so a requester tries again once a restarted server answers (see `node/remote_bucket.ts`).
    if (nc.isDraining() || nc.isClosed()) {
      const why = (e as Error)?.message ?? String(e);
      return {
        ok: false,
        error: errorBody(new UnavailableError(`Cannot answer now: stopping (${why})`, { code: "stopping" })),
      };
    }
    if (!(e instanceof Error) || !("code" in e)) {
      log.error("bus:handler-failed", { subject: subjectName, error: String((e as Error)?.stack ?? e) });
    }
    return { ok: false, error: errorBody(e) };
  };
  const checked = (value: unknown, subjectName: string) => {
    const parsed = subject.reply.safeParse(value);
    if (parsed.success) return parsed.data;
    const why = describeIssue(parsed.error, "reply");
    log.error("bus:reply-invalid", { subject: subjectName, reason: why });
    return failed(
      new UnavailableError(`Reply on '${subjectName}' failed its schema: ${why}`, { code: "invalid_reply" }),
      subjectName,
    );
  };
  return (message: z.output<Q> | undefined, subjectName: string, send: (reply: unknown) => void): void => {
    let sent = false;
    const finish = (reply: () => unknown) => {
      if (sent) return;
      sent = true;
      send(reply());
    };
    if (message === undefined) {
      const e = new ValidationError(`Message on ${subjectName} failed its schema`, { code: "invalid_message" });
      return finish(() => failed(e, subjectName));
    }
    // In a later microtask, as a NATS delivery would be: the requester's code runs on first.
    Promise.resolve().then(() => handler(message, subjectName, (answer) => finish(() => checked(answer, subjectName))))
      .then((answer) => finish(() => checked(answer, subjectName)), (e) => finish(() => failed(e, subjectName)));
  };
}

/** Creates a {@linkcode Bus} on a NATS connection. */
export function createBus(nc: NatsConnection, log: Logger, options: BusOptions = {}): Bus {
  let rejected = 0;
  const ownInbox = options.inbox ?? "_INBOX";
  const reject = (subject: string, reason: string): undefined => {
    rejected++;
    log.warn("bus:rejected", { subject, reason, rejected });
    options.onReject?.(subject, reason);
    return undefined;
  };
  /** Parses and checks a message's JSON; undefined (logged, counted) when it fails. */
  const check = <S extends z.ZodType>(
    schema: S,
    subjectName: string,
    data: Uint8Array | string,
    binding?: { pattern: string; field?: string },
  ): z.output<S> | undefined => {
    let json: unknown;
    try {
      json = JSON.parse(typeof data === "string" ? data : decoder.decode(data));
    } catch {
      return reject(subjectName, "not JSON");
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) return reject(subjectName, describeIssue(parsed.error));
    if (binding?.field) {
      const token = subjectName.split(".")[binding.pattern.split(".").indexOf("*")];
      const claimed = (parsed.data as Record<string, unknown>)[binding.field];
      if (claimed !== token) {
        return reject(
          subjectName,
          `${binding.field} '${String(claimed)}' does not match the sender's subject token '${token}'`,
        );
      }
    }
    return parsed.data;
  };
  const decode = <S extends z.ZodType>(
    schema: S,
    msg: Msg,
    binding?: { pattern: string; field?: string },
  ): z.output<S> | undefined => {
    if (msg.reply?.startsWith("$JS.")) return reject(msg.subject, "delivered by a JetStream consumer");
    return check(schema, msg.subject, msg.data, binding);
  };
  const bindingOf = (subject: { subject: string; sender?: string }) =>
    subject.sender ? { pattern: subject.subject, field: subject.sender } : undefined;
  const stopOn = (sub: Subscription, signal?: AbortSignal) => {
    if (!signal) return;
    if (signal.aborted) sub.unsubscribe();
    else signal.addEventListener("abort", () => sub.unsubscribe(), { once: true });
  };
  const inProcess = inProcessDelivery(nc);
  /** Exact subjects this bus serves, answered in-process when this bus also sends the request. */
  const local = new Map<string, (json: string) => Promise<unknown>>();
  const replyOf = <T>(subject: { subject: string }, reply: T | undefined): T => {
    if (reply === undefined) {
      throw new UnavailableError(`Reply on '${subject.subject}' failed its schema`, { code: "invalid_reply" });
    }
    return reply;
  };
  const bus: Bus = {
    nc,
    get rejected() {
      return rejected;
    },
    publish(subject, message) {
      inProcess.publish(subject.subject, JSON.stringify((subject.sendSchema ?? subject.schema).parse(message)));
    },
    subscribe(subject, handler, options = {}) {
      const local = options.inProcess === true && options.queue === undefined;
      const take = (name: string, message: z.output<typeof subject.schema> | undefined) => {
        if (message === undefined) return;
        Promise.resolve().then(() => handler(message, name)).catch((e) =>
          log.error("bus:handler-failed", { subject: name, error: String(e?.stack ?? e) })
        );
      };
      const sub = nc.subscribe(subject.subject, {
        queue: options.queue,
        callback: (err, msg) => {
          if (err) {
            log.warn("bus:subscription-error", { subject: subject.subject, error: err.message });
            return;
          }
          // Taken in-process when it was published.
          if (local && inProcess.isOwn(msg)) return;
          take(msg.subject, decode(subject.schema, msg, bindingOf(subject)));
        },
      });
      if (local) {
        inProcess.listen(
          subject.subject,
          sub,
          (name, json) => take(name, check(subject.schema, name, json, bindingOf(subject))),
        );
      }
      stopOn(sub, options.signal);
      return sub;
    },
    serve(subject, handler, options = {}) {
      const answer = answerer(subject, handler, nc, log);
      const sub = nc.subscribe(subject.subject, {
        queue: options.queue,
        callback: (err, msg) => {
          if (err) return;
          // Answers go only into the requester's own inbox: a reply subject aimed elsewhere (a manager
          // subject, another node's inbox) or none at all is not a request anyone may make.
          const inbox = inboxOf(subject, msg.subject, ownInbox);
          if (!msg.reply?.startsWith(inbox)) {
            return reject(msg.subject, `reply subject '${msg.reply ?? ""}' is not inside '${inbox}'`);
          }
          const message = decode(subject.schema, msg, bindingOf(subject));
          answer(message, msg.subject, (reply) => msg.respond(encoder.encode(JSON.stringify(reply))));
        },
      });
      // Requests on this exact subject from this same bus are answered in-process (see request()).
      if (!/[*>]/.test(subject.subject) && !options.queue && !local.has(subject.subject) && !options.signal?.aborted) {
        const serveLocal = (json: string) =>
          new Promise<unknown>((resolve) =>
            answer(check(subject.schema, subject.subject, json, bindingOf(subject)), subject.subject, resolve)
          );
        local.set(subject.subject, serveLocal);
        const forget = () => {
          if (local.get(subject.subject) === serveLocal) local.delete(subject.subject);
          options.signal?.removeEventListener("abort", forget);
        };
        options.signal?.addEventListener("abort", forget, { once: true });
        void sub.closed.then(forget, forget);
      }
      stopOn(sub, options.signal);
      return sub;
    },
    async request(subject, message, options = {}) {
      const data = subject.schema.parse(message);
      const timeoutMs = options.timeoutMs ?? 10_000;
      const serveLocal = local.get(subject.subject);
      if (serveLocal) {
        // Served by this process: no trip through nats-server (about 0.4 ms each way on a busy machine), but the
        // same JSON copy, the same schema checks at both edges and the same timeout as over NATS.
        let timer: TimerId | undefined;
        const timedOut = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new UnavailableError(
                  `No answer on '${subject.subject}' within ${timeoutMs} ms (its handler runs in this process)`,
                  { code: "timeout" },
                ),
              ),
            timeoutMs,
          );
        });
        let json: string;
        try {
          json = JSON.stringify(await Promise.race([serveLocal(JSON.stringify(data)), timedOut]));
        } finally {
          clearTimeout(timer);
        }
        return replyOf(subject, check(subject.reply, subject.subject, json));
      }
      let msg: Msg;
      try {
        msg = await nc.request(subject.subject, encoder.encode(JSON.stringify(data)), { timeout: timeoutMs });
      } catch (e) {
        throw new UnavailableError(
          `Cannot reach '${subject.subject}' as ${(e as Error).message}: is the manager running?`,
          { cause: e, code: "no_responder" },
        );
      }
      return replyOf(subject, decode(subject.reply, msg));
    },
  };
  return bus;
}
