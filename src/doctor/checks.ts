// `portcullis doctor`: what a router needs for portcullis to work, each
// check explained with its fix. The checks read the system through a
// narrow view (system.ts is the real one), so each is testable without a
// router.

import type { IpAddress } from '../net/address.js';
import { lanAddresses, wanIPv4, type InterfaceReader } from '../net/interfaces.js';
import { classifyWanIPv4, ipv4Wan, lineMismatch } from '../net/wan-address.js';
import type { UpstreamPcpSetting } from '../config.js';
import { adminEdits, type AdminEditSettings, type AdminEditView } from './admin-edits.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about it, for a warn or a fail. */
  fix?: string;
}

/** What the checks are about: the same settings `serve` runs with. */
export interface DoctorSettings extends AdminEditSettings {
  lan: readonly string[];
  /** The WAN zone's interfaces, in the admin's order (the first with IPv4 is the IPv4 WAN). */
  wans: readonly string[];
  externalIp?: IpAddress;
  nft: { table: string; embed: boolean; mark: number };
  /** false: a DS-Lite B4 without NAT44 (--no-nat44): upstream maps each LAN host (THIRD_PARTY). */
  nat44?: boolean;
  /** --upstream-pcp: 'auto' on a WAN address of the router's own is said to have nothing to relay to. */
  upstreamPcp?: UpstreamPcpSetting;
}

export interface SystemView extends Partial<AdminEditView> {
  /** `nft -j <args>` parsed: its items, or why it failed. */
  nftJson(args: readonly string[]): Promise<{ ok: true; items: Record<string, unknown>[] } | { ok: false; error: string }>;
  /** A small file's text (/proc/sys/...), undefined when unreadable. */
  read(path: string): string | undefined;
  /** Link state by interface name (`ip -j link`); absent: no such interface. */
  links(): Promise<Map<string, { up: boolean }>>;
  interfaces: InterfaceReader;
  /**
   * The ISP's PCP server this line would relay to (RFC 7648): the one
   * configured or discovered that answered a probe, and what was tried.
   * Absent: not asked (--upstream-pcp off, or a view without a network).
   */
  upstreamPcp?(wanIPv4: IpAddress | undefined): Promise<UpstreamProbe>;
}

export interface UpstreamProbe {
  found?: { server: string; source: string };
  tried: string[];
}

interface NftChain {
  family: string;
  table: string;
  name: string;
  hook?: string;
  policy?: string;
}
interface NftRule {
  family: string;
  table: string;
  chain: string;
  expr?: unknown[];
}

export async function runChecks(s: DoctorSettings, sys: SystemView): Promise<Check[]> {
  const checks: Check[] = [];
  const ruleset = await sys.nftJson(['list', 'ruleset']);
  checks.push(
    ruleset.ok
      ? { name: 'nftables', status: 'ok', detail: 'nft answers and lists the ruleset' }
      : { name: 'nftables', status: 'fail', detail: `nft does not work here: ${ruleset.error}`, fix: 'install nftables (apt-get install nftables) and run as root or with CAP_NET_ADMIN' },
  );
  checks.push(forwarding(sys));
  if (ruleset.ok) checks.push(s.nft.embed ? embeddedJumps(s, ruleset.items) : forwardPolicy(s, ruleset.items));
  const links = await sys.links();
  checks.push(...lanInterfaces(s, sys, links));
  checks.push(...wanInterfaces(s, sys, links));
  checks.push(await wanAddress(s, sys));
  const edits = sys.policyEditable && sys.serviceUnit ? await adminEdits(s, { policyEditable: sys.policyEditable, serviceUnit: sys.serviceUnit }) : undefined;
  if (edits) checks.push(edits);
  return checks;
}

function forwarding(sys: SystemView): Check {
  const v4 = sys.read('/proc/sys/net/ipv4/ip_forward')?.trim();
  const v6 = sys.read('/proc/sys/net/ipv6/conf/all/forwarding')?.trim();
  const off = [v4 !== '1' ? 'IPv4' : undefined, v6 !== '1' ? 'IPv6' : undefined].filter(Boolean);
  if (off.length === 0) return { name: 'forwarding', status: 'ok', detail: 'IPv4 and IPv6 forwarding are on' };
  return {
    name: 'forwarding',
    status: 'fail',
    detail: `${off.join(' and ')} forwarding is off: the router forwards nothing, mapped or not`,
    fix: 'sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 (and the same lines in /etc/sysctl.d/ to keep them)',
  };
}

