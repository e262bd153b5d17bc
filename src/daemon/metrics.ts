// The daemon's side of --metrics and of what the WAN address says. The
// metrics address is checked before anything starts (loopback or one of the
// LAN's own addresses; anything else stops the start), the registry exists
// from then on so that every part reports to it, and the listener comes up
// once the service can be counted. On a LAN address its port joins the
// kernel guard: Linux takes a packet for any of its addresses on any
// interface, so binding to a LAN address alone does not keep the WAN out.

import type { Server } from 'node:http';
import { ConfigError } from '../config.js';
import type { UpstreamStatus } from './upstream.js';
import type { Logger } from '../log.js';
import type { IpAddress } from '../net/address.js';
import type { LocalAddress } from '../net/interfaces.js';
import { guardedPorts, type LanListen } from '../net/lan-listen.js';
import { classifyWanIPv4 } from '../net/wan-address.js';
import { parseMetricsListen } from '../server/metrics-listen.js';
import type { Prometheus } from '../server/prometheus.js';
import type { MappingService } from '../service/mapping-service.js';
import { packageVersion } from '../version.js';

export interface Metrics {
  readonly prometheus: Prometheus;
  readonly at: LanListen;
}

/**
 * --metrics checked against the LAN's addresses now; undefined when metrics
 * are off. prom-client is loaded here, only when they are on: importing it
 * cost every start about a tenth of a second.
 */
export async function prepareMetrics(listen: string | undefined, lan: readonly LocalAddress[]): Promise<Metrics | undefined> {
  if (listen === undefined) return undefined;
  const at = parseMetricsListen(listen, lan.map((l) => l.address));
  if (!at.ok) throw new ConfigError(at.error);
  const { Prometheus } = await import('../server/prometheus.js');
  return { prometheus: new Prometheus(packageVersion()), at: { address: at.address, port: at.port, loopback: at.loopback } };
}

/** The TCP ports the kernel guard keeps to the LAN: the metrics port when it is on a LAN address (loopback needs no guard). */
export function guardedMetricsPorts(m: Metrics | undefined): number[] {
  return guardedPorts(m?.at);
}

/** Counts the service's live mappings at each scrape and listens; returns the stop. */
export async function serveMetricsOf(m: Metrics, service: MappingService, log: Logger): Promise<() => Promise<void>> {
  m.prometheus.countMappings(() => service.mappings());
  const { serveMetrics } = await import('../server/prometheus.js');
  let server: Server;
  try {
    server = await serveMetrics(m.prometheus, m.at, log);
  } catch (err) {
    throw new ConfigError(`--metrics ${m.at.address}:${m.at.port}: cannot listen: ${(err as Error).message}`);
  }
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}

/**
 * Behind another NAT (a private, shared or DS-Lite WAN address, or none) the
 * IPv4 mappings made here do not reach the internet: said at start and at
 * every change to such an address, in the words `portcullis doctor` uses.
 */
export function warnIfBehindNat(address: IpAddress | undefined, log: Logger, upstream?: UpstreamStatus): void {
  const v = classifyWanIPv4(address);
  if (v.reachable) return;
  // RFC 7648: relayed to the ISP's PCP server, they do reach it.
  if (upstream?.state === 'proxying') log.info({ event: 'wan-address', kind: v.kind, address: address ?? null, detail: `behind the ISP's NAT; ${upstream.detail}` });
  else log.warn({ event: 'wan-address', kind: v.kind, address: address ?? null, detail: upstream ? `${v.detail} (upstream PCP: ${upstream.detail})` : v.detail });
}
