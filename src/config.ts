// Daemon configuration: an optional JSON file validated by schema/config.schema.json,
// then command-line flags on top. `--lan` and `--wan` alone are enough.

import { readFileSync } from 'node:fs';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { validate as generated } from './generated/config-validate.js';
import { familyOf, parseIp, parsePrefix, type IpAddress, type Prefix } from './net/address.js';

export interface Config {
  lan: string[];
  /**
   * The WAN interfaces, in the admin's order: one WAN zone (a DS-Lite line:
   * the native IPv6 link and the softwire beside it). Traffic arriving on any
   * of them is WAN traffic; the external IPv4 address is the first one's, in
   * this order, that has a global IPv4 address (net/wan-address.ts, ipv4Wan).
   */
  wans: string[];
  externalIp?: IpAddress;
  stateDir: string;
  /** Remove granted entries from the kernel on exit instead of leaving them to expire. */
  flushOnExit: boolean;
  backend: 'nft' | 'memory';
  policy?: string;
  port: number;
  announcePort: number;
  announce: boolean;
  lifetime: { min: number; max: number };
  maxMappings: number;
  maxFiltersPerMapping: number;
  rateLimit: { perSecond: number; burst: number };
  /** Datagrams/s one device (source link-layer address) may send our UDP ports, dropped in the kernel beyond; perSecond 0 turns it off. */
  deviceRateLimit: { perSecond: number; burst: number };
  /** `path`: how commands reach the kernel — in-process libnftables, an `nft` process per call, or the library when it works (auto). */
  nft: { table: string; embed: boolean; mark: number; path: 'auto' | 'library' | 'process' };
  reconcileSeconds: number;
  upnp: UpnpConfig;
  /**
   * dnsmasq's DHCP lease file (OpenWrt: /tmp/dhcp.leases). When set, no
   * mapping outlives its host's lease and a host's mappings go when its lease
   * ends (RFC 6887 §15). Unset: leases are not looked at.
   */
  dhcpLeases?: string;
  /**
   * Prometheus metrics at http://ADDR:PORT/metrics ("ADDR:PORT" or
   * "[ADDR]:PORT"): loopback or one of the LAN's own addresses, checked at
   * start. Unset: no metrics.
   */
  metrics?: string;
  /**
   * The admin API (src/server/admin/, docs/admin-api.yaml): `listen` is
   * "ADDR:PORT" or "[ADDR]:PORT", loopback or one of the LAN's own
   * addresses, checked at start; `passwordHash` lets the page log in with a
   * password too (scrypt, see README). Unset listen: no admin API.
   */
  admin?: { listen?: string; passwordHash?: string; hostNames?: string[] };
  /**
   * The ISP's PCP server this router relays its IPv4 mappings to (RFC 7648):
   * an address (always relayed: upstream's refusal is the client's), 'off'
   * (never), or 'auto': on a WAN address of the router's own nothing is
   * relayed; behind the ISP's NAT, a discovered server that answers
   * (src/net/upstream-discovery.ts), else mappings are granted here and said
   * not to reach the internet.
   */
  upstreamPcp: UpstreamPcpSetting;
  /**
   * Whether this router translates IPv4 itself (true, the default). false: a
   * DS-Lite B4 with no NAT44 of its own (RFC 6333): IPv4 mappings are made
   * by the AFTR's PCP server for the LAN host named in THIRD_PARTY (RFC 7648
   * §3.3), and here the forward path only admits what reaches the LAN host's
   * own endpoint — no DNAT. Needs an upstream PCP server (not 'off'); the
   * softwire is then the WAN interface that carries IPv4.
   */
  nat44: boolean;
  /**
   * Prefixes behind the LAN interfaces that are routed, not on-link, which a
   * third-party mapping may point into: on an AFTR, its subscribers' IPv4
   * networks reached through the softwire. Requests are still answered only
   * from on-link LAN sources.
   */
  lanRoutes: Prefix[];
  /** The least severe log line written. */
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** JSON lines, or pretty text for a person; unset, the CLI chooses. */
  logFormat?: 'json' | 'pretty';
}

