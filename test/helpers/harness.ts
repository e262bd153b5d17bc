// A mapping service with a hand-moved clock and the memory firewall, on a LAN of
// documentation/private addresses: 192.168.77.0/24 and 2001:db8:77::/64,
// router 192.168.77.1 / 2001:db8:77::1, external 198.51.100.1.

import { MemoryFirewall } from '../../src/firewall/memory.js';
import { memoryLogger } from './memory-logger.js';
import { mustParseIp, parsePrefix, prefixContains, type IpAddress, type Prefix } from '../../src/net/address.js';
import type { Policy } from '../../src/policy/policy.js';
import { DEFAULT_POLICY, policyFromDocument } from '../../src/policy/load.js';
import { PortControlProtocol } from '../../src/protocols/pcp-or-natpmp.js';
import { DEFAULT_SERVICE_CONFIG, MappingService, type ServiceConfig } from '../../src/service/mapping-service.js';
import { ManualClock } from './manual-clock.js';
import { Epoch } from '../../src/state/epoch.js';
import { MappingTable } from '../../src/state/table.js';

export const EXTERNAL = mustParseIp('198.51.100.1');
export const LAN_PREFIXES: Prefix[] = [parsePrefix('192.168.77.0/24') as Prefix, parsePrefix('2001:db8:77::/64') as Prefix];
export const ROUTER = new Set([mustParseIp('192.168.77.1'), mustParseIp('2001:db8:77::1'), EXTERNAL]);

export interface Harness {
  clock: ManualClock;
  firewall: MemoryFirewall;
  service: MappingService;
  /** The service's table and epoch, built here so a test can look at their insides. */
  table: MappingTable;
  epoch: Epoch;
  protocol: PortControlProtocol;
  log: ReturnType<typeof memoryLogger>;
  setExternal(a: IpAddress | undefined): void;
  /** One datagram through the same path the UDP server uses. */
  send(source: string, msg: Buffer): Promise<Buffer | undefined>;
}

/** `nat44` false: a DS-Lite B4's firewall (IPv4 admitted, not translated). */
export function harness(opts: { config?: Partial<ServiceConfig>; policy?: Policy; nat44?: boolean } = {}): Harness {
  const clock = new ManualClock();
  const firewall = new MemoryFirewall(clock, { nat44: opts.nat44 });
  const log = memoryLogger();
  let external: IpAddress | undefined = EXTERNAL;
  const isLan = (a: IpAddress) => LAN_PREFIXES.some((p) => prefixContains(p, a));
  const interfaceOf = (a: IpAddress) => (isLan(a) ? 'br-lan' : undefined);
  const table = new MappingTable(interfaceOf);
  const epoch = new Epoch(clock);
  const service = new MappingService(
    { ...DEFAULT_SERVICE_CONFIG, ...opts.config },
    opts.policy ?? unthrottledDefault(clock),
    firewall,
    {
      externalIPv4: () => external,
      isLanHost: isLan,
      isRouterAddress: (a) => ROUTER.has(a),
      interfaceOf,
    },
    clock,
    epoch,
    log,
    table,
  );
  const protocol = new PortControlProtocol(service);
  return {
    clock,
    firewall,
    service,
    table,
    epoch,
    protocol,
    log,
    setExternal: (a) => (external = a),
    send: async (source, msg) => (await protocol.handle(msg, mustParseIp(source))).reply,
  };
}

/**
 * The shipped default policy without its request rate: the hand-moved clock
 * never refills a bucket, and these tests are about protocol behaviour (the
 * rate limit has tests of its own).
 */
export function unthrottledDefault(clock: ManualClock): Policy {
  const doc = structuredClone(DEFAULT_POLICY);
  for (const r of doc.rules) if (r.limits) r.limits.requestsPerSecond = 0;
  return policyFromDocument(doc, 'test default', () => clock.now()).policy;
}
