// Load generator for `npm run bench`, run inside the lab's LAN namespace:
// many client addresses send PCP MAP (or NAT-PMP) requests as fast as the
// server answers — a window of requests outstanding per client, each
// retransmitted like a real client would (RFC 6887 §8.1.1, shortened) — and
// it reports creations per second and reply latency.

import { createSocket, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { mustParseIp } from '../src/net/address.js';
import { encodeNatPmpMapRequest } from '../src/protocols/natpmp/codec.js';
import { encodePcpRequest } from '../src/protocols/pcp/codec.js';

export interface LoadSpec {
  protocol: 'pcp' | 'natpmp';
  server: string;
  port: number;
  clients: string[];
  /** Mappings to create, spread over the clients. */
  count: number;
  /** Internal ports start here for every client. */
  startPort: number;
  /** Requests in flight per client. */
  window: number;
  lifetime: number;
  timeoutMs: number;
  maxTries: number;
  /** Give up the whole run after this long. */
  deadlineMs: number;
  /**
   * A client starts a request no sooner than this long after its previous
   * one (a device mapping now and then, not a generator at full speed).
   */
  spacingMs?: number;
  /** Return every success's latency too (to merge streams' percentiles). */
  keepLatencies?: boolean;
}

export interface LoadResult {
  requested: number;
  succeeded: number;
  failed: number;
  lost: number;
  /** Of `lost`: never sent, the deadline came first (a window-1 client waits out each loss). */
  unsent?: number;
  seconds: number;
  rate: number;
  p50ms: number;
  p99ms: number;
  retransmissions: number;
  codes: Record<string, number>;
  /** Sorted, ms; only with spec.keepLatencies. */
  latenciesMs?: number[];
  /** CPU seconds the generator itself used for the run (user + system), to set beside the daemon's. */
  clientCpuSeconds?: number;
}

/** The p-th percentile (0–100) of ascending `sorted`: the value at rank ⌊n·p/100⌋; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
}

interface Outstanding {
  port: number;
  firstSent: number;
  lastSent: number;
  tries: number;
}

async function run(spec: LoadSpec): Promise<LoadResult> {
  const server = mustParseIp(spec.server);
  const perClient = Math.ceil(spec.count / spec.clients.length);
  const latencies: number[] = [];
  const codes: Record<string, number> = {};
  let succeeded = 0;
  let failed = 0;
  let lost = 0;
  let unsent = 0;
  let retransmissions = 0;
  const start = performance.now();
  const cpu0 = process.cpuUsage();

  const clientRuns = spec.clients.map(async (addr, ci) => {
    const quota = Math.max(0, Math.min(perClient, spec.count - ci * perClient));
    if (quota === 0) return;
    const sock: Socket = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((r) => sock.bind(0, addr, () => r()));
    const nonce = Buffer.alloc(12);
    nonce.writeUInt32BE(ci + 1, 8);
    const request = (port: number) =>
      spec.protocol === 'pcp'
        ? encodePcpRequest({ opcode: 1, lifetime: spec.lifetime, clientAddress: mustParseIp(addr), map: { nonce, protocol: 17, internalPort: port, externalPort: 0, externalAddress: mustParseIp(addr.includes(':') ? '::' : '0.0.0.0') } })
        : encodeNatPmpMapRequest(1, port, 0, spec.lifetime);
    const inflight = new Map<number, Outstanding>();
    let next = 0;
    let lastStart = -Infinity;
    await new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let spaced: NodeJS.Timeout | undefined;
      const done = () => {
        clearInterval(timer);
        clearTimeout(spaced);
        resolve();
      };
      const send = (o: Outstanding) => {
        o.lastSent = performance.now();
        sock.send(request(o.port), spec.port, server);
      };
      const refill = () => {
        while (inflight.size < spec.window && next < quota) {
          const wait = lastStart + (spec.spacingMs ?? 0) - performance.now();
          if (wait > 0) {
            spaced ??= setTimeout(() => {
              spaced = undefined;
              refill();
            }, wait);
            break;
          }
          const o = { port: spec.startPort + next++, firstSent: 0, lastSent: 0, tries: 1 };
          o.firstSent = lastStart = performance.now();
          inflight.set(o.port, o);
          send(o);
        }
        if (inflight.size === 0 && next >= quota) done();
      };
      sock.on('message', (m) => {
        const port = spec.protocol === 'pcp' ? (m.length >= 60 ? m.readUInt16BE(40) : -1) : m.length >= 16 ? m.readUInt16BE(8) : -1;
        const o = inflight.get(port);
        if (!o) return; // a duplicate answer to a retransmission
        inflight.delete(port);
        const code = spec.protocol === 'pcp' ? (m[3] ?? 255) : m.readUInt16BE(2);
        codes[code] = (codes[code] ?? 0) + 1;
        if (code === 0) {
          succeeded++;
          latencies.push(performance.now() - o.firstSent);
        } else failed++;
        refill();
      });
      timer = setInterval(() => {
        const now = performance.now();
        for (const o of inflight.values()) {
          if (now - o.lastSent < spec.timeoutMs * 2 ** (o.tries - 1)) continue;
          if (o.tries >= spec.maxTries) {
            inflight.delete(o.port);
            lost++;
            continue;
          }
          o.tries++;
          retransmissions++;
          send(o);
        }
        if (now - start > spec.deadlineMs) {
          lost += inflight.size + (quota - next);
          unsent += quota - next;
          inflight.clear();
          next = quota;
        }
        refill();
      }, 20);
      refill();
    });
    sock.close();
  });
  await Promise.all(clientRuns);
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    requested: spec.count,
    succeeded,
    failed,
    lost,
    unsent,
    seconds,
    rate: succeeded / seconds,
    p50ms: percentile(latencies, 50),
    p99ms: percentile(latencies, 99),
    retransmissions,
    codes,
    ...(spec.keepLatencies ? { latenciesMs: latencies } : {}),
    clientCpuSeconds: ((c) => (c.user + c.system) / 1e6)(process.cpuUsage(cpu0)),
  };
}

/**
 * A generator's entry point: when `moduleUrl` is the script node was started
 * with, runs `generate` on the spec given as JSON in argv[2] and prints its
 * result as one JSON line (what bench.ts parses).
 */
export function runGenerator<S, R>(moduleUrl: string, generate: (spec: S) => Promise<R>): void {
  if (process.argv[1] !== fileURLToPath(moduleUrl)) return;
  generate(JSON.parse(process.argv[2] ?? '{}') as S).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (err: unknown) => {
      process.stderr.write(String(err) + '\n');
      process.exit(1);
    },
  );
}

runGenerator(import.meta.url, run);
