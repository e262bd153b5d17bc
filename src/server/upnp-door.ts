// UPnP IGD:2 on the LAN, put together: the documents (rendered once; their
// hash is CONFIGID), the control actions over the mapping service, GENA, the
// HTTP listener and SSDP.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { UpnpConfig } from '../config.js';
import type { Logger } from '../log.js';
import { familyOf, type IpAddress } from '../net/address.js';
import type { LocalAddress } from '../net/interfaces.js';
import type { LanSources } from '../net/lan-source.js';
import { Neighbours } from '../net/neighbours.js';
import { IPPROTO_TCP } from '../net/ipproto.js';
import { SERVICE_SPECS, configIdOf, rootDescription, scpd, upnpPaths, type ServiceKey } from '../protocols/upnp/description.js';
import { IgdControl, type IgdEnvironment } from '../protocols/upnp/igd.js';
import { igdTree, type IgdVersion, type ServiceName } from '../protocols/upnp/device-tree.js';
import { MAX_BOOT_ID, serverHeader } from '../protocols/upnp/ssdp.js';
import type { MappingService } from '../service/mapping-service.js';
import type { Telemetry } from '../telemetry.js';
import { GenaManager } from './gena-publisher.js';
import { SsdpServer, locationHost } from './ssdp-responder.js';
import { UpnpHttpServer } from './upnp-http.js';

export interface Upnp {
  readonly control: IgdControl;
  readonly gena: GenaManager;
  readonly ssdp: SsdpServer;
  readonly httpPort: number;
  /**
   * The LAN's addresses changed: serve the new ones, let go of the gone ones.
   * (Which sources count as the LAN is `sources`' business: the daemon
   * updates it.)
   */
  updateAddresses(lan: readonly LocalAddress[]): Promise<void>;
  /** Addresses still waiting to be bound (tentative), by either listener. */
  waiting(): string[];
  stop(): Promise<void>;
}

export async function startUpnp(opts: {
  cfg: UpnpConfig;
  /** The WAN interface IGD's link state and counters are read from: the one that carries IPv4, asked each time (it may change). */
  wan: () => string;
  lan: readonly LocalAddress[];
  /** The daemon's one LAN-source rule, shared with PCP/NAT-PMP (the daemon keeps it up to date). */
  sources: LanSources;
  /** Who is the same device as whom (UPnP secure mode); the kernel's table by default. */
  neighbours?: Neighbours;
  service: MappingService;
  deviceUuid: string;
  version: string;
  log: Logger;
  /** Told of every HTTP request answered (the metrics). */
  telemetry?: Telemetry;
}): Promise<Upnp> {
  const { cfg, service, log } = opts;
  let currentLan = opts.lan;
  const { sources } = opts;
  const started = Date.now();
  const paths = upnpPaths(randomBytes(16).toString('base64url'));
  const scpds = Object.fromEntries((Object.keys(SERVICE_SPECS) as ServiceKey[]).map((k) => [k, scpd(SERVICE_SPECS[k])])) as Record<ServiceKey, string>;
  const names = { rootUuid: opts.deviceUuid, friendlyName: 'portcullis', manufacturer: 'portcullis', modelName: 'portcullis', modelNumber: opts.version, serialNumber: opts.deviceUuid.slice(0, 8), paths };
  // CONFIGID: a hash of the documents as they would be with configId 0 (the
  // random path token excluded), so it changes exactly when a document does.
  const stable = upnpPaths('0000000000000000');
  const configId = configIdOf([
    rootDescription({ ...names, paths: stable, igdVersion: 1, configId: 0 }),
    rootDescription({ ...names, paths: stable, igdVersion: 2, configId: 0 }),
    ...Object.values(scpds),
  ]);
  const description = { 1: rootDescription({ ...names, igdVersion: 1, configId }), 2: rootDescription({ ...names, igdVersion: 2, configId }) };
  const uaPatterns = cfg.igd1UserAgents.map((p) => new RegExp(p, 'i'));
  const igdVersionFor = (ua: string | undefined): IgdVersion => (cfg.igdVersion !== 'auto' ? cfg.igdVersion : ua && uaPatterns.some((p) => p.test(ua)) ? 1 : 2);
  const server = serverHeader('Linux', osRelease(), opts.version);

  const env = wanEnvironment(opts.wan, () => service.externalIPv4() !== undefined, started, opts.neighbours ?? new Neighbours());
  const control = new IgdControl(service, env);
  const evented = (s: ServiceName): [string, string][] => {
    if (s === 'WANIPConnection') {
      const up = env.linkUp() && service.externalIPv4() !== undefined;
      const entries = service.count((m) => m.kind === 'map' && m.family === 4);
      return [
        ['PossibleConnectionTypes', 'IP_Routed'],
        ['ConnectionStatus', up ? 'Connected' : 'Disconnected'],
        ['ExternalIPAddress', service.externalIPv4() ?? ''],
        ['PortMappingNumberOfEntries', String(Math.min(entries, 0xffff))],
        ['SystemUpdateID', String(service.changes() % 0x100000000)],
      ];
    }
    if (s === 'WANIPv6FirewallControl') return [['FirewallEnabled', '1'], ['InboundPinholeAllowed', '1']];
    return [['PhysicalLinkStatus', env.linkUp() ? 'Up' : 'Down']];
  };
  const gena = new GenaManager(evented, log);
  const http = new UpnpHttpServer({ port: cfg.httpPort, paths, description, scpd: scpds, igdVersionFor, server }, opts.lan, sources, control, gena, log, opts.telemetry);
  await http.start();
  gena.start();
  const ssdp = new SsdpServer(
    {
      port: cfg.ssdpPort,
      maxAge: cfg.maxAge,
      server,
      // UDA 1.1 §1.2.2: BOOTID grows with every start; seconds of wall clock do.
      bootId: Math.floor(Date.now() / 1000) & MAX_BOOT_ID,
      configId,
      location: (local) => `http://${locationHost(local, currentLan)}:${cfg.httpPort}${paths.description[2]}`,
      tree: igdTree(opts.deviceUuid, 2),
    },
    opts.lan,
    sources,
    log,
  );
  try {
    await ssdp.start();
  } catch (err) {
    await http.stop();
    gena.stop();
    throw err;
  }
  return {
    control,
    gena,
    ssdp,
    httpPort: cfg.httpPort,
    async updateAddresses(lan) {
      currentLan = lan;
      await http.updateAddresses(lan);
      await ssdp.updateAddresses(lan);
    },
    waiting: () => [...new Set([...http.waiting(), ...ssdp.waiting()])],
    async stop() {
      gena.stop();
      await ssdp.stop();
      await http.stop();
    },
  };
}

