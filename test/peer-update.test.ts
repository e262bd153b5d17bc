// The whole daemon in-process (memory backend, real UDP on loopback) whose
// WAN address changes: RFC 6887 §14.2 mapping updates go to MAP and PEER
// clients alike, each as the response its own request got. Also: the lease
// file of --dhcp-leases reaches the service.

import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULTS, type Config } from '../src/config.js';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { mustParseIp } from '../src/net/address.js';
import { decodePcpResponse, encodePcpRequest } from '../src/protocols/pcp/codec.js';
import { Opcode } from '../src/protocols/pcp/constants.js';

let wan = '198.51.100.1';
const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
  lo: [
    { address: '127.0.0.1', netmask: '255.255.255.255', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/32' },
    { address: '::1', netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', family: 'IPv6', mac: '00:00:00:00:00:00', internal: true, cidr: '::1/128', scopeid: 0 },
  ],
  wan0: [{ address: wan, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: `${wan}/24` }],
});

const PORT = 20000 + ((process.pid + 7919) % 20000);
const dir = mkdtempSync(join(tmpdir(), 'portcullis-peer-update-'));
const leaseFile = join(dir, 'dhcp.leases');
// ::1 holds a DHCPv6 lease with 10 minutes left; 127.0.0.1 has none.
const leaseEnd = (Math.floor(Date.now() / 1000) + 600) * 1000;
writeFileSync(leaseFile, `duid 00:01:00:01:aa:bb:cc:dd:00:11:22:33:44:55\n${leaseEnd / 1000} 1 ::1 host *\n`);
const log = memoryLogger();
const cfg: Config = {
  ...DEFAULTS,
  stateDir: join(dir, 'state'),
  lan: ['lo'],
  wans: ['wan0'],
  backend: 'memory',
  port: PORT,
  announce: false,
  upnp: { ...DEFAULTS.upnp, enabled: false },
  dhcpLeases: leaseFile,
};
let daemon: Daemon;

t.before(async () => {
  daemon = await startDaemon(cfg, log, { interfaces });
});
t.teardown(async () => {
  await daemon.stop();
});

async function client(server: string): Promise<Socket> {
  const s = createSocket(server.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((r) => s.bind(0, () => r()));
  await new Promise<void>((r) => s.connect(PORT, server, () => r()));
  return s;
}

/** The next datagram the socket receives, or undefined after `timeoutMs`. */
async function next(s: Socket, timeoutMs: number): Promise<Buffer | undefined> {
  try {
    const [m] = (await once(s, 'message', { signal: AbortSignal.timeout(timeoutMs) })) as [Buffer];
    return m;
  } catch {
    return undefined;
  }
}

async function ask(s: Socket, msg: Buffer): Promise<Buffer | undefined> {
  const reply = next(s, 5000);
  s.send(msg);
  return reply;
}

const PEER_NONCE = Buffer.from('0f0e0d0c0b0a090807060504', 'hex');
const MAP_NONCE = Buffer.from('00112233445566778899aabb', 'hex');
const REMOTE = mustParseIp('203.0.113.5');

t.test('after the WAN address changes, a PEER client hears a PEER response with the new external address', async (t) => {
  const peer = await client('127.0.0.1');
  const map = await client('127.0.0.1');
  t.teardown(() => [peer, map].forEach((s) => s.close()));
  const asked = Date.now();
  const peerReply = await ask(
    peer,
    encodePcpRequest({
      opcode: Opcode.PEER,
      lifetime: 600,
      clientAddress: mustParseIp('127.0.0.1'),
      peer: { nonce: PEER_NONCE, protocol: 6, internalPort: 40010, externalPort: 0, externalAddress: mustParseIp('0.0.0.0'), remotePeerPort: 443, remotePeerAddress: REMOTE },
    }),
  );
  const granted = decodePcpResponse(peerReply as Buffer);
  t.match(granted, { ok: true, msg: { opcode: Opcode.PEER, result: 0, peer: { externalAddress: '198.51.100.1' } } });
  const externalPort = granted.ok ? granted.msg.peer?.externalPort : undefined;
  const mapReply = await ask(
    map,
    encodePcpRequest({ opcode: Opcode.MAP, lifetime: 600, clientAddress: mustParseIp('127.0.0.1'), map: { nonce: MAP_NONCE, protocol: 17, internalPort: 40011, externalPort: 0, externalAddress: mustParseIp('0.0.0.0') } }),
  );
  t.match(decodePcpResponse(mapReply as Buffer), { ok: true, msg: { opcode: Opcode.MAP, result: 0 } });

  // Renumbered: the daemon sees it at its next poll (every 2 s; late on a loaded machine).
  const peerUpdate = next(peer, 15_000);
  const mapUpdate = next(map, 15_000);
  wan = '198.51.100.2';
  const update = await peerUpdate;
  const heard = Date.now();
  t.ok(update, 'an unsolicited response reached the PEER client');
  t.equal(update?.length, 80, 'a PEER response: 80 octets');
  t.match(decodePcpResponse(update as Buffer), {
    ok: true,
    msg: {
      opcode: Opcode.PEER,
      result: 0,
      peer: { nonce: PEER_NONCE, protocol: 6, internalPort: 40010, externalPort, externalAddress: '198.51.100.2', remotePeerPort: 443, remotePeerAddress: REMOTE },
    },
  });
  const lifetime = decodePcpResponse(update as Buffer);
  // At most the 600 s granted, less the time from the ask to the update (however late the machine ran).
  const least = Math.floor(600 - (heard - asked) / 1000) - 1;
  t.ok(lifetime.ok && lifetime.msg.lifetime >= least && lifetime.msg.lifetime <= 600, `with what the mapping has left (${lifetime.ok ? lifetime.msg.lifetime : '?'} in [${least}, 600])`);
  t.match(decodePcpResponse((await mapUpdate) as Buffer), { ok: true, msg: { opcode: Opcode.MAP, map: { nonce: MAP_NONCE, internalPort: 40011, externalAddress: '198.51.100.2' } } }, 'the MAP client still gets a MAP response');
});

t.test('--dhcp-leases: a lifetime is cut to the lease of the address it is for', async (t) => {
  const s = await client('::1');
  t.teardown(() => s.close());
  const before = Date.now();
  const reply = await ask(
    s,
    encodePcpRequest({ opcode: Opcode.MAP, lifetime: 3600, clientAddress: mustParseIp('::1'), map: { nonce: MAP_NONCE, protocol: 17, internalPort: 40012, externalPort: 0, externalAddress: mustParseIp('::') } }),
  );
  const after = Date.now();
  const r = decodePcpResponse(reply as Buffer);
  // What the lease had left while the request was answered, a second either way for rounding.
  const [low, high] = [Math.floor((leaseEnd - after) / 1000) - 1, Math.min(600, Math.ceil((leaseEnd - before) / 1000) + 1)];
  t.ok(r.ok && r.msg.result === 0 && r.msg.lifetime >= low && r.msg.lifetime <= high, `lifetime ${r.ok ? r.msg.lifetime : '?'} within the lease's remaining [${low}, ${high}]`);
});
