// The whole daemon in-process on loopback with the memory backend, driven by
// real UDP sockets: PCP and NAT-PMP over IPv4 and IPv6.

import { createSocket, type Socket } from 'node:dgram';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULTS, type Config } from '../src/config.js';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { sleep, until } from './helpers/wait.js';
import { mustParseIp } from '../src/net/address.js';
import { decodeNatPmpResponse, encodeNatPmpMapRequest } from '../src/protocols/natpmp/codec.js';
import { decodePcpResponse, encodePcpRequest } from '../src/protocols/pcp/codec.js';

// Loopback is the LAN, but only 127.0.0.1/32 and ::1/128: 127.0.0.2 is then
// a host outside the LAN that happens to reach a LAN address.
const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
  lo: [
    { address: '127.0.0.1', netmask: '255.255.255.255', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/32' },
    { address: '::1', netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', family: 'IPv6', mac: '00:00:00:00:00:00', internal: true, cidr: '::1/128', scopeid: 0 },
  ],
  wan0: [{ address: '198.51.100.1', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '198.51.100.1/24' }],
});

const PORT = 20000 + (process.pid % 20000);
const log = memoryLogger();
const cfg: Config = { ...DEFAULTS, stateDir: mkdtempSync(join(tmpdir(), 'portcullis-it-')), lan: ['lo'], wans: ['wan0'], backend: 'memory', port: PORT, announce: false, rateLimit: { perSecond: 20, burst: 40 }, upnp: { ...DEFAULTS.upnp, enabled: false } };
let daemon: Daemon;

t.before(async () => {
  daemon = await startDaemon(cfg, log, { interfaces });
});
t.teardown(async () => {
  await daemon.stop();
});

/** A client socket connect()ed to the server: it only accepts replies from that exact address and port. */
async function client(server: string, bindAddress?: string): Promise<Socket> {
  const s = createSocket(server.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((r) => s.bind(0, bindAddress, () => r()));
  await new Promise<void>((r) => s.connect(PORT, server, () => r()));
  return s;
}

function ask(s: Socket, msg: Buffer, timeoutMs = 5000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.off('message', onMsg);
      resolve(undefined);
    }, timeoutMs);
    const onMsg = (m: Buffer) => {
      clearTimeout(timer);
      s.off('message', onMsg);
      resolve(m);
    };
    s.on('message', onMsg);
    s.send(msg);
  });
}

const nonce = Buffer.from('00112233445566778899aabb', 'hex');
const mapRequest = (clientAddress: string, internalPort: number, lifetime = 3600) =>
  encodePcpRequest({
    opcode: 1,
    lifetime,
    clientAddress: mustParseIp(clientAddress),
    map: { nonce, protocol: 17, internalPort, externalPort: 0, externalAddress: mustParseIp('::') },
  });

t.test('NAT-PMP over IPv4: external address, map, delete', async (t) => {
  const s = await client('127.0.0.1');
  t.teardown(() => s.close());
  const addr = await ask(s, Buffer.from([0, 0]));
  t.equal(addr?.length, 12, '12-octet reply from the address asked');
  t.match(decodeNatPmpResponse(addr as Buffer), { ok: true, msg: { result: 0, externalAddress: '198.51.100.1' } });
  const map = await ask(s, encodeNatPmpMapRequest(1, 40001, 40001, 3600000));
  t.equal(map?.length, 16);
  t.match(decodeNatPmpResponse(map as Buffer), { ok: true, msg: { result: 0, internalPort: 40001, externalPort: 40001, lifetime: 86400 } });
  const del = await ask(s, encodeNatPmpMapRequest(1, 40001, 0, 0));
  t.match(decodeNatPmpResponse(del as Buffer), { ok: true, msg: { result: 0, externalPort: 0, lifetime: 0 } });
  t.equal(daemon.service.count(), 0);
});

