// Issue 14: --flush-on-exit behind the ISP's NAT removes the client
// mappings upstream too before the daemon exits (RFC 7648: what ends here
// ends upstream), so the ISP keeps no port open for what this router
// dropped; the stop waits for upstream's answers only so long (2 s by
// default), never hanging on a silent server.

import t from 'tap';
import { mustParseIp } from '../src/net/address.js';
import { cgnDaemon } from './helpers/cgn-daemon.js';
import { mapRequests } from './helpers/map-request.js';

const LAN = mustParseIp('127.0.0.1');
const req = mapRequests({ client: LAN });

t.test('the stop relays a removal of every client mapping, with its nonce, before the wire closes', async (t) => {
  const c = await cgnDaemon({ cfg: { flushOnExit: true } });
  t.teardown(() => c.upstream.sock.close());
  const a = await c.daemon.service.map(req({ internalPort: 40001 }));
  const b = await c.daemon.service.map(req({ via: 'natpmp', internalPort: 40002, protocol: 6 }));
  t.ok(a.ok && b.ok, 'granted upstream');
  if (!a.ok || !b.ok) return;
  const nonceOf = (port: number) => c.upstream.seen.find((s) => s.req.map?.internalPort === port && s.req.lifetime > 0)?.req.map?.nonce.toString('hex');
  const from = c.upstream.seen.length;
  await c.daemon.stop();
  const removals = c.upstream.seen.slice(from).filter((s) => s.req.lifetime === 0);
  const removed = removals.map((s) => `${s.req.map?.protocol}/${s.req.map?.internalPort}`).sort();
  t.same(removed, [`17/${a.mapping.externalPort}`, `6/${b.mapping.externalPort}`], 'lifetime 0 upstream for both');
  t.same(removals.map((s) => s.req.map?.nonce.toString('hex')).sort(), [nonceOf(a.mapping.externalPort), nonceOf(b.mapping.externalPort)].sort(), 'with the nonces upstream knows them by');
  t.match(c.log.lines.find((l) => l.event === 'upstream-flushed-on-exit'), { asked: 2, answered: 2 });
  t.notOk(c.log.lines.some((l) => l.event === 'upstream-remove-failed'), 'the service\'s own flush after it asked upstream nothing more');
});

t.test('a silent upstream holds the stop up for the deadline at most', async (t) => {
  const c = await cgnDaemon({ cfg: { flushOnExit: true }, flushDeadlineMs: 800 });
  t.teardown(() => c.upstream.sock.close());
  t.ok((await c.daemon.service.map(req({ internalPort: 40003 }))).ok);
  c.upstream.answer = () => undefined;
  const started = Date.now();
  await c.daemon.stop();
  const took = Date.now() - started;
  t.ok(took >= 700 && took < 2500, `stopped in ${took} ms`);
  t.match(c.log.lines.find((l) => l.event === 'upstream-flushed-on-exit'), { asked: 1, answered: 0 });
});

t.test('without --flush-on-exit nothing is removed upstream at stop: the mappings live on there as here', async (t) => {
  const c = await cgnDaemon();
  t.teardown(() => c.upstream.sock.close());
  t.ok((await c.daemon.service.map(req({ internalPort: 40004 }))).ok);
  const from = c.upstream.seen.length;
  await c.daemon.stop();
  t.equal(c.upstream.seen.slice(from).filter((s) => s.req.lifetime === 0 && s.req.map?.internalPort !== 9).length, 0);
});
