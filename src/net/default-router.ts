// The default router as a PCP server (RFC 6887 §8.1: with no server
// configured, a PCP client sends to its default router). For the router's
// PCP proxy that is the next hop of the WAN's default route:
//
// - a gateway address on a WAN interface (`ip -j route show default`); IPv4
//   first, since the NAT a proxy must get through is the ISP's IPv4 one,
//   then IPv6 (often link-local: the interface says where it is);
// - no gateway, on a DS-Lite softwire (an ip6tnl tunnel in ipip6 mode, or
//   `any`, which carries IPv4 too): the AFTR, at its well-known address
//   192.0.0.1 inside the tunnel (RFC 6333: 192.0.0.0/29 is the softwire's,
//   .1 the AFTR's, the B4's usually .2);
// - no gateway on another point-to-point link (PPPoE): the peer address of
//   the link, if it has one.
//
// A route counts when its interface is a WAN interface, or is a softwire
// whose underlying interface is one (OpenWrt names the tunnel `ds-wan6_4`
// and the admin names the WAN).
//
// Bounds: each `ip` run is cut after IP_TIMEOUT_MS and at IP_MAX_BYTES of
// output; at most MAX_ROUTES routes and MAX_LINK_LOOKUPS interface look-ups
// are used, so one discovery runs `ip` at most six times. A failed or unreadable run is a note, never a throw.

import { execFile } from 'node:child_process';
import { familyOf, mustParseIp, parseIp, type IpAddress } from './address.js';

/** RFC 6333: the AFTR's end of the softwire. */
export const AFTR_ADDRESS = mustParseIp('192.0.0.1');

export interface DefaultRouter {
  readonly address: IpAddress;
  /** The interface the route leaves by (a link-local address needs it). */
  readonly interface: string;
  /** A gateway or point-to-point peer, or the AFTR at the far end of a softwire. */
  readonly kind: 'router' | 'ds-lite-aftr';
}

/** One default route's next hop, as `ip -j route show default` lists it. */
export interface DefaultRoute {
  readonly gateway?: IpAddress;
  readonly dev: string;
  readonly metric: number;
}

/** What `ip -j -d addr show dev X` says about an interface, as much as matters here. */
export interface LinkFacts {
  /** linkinfo.info_kind: 'ip6tnl', 'veth', 'ppp' is absent (no linkinfo)… */
  readonly kind?: string;
  /** ip6tnl's info_data.proto: 'ipip6', 'ip6ip6' or 'any'. */
  readonly tunnelProto?: string;
  /** The interface a tunnel runs over (info_data.link). */
  readonly underlying?: string;
  /** A point-to-point link's peer addresses (addr_info entries whose address is not the local one). */
  readonly peers: readonly IpAddress[];
}

/** Runs `ip` with these arguments; the output, or undefined with a reason. */
export type IpRunner = (args: readonly string[]) => Promise<{ stdout?: string; error?: string }>;

export const IP_TIMEOUT_MS = 2000;
export const IP_MAX_BYTES = 256 * 1024;
export const MAX_ROUTES = 16;
/** Interfaces looked at (`ip … addr show dev`) in one discovery: each run may take IP_TIMEOUT_MS. */
export const MAX_LINK_LOOKUPS = 4;
const INTERFACE = /^[A-Za-z0-9_.@-]{1,15}$/;

export const runIp: IpRunner = (args) =>
  new Promise((resolve) => {
    execFile('ip', [...args], { timeout: IP_TIMEOUT_MS, maxBuffer: IP_MAX_BYTES, killSignal: 'SIGKILL' }, (err, stdout) => {
      resolve(err ? { error: `ip ${args.join(' ')}: ${err.message.split('\n')[0]}` } : { stdout });
    });
  });

