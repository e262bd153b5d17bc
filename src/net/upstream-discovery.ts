// Where the upstream PCP server may be (RFC 7648 proxy), best first.
//
// A minimal stand-in: the full version (RFC 7291's DHCPv6 option 86 and
// DHCPv4 option 158 handed over in DEFAULT_OPTION_FILE, the DS-Lite AFTR)
// replaces this file. This one knows only the default router on the WAN
// interfaces (RFC 6887 §8.1: with nothing configured, the default router).

import { execFile } from 'node:child_process';
import { parseIp, type IpAddress } from './address.js';

export type UpstreamSource = 'dhcpv6' | 'dhcpv4' | 'default-router' | 'ds-lite-aftr';
export interface UpstreamCandidate {
  readonly address: IpAddress;
  readonly source: UpstreamSource;
}

export const DEFAULT_OPTION_FILE = '/run/portcullis/pcp-servers';

const READ_TIMEOUT_MS = 2_000;
const MAX_OUTPUT_BYTES = 256 * 1024;

/** Candidates best first (DHCP-learned, then the default router / AFTR); [] when nothing is known. */
export async function discoverUpstreams(o: { wanInterfaces: readonly string[]; optionFile?: string }): Promise<UpstreamCandidate[]> {
  const out: UpstreamCandidate[] = [];
  for (const dev of o.wanInterfaces) {
    for (const gateway of await defaultRouters(dev)) {
      if (!out.some((c) => c.address === gateway)) out.push({ address: gateway, source: 'default-router' });
    }
  }
  return out;
}

function defaultRouters(dev: string): Promise<IpAddress[]> {
  return new Promise((resolve) => {
    execFile('ip', ['-j', '-4', 'route', 'show', 'default', 'dev', dev], { timeout: READ_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES, killSignal: 'SIGKILL' }, (err, stdout) => {
      if (err) return resolve([]);
      try {
        const routes = JSON.parse(stdout) as { gateway?: string }[];
        resolve(routes.flatMap((r) => (r.gateway ? [parseIp(r.gateway)] : [])).filter((a): a is IpAddress => a !== undefined));
      } catch {
        resolve([]);
      }
    });
  });
}
