// The nftables objects portcullis owns, as nft JSON. A fixed handful of
// rules look mappings up in sets and maps with `flags timeout`: a packet's
// lookup costs the same at 10 or 100 000 mappings, and the kernel expires
// every element on time even when the daemon is dead (fail-closed).
//
// WAN is any of the WAN zone's interfaces (a set: `iifname { "wan0", "ds0" }`),
// LANs any of the LAN interfaces.
//
//   prerouting (nat):  iifname WAN, IPv4, tcp/udp:
//                        dnat to (daddr . l4proto . dport) map @dnat4
//                        dnat to (daddr . l4proto . dport . saddr . sport) map @dnat4_filtered
//     → static_pre:    the admin's IPv4 port forwards (one rule each)
//                      iifname LANs, IPv4, to one of the router's addresses that is not
//                      the arrival interface's (the external address) → hairpin:
//                        mark; → static_pre; dnat to (daddr . l4proto . dport) map @dnat4
//   postrouting (nat): oifname WAN, IPv4, tcp/udp (before the admin's masquerade):
//                        snat to (saddr . l4proto . sport) map @snat4
//                        → static_post: each IPv4 port forward's own SNAT, then its port as held
//                        (l4proto . sport) @held4 → held_nat: masquerade into ports nobody holds
//                      oifname LANs, a hairpin (ct mark) with ct status dnat:
//                        snat to (saddr . l4proto . sport) map @snat4, else to the external address
//   input (filter):    portcullis' own ports (PCP/NAT-PMP, SSDP, UPnP HTTP) → lan_only:
//                        not from a LAN interface                      drop
//                        source not routed back out the arrival iface  drop
//                      UDP from the upstream PCP server's address and port (RFC 7648
//                      proxy) not from a WAN interface                drop
//   forward (filter):  iifname WAN oifname LANs → wan_to_lan:
//                        established/related           return
//                        → static_fwd: the admin's IPv6 static openings     mark
//                        marked                                            return
//                        IPv6 (daddr . l4proto . dport) @pinholes6                       mark, return
//                        IPv6 (daddr . l4proto . dport . saddr . sport) @pinholes6_filtered  mark, return
//                        IPv4 ct status dnat (translated by a DNAT map above)           mark, return
//                        IPv4 (daddr . l4proto . dport) @admit4, and @admit4_filtered   mark, return
//                        drop
//
// "return" leaves the packet to the other tables: portcullis only drops what
// nobody asked for and accepts nothing on anyone's behalf. The mark lets a
// drop-by-default admin firewall accept what portcullis admitted with one
// rule (`meta mark & MARK == MARK accept`). Embedded in an admin's table the
// chains are plain chains the admin jumps to, and admitted packets `accept`.
//
// A mapping is bidirectional (RFC 6886 §3.9, RFC 6887 §11 and §12.3): every
// IPv4 entry puts a DNAT element in and an SNAT element out (same timeout),
// so what the endpoint sends leaves from the port it was promised. The SNAT
// runs at srcnat - 5, before the admin's masquerade; once a NAT binding is
// made, later nat chains on the hook are skipped.
//
// Masquerade must never hand out a port a mapping holds. Linux keeps a
// flow's source port when the tuple is free, so a LAN host sending from
// port E while E is another host's external port would leave as E. We
// exclude held ports rather than partition the space: the policy may grant
// any port (1024-65535 by default), so no fixed range is free of mappings.
// @held4 holds every mapped external port (and static forwards hold theirs);
// a flow from a held source port is masqueraded into the largest run of
// ports nobody holds (held_nat, rewritten by the backend when a new mapping
// lands in it). What stays the kernel's choice: a flow from an unheld port
// that clashes with another flow to the same remote address and port is
// remapped by the admin's masquerade anywhere in 1024-65535.
//
// Without NAT44 (a DS-Lite B4, RFC 6333: the AFTR translates) an IPv4
// mapping is no DNAT here: its entry goes into @admit4 (LAN host . protocol
// . port, like the IPv6 pinholes) and the forward path admits what arrives
// from the softwire for it; the DNAT and SNAT maps stay empty.
//
// Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): a LAN host sending to the
// external address reaches the mapping's host, and the packet carries the
// sender's external address and port (REQ-9 a): its own SNAT element when
// it has a mapping, else the external address. The mark lets the admin's
// forward chain admit the hairpinned packet with its one mark line.
//
// Why input rules at all: the daemon's sockets are bound to the LAN's own
// addresses, and the LAN's global IPv6 address (or its IPv4 address, with a
// route) is reachable from the WAN. Node cannot tell which interface a
// request arrived on, so the kernel drops requests to our ports that did not
// arrive on a LAN interface (RFC 6887 §8.2), and a reverse-path check drops a
// LAN interface's packets whose source belongs elsewhere (a host on one LAN
// posing as a host on another). Linux has no rp_filter for IPv6; the fib
// expression does the job for both families.

