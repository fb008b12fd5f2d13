import assert from "node:assert/strict";
import { ValidationError } from "../core/errors.ts";
import { newNkeyUser } from "../core/nats_auth.ts";
import { checkJoinToken } from "./join.ts";

Deno.test("a malformed join token is refused at once, saying what is wrong with it", () => {
  const { seed } = newNkeyUser();
  checkJoinToken(seed);
  checkJoinToken(`  ${seed}\n`);
  const wrongChar = seed.slice(0, 30) + (seed[30] === "A" ? "B" : "A") + seed.slice(31);
  const cases: [string, RegExp][] = [
    [seed.slice(0, 40), /40 characters long instead of 58/],
    ["hello", /starts 'he' instead of 'SU'/],
    ["", /it is empty/],
    [seed.slice(0, 57) + "!", /characters other than A-Z and 2-7/],
    [wrongChar, /checksum does not match/],
  ];
  for (const [token, why] of cases) {
    assert.throws(() => checkJoinToken(token), (e) => {
      assert.ok(e instanceof ValidationError);
      assert.match(e.message, /^The join token is malformed: /);
      assert.match(e.message, why);
      assert.match(e.message, /parallelic nodes token/);
      return true;
    }, token);
  }
});