export type UpstreamPcpSetting = 'auto' | 'off' | { address: IpAddress; port: number };

export interface UpnpConfig {
  enabled: boolean;
  /** TCP port of descriptions, control and eventing on the LAN addresses. */
  httpPort: number;
  /** UDP port of SSDP (1900; change only for tests). */
  ssdpPort: number;
  /** Which root description clients get: by User-Agent ('auto'), or always 1 or 2. */
  igdVersion: 'auto' | 1 | 2;
  /** User-Agent patterns (case-insensitive regular expressions) of clients that give up on IGD:2. */
  igd1UserAgents: string[];
  /** SSDP CACHE-CONTROL max-age, seconds. */
  maxAge: number;
}

export const DEFAULTS: Omit<Config, 'lan' | 'wans'> = {
  stateDir: '/var/lib/portcullis',
  flushOnExit: false,
  backend: 'nft',
  port: 5351,
  announcePort: 5350,
  announce: true,
  lifetime: { min: 120, max: 86400 },
  maxMappings: 200_000,
  maxFiltersPerMapping: 16,
  rateLimit: { perSecond: 20, burst: 40 },
  deviceRateLimit: { perSecond: 200, burst: 400 },
  nft: { table: 'portcullis', embed: false, mark: 0x10000000, path: 'auto' },
  reconcileSeconds: 10,
  upstreamPcp: 'auto',
  nat44: true,
  lanRoutes: [],
  logLevel: 'info',
  upnp: {
    enabled: true,
    httpPort: 5000,
    ssdpPort: 1900,
    igdVersion: 'auto',
    // Windows' and the consoles' UPnP stacks find an IGD:2 device and then do
    // not use it; everyone else gets IGD:2 (and its IPv6 firewall service).
    igd1UserAgents: ['Windows', 'Xbox', 'PlayStation'],
    maxAge: 1800,
  },
};

export class ConfigError extends Error {}

/** The file's and the flags' form: `wan` is one interface or a list of them (`--wan` repeated). */
type FileConfig = Partial<Omit<Config, 'wans' | 'externalIp' | 'nft' | 'upnp' | 'upstreamPcp' | 'lanRoutes'>> & { wan?: string | string[]; externalIp?: string; upstreamPcp?: string; lanRoutes?: string[]; nft?: Partial<Config['nft']>; upnp?: Partial<UpnpConfig> };

/** The schema's validator, generated at build time (scripts/make-validators.mjs): no compile at start. */
const validate = generated as unknown as ValidateFunction<FileConfig>;

function describe(file: string, errors: ErrorObject[]): string {
  return errors
    .map((e) => {
      const where = e.instancePath === '' ? '(top level)' : e.instancePath;
      const extra = e.keyword === 'additionalProperties' ? ` '${(e.params as { additionalProperty: string }).additionalProperty}'` : '';
      return `${file}: ${where}: ${e.message}${extra}`;
    })
    .join('\n');
}

export function loadConfigFile(file: string): FileConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (!validate(data)) throw new ConfigError(describe(file, validate.errors ?? []));
  return data;
}

