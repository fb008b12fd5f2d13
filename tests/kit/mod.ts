/**
 * The test kit: a real nats-server on a free port, a real manager, node and
 * CLI processes, real Deno KV stores, zips made in memory. No mocks of NATS
 * or Deno KV.
 *
 * @module
 */
export * from "./api.ts";
export * from "./certs.ts";
export * from "./kv.ts";
export * from "./log.ts";
export * from "./manager.ts";
export * from "./nats.ts";
export * from "./processes.ts";
export * from "./wait.ts";
export * from "./zip.ts";
