// The UPnP servers against a hostile LAN and a hostile WAN neighbour, in
// process on loopback (real sockets, memory firewall):
//
//  - the one LAN-source rule: a link-local peer counts only with a LAN zone,
//    and nothing is answered while the kernel guard is not confirmed;
//  - SSDP: a flood of multicast searches cannot pile up waiting replies;
//  - HTTP connection slots and GENA subscriptions: one /64 cannot take them all;
//  - GENA: a callback server that trickles bytes or hangs holds one delivery
//    until its deadline, and changes meanwhile collapse into one NOTIFY.
//
// Loopback carries no link-local traffic, so the link-local tests make the
// server see another peer address: the same substitution the kernel would
// make (Node names a link-local peer `fe80::…%<arrival interface>`).

import dgram, { createSocket } from 'node:dgram';
import net, { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { DEFAULTS } from '../src/config.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { mustParseIp, parsePrefix, type IpAddress, type Prefix } from '../src/net/address.js';
import type { LocalAddress } from '../src/net/interfaces.js';
import { LanSources } from '../src/net/lan-source.js';
import { Neighbours } from '../src/net/neighbours.js';
import type { CallbackUrl } from '../src/protocols/upnp/gena.js';
import { FairShare, requesterOf, type Requester } from '../src/server/fair-share.js';
import { DEFAULT_GENA_LIMITS, GenaManager } from '../src/server/gena-publisher.js';
import { HTTP_SLOTS } from '../src/server/upnp-http.js';
import { startUpnp, type Upnp } from '../src/server/upnp-door.js';
import { harness } from './helpers/harness.js';
import { sleep, until } from './helpers/wait.js';

// Below the ephemeral range, apart from upnp-server.test's 10000-19000.
const BASE = 6000 + (process.pid % 1900) * 2;
const HTTP_PORT = BASE;
const SSDP_PORT = BASE + 1;
const GROUP = '239.255.255.250';

const local = (address: string, prefix: string): LocalAddress => {
  const a = mustParseIp(address);
  return { address: a, family: a.includes(':') ? 6 : 4, interface: 'lo', bindAddress: a, prefix: parsePrefix(prefix) as Prefix };
};
// 127/8 is the LAN here: 127.0.0.3 is a second IPv4 host. The rule also
// knows two IPv6 LAN prefixes nothing is bound in: peers the tests pretend.
const LAN = [local('127.0.0.1', '127.0.0.0/8'), local('::1', '::1/128')];
const sources = new LanSources(['lo'], [...LAN, local('2001:db8:77::1', '2001:db8:77::/64'), local('fd00::1', 'fd00::/64')]);
sources.setGuarded(true);
const log = memoryLogger();
let upnp: Upnp;
let descriptionPath = '';

const msearch = (st: string, host = `127.0.0.1:${SSDP_PORT}`, mx = '') => `M-SEARCH * HTTP/1.1\r\nHOST: ${host}\r\nMAN: "ssdp:discover"\r\n${mx ? `MX: ${mx}\r\n` : ''}ST: ${st}\r\n\r\n`;

/**
 * Datagrams back for one unicast search from `from` to the SSDP socket on `to`.
 * Expecting replies, it waits for `expect` (up to 5 s) and 200 ms more for extras;
 * expecting silence, 300 ms.
 */
async function search(st: string, from = '127.0.0.1', to = '127.0.0.1', expect = 0): Promise<string[]> {
  const s = createSocket(from.includes(':') ? 'udp6' : 'udp4');
  const got: string[] = [];
  s.on('message', (m) => got.push(m.toString('latin1')));
  await new Promise<void>((r) => s.bind(0, from, () => r()));
  s.send(msearch(st), SSDP_PORT, to);
  if (expect > 0) await until(() => got.length >= expect, 5000, 50);
  await sleep(expect > 0 ? 200 : 300);
  s.close();
  return got;
}

/** One GET over its own connection: the raw response, '' if the server closed without one. */
function get(path: string, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve) => {
    const sock = createConnection({ host, port: HTTP_PORT });
    const chunks: Buffer[] = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    sock.write(`GET ${path} HTTP/1.1\r\nHost: ${host.includes(':') ? `[${host}]` : host}:${HTTP_PORT}\r\n\r\n`);
    setTimeout(() => sock.destroy(), 3000);
  });
}

