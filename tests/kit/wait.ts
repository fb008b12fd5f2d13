/**
 * Polling until a condition holds (`tools/wait.ts`, which benchmarks share).
 *
 * @module
 */
export { waitUntil } from "../../tools/wait.ts";
