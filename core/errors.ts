/**
 * The few error classes Parallelic throws, on one base that carries each
 * one's `code` and HTTP `status`, and their registry ({@linkcode ERROR_CLASSES}).
 * The gateway's `onError` (see `gateway/errors.ts`) turns them into HTTP answers,
 * the bus (`core/bus.ts`) carries them by name and the CLI (`cli/client.ts`)
 * throws an answer's status again as its class.
 *
 * @module
 */

/** Options every Parallelic error takes. */
export interface ParallelicErrorOptions {
  /** The error that led to this one. */
  cause?: unknown;
  /** A stable, machine-readable code such as `unknown_key`. */
  code?: string;
  /** {@linkcode RateLimitError} only: how long until a request would be taken. */
  retryAfterMs?: number;
}

/**
 * The base of every error class below: a message for people, a `code` for
 * programs and the HTTP `status` the gateway answers with. `name` is set
 * explicitly (not from the constructor) as the bus sends errors by name.
 */
export class ParallelicError extends Error {
  /** The class's name, which the bus sends it by. */
  static readonly errorName: string = "ParallelicError";
  /** The HTTP statuses this class answers with, the usual one first (a client maps them back). */
  static readonly statuses: readonly number[] = [500];
  /** The `code` when none is given. */
  static readonly defaultCode: string = "internal";
  /** Machine-readable code, e.g. `invalid_package`. */
  readonly code: string;
  constructor(message: string, options: ParallelicErrorOptions = {}) {
    super(message, { cause: options.cause });
    const Class = new.target as typeof ParallelicError;
    this.name = Class.errorName;
    this.code = options.code ?? Class.defaultCode;
  }
  /** The HTTP status the gateway answers this error with. */
  get status(): number {
    return (this.constructor as typeof ParallelicError).statuses[0];
  }
}

/** Input from a user (a package, a task.toml, a request) is invalid: HTTP 400. */
export class ValidationError extends ParallelicError {
  static override readonly errorName: string = "ValidationError";
  static override readonly statuses: readonly number[] = [400];
  static override readonly defaultCode: string = "invalid_request";
}

/** Something the request names does not exist (or is not visible): HTTP 404. */
export class NotFoundError extends ParallelicError {
  static override readonly errorName: string = "NotFoundError";
  static override readonly statuses: readonly number[] = [404];
  static override readonly defaultCode: string = "not_found";
}

/** Missing or wrong credentials (401), or a role that may not do this (code `forbidden`: 403). */
export class AuthError extends ParallelicError {
  static override readonly errorName: string = "AuthError";
  static override readonly statuses: readonly number[] = [401, 403];
  static override readonly defaultCode: string = "unauthorized";

  override get status(): number {
    return this.code === "forbidden" ? 403 : 401;
  }
}

/** The request conflicts with the current state (e.g. a name in use): HTTP 409. */
export class ConflictError extends ParallelicError {
  static override readonly errorName: string = "ConflictError";
  static override readonly statuses: readonly number[] = [409];
  static override readonly defaultCode: string = "conflict";
}

/** An upload is larger than a configured limit: HTTP 413. */
export class TooLargeError extends ParallelicError {
  static override readonly errorName: string = "TooLargeError";
  static override readonly statuses: readonly number[] = [413];
  static override readonly defaultCode: string = "too_large";
}

/** Too many requests for a while: HTTP 429 with `Retry-After`. */
export class RateLimitError extends ParallelicError {
  static override readonly errorName: string = "RateLimitError";
  static override readonly statuses: readonly number[] = [429];
  static override readonly defaultCode: string = "rate_limited";
  /** How long until a request would be taken. */
  readonly retryAfterMs: number;
  constructor(message: string, options: ParallelicErrorOptions & { retryAfterMs: number }) {
    super(message, options);
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** A peer (NATS, an actor) did not answer or answered with an error: HTTP 503. */
export class UnavailableError extends ParallelicError {
  static override readonly errorName: string = "UnavailableError";
  static override readonly statuses: readonly number[] = [503];
  static override readonly defaultCode: string = "unavailable";
}

/** A registered error class: made from a message and options, answered with `statuses`. */
export type ParallelicErrorClass = {
  new (message: string, options: ParallelicErrorOptions & { retryAfterMs: number }): ParallelicError;
  readonly errorName: string;
  readonly statuses: readonly number[];
};

/**
 * Every error class, by name: the one list the bus (which sends errors by
 * name), the gateway (class → status) and the CLI (status → class) read.
 */
export const ERROR_CLASSES: Readonly<Record<string, ParallelicErrorClass>> = Object.fromEntries(
  [ValidationError, NotFoundError, AuthError, ConflictError, TooLargeError, RateLimitError, UnavailableError]
    .map((Class) => [Class.errorName, Class]),
);

/** The registered class an HTTP status stands for, if any. */
export function errorClassOfStatus(status: number): ParallelicErrorClass | undefined {
  return Object.values(ERROR_CLASSES).find((c) => c.statuses.includes(status));
}

/**
 * The error for an upload over a size limit, naming both:
 * "Cannot accept package as its size 5000 bytes exceeds the limit of 1000 bytes".
 * A `partial` size is what had arrived when the upload was cut off.
 */
export function tooLarge(what: string, size: number, limit: number, code: string, partial = false): TooLargeError {
  const sized = partial ? `size (at least ${size} bytes so far)` : `size ${size} bytes`;
  return new TooLargeError(`Cannot ${what} as its ${sized} exceeds the limit of ${limit} bytes`, { code });
}
