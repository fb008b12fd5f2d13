/**
 * Property-based fuzzing of every operation of the OpenAPI document against
 * a real manager (embedded nats-server, Deno KV): random methods, path
 * parameters, query strings, headers, content types and bodies, as admin,
 * submitter, viewer, with a wrong token and with none. The gateway must
 * never answer a 5xx other than a deliberate 503, never show a stack trace
 * or an internal path, and must still serve afterwards.
 *
 * Bounded for CI: PARALLELIC_FUZZ_RUNS cases (default 400) or 30 s, whichever
 * comes first. The seed is printed; replay with PARALLELIC_FUZZ_SEED=<seed>.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { OPERATIONS } from "../gateway/openapi.ts";
import { addApiUser, makeZip, ROOT, startTestManager, TEST_TOKEN, type TestManager } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Values that broke or fooled parsers before, or might: mixed into every parameter. */
const HOSTILE = [
  "bad.name",
  "a%20b",
  "..%2Fn1",
  "../n1",
  "0x1",
  "1.0",
  "+1",
  "01",
  "-1",
  "1e3",
  "NaN",
  "Infinity",
  "9007199254740993",
  "finalize",
  "",
  " ",
  "%00",
  "\u0000",
  "%E2%80%AE",
  "a".repeat(300),
  "💥",
  "__proto__",
  "constructor",
  "<script>alert(1)</script>",
  "t0000000000000000",
  "true",
  "yes",
  "%",
  "%zz",
];

const CONTENT_TYPES = [
  undefined,
  "application/zip",
  "application/octet-stream",
  "application/json",
  "application/x-tar",
  "text/plain",
  "multipart/form-data",
  "multipart/form-data; boundary=x",
  "application/zip; charset=utf-8",
  "*/*",
  "garbage",
];

type Who = "admin" | "submitter" | "viewer" | "wrong" | "none";

interface FuzzRequest {
  method: string;
  path: string;
  query: [string, string][];
  who: Who;
  contentType: string | undefined;
  headers: [string, string][];
  body: "none" | "zip" | "form" | { text: string } | { bytes: Uint8Array };
}

interface Fixtures {
  tokens: Record<Who, string | null>;
  taskIds: string[];
  zip: Uint8Array;
}

