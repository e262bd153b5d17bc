// What the WAN's IPv4 address says about the line: an address of its own, or
// one behind the ISP's NAT. Behind another NAT an IPv4 mapping made here is
// not reachable from the internet (issue 14's PCP proxy is the way through).

import { parsePrefix, prefixContains, type IpAddress, type Prefix } from './address.js';
import { wanIPv4, type InterfaceReader } from './interfaces.js';

/**
 * The IPv4 WAN of a WAN zone: the first interface, in the admin's order,
 * with a global IPv4 address, and that address (the external one unless
 * --external-ip says otherwise). On a DS-Lite line the native IPv6 link has
 * none and the softwire carries the B4's address. Undefined: no WAN has one.
 */
export function ipv4Wan(wans: readonly string[], read: InterfaceReader): { interface: string; address: IpAddress } | undefined {
  // One read of the interface list for all of them.
  const now = read();
  const snapshot = () => now;
  for (const name of wans) {
    const address = wanIPv4(name, snapshot);
    if (address) return { interface: name, address };
  }
  return undefined;
}

export type WanKind =
  /** An address of its own (documentation ranges count: they stand in for one in labs and tests). */
  | 'public'
  /** RFC 1918: the router sits behind another router's NAT. */
  | 'private'
  /** RFC 6598 100.64.0.0/10: the ISP's carrier-grade NAT. */
  | 'shared'
  /** RFC 6333 192.0.0.0/29 (the B4 element's address), or no IPv4 at all: DS-Lite, the ISP's AFTR does the NAT. */
  | 'ds-lite'
  /** 169.254.0.0/16: no address was handed out (DHCP failed). */
  | 'link-local';

export interface WanVerdict {
  kind: WanKind;
  /** Whether inbound IPv4 mappings made here reach the internet. */
  reachable: boolean;
  /** One sentence for an admin. */
  detail: string;
}

const RANGES: readonly { prefix: Prefix; kind: Exclude<WanKind, 'public'> }[] = [
  { prefix: parsePrefix('10.0.0.0/8') as Prefix, kind: 'private' },
  { prefix: parsePrefix('172.16.0.0/12') as Prefix, kind: 'private' },
  { prefix: parsePrefix('192.168.0.0/16') as Prefix, kind: 'private' },
  { prefix: parsePrefix('100.64.0.0/10') as Prefix, kind: 'shared' },
  { prefix: parsePrefix('192.0.0.0/29') as Prefix, kind: 'ds-lite' },
  { prefix: parsePrefix('169.254.0.0/16') as Prefix, kind: 'link-local' },
];

const BEHIND = 'IPv4 mappings made here are NOT reachable from the internet; IPv6 pinholes are not affected';

/** Classifies the WAN's IPv4 address (undefined: the WAN has none). */
export function classifyWanIPv4(address: IpAddress | undefined): WanVerdict {
  if (address === undefined) {
    return { kind: 'ds-lite', reachable: false, detail: `the WAN has no IPv4 address (DS-Lite or IPv6-only line): ${BEHIND}` };
  }
  const kind = RANGES.find((r) => prefixContains(r.prefix, address))?.kind;
  switch (kind) {
    case undefined:
      return { kind: 'public', reachable: true, detail: `${address} is an address of the router's own` };
    case 'private':
      return { kind, reachable: false, detail: `${address} is a private address (RFC 1918): the router is behind another NAT, and ${BEHIND}` };
    case 'shared':
      return { kind, reachable: false, detail: `${address} is in the ISP's shared space (100.64.0.0/10, RFC 6598): the line is behind carrier-grade NAT, and ${BEHIND}` };
    case 'ds-lite':
      return { kind, reachable: false, detail: `${address} is a DS-Lite address (192.0.0.0/29, RFC 6333): the ISP's AFTR does the NAT, and ${BEHIND}` };
    case 'link-local':
      return { kind, reachable: false, detail: `${address} is link-local: the WAN got no address from the ISP, and ${BEHIND}` };
  }
}

/**
 * Where the WAN address says the line is not what the settings say (issue
 * 14): --no-nat44 (a DS-Lite B4, whose AFTR is the only NAT44) with a public
 * IPv4 address on the WAN — this router then translates nothing for a line
 * that needs it; or --upstream-pcp auto with one — no carrier-grade NAT, so
 * nothing to relay to (said, not warned: auto is the default). Undefined:
 * nothing to say (or the address is not public).
 */
export function lineMismatch(address: IpAddress | undefined, s: { nat44: boolean; upstreamAuto: boolean }): { level: 'warn' | 'info'; detail: string; fix?: string } | undefined {
  if (!classifyWanIPv4(address).reachable) return undefined;
  if (!s.nat44) {
    return {
      level: 'warn',
      detail: `--no-nat44 (DS-Lite B4) but the WAN has the public IPv4 address ${address}: a DS-Lite line has none (the AFTR translates), so this one is probably not DS-Lite, and with no NAT44 here IPv4 mappings are admitted for LAN addresses nobody outside can reach`,
      fix: 'drop --no-nat44 (config nat44: false) unless the ISP routes the LAN\'s IPv4 prefix to this router',
    };
  }
  if (s.upstreamAuto) return { level: 'info', detail: `no ISP NAT in the way (the WAN address is public): --upstream-pcp auto has nothing to relay to, and IPv4 mappings are made here only` };
  return undefined;
}