/**
 * While active, the servers see every datagram to the SSDP port and every
 * connection to the HTTP port as coming from `peer` (or from what it makes of
 * the real peer's port); what SSDP sends to a pretended peer is recorded
 * instead of sent.
 */
function asPeer(peer: string | ((port: number) => string)): { ssdpSent: () => number; restore: () => void } {
  const pretend = (port: number) => (typeof peer === 'string' ? peer : peer(port));
  const pretended = new Set<string>();
  const udp = dgram.Socket.prototype as unknown as { emit: (...a: unknown[]) => boolean; send: (...a: unknown[]) => void; address(): AddressInfo };
  const tcp = net.Socket.prototype as unknown as { _getpeername(): { address?: string; port?: number }; localPort?: number };
  const { emit, send } = udp;
  const peername = tcp._getpeername;
  let sent = 0;
  udp.emit = function (this: typeof udp, event: unknown, ...args: unknown[]) {
    const rinfo = args[1] as AddressInfo | undefined;
    if (event === 'message' && rinfo && this.address().port === SSDP_PORT) {
      args[1] = { ...rinfo, address: pretend(rinfo.port) };
      pretended.add((args[1] as AddressInfo).address);
    }
    return emit.call(this, event, ...args);
  };
  udp.send = function (this: typeof udp, ...args: unknown[]) {
    if (pretended.has(args[2] as string)) {
      sent++;
      return;
    }
    send.apply(this, args);
  };
  tcp._getpeername = function (this: typeof tcp) {
    const r = peername.call(this);
    return this.localPort === HTTP_PORT && r.address ? { ...r, address: pretend(r.port ?? 0) } : r;
  };
  return {
    ssdpSent: () => sent,
    restore: () => {
      udp.emit = emit;
      udp.send = send;
      tcp._getpeername = peername;
    },
  };
}

t.before(async () => {
  upnp = await startUpnp({
    cfg: { ...DEFAULTS.upnp, enabled: true, httpPort: HTTP_PORT, ssdpPort: SSDP_PORT },
    wan: () => 'wan0',
    lan: LAN,
    sources,
    neighbours: new Neighbours(async () => []),
    service: harness().service,
    deviceUuid: randomUUID(),
    version: '0.0.0',
    log,
  });
  const [reply] = await search('upnp:rootdevice', undefined, undefined, 1);
  descriptionPath = new URL(/^LOCATION: (.*)$/im.exec(reply ?? '')?.[1]?.trim() ?? 'http://x/none').pathname;
});
t.teardown(() => upnp.stop());

t.test('a link-local peer is answered only with a LAN zone: another zone or none gets no SSDP reply and no HTTP response', async (t) => {
  t.match(await get(descriptionPath), /^HTTP\/1\.1 200 /, 'the description, from 127.0.0.1');
  for (const [peer, answered] of [
    ['fe80::10%lo', true],
    ['fe80::10%wan0', false],
    ['fe80::10', false],
  ] as const) {
    const p = asPeer(peer);
    try {
      await search('ssdp:all', '::1', '::1');
      if (answered) await until(() => p.ssdpSent() >= 10, 5000, 50);
      const http = await get(descriptionPath, '::1');
      if (answered) {
        t.equal(p.ssdpSent(), 10, `${peer}: ssdp:all answered`);
        t.match(http, /^HTTP\/1\.1 200 /, `${peer}: the description`);
      } else {
        t.equal(p.ssdpSent(), 0, `${peer}: no SSDP reply`);
        t.equal(http, '', `${peer}: the connection closed without a response`);
      }
    } finally {
      p.restore();
    }
  }
});

t.test('fail closed: while the kernel guard is not confirmed, SSDP and HTTP answer nobody', async (t) => {
  sources.setGuarded(false);
  try {
    t.same(await search('upnp:rootdevice'), [], 'SSDP: silence');
    t.same(await search('upnp:rootdevice', '::1', '::1'), [], 'over IPv6 too');
    t.equal(await get(descriptionPath), '', 'HTTP: closed without a response');
  } finally {
    sources.setGuarded(true);
  }
  t.equal((await search('upnp:rootdevice', undefined, undefined, 1)).length, 1, 'guard confirmed again: answered');
  t.match(await get(descriptionPath), /^HTTP\/1\.1 200 /);
});