import { createHash } from 'node:crypto';
import type { FirewallEntry } from '../backend.js';
import type { AddressPattern } from '../../domain/patterns.js';
import type { StaticOpening } from '../../domain/mapping.js';
import { familyOf, type IpAddress } from '../../net/address.js';
import { protocolName } from '../../net/ipproto.js';

export interface Placement {
  family: 'inet';
  table: string;
  /** Inside someone else's table: our objects carry a prefix and our chains have no hooks. */
  embedded: boolean;
}

export interface Topology {
  /** The WAN zone's interfaces (a DS-Lite line: the native IPv6 link and the softwire): every WAN match is any of them. */
  wans: readonly string[];
  lan: readonly string[];
  /** Packet mark set on what portcullis admits. */
  mark: number;
  /** portcullis' own listening ports, accepted only from the LAN interfaces. */
  guarded: { udp: readonly number[]; tcp: readonly number[] };
  /** false: a DS-Lite B4 that does no NAT44 — IPv4 entries are admitted (@admit4), not translated. Default true. */
  nat44?: boolean;
  /** Per-device UDP rate to those ports, enforced in the kernel (DEVICE_UDP_RATE by default; perSecond 0: none). */
  deviceUdpRate?: { perSecond: number; burst: number };
  /** The upstream PCP server (RFC 7648 proxy): its datagrams count only from a WAN interface. */
  upstream?: UpstreamSource;
}

/** Where the upstream PCP server's answers and ANNOUNCEs come from. */
export interface UpstreamSource {
  address: IpAddress;
  port: number;
}

export const SET = {
  pinholes6: 'pinholes6',
  pinholes6Filtered: 'pinholes6_filtered',
  dnat4: 'dnat4',
  dnat4Filtered: 'dnat4_filtered',
  snat4: 'snat4',
  held4: 'held4',
  admit4: 'admit4',
  admit4Filtered: 'admit4_filtered',
} as const;
export type SetKey = keyof typeof SET;

const CHAIN = {
  prerouting: 'prerouting',
  hairpin: 'hairpin',
  postrouting: 'postrouting',
  heldNat: 'held_nat',
  forward: 'forward',
  wanToLan: 'wan_to_lan',
  staticPre: 'static_pre',
  staticFwd: 'static_fwd',
  staticPost: 'static_post',
  input: 'input',
  lanOnly: 'lan_only',
} as const;
/** Chains whose rules are the admin's static openings: diffed, never flushed by setup. */
export const STATIC_CHAINS = [CHAIN.staticPre, CHAIN.staticFwd, CHAIN.staticPost] as const;

/** Explicit priorities: just before the usual dstnat (-100), filter (0) and srcnat (100) chains. */
const PRIORITY = { prerouting: -105, forward: -5, input: -5, postrouting: 95 } as const;

/** The source ports a flow from a held port is masqueraded into (ports no mapping holds). */
export interface PortRun {
  min: number;
  max: number;
}
export const ALL_PORTS: PortRun = { min: 1024, max: 65535 };

/** The chain an embedding admin's input chain must jump to (and that we check for). */
export function inputChain(p: Placement): string {
  return objectName(p, CHAIN.input);
}

export function objectName(p: Placement, base: string): string {
  return p.embedded ? `portcullis_${base}` : base;
}

