// The upstream PCP server on the wire (RFC 7648 proxy; RFC 6887 as a
// client): MAP requests for the relay (src/service/upstream.ts), the
// server's epoch watched (§8.5), and its ANNOUNCEs heard (§14.1.3).
//
// Bounds, because every request here was caused by a LAN client or a timer:
// - one request in flight per upstream mapping (protocol, internal port);
//   the same request again joins it, another waits for it;
// - at most `maxInFlight` requests in flight or waiting, beyond that an
//   immediate NO_RESOURCES; one LAN client at most a quarter of them, so a
//   client stalling a slow upstream does not refuse everyone else;
// - retransmissions per §8.1.1 (IRT 3 s, doubling with ±10 % jitter, at most
//   MRT 1024 s apart) for no longer than the asker's patience.
// Only the configured server's address and port count, only for a request
// outstanding with the same opcode, nonce, protocol and internal port.

import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { familyOf, mustParseIp, parseIp, type IpAddress } from '../net/address.js';
import type { Logger } from '../log.js';
import { decodePcpResponse, encodePcpRequest, type PcpResponse } from '../protocols/pcp/codec.js';
import { Opcode, OptionCode, PCP_CLIENT_PORT, PCP_SERVER_PORT, ResultCode, resultName } from '../protocols/pcp/constants.js';
import type { PcpOption } from '../protocols/pcp/options.js';
import { epochLost, type EpochSeen } from '../protocols/pcp/epoch-check.js';
import type { FilterStep, Refusal } from '../domain/requests.js';
import type { UpstreamAnswer, UpstreamAsk, UpstreamServer } from '../service/upstream.js';

export interface UpstreamPcpOptions {
  server: IpAddress;
  serverPort?: number;
  /** Where to listen: the port of ANNOUNCEs (5350) if free, else any. */
  bindAddress?: string;
  bindPort?: number;
  /** RFC 6887 §8.1.1 IRT and MRT, milliseconds (shorter only in tests). */
  irtMs?: number;
  mrtMs?: number;
  maxInFlight?: number;
  log: Logger;
  /** Seconds on the client's clock (monotonic), for the §8.5 check. */
  now?: () => number;
}

/** What status and doctor tell of the upstream. */
export interface UpstreamWireStatus {
  server: string;
  lastAnswer: string | null;
  epoch: number | null;
  inFlight: number;
  stateLosses: number;
}

interface Pending {
  /** MAP or PEER. */
  readonly opcode: number;
  readonly nonce: Buffer;
  readonly protocol: number;
  readonly internalPort: number;
  readonly lifetime: number;
  readonly done: Promise<PcpResponse | undefined>;
  resolve(r: PcpResponse | undefined): void;
}

const DEFAULT_IRT_MS = 3_000;
const DEFAULT_MRT_MS = 1_024_000;

/** Upstream's result codes as the service's refusals; what upstream says of our own request is a network failure to our client. */
function refusalOf(result: number, sent: { thirdParty: boolean; filters: boolean }): Refusal {
  switch (result) {
    case ResultCode.NOT_AUTHORIZED:
      return 'NOT_AUTHORIZED';
    case ResultCode.UNSUPP_OPTION:
      // §13.1: a server that will not map for a third party says UNSUPP_OPTION;
      // one that does not filter (§13.3: FILTER is mandatory to process) too.
      return sent.thirdParty ? 'THIRD_PARTY_NOT_ALLOWED' : sent.filters ? 'UNSUPP_OPTION' : 'NETWORK_FAILURE';
    case ResultCode.NO_RESOURCES:
      return 'NO_RESOURCES';
    case ResultCode.UNSUPP_PROTOCOL:
      return 'UNSUPP_PROTOCOL';
    case ResultCode.USER_EX_QUOTA:
      return 'USER_EX_QUOTA';
    case ResultCode.CANNOT_PROVIDE_EXTERNAL:
      return 'CANNOT_PROVIDE_EXTERNAL';
    case ResultCode.EXCESSIVE_REMOTE_PEERS:
      return 'EXCESSIVE_REMOTE_PEERS';
    default:
      // UNSUPP_VERSION, MALFORMED_*, UNSUPP_OPCODE, ADDRESS_MISMATCH, NETWORK_FAILURE: not the client's doing.
      return 'NETWORK_FAILURE';
  }
}