const chains = (items: readonly Record<string, unknown>[]) => items.map((i) => i.chain as NftChain | undefined).filter((c): c is NftChain => c !== undefined);
const rules = (items: readonly Record<string, unknown>[]) => items.map((i) => i.rule as NftRule | undefined).filter((r): r is NftRule => r !== undefined);

/** Own table: another table's forward chain with policy drop needs the one line that lets our marked packets through. */
function forwardPolicy(s: DoctorSettings, items: readonly Record<string, unknown>[]): Check {
  const mark = s.nft.mark;
  const hex = `0x${mark.toString(16).padStart(8, '0')}`;
  const line = `meta mark & ${hex} == ${hex} accept`;
  const dropping = chains(items).filter((c) => c.hook === 'forward' && c.policy === 'drop' && !(c.family === 'inet' && c.table === s.nft.table));
  if (dropping.length === 0) {
    return { name: 'forward policy', status: 'ok', detail: `no other forward chain drops by default; portcullis' own forward chain keeps unsolicited WAN traffic out` };
  }
  const missing = dropping.filter((c) => !rules(items).some((r) => r.family === c.family && r.table === c.table && r.chain === c.name && admitsMark(r, mark)));
  if (missing.length === 0) return { name: 'forward policy', status: 'ok', detail: `${dropping.map(where).join(', ')} drops by default and admits portcullis' mark` };
  return {
    name: 'forward policy',
    status: 'fail',
    detail: `${missing.map(where).join(', ')} drops by default and does not admit what portcullis opens: mappings are granted but no packet gets through`,
    fix: missing.map((c) => `nft insert rule ${c.family} ${c.table} ${c.name} ${line}`).join('; '),
  };
}

const where = (c: NftChain) => `${c.family} ${c.table} ${c.name}`;

function admitsMark(r: NftRule, mark: number): boolean {
  const text = JSON.stringify(r.expr ?? []);
  return text.includes('"key":"mark"') && text.includes(String(mark)) && text.includes('"accept"');
}

/** Embedded: the admin's chains must jump to ours (README, "Embedded"; packaging/openwrt for fw4). */
function embeddedJumps(s: DoctorSettings, items: readonly Record<string, unknown>[]): Check {
  const inTable = rules(items).filter((r) => r.family === 'inet' && r.table === s.nft.table && !r.chain.startsWith('portcullis_'));
  const jumps = new Set(inTable.flatMap((r) => (r.expr ?? []).map((e) => (e as { jump?: { target?: string } }).jump?.target).filter((t): t is string => t !== undefined)));
  const need = [
    { target: 'portcullis_input', what: 'the LAN guard (nothing is answered without it)', cmd: `nft insert rule inet ${s.nft.table} input jump portcullis_input` },
    { target: 'portcullis_prerouting', what: 'IPv4 mappings (DNAT)', cmd: `nft add rule inet ${s.nft.table} dstnat jump portcullis_prerouting` },
    { target: 'portcullis_forward', what: 'inbound traffic of mappings and pinholes', cmd: `nft insert rule inet ${s.nft.table} forward_wan jump portcullis_forward` },
    { target: 'portcullis_postrouting', what: 'outbound traffic of mappings (SNAT)', cmd: `nft insert rule inet ${s.nft.table} srcnat jump portcullis_postrouting` },
  ];
  const missing = need.filter((n) => !jumps.has(n.target));
  if (missing.length === 0) return { name: 'embedded jumps', status: 'ok', detail: `inet ${s.nft.table} jumps to every portcullis chain` };
  return {
    name: 'embedded jumps',
    status: 'fail',
    detail: `inet ${s.nft.table} does not jump to ${missing.map((m) => `${m.target} (${m.what})`).join(', ')}`,
    fix: `${missing.map((m) => m.cmd).join('; ')} — on OpenWrt install the include files of packaging/openwrt/nftables.d instead (they survive fw4 reload)`,
  };
}

type Links = Awaited<ReturnType<SystemView['links']>>;

function lanInterfaces(s: DoctorSettings, sys: SystemView, links: Links): Check[] {
  return s.lan.map((name) => {
    const link = links.get(name);
    if (!link) return { name: `LAN ${name}`, status: 'fail', detail: `${name} does not exist`, fix: `check --lan (ip link shows the interfaces)` };
    if (!link.up) return { name: `LAN ${name}`, status: 'fail', detail: `${name} is down: nothing on it can ask`, fix: `ip link set ${name} up` };
    const addrs = lanAddresses([name], sys.interfaces);
    if (addrs.length === 0) return { name: `LAN ${name}`, status: 'warn', detail: `${name} is up without addresses: it is served as soon as it has some`, fix: `give ${name} an address (or wait for SLAAC/DHCP)` };
    return { name: `LAN ${name}`, status: 'ok', detail: `${name} is up: ${addrs.map((a) => a.address).join(', ')}` };
  });
}