/** Every object name portcullis creates in the placement (for ownership checks). */
/**
 * Datagrams per second one device (source link-layer address) may send to
 * our UDP ports before the kernel drops the rest. Far above what any client
 * sends (the daemon's own buckets allow 20/s per address, 80/s per device),
 * it exists so a flooding device cannot fill the shared socket's receive
 * queue, where the daemon's per-device fairness would come too late for the
 * devices queued behind it.
 */
const DEVICE_UDP_RATE = { perSecond: 200, burst: 400 } as const;
/** The kernel's per-device counters for DEVICE_UDP_RATE (a dynamic set; entries expire on their own). */
const FLOOD_SET = 'flood_devices';

export function ownedNames(p: Placement): { sets: string[]; chains: string[] } {
  return {
    sets: [...Object.values(SET), FLOOD_SET].map((s) => objectName(p, s)),
    chains: (p.embedded ? Object.values(CHAIN).filter((c) => c !== CHAIN.wanToLan) : Object.values(CHAIN)).map((c) => objectName(p, c)),
  };
}

const SET_TYPES: Record<SetKey, { type: string; interval: boolean; map: boolean; counter?: boolean }> = {
  // Pinholes count their packets (UPnP GetPinholePackets / CheckPinholeWorking).
  pinholes6: { type: 'ipv6_addr . inet_proto . inet_service', interval: false, map: false, counter: true },
  pinholes6Filtered: { type: 'ipv6_addr . inet_proto . inet_service . ipv6_addr . inet_service', interval: true, map: false, counter: true },
  dnat4: { type: 'ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service', interval: false, map: true },
  dnat4Filtered: { type: 'ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service : ipv4_addr . inet_service', interval: true, map: true },
  // internal address . protocol . internal port : external address . external port
  snat4: { type: 'ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service', interval: false, map: true },
  held4: { type: 'inet_proto . inet_service', interval: false, map: false },
  // Without NAT44: LAN host . protocol . port (and remote prefix . port), like the pinholes.
  admit4: { type: 'ipv4_addr . inet_proto . inet_service', interval: false, map: false },
  admit4Filtered: { type: 'ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service', interval: true, map: false },
};

/** Whether nft lists the object as a map (with data) or a set. */
export function isMap(key: SetKey): boolean {
  return SET_TYPES[key].map;
}

/** Interface and table names go into nft scripts: only plain names pass. */
const NAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/**
 * The objects, created idempotently, and our chains' rules replaced, as one
 * nft script (one transaction). Written in nft's own language, not JSON:
 * nft 1.0.6 (Debian 12) segfaults parsing a JSON `dnat` whose address comes
 * from a concatenated map; elements and listings use JSON.
 */
export function setupScript(p: Placement, t: Topology, remap: PortRun = ALL_PORTS): string {
  if (t.wans.length === 0) throw new Error('no WAN interface');
  for (const n of [...t.wans, ...t.lan]) if (!NAME_RE.test(n)) throw new Error(`bad interface name ${JSON.stringify(n)}`);
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(p.table)) throw new Error(`bad table name ${JSON.stringify(p.table)}`);
  const at = `${p.family} ${p.table}`;
  const name = (b: string) => objectName(p, b);
  const lines: string[] = [];
  if (!p.embedded) lines.push(`add table ${at}`);
  for (const key of Object.keys(SET) as SetKey[]) {
    const d = SET_TYPES[key];
    lines.push(`add ${d.map ? 'map' : 'set'} ${at} ${name(SET[key])} { type ${d.type}; flags ${d.interval ? 'interval,timeout' : 'timeout'};${d.counter ? ' counter;' : ''} }`);
  }
  const hook = (h: string) => (p.embedded ? '' : ` { ${h}; policy accept; }`);
  lines.push(`add chain ${at} ${name(CHAIN.prerouting)}${hook(`type nat hook prerouting priority ${PRIORITY.prerouting}`)}`);
  lines.push(`add chain ${at} ${name(CHAIN.postrouting)}${hook(`type nat hook postrouting priority ${PRIORITY.postrouting}`)}`);
  lines.push(`add chain ${at} ${name(CHAIN.hairpin)}`);
  lines.push(`add chain ${at} ${name(CHAIN.heldNat)}`);
  lines.push(`add chain ${at} ${name(CHAIN.forward)}${hook(`type filter hook forward priority ${PRIORITY.forward}`)}`);
  lines.push(`add chain ${at} ${name(CHAIN.input)}${hook(`type filter hook input priority ${PRIORITY.input}`)}`);
  lines.push(`add chain ${at} ${name(CHAIN.lanOnly)}`);
  lines.push(`add set ${at} ${name(FLOOD_SET)} { type ether_addr; flags dynamic,timeout; timeout 60s; size 65536; }`);
  if (!p.embedded) lines.push(`add chain ${at} ${name(CHAIN.wanToLan)}`);
  for (const c of STATIC_CHAINS) lines.push(`add chain ${at} ${name(c)}`);
  const statics = new Set<string>(STATIC_CHAINS.map(name));
  for (const c of ownedNames(p).chains) if (!statics.has(c)) lines.push(`flush chain ${at} ${c}`);
  for (const r of ruleLines(p, t, remap)) lines.push(`add rule ${at} ${r}`);
  return lines.join('\n') + '\n';
}

