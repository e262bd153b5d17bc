// The daemon's side of a restart, step by step, in-process: the state a
// daemon with N mappings leaves is opened, then — each step timed on its
// own — restored into a service built as src/daemon.ts builds it (LAN
// interface and host of every address looked up as the daemon does), the
// policy applied to what came back (swapPolicy), the firewall made to match
// (syncFirewall: the first reconcile, before any answer), and the missing
// entries put back in batches (after the doors open). The nft backend runs
// over a stand-in runner that lists every set empty, as after a reboot, and
// takes every batch: what is timed is portcullis' own work, not the kernel's.
//
//   node dist/bench/startup-restore.js [N] [v4Every]
//
// Prints one JSON line (milliseconds; `beforeAnswer` = restore + policy +
// reconcile, what a first answer waits for after the store's open). One run
// per process: compare builds by running each in turn, several times.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFirewall, syncFirewall } from '../src/daemon/firewall.js';
import { NftBackend } from '../src/firewall/nft/backend.js';
import type { NftRunner } from '../src/firewall/nft/run.js';
import { createLogger } from '../src/log.js';
import { mustParseIp, prefixContains, parsePrefix, type Prefix } from '../src/net/address.js';
import { hostUnit } from '../src/net/hosts.js';
import { builtinPolicy } from '../src/policy/load.js';
import { DEFAULT_SERVICE_CONFIG, MappingService } from '../src/service/mapping-service.js';
import { Epoch } from '../src/state/epoch.js';
import { DurableStore } from '../src/state/store.js';
import { NO_TELEMETRY } from '../src/telemetry.js';
import { clock, writeState } from './heap-state.js';

const N = Number(process.argv[2] ?? 100_000);
const V4_EVERY = Number(process.argv[3] ?? 0);

const standIn: NftRunner = {
  kind: 'library',
  batch: async () => ({ ok: true, stdout: '', stderr: '' }),
  script: async () => ({ ok: true, stdout: '', stderr: '' }),
  list: async () => ({ ok: true, items: [] }),
};

const dir = mkdtempSync(join(tmpdir(), 'portcullis-startup-restore-'));
try {
  await writeState(dir, N, V4_EVERY);
  const log = createLogger({ level: 'error', write: () => undefined });
  const fw = new NftBackend({ family: 'inet', table: 'portcullis', embedded: false }, { wans: ['wan0'], lan: ['br-lan'], mark: 0x10000, nat44: true, guarded: { udp: [5351], tcp: [] } }, log, standIn);
  await startFirewall(fw, []);
  fw.renewInPlace = true;
  // The LAN prefixes heap-state's addresses are in, as the address watch lists them.
  const lan = [
    { interface: 'br-lan', prefix: parsePrefix('192.168.77.0/24') as Prefix },
    { interface: 'br-lan', prefix: parsePrefix('2001:db8:77::/64') as Prefix },
  ];
  const t = (since: number) => Math.round((performance.now() - since) * 10) / 10;
  let at = performance.now();
  const { store, state } = await DurableStore.open(dir, clock.wall());
  const open = t(at);
  const policy = builtinPolicy();
  const service = new MappingService(
    DEFAULT_SERVICE_CONFIG,
    policy.policy,
    fw,
    {
      externalIPv4: () => mustParseIp('198.51.100.1'),
      isLanHost: () => true,
      isRouterAddress: () => false,
      interfaceOf: (a) => lan.find((l) => prefixContains(l.prefix, a))?.interface,
      hostOf: (a) => hostUnit(a),
    },
    clock,
    new Epoch(clock),
    log,
  );
  at = performance.now();
  const r = service.restore(state.mappings, state.lastWriteWall);
  const restore = t(at);
  at = performance.now();
  await service.swapPolicy(policy.policy, []);
  const swapPolicy = t(at);
  at = performance.now();
  const reinstall = await syncFirewall(service, fw, NO_TELEMETRY, log);
  const reconcile = t(at);
  at = performance.now();
  await reinstall.run(() => false);
  const reinstallMs = t(at);
  if (r.restored !== N || reinstall.entries !== N) throw new Error(`${r.restored} restored, ${reinstall.entries} to reinstall, of ${N}`);
  process.stdout.write(`${JSON.stringify({ mappings: N, ipv4: V4_EVERY > 0 ? Math.ceil(N / V4_EVERY) : 0, open, restore, swapPolicy, reconcile, beforeAnswer: Math.round((restore + swapPolicy + reconcile) * 10) / 10, reinstall: reinstallMs })}\n`);
  service.stop();
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
