// dnsmasq's lease file (src/net/dhcp-leases.ts) and what the service does
// with it (RFC 6887 §15): no lifetime beyond the host's lease, and a host
// whose lease ended loses its mappings.

import { mkdtempSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import { DhcpLeases, parseDnsmasqLeases } from '../src/net/dhcp-leases.js';
import type { LeaseView } from '../src/service/mapping-service.js';
import { harness } from './helpers/harness.js';
import { mapRequests } from './helpers/map-request.js';

const V4 = '1800000600 aa:bb:cc:dd:ee:01 192.168.77.10 laptop 01:aa:bb:cc:dd:ee:01';
const V6 = '1800003600 87654321 2001:db8:77::10 laptop 00:01:00:01:2c:3d:4e:5f:aa:bb:cc:dd:ee:01';

t.test('parser: IPv4 lines, the duid line, IPv6 lines with IAID, * fields, infinite leases', async (t) => {
  const text = [
    V4,
    '0 02-aa:bb:cc:dd:ee:02 192.168.77.11 * *',
    'duid 00:01:00:01:2c:3d:4e:5f:00:11:22:33:44:55',
    V6,
    '1800000100 T12 2001:DB8:77::11 * *',
    '',
  ].join('\n');
  const p = parseDnsmasqLeases(text);
  t.equal(p?.skipped, 0);
  t.same(p?.leases, [
    { family: 4, mac: 'aa:bb:cc:dd:ee:01', address: '192.168.77.10', expires: 1800000600, hostname: 'laptop', clientId: '01:aa:bb:cc:dd:ee:01' },
    { family: 4, mac: '02-aa:bb:cc:dd:ee:02', address: '192.168.77.11', expires: 0, hostname: undefined, clientId: undefined },
    { family: 6, iaid: 87654321, temporary: undefined, address: '2001:db8:77::10', expires: 1800003600, hostname: 'laptop', clientId: '00:01:00:01:2c:3d:4e:5f:aa:bb:cc:dd:ee:01' },
    { family: 6, iaid: 12, temporary: true, address: '2001:db8:77::11', expires: 1800000100, hostname: undefined, clientId: undefined },
  ]);
});

t.test('parser: garbage lines are skipped and counted, the rest is read', async (t) => {
  const garbage = [
    'hello world',
    '',
    '1800000600 aa:bb:cc:dd:ee:03 192.168.77.300 x *',
    'soon aa:bb:cc:dd:ee:03 192.168.77.12 x *',
    '1800000600 aa:bb:cc:dd:ee:03 192.168.77.12 x',
    '1800000600 aa:bb:cc:dd:ee:03 192.168.77.12 x * extra',
    '1800000600 zz:bb 192.168.77.12 x *',
    '1800000600 aa:bb:cc:dd:ee:03 192.168.77.12 bad/name *',
    '1800000600 aa:bb:cc:dd:ee:03 192.168.77.12 x not-hex',
    '1800000600 99999999999 2001:db8:77::12 x *',
    '1800000600 aa:bb:cc:dd:ee:03 fe80::1%eth0 x *',
    '1800000600  192.168.77.12 x *',
    `1800000600 aa:bb:cc:dd:ee:03 192.168.77.12 ${'a'.repeat(2000)} *`,
    '\u0000\u0001\u00ff',
  ];
  const p = parseDnsmasqLeases([V4, ...garbage, V6].join('\n'));
  t.equal(p?.skipped, garbage.length);
  t.same(p?.leases.map((l) => l.address), ['192.168.77.10', '2001:db8:77::10']);
});

t.test('parser: one address twice keeps the later end; more lines than the cap is refused whole', async (t) => {
  const p = parseDnsmasqLeases(`${V4}\n1800009999 aa:bb:cc:dd:ee:01 192.168.77.10 laptop *\n1800000001 aa:bb:cc:dd:ee:01 192.168.77.10 laptop *\n`);
  t.same(p?.leases.map((l) => l.expires), [1800009999]);
  t.equal(parseDnsmasqLeases(`${V4}\n${V4}\n${V4}\n`, 2), undefined);
  t.ok(parseDnsmasqLeases(`${V4}\n${V4}\n`, 2));
});

t.test('the file: read again only when it changes, at most every check interval; a file over the cap is not used', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-leases-'));
  const file = join(dir, 'dhcp.leases');
  let now = 0;
  const leases = new DhcpLeases(file, { now: () => now, checkEveryMs: 5000, maxBytes: 4096 });
  t.match(await leases.refresh(), { changed: false });
  t.match(leases.error, /ENOENT/, 'no file yet: said, nothing in force');
  writeFileSync(file, `${V4}\n${V6}\n`);
  t.match(await leases.refresh(), { changed: false }, 'not looked at again within 5 s');
  now += 5000;
  t.match(await leases.refresh(), { changed: true, lost: [] });
  t.equal(leases.error, undefined);
  t.equal(leases.leaseEnd(mustParseIp('192.168.77.10')), 1800000600_000);
  t.equal(leases.leaseOf(mustParseIp('2001:db8:77::10'))?.iaid, 87654321);
  t.equal(leases.leaseEnd(mustParseIp('192.168.77.99')), undefined);

  writeFileSync(file, `${V6}\n`);
  utimesSync(file, new Date(), new Date(Date.now() + 10_000));
  now += 5000;
  t.same(await leases.refresh(), { changed: true, lost: ['192.168.77.10'] }, 'a lease that left the file is lost');

  writeFileSync(file, `${V4}\n${'x'.repeat(5000)}\n`);
  utimesSync(file, new Date(), new Date(Date.now() + 20_000));
  now += 5000;
  t.match(await leases.refresh(), { changed: false });
  t.match(leases.error, /over the 4096-byte limit/);
  t.equal(leases.leaseEnd(mustParseIp('2001:db8:77::10')), 1800003600_000, 'the last good leases stay in force');
  t.equal(leases.leaseEnd(mustParseIp('192.168.77.10')), undefined);
});