/** §13.3: a filter step as a FILTER option (prefix length in 128-bit space; 0 clears the mapping's filters). */
function filterOption(f: FilterStep): PcpOption {
  if (f === 'clear') return { code: OptionCode.FILTER, prefixLength: 0, remotePeerPort: 0, remotePeerAddress: mustParseIp('::'), v4: false };
  const v4 = familyOf(f.prefix.address) === 4;
  return { code: OptionCode.FILTER, prefixLength: (v4 ? 96 : 0) + f.prefix.length, remotePeerPort: f.port, remotePeerAddress: f.prefix.address, v4 };
}

/** One request in flight per upstream mapping: a MAP by its internal port, a PEER by that and its remote peer. */
function keyOf(protocol: number, internalPort: number, remotePeer: { address: IpAddress; port: number } | undefined): string {
  return remotePeer ? `peer|${protocol}|${internalPort}|${remotePeer.address}|${remotePeer.port}` : `${protocol}|${internalPort}`;
}

export class UpstreamPcpClient implements UpstreamServer {
  private sock?: Socket;
  private readonly pending = new Map<string, Pending>();
  /** Requests waiting for their mapping's request in flight. */
  private waiting = 0;
  /** Requests in flight or waiting, by the LAN client that caused them. */
  private readonly byOwner = new Map<string, number>();
  private seen?: EpochSeen;
  private lastAnswerWall?: number;
  private stateLosses = 0;
  private readonly listeners: (() => void)[] = [];
  private readonly addressListeners: ((to: IpAddress) => void)[] = [];
  private readonly serverPort: number;
  private readonly maxInFlight: number;
  private readonly now: () => number;

  constructor(private readonly o: UpstreamPcpOptions) {
    this.serverPort = o.serverPort ?? PCP_SERVER_PORT;
    this.maxInFlight = o.maxInFlight ?? 64;
    this.now = o.now ?? (() => performance.now() / 1000);
  }

  get server(): IpAddress {
    return this.o.server;
  }

  /** Called when upstream lost its state (§8.5) or announced itself (§14.1.3): every upstream mapping must be made again. */
  onStateLost(fn: () => void): void {
    this.listeners.push(fn);
  }

  /** Called with the external address of every mapping upstream grants (it may change: RFC 6887 §8.5). */
  onExternalAddress(fn: (to: IpAddress) => void): void {
    this.addressListeners.push(fn);
  }

  async start(): Promise<void> {
    const family = familyOf(this.o.server) === 4 ? 'udp4' : 'udp6';
    const tryBind = (port: number) =>
      new Promise<Socket>((resolve, reject) => {
        const s = createSocket({ type: family, reuseAddr: true });
        s.once('error', (err) => {
          s.close();
          reject(err);
        });
        s.bind(port, this.o.bindAddress, () => {
          s.removeAllListeners('error');
          resolve(s);
        });
      });
    const wanted = this.o.bindPort ?? PCP_CLIENT_PORT;
    try {
      this.sock = await tryBind(wanted);
    } catch (err) {
      this.o.log.warn({ event: 'upstream-listen', port: wanted, detail: `${(err as Error).message}: unsolicited ANNOUNCEs from upstream are not heard; its epoch is still checked on every answer` });
      this.sock = await tryBind(0);
    }
    this.sock.on('error', (err) => this.o.log.warn({ event: 'upstream-socket-error', detail: err.message }));
    this.sock.on('message', (buf, rinfo) => this.receive(buf, rinfo.address, rinfo.port));
  }

  stop(): void {
    for (const p of this.pending.values()) p.resolve(undefined);
    this.pending.clear();
    this.sock?.close();
    this.sock = undefined;
  }

  /** The UDP port upstream's answers come to. */
  localPort(): number {
    return this.sock?.address().port ?? 0;
  }

  spare(): number {
    return Math.max(0, this.maxInFlight - this.pending.size - this.waiting);
  }

  status(): UpstreamWireStatus {
    return {
      server: `${this.o.server}:${this.serverPort}`,
      lastAnswer: this.lastAnswerWall ? new Date(this.lastAnswerWall).toISOString() : null,
      epoch: this.seen?.serverEpoch ?? null,
      inFlight: this.pending.size + this.waiting,
      stateLosses: this.stateLosses,
    };
  }