t.test('SSDP: a flood of multicast searches with MX 5 keeps the waiting replies at the cap; another source is still answered', async (t) => {
  const flood = createSocket('udp4');
  await new Promise<void>((r) => flood.bind(0, '127.0.0.1', () => r()));
  flood.setMulticastInterface('127.0.0.1');
  const all = Buffer.from(msearch('ssdp:all', `${GROUP}:1900`, '5'), 'latin1');
  let most = 0;
  for (let batch = 0; batch < 10; batch++) {
    for (let i = 0; i < 50; i++) flood.send(all, SSDP_PORT, GROUP);
    await sleep(20);
    most = Math.max(most, upnp.ssdp.pendingReplies);
  }
  // A reply may leave before a sample is taken (its delay is random within
  // MX), so the peak seen is 20 or just under: never above the cap, and more
  // than one search's 10.
  t.ok(most > 10 && most <= 20, `the replies waiting for one source stay at its cap of 20 (two ssdp:all), not 10 per search: at most ${most} seen`);

  const other = createSocket('udp4');
  const got: string[] = [];
  other.on('message', (m) => got.push(m.toString('latin1')));
  await new Promise<void>((r) => other.bind(0, '127.0.0.3', () => r()));
  other.setMulticastInterface('127.0.0.1');
  other.send(msearch('upnp:rootdevice', `${GROUP}:1900`, '1'), SSDP_PORT, GROUP);
  // Due within its MX of 1 s; a loaded machine may send it late, a starved source never.
  await until(() => got.length >= 1, 5000, 50);
  await sleep(200);
  t.equal(got.length, 1, '127.0.0.3 answered within its MX during the flood');
  flood.close();
  other.close();
});

t.test('SSDP: a flood is dropped on arrival, before parsing, beyond a few searches a second per source', async (t) => {
  const flood = createSocket('udp4');
  await new Promise<void>((r) => flood.bind(0, '127.0.0.4', () => r()));
  const before = upnp.ssdp.examined;
  const one = Buffer.from(msearch('upnp:rootdevice', '127.0.0.1:1900', '1'), 'latin1');
  for (let i = 0; i < 1000; i++) flood.send(one, SSDP_PORT, '127.0.0.1');
  await sleep(300);
  const parsed = upnp.ssdp.examined - before;
  t.ok(parsed > 0 && parsed <= 25, `${parsed} of 1 000 searches parsed (a burst of 20, then 10/s)`);
  flood.close();
});

// ---------------------------------------------------------------- fairness

const BR_LAN: LocalAddress[] = [
  { address: mustParseIp('2001:db8:77::1'), family: 6, interface: 'br-lan', bindAddress: '2001:db8:77::1', prefix: parsePrefix('2001:db8:77::/64') as Prefix },
  { address: mustParseIp('fd00::1'), family: 6, interface: 'br-lan', bindAddress: 'fd00::1', prefix: parsePrefix('fd00::/64') as Prefix },
  { address: mustParseIp('192.168.77.1'), family: 4, interface: 'br-lan', bindAddress: '192.168.77.1', prefix: parsePrefix('192.168.77.0/24') as Prefix },
  { address: mustParseIp('2001:db8:78::1'), family: 6, interface: 'guest', bindAddress: '2001:db8:78::1', prefix: parsePrefix('2001:db8:78::/64') as Prefix },
];
const host = (address: string, zone?: string): Requester => requesterOf(mustParseIp(address), zone, BR_LAN);
/** 2 000 addresses of one /64, as one host can have. */
const flood64 = Array.from({ length: 2000 }, (_, i) => host(`2001:db8:77::${(0x1000 + i).toString(16)}:${i.toString(16)}`));

