// The sockets a server holds on the LAN's addresses, one (or one set) per
// address, following the addresses as they change: PCP/NAT-PMP, SSDP and
// UPnP's HTTP all bind this way, so a reply always leaves from the address
// the client reached and nothing is bound on the WAN side.
//
// An address the kernel does not let us bind yet (EADDRNOTAVAIL: still in
// duplicate address detection, as at boot, or already gone) waits, and is
// tried again at the next update; waiting() tells the daemon to make one.

import type { LocalAddress } from '../net/interfaces.js';
import type { Logger } from '../log.js';

export interface LanSocketsConfig<B extends { readonly local: LocalAddress }> {
  /** Which server, for the log lines: 'pcp+natpmp', 'ssdp', 'upnp-http'. */
  server: string;
  port: number;
  /** Which of the LAN's addresses this server serves (default: every one). */
  select?(lan: readonly LocalAddress[]): readonly LocalAddress[];
  /** Binds `local`; throws the kernel's error if it cannot. */
  open(local: LocalAddress): Promise<B>;
  /** Lets go of what open() made. */
  close(bound: B): Promise<void>;
  /** The event logged when an address cannot be bound for any other reason. */
  failedEvent: string;
  log: Logger;
}

export class LanSockets<B extends { readonly local: LocalAddress }> {
  private readonly held: B[] = [];
  /** Addresses that could not be bound yet. */
  private readonly unbound = new Set<string>();
  private closed = false;

  constructor(private readonly cfg: LanSocketsConfig<B>) {}

  /** What is bound now. */
  get bound(): readonly B[] {
    return this.held;
  }

  /** Addresses still waiting to be bound. */
  waiting(): string[] {
    return [...this.unbound];
  }

  /**
   * The first binding. With `fatal`, a failure other than a waiting address
   * (the port is taken) stops the start with the reason; otherwise it is
   * logged and the other addresses are served.
   */
  async start(lan: readonly LocalAddress[], { fatal }: { fatal: boolean }): Promise<B[]> {
    const added = await this.follow(lan, fatal);
    this.cfg.log.info({ event: 'listening', server: this.cfg.server, port: this.cfg.port, addresses: added.map((b) => b.local.bindAddress), waiting: this.waiting() });
    return added;
  }

  /**
   * The LAN's addresses changed (SLAAC, a new prefix, an admin), or one is
   * still waiting: serve the new ones, stop serving the gone ones. Returns
   * what was bound now.
   */
  async update(lan: readonly LocalAddress[]): Promise<B[]> {
    const added = await this.follow(lan, false);
    if (added.length) this.cfg.log.info({ event: 'listening', server: this.cfg.server, port: this.cfg.port, addresses: added.map((b) => b.local.bindAddress) });
    return added;
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.unbound.clear();
    await Promise.all(this.held.splice(0).map((b) => this.cfg.close(b).catch(() => undefined)));
  }

  private async follow(lan: readonly LocalAddress[], fatal: boolean): Promise<B[]> {
    const want = this.cfg.select ? this.cfg.select(lan) : lan;
    const wanted = new Set(want.map((l) => l.bindAddress));
    for (const a of [...this.unbound]) if (!wanted.has(a)) this.unbound.delete(a);
    for (const b of [...this.held]) {
      if (wanted.has(b.local.bindAddress)) continue;
      this.held.splice(this.held.indexOf(b), 1);
      // Not waited for: a listener's close waits for its connections to end.
      void this.cfg.close(b).catch(() => undefined);
      this.cfg.log.info({ event: 'stopped-listening', server: this.cfg.server, address: b.local.bindAddress });
    }
    const added: B[] = [];
    for (const local of want) {
      if (this.closed || this.held.some((b) => b.local.bindAddress === local.bindAddress)) continue;
      try {
        const b = await this.cfg.open(local);
        if (this.closed) {
          await this.cfg.close(b).catch(() => undefined);
          continue;
        }
        this.unbound.delete(local.bindAddress);
        this.held.push(b);
        added.push(b);
      } catch (err) {
        this.failed(local, err as NodeJS.ErrnoException, fatal);
      }
    }
    return added;
  }

  private failed(local: LocalAddress, err: NodeJS.ErrnoException, fatal: boolean): void {
    if (err.code === 'EADDRNOTAVAIL') {
      // Said once per address, not at every retry.
      if (!this.unbound.has(local.bindAddress)) {
        this.cfg.log.warn({ event: 'bind-deferred', server: this.cfg.server, address: local.bindAddress, detail: `${err.message}: the address is not usable yet (duplicate address detection?); retrying` });
      }
      this.unbound.add(local.bindAddress);
      return;
    }
    if (fatal) throw new Error(`cannot bind ${this.cfg.server} on ${local.bindAddress} port ${this.cfg.port}: ${err.message}`);
    this.cfg.log.warn({ event: this.cfg.failedEvent, server: this.cfg.server, address: local.bindAddress, port: this.cfg.port, error: err.message });
  }
}
