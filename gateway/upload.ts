/**
 * Reading an uploaded package from a request: a raw zip body or a multipart
 * field `package`, within the package size limit.
 *
 * @module
 */
import type { Context } from "hono";
import { TooLargeError, ValidationError } from "../core/errors.ts";
import type { PackageLimits } from "../core/package.ts";

/** An uploaded package: its bytes and the task name it suggests. */
export interface Upload {
  bytes: Uint8Array;
  /** From `?name=` or the file name, made safe; `task` when neither is given. */
  name: string;
}

/**
 * Reads the package a request carries.
 *
 * @throws {TooLargeError} When the declared size exceeds `limits.maxPackageBytes`.
 * @throws {ValidationError} When the body is of another type or the multipart field is missing.
 */
export async function readUpload(c: Context, limits: PackageLimits): Promise<Upload> {
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > limits.maxPackageBytes) {
    throw new TooLargeError(
      `Cannot accept package as its size ${declared} bytes exceeds the limit of ${limits.maxPackageBytes} bytes`,
      { code: "package_too_large" },
    );
  }
  const type = c.req.header("content-type") ?? "";
  let bytes: Uint8Array;
  let name = c.req.query("name") ?? "";
  if (type.startsWith("multipart/form-data")) {
    let form: FormData;
    try {
      form = await c.req.formData();
    } catch (e) {
      if ((e as Error).name === "TooLargeError") throw e;
      throw new ValidationError(`Cannot read multipart upload as ${(e as Error).message}`, { code: "bad_multipart" });
    }
    const file = form.get("package");
    if (!(file instanceof File)) {
      throw new ValidationError("Cannot accept upload as multipart field 'package' is missing or not a file", {
        code: "missing_package",
      });
    }
    bytes = new Uint8Array(await file.arrayBuffer());
    name ||= file.name;
  } else if (type === "" || type.startsWith("application/zip") || type.startsWith("application/octet-stream")) {
    bytes = new Uint8Array(await c.req.arrayBuffer());
  } else {
    throw new ValidationError(
      `Cannot accept upload of type '${type}': send application/zip, or multipart/form-data with field 'package'`,
      { code: "unsupported_media_type" },
    );
  }
  name = name.replace(/\.zip$/i, "").replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64) || "task";
  return { bytes, name };
}
