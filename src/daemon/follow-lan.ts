// Keeps the servers on the LAN's addresses: addresses added after start
// (SLAAC, a new prefix) are served within one poll, removed ones are no
// longer bound, and an address still waiting to be bound (tentative at
// start) is tried again at every poll until it is.

import type { AddressWatch } from '../net/address-watch.js';
import type { LocalAddress } from '../net/interfaces.js';

export interface LanServer {
  updateAddresses(lan: readonly LocalAddress[]): Promise<void>;
  /** Addresses still waiting to be bound. */
  waiting?(): string[];
}

/** Subscribes the servers to the watch. Rebinds run one at a time, the latest addresses winning. */
export function followLan(watch: AddressWatch, servers: readonly LanServer[]): void {
  let chain: Promise<void> = Promise.resolve();
  let queued = false;
  const rebind = (): Promise<void> => {
    if (queued) return chain;
    queued = true;
    const run = chain.then(async () => {
      queued = false;
      const lan = watch.lan();
      for (const s of servers) await s.updateAddresses(lan);
    });
    // A failure is the watch's to report; the next rebind still runs.
    chain = run.catch(() => undefined);
    return run;
  };
  watch.onLanChange(rebind);
  watch.onPoll(() => (servers.some((s) => (s.waiting?.() ?? []).length > 0) ? rebind() : undefined));
}
