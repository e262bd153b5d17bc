// UDP 5351 on the LAN: PCP and NAT-PMP share the port and are told apart by
// the version octet (RFC 6887 Appendix A). One socket per LAN address, so a
// reply always leaves from the exact address the client sent to (libnatpmp,
// libtorrent and others drop replies from any other source), and nothing is
// bound on the WAN side.

import DgramAsPromised, { type SocketAsPromised } from 'dgram-as-promised';
import { familyOf, isLinkLocal } from '../net/address.js';
import { inAnyPrefix, type LocalAddress } from '../net/interfaces.js';
import type { LanSources } from '../net/lan-source.js';
import type { Logger } from '../log.js';
import type { MappingService } from '../service/mapping-service.js';
import { encodePcpResponse } from '../protocols/pcp/codec.js';
import { Opcode, PCP_CLIENT_PORT, PCP_SERVER_PORT } from '../protocols/pcp/constants.js';
import { PortControlProtocol } from '../protocols/pcp-or-natpmp.js';
import type { MappingUpdate } from '../protocols/pcp/handler.js';
import type { Mapping } from '../domain/mapping.js';
import { LanSockets } from './lan-sockets.js';
import { NATPMP_ANNOUNCE_GROUP, NatPmpResult, encodeExternalAddressResponse } from '../protocols/natpmp/codec.js';
import { RateLimiter } from '../net/rate-limit.js';
import { NO_TELEMETRY, type Door, type Telemetry } from '../telemetry.js';

export interface PortControlConfig {
  port: number;
  /** Where clients listen for announcements (RFC 6887 §14.1.3, RFC 6886 §3.2.1). */
  announcePort: number;
  /** Requests per second per source, and the burst allowed above it. */
  rate: { perSecond: number; burst: number };
  /** Requests being processed at once, all sources together; more are dropped (§8.2 allows it). */
  maxInFlight: number;
}

export const DEFAULT_PORT_CONTROL: PortControlConfig = {
  port: PCP_SERVER_PORT,
  announcePort: PCP_CLIENT_PORT,
  rate: { perSecond: 20, burst: 40 },
  maxInFlight: 20_000,
};

const RECV_BUFFER_BYTES = 4 << 20;

interface Bound {
  local: LocalAddress;
  socket: SocketAsPromised;
}

export class PortControlServer {
  private readonly sockets: LanSockets<Bound>;
  private readonly doors: PortControlProtocol;
  private readonly limiter: RateLimiter;
  private inFlight = 0;
  /** Pending announcement and mapping-update sends; each leaves the set when it fires. */
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly cfg: PortControlConfig,
    private readonly lan: readonly LocalAddress[],
    private readonly sources: LanSources,
    private readonly service: MappingService,
    private readonly log: Logger,
    /** Told of every datagram answered or dropped: door, operation, result, seconds. */
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {
    this.doors = new PortControlProtocol(service);
    this.limiter = new RateLimiter(cfg.rate.perSecond, cfg.rate.burst, undefined, undefined, (s) => sources.hostOf(s));
    this.sockets = new LanSockets({
      server: 'pcp+natpmp',
      port: cfg.port,
      open: (local) => this.bind(local),
      close: (b) => b.socket.close(),
      failedEvent: 'bind-failed',
      log,
    });
  }

  /**
   * Binds every LAN address. One not usable yet waits for the next address
   * update (src/server/lan-sockets.ts); any other failure (the port is
   * taken) stops the start with the reason.
   */
  async start(): Promise<void> {
    await this.sockets.start(this.lan, { fatal: true });
  }

  /** Addresses still waiting to be bound. */
  waiting(): string[] {
    return this.sockets.waiting();
  }

  private async bind(local: LocalAddress): Promise<Bound> {
    const socket = DgramAsPromised.createSocket(local.family === 4 ? { type: 'udp4' } : { type: 'udp6', ipv6Only: true });
    try {
      await socket.bind(this.cfg.port, local.bindAddress);
    } catch (err) {
      await socket.close().catch(() => undefined);
      throw err;
    }
    // A burst from many clients must queue, not be dropped by the kernel
    // (the default ~200 KiB holds a few hundred datagrams); the kernel caps
    // this at net.core.rmem_max.
    try {
      socket.setRecvBufferSize(RECV_BUFFER_BYTES);
    } catch {
      // Not fatal: the default buffer only drops more under bursts.
    }
    const b = { local, socket };
    this.receive(b);
    return b;
  }

  /**
   * The LAN's addresses changed (SLAAC, a new prefix, an admin), or one is
   * still waiting: serve the new ones, stop serving the gone ones. Failures
   * to bind are logged, and the other addresses keep being served.
   */
  async updateAddresses(lan: readonly LocalAddress[]): Promise<void> {
    await this.sockets.update(lan);
  }

  async stop(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.sockets.stop();
  }

  private receive(b: Bound): void {
    // Receive through a permanent 'message' listener on the underlying
    // socket: dgram-as-promised's recv()/async iterator attaches a listener
    // per call, and datagrams that arrive between two calls (a burst in one
    // tick) are dropped by Node for want of a listener.
    b.socket.socket.on('message', (msg, rinfo) => {
      if (!this.closed) void this.onPacket(b, msg, rinfo.address, rinfo.port);
    });
    b.socket.socket.on('error', (err) => {
      if (!this.closed) this.log.error({ event: 'socket-error', address: b.local.bindAddress, error: err.message });
    });
  }

