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
import type { MappingService } from '../service/mapping-service.js';
import { NO_TELEMETRY, type CommitResult, type Door, type RemovalReason, type Telemetry } from '../telemetry.js';
import { packageVersion } from '../version.js';

export interface Metrics {
  /** What every part reports to from the start: held until the registry exists, then counted there. */
  readonly telemetry: HeldTelemetry;
  readonly at: LanListen;
}

/**
 * At most this many reports are held before the registry exists (the time
 * from the start to the doors' opening, and the first requests after it);
 * a start sends a handful. Beyond it they are counted as lost, and the
 * registry is not told a number it did not see.
 */
export const MAX_HELD_REPORTS = 100_000;

/**
 * The parts' reports from the start until prom-client's registry exists.
 * prom-client is loaded once the doors are open: its load (~60-80 ms here)
 * used to come before the store's open, so before any client was answered.
 * What is reported meanwhile (store syncs and bytes, an epoch reset, the
 * first answers) is handed to the registry in order when it comes, so its
 * counters say what they would have said.
 */
export class HeldTelemetry implements Telemetry {
  private held: ((t: Telemetry) => void)[] | undefined = [];
  private to: Telemetry = NO_TELEMETRY;
  /** Reports lost because MAX_HELD_REPORTS were already held. */
  lost = 0;

  private hold(report: (t: Telemetry) => void): void {
    if (this.held!.length < MAX_HELD_REPORTS) this.held!.push(report);
    else this.lost++;
  }

  /** From now on reports go to `to`; what was held goes first, in order. */
  attach(to: Telemetry): void {
    const held = this.held ?? [];
    this.held = undefined;
    this.to = to;
    for (const report of held) report(to);
  }

  // Once attached, each report is one test and a direct call: requests report through here.
  request(door: Door, op: string, result: string, seconds: number): void {
    if (this.held) this.hold((t) => t.request(door, op, result, seconds));
    else this.to.request(door, op, result, seconds);
  }
  removed(reason: RemovalReason, count: number): void {
    if (this.held) this.hold((t) => t.removed(reason, count));
    else this.to.removed(reason, count);
  }
  commit(result: CommitResult, seconds: number): void {
    if (this.held) this.hold((t) => t.commit(result, seconds));
    else this.to.commit(result, seconds);
  }
  storeSync(seconds: number): void {
    if (this.held) this.hold((t) => t.storeSync(seconds));
    else this.to.storeSync(seconds);
  }
  storeWritten(bytes: number): void {
    if (this.held) this.hold((t) => t.storeWritten(bytes));
    else this.to.storeWritten(bytes);
  }
  repaired(): void {
    if (this.held) this.hold((t) => t.repaired());
    else this.to.repaired();
  }
  epochReset(): void {
    if (this.held) this.hold((t) => t.epochReset());
    else this.to.epochReset();
  }
}

/**
 * --metrics checked against the LAN's addresses now; undefined when metrics
 * are off. Nothing is loaded here: prom-client comes with serveMetricsOf,
 * after the doors open.
 */
export function prepareMetrics(listen: string | undefined, lan: readonly LocalAddress[]): Metrics | undefined {
  if (listen === undefined) return undefined;
  const at = parseMetricsListen(listen, lan.map((l) => l.address));
  if (!at.ok) throw new ConfigError(at.error);
  return { telemetry: new HeldTelemetry(), at: { address: at.address, port: at.port, loopback: at.loopback } };
}

/** The TCP ports the kernel guard keeps to the LAN: the metrics port when it is on a LAN address (loopback needs no guard). */
export function guardedMetricsPorts(m: Metrics | undefined): number[] {
  return guardedPorts(m?.at);
}

/** Loads the registry, hands it what was held, counts the service's live mappings at each scrape and listens; returns the stop. */
export async function serveMetricsOf(m: Metrics, service: MappingService, log: Logger): Promise<() => Promise<void>> {
  const { Prometheus, serveMetrics } = await import('../server/prometheus.js');
  const prometheus = new Prometheus(packageVersion());
  m.telemetry.attach(prometheus);
  if (m.telemetry.lost) log.warn({ event: 'metrics-reports-lost', lost: m.telemetry.lost, detail: 'more reports came before the metrics registry than could be held' });
  prometheus.countMappings(() => service.live());
  let server: Server;
  try {
    server = await serveMetrics(prometheus, m.at, log);
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