/** Merges defaults ← file ← flags and checks what a schema cannot. */
export function resolveConfig(file: FileConfig, flags: FileConfig): Config {
  const merged = { ...DEFAULTS, ...file, ...definedOnly(flags) };
  merged.lifetime = { ...DEFAULTS.lifetime, ...file.lifetime, ...flags.lifetime };
  merged.rateLimit = { ...DEFAULTS.rateLimit, ...file.rateLimit, ...flags.rateLimit };
  merged.deviceRateLimit = { ...DEFAULTS.deviceRateLimit, ...file.deviceRateLimit };
  merged.admin = { ...file.admin, ...definedOnly(flags.admin ?? {}) };
  merged.nft = { ...DEFAULTS.nft, ...file.nft, ...definedOnly(flags.nft ?? {}) };
  const upnp = { ...DEFAULTS.upnp, ...file.upnp, ...definedOnly(flags.upnp ?? {}) } as UpnpConfig;
  merged.upnp = upnp;
  for (const pattern of upnp.igd1UserAgents) {
    try {
      new RegExp(pattern, 'i');
    } catch (err) {
      throw new ConfigError(`upnp.igd1UserAgents: ${JSON.stringify(pattern)} is not a regular expression: ${(err as Error).message}`);
    }
  }
  if (!merged.lan || merged.lan.length === 0) throw new ConfigError('no LAN interface: give --lan IFACE (repeatable)');
  const wans = wanList(merged.wan, merged.lan);
  // Interface names end up in nft rules: only plain Linux interface names pass.
  for (const name of [...merged.lan, ...wans]) {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new ConfigError(`interface name ${JSON.stringify(name)} is not a plain interface name (letters, digits, _ . -; at most 15)`);
  }
  if (merged.lifetime.min > merged.lifetime.max) {
    throw new ConfigError(`lifetime.min ${merged.lifetime.min} is above lifetime.max ${merged.lifetime.max}`);
  }
  let externalIp: IpAddress | undefined;
  if (merged.externalIp !== undefined) {
    externalIp = parseIp(merged.externalIp);
    if (!externalIp || familyOf(externalIp) !== 4) throw new ConfigError(`external IP ${merged.externalIp} is not an IPv4 address`);
  }
  const upstreamPcp = typeof merged.upstreamPcp === 'string' ? parseUpstreamPcp(merged.upstreamPcp) : merged.upstreamPcp;
  if (merged.nat44 === false && upstreamPcp === 'off') {
    throw new ConfigError('no NAT44 (DS-Lite) needs the AFTR\'s PCP server: give --upstream-pcp ADDR or auto, not off');
  }
  const lanRoutes: Prefix[] = [];
  for (const text of merged.lanRoutes ?? []) {
    const p = typeof text === 'string' ? parsePrefix(text) : text;
    if (!p) throw new ConfigError(`LAN route ${JSON.stringify(text)} is not a prefix (ADDR/LEN)`);
    lanRoutes.push(p);
  }
  const { wan: _given, ...rest } = merged;
  return { ...(rest as unknown as Omit<Config, 'wans'>), wans, externalIp, upstreamPcp, lanRoutes };
}

/** At most this many WAN interfaces: each is a set element in a few rules, and no line has more. */
export const MAX_WANS = 8;

/** `--wan` (repeated) or the file's `wan` (one name or a list) as the WAN zone's interfaces, in the admin's order. */
function wanList(given: string | string[] | undefined, lan: readonly string[]): string[] {
  const wans = given === undefined ? [] : typeof given === 'string' ? [given] : given;
  if (wans.length === 0) throw new ConfigError('no WAN interface: give --wan IFACE (repeatable: one WAN zone, e.g. --wan wan0 --wan ds0 on a DS-Lite line)');
  if (wans.length > MAX_WANS) throw new ConfigError(`${wans.length} WAN interfaces: at most ${MAX_WANS}`);
  const seen = new Set<string>();
  for (const name of wans) {
    if (seen.has(name)) throw new ConfigError(`WAN interface ${name} is given twice`);
    seen.add(name);
    if (lan.includes(name)) throw new ConfigError(`interface ${name} cannot be both LAN and WAN`);
  }
  return wans;
}

/** `auto`, `off`, `ADDR`, `ADDR:PORT` or `[ADDR]:PORT` (the PCP server port, 5351, by default). */
export function parseUpstreamPcp(text: string): UpstreamPcpSetting {
  if (text === 'auto' || text === 'off') return text;
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text) ?? /^([^:]+)(?::(\d{1,5}))?$/.exec(text) ?? /^([^\[\]]+)()$/.exec(text);
  const address = m?.[1] !== undefined ? parseIp(m[1]) : undefined;
  const port = m?.[2] ? Number(m[2]) : 5351;
  if (!address || port < 1 || port > 65535) throw new ConfigError(`upstream PCP server '${text}' is not auto, off, ADDR or ADDR:PORT`);
  return { address, port };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
