// The daemon's side of the firewall: which backend, starting it with the
// static openings, making it match the service's table at start, and
// repairing it when someone else changes it (an OpenWrt firewall reload or
// an admin's `nft flush` empties our chains and sets behind our back, and
// the incumbent never notices).

import { ConfigError, type Config } from '../config.js';
import type { FirewallBackend } from '../firewall/backend.js';
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
    return new MemoryFirewall(clock);
  }
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(cfg.nft.table)) throw new ConfigError(`--nft-table '${cfg.nft.table}' is not a valid table name`);
  return new NftBackend(
    { family: 'inet', table: cfg.nft.table, embedded: cfg.nft.embed },
    {
      wan: cfg.wan,
      lan: cfg.lan,
      mark: cfg.nft.mark,
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
 * Makes the firewall hold what the restored table holds: a firewall that
 * reconciles keeps what is right and repairs the rest (missing entries added
 * with what they have left, entries no mapping owns removed); any other
 * starts empty and is given every entry.
 */
export async function syncFirewall(service: MappingService, firewall: FirewallBackend, telemetry: Telemetry, log: Logger): Promise<void> {
  if (firewall.reconcile) await repair(service, firewall.reconcile.bind(firewall), telemetry, log, 'start');
  else await service.withDesiredEntries((desired) => firewall.apply(desired.map((d) => ({ op: 'put' as const, entry: d.entry, timeoutSeconds: d.timeoutSeconds }))));
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