  /** Whether the server answers at all (an ANNOUNCE request, §14.1.2), within `patienceMs`. */
  async probe(client: IpAddress, patienceMs: number): Promise<boolean> {
    if (this.spare() <= 0) return false;
    const bytes = encodePcpRequest({ opcode: Opcode.ANNOUNCE, lifetime: 0, clientAddress: client });
    const r = await this.exchange(`announce`, { opcode: Opcode.ANNOUNCE, nonce: Buffer.alloc(0), protocol: 0, internalPort: 0, lifetime: 0 }, bytes, patienceMs);
    return r !== undefined;
  }

  async map(ask: UpstreamAsk): Promise<UpstreamAnswer> {
    const key = keyOf(ask.protocol, ask.internalPort, ask.remotePeer);
    const opcode = ask.remotePeer ? Opcode.PEER : Opcode.MAP;
    let ahead = this.pending.get(key);
    if (ahead && ahead.opcode === opcode && ahead.nonce.equals(ask.nonce) && (ahead.lifetime > 0) === (ask.lifetime > 0)) {
      // A retransmission from the LAN, or a renewal racing a client's (their lifetimes a second apart): one request upstream.
      return this.answerOf(await ahead.done, ask);
    }
    if (this.spare() <= 0) return { ok: false, refusal: 'NO_RESOURCES', detail: `${this.maxInFlight} upstream requests in flight` };
    const owner = ask.owner;
    const share = Math.max(1, Math.floor(this.maxInFlight / 4));
    if (owner !== undefined && (this.byOwner.get(owner) ?? 0) >= share) return { ok: false, refusal: 'NO_RESOURCES', detail: `${owner} has ${share} upstream requests in flight` };
    if (owner !== undefined) this.byOwner.set(owner, (this.byOwner.get(owner) ?? 0) + 1);
    try {
      return await this.send(ask, key, ahead);
    } finally {
      if (owner !== undefined) {
        const n = (this.byOwner.get(owner) ?? 1) - 1;
        if (n > 0) this.byOwner.set(owner, n);
        else this.byOwner.delete(owner);
      }
    }
  }

  /** Waits for the mapping's request ahead, if any, then sends this one. */
  private async send(ask: UpstreamAsk, key: string, ahead: Pending | undefined): Promise<UpstreamAnswer> {
    const deadline = Date.now() + ask.patienceMs;
    while (ahead) {
      this.waiting++;
      try {
        await ahead.done;
      } finally {
        this.waiting--;
      }
      ahead = this.pending.get(key);
      if (Date.now() >= deadline) return { ok: false, refusal: 'NETWORK_FAILURE', detail: 'upstream busy with this mapping' };
    }
    const options: PcpOption[] = [];
    if (ask.thirdParty) options.push({ code: OptionCode.THIRD_PARTY, address: ask.thirdParty, v4: familyOf(ask.thirdParty) === 4 });
    // §11.2: PREFER_FAILURE and FILTER are MAP's; PEER has its one remote peer in its opcode data.
    if (!ask.remotePeer && ask.preferFailure && ask.lifetime > 0) options.push({ code: OptionCode.PREFER_FAILURE });
    if (!ask.remotePeer && ask.lifetime > 0) for (const f of ask.filters ?? []) options.push(filterOption(f));
    const v4 = familyOf(ask.client) === 4;
    const data = {
      nonce: ask.nonce,
      protocol: ask.protocol,
      internalPort: ask.internalPort,
      externalPort: ask.suggestedExternalPort,
      externalAddress: ask.suggestedExternalAddress ?? mustParseIp(v4 ? '0.0.0.0' : '::'),
    };
    const opcode = ask.remotePeer ? Opcode.PEER : Opcode.MAP;
    const bytes = encodePcpRequest({
      opcode,
      lifetime: ask.lifetime,
      clientAddress: ask.client,
      map: ask.remotePeer ? undefined : data,
      peer: ask.remotePeer ? { ...data, remotePeerPort: ask.remotePeer.port, remotePeerAddress: ask.remotePeer.address } : undefined,
      options,
    });
    const r = await this.exchange(key, { opcode, nonce: ask.nonce, protocol: ask.protocol, internalPort: ask.internalPort, lifetime: ask.lifetime }, bytes, deadline - Date.now());
    return this.answerOf(r, ask);
  }

