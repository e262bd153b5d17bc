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
//   node dist/bench/startup-restore.js [N] [v4Every] [reinstallBatch]
//
// STARTUP_REAL_NFT=1: the real nftables (libnftables in-process, as the
// daemon) instead of the stand-in — run it inside a network namespace of its
// own (`ip netns exec NS node …`): it creates table inet portcullis there,
// deletes it first as a reboot would, and the reinstall's batches reach the
// kernel (the longest batch is reported: what a request may wait behind).
//
// Prints one JSON line (milliseconds; `beforeAnswer` = restore + policy +
// reconcile, what a first answer waits for after the store's open). One run
// per process: compare builds by running each in turn, several times.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REINSTALL_BATCH, startFirewall, syncFirewall } from '../src/daemon/firewall.js';
import { chooseRunner } from '../src/firewall/nft/choose.js';
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
const BATCH = Number(process.argv[4] ?? REINSTALL_BATCH);
const REAL = Boolean(process.env.STARTUP_REAL_NFT);

const standIn: NftRunner = REAL ? timed(chooseRunner('library', createLogger({ level: 'error', write: () => undefined }))) : {
  kind: 'library',
  batch: async () => ({ ok: true, stdout: '', stderr: '' }),
  script: async () => ({ ok: true, stdout: '', stderr: '' }),
  list: async () => ({ ok: true, items: [] }),
};

/** The longest batch the runner was given (ms). */
let longestBatch = 0;
function timed(real: NftRunner): NftRunner {
  return {
    kind: real.kind,
    batch: async (commands) => {
      const at = performance.now();
      const r = await real.batch(commands);
      longestBatch = Math.max(longestBatch, performance.now() - at);
      return r;
    },
    script: (text) => real.script(text),
    list: (args) => real.list(args),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'portcullis-startup-restore-'));
try {
  await writeState(dir, N, V4_EVERY);
  const log = createLogger({ level: 'error', write: () => undefined });
  const fw = new NftBackend({ family: 'inet', table: 'portcullis', embedded: false }, { wans: ['wan0'], lan: ['br-lan'], mark: 0x10000, nat44: true, guarded: { udp: [5351], tcp: [] } }, log, standIn);
  await startFirewall(fw, []);
  fw.renewInPlace = true;
  if (REAL) {
    const gone = await standIn.script('delete table inet portcullis\n');
    if (!gone.ok) throw new Error(gone.stderr);
  }
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
  const reinstall = await syncFirewall(service, fw, NO_TELEMETRY, log, BATCH);
  const reconcile = t(at);
  at = performance.now();
  longestBatch = 0;
  await reinstall.run(() => false);
  const reinstallMs = t(at);
  if (r.restored !== N || reinstall.entries !== N) throw new Error(`${r.restored} restored, ${reinstall.entries} to reinstall, of ${N}`);
  process.stdout.write(`${JSON.stringify({ mappings: N, ipv4: V4_EVERY > 0 ? Math.ceil(N / V4_EVERY) : 0, open, restore, swapPolicy, reconcile, beforeAnswer: Math.round((restore + swapPolicy + reconcile) * 10) / 10, reinstall: reinstallMs, batch: BATCH, ...(REAL ? { longestBatchMs: Math.round(longestBatch) } : {}) })}\n`);
  service.stop();
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
