/**
 * Certificates for TLS tests, made with openssl: a private CA and a
 * certificate for 127.0.0.1 it signed.
 *
 * @module
 */
import { join } from "node:path";

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** A private CA and a certificate for 127.0.0.1 signed by it, in `dir`: their files. */
export async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=Parallelic test CA",
  );
  await openssl(dir, "req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  await Deno.writeTextFile(
    join(dir, "ext.cnf"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
  );
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  );
  return { ca: join(dir, "ca.pem"), cert: join(dir, "server.pem"), key: join(dir, "server.key") };
}

/** An HTTPS server on 127.0.0.1 with a certificate `makeCertificates` made in `dir`; its CA file is `ca`. */
export async function serveHttps(
  dir: string,
  handler: Deno.ServeHandler<Deno.NetAddr>,
): Promise<{ server: Deno.HttpServer<Deno.NetAddr>; url: string; ca: string }> {
  const certs = await makeCertificates(dir);
  const server = Deno.serve({
    port: 0,
    hostname: "127.0.0.1",
    cert: await Deno.readTextFile(certs.cert),
    key: await Deno.readTextFile(certs.key),
    onListen() {},
  }, handler);
  return { server, url: `https://127.0.0.1:${server.addr.port}`, ca: certs.ca };
}
