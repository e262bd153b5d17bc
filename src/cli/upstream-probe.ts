// `portcullis doctor`'s question to the network: which of the ISP's PCP
// servers (the configured one, or those discovered: src/net/upstream-
// discovery.ts) answers a PCP ANNOUNCE (RFC 6887 §14.1) from this router.

import type { UpstreamPcpSetting } from '../config.js';
import type { UpstreamProbe } from '../doctor/checks.js';
import { createLogger } from '../log.js';
import { familyOf, type IpAddress } from '../net/address.js';
import { discoverUpstreams } from '../net/upstream-discovery.js';
import { UpstreamPcpClient } from '../client/upstream-pcp.js';

/** How long each candidate has to answer (two sends at §8.1.1's IRT). */
const PROBE_MS = 4_000;

/** `wans`: the WAN zone's interfaces, in the admin's order (discovery looks at each). */
export function upstreamProber(setting: UpstreamPcpSetting, wans: readonly string[]): ((wanIPv4: IpAddress | undefined) => Promise<UpstreamProbe>) | undefined {
  if (setting === 'off') return undefined;
  return async (wanIPv4) => {
    const candidates =
      setting === 'auto'
        ? (await discoverUpstreams({ wanInterfaces: wans })).filter((c) => familyOf(c.address) === 4).map((c) => ({ address: c.address, port: 5351, source: c.source as string }))
        : [{ address: setting.address, port: setting.port, source: 'configured' }];
    const tried: string[] = [];
    for (const c of candidates) {
      const server = `${c.address}:${c.port}`;
      tried.push(server);
      if (!wanIPv4) continue;
      const w = new UpstreamPcpClient({ server: c.address, serverPort: c.port, bindPort: 0, log: createLogger({ level: 'error', write: () => undefined }) });
      await w.start();
      try {
        if (await w.probe(wanIPv4, PROBE_MS)) return { found: { server, source: c.source }, tried };
      } finally {
        w.stop();
      }
    }
    return { tried };
  };
}