/** "<chain> <rule>" for every rule portcullis owns. */
export function ruleLines(p: Placement, t: Topology, remap: PortRun = ALL_PORTS): string[] {
  const name = (b: string) => objectName(p, b);
  const mark = `meta mark set meta mark | 0x${t.mark.toString(16)}`;
  // Embedded: admitted packets are accepted in the admin's chain that jumped
  // here (that is what the jump asks for); everything else returns to it.
  // Own table: we only ever say "no objection" (return) or drop.
  const admit = `${mark} ${p.embedded ? 'accept' : 'return'}`;
  const wans = nameSet(t.wans);
  const wan = `iifname ${wans}`;
  const oifWan = `oifname ${wans}`;
  const pre = name(CHAIN.prerouting);
  const gate = name(p.embedded ? CHAIN.forward : CHAIN.wanToLan);
  const tcpUdp = 'meta l4proto { tcp, udp }';
  const lans = nameSet(t.lan);
  const hex = `0x${t.mark.toString(16)}`;
  const post = name(CHAIN.postrouting);
  const rules = [
    `${pre} ${wan} meta nfproto ipv4 jump ${name(CHAIN.staticPre)}`,
    `${pre} ${wan} meta nfproto ipv4 ${tcpUdp} dnat ip to ip daddr . meta l4proto . th dport map @${name(SET.dnat4)}`,
    `${pre} ${wan} meta nfproto ipv4 ${tcpUdp} dnat ip to ip daddr . meta l4proto . th dport . ip saddr . th sport map @${name(SET.dnat4Filtered)}`,
    // Hairpin: from a LAN to one of the router's addresses that is not the
    // arrival interface's own (the LAN's router address keeps its services).
    // FILTERed mappings are left out: their remote is a WAN peer by definition.
    `${pre} iifname ${lans} meta nfproto ipv4 fib daddr . iif type != local fib daddr type local jump ${name(CHAIN.hairpin)}`,
    `${name(CHAIN.hairpin)} ${mark} ct mark set ct mark | ${hex}`,
    `${name(CHAIN.hairpin)} jump ${name(CHAIN.staticPre)}`,
    `${name(CHAIN.hairpin)} ${tcpUdp} dnat ip to ip daddr . meta l4proto . th dport map @${name(SET.dnat4)}`,
    `${post} ${oifWan} meta nfproto ipv4 ${tcpUdp} snat ip to ip saddr . meta l4proto . th sport map @${name(SET.snat4)}`,
    `${post} ${oifWan} meta nfproto ipv4 jump ${name(CHAIN.staticPost)}`,
    `${post} ${oifWan} meta nfproto ipv4 ${tcpUdp} meta l4proto . th sport @${name(SET.held4)} jump ${name(CHAIN.heldNat)}`,
    `${name(CHAIN.heldNat)} ${tcpUdp} masquerade to :${remap.min}-${remap.max}`,
    // REQ-9 a: the target sees the sender's external address and port. Only
    // a hairpinned flow, told by its conntrack mark: the packet mark is also
    // set by the forward path on what it admits from the WAN, and that must
    // reach the LAN host with the remote's own source (its FILTER, and a
    // proxy's behind an ISP's NAT, key on it). The input interface, which
    // would tell them apart too, is not known at postrouting.
    `${post} oifname ${lans} meta nfproto ipv4 ct mark & ${hex} == ${hex} ct status dnat ${tcpUdp} snat ip to ip saddr . meta l4proto . th sport map @${name(SET.snat4)}`,
    `${post} oifname ${lans} meta nfproto ipv4 ct mark & ${hex} == ${hex} ct status dnat snat ip to ct original ip daddr`,
  ];
  if (!p.embedded) rules.push(`${gate} ct state established,related return`);
  rules.push(`${gate} meta nfproto ipv6 jump ${name(CHAIN.staticFwd)}`);
  // Own table: a static opening marked the packet and returned here.
  if (!p.embedded) rules.push(`${gate} meta mark & 0x${t.mark.toString(16)} == 0x${t.mark.toString(16)} return`);
  rules.push(
    `${gate} meta nfproto ipv6 ${tcpUdp} ip6 daddr . meta l4proto . th dport @${name(SET.pinholes6)} ${admit}`,
    `${gate} meta nfproto ipv6 ${tcpUdp} ip6 daddr . meta l4proto . th dport . ip6 saddr . th sport @${name(SET.pinholes6Filtered)} ${admit}`,
    // IPv4 flows reach the LAN only if a DNAT map translated them (the maps
    // already applied FILTER); the conntrack entry remembers that.
    `${gate} meta nfproto ipv4 ct status dnat ${admit}`,
    // No NAT44 here (DS-Lite): the LAN host's own endpoint, as the AFTR's mapping sends it.
    `${gate} meta nfproto ipv4 ${tcpUdp} ip daddr . meta l4proto . th dport @${name(SET.admit4)} ${admit}`,
    `${gate} meta nfproto ipv4 ${tcpUdp} ip daddr . meta l4proto . th dport . ip saddr . th sport @${name(SET.admit4Filtered)} ${admit}`,
  );
  if (!p.embedded) {
    rules.push(`${gate} drop`);
    rules.push(`${name(CHAIN.forward)} ${wan} oifname ${lans} jump ${gate}`);
  }
  return [...rules, ...guardLines(p, t, lans)];
}

