// The daemon's side of the firewall: which backend, starting it with the
// static openings, making it match the service's table at start, and
// repairing it when someone else changes it (an OpenWrt firewall reload or
// an admin's `nft flush` empties our chains and sets behind our back, and
// the incumbent never notices).

import { ConfigError, type Config } from '../config.js';
import type { FirewallBackend, FirewallEntry } from '../firewall/backend.js';
import { MemoryFirewall } from '../firewall/memory.js';
import { NftBackend, NftSetupError } from '../firewall/nft/backend.js';
import { chooseRunner } from '../firewall/nft/choose.js';
import type { Logger } from '../log.js';
import type { StaticOpening } from '../domain/mapping.js';
import type { MappingService } from '../service/mapping-service.js';
import type { Clock } from '../state/clock.js';
import type { Telemetry } from '../telemetry.js';
import type { LanGuard } from './lan-guard.js';

/** `moreTcp`: further TCP ports of ours the kernel keeps to the LAN (metrics on a LAN address). */
export function makeBackend(cfg: Config, clock: Clock, log: Logger, moreTcp: readonly number[] = []): FirewallBackend {
  if (cfg.backend === 'memory') {
    log.warn({ event: 'backend', backend: 'memory', detail: 'nothing is enforced in the kernel: for tests and dry runs only' });
    return new MemoryFirewall(clock, { nat44: cfg.nat44 });
  }
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(cfg.nft.table)) throw new ConfigError(`--nft-table '${cfg.nft.table}' is not a valid table name`);
  return new NftBackend(
    { family: 'inet', table: cfg.nft.table, embedded: cfg.nft.embed },
    {
      wans: cfg.wans,
      lan: cfg.lan,
      mark: cfg.nft.mark,
      nat44: cfg.nat44,
      deviceUdpRate: cfg.deviceRateLimit,
      guarded: cfg.upnp.enabled ? { udp: [cfg.port, cfg.upnp.ssdpPort], tcp: [cfg.upnp.httpPort, ...moreTcp] } : { udp: [cfg.port], tcp: [...moreTcp] },
    },
    log,
    chooseRunner(cfg.nft.path, log),
  );
}

/** Starts the firewall with the admin's static openings in place; an unusable nftables is a configuration error. */
export async function startFirewall(firewall: FirewallBackend, statics: readonly StaticOpening[]): Promise<void> {
  try {
    // Recorded first so that start() installs them with everything else.
    await firewall.setStatics(statics);
    await firewall.start();
  } catch (err) {
    throw err instanceof NftSetupError ? new ConfigError(`nftables: ${err.message}`) : err;
  }
}

/**
 * Entries put back per kernel transaction while the daemon already serves:
 * a request's commit waits for at most one such batch, not for one
 * transaction of 100 000. Small batches are also the faster whole: a
 * transaction's cost grows faster than its size (bench/startup-restore.ts
 * with real nftables, 100 000 mappings: all back in 1.2-1.4 s at 256 a
 * batch, 2.1 s at 2048 with IPv6 alone, 3.0-3.9 s at 1024 and 2048 with one
 * in ten IPv4; the longest batch 10 ms at 256, 50-130 ms at 2048).
 */
export const REINSTALL_BATCH = 256;

/** What is left to put back after start, in bounded batches while serving. */
export interface Reinstall {
  readonly entries: number;
  /** Puts them back; `stopped` ends it early (the daemon is stopping). */
  run(stopped: () => boolean): Promise<void>;
}

const NOTHING_LEFT: Reinstall = { entries: 0, run: async () => undefined };

/**
 * Makes the firewall hold what the restored table holds. A firewall that
 * reconciles removes at once what no mapping owns and recreates missing
 * objects; the entries it lacks are returned to be put back by `run`, in
 * batches of REINSTALL_BATCH, each read afresh from the table under the
 * commit queue's lock: a mapping removed, renewed or moved meanwhile is put
 * back as it is then or not at all, never as it was at start. Requests are
 * answered meanwhile; each goes to the kernel on its own (a renewal of a
 * mapping not yet back puts it back), so nothing is answered that the kernel
 * will not hold. A firewall without reconcile starts empty and is given
 * every entry at once.
 */