t.test('HTTP: 200 connections from 200 addresses of one /64 hold a quarter of the slots; another /64 is still served', async (t) => {
  // Each connection a request head that never ends: it holds its slot.
  const p = asPeer((port) => `2001:db8:77::${port.toString(16)}`);
  const held: Socket[] = [];
  let refused = 0;
  try {
    await Promise.all(
      Array.from({ length: 200 }, () =>
        new Promise<void>((resolve) => {
          const sock = createConnection({ host: '127.0.0.1', port: HTTP_PORT });
          sock.on('error', () => undefined);
          sock.on('data', (c) => {
            if (c.toString('latin1').startsWith('HTTP/1.1 503 ')) refused++;
          });
          sock.on('close', () => resolve());
          sock.write('GET / HTTP/1.1\r\n');
          held.push(sock);
          // A refused one is answered and closed; a held one stays open. 5 s
          // (all in parallel), not 0.5: a loaded machine answered some 503s later.
          setTimeout(resolve, 5000);
        }),
      ),
    );
  } finally {
    p.restore();
  }
  t.equal(refused, 200 - HTTP_SLOTS.total / 4, `the /64 got ${200 - refused} connections, a quarter of ${HTTP_SLOTS.total}; the rest 503`);
  const other = asPeer('fd00::5');
  try {
    t.match(await get(descriptionPath), /^HTTP\/1\.1 200 /, 'a host of another /64 is served meanwhile');
  } finally {
    other.restore();
  }
  t.match(await get(descriptionPath), /^HTTP\/1\.1 200 /, 'and an IPv4 host');
  for (const s of held) s.destroy();
});

t.test('fair shares: per /64, per interface, given back once', async (t) => {
  const slots = new FairShare(HTTP_SLOTS);
  let granted = 0;
  for (const who of flood64) for (let i = 0; i < HTTP_SLOTS.perSource; i++) if (slots.take(who)) granted++;
  t.equal(granted, HTTP_SLOTS.total / 4, `the /64 holds a quarter: ${granted} of ${HTTP_SLOTS.total}`);
  t.ok(slots.take(host('fd00::5')), "the same LAN's ULA /64");
  t.ok(slots.take(host('192.168.77.5')), 'an IPv4 host');
  t.ok(slots.take(host('2001:db8:78::5')), 'a host on another interface');
  t.ok(slots.take(host('fe80::5', 'br-lan')), 'a link-local host');

  // A flood from many /64s of one interface leaves the other interface room.
  const wide = new FairShare(HTTP_SLOTS);
  for (let n = 0; n < 200; n++) for (let i = 0; i < 8; i++) wide.take(host(n % 2 ? `fd00::${n.toString(16)}` : `2001:db8:77::${n.toString(16)}`));
  for (let n = 0; n < 50; n++) wide.take(host(`192.168.77.${n + 10}`));
  t.ok(wide.size <= (HTTP_SLOTS.total * 3) / 4, `br-lan holds at most three quarters (${wide.size})`);
  t.ok(wide.take(host('2001:db8:78::5')), 'the guest interface is still served');

  // Given back: the slot is free again, once.
  const one = new FairShare(HTTP_SLOTS);
  const release = one.take(host('192.168.77.9'));
  release?.();
  release?.();
  t.equal(one.size, 0);
  t.equal(one.heldBy(mustParseIp('192.168.77.9')), 0);
});

t.test('GENA: 2 000 addresses of one /64 cannot take every subscription; another /64 and an IPv4 host still subscribe', async (t) => {
  const gena = new GenaManager(() => [['X', '1']], memoryLogger(), DEFAULT_GENA_LIMITS, Date.now, async () => true);
  const subscribe = (who: Requester) => {
    const callback: CallbackUrl = { url: `http://[${who.address}]:5000/`, address: who.address, port: 5000, path: '/' };
    return gena.handle('WANIPConnection', { kind: 'subscribe', callbacks: [callback], timeoutSeconds: 300 }, who).status;
  };
  let granted = 0;
  for (const who of flood64) for (let i = 0; i < 2; i++) if (subscribe(who) === 200) granted++;
  t.equal(granted, DEFAULT_GENA_LIMITS.maxSubscriptions / 4, `the /64 holds a quarter: ${granted} of ${DEFAULT_GENA_LIMITS.maxSubscriptions}`);
  t.equal(subscribe(host('fd00::5')), 200, 'another /64');
  t.equal(subscribe(host('192.168.77.5')), 200, 'an IPv4 host');
  gena.stop();
  t.equal(gena.size, 0);
  t.equal(subscribe(flood64[0] as Requester), 200, 'unsubscribed slots are free again');
  gena.stop();
});