function requestArbitrary(fixtures: Fixtures): fc.Arbitrary<FuzzRequest> {
  const valid: Record<string, string[]> = {
    id: fixtures.taskIds,
    index: ["0", "1", "2", "finalize"],
    name: ["fuzzdata", "fuzz-node", "nobody"],
    version: ["1", "v1", "latest"],
  };
  const param = (key: string) =>
    fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...(valid[key] ?? ["x"])) },
      { weight: 3, arbitrary: fc.constantFrom(...HOSTILE) },
      { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
      { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
    ).chain((v) => fc.constantFrom(encodeURIComponent(v), v));
  const value = fc.oneof(
    fc.constantFrom(...HOSTILE),
    fc.constantFrom("0", "1", "5", "100", "queued", "running", "tasks", "nodes", "tasks,nodes"),
    fc.string({ maxLength: 30 }),
  );
  const op = fc.constantFrom(...OPERATIONS);
  return op.chain((o) => {
    const keys = Object.keys(o.query ?? {});
    return fc.record({
      method: fc.oneof(
        { weight: 8, arbitrary: fc.constant(o.method.toUpperCase()) },
        { weight: 1, arbitrary: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS") },
      ),
      path: fc.oneof(
        {
          weight: 9,
          arbitrary: fc.tuple(
            ...o.path.split("/").map((part) => part.startsWith(":") ? param(part.slice(1)) : fc.constant(part)),
          ).map((parts) => parts.join("/")),
        },
        // Now and then a path of no operation: under /api/v1/, or anywhere.
        {
          weight: 1,
          arbitrary: fc.oneof(fc.webPath(), fc.webPath().map((p) => `/api/v1${p.startsWith("/") ? p : `/${p}`}`)),
        },
      ),
      query: fc.array(
        fc.tuple(keys.length ? fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 8 })) : fc.string(), value),
        { maxLength: 4 },
      ),
      who: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom<Who>("admin", "submitter") },
        { weight: 1, arbitrary: fc.constantFrom<Who>("viewer", "wrong", "none") },
      ),
      contentType: fc.constantFrom(...CONTENT_TYPES, ...Object.keys(o.body ?? {})),
      headers: fc.array(
        fc.tuple(
          fc.constantFrom("idempotency-key", "parallelic-upload-bytes", "accept", "x-forwarded-for", "range"),
          fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ maxLength: 80 })),
        ),
        { maxLength: 3 },
      ),
      body: fc.oneof(
        fc.constant("none" as const),
        fc.constant("zip" as const),
        fc.constant("form" as const),
        fc.json({ maxDepth: 3 }).map((text) => ({ text })),
        fc.record({ name: fc.oneof(fc.constantFrom(...HOSTILE), fc.string()), role: fc.string() }).map((o) => ({
          text: JSON.stringify(o),
        })),
        fc.uint8Array({ maxLength: 1024 }).map((bytes) => ({ bytes })),
        // Near-valid bodies of the task changes (rerun, PATCH): right keys, wrong or extreme values.
        fc.record({
          instances: fc.oneof(
            fc.constantFrom("failed", "all", ""),
            fc.array(fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-1, 2 ** 53, 1e308)), { maxLength: 5 }),
          ),
          finalize: fc.oneof(fc.boolean(), fc.string({ maxLength: 5 })),
          priority: fc.oneof(fc.integer({ min: -5, max: 105 }), fc.double(), fc.string({ maxLength: 5 })),
          held: fc.oneof(fc.boolean(), fc.constantFrom("true", 1, null)),
        }, { requiredKeys: [] }).map((o) => ({ text: JSON.stringify(o) })),
      ),
    });
  });
}