export async function syncFirewall(service: MappingService, firewall: FirewallBackend, telemetry: Telemetry, log: Logger, batchSize = REINSTALL_BATCH): Promise<Reinstall> {
  if (!firewall.reconcile) {
    await service.withDesiredEntries((desired) => firewall.apply(desired.map((d) => ({ op: 'put' as const, entry: d.entry, timeoutSeconds: d.timeoutSeconds }))));
    return NOTHING_LEFT;
  }
  const reconcile = firewall.reconcile.bind(firewall);
  let keys: string[] = [];
  const r = await service.withDesiredEntries(async (desired) => {
    const out = await reconcile(desired, { defer: true });
    keys = keysOf(out.deferred ?? [], desired);
    return out;
  });
  // One repair counted for the whole start: this step's, the batches', or both.
  const repairedNow = r.removed > 0 || r.recreated || r.added > 0;
  if (repairedNow) log.warn({ event: 'nft-repaired', why: 'start', added: r.added, removed: r.removed, recreated: r.recreated });
  // The nft-reinstalled line comes even when nothing was missing: whoever
  // waits for the kernel to be complete (tests, the benchmark) waits for it.
  return {
    entries: keys.length,
    async run(stopped) {
      const started = performance.now();
      let batches = 0;
      let put = 0;
      let refused = 0;
      for (let i = 0; i < keys.length && !stopped(); i += batchSize) {
        const took = await service.withDesiredEntries(async (desired) => {
          if (desired.length === 0) return [];
          return firewall.apply(desired.map((d) => ({ op: 'put' as const, entry: d.entry, timeoutSeconds: d.timeoutSeconds })));
        }, keys.slice(i, i + batchSize));
        batches++;
        put += took.filter(Boolean).length;
        refused += took.filter((ok) => !ok).length;
      }
      // Done: the keys (one per mapping restored) need not outlive it.
      keys = [];
      const seconds = Math.round(performance.now() - started) / 1000;
      const line = { event: 'nft-reinstalled', entries: put, refused, batches, batchSize, seconds, stopped: stopped() };
      if (refused) log.error({ ...line, detail: 'the kernel refused some entries: the next reconciliation tries again' });
      else log.info(line);
      if (repairedNow || put > 0) telemetry.repaired();
    },
  };
}

/**
 * The mapping keys of the deferred entries. The backend defers them in the
 * order it was given them, so one walk pairs them without a map of 100 000
 * entries; an order it does not keep falls back to the map.
 */
function keysOf(deferred: readonly FirewallEntry[], desired: readonly { key: string; entry: FirewallEntry }[]): string[] {
  const keys: string[] = [];
  for (const d of desired) {
    if (keys.length === deferred.length) break;
    if (d.entry === deferred[keys.length]) keys.push(d.key);
  }
  if (keys.length === deferred.length) return keys;
  const byEntry = new Map(desired.map((d) => [d.entry, d.key]));
  return deferred.flatMap((e) => byEntry.get(e) ?? []);
}

/**
 * Every `seconds`, the cheap check; damage found closes the doors (the guard
 * may be gone with it) until it is repaired. Returns the stop, or undefined
 * for a firewall that cannot be checked.
 */
export function keepIntact(service: MappingService, firewall: FirewallBackend, guard: LanGuard, seconds: number, telemetry: Telemetry, log: Logger): (() => void) | undefined {
  if (!firewall.intact || !firewall.reconcile || seconds <= 0) return undefined;
  const intact = firewall.intact.bind(firewall);
  const reconcile = firewall.reconcile.bind(firewall);
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    intact()
      .then(async (ok) => {
        if (!ok) {
          // Closed from the moment the damage is seen until it is repaired.
          await guard.check();
          await repair(service, reconcile, telemetry, log, 'objects or elements missing');
        }
        await guard.check();
      })
      .catch((err: unknown) => log.error({ event: 'nft-reconcile-failed', error: (err as Error).message }))
      .finally(() => (busy = false));
  }, seconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}

async function repair(service: MappingService, reconcile: NonNullable<FirewallBackend['reconcile']>, telemetry: Telemetry, log: Logger, why: string): Promise<void> {
  const r = await service.withDesiredEntries((desired) => reconcile(desired));
  if (r.added || r.removed || r.recreated) {
    log.warn({ event: 'nft-repaired', why, ...r });
    telemetry.repaired();
  }
}
