import assert from "node:assert/strict";
import * as schema from "./schema.ts";
import * as subjects from "./subjects.ts";
import { NODE_SUBJECTS, SUBJECTS } from "./subjects.ts";

/** Every subject declared in core/schema.ts and core/subjects.ts, by export name (functions given `*`). */
function declaredSubjects(): Map<string, string> {
  const found = new Map<string, string>();
  for (const [name, value] of Object.entries({ ...schema, ...subjects })) {
    let made: unknown = value;
    if (typeof value === "function") {
      try {
        made = (value as (name: string) => unknown)("*");
      } catch {
        continue;
      }
    }
    const s = made as { subject?: unknown; schema?: unknown } | null;
    if (s && typeof s === "object" && typeof s.subject === "string" && "schema" in s) found.set(name, s.subject);
  }
  return found;
}

Deno.test("the subject table lists every subject declared, once", () => {
  const declared = declaredSubjects();
  assert.ok(declared.size >= 20, `only ${declared.size} subjects found`);
  const patterns = SUBJECTS.map((s) => s.pattern);
  assert.equal(new Set(patterns).size, patterns.length, `a subject is listed twice: ${patterns}`);
  const missing = [...declared].filter(([, subject]) => !patterns.includes(subject)).map(([name]) => name);
  assert.deepEqual(missing, [], "declared but not in SUBJECTS (core/subjects.ts)");
});

Deno.test("each node subject names its node where its pattern has '*'", () => {
  assert.equal(NODE_SUBJECTS.length, 12);
  for (const s of NODE_SUBJECTS) {
    assert.equal(s.ofNode("n1"), s.pattern.replace("*", "n1"));
    assert.ok(s.senders.includes("node") !== s.servers.includes("node"), `${s.pattern}: the node sends or takes it`);
  }
});