t.test('PCP over IPv4: MAP reply is exactly 60 octets with the external address', async (t) => {
  const s = await client('127.0.0.1');
  t.teardown(() => s.close());
  const reply = (await ask(s, mapRequest('127.0.0.1', 40002))) as Buffer;
  t.equal(reply.length, 60);
  t.match(decodePcpResponse(reply), { ok: true, msg: { result: 0, lifetime: 3600, map: { externalAddress: '198.51.100.1', externalPort: 40002 } } });
  const del = decodePcpResponse((await ask(s, mapRequest('127.0.0.1', 40002, 0))) as Buffer);
  t.match(del, { ok: true, msg: { result: 0, lifetime: 0 } });
});

t.test('PCP over IPv6: a pinhole, external address = the client itself', async (t) => {
  const s = await client('::1');
  t.teardown(() => s.close());
  const reply = (await ask(s, mapRequest('::1', 40003))) as Buffer;
  t.equal(reply.length, 60);
  t.match(decodePcpResponse(reply), { ok: true, msg: { result: 0, map: { externalAddress: '::1', externalPort: 40003 } } });
  const ann = (await ask(s, encodePcpRequest({ opcode: 0, lifetime: 0, clientAddress: mustParseIp('::1') }))) as Buffer;
  t.equal(ann.length, 24, 'ANNOUNCE answered over IPv6');
});

t.test('NAT-PMP over IPv6 gets PCP UNSUPP_VERSION', async (t) => {
  const s = await client('::1');
  t.teardown(() => s.close());
  const r = (await ask(s, Buffer.from([0, 0]))) as Buffer;
  t.equal(r[0], 2);
  t.equal(r[3], 1);
});

t.test('hostile bytes never stop the server', async (t) => {
  const s = await client('127.0.0.1');
  t.teardown(() => s.close());
  const replies: Buffer[] = [];
  s.on('message', (m) => replies.push(m));
  for (const junk of [Buffer.alloc(0), Buffer.from([2]), Buffer.alloc(65000, 0xff), Buffer.alloc(65000, 3), Buffer.from('02ff', 'hex'), Buffer.alloc(1101, 2)]) s.send(junk);
  // The two RFC answers, then a moment more to catch any that should not come.
  await until(() => replies.length >= 2, 5000, 50);
  await sleep(200);
  s.removeAllListeners('message');
  // Answers: none for 0xff… (R bit set: a response), UNSUPP_VERSION for
  // version 3, and MALFORMED_REQUEST for 1101
  // octets, each a copy of the request cut to 1100 (RFC 6887 §8.2).
  t.same(replies.map((r) => [r.length, r[3]]).sort(), [[1100, 1], [1100, 3]], 'only the RFC answers, none larger than 1100');
  const ok = await ask(s, Buffer.from([0, 0]));
  t.equal(ok?.length, 12, 'still serving');
});

t.test('a source outside the LAN prefixes gets silence', async (t) => {
  const s = await client('127.0.0.1', '127.0.0.2');
  t.teardown(() => s.close());
  t.equal(await ask(s, Buffer.from([0, 0]), 500), undefined);
});

t.test('a flood from one host is rate-limited; another host is still served', async (t) => {
  const flood = await client('127.0.0.1');
  const other = await client('::1');
  t.teardown(() => {
    flood.close();
    other.close();
  });
  let answers = 0;
  flood.on('message', () => answers++);
  const started = Date.now();
  for (let i = 0; i < 300; i++) flood.send(Buffer.from([0, 0]));
  const r = await ask(other, encodePcpRequest({ opcode: 0, lifetime: 0, clientAddress: mustParseIp('::1') }));
  t.equal(r?.length, 24, 'other host answered during the flood');
  await until(() => answers >= 30, 5000, 50);
  await sleep(300);
  // However long a loaded machine took, the bucket grants at most its burst and its rate over the time since the flood began.
  const { perSecond, burst } = cfg.rateLimit;
  const most = burst + perSecond * ((Date.now() - started) / 1000) + 5;
  t.ok(answers >= 30 && answers <= most, `flooder got ${answers} of 300 answers (burst ${burst}, ${perSecond}/s: at most ${most.toFixed(0)})`);
});

t.test('decisions are logged as JSON-ready objects', async (t) => {
  t.ok(log.lines.some((l) => l.event === 'map' && l.via === 'natpmp' && l.verdict === 'granted' && l.lifetime === 86400));
  t.ok(log.lines.some((l) => l.event === 'listening'));
});
