/**
 * Retrying JetStream API calls through the moments when JetStream cannot
 * answer: a clustered stream electing a new leader after a server was lost,
 * or a cluster that has not elected its metadata leader yet.
 *
 * @module
 */
import { UnavailableError } from "./errors.ts";

/**
 * Retries a JetStream API call that timed out: while a clustered stream
 * elects a new leader (a NATS server was lost), its API does not answer for
 * a few seconds; and while a cluster forms, it has too few peers to place
 * replicated streams.
 */
export async function retryJetStream<T>(
  fn: () => Promise<T>,
  totalMs = 20_000,
  onRetry?: (error: Error) => void,
): Promise<T> {
  const deadline = Date.now() + totalMs;
  for (let delay = 100;; delay = Math.min(delay * 2, 2000)) {
    try {
      return await fn();
    } catch (e) {
      const name = (e as Error).name ?? "";
      // A cluster still forming has a leader but not yet the peers an R3 stream needs.
      const transient = /Timeout|NoResponders|Request|no suitable peers|insufficient resources/i;
      if (Date.now() > deadline || !transient.test(`${name} ${(e as Error).message}`)) {
        throw new UnavailableError(`JetStream did not answer: ${(e as Error).message}`, { cause: e });
      }
      onRetry?.(e as Error);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
