/** Parallelic's version: what `parallelic --version` prints and nodes report. */
export const VERSION = "0.1.0";