t.test('the file: an unfinished last line is used only once the file holds still', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-leases-'));
  const file = join(dir, 'dhcp.leases');
  let now = 0;
  const leases = new DhcpLeases(file, { now: () => now });
  writeFileSync(file, `${V4}\n${V6}\n`);
  await leases.refresh();
  // dnsmasq caught mid-write: the IPv6 line cut short.
  writeFileSync(file, `${V4}\n1800003600 87654321 2001:db8:77`);
  utimesSync(file, new Date(), new Date(Date.now() + 10_000));
  now += 5000;
  t.same(await leases.refresh(), { changed: false, lost: [] }, 'nobody loses a lease to a half-written file');
  t.equal(leases.size, 2);
  now += 5000;
  t.match(await leases.refresh(), { changed: true, lost: ['2001:db8:77::10'] }, 'still so at the next check: it is the file');
});

/** A lease view the test sets by hand: wall-clock milliseconds per address. */
function view(): LeaseView & { set(a: IpAddress, end: number | undefined): void } {
  const ends = new Map<IpAddress, number>();
  return {
    leaseEnd: (a) => ends.get(a),
    set: (a, end) => (end === undefined ? ends.delete(a) : ends.set(a, end)),
  };
}

const A = mustParseIp('192.168.77.10');
const B = mustParseIp('192.168.77.11');
const A6 = mustParseIp('2001:db8:77::10');
const req = mapRequests({ client: A, nonce: Buffer.alloc(12, 1) });

t.test('service: a lifetime never exceeds the lease of its internal address; no lease, no cap', async (t) => {
  const h = harness();
  const leases = view();
  h.service.useLeases(leases);
  leases.set(A, h.clock.wall() + 600_500);
  leases.set(A6, Number.POSITIVE_INFINITY);
  t.match(await h.service.map(req({ lifetime: 3600 })), { ok: true, lifetime: 600 }, 'PCP: cut to the 600 s left');
  t.equal(h.firewall.list()[0]?.externalPort, 40000);
  t.match(await h.service.map(req({ internalPort: 40001, lifetime: 3600, via: 'natpmp', nonce: undefined })), { ok: true, lifetime: 600 }, 'NAT-PMP too');
  t.match(
    await h.service.peer({ via: 'pcp', client: A, internalAddress: A, protocol: 6, internalPort: 40002, suggestedExternalPort: 0, remotePeerAddress: mustParseIp('203.0.113.5'), remotePeerPort: 80, lifetime: 3600, nonce: Buffer.alloc(12, 2) }),
    { ok: true, lifetime: 600 },
    'PEER too',
  );
  h.clock.advance(590_000);
  t.match(await h.service.map(req({ lifetime: 3600 })), { ok: true, lifetime: 10 }, 'below the 120 s minimum: the lease wins');
  t.match(await h.service.map(req({ client: A6, internalAddress: A6, lifetime: 3600 })), { ok: true, lifetime: 3600 }, 'an infinite lease caps nothing');
  t.match(await h.service.map(req({ client: B, internalAddress: B, lifetime: 3600 })), { ok: true, lifetime: 3600 }, 'an address with no lease is not capped');
  h.clock.advance(11_000);
  t.match(await h.service.map(req({ internalPort: 40005 })), { ok: false, refusal: 'NOT_AUTHORIZED', lifetime: 30 }, 'an ended lease: refused, with a short error');
});

t.test('service: a lease that ends or leaves the file takes its host\'s mappings out of the kernel', async (t) => {
  const h = harness();
  const leases = view();
  h.service.useLeases(leases);
  // Mappings made before the lease file was known are not capped...
  await h.service.map(req({ lifetime: 3600 }));
  await h.service.map(req({ client: B, internalAddress: B, lifetime: 3600 }));
  await h.service.map(req({ client: A6, internalAddress: A6, lifetime: 3600 }));
  t.equal(h.firewall.list().length, 3);
  leases.set(A, h.clock.wall() + 60_000);
  leases.set(B, h.clock.wall() + 3_600_000);
  leases.set(A6, h.clock.wall() + 3_600_000);
  t.same(await h.service.revokeEndedLeases(), [], 'nothing has ended yet');
  // ...but they go when the lease ends.
  h.clock.advance(60_000);
  const gone = await h.service.revokeEndedLeases();
  t.same(gone.map((m) => m.internalAddress), [A]);
  t.same(h.firewall.list().map((e) => e.internalAddress).sort(), [A6, B].sort(), 'gone from the (memory) kernel');
  t.match(h.log.lines.find((e) => e.event === 'mapping-revoked'), { internal: A, reason: 'DHCP lease ended' });
  // B released its lease: dnsmasq took the line out of the file.
  leases.set(B, undefined);
  t.same((await h.service.revokeEndedLeases([B])).map((m) => m.internalAddress), [B]);
  t.same(h.firewall.list().map((e) => e.internalAddress), [A6]);
  // A lost lease whose removal the firewall refused is tried again.
  leases.set(A6, undefined);
  h.firewall.failBatches = 1;
  t.same(await h.service.revokeEndedLeases([A6]), []);
  t.equal(h.firewall.list().length, 1, 'still there: the firewall refused');
  t.same((await h.service.revokeEndedLeases()).map((m) => m.internalAddress), [A6], 'removed at the next check');
  t.equal(h.service.count(), 0);
});