/** How many rules guardLines writes (for the check that they are in place). */
export function guardRuleCount(t: Topology): number {
  return (t.guarded.udp.length ? (deviceRate(t) ? 2 : 1) : 0) + (t.guarded.tcp.length ? 1 : 0) + 2 + (t.upstream ? 1 : 0);
}

function deviceRate(t: Topology): { perSecond: number; burst: number } | undefined {
  const r = t.deviceUdpRate ?? DEVICE_UDP_RATE;
  return r.perSecond > 0 ? r : undefined;
}

/**
 * Our own ports only from the LAN: anything else is dropped before the
 * daemon sees it; what passes returns to the other chains (own table) or to
 * the admin's input chain (embedded), which decide as they always did.
 */
function guardLines(p: Placement, t: Topology, lans: string): string[] {
  const input = objectName(p, CHAIN.input);
  const lanOnly = objectName(p, CHAIN.lanOnly);
  const ports = (l: readonly number[]) => `{ ${[...new Set(l)].sort((a, b) => a - b).join(', ')} }`;
  const out: string[] = [];
  if (t.guarded.udp.length) out.push(`${input} udp dport ${ports(t.guarded.udp)} jump ${lanOnly}`);
  if (t.guarded.tcp.length) out.push(`${input} tcp dport ${ports(t.guarded.tcp)} jump ${lanOnly}`);
  if (t.upstream) out.push(upstreamLine(input, nameSet(t.wans), t.upstream));
  out.push(`${lanOnly} iifname != ${lans} drop`, `${lanOnly} fib saddr . iif oif missing drop`);
  const rate = deviceRate(t);
  if (t.guarded.udp.length && rate) {
    out.push(`${lanOnly} meta l4proto udp update @${objectName(p, FLOOD_SET)} { ether saddr limit rate over ${rate.perSecond}/second burst ${rate.burst} packets } counter drop`);
  }
  return out;
}

