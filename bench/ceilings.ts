// What this machine allows at all (issue 16's "limits of the machine"): the
// bench's own load generators, in the same lab, against servers that do the
// least their protocol asks (bench/ceiling-servers.ts) — a PCP answer made
// from the request's bytes, a canned SOAP answer per TCP connection — and
// libnftables committing one element at a time with nothing else running.
// Beside portcullis' rows of `npm run bench`, they say how much of a rate
// is portcullis' own work and how much the machine's.
//
//   node dist/bench/ceilings.js        (root: it builds the lab's namespaces)
//
// Prints a small table and one line per ceiling; nothing here is a target.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { LAB, P, ROOT, V6_CLIENTS, cpuSeconds, env, fmt, inNs, lanClients, load, pidOf, sh, stop, upnpLoad } from './lab.js';
import type { LoadResult } from './load.js';

const SERVERS = join(ROOT, 'dist/bench/ceiling-servers.js');
const ROUNDS = 3;

/** A ceiling server in the router's namespace, once it says it listens. */
async function startServer(what: 'pcp' | 'upnp'): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', `${P}-rtr`, process.execPath, SERVERS, what], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the ${what} ceiling server did not start`)), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      if (!d.toString().includes('ready')) return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`the ${what} ceiling server exited (${code})`)));
  });
  return child;
}

interface Measured {
  rate: number;
  p50ms: number;
  p99ms: number;
  serverCpuMs: number;
  clientCpuMs: number;
  ok: number;
  requested: number;
}

/** One load against a server, with the CPU each side spent per request. */
function measured(server: ChildProcess, run: () => LoadResult): Measured {
  const cpu0 = cpuSeconds(pidOf(server));
  const r = run();
  const cpu1 = cpuSeconds(pidOf(server));
  const per = (s: number) => (s / Math.max(1, r.requested)) * 1000;
  return { rate: r.rate, p50ms: r.p50ms, p99ms: r.p99ms, serverCpuMs: per(cpu1.own - cpu0.own), clientCpuMs: per(r.clientCpuSeconds ?? NaN), ok: r.succeeded, requested: r.requested };
}

const line = (name: string, m: Measured) =>
  `| ${name} | ${fmt(m.rate)} | ${fmt(m.p50ms, 1)} | ${fmt(m.p99ms, 1)} | ${fmt(m.serverCpuMs, 3)} | ${fmt(m.clientCpuMs, 3)} | ${m.ok}/${m.requested} |`;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the ceilings build network namespaces: run as root');
  sh(['bash', LAB, 'up']);
  const out = ['| ceiling | per s | p50 ms | p99 ms | server CPU ms/request | generator CPU ms/request | answered |', '|---|---:|---:|---:|---:|---:|---:|'];
  try {
    lanClients();
    const s6 = '2001:db8:77::1';

    // PCP: the bench's "PCP MAP IPv6" row (10 000 MAPs, 256 clients × 8 in flight).
    const pcp = await startServer('pcp');
    try {
      load({ server: s6, clients: V6_CLIENTS, count: 5_000, startPort: 50_000 });
      for (let i = 0; i < ROUNDS; i++) out.push(line('PCP MAP IPv6, a mirrored answer', measured(pcp, () => load({ server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 10_000 + i * 1_000 }))));
    } finally {
      await stop(pcp);
    }

    // UPnP: the bench's AddPortMapping row (64 in flight, one request per connection).
    const upnp = await startServer('upnp');
    try {
      upnpLoad({ startPort: 40_000 });
      for (let i = 0; i < ROUNDS; i++) out.push(line('UPnP AddPortMapping, a canned answer', measured(upnp, () => upnpLoad({ startPort: 10_000 + i * 5_000 }))));
    } finally {
      await stop(upnp);
    }

    // The kernel's side of a commit, alone.
    for (let i = 0; i < ROUNDS; i++) {
      const r = JSON.parse(inNs('rtr', [process.execPath, SERVERS, 'nft', '3000'])) as Record<`elements${1 | 8}`, { perSecond: number; p50ms: number; p99ms: number; maxMs: number; cpuMsPerCall: number }>;
      for (const per of [1, 8] as const) {
        const e = r[`elements${per}`];
        out.push(`| libnftables, ${per} element${per > 1 ? 's' : ''} a transaction, one after another | ${fmt(e.perSecond)} | ${fmt(e.p50ms, 2)} | ${fmt(e.p99ms, 2)} (max ${fmt(e.maxMs, 1)}) | ${fmt(e.cpuMsPerCall, 3)} | — | 3000 |`);
      }
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    sh(['bash', LAB, 'down']);
  }
}

await main();
