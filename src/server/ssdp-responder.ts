// SSDP on the LAN (UDP 1900): answers M-SEARCH, multicasts ssdp:alive at
// start and periodically, ssdp:byebye at stop.
//
// Nothing listens on the WAN: the multicast sockets are bound to the group
// addresses themselves and join them only on LAN interfaces (the kernel drops
// group traffic arriving where the group was not joined), and the unicast
// sockets are bound to the LAN addresses. Whether a search comes from the
// LAN is the daemon's one rule (src/net/lan-source.ts): silence while the
// kernel guard is not confirmed, and a link-local searcher must carry the
// socket's own link as its zone. What a source can make us send is bounded
// per second (no amplification: see REPLY_BYTES_PER_SECOND), charged when the
// search arrives, and the replies waiting for their moment are bounded per
// source and in all (see PENDING_REPLIES).

import { createSocket, type Socket } from 'node:dgram';
import { isLinkLocal, prefixContains, type IpAddress } from '../net/address.js';
import type { LocalAddress } from '../net/interfaces.js';
import type { LanSources } from '../net/lan-source.js';
import type { Logger } from '../log.js';
import type { DeviceNode } from '../protocols/upnp/device-tree.js';
import {
  SSDP_MULTICAST_V4,
  SSDP_MULTICAST_V6_LINK,
  SSDP_PORT,
  buildNotify,
  buildSearchResponse,
  notificationSet,
  parseSsdp,
  searchAnswers,
  validateSearch,
} from '../protocols/upnp/ssdp.js';
import { FairShare, requesterOf, shareOf } from './fair-share.js';
import { LanSockets } from './lan-sockets.js';
import { RateLimiter } from '../net/rate-limit.js';

export interface SsdpConfig {
  port: number;
  /** CACHE-CONTROL max-age (UDA: at least 1800 recommended). */
  maxAge: number;
  server: string;
  bootId: number;
  configId: number;
  /** The LOCATION for a host on `local`'s link. */
  location(local: LocalAddress): string;
  /** Which tree to advertise and answer from (IGD:2; searches for :1 are answered from it with the version echoed). */
  tree: DeviceNode;
}

/**
 * Per source, bytes of answers per second. A full ssdp:all answer is ten
 * datagrams of ~350 octets; the budget allows about two of those a second,
 * and a source cannot make us send more than that whatever it sends.
 */
const REPLY_BYTES_PER_SECOND = 8 * 1024;
/**
 * Replies to multicast searches waiting for their moment in [0, MX] (each a
 * timer and a datagram in memory). A search that would take its searcher
 * over its share is dropped whole: searchers repeat (UDA 1.1 §1.3.2). 20 per
 * source is two ssdp:all, or twenty searches for one target each.
 */
const PENDING_REPLIES = shareOf(512, 20);
/**
 * Searches per second a source may have looked at at all, charged on arrival
 * before anything is parsed or built: a discovery is a handful of searches,
 * and a flood costs a counter, not a parse and ten replies built to be
 * dropped.
 */
const SEARCHES_PER_SECOND = 10;
/** Multicast rounds: ssdp:alive this many times, this far apart (UDA: more than once, not more than 3). */
const ALIVE_REPEATS = 2;
const ALIVE_SPACING_MS = 200;

interface Bound {
  local: LocalAddress;
  unicast: Socket;
  multicast: Socket | undefined;
}

export class SsdpServer {
  private readonly sockets: LanSockets<Bound>;
  private readonly budget: RateLimiter;
  private readonly arrivals: RateLimiter;
  private timers = new Set<NodeJS.Timeout>();
  /** Delayed replies, each with the slot it holds. */
  private readonly replyTimers = new Map<NodeJS.Timeout, () => void>();
  private readonly pending = new FairShare(PENDING_REPLIES);
  private closed = false;

  constructor(
    private readonly cfg: SsdpConfig,
    private lan: readonly LocalAddress[],
    private readonly sources: LanSources,
    private readonly log: Logger,
  ) {
    const hostOf = (s: string) => this.sources.hostOf(s);
    // One token per byte.
    this.budget = new RateLimiter(REPLY_BYTES_PER_SECOND, REPLY_BYTES_PER_SECOND * 2, undefined, undefined, hostOf);
    this.arrivals = new RateLimiter(SEARCHES_PER_SECOND, SEARCHES_PER_SECOND * 2, undefined, undefined, hostOf);
    this.sockets = new LanSockets({
      server: 'ssdp',
      port: cfg.port,
      select: servedAddresses,
      open: (local) => this.bind(local),
      close: async (b) => {
        b.unicast.close();
        b.multicast?.close();
      },
      failedEvent: 'ssdp-bind-failed',
      log,
    });
  }

