// RFC 6887 §15: the mappings of a host whose DHCP lease ended are discarded.
// This finds whose: a mapped address whose lease has ended, or one whose
// lease left the lease file and that has no lease now. The file reports a
// loss once, so a lost address is remembered until its mappings are gone.

import type { IpAddress } from '../net/address.js';
import type { LeaseView } from './service-config.js';

export class LeaseEnds {
  /** Addresses whose lease left the lease file, while their mappings could not be removed yet. */
  private readonly lost = new Set<IpAddress>();

  /** The addresses among `mapped` and `lost` whose mappings must go at wall-clock `wall`. */
  due(view: LeaseView, mapped: Iterable<IpAddress>, lost: readonly IpAddress[], wall: number): Set<IpAddress> {
    const ended = new Set<IpAddress>();
    for (const a of mapped) {
      const end = view.leaseEnd(a);
      if (end !== undefined && end <= wall) ended.add(a);
    }
    for (const a of lost) this.lost.add(a);
    for (const a of this.lost) if (view.leaseEnd(a) === undefined) ended.add(a);
    this.lost.clear();
    return ended;
  }

  /** Their mappings could not be removed: they are due again at the next check. */
  retry(addresses: readonly IpAddress[]): void {
    for (const a of addresses) this.lost.add(a);
  }
}
