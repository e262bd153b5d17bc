// The whole daemon behind a carrier-grade NAT, in-process: the memory
// firewall, the LAN on loopback, a WAN interface with a shared-space
// address (RFC 6598) and the upstream PCP server a scripted one on loopback
// (helpers/fake-pcp-server.ts). For the proxy's daemon-level tests.

import type { NetworkInterfaceInfo } from 'node:os';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS, type Config } from '../../src/config.js';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { MemoryFirewall } from '../../src/firewall/memory.js';
import { monotonicClock } from '../../src/state/clock.js';
import { mustParseIp } from '../../src/net/address.js';
import { memoryLogger } from './memory-logger.js';
import { fakeServer } from './fake-pcp-server.js';

export interface CgnDaemon {
  daemon: Daemon;
  firewall: MemoryFirewall;
  upstream: Awaited<ReturnType<typeof fakeServer>>;
  log: ReturnType<typeof memoryLogger>;
  cfg: Config;
  /** The WAN's address now (change it to move the line). */
  wan: { address: string };
}

/** `wanAddress`: the router's WAN IPv4 address (shared space by default: behind the ISP's NAT). */
export async function cgnDaemon(o: { wanAddress?: string; cfg?: Partial<Config>; upnp?: boolean; upstream?: 'fake' | 'auto'; flushDeadlineMs?: number } = {}): Promise<CgnDaemon> {
  const wan = { address: o.wanAddress ?? '100.64.0.2' };
  const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    wan0: [{ address: wan.address, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: `${wan.address}/24` }],
  });
  const upstream = await fakeServer();
  const port = 20000 + ((process.pid * 7 + Math.floor(Math.random() * 1000)) % 20000);
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cgn-'));
  const log = memoryLogger();
  const cfg: Config = {
    ...DEFAULTS,
    stateDir: join(dir, 'state'),
    lan: ['lo'],
    wans: ['wan0'],
    backend: 'memory',
    port,
    announce: false,
    upnp: { ...DEFAULTS.upnp, enabled: o.upnp === true, httpPort: port + 1, ssdpPort: port + 2 },
    upstreamPcp: o.upstream === 'auto' ? 'auto' : { address: mustParseIp('127.0.0.1'), port: upstream.port },
    ...o.cfg,
  };
  const firewall = new MemoryFirewall(monotonicClock, { nat44: cfg.nat44 });
  const daemon = await startDaemon(cfg, log, { interfaces, firewall, upstreamTiming: { irtMs: 100, patienceMs: 1000, passMs: 200, bindPort: 0, flushDeadlineMs: o.flushDeadlineMs } });
  return { daemon, firewall, upstream, log, cfg, wan };
}