  private async onPacket(b: Bound, msg: Buffer, from: string, fromPort: number): Promise<void> {
    const started = performance.now();
    const asked = PortControlProtocol.requestOp(msg);
    const report = (result: string, door: Door = asked.door) => this.telemetry.request(door, asked.op, result, (performance.now() - started) / 1000);
    // RFC 6887 §8.2: requests from anywhere but this LAN are silently ignored
    // (the kernel drops what did not arrive on a LAN interface; see
    // src/net/lan-source.ts for what is left to check here).
    const source = this.sources.check(from, b.local.bindAddress.includes('%') ? b.local.interface : undefined);
    if (!source || familyOf(source) !== b.local.family) return report('not-lan');
    if (msg.length === 0) return report('dropped');
    if (this.inFlight >= this.cfg.maxInFlight) return report('busy');
    // A link-local source is charged per link (every link has its own fe80::/64).
    if (!this.limiter.take(isLinkLocal(source) ? from : source)) return report('rate-limited');
    this.inFlight++;
    try {
      const outcome = await this.doors.handle(msg, source, fromPort);
      if (outcome.reply && !this.closed) await b.socket.send(outcome.reply, fromPort, from);
      report(outcome.result, outcome.via);
      if (!outcome.decided && outcome.result !== 'SUCCESS') {
        this.log.info({ event: 'request', via: outcome.via, source, result: outcome.result, detail: outcome.detail });
      }
    } catch (err) {
      report('error');
      // A bug, not bad input: log it and keep serving everyone else.
      this.log.error({ event: 'handler-error', source, error: (err as Error).stack ?? String(err) });
    } finally {
      this.inFlight--;
    }
  }

  /**
   * Mappings moved under their clients (a new external address): PCP
   * clients are told (RFC 6887 §14.2); NAT-PMP and UPnP clients learn it
   * from the announcement and their next renewal.
   */
  mappingsMoved(moved: readonly Mapping[]): void {
    this.sendMappingUpdates(this.doors.mappingUpdates(moved));
  }

  /**
   * RFC 6887 §14.2 mapping update: the MAP response a client would get now,
   * sent unasked to the address and port its last request came from, three
   * times (0, 250 and 750 ms), from the LAN address serving that client.
   */
  sendMappingUpdates(updates: readonly MappingUpdate[]): void {
    for (const delay of [0, 250, 750]) {
      this.later(delay, () => {
        for (const u of updates) {
          const b = this.sockets.bound.find((x) => x.local.family === familyOf(u.to) && !x.local.bindAddress.includes('%') && inAnyPrefix([x.local.prefix], u.to));
          if (!b || this.closed) continue;
          b.socket.send(u.message(), u.port, u.to).catch((err: unknown) => this.log.warn({ event: 'mapping-update-failed', to: u.to, error: (err as Error).message }));
        }
      });
    }
  }

  private later(delay: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, delay);
    t.unref();
    this.timers.add(t);
  }

  /** Sends still scheduled (for tests: they must not pile up). */
  pendingSends(): number {
    return this.timers.size;
  }

  /**
   * Tells LAN clients the mapping state began (RFC 6887 §14.1.3: ANNOUNCE to
   * 224.0.0.1:5350 and [ff02::1]:5350; RFC 6886 §3.2.1: the external address
   * to 224.0.0.1:5350), ten times, 250 ms apart at first and doubling,
   * each with the current epoch.
   */
  announce(times = 10): void {
    let delay = 0;
    for (let i = 0; i < times; i++) {
      this.later(delay, () => void this.announceOnce());
      delay = delay === 0 ? 250 : delay * 2;
    }
  }

  private async announceOnce(): Promise<void> {
    if (this.closed) return;
    const epoch = this.service.epochSeconds();
    const pcpAnnounce = encodePcpResponse({ opcode: Opcode.ANNOUNCE, result: 0, lifetime: 0, epoch });
    const ext = this.service.externalIPv4();
    for (const b of this.sockets.bound) {
      try {
        if (b.local.family === 4) {
          b.socket.setMulticastTTL(1);
          b.socket.setMulticastInterface(b.local.address);
          if (ext) await b.socket.send(encodeExternalAddressResponse(NatPmpResult.SUCCESS, epoch, ext), this.cfg.announcePort, NATPMP_ANNOUNCE_GROUP);
          await b.socket.send(pcpAnnounce, this.cfg.announcePort, NATPMP_ANNOUNCE_GROUP);
        } else if (b.local.bindAddress.includes('%')) {
          // One IPv6 announcement per link, from its link-local address.
          b.socket.setMulticastTTL(1);
          b.socket.setMulticastInterface(`::%${b.local.interface}`);
          await b.socket.send(pcpAnnounce, this.cfg.announcePort, `ff02::1%${b.local.interface}`);
        }
      } catch (err) {
        this.log.warn({ event: 'announce-failed', address: b.local.bindAddress, error: (err as Error).message });
      }
    }
  }
}
