/**
 * Which addresses a task's webhook may reach. A task owner names the URL, and
 * the manager makes the request from inside the operator's network: left
 * unchecked, a webhook could probe the manager's own host, the cloud
 * metadata service or the private network. So a host whose address is
 * loopback, private, link-local, shared (CGNAT), multicast or reserved is
 * refused unless the operator allows it (`--notify-allow`: host names,
 * `*.suffix` patterns, addresses or CIDRs). Public addresses are allowed.
 *
 * The host is resolved and checked before each try; redirects are not
 * followed (see `services/notify.ts`), so a public receiver cannot bounce
 * the request inward.
 *
 * @module
 */
import { ValidationError } from "../core/errors.ts";

/** An address range: family, first address and prefix length. */
interface Range {
  v6: boolean;
  base: bigint;
  bits: number;
}

/** Parses an IPv4 or IPv6 address into a number; null when it is neither. */
export function parseIp(text: string): { v6: boolean; value: bigint } | null {
  const ip = text.replace(/^\[|\]$/g, "");
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    if (parts.some((p) => p > 255)) return null;
    return { v6: false, value: parts.reduce((n, p) => (n << 8n) | BigInt(p), 0n) };
  }
  if (!ip.includes(":") || !/^[0-9a-fA-F:.]+$/.test(ip)) return null;
  let groups = ip;
  // A trailing dotted IPv4 part (::ffff:1.2.3.4) becomes two groups.
  const tail = /:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(ip);
  if (tail) {
    const inner = parseIp(tail[1]);
    if (!inner) return null;
    groups = ip.slice(0, tail.index + 1) +
      `${(inner.value >> 16n).toString(16)}:${(inner.value & 0xffffn).toString(16)}`;
  }
  const halves = groups.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  if (all.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  return { v6: true, value: all.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n) };
}

function parseRange(text: string): Range | null {
  const [addr, prefix, extra] = text.split("/");
  const ip = extra === undefined ? parseIp(addr) : null;
  if (!ip) return null;
  const max = ip.v6 ? 128 : 32;
  const bits = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
  if (!(bits >= 0 && bits <= max)) return null;
  return { v6: ip.v6, base: ip.value >> BigInt(max - bits), bits };
}

const inRange = (r: Range, ip: { v6: boolean; value: bigint }) =>
  r.v6 === ip.v6 && ip.value >> BigInt((ip.v6 ? 128 : 32) - r.bits) === r.base;

/** Addresses a webhook may not reach unless allowed. */
const INTERNAL = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "224.0.0.0/4",
  "240.0.0.0/4",
  "::/128",
  "::1/128",
  "64:ff9b::/96",
  "fc00::/7",
  "fe80::/10",
  "ff00::/8",
].map((r) => parseRange(r)!);
const MAPPED_V4 = parseRange("::ffff:0:0/96")!;

/** Whether `ip` is loopback, private, link-local, shared, multicast or reserved (IPv4-mapped IPv6 included). */
export function isInternal(ip: { v6: boolean; value: bigint }): boolean {
  if (inRange(MAPPED_V4, ip)) return isInternal({ v6: false, value: ip.value & 0xffffffffn });
  return INTERNAL.some((r) => inRange(r, ip));
}

/** How a host name is resolved to addresses. */
export type Resolver = (host: string) => Promise<string[]>;

/** Resolves with DNS (A and AAAA). */
export const dnsResolver: Resolver = async (host) => {
  const found = await Promise.all(
    (["A", "AAAA"] as const).map((type) => Deno.resolveDns(host, type).catch(() => [] as string[])),
  );
  return found.flat();
};

/** Decides whether a webhook URL may be reached. */
export interface AddressPolicy {
  /** Null when `url` may be reached now; otherwise why not, and whether that may change on a later try. */
  check(url: URL): Promise<{ why: string; lasting: boolean } | null>;
}

/**
 * The policy of `allow` (`--notify-allow`): host names (`hooks.internal`),
 * suffix patterns (`*.corp.example`), addresses and CIDRs.
 *
 * @throws {ValidationError} When an entry is none of these.
 */
export function addressPolicy(allow: readonly string[], resolve: Resolver = dnsResolver): AddressPolicy {
  const hosts = new Set<string>();
  const suffixes: string[] = [];
  const ranges: Range[] = [];
  for (const raw of allow) {
    const entry = raw.trim().toLowerCase();
    const range = parseRange(entry);
    if (range) ranges.push(range);
    else if (/^\*\.[a-z0-9.-]+$/.test(entry)) suffixes.push(entry.slice(1));
    else if (/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(entry)) hosts.add(entry);
    else {
      throw new ValidationError(
        `--notify-allow: '${raw}' is not a host name, '*.suffix', address or CIDR (e.g. 10.0.0.0/8)`,
        { code: "invalid_config" },
      );
    }
  }
  const allowed = (ip: { v6: boolean; value: bigint }) => !isInternal(ip) || ranges.some((r) => inRange(r, ip));
  return {
    async check(url) {
      const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, "");
      if (hosts.has(host) || suffixes.some((s) => host.endsWith(s))) return null;
      const literal = parseIp(host);
      // `localhost` and `*.localhost` are loopback whatever DNS says (the system resolver fetch uses thinks so).
      const loopback = host === "localhost" || host.endsWith(".localhost");
      const addresses = literal ? [host] : loopback ? ["127.0.0.1", "::1"] : await resolve(host);
      if (addresses.length === 0) return { why: `cannot resolve host '${host}'`, lasting: false };
      for (const address of addresses) {
        const ip = parseIp(address);
        if (!ip || !allowed(ip)) {
          return {
            why: `host '${host}' is at ${address}, an internal address: the operator may allow it with --notify-allow`,
            lasting: true,
          };
        }
      }
      return null;
    },
  };
}
