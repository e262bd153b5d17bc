// The router's addresses, watched: one cheap read of the interface list every
// 2 s gives the router's own addresses (never a mapping target: one added
// later must not become one), the LAN's addresses (served as they come and
// go) and, unless given on the command line, the WAN's IPv4 address (the
// external address): the first WAN interface's, in the admin's order, that
// has one, followed across all of them (a DS-Lite softwire that comes up
// after the native link). Whoever cares subscribes; the watch only tells.

import type { Logger } from '../log.js';
import type { IpAddress } from './address.js';
import { lanAddresses, routerAddresses, type InterfaceReader, type LocalAddress } from './interfaces.js';
import { ipv4Wan } from './wan-address.js';

/** How often the interface list is read again. */
const ADDRESS_POLL_MS = 2000;

export interface AddressWatchConfig {
  lan: readonly string[];
  /** The WAN zone's interfaces, in the admin's order. */
  wans: readonly string[];
  /** The external address given on the command line: the WAN's is then not looked at. */
  externalIp?: IpAddress;
  read: InterfaceReader;
  log: Logger;
}

type Listener<A extends unknown[]> = (...args: A) => Promise<void> | void;

export class AddressWatch {
  private lanNow: readonly LocalAddress[];
  private routerNow: Set<IpAddress>;
  private externalNow: IpAddress | undefined;
  /** The WAN interface that carries IPv4 (whose address is the external one unless given). */
  private ipv4WanNow: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = {
    lan: [] as Listener<[readonly LocalAddress[]]>[],
    external: [] as Listener<[IpAddress]>[],
    poll: [] as Listener<[]>[],
  };

  /** Reads the interface list now; start() reads it again every ADDRESS_POLL_MS. */
  constructor(private readonly cfg: AddressWatchConfig) {
    const { log } = cfg;
    this.lanNow = lanAddresses(cfg.lan, cfg.read);
    this.routerNow = routerAddresses(cfg.read);
    const v4 = ipv4Wan(cfg.wans, cfg.read);
    this.ipv4WanNow = v4?.interface;
    this.externalNow = cfg.externalIp ?? v4?.address;
    // A LAN that is down or unnumbered at boot is served as soon as it has addresses.
    if (this.lanNow.length === 0) log.warn({ event: 'lan-addresses', detail: `${cfg.lan.join(', ')} have no addresses yet: serving as soon as they do` });
    if (!this.externalNow) log.warn({ event: 'external-address', detail: `${cfg.wans.join(', ')} ${cfg.wans.length > 1 ? 'have' : 'has'} no IPv4 address yet: IPv4 requests get NETWORK_FAILURE` });
    else if (!cfg.externalIp) log.info({ event: 'external-address', address: this.externalNow, wan: this.ipv4WanNow, detail: `the external IPv4 address is ${this.ipv4WanNow}'s` });
  }

  /** Polls from now on, telling the listeners subscribed by then (and later). */
  start(): void {
    this.timer ??= setInterval(() => this.poll(), ADDRESS_POLL_MS);
    this.timer.unref();
  }

  /** The LAN's addresses as last read. */
  lan(): readonly LocalAddress[] {
    return this.lanNow;
  }

  externalIPv4(): IpAddress | undefined {
    return this.externalNow;
  }

  /** The WAN interface with an IPv4 address as last read (the first in the admin's order), if any. */
  ipv4Wan(): string | undefined {
    return this.ipv4WanNow;
  }

  isRouterAddress(a: IpAddress): boolean {
    return this.routerNow.has(a);
  }

  /** The LAN's addresses changed (SLAAC, a new prefix, an admin). */
  onLanChange(fn: Listener<[readonly LocalAddress[]]>): void {
    this.listeners.lan.push(fn);
  }

  /** The WAN's IPv4 address changed to a new one (not to none). */
  onExternalChange(fn: Listener<[IpAddress]>): void {
    this.listeners.external.push(fn);
  }

  /** Every poll, changed or not, after the change listeners were called. */
  onPoll(fn: Listener<[]>): void {
    this.listeners.poll.push(fn);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private poll(): void {
    const { cfg } = this;
    // One read of the interface list serves all three questions.
    const now = cfg.read();
    const snapshot = () => now;
    this.routerNow = routerAddresses(snapshot);
    const lan = lanAddresses(cfg.lan, snapshot);
    if (lanKey(lan) !== lanKey(this.lanNow)) {
      this.lanNow = lan;
      cfg.log.info({ event: 'lan-addresses', addresses: lan.map((l) => l.bindAddress) });
      this.tell(this.listeners.lan, [lan], 'lan-addresses-failed');
    }
    const v4 = ipv4Wan(cfg.wans, snapshot);
    const wan = cfg.externalIp ?? v4?.address;
    if (v4?.interface !== this.ipv4WanNow) cfg.log.info({ event: 'ipv4-wan', from: this.ipv4WanNow ?? null, to: v4?.interface ?? null });
    this.ipv4WanNow = v4?.interface;
    if (wan !== this.externalNow) {
      cfg.log.warn({ event: 'external-address', from: this.externalNow ?? null, to: wan ?? null, ...(cfg.externalIp ? {} : { wan: v4?.interface ?? null }) });
      this.externalNow = wan;
      if (wan) this.tell(this.listeners.external, [wan], 'external-address-failed');
    }
    this.tell(this.listeners.poll, [], 'lan-addresses-failed');
  }

  private tell<A extends unknown[]>(listeners: readonly Listener<A>[], args: A, failed: string): void {
    for (const fn of listeners) {
      Promise.resolve()
        .then(() => fn(...args))
        .catch((err: unknown) => this.cfg.log.error({ event: failed, error: (err as Error).message }));
    }
  }
}

function lanKey(lan: readonly LocalAddress[]): string {
  return lan.map((l) => `${l.bindAddress}/${l.prefix.length}`).sort().join(',');
}