// ---------------------------------------------------------------- GENA deliveries

/** A callback server on 127.0.0.1; `onRequest` gets each connection once its request head is in. */
async function callbackServer(onRequest: (sock: Socket, head: string) => void): Promise<{ url: CallbackUrl; closedAt: number[]; heads: string[]; close: () => void }> {
  const closedAt: number[] = [];
  const heads: string[] = [];
  const socks = new Set<Socket>();
  const srv = createServer((sock) => {
    socks.add(sock);
    let text = '';
    let seen = false;
    sock.on('data', (c) => {
      text += c.toString('latin1');
      if (!seen && text.includes('</e:propertyset>')) {
        seen = true;
        heads.push(text);
        onRequest(sock, text);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      socks.delete(sock);
      closedAt.push(performance.now());
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  const address = mustParseIp('127.0.0.1');
  return {
    url: { url: `http://127.0.0.1:${port}/evt`, address, port, path: '/evt' },
    closedAt,
    heads,
    close: () => {
      for (const s of socks) s.destroy();
      srv.close();
    },
  };
}

const subscriber = requesterOf(mustParseIp('127.0.0.1'), undefined, LAN);

t.test('GENA: a callback server trickling one byte a second has its delivery cut at the deadline', async (t) => {
  const timers: NodeJS.Timeout[] = [];
  const cb = await callbackServer((sock) => {
    const reply = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
    for (let i = 0; i < reply.length; i++) timers.push(setTimeout(() => sock.write(reply[i] as string), 1000 * (i + 1)));
  });
  const gena = new GenaManager(() => [['X', '1']], memoryLogger(), { ...DEFAULT_GENA_LIMITS, deliveryDeadlineMs: 1500 });
  const asked = performance.now();
  t.equal(gena.handle('WANIPConnection', { kind: 'subscribe', callbacks: [cb.url], timeoutSeconds: 300 }, subscriber).status, 200);
  // Uncut, the reply trickles for ~38 s: a cut at 1.5 s, however late, stands out.
  const deadline = asked + 10_000;
  while (cb.closedAt.length === 0 && performance.now() < deadline) await sleep(50);
  t.equal(cb.heads.length, 1, 'the initial event was sent');
  const took = (cb.closedAt[0] ?? Infinity) - asked;
  t.ok(took < 5000, `the delivery was cut at the 1.5 s deadline (after ${took.toFixed(0)} ms), though bytes kept coming`);
  for (const x of timers) clearTimeout(x);
  gena.stop();
  cb.close();
});

t.test('GENA: 1 000 changes while a delivery hangs leave one NOTIFY queued, carrying the newest values', async (t) => {
  const cb = await callbackServer(() => undefined);
  let value = 0;
  const gena = new GenaManager(() => [['PortMappingNumberOfEntries', String(value)]], memoryLogger(), { ...DEFAULT_GENA_LIMITS, deliveryDeadlineMs: 1500 });
  gena.start(3_600_000);
  const answer = gena.handle('WANIPConnection', { kind: 'subscribe', callbacks: [cb.url], timeoutSeconds: 300 }, subscriber);
  const sid = answer.headers.find(([k]) => k === 'SID')?.[1] ?? '';
  await until(() => cb.heads.length >= 1, 5000, 50);
  t.equal(cb.heads.length, 1, 'the initial event is on its way, unanswered');
  let most = 0;
  for (let i = 0; i < 1000; i++) {
    value++;
    gena.poll();
    most = Math.max(most, gena.queuedFor(sid));
  }
  t.equal(most, 1, 'never more than one NOTIFY waiting');
  await until(() => cb.heads.length >= 2, 10_000, 50);
  t.equal(cb.heads.length, 2, 'after the deadline, one more NOTIFY');
  t.match(cb.heads[1], /<PortMappingNumberOfEntries>1000<\/PortMappingNumberOfEntries>/, 'with the newest value');
  t.match(cb.heads[1], /\r\nSEQ: 1\r\n/i, 'and the next SEQ');
  gena.stop();
  cb.close();
});