/**
 * The upstream PCP server's answers and ANNOUNCEs count only when they
 * arrive on a WAN interface: Node tells no arrival interface, and a LAN
 * host can send with the server's source address (reverse-path filtering
 * is a sysctl the admin may have off). Counted, so `nft list` shows forgeries.
 */
function upstreamLine(input: string, wans: string, u: UpstreamSource): string {
  const port = Math.trunc(u.port);
  if (!(port >= 1 && port <= 65535)) throw new Error(`bad upstream port ${u.port}`);
  return `${input} iifname != ${wans} ${familyOf(u.address) === 4 ? 'ip' : 'ip6'} saddr ${u.address} udp sport ${port} counter drop`;
}

/** The rules of our input chain alone (rewritten when the upstream server changes). */
export function inputRuleLines(p: Placement, t: Topology): string[] {
  const input = objectName(p, CHAIN.input);
  return guardLines(p, t, nameSet(t.lan)).filter((l) => l.startsWith(`${input} `));
}

/**
 * Interface names as an anonymous set, `{ "wan0", "ds0" }`, also for one
 * name: one form of rule whatever the count, which both the nft process and
 * libnftables take and list back as a set (test/nft-multiwan.test.ts).
 */
function nameSet(names: readonly string[]): string {
  return `{ ${names.map((n) => `"${n}"`).join(', ')} }`;
}

/** Which set an entry's elements live in (`nat44` false: IPv4 is admitted, not translated). */
export function setFor(e: FirewallEntry, nat44 = true): SetKey {
  if (e.family === 6) return e.filters.length ? 'pinholes6Filtered' : 'pinholes6';
  if (!nat44) return e.filters.length ? 'admit4Filtered' : 'admit4';
  return e.filters.length ? 'dnat4Filtered' : 'dnat4';
}

/** What an entry's elements match: the destination as the packet has it when it reaches the lookup. */
function keyOf(e: FirewallEntry, nat44: boolean): { address: IpAddress; port: number } {
  if (e.family === 6) return { address: e.internalAddress, port: e.externalPort };
  return nat44 ? { address: e.externalAddress, port: e.externalPort } : { address: e.internalAddress, port: e.internalPort };
}

/** Whether an entry is keyed by its internal endpoint and carries no NAT data (pinholes; IPv4 without NAT44). */
function admitted(e: FirewallEntry, nat44: boolean): boolean {
  return e.family === 6 || !nat44;
}

function prefixExpr(address: IpAddress, length: number): unknown {
  const max = familyOf(address) === 4 ? 32 : 128;
  return length === max ? address : { prefix: { addr: address, len: length } };
}

/** What each of an entry's elements matches: one per filter (or one for an unfiltered entry), as nft JSON `concat` values. */
export function elementConcats(e: FirewallEntry, nat44 = true): unknown[][] {
  const at = keyOf(e, nat44);
  const key = [at.address, protocolName(e.protocol), at.port];
  return e.filters.length
    ? e.filters.map((f) => [...key, prefixExpr(f.prefix.address, f.prefix.length), f.port === 0 ? { range: [0, 65535] } : f.port])
    : [key];
}

/** One element per filter (or one for an unfiltered entry), as nft JSON `elem` items. */
export function elementsOf(e: FirewallEntry, timeoutSeconds: number | undefined, nat44 = true): unknown[] {
  const admit = admitted(e, nat44);
  return elementConcats(e, nat44).map((k) => {
    const elem = { elem: { val: { concat: k }, ...(timeoutSeconds !== undefined ? { timeout: timeoutSeconds } : {}) } };
    return admit ? elem : [elem, { concat: [e.internalAddress, e.internalPort] }];
  });
}

/** A stable text key for one element (to diff the kernel against the service's table). */
export function elementKey(set: SetKey, concat: unknown[]): string {
  return `${set}|${concat.map((v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))).join('|')}`;
}


