import assert from "node:assert/strict";
import { ValidationError } from "../core/errors.ts";
import { addressPolicy, isInternal, parseIp, type Resolver } from "./notify_address.ts";

const internal = (ip: string) => isInternal(parseIp(ip)!);

Deno.test("parseIp reads IPv4, IPv6 with :: and a dotted tail, and refuses the rest", () => {
  assert.equal(parseIp("10.1.2.3")?.value, 0x0a010203n);
  assert.equal(parseIp("::1")?.value, 1n);
  assert.equal(parseIp("[::ffff:127.0.0.1]")?.value, 0xffff7f000001n);
  assert.equal(parseIp("2001:db8::8:800:200c:417a")?.value, 0x20010db80000000000080800200c417an);
  for (const bad of ["256.1.1.1", "1.2.3", "1::2::3", "1:2:3:4:5:6:7:8:9", "example.com", "12345::"]) {
    assert.equal(parseIp(bad), null, bad);
  }
});

Deno.test("loopback, private, link-local, CGNAT, ULA, multicast and IPv4-mapped forms are internal", () => {
  for (const ip of ["127.0.0.1", "10.9.8.7", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254"]) {
    assert.ok(internal(ip), ip);
  }
  for (const ip of ["100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fd00::1", "fe80::1"]) {
    assert.ok(internal(ip), ip);
  }
  assert.ok(internal("::ffff:10.0.0.1"), "IPv4-mapped private");
  for (const ip of ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]) {
    assert.ok(!internal(ip), ip);
  }
});

Deno.test("the policy refuses internal hosts unless allowed by name, suffix, address or CIDR", async () => {
  const zone: Record<string, string[]> = {
    "hooks.example.com": ["93.184.215.14"],
    "sneaky.example.com": ["93.184.215.14", "10.0.0.5"],
    "ci.corp.example": ["10.1.2.3"],
    "db.internal": ["192.168.7.7"],
  };
  const resolve: Resolver = (host) => Promise.resolve(zone[host] ?? []);
  const closed = addressPolicy([], resolve);
  const check = (policy: typeof closed, url: string) => policy.check(new URL(url));
  assert.equal(await check(closed, "https://hooks.example.com/x"), null);
  assert.equal(await check(closed, "https://8.8.8.8/x"), null);
  assert.match((await check(closed, "https://sneaky.example.com/x"))!.why, /10\.0\.0\.5, an internal address/);
  assert.equal((await check(closed, "http://169.254.169.254/latest"))!.lasting, true);
  assert.equal((await check(closed, "http://localhost:8080/"))!.lasting, true, "localhost is loopback");
  assert.match((await check(closed, "http://2130706433/"))!.why, /127\.0\.0\.1/, "the URL parser's IPv4 forms");
  assert.match((await check(closed, "http://[::ffff:7f00:1]/"))!.why, /internal/);
  const nowhere = await check(closed, "https://nowhere.example/");
  assert.equal(nowhere?.lasting, false, "a name that does not resolve may resolve later");

  const open = addressPolicy(["*.corp.example", "db.internal", "127.0.0.0/8", "::1"], resolve);
  assert.equal(await check(open, "https://ci.corp.example/hook"), null);
  assert.equal(await check(open, "https://db.internal/hook"), null);
  assert.equal(await check(open, "http://127.0.0.2:9000/"), null);
  assert.equal(await check(open, "http://[::1]:9000/"), null);
  assert.notEqual(await check(open, "http://10.0.0.1/"), null, "what is not allowed stays refused");
  assert.notEqual(await check(open, "https://sneaky.example.com/"), null);
});

Deno.test("a --notify-allow entry that is no host, pattern, address or CIDR is refused, naming it", () => {
  for (const bad of ["10.0.0.0/33", "http://x", "*", "a b"]) {
    assert.throws(() => addressPolicy([bad]), (e) => e instanceof ValidationError && e.message.includes(`'${bad}'`));
  }
});
