import assert from "node:assert/strict";
import type { TokenRecord } from "../core/schema.ts";
import { canSee } from "./access.ts";

const as = (user: string, role: TokenRecord["role"]): TokenRecord => ({ user, role, createdAt: 0 });

Deno.test("canSee() lets a submitter see only its own tasks, and viewers and admins every task", () => {
  assert.equal(canSee(as("ann", "submitter"), { owner: "ann" }), true);
  assert.equal(canSee(as("ann", "submitter"), { owner: "bob" }), false);
  assert.equal(canSee(as("vic", "viewer"), { owner: "bob" }), true);
  assert.equal(canSee(as("ada", "admin"), { owner: "bob" }), true);
});
