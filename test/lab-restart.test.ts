// A restart with thousands of mappings answers before its kernel is
// complete, and completes it in bounded batches (daemon/firewall.ts): real
// nftables in the lab, the table deleted as after a reboot. The order is
// read from the daemon's log, never from a clock.

import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI, labUp, loadTestConfig, stateDir, waitForLine, type Lab } from './helpers/lab.js';

const lab: Lab = labUp(`pq${process.pid % 10000}`);
t.teardown(() => lab.down());
const ACKING = fileURLToPath(new URL('./helpers/acking-client.js', import.meta.url));
const STATE = stateDir();
const CONFIG = loadTestConfig(50_000);
const MAPPINGS = 12_000;
const PROBE_PORT = 60_000;

interface Daemon {
  child: ChildProcess;
  lines: string[];
}

function spawnDaemon(): Daemon {
  const child = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', STATE, '--config', CONFIG]);
  const lines: string[] = [];
  child.stdout?.on('data', (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean)));
  return { child, lines };
}

async function stop(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null) return;
  const exited = new Promise((r) => d.child.once('exit', r));
  d.child.kill('SIGTERM');
  await exited;
}

/** The client, and its acknowledged ports once it has them all. */
function spawnClient(spec: object): { client: ChildProcess; acked: Promise<number> } {
  const client = lab.spawn('lan', [process.execPath, ACKING, JSON.stringify({ server: '2001:db8:77::1', lifetime: 600, ...spec })]);
  let acks = 0;
  client.stdout?.on('data', (b: Buffer) => (acks += b.toString().split('\n').filter((l) => l.startsWith('ack ')).length));
  return { client, acked: new Promise((resolve) => client.once('exit', () => resolve(acks))) };
}
const makeMappings = (spec: object): Promise<number> => spawnClient(spec).acked;

/** Our pinholes in the kernel: elements with a timeout (the sentinel has none), counted in the router (the listing is megabytes). */
function kernelPinholes(): number {
  const r = lab.exec('rtr', ['sh', '-c', `nft -j list set inet portcullis pinholes6 | grep -o '"timeout": ' | wc -l`]);
  return Number(r.stdout.trim());
}

const indexOf = (lines: string[], match: (l: string) => boolean) => lines.findIndex(match);

t.test('restart with 12 000 mappings: answers while the kernel is refilled in batches, then holds them all', async (t) => {
  const first = spawnDaemon();
  await waitForLine(first.child, (l) => l.includes('"event":"nft-reinstalled"'), 20_000);
  t.equal(await makeMappings({ count: MAPPINGS, startPort: 10_000, window: 64 }), MAPPINGS, `${MAPPINGS} mappings made`);
  t.equal(kernelPinholes(), MAPPINGS);
  await stop(first);
  lab.exec('rtr', ['nft', 'delete', 'table', 'inet', 'portcullis']);

  // A client asks for a new mapping every 10 ms from before the start: the daemon is spawned once it is sending.
  const probe = spawnClient({ count: 1, startPort: PROBE_PORT, window: 1, retransmitMs: 10 });
  await waitForLine(probe.client, (l) => l === 'sending', 30_000);
  const d = spawnDaemon();
  try {
    await waitForLine(d.child, (l) => l.includes('"event":"nft-reinstalled"'), 60_000);
    t.equal(await probe.acked, 1, 'the client was answered');
    const reinstalled = JSON.parse(d.lines.find((l) => l.includes('"event":"nft-reinstalled"')) ?? '{}') as { entries?: number; batches?: number; batchSize?: number; refused?: number };
    const state = JSON.parse(d.lines.find((l) => l.includes('"event":"state"')) ?? '{}') as { restored?: number };
    t.equal(state.restored, MAPPINGS, 'every mapping restored from the store');
    t.ok((reinstalled.batchSize ?? Infinity) < MAPPINGS, `batches of ${reinstalled.batchSize}`);
    t.equal(reinstalled.batches, Math.ceil(MAPPINGS / (reinstalled.batchSize ?? 1)), `the reinstall took ${reinstalled.batches} batches`);
    t.equal(reinstalled.refused, 0);
    // The probe's own mapping went to the kernel with its request, not with the reinstall.
    t.ok((reinstalled.entries ?? 0) >= MAPPINGS, `${reinstalled.entries} entries put back`);
    const started = indexOf(d.lines, (l) => l.includes('"event":"started"'));
    const granted = indexOf(d.lines, (l) => l.includes('"event":"map"') && l.includes(`"internalPort":${PROBE_PORT}`) && l.includes('"verdict":"granted"'));
    const done = indexOf(d.lines, (l) => l.includes('"event":"nft-reinstalled"'));
    t.ok(started >= 0 && granted >= 0, 'started, and the client granted');
    t.ok(granted < done, `the client was answered (log line ${granted}) before the kernel was complete (line ${done})`);
    t.equal(kernelPinholes(), MAPPINGS + 1, 'the kernel then holds every restored mapping and the new one');
  } finally {
    await stop(d);
  }
});
