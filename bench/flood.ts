// Flood generator for `npm run bench`, run inside the lab's LAN namespace:
// one device (one link-layer address) speaking from many IPv6 addresses of
// its /64 — what any host can do, since it picks its own interface
// identifiers — sends PCP MAP requests and SSDP searches open-loop, at a
// fixed offered rate whatever the router answers, until it has sent `count`
// datagrams or `durationMs` has passed. Then it listens `drainMs` longer (an
// answer to a multicast search may come up to MX seconds late) and reports
// what it sent and what came back.
//
// Datagram k goes out from address k mod N, so every address asks at the same
// modest rate and only their sum is a flood: a limit per exact address never
// trips, a limit per /64 or per device must. Each PCP MAP asks for a new
// internal port (the address's next one), so each success is one more
// mapping the router holds for this device.

import { createSocket, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import { encodePcpRequest } from '../src/protocols/pcp/codec.js';
import { PCP_HEADER_SIZE, PCP_R_BIT, PCP_SERVER_PORT, PCP_VERSION, ResultCode } from '../src/protocols/pcp/constants.js';
import { runGenerator } from './load.js';

export interface FloodSpec {
  /** Source addresses, all already on `device`. */
  addresses: string[];
  /** The device they are on: the zone of the multicast searches. */
  device: string;
  /** The router's LAN address: PCP server and unicast SSDP target. */
  server: string;
  /** Datagrams per second offered, over all addresses and kinds. */
  rate: number;
  /** At most this many datagrams… */
  count: number;
  /** …sent within this long. */
  durationMs: number;
  /** Listening on after the last datagram. */
  drainMs: number;
  /** Of an address's datagrams, every `ssdpEvery`-th is an M-SEARCH (alternately multicast and unicast), the rest PCP MAPs. */
  ssdpEvery: number;
  /** An address's first MAP asks for this internal port, its next one the port after… */
  startPort: number;
  /** Lifetime asked for, seconds. */
  lifetime: number;
}

type Kind = 'pcp' | 'ssdpMulticast' | 'ssdpUnicast';

export interface FloodResult {
  /** The sending window: first to last datagram. */
  seconds: number;
  sent: Record<Kind, number>;
  /** Datagrams per second actually sent over the window (below `rate` if this process could not keep up). */
  offeredRate: number;
  sendErrors: Record<string, number>;
  /** PCP answers by result code name (SUCCESS: a mapping granted). */
  pcpCodes: Record<string, number>;
  pcpAnswers: number;
  /** PCP answers per second over the sending window's length (late ones included). */
  pcpAnsweredRate: number;
  /** SSDP answer datagrams and their bytes (each search may draw several). */
  ssdpAnswers: number;
  ssdpAnswerBytes: number;
  /** Anything else that arrived. */
  other: number;
  /** CPU this process used, seconds (it shares the machine with the router). */
  cpuSeconds: number;
}

// UDA 1.1 §1.3.2: M-SEARCH; ST ssdp:all draws one answer per root, device
// and service. The unicast search carries MX too, as many clients send it.
function mSearch(host: string): Buffer {
  return Buffer.from(`M-SEARCH * HTTP/1.1\r\nHOST: ${host}\r\nMAN: "ssdp:discover"\r\nMX: 5\r\nST: ssdp:all\r\nUSER-AGENT: Linux/6 UPnP/2.0 portcullis-flood/1\r\n\r\n`);
}

const SSDP_PORT = 1900;
const TICK_MS = 2;
/** A late timer catches up by at most this much sending at once. */
const CATCH_UP_MS = 20;

const RESULT_NAMES = new Map<number, string>(Object.entries(ResultCode).map(([name, code]) => [code, name]));

interface Source {
  address: IpAddress;
  /** Connected to the PCP server: sending needs no address lookup. */
  pcp: Socket;
  /** Unconnected: multicast searches are answered from the router's own address. */
  ssdp: Socket;
  nonce: Buffer;
  /** Datagrams this address has sent. */
  sent: number;
  /** PCP MAPs it has sent (its next port). */
  maps: number;
}

async function udpSocket(address: string, onMessage: (m: Buffer) => void, connectTo?: { address: string; port: number }): Promise<Socket> {
  const socket = createSocket('udp6');
  socket.on('message', onMessage);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    const ready = () => {
      socket.off('error', reject);
      resolve();
    };
    socket.bind(0, address, () => (connectTo ? socket.connect(connectTo.port, connectTo.address, ready) : ready()));
  });
  return socket;
}

