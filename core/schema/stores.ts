/**
 * Names of what JetStream keeps: the log stream and the object-store buckets
 * for packages, data sets and workspaces, and how objects in them are named.
 *
 * @module
 */
import type { DataVersion } from "./ids.ts";

/** The JetStream stream that keeps logs. */
export const LOG_STREAM = "PARALLELIC_LOGS";
/** The object-store bucket that keeps packages, named by digest. */
export const PACKAGE_BUCKET = "parallelic-packages";
/**
 * The object-store bucket that keeps data sets: each distinct file content
 * once (`blob/<sha256 hex>`), and each version's manifest
 * (`manifest/<sha256 hex>`); uploads land in `tmp/<uuid>` first.
 */
export const DATA_BUCKET = "parallelic-data";
/** Object name of a data file's content. */
export const dataBlobObject = (hex: string) => `blob/${hex}`;
/** Object name of a data set version's manifest. */
export const dataManifestObject = (version: DataVersion) => `manifest/${version.slice("sha256:".length)}`;
/** The object-store bucket that keeps task workspaces: one tar of outputs per instance, and finalize's. */
export const WORKSPACE_BUCKET = "parallelic-workspaces";
/** Object name of the outputs of instance `index` (or of finalize) of a task. */
export const outputObject = (taskId: string, index: number | "finalize") => `${taskId}/${index}`;