function rows(json: string): Record<string, unknown>[] | undefined {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.filter((r): r is Record<string, unknown> => typeof r === 'object' && r !== null) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `ip -j route show default` → its next hops, lowest metric first (a
 * multipath route gives one per nexthop). Routes that are not unicast
 * (unreachable, blackhole…) lead nowhere and are left out. Undefined when
 * the text is not `ip`'s JSON.
 */
export function parseDefaultRoutes(json: string): DefaultRoute[] | undefined {
  const all = rows(json);
  if (!all) return undefined;
  const out: DefaultRoute[] = [];
  for (const r of all.slice(0, MAX_ROUTES)) {
    if (r.dst !== 'default' || (r.type !== undefined && r.type !== 'unicast')) continue;
    const metric = typeof r.metric === 'number' && Number.isFinite(r.metric) ? r.metric : 0;
    const hops = Array.isArray(r.nexthops) ? (r.nexthops as unknown[]).slice(0, MAX_ROUTES) : [r];
    for (const h of hops) {
      if (typeof h !== 'object' || h === null) continue;
      const { gateway, dev } = h as Record<string, unknown>;
      if (typeof dev !== 'string' || !INTERFACE.test(dev)) continue;
      const gw = typeof gateway === 'string' ? parseIp(gateway) : undefined;
      out.push(gw ? { gateway: gw, dev, metric } : { dev, metric });
    }
  }
  return out.sort((a, b) => a.metric - b.metric).slice(0, MAX_ROUTES);
}

/** `ip -j -d addr show dev X` → the facts above; undefined when not `ip`'s JSON for one interface. */
export function parseLinkFacts(json: string): LinkFacts | undefined {
  const row = rows(json)?.[0];
  if (!row) return undefined;
  const info = typeof row.linkinfo === 'object' && row.linkinfo !== null ? (row.linkinfo as Record<string, unknown>) : {};
  const data = typeof info.info_data === 'object' && info.info_data !== null ? (info.info_data as Record<string, unknown>) : {};
  const peers: IpAddress[] = [];
  for (const a of Array.isArray(row.addr_info) ? (row.addr_info as unknown[]).slice(0, MAX_ROUTES) : []) {
    if (typeof a !== 'object' || a === null) continue;
    const { local, address } = a as Record<string, unknown>;
    // `inet L peer P/32` is listed as local L, address P.
    const peer = typeof address === 'string' && address !== local ? parseIp(address) : undefined;
    if (peer) peers.push(peer);
  }
  return {
    ...(typeof info.info_kind === 'string' ? { kind: info.info_kind } : {}),
    ...(typeof data.proto === 'string' ? { tunnelProto: data.proto } : {}),
    ...(typeof data.link === 'string' ? { underlying: data.link } : {}),
    peers,
  };
}

/** An ip6tnl tunnel that carries IPv4: a DS-Lite softwire (RFC 6333). */
export function isSoftwire(link: LinkFacts): boolean {
  return link.kind === 'ip6tnl' && (link.tunnelProto === 'ipip6' || link.tunnelProto === 'any');
}

/**
 * The default routers of the WAN interfaces, IPv4's first, each once; and
 * notes on what could not be read.
 */
export async function defaultRouters(
  wanInterfaces: readonly string[],
  run: IpRunner = runIp,
): Promise<{ routers: DefaultRouter[]; notes: string[] }> {
  const notes: string[] = [];
  const links = new Map<string, LinkFacts | undefined>();
  const linkOf = async (dev: string): Promise<LinkFacts | undefined> => {
    if (!links.has(dev)) {
      if (links.size >= MAX_LINK_LOOKUPS) return undefined;
      const r = await run(['-j', '-d', 'addr', 'show', 'dev', dev]);
      const facts = r.stdout === undefined ? undefined : parseLinkFacts(r.stdout);
      if (!facts) notes.push(r.error ?? `ip -j -d addr show dev ${dev}: not the JSON expected`);
      links.set(dev, facts);
    }
    return links.get(dev);
  };
  const routers: DefaultRouter[] = [];
  const add = (r: DefaultRouter) => {
    if (!routers.some((x) => x.address === r.address && x.interface === r.interface)) routers.push(r);
  };
  for (const family of ['-4', '-6'] as const) {
    const r = await run(['-j', family, 'route', 'show', 'default']);
    const routes = r.stdout === undefined ? undefined : parseDefaultRoutes(r.stdout);
    if (!routes) {
      notes.push(r.error ?? `ip -j ${family} route show default: not the JSON expected`);
      continue;
    }
    for (const route of routes) {
      const onWan = wanInterfaces.includes(route.dev);
      // Only a route that is not plainly on the WAN, or has no gateway, needs the interface's facts.
      const link = onWan && route.gateway ? undefined : await linkOf(route.dev);
      const softwire = link !== undefined && isSoftwire(link);
      if (!onWan && !(softwire && link.underlying !== undefined && wanInterfaces.includes(link.underlying))) continue;
      if (family === '-4' && softwire) add({ address: AFTR_ADDRESS, interface: route.dev, kind: 'ds-lite-aftr' });
      else if (route.gateway) add({ address: route.gateway, interface: route.dev, kind: 'router' });
      else {
        const want = family === '-4' ? 4 : 6;
        const peer = link?.peers.find((p) => familyOf(p) === want);
        if (peer) add({ address: peer, interface: route.dev, kind: 'router' });
        else notes.push(`the IPv${want} default route on ${route.dev} has no gateway, no peer and is no softwire: no default router to ask`);
      }
    }
  }
  return { routers, notes };
}