  private get bound(): readonly Bound[] {
    return this.sockets.bound;
  }

  async start(): Promise<void> {
    await this.joinAndAnnounce(await this.sockets.start(this.lan, { fatal: false }));
    // Re-advertise before half of max-age is over, with jitter (UDA 1.1 §1.2.2).
    const again = () => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        if (this.closed) return;
        this.advertise('ssdp:alive');
        again();
      }, (this.cfg.maxAge / 3) * 1000 * (0.8 + Math.random() * 0.4));
      t.unref();
      this.timers.add(t);
    };
    again();
  }

  private async bind(local: LocalAddress): Promise<Bound> {
    const v6 = local.family === 6;
    const unicast = createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: true, ipv6Only: v6 });
    await new Promise<void>((resolve, reject) => {
      unicast.once('error', reject);
      unicast.bind(this.cfg.port, local.bindAddress, () => resolve());
    });
    unicast.on('error', (err) => this.log.warn({ event: 'ssdp-socket-error', address: local.bindAddress, error: err.message }));
    unicast.on('message', (msg, rinfo) => this.onMessage(local, msg, rinfo.address, rinfo.port, false));
    unicast.setMulticastTTL(2);
    if (v6) unicast.setMulticastInterface(`::%${local.interface}`);
    else unicast.setMulticastInterface(local.address);
    return { local, unicast, multicast: undefined };
  }

  /** The group socket of an interface and family hangs off one of its addresses. */
  private async join(b: Bound): Promise<void> {
    const { local } = b;
    const v6 = local.family === 6;
    const group = v6 ? `${SSDP_MULTICAST_V6_LINK.toLowerCase()}%${local.interface}` : SSDP_MULTICAST_V4;
    const multicast = createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: true, ipv6Only: v6 });
    try {
      await new Promise<void>((resolve, reject) => {
        multicast.once('error', reject);
        multicast.bind(this.cfg.port, group, () => resolve());
      });
      multicast.addMembership(v6 ? SSDP_MULTICAST_V6_LINK.toLowerCase() : SSDP_MULTICAST_V4, v6 ? `::%${local.interface}` : local.address);
      multicast.on('error', (err) => this.log.warn({ event: 'ssdp-socket-error', group, error: err.message }));
      multicast.on('message', (msg, rinfo) => this.onMessage(local, msg, rinfo.address, rinfo.port, true));
      b.multicast = multicast;
    } catch (err) {
      multicast.close();
      this.log.warn({ event: 'ssdp-multicast-failed', interface: local.interface, family: local.family, error: (err as Error).message });
    }
  }

  /**
   * Serves every LAN address by unicast (see servedAddresses), and each
   * interface and family's group: binds what is new, lets go of what is
   * gone, and announces the new ones.
   */
  async updateAddresses(lan: readonly LocalAddress[]): Promise<void> {
    this.lan = lan;
    await this.joinAndAnnounce(await this.sockets.update(lan));
  }

  /** Addresses still waiting to be bound. */
  waiting(): string[] {
    return this.sockets.waiting();
  }

  /**
   * Joins the group on every interface and family that has no group socket
   * (new, or whose socket went with its address), then says ssdp:alive
   * from the addresses just bound.
   */
  private async joinAndAnnounce(added: readonly Bound[]): Promise<void> {
    const joined = new Set(this.bound.filter((b) => b.multicast).map((b) => `${b.local.interface}|${b.local.family}`));
    for (const b of this.bound) {
      const key = `${b.local.interface}|${b.local.family}`;
      if (joined.has(key) || this.closed) continue;
      joined.add(key);
      await this.join(b);
    }
    if (added.length) void this.advertise('ssdp:alive', added);
  }

  async stop(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const [t, release] of this.replyTimers) {
      clearTimeout(t);
      release();
    }
    this.replyTimers.clear();
    // UDA 1.1 §1.2.3: byebye for everything advertised.
    await this.advertise('ssdp:byebye');
    await new Promise((r) => setTimeout(r, 50));
    await this.sockets.stop();
  }

  private async advertise(nts: 'ssdp:alive' | 'ssdp:byebye', on: readonly Bound[] = this.bound): Promise<void> {
    const set = notificationSet(this.cfg.tree);
    const rounds = nts === 'ssdp:alive' ? ALIVE_REPEATS : 1;
    for (let round = 0; round < rounds; round++) {
      if (round > 0) await new Promise((r) => setTimeout(r, ALIVE_SPACING_MS));
      for (const b of on) {
        const group = b.local.family === 6 ? `${SSDP_MULTICAST_V6_LINK.toLowerCase()}%${b.local.interface}` : SSDP_MULTICAST_V4;
        for (const n of set) {
          const base = { family: b.local.family, nt: n.nt, usn: n.usn, bootId: this.cfg.bootId, configId: this.cfg.configId };
          const msg =
            nts === 'ssdp:alive'
              ? buildNotify({ ...base, nts, location: this.cfg.location(b.local), maxAge: this.cfg.maxAge, server: this.cfg.server })
              : buildNotify({ ...base, nts });
          b.unicast.send(msg, this.cfg.port, group, () => undefined);
        }
      }
    }
  }

  /** Replies to multicast searches waiting to be sent. */
  /** Searches parsed so far (the rest were dropped on arrival). */
  examined = 0;

  get pendingReplies(): number {
    return this.replyTimers.size;
  }

  private onMessage(local: LocalAddress, msg: Buffer, from: string, port: number, multicast: boolean): void {
    if (this.closed || port === 0) return;
    // Every socket serves one link: the group joined on it, or an address of it.
    const source = this.sources.check(from, local.interface);
    if (!source || !this.arrivals.take(from)) return;
    this.examined++;
    const parsed = parseSsdp(msg);
    if (!parsed.ok || parsed.msg.method !== 'M-SEARCH') return;
    const verdict = validateSearch(parsed.msg, { multicast });
    if (!verdict.ok) return;
    const answers = searchAnswers(verdict.st, this.cfg.tree);
    if (!answers.length) return;
    // Answer from (and name in LOCATION) the address in the searcher's own
    // subnet when there is one on that link (SSDP-19).
    const onLink = this.bound.filter((b) => b.local.interface === local.interface && b.local.family === local.family);
    const bound = onLink.find((b) => prefixContains(b.local.prefix, source)) ?? onLink.find((b) => b.local.bindAddress === local.bindAddress) ?? onLink[0];
    if (!bound) return;
    const location = this.cfg.location(bound.local);
    const replies = answers.map((a) => buildSearchResponse({ ...a, location, maxAge: this.cfg.maxAge, date: new Date(), server: this.cfg.server, bootId: this.cfg.bootId, configId: this.cfg.configId }));
    const send = (reply: Buffer) => bound.unicast.send(reply, port, from, () => undefined);
    const cost = replies.reduce((n, r) => n + r.length, 0);
    // A unicast search is answered at once.
    if (!multicast) {
      if (this.budget.take(from, cost)) replies.forEach(send);
      return;
    }
    // Spread over [0, MX] seconds (UDA 1.1 §1.3.3): a slot per waiting reply,
    // all of them or none, and the bytes charged now.
    const who = requesterOf(source, local.interface, this.lan, this.sources.hostOf);
    const slots: (() => void)[] = [];
    while (slots.length < replies.length) {
      const slot = this.pending.take(who);
      if (!slot) break;
      slots.push(slot);
    }
    if (slots.length < replies.length || !this.budget.take(from, cost)) {
      slots.forEach((release) => release());
      return;
    }
    replies.forEach((reply, i) => {
      const release = slots[i] as () => void;
      const t = setTimeout(() => {
        this.replyTimers.delete(t);
        release();
        if (!this.closed) send(reply);
      }, Math.random() * verdict.maxDelaySeconds * 1000);
      t.unref();
      this.replyTimers.set(t, release);
    });
  }
}

/** Every LAN address, but IPv6 link-local ones only on an interface without a routable IPv6 address. */
function servedAddresses(lan: readonly LocalAddress[]): LocalAddress[] {
  const routable6 = new Set(lan.filter((l) => l.family === 6 && !isLinkLocal(l.address)).map((l) => l.interface));
  return lan.filter((l) => !(l.family === 6 && isLinkLocal(l.address) && routable6.has(l.interface)));
}

/** The address a LOCATION should name for clients of `local`'s link. */
export function locationHost(local: LocalAddress, lan: readonly LocalAddress[]): string {
  if (local.family === 4) return local.address;
  // A global or ULA address on the same link: the client reaches it from its
  // own global address, which is what it will ask pinholes for.
  const routable = lan.find((l) => l.interface === local.interface && l.family === 6 && !isLinkLocal(l.address));
  const a: IpAddress = routable?.address ?? local.address;
  return isLinkLocal(a) ? `[${a}%25${local.interface}]` : `[${a}]`;
}
