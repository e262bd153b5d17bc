// Which upstream PCP server the router's PCP proxy (RFC 7648) relays to,
// when the admin named none (--upstream-pcp is the proxy's, not ours).
// Best first:
//
//   1. what the ISP's DHCP named (RFC 7291): DHCPv6 option 86, then DHCPv4
//      option 158, as the DHCP clients' hooks hand them over in the option
//      file (pcp-server-file.ts);
//   2. the default router (RFC 6887 §8.1), or on a DS-Lite line the AFTR at
//      192.0.0.1 through the softwire (default-router.ts).
//
// Each address is one candidate, in its server's order, each address once.
// docs/upstream-pcp.md tells the admin the same.

import type { IpAddress } from './address.js';
import { defaultRouters, runIp, type IpRunner } from './default-router.js';
import { DEFAULT_OPTION_FILE as OPTION_PATH, learnedServers } from './pcp-server-file.js';

export type UpstreamSource = 'dhcpv6' | 'dhcpv4' | 'default-router' | 'ds-lite-aftr';

export interface UpstreamCandidate {
  readonly address: IpAddress;
  readonly source: UpstreamSource;
  /** The WAN interface it was learned on or is reached by: a link-local address needs it as its zone. */
  readonly interface?: string;
}

/** Where DHCP client hooks put what they learned: a directory of files, or one file. */
export const DEFAULT_OPTION_FILE: string = OPTION_PATH;

export interface Discovery {
  readonly candidates: UpstreamCandidate[];
  /** What was refused or could not be read, one sentence each, for the log or `doctor`. */
  readonly notes: string[];
}

/** discoverUpstreams with the reasons; `run` stands in for the `ip` command in tests. */
export async function discoverUpstreamsWithNotes(o: {
  wanInterfaces: readonly string[];
  optionFile?: string;
  run?: IpRunner;
}): Promise<Discovery> {
  const learned = await learnedServers(o.optionFile ?? DEFAULT_OPTION_FILE, o.wanInterfaces);
  const routes = await defaultRouters(o.wanInterfaces, o.run ?? runIp);
  const candidates: UpstreamCandidate[] = [];
  const add = (c: UpstreamCandidate) => {
    if (!candidates.some((x) => x.address === c.address)) candidates.push(c);
  };
  for (const s of learned.servers) for (const address of s.addresses) add({ address, source: s.source, interface: s.interface });
  for (const r of routes.routers) {
    add({ address: r.address, source: r.kind === 'ds-lite-aftr' ? 'ds-lite-aftr' : 'default-router', interface: r.interface });
  }
  return { candidates, notes: [...learned.notes, ...routes.notes] };
}

/** Candidates best first (DHCP-learned, then the default router / AFTR); [] when nothing is known. */
export async function discoverUpstreams(o: { wanInterfaces: readonly string[]; optionFile?: string }): Promise<UpstreamCandidate[]> {
  return (await discoverUpstreamsWithNotes(o)).candidates;
}
