// Device openings follow their device: every FOLLOW_EVERY_MS the policy
// keeper resolves the device openings again against the neighbour table as
// the daemon keeps it (net/neighbours.ts: followed through `ip monitor neigh`
// and read whole every minute as a safety net, or polled when the monitor
// cannot run — then `refresh` reads it, at most once per its freshness
// period whoever asks). Nothing is touched when no address moved; when one
// did, only its rules change (the keeper diffs, the firewall diffs by rule
// id), and the log says what opened and what closed.
//
// Still a tick, not one resolution per announcement: a busy LAN can announce
// without end, and a tick is bounded in cost whatever it says. An address a
// device gains is opened within one tick of the router's first exchange with
// it; one it loses closes when the kernel drops the neighbour entry, or the
// entry names another link-layer address (another host took the address
// over: the opening does not go with it).

import type { FirewallBackend } from '../firewall/backend.js';
import type { Logger } from '../log.js';
import type { DhcpLease, DhcpLeases } from '../net/dhcp-leases.js';
import type { Neighbour, Neighbours } from '../net/neighbours.js';
import { sightingOf, type DeviceSighting } from '../policy/device-openings.js';
import type { MappingService } from '../service/mapping-service.js';
import type { PolicyKeeper } from './policy-keeper.js';

export const FOLLOW_EVERY_MS = 3000;

/** MACs remembered as using their EUI-64 identifier: the policy file holds at most 1000 static openings. */
const MAX_REMEMBERED = 1024;
/**
 * How long one grouping of the neighbour table and the leases by MAC serves:
 * one resolution of every device opening, well under the table's own
 * freshness, so a new read is never missed.
 */
const INDEX_MS = 100;

/** What the neighbour table and the DHCP leases say of each device now. */
export class DeviceLocator {
  /**
   * Devices seen using their EUI-64 identifier. Remembered while the daemon
   * runs, so the identifier's mask stays open across a renumbering even after
   * the old address left the table: it was shown to be stable, and it is the
   * only thing that reaches the device before it is seen at its new address.
   */
  private readonly stableIdentifier = new Set<string>();
  private index: { at: number; neighbours: Map<string, Neighbour[]>; leases: Map<string, DhcpLease[]> } | undefined;

  constructor(
    private readonly neighbours: Neighbours,
    private readonly lan: readonly string[],
    private readonly leases: DhcpLeases | undefined,
  ) {}

  /** As the neighbour table was last read (refresh it first for a current answer). */
  sighting(mac: string): DeviceSighting {
    const index = this.grouped();
    const seen = sightingOf(mac, index.neighbours.get(mac) ?? [], index.leases.get(mac) ?? [], Date.now() / 1000);
    if (seen.eui64) {
      this.stableIdentifier.delete(mac);
      this.stableIdentifier.add(mac);
      if (this.stableIdentifier.size > MAX_REMEMBERED) this.stableIdentifier.delete(this.stableIdentifier.values().next().value as string);
    }
    return this.stableIdentifier.has(mac) ? { ...seen, eui64: true } : seen;
  }

  /** The table and the leases by MAC: every device opening is resolved at once, each from its own few rows. */
  private grouped(): NonNullable<DeviceLocator['index']> {
    const now = performance.now();
    if (this.index && now - this.index.at < INDEX_MS) return this.index;
    const lan = new Set(this.lan);
    const neighbours = new Map<string, Neighbour[]>();
    const put = <T>(m: Map<string, T[]>, k: string, v: T) => (m.get(k) ?? m.set(k, []).get(k))?.push(v);
    for (const n of this.neighbours.entries()) if (lan.has(n.interface)) put(neighbours, n.lladdr, n);
    const leases = new Map<string, DhcpLease[]>();
    for (const l of this.leases?.leases() ?? []) if (l.mac !== undefined) put(leases, l.mac, l);
    this.index = { at: now, neighbours, leases };
    return this.index;
  }
}

/** Starts following; returns the stop. */
export function followDevices(policy: PolicyKeeper, neighbours: Neighbours, service: MappingService, firewall: FirewallBackend, log: Logger): () => void {
  let running = false;
  const tick = async (): Promise<void> => {
    if (running || !policy.followsDevices()) return;
    running = true;
    try {
      await neighbours.refresh();
      await policy.devicesMoved(service, firewall);
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => tick().catch((err: unknown) => log.error({ event: 'device-openings-failed', error: (err as Error).message })), FOLLOW_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