  private answerOf(r: PcpResponse | undefined, ask: UpstreamAsk): UpstreamAnswer {
    if (!r) return { ok: false, refusal: 'NETWORK_FAILURE', detail: `no answer from ${this.o.server} within ${Math.round(ask.patienceMs / 1000)} s` };
    if (r.result !== ResultCode.SUCCESS) {
      return { ok: false, refusal: refusalOf(r.result, { thirdParty: ask.thirdParty !== undefined, filters: !ask.remotePeer && (ask.filters?.length ?? 0) > 0 }), detail: `${this.o.server} said ${resultName(r.result)}`, lifetime: r.lifetime };
    }
    const m = r.map ?? r.peer;
    if (ask.lifetime === 0) return { ok: true, externalAddress: m?.externalAddress ?? ask.client, externalPort: 0, lifetime: 0 };
    if (!m || m.externalPort === 0 || r.lifetime === 0) return { ok: false, refusal: 'NETWORK_FAILURE', detail: `${this.o.server} granted nothing usable` };
    return { ok: true, externalAddress: m.externalAddress, externalPort: m.externalPort, lifetime: r.lifetime };
  }

  /** One request, retransmitted per §8.1.1 until its answer or `patienceMs`. */
  private exchange(key: string, what: Omit<Pending, 'done' | 'resolve'>, bytes: Buffer, patienceMs: number): Promise<PcpResponse | undefined> {
    let resolve!: (r: PcpResponse | undefined) => void;
    const done = new Promise<PcpResponse | undefined>((r) => (resolve = r));
    let timer: NodeJS.Timeout | undefined;
    const entry: Pending = {
      ...what,
      done,
      resolve: (r) => {
        if (timer) clearTimeout(timer);
        if (this.pending.get(key) === entry) this.pending.delete(key);
        resolve(r);
      },
    };
    this.pending.set(key, entry);
    const irt = this.o.irtMs ?? DEFAULT_IRT_MS;
    const mrt = this.o.mrtMs ?? DEFAULT_MRT_MS;
    const started = Date.now();
    const jitter = () => 1 + (randomBytes(1)[0]! / 255 - 0.5) * 0.2;
    let rt = irt * jitter();
    const send = () => {
      const left = started + patienceMs - Date.now();
      if (left <= 0 || !this.sock) return entry.resolve(undefined);
      this.sock.send(bytes, this.serverPort, this.o.server);
      timer = setTimeout(send, Math.min(rt, left));
      rt = Math.min(2 * rt, mrt) * jitter();
    };
    send();
    return done;
  }

  private receive(buf: Buffer, addressText: string, port: number): void {
    // The inside decides: only the server we ask, from its port.
    if (parseIp(addressText) !== this.o.server || port !== this.serverPort) return;
    const d = decodePcpResponse(buf);
    if (!d.ok) return;
    const r = d.msg;
    const known = this.seen !== undefined;
    const lost = this.checkEpoch(r.epoch);
    if (r.opcode === Opcode.ANNOUNCE) {
      const p = this.pending.get('announce');
      if (p && r.result === ResultCode.SUCCESS) p.resolve(r);
      else if (r.result === ResultCode.SUCCESS) {
        // §14.1.3: an unsolicited ANNOUNCE asks for the epoch check (done
        // above); its repeats (a server sends several) then pass it. One with
        // nothing to check against is taken as a loss.
        this.o.log.warn({ event: 'upstream-announce', server: this.o.server, epoch: r.epoch, lost: lost || !known });
        if (!known) this.lost('announce');
      }
    } else if ((r.opcode === Opcode.MAP && r.map) || (r.opcode === Opcode.PEER && r.peer)) {
      const d = (r.map ?? r.peer)!;
      const p = this.pending.get(keyOf(d.protocol, d.internalPort, r.peer ? { address: r.peer.remotePeerAddress, port: r.peer.remotePeerPort } : undefined));
      if (!p || p.opcode !== r.opcode || !p.nonce.equals(d.nonce)) return;
      p.resolve(r);
      if (r.result === ResultCode.SUCCESS && r.lifetime > 0) for (const fn of this.addressListeners) fn(d.externalAddress);
    }
  }

  /** §8.5, on every answer; true when it showed a loss. */
  private checkEpoch(serverEpoch: number): boolean {
    this.lastAnswerWall = Date.now();
    const current = { serverEpoch, clientTime: this.now() };
    const lost = epochLost(this.seen, current);
    this.seen = current;
    if (lost) this.lost('epoch');
    return lost;
  }

  private lost(why: 'epoch' | 'announce'): void {
    this.stateLosses++;
    this.o.log.warn({ event: 'upstream-state-lost', server: this.o.server, why, epoch: this.seen?.serverEpoch });
    for (const fn of this.listeners) fn();
  }
}
