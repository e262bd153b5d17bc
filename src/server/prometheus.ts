// --metrics ADDR:PORT: Prometheus text at /metrics (prom-client), from what
// the parts report (src/telemetry.ts) and, at each scrape, the live mappings
// counted by door, family, transport and origin. Off by default; it listens
// on loopback or a LAN address only, and answers nothing but GET /metrics.
// Label values come from small fixed sets: no client address is ever a label.

import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Mapping, Origin } from '../domain/mapping.js';
import type { Logger } from '../log.js';
import { protocolName } from '../net/ipproto.js';
import { REMOVAL_REASONS, type CommitResult, type Door, type RemovalReason, type Telemetry } from '../telemetry.js';

/** Latency buckets for a request (seconds): sub-millisecond decisions up to a slow commit. */
const REQUEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

const ORIGINS: readonly Origin[] = ['pcp', 'natpmp', 'upnp', 'static'];
const ORIGIN_INDEX: ReadonlyMap<Origin, number> = new Map(ORIGINS.map((o, i) => [o, i]));

/**
 * Live mappings by origin, family and transport, as one number each
 * (origin << 9 | IPv6 << 8 | IP protocol): a scrape at 100 000 mappings
 * allocates nothing per mapping. Labelled one by one, prom-client built a
 * labels object and its key string for each: 110 ms of the daemon's CPU and
 * ~2.5 MB of garbage a scrape, blocking the doors meanwhile.
 */
export function countedByKind(mappings: Iterable<Mapping>): Map<number, number> {
  const counts = new Map<number, number>();
  for (const m of mappings) {
    const k = ((ORIGIN_INDEX.get(m.origin) ?? 0) << 9) | (m.family === 6 ? 256 : 0) | (m.protocol & 255);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

export class Prometheus implements Telemetry {
  readonly registry = new Registry();
  private readonly requests: Counter<'protocol' | 'op' | 'result'>;
  private readonly duration: Histogram<'protocol'>;
  private readonly removals: Counter<'reason'>;
  private readonly commits: Counter<'result'>;
  private readonly commitDuration: Histogram;
  private readonly repairs: Counter;
  private readonly epochResets: Counter;
  private readonly storeSyncs: Histogram;
  private readonly storeBytes: Counter;
  private live: () => Iterable<Mapping> = () => [];

  constructor(version: string) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'portcullis_requests_total', help: 'Requests answered or dropped, by door, operation and result (the door\'s own words)', labelNames: ['protocol', 'op', 'result'], registers });
    this.duration = new Histogram({ name: 'portcullis_request_duration_seconds', help: 'From a request\'s arrival to its answer (commit and store sync included)', labelNames: ['protocol'], buckets: REQUEST_BUCKETS, registers });
    const live = () => this.live();
    new Gauge({
      name: 'portcullis_mappings',
      help: 'Live mappings by the door that made them (static: the policy file), IP family, transport and origin',
      labelNames: ['protocol', 'family', 'l4proto', 'origin'],
      registers,
      collect() {
        this.reset();
        for (const [k, n] of countedByKind(live())) {
          const origin = ORIGINS[k >> 9] as Origin;
          this.set({ protocol: origin, family: k & 256 ? '6' : '4', l4proto: protocolName(k & 255), origin: origin === 'static' ? 'static' : 'client' }, n);
        }
      },
    });
    this.removals = new Counter({ name: 'portcullis_mapping_removals_total', help: 'Mappings ended, by reason', labelNames: ['reason'], registers });
    for (const reason of REMOVAL_REASONS) this.removals.inc({ reason }, 0);
    this.commits = new Counter({ name: 'portcullis_nft_commits_total', help: 'Batches sent to the firewall, by outcome (unrecorded: the kernel took it, the journal did not)', labelNames: ['result'], registers });
    for (const result of ['committed', 'refused', 'unrecorded'] as const) this.commits.inc({ result }, 0);
    this.commitDuration = new Histogram({ name: 'portcullis_nft_commit_duration_seconds', help: 'One batch: firewall transaction and journal sync', buckets: REQUEST_BUCKETS, registers });
    this.repairs = new Counter({ name: 'portcullis_firewall_repairs_total', help: 'Times reconciliation found the kernel damaged (a flush, fw4 reload) and repaired it', registers });
    this.epochResets = new Counter({ name: 'portcullis_epoch_resets_total', help: 'Times the epoch started again (a start without kept state, the external address changed, --flush-on-exit)', registers });
    this.storeSyncs = new Histogram({ name: 'portcullis_store_sync_duration_seconds', help: 'One synced journal write (O_DSYNC) of the state directory', buckets: REQUEST_BUCKETS, registers });
    this.storeBytes = new Counter({ name: 'portcullis_store_written_bytes_total', help: 'Bytes the durable store wrote to the state directory: journal records, compaction snapshots, disk probes after a failed write', registers });
    new Gauge({ name: 'portcullis_build_info', help: 'The running version', labelNames: ['version', 'node'], registers }).set({ version, node: process.versions.node }, 1);
    collectDefaultMetrics({ register: this.registry });
  }

  /** Where the mappings gauge counts from, at each scrape (the service's query face). */
  countMappings(live: () => Iterable<Mapping>): void {
    this.live = live;
  }

  request(door: Door, op: string, result: string, seconds: number): void {
    this.requests.inc({ protocol: door, op: bounded(op), result: bounded(result) });
    this.duration.observe({ protocol: door }, seconds);
  }
  removed(reason: RemovalReason, count: number): void {
    if (count > 0) this.removals.inc({ reason }, count);
  }
  commit(result: CommitResult, seconds: number): void {
    this.commits.inc({ result });
    this.commitDuration.observe(seconds);
  }
  storeSync(seconds: number): void {
    this.storeSyncs.observe(seconds);
  }
  storeWritten(bytes: number): void {
    this.storeBytes.inc(bytes);
  }
  repaired(): void {
    this.repairs.inc();
  }
  epochReset(): void {
    this.epochResets.inc();
  }
}

/** A label from a door's own small vocabulary; anything unexpected is counted as 'other'. */
function bounded(label: string): string {
  return /^[A-Za-z0-9_.:-]{1,48}$/.test(label) ? label : 'other';
}

/** Serves GET /metrics; everything else is 404 (405 for other methods). Resolves once listening. */
export async function serveMetrics(p: Prometheus, at: { address: string; port: number }, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if ((req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    p.registry
      .metrics()
      .then((text) => res.writeHead(200, { 'Content-Type': p.registry.contentType }).end(req.method === 'HEAD' ? undefined : text))
      .catch((err: unknown) => res.writeHead(500).end(`${(err as Error).message}\n`));
  });
  // A scraper or two, not the world: bounded connections and waits.
  server.maxConnections = 16;
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  log.info({ event: 'metrics-listening', address: at.address, port: at.port, path: '/metrics' });
  return server;
}
