// The in-process path of conntrack.ts: ctnetlink from the daemon
// (ctnetlink.ts), no process, no text.
//
// A run's selectors of one family and protocol are found with one dump whose filter the
// kernel applies (CTA_FILTER): the protocol always — under a UPnP load the
// table is mostly TCP TIME_WAIT entries of the HTTP connections, which a UDP
// filter never sees in user space — and the address (and port) too when the
// run's selectors of that protocol share one. Not a dump per selector: every
// dump walks the whole hash table in the kernel whatever it returns (~15 ms of
// CPU on this 24 GiB test machine's 262 144 buckets, with 1 entry or 20 000;
// a router's table has far fewer buckets), so walks are what a run counts.
// Flows read are matched here; each match is deleted by its original tuple
// and id, so a newer flow that took the tuple meanwhile stays.
//
// A protocol-wide dump that outgrows MAX_FLOWS is redone as one dump per
// selector address (at most MAX_NARROW_DUMPS): each returns only that
// address's flows.
//
// IPv6 flows are never narrowed by address in the kernel: its IPv6 address
// comparison in CTA_FILTER is inverted (ctnetlink_filter_match_tuple keeps a
// flow whose address differs; seen on 6.18 in the lab: a filter on the
// reply's source returned every flow but the one from that source). Their
// dumps filter on protocol and port, and the addresses are matched here,
// which is right whether or not a kernel has the fault.

import type { Logger } from '../log.js';
import { familyOf, type Family } from '../net/address.js';
import type { Flow, TupleFilter } from './ctnetlink-codec.js';
import { Ctnetlink } from './ctnetlink.js';
import { selectorKey as key, type FlowPath, type FlowSelector } from './flow-path.js';

/** Dumps narrowed to one address, per protocol and run, after a protocol-wide one was cut short. */
const MAX_NARROW_DUMPS = 16;

export class NetlinkPath implements FlowPath {
  readonly name = 'netlink';
  /** Dumps asked for and flows deleted (tests, the log). */
  dumps = 0;
  deleted = 0;
  private truncatedSaid = false;

  constructor(
    private readonly ct: Ctnetlink,
    private readonly log: Logger,
  ) {}

  /**
   * Whether this kernel filters dumps: one dump whose filter matches no flow
   * (source port 0). A kernel older than 5.8 ignores CTA_FILTER and answers
   * with every flow; so does one that took it, if a flow has port 0, which no
   * UDP or TCP flow has. Throws or returns a reason when the path is unusable.
   */
  async probe(): Promise<string | undefined> {
    await this.ct.ready();
    const r = await this.ct.dump({ direction: 'orig', family: 4, protocol: 17, src: '0.0.0.0' as Flow['orig']['src'], srcPort: 0 });
    if (!r.ok) return r.detail;
    if (r.value.flows.some((f) => f.protocol !== 17 || f.orig.srcPort !== 0)) return 'the kernel does not filter dumps (CTA_FILTER needs Linux 5.8)';
    return undefined;
  }

  async forget(selectors: readonly FlowSelector[]): Promise<boolean> {
    // One group per family and protocol: a dump is of one family (nfgenmsg) and filters on one protocol.
    const groups = new Map<string, { family: Family; protocol: number; group: FlowSelector[] }>();
    for (const s of selectors) {
      const family = familyOf(s.address);
      const g = groups.get(`${family} ${s.protocol}`);
      if (g) g.group.push(s);
      else groups.set(`${family} ${s.protocol}`, { family, protocol: s.protocol, group: [s] });
    }
    const doomed = new Map<string, Flow>();
    for (const { family, protocol, group } of groups.values()) {
      const wanted = new Set(group.map((s) => key(s.by, protocol, s.address, s.port)));
      const take = (flows: readonly Flow[]) => {
        for (const f of flows) {
          if (f.protocol !== protocol || familyOf(f.orig.src) !== family) continue;
          if (
            wanted.has(key('source', protocol, f.orig.src, f.orig.srcPort)) ||
            wanted.has(key('translated-to', protocol, f.reply.dst, f.reply.dstPort)) ||
            wanted.has(key('destination', protocol, f.reply.src, f.reply.srcPort))
          ) {
            doomed.set(flowKey(f), f);
          }
        }
      };
      const first = await this.dump(filterFor(family, protocol, group));
      if (!first) return false;
      take(first.flows);
      if (first.complete) continue;
      if (family === 6) {
        this.truncated(`more than the IPv6 flows read for protocol ${protocol}`);
        continue;
      }
      // Too many flows of the protocol to read them all: one address at a time.
      const narrow = [...new Map(group.map((s) => [`${s.by} ${s.address}`, s])).values()];
      for (const s of narrow.slice(0, MAX_NARROW_DUMPS)) {
        const r = await this.dump(filterFor(family, protocol, group.filter((g) => g.by === s.by && g.address === s.address)));
        if (!r) return false;
        take(r.flows);
        if (!r.complete) this.truncated(`more than the flows read for ${s.by} ${s.address}`);
      }
      if (narrow.length > MAX_NARROW_DUMPS) this.truncated(`${narrow.length - MAX_NARROW_DUMPS} addresses not looked at in this run`);
    }
    if (doomed.size === 0) return true;
    const r = await this.ct.remove([...doomed.values()]);
    if (!r.ok) {
      this.log.warn({ event: 'conntrack-failed', path: this.name, error: r.detail });
      return false;
    }
    this.deleted += r.value;
    return true;
  }

  private async dump(filter: TupleFilter): Promise<{ flows: Flow[]; complete: boolean } | undefined> {
    this.dumps++;
    const r = await this.ct.dump(filter);
    if (r.ok) return r.value;
    this.log.warn({ event: 'conntrack-failed', path: this.name, error: r.detail });
    return undefined;
  }

  private truncated(detail: string): void {
    if (this.truncatedSaid) return;
    this.truncatedSaid = true;
    this.log.warn({ event: 'conntrack-truncated', detail: `some flows were not looked at (${detail}): those already running may keep an old translation` });
  }
}

/**
 * The kernel's filter for one family's and protocol's selectors: narrowed to
 * their address (and port) when they share one kind and one address, else
 * the protocol's flows, matched here.
 */
export function filterFor(family: Family, protocol: number, group: readonly FlowSelector[]): TupleFilter {
  const first = group[0];
  if (!first || group.some((s) => s.by !== first.by || (family === 4 && s.address !== first.address))) return { direction: 'orig', family, protocol };
  const port = group.every((s) => s.port === first.port) ? first.port : undefined;
  // No IPv6 address in the kernel's filter (see above): the port, if the selectors share one.
  if (family === 6) {
    if (port === undefined) return { direction: 'orig', family, protocol };
    return first.by === 'source' ? { direction: 'orig', family, protocol, srcPort: port } : first.by === 'translated-to' ? { direction: 'reply', family, protocol, dstPort: port } : { direction: 'reply', family, protocol, srcPort: port };
  }
  switch (first.by) {
    case 'source':
      return { direction: 'orig', family, protocol, src: first.address, ...(port !== undefined ? { srcPort: port } : {}) };
    case 'translated-to':
      return { direction: 'reply', family, protocol, dst: first.address, ...(port !== undefined ? { dstPort: port } : {}) };
    case 'destination':
      return { direction: 'reply', family, protocol, src: first.address, ...(port !== undefined ? { srcPort: port } : {}) };
  }
}
const flowKey = (f: Flow) => `${f.protocol} ${f.orig.src} ${f.orig.srcPort} ${f.orig.dst} ${f.orig.dstPort} ${f.id ?? ''} ${f.zone ?? ''}`;
