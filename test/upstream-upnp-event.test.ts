// Issue 14: behind the ISP's NAT the UPnP IGD's ExternalIPAddress is
// upstream's address (RFC 7648), so when upstream's address changes — the
// ISP's server restarted with a new one, and the CPE repaired its mappings —
// the WANIPConnection event goes out to subscribers with the new address,
// and GetExternalIPAddress answers it. The daemon in-process with the
// memory firewall and a scripted upstream; the NOTIFY arrives over HTTP.

import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { encodePcpResponse } from '../src/protocols/pcp/codec.js';
import { Opcode, ResultCode } from '../src/protocols/pcp/constants.js';
import { mustParseIp } from '../src/net/address.js';
import { cgnDaemon } from './helpers/cgn-daemon.js';
import { mapRequests } from './helpers/map-request.js';

const LAN = mustParseIp('127.0.0.1');
const FIRST = '203.0.113.9';
const NEXT = mustParseIp('203.0.113.10');

t.test('upstream restarts with a new address: subscribers hear ExternalIPAddress change to it', async (t) => {
  const c = await cgnDaemon({ upnp: true });
  t.teardown(async () => {
    await c.daemon.stop();
    c.upstream.sock.close();
  });
  const upnp = c.daemon.upnp;
  if (!upnp) throw new Error('no UPnP door');
  const notifies: string[] = [];
  const callback = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      notifies.push(body);
      res.end();
    });
  });
  await new Promise<void>((r) => callback.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => callback.close());
  const port = (callback.address() as AddressInfo).port;

  t.ok((await c.daemon.service.map(mapRequests({ client: LAN })({ via: 'upnp', internalPort: 40001 }))).ok, 'a mapping upstream');
  const sub = upnp.gena.handle('WANIPConnection', { kind: 'subscribe', callbacks: [{ url: `http://127.0.0.1:${port}/evt`, address: LAN, port, path: '/evt' }] }, { address: LAN, host: undefined, interface: 'lo' });
  t.equal(sub.status, 200, 'subscribed');
  const heard = async (address: string) => {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if (notifies.some((n) => n.includes(`<ExternalIPAddress>${address}</ExternalIPAddress>`))) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  };
  t.ok(await heard(FIRST), 'the initial event tells upstream\'s address');

  // The ISP's server restarts: its epoch starts again, its address is another; it announces (RFC 6887 §14.1.3).
  c.upstream.epoch = 0;
  c.upstream.external = NEXT;
  const wirePort = c.upstream.seen.at(-1)!.from.port;
  c.upstream.sock.send(encodePcpResponse({ opcode: Opcode.ANNOUNCE, result: ResultCode.SUCCESS, lifetime: 0, epoch: 0 }), wirePort, '127.0.0.1');
  t.ok(await heard(NEXT), 'the WANIPConnection event carries the new address');
  const get = await upnp.control.handle({ serviceName: 'WANIPConnection', serviceVersion: 2, action: 'GetExternalIPAddress', args: new Map(), client: LAN });
  t.same(get, { ok: true, out: [['NewExternalIPAddress', NEXT]] }, 'and GetExternalIPAddress answers it');
  t.ok(c.daemon.service.mappings().every((m) => m.origin === 'static' || m.upstream?.externalAddress === NEXT), 'the mapping was made again at the new address');
});