/** Reads at most 64 KiB or 300 ms of a body (event streams and log follows never end by themselves). */
async function readSome(res: Response): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), 300));
  try {
    while (size < 65536) {
      const next = await Promise.race([reader.read(), timeout]);
      if (next === "timeout" || next.done) break;
      chunks.push(next.value);
      size += next.value.byteLength;
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

/** Builds the request; null when the client itself could not send it (a header value fetch refuses). */
function build(r: FuzzRequest, fixtures: Fixtures): Request | null {
  const headers = new Headers();
  const token = fixtures.tokens[r.who];
  if (token) headers.set("authorization", `Bearer ${token}`);
  if (r.contentType) headers.set("content-type", r.contentType);
  for (const [k, v] of r.headers) {
    try {
      headers.set(k, v);
    } catch { /* not a value a client can send */ }
  }
  let body: BodyInit | undefined;
  if (r.method !== "GET" && r.method !== "HEAD") {
    if (r.body === "zip") body = fixtures.zip as Uint8Array<ArrayBuffer>;
    else if (r.body === "form") {
      const form = new FormData();
      form.set("package", new File([fixtures.zip as Uint8Array<ArrayBuffer>], "fuzz.zip"));
      headers.delete("content-type");
      body = form;
    } else if (r.body !== "none") body = "text" in r.body ? r.body.text : r.body.bytes as Uint8Array<ArrayBuffer>;
  }
  const query = r.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  try {
    return new Request(`http://localhost${r.path}${query ? `?${query}` : ""}`, { method: r.method, headers, body });
  } catch {
    return null;
  }
}

async function fixtures(tm: TestManager): Promise<Fixtures> {
  const submitter = await addApiUser(tm, "fuzz-sub", "submitter");
  const viewer = await addApiUser(tm, "fuzz-view", "viewer");
  const zip = await makeZip({
    "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 3\n[finalize]\nentrypoint = "run.sh"\n`,
    "run.sh": "#!/bin/sh\necho fuzz\n",
  });
  const taskIds: string[] = [];
  for (const token of [TEST_TOKEN, submitter]) {
    const res = await tm.api("/api/v1/tasks?name=fuzz", {
      method: "POST",
      token,
      headers: { "content-type": "application/zip" },
      body: zip as Uint8Array<ArrayBuffer>,
    });
    assert.equal(res.status, 201);
    taskIds.push((await res.json()).id);
  }
  const data = await tm.api("/api/v1/data/fuzzdata?file=a.txt", { method: "POST", token: submitter, body: "hello" });
  assert.equal(data.status, 201, await data.clone().text());
  return { tokens: { admin: TEST_TOKEN, submitter, viewer, wrong: "not-a-token", none: null }, taskIds, zip };
}

/** What must never be in an answer: a stack frame, the source tree's or data dir's path. */
function leaks(text: string, tm: TestManager): string | null {
  if (/\bat .*\.(ts|js|mjs):\d+:\d+/.test(text)) return "a stack frame";
  if (text.includes(ROOT)) return "the source path";
  if (text.includes(tm.dataDir)) return "the data dir";
  if (/file:\/\/\//.test(text)) return "a file URL";
  return null;
}

Deno.test({
  name:
    "fuzzing every OpenAPI operation never gets a 5xx (but a deliberate 503) nor a stack trace; the server serves on",
  ...opts,
  async fn() {
    const unlimited = { perSecond: 1e6, burst: 1e6 };
    await using tm = await startTestManager({ gateway: { rate: unlimited, failureRate: unlimited } });
    const fx = await fixtures(tm);
    const seed = Number(Deno.env.get("PARALLELIC_FUZZ_SEED") ?? Date.now() % 2 ** 31);
    const numRuns = Number(Deno.env.get("PARALLELIC_FUZZ_RUNS") ?? 400);
    console.log(`api fuzz: seed ${seed}, up to ${numRuns} cases or 30 s (replay with PARALLELIC_FUZZ_SEED=${seed})`);
    const statuses = new Map<number, number>();
    let cases = 0;
    const property = fc.asyncProperty(requestArbitrary(fx), async (r) => {
      const req = build(r, fx);
      if (!req) return;
      cases++;
      const res = await tm.manager.gateway.request(req);
      const text = await readSome(res);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const what = `${req.method} ${new URL(req.url).pathname}${new URL(req.url).search} as ${r.who}`;
      if (res.status >= 500) {
        // A deliberate 503 says NATS did not answer in time; anything else is a fault.
        assert.ok(res.status === 503 && /"unavailable"/.test(text), `${what}: ${res.status} ${text.slice(0, 500)}`);
      }
      const leak = leaks(text, tm);
      assert.equal(leak, null, `${what}: the answer shows ${leak}: ${text.slice(0, 500)}`);
    });
    const result = await fc.check(property, {
      seed,
      numRuns,
      interruptAfterTimeLimit: 30_000,
      markInterruptAsFailure: false,
      endOnFailure: false,
    });
    console.log(
      `api fuzz: seed ${seed}, ${cases} cases sent, statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
    );
    if (result.failed) {
      throw new Error(`${fc.defaultReportMessage(result)}\nReplay with PARALLELIC_FUZZ_SEED=${seed}`);
    }
    assert.ok(cases >= 50, `at least 50 cases ran (ran ${cases})`);
    assert.ok([...statuses.keys()].some((s) => s >= 200 && s < 300), "some requests succeeded");
    assert.ok([...statuses.keys()].some((s) => s === 400), "some requests were refused as bad input");
    // The server still serves, over its socket too.
    assert.equal((await tm.api("/healthz", { token: null })).status, 200);
    assert.equal((await tm.api("/api/v1/tasks")).status, 200);
  },
});