function osRelease(): string {
  try {
    return readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim().split('-')[0] ?? '6';
  } catch {
    return '6';
  }
}

function readNumber(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** What WANCommonInterfaceConfig and GetStatusInfo report, read from the kernel. */
function wanEnvironment(wan: () => string, hasAddress: () => boolean, started: number, neighbours: Neighbours): IgdEnvironment {
  // WANIPConnection is an IPv4 service: its link is the WAN that carries IPv4.
  const sys = () => `/sys/class/net/${wan()}`;
  return {
    uptime: () => Math.floor((Date.now() - started) / 1000),
    linkUp: () => {
      try {
        const state = readFileSync(`${sys()}/operstate`, 'utf8').trim();
        return state === 'up' || (state === 'unknown' && hasAddress());
      } catch {
        return hasAddress();
      }
    },
    wanCounters: () => {
      const dir = sys();
      return {
        txBytes: readNumber(`${dir}/statistics/tx_bytes`) ?? 0,
        rxBytes: readNumber(`${dir}/statistics/rx_bytes`) ?? 0,
        txPackets: readNumber(`${dir}/statistics/tx_packets`) ?? 0,
        rxPackets: readNumber(`${dir}/statistics/rx_packets`) ?? 0,
        speedMbps: Math.max(0, readNumber(`${dir}/speed`) ?? 0),
      };
    },
    outboundTimeout: (protocol) =>
      protocol === IPPROTO_TCP
        ? readNumber('/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established') ?? 432000
        : readNumber('/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream') ?? 120,
    sameHost: sameHostBy(neighbours),
  };
}

/**
 * UPnP secure mode's "the same host": the same address, or two IPv6
 * addresses the kernel's neighbour table shows behind one link-layer address
 * on one link. Never by interface identifier: any LAN host can put another's
 * under fe80:: or a ULA prefix.
 */
export function sameHostBy(neighbours: Neighbours): IgdEnvironment['sameHost'] {
  return async (a: IpAddress, b: IpAddress) => a === b || (familyOf(a) === 6 && familyOf(b) === 6 && (await neighbours.sameDevice(a, b)));
}
