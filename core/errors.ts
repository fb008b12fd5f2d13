/**
 * The few error classes Parallelic throws. Each sets `name` and keeps a
 * `cause`; the gateway's `onError` is the one place that turns them into
 * HTTP answers (see `gateway/app.ts`).
 *
 * @module
 */

/** Options every Parallelic error takes. */
export interface ParallelicErrorOptions {
  /** The error that led to this one. */
  cause?: unknown;
  /** A stable, machine-readable code such as `unknown_key`. */
  code?: string;
}

/** Input from a user (a package, a task.toml, a request) is invalid: HTTP 400. */
export class ValidationError extends Error {
  /** Machine-readable code, e.g. `invalid_package`. */
  readonly code: string;
  constructor(message: string, options: ParallelicErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "ValidationError";
    this.code = options.code ?? "invalid_request";
  }
}

/** Something the request names does not exist (or is not visible): HTTP 404. */
export class NotFoundError extends Error {
  /** Machine-readable code, e.g. `task_not_found`. */
  readonly code: string;
  constructor(message: string, options: ParallelicErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "NotFoundError";
    this.code = options.code ?? "not_found";
  }
}

/** Missing or wrong credentials (401), or a role that may not do this (403). */
export class AuthError extends Error {
  /** Machine-readable code: `unauthorized` or `forbidden`. */
  readonly code: string;
  constructor(message: string, options: ParallelicErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "AuthError";
    this.code = options.code ?? "unauthorized";
  }
}

/** The request conflicts with the current state (e.g. a name in use): HTTP 409. */
export class ConflictError extends Error {
  /** Machine-readable code. */
  readonly code: string;
  constructor(message: string, options: ParallelicErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "ConflictError";
    this.code = options.code ?? "conflict";
  }
}

/** An upload is larger than a configured limit: HTTP 413. */
export class TooLargeError extends Error {
  /** Machine-readable code. */
  readonly code: string;
  constructor(message: string, options: ParallelicErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "TooLargeError";
    this.code = options.code ?? "too_large";
  }
}

/** Too many requests for a while: HTTP 429 with `Retry-After`. */
export class RateLimitError extends Error {
  /** Machine-readable code. */
  readonly code: string;
  /** How long until a request would be taken. */
  readonly retryAfterMs: number;
  constructor(message: string, options: ParallelicErrorOptions & { retryAfterMs: number }) {
    super(message, { cause: options.cause });
    this.name = "RateLimitError";
    this.code = options.code ?? "rate_limited";
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** A peer (NATS, an actor) did not answer or answered with an error: HTTP 503. */
export class UnavailableError extends Error {
  /** Machine-readable code. */
  readonly code: string;
  constructor(message: string, options: ParallelicErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "UnavailableError";
    this.code = options.code ?? "unavailable";
  }
}

/** Every error class above. */
export type ParallelicError =
  | ValidationError
  | NotFoundError
  | AuthError
  | ConflictError
  | TooLargeError
  | RateLimitError
  | UnavailableError;

/**
 * The error for an upload over a size limit, naming both:
 * "Cannot accept package as its size 5000 bytes exceeds the limit of 1000 bytes".
 * A `partial` size is what had arrived when the upload was cut off.
 */
export function tooLarge(what: string, size: number, limit: number, code: string, partial = false): TooLargeError {
  const sized = partial ? `size (at least ${size} bytes so far)` : `size ${size} bytes`;
  return new TooLargeError(`Cannot ${what} as its ${sized} exceeds the limit of ${limit} bytes`, { code });
}
