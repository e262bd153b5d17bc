// In-memory firewall for fast tests: it keeps entries with kernel-like
// timeouts and answers "would this inbound packet pass, and to where?".
// It is never the proof that a feature works; the nft backend is.

import { familyOf, prefixContains, type IpAddress } from '../net/address.js';
import type { Clock } from '../state/clock.js';
import type { StaticOpening } from '../domain/mapping.js';
import { entryKey, type FirewallBackend, type FirewallChange, type FirewallEntry } from './backend.js';
import { endedFlows } from './ended-flows.js';
import type { FlowSelector } from './flow-path.js';

export interface InboundPacket {
  protocol: number;
  source: IpAddress;
  sourcePort: number;
  destination: IpAddress;
  destinationPort: number;
}

export class MemoryFirewall implements FirewallBackend {
  readonly name = 'memory';
  private readonly entries = new Map<string, { entry: FirewallEntry; expiresAt: number; packets: number }>();
  /** Test hook: makes the next batches fail as a kernel error would. */
  failBatches = 0;
  batches = 0;
  /** The flows the committed batches asked to end (tests read it; there are no flows here). */
  readonly flowsEnded: FlowSelector[] = [];

  /** `nat44` false (a DS-Lite B4): an IPv4 entry admits packets to its internal endpoint, untranslated. */
  constructor(
    private readonly clock: Clock,
    private readonly o: { nat44?: boolean } = {},
  ) {}

  /** The static openings last set (the memory firewall routes by entries only). */
  statics: readonly StaticOpening[] = [];

  /** The upstream PCP server last guarded (nothing is enforced here; tests read it). */
  upstreamGuard: { address: IpAddress; port: number } | undefined;

  async start(): Promise<void> {}

  async guardUpstream(server: { address: IpAddress; port: number } | undefined): Promise<void> {
    this.upstreamGuard = server;
  }

  async setStatics(statics: readonly StaticOpening[]): Promise<{ added: number; removed: number; kept: number }> {
    const before = new Set(this.statics.map((s) => JSON.stringify(s)));
    const after = new Set(statics.map((s) => JSON.stringify(s)));
    this.statics = statics;
    const kept = [...after].filter((k) => before.has(k)).length;
    return { added: after.size - kept, removed: before.size - kept, kept };
  }
  async stop(): Promise<void> {}

  async apply(batch: readonly FirewallChange[]): Promise<boolean[]> {
    this.batches++;
    if (this.failBatches > 0) {
      this.failBatches--;
      return batch.map(() => false);
    }
    const now = this.clock.now();
    for (const c of batch) {
      const k = entryKey(c.entry);
      if (c.op === 'put') this.entries.set(k, { entry: c.entry, expiresAt: now + c.timeoutSeconds * 1000, packets: this.entries.get(k)?.packets ?? 0 });
      else this.entries.delete(k);
    }
    const results = batch.map(() => true);
    this.flowsEnded.push(...endedFlows(batch, results));
    return results;
  }

  async packets(entry: FirewallEntry): Promise<number | undefined> {
    this.expire();
    return this.entries.get(entryKey(entry))?.packets;
  }

  async packetCounts(entries: readonly FirewallEntry[]): Promise<Map<string, number>> {
    this.expire();
    const out = new Map<string, number>();
    for (const e of entries) {
      const held = this.entries.get(entryKey(e));
      if (held) out.set(entryKey(e), held.packets);
    }
    return out;
  }

  /** Live entries, as `nft list` would show them. */
  list(): FirewallEntry[] {
    this.expire();
    return [...this.entries.values()].map((v) => v.entry);
  }

  /** Where an unsolicited inbound packet would go, or undefined if dropped. */
  route(p: InboundPacket): { address: IpAddress; port: number } | undefined {
    this.expire();
    for (const held of this.entries.values()) {
      const entry = held.entry;
      if (entry.protocol !== p.protocol || entry.family !== familyOf(p.destination)) continue;
      const admitOnly = entry.family === 4 && this.o.nat44 === false;
      const at = admitOnly ? { address: entry.internalAddress, port: entry.internalPort } : { address: entry.externalAddress, port: entry.externalPort };
      if (at.address !== p.destination || at.port !== p.destinationPort) continue;
      const admitted =
        entry.filters.length === 0 ||
        entry.filters.some((f) => prefixContains(f.prefix, p.source) && (f.port === 0 || f.port === p.sourcePort));
      if (admitted) {
        held.packets++;
        return { address: entry.internalAddress, port: entry.internalPort };
      }
    }
    return undefined;
  }

  private expire(): void {
    const now = this.clock.now();
    for (const [k, v] of this.entries) if (v.expiresAt <= now) this.entries.delete(k);
  }
}