/**
 * Each WAN interface exists and is up, and which one carries IPv4 (the
 * first in the admin's order with an address: its address is the external
 * one). A WAN without IPv4 is fine: a DS-Lite line's native link has none.
 */
function wanInterfaces(s: DoctorSettings, sys: SystemView, links: Links): Check[] {
  const v4 = ipv4Wan(s.wans, sys.interfaces);
  const anyThere = s.wans.some((name) => links.has(name));
  return s.wans.map((name): Check => {
    const link = links.get(name);
    if (!link && !anyThere) return { name: `WAN ${name}`, status: 'fail', detail: `${name} does not exist, nor does any other WAN interface: the daemon does not start`, fix: 'check --wan (ip link shows the interfaces)' };
    if (!link) return { name: `WAN ${name}`, status: 'warn', detail: `${name} does not exist (yet): the daemon starts, and its rules take effect when it appears`, fix: `check --wan if ${name} is not made later (a DS-Lite softwire is, once the IPv6 link is up)` };
    if (!link.up) return { name: `WAN ${name}`, status: 'warn', detail: `${name} is down: nothing arrives on it`, fix: `ip link set ${name} up (and check its line)` };
    const own = wanIPv4(name, sys.interfaces);
    const ipv4 =
      v4?.interface === name
        ? `it carries IPv4 (${own})${s.externalIp ? `; the external address is --external-ip ${s.externalIp}` : ': its address is the external one'}`
        : own
          ? `its IPv4 address ${own} is not the external one: ${v4?.interface} comes first in --wan`
          : `no IPv4 address${v4 ? ` (IPv4 is ${v4.interface}'s)` : ''}`;
    return { name: `WAN ${name}`, status: 'ok', detail: `${name} is up; ${ipv4}` };
  });
}

/** Behind another NAT, IPv4 mappings reach the internet only through the ISP's PCP server (RFC 7648): which one answers, or that none does. */
async function wanAddress(s: DoctorSettings, sys: SystemView): Promise<Check> {
  const address = s.externalIp ?? ipv4Wan(s.wans, sys.interfaces)?.address;
  const v = classifyWanIPv4(address);
  if (v.reachable) {
    // The line is not what the settings say (issue 14): a DS-Lite B4 has no public IPv4 address; auto finds no CGN to relay to.
    const m = lineMismatch(address, { nat44: s.nat44 !== false, upstreamAuto: s.upstreamPcp === 'auto' });
    if (m?.level === 'warn') return { name: 'WAN address', status: 'warn', detail: m.detail, fix: m.fix };
    return { name: 'WAN address', status: 'ok', detail: m ? `${v.detail}; ${m.detail}` : v.detail };
  }
  const upstream = v.kind === 'link-local' ? undefined : await sys.upstreamPcp?.(address);
  if (upstream?.found) {
    const { server, source } = upstream.found;
    return { name: 'WAN address', status: 'ok', detail: `${address ?? 'no IPv4 address'} is behind the ISP's NAT, and its PCP server ${server} (${source}) answers: ${s.nat44 === false ? 'IPv4 mappings are asked of it for each LAN host (DS-Lite, no NAT44 here; RFC 7648 §3.3)' : 'IPv4 mappings are relayed to it (RFC 7648)'}` };
  }
  const tried = upstream ? ` No upstream PCP server answered${upstream.tried.length ? ` (tried ${upstream.tried.join(', ')})` : ' (none configured or discovered)'}.` : '';
  return {
    name: 'WAN address',
    status: 'warn',
    detail: `${v.detail}.${tried}`,
    fix:
      v.kind === 'link-local'
        ? `check the WAN link and its DHCP client (${s.wans.join(', ')})`
        : 'ask the ISP for a public IPv4 address, or use IPv6 (pinholes reach devices directly), or ask it for a PCP server on its CGN or AFTR (auto finds it where it is the default router; else --upstream-pcp ADDR)',
  };
}

/** The report as a person reads it: one line per check, its fix indented under it. */
export function formatChecks(checks: readonly Check[]): string {
  const tag: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };
  return checks.map((c) => `${tag[c.status]}  ${c.name}: ${c.detail}${c.fix ? `\n      fix: ${c.fix}` : ''}`).join('\n') + '\n';
}