async function open(address: string, i: number, server: string, onPcp: (m: Buffer) => void, onSsdp: (m: Buffer) => void): Promise<Source> {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32BE(0xf1000000 + i, 8);
  const [pcp, ssdp] = await Promise.all([udpSocket(address, onPcp, { address: server, port: PCP_SERVER_PORT }), udpSocket(address, onSsdp)]);
  return { address: mustParseIp(address), pcp, ssdp, nonce, sent: 0, maps: 0 };
}

async function flood(spec: FloodSpec): Promise<FloodResult> {
  const sent: Record<Kind, number> = { pcp: 0, ssdpMulticast: 0, ssdpUnicast: 0 };
  const sendErrors: Record<string, number> = {};
  const pcpCodes: Record<string, number> = {};
  let pcpAnswers = 0;
  let ssdpAnswers = 0;
  let ssdpAnswerBytes = 0;
  let other = 0;
  const onPcp = (m: Buffer) => {
    // RFC 6887 §7.2: version 2, R bit set, result code in octet 3.
    if (m.length < PCP_HEADER_SIZE || m[0] !== PCP_VERSION || ((m[1] ?? 0) & PCP_R_BIT) === 0) {
      other++;
      return;
    }
    pcpAnswers++;
    const name = RESULT_NAMES.get(m[3] ?? -1) ?? `code ${m[3]}`;
    pcpCodes[name] = (pcpCodes[name] ?? 0) + 1;
  };
  const onSsdp = (m: Buffer) => {
    if (m.subarray(0, 9).toString('latin1') !== 'HTTP/1.1 ') {
      other++;
      return;
    }
    ssdpAnswers++;
    ssdpAnswerBytes += m.length;
  };
  const sources = await Promise.all(spec.addresses.map((a, i) => open(a, i, spec.server, onPcp, onSsdp)));
  const wildcard = mustParseIp('::');
  const multicast = { to: `ff02::c%${spec.device}`, message: mSearch('[FF02::C]:1900') };
  const unicast = { to: spec.server, message: mSearch(`[${spec.server}]:1900`) };
  const failed = (err: Error | null) => {
    if (err) sendErrors[(err as NodeJS.ErrnoException).code ?? err.message] = (sendErrors[(err as NodeJS.ErrnoException).code ?? err.message] ?? 0) + 1;
  };
  const sendFrom = (s: Source) => {
    const n = s.sent++;
    if (n % spec.ssdpEvery === spec.ssdpEvery - 1) {
      const { to, message } = Math.floor(n / spec.ssdpEvery) % 2 === 0 ? multicast : unicast;
      sent[to === unicast.to ? 'ssdpUnicast' : 'ssdpMulticast']++;
      s.ssdp.send(message, SSDP_PORT, to, failed);
      return;
    }
    const internalPort = spec.startPort + s.maps++;
    sent.pcp++;
    const request = encodePcpRequest({ opcode: 1, lifetime: spec.lifetime, clientAddress: s.address, map: { nonce: s.nonce, protocol: 17, internalPort, externalPort: 0, externalAddress: wildcard } });
    s.pcp.send(request, failed);
  };

  process.stderr.write(`flooding from ${sources.length} addresses at ${spec.rate}/s\n`);
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  let total = 0;
  let last = start;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      const elapsed = now - start;
      if (elapsed >= spec.durationMs || total >= spec.count) {
        clearInterval(timer);
        resolve();
        return;
      }
      // Open loop: what is due by now, whatever came back. If this process
      // falls behind, it catches up by at most CATCH_UP_MS' worth at once,
      // so the offered rate it reports is what it really sent.
      const due = Math.min(spec.count, Math.floor((elapsed / 1000) * spec.rate));
      let n = Math.min(due - total, Math.ceil((spec.rate * CATCH_UP_MS) / 1000));
      if (n > 0) last = now;
      while (n-- > 0) sendFrom(sources[total++ % sources.length] as Source);
    }, TICK_MS);
  });
  const seconds = (last - start) / 1000;
  await new Promise((r) => setTimeout(r, spec.drainMs));
  const cpu = process.cpuUsage(cpu0);
  await Promise.all(sources.flatMap((s) => [s.pcp, s.ssdp]).map((sock) => new Promise<void>((r) => sock.close(() => r()))));
  return {
    seconds,
    sent,
    offeredRate: total / seconds,
    sendErrors,
    pcpCodes,
    pcpAnswers,
    pcpAnsweredRate: pcpAnswers / seconds,
    ssdpAnswers,
    ssdpAnswerBytes,
    other,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
}

runGenerator(import.meta.url, flood);
