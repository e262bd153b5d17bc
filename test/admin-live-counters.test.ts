// The counters the admin page's live events add up (src/server/admin/events.ts):
// the neighbour table's version moves when a device comes, goes or changes
// its link-layer address, and not when the kernel merely re-reads an entry;
// the login budget's giveBack returns what a good login took, never more
// than the burst.

import t from 'tap';
import { mustParseIp } from '../src/net/address.js';
import type { Neighbour } from '../src/net/neighbours.js';
import { Neighbours } from '../src/net/neighbours.js';
import { RateLimiter } from '../src/net/rate-limit.js';

const row = (address: string, lladdr: string, updated?: number): Neighbour => ({ address: mustParseIp(address), interface: 'br-lan', lladdr, ...(updated !== undefined ? { updated } : {}) });

t.test('the neighbour table\'s version: devices that come, go or change hardware move it; a re-read of the same table does not', async (t) => {
  let rows: Neighbour[] = [];
  let now = 0;
  const table = new Neighbours(async () => rows, () => now, 1000);
  const read = async (next: Neighbour[]) => {
    rows = next;
    now += 1000;
    await table.refresh();
    return table.version();
  };
  const v0 = table.version();
  const v1 = await read([row('192.168.1.2', '02:00:00:00:00:02', 5)]);
  t.ok(v1 > v0, 'a device came');
  t.equal(await read([row('192.168.1.2', '02:00:00:00:00:02', 1)]), v1, 'the same device re-read (another `updated`): no move');
  const v2 = await read([row('192.168.1.2', '02:00:00:00:00:02'), row('2001:db8::2', '02:00:00:00:00:02')]);
  t.ok(v2 > v1, 'a new address');
  const v3 = await read([row('192.168.1.2', '02:00:00:00:00:03'), row('2001:db8::2', '02:00:00:00:00:02')]);
  t.ok(v3 > v2, 'the address now names another device');
  const v4 = await read([row('2001:db8::2', '02:00:00:00:00:02')]);
  t.ok(v4 > v3, 'an address left');
  t.equal(await read([row('2001:db8::2', '02:00:00:00:00:02')]), v4, 'and nothing else: no move');
});

t.test('giveBack: a good login\'s token returned, never above the burst', async (t) => {
  const limiter = new RateLimiter(0, 2, 16, () => 0);
  t.ok(limiter.take('192.0.2.1'));
  limiter.giveBack('192.0.2.1');
  limiter.giveBack('192.0.2.1');
  t.ok(limiter.take('192.0.2.1') && limiter.take('192.0.2.1'), 'the burst again');
  t.notOk(limiter.take('192.0.2.1'), 'but no more than the burst');
  limiter.giveBack('192.0.2.9');
  t.ok(limiter.take('192.0.2.9') && limiter.take('192.0.2.9'), 'a source never seen: its burst');
  t.notOk(limiter.take('192.0.2.9'), 'and nothing more for the giveBack before it was seen');
});
