/**
 * Zips made in memory, for packages in tests (`tools/make_zip.ts`, which
 * benchmarks share).
 *
 * @module
 */
export { makeZip, type ZipFile } from "../../tools/make_zip.ts";