/** The admin's static openings as nft rules, keyed by an id that changes whenever the rule would. */
export function staticRules(p: Placement, t: Topology, statics: readonly StaticOpening[]): Map<string, { chain: string; rule: string }> {
  const name = (b: string) => objectName(p, b);
  const admit = `meta mark set meta mark | 0x${t.mark.toString(16)} ${p.embedded ? 'accept' : 'return'}`;
  const out = new Map<string, { chain: string; rule: string }>();
  for (const s of statics) {
    // A device opening reaches the firewall as the pinholes and forwards its
    // current addresses resolve to (src/policy/device-openings.ts), each an
    // ordinary rule here: the rule ids below hash the address in, so when a
    // device gains or loses an address exactly that rule comes or goes and
    // the others keep their handles. Named sets per device would spare those
    // rule swaps, but addresses move seldom, and the rules need no objects of
    // their own to create, own, check for intactness and repair, in either
    // placement.
    if (s.kind === 'device') continue;
    const add = (chain: string, body: string) => {
      const id = `static ${s.name} ${createHash('sha256').update(`${chain} ${body}`).digest('hex').slice(0, 12)}`;
      out.set(id, { chain, rule: `${body} comment "${id}"` });
    };
    let chain: string;
    let body: string;
    if (s.kind === 'pinhole') {
      const protos = s.protocols.map((p) => protocolName(p));
      const ports = s.ports.map((r) => (r.min === r.max ? `${r.min}` : `${r.min}-${r.max}`));
      chain = name(CHAIN.staticFwd);
      body = [
        addressMatch('ip6 daddr', s.to),
        `meta l4proto ${protos.length === 1 ? protos[0] : `{ ${protos.join(', ')} }`}`,
        `th dport ${ports.length === 1 ? ports[0] : `{ ${ports.join(', ')} }`}`,
        s.from ? `ip6 saddr { ${s.from.map(setItem).join(', ')} }` : '',
        admit,
      ].filter(Boolean).join(' ');
    } else {
      chain = name(CHAIN.staticPre);
      // Any of the router's own addresses: the forward survives a new WAN address untouched.
      body = [
        `meta l4proto ${protocolName(s.protocol)} th dport ${s.port}`,
        s.from ? `ip saddr { ${s.from.map(setItem).join(', ')} }` : '',
        `fib daddr type local dnat ip to ${s.to}:${s.toPort}`,
      ].filter(Boolean).join(' ');
      // Bidirectional: the forward's endpoint leaves as the external port
      // (on the WAN's address, like the DNAT above it follows renumbering),
      // and another host's flow from that port is kept off it.
      const proto = `meta l4proto ${protocolName(s.protocol)}`;
      add(name(CHAIN.staticPost), `ip saddr ${s.to} ${proto} th sport ${s.toPort} masquerade to :${s.port}`);
      add(name(CHAIN.staticPost), `${proto} th sport ${s.port} jump ${name(CHAIN.heldNat)}`);
    }
    add(chain, body);
  }
  return out;
}

function addressMatch(field: string, a: AddressPattern): string {
  if (a.form === 'exact') return `${field} ${a.text}`;
  if (a.form === 'prefix') return `${field} ${a.text}`;
  // Only the masked bits are compared: with ::ffff:ffff:ffff:ffff that is the
  // interface identifier, whatever prefix the ISP delegates today.
  const [value, mask] = a.text.split('/');
  return `${field} & ${mask} == ${value}`;
}

function setItem(a: AddressPattern): string {
  if (a.form === 'mask') throw new Error(`a masked pattern cannot be a set element: ${a.text}`);
  return a.text;
}

/** An entry's elements in nft's own syntax (for `nft get element`). */
export function elementTexts(e: FirewallEntry, nat44 = true): string[] {
  const at = keyOf(e, nat44);
  const key = `${at.address} . ${protocolName(e.protocol)} . ${at.port}`;
  if (!e.filters.length) return [key];
  return e.filters.map((f) => {
    const max = familyOf(f.prefix.address) === 4 ? 32 : 128;
    const prefix = f.prefix.length === max ? f.prefix.address : `${f.prefix.address}/${f.prefix.length}`;
    return `${key} . ${prefix} . ${f.port === 0 ? '0-65535' : f.port}`;
  });
}
