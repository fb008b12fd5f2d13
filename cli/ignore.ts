/**
 * `.parallelicignore` rules. They live in `core/ignore.js`, plain JavaScript
 * shared with the web UI's browser script.
 *
 * @module
 */
export { parseIgnore } from "../core/ignore.js";
