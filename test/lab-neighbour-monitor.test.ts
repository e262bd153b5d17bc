// The neighbour table followed through a real `ip monitor neigh` in a
// network namespace: an entry that arrives, changes device and leaves is
// known within moments without another full read (no fork per lookup); a
// monitor that cannot run leaves the table polled as before.

import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { mustParseIp } from '../src/net/address.js';
import { monitorNeighbours, parseMonitorLine, subscribed, type NeighbourChange } from '../src/net/neighbour-monitor.js';
import { Neighbours, parseNeighbours, type Neighbour } from '../src/net/neighbours.js';
import { requireRoot } from './helpers/lab.js';

t.test('parseMonitorLine: learnt, changed, failed and deleted entries; misses and noise say nothing', async (t) => {
  const a = mustParseIp('10.99.0.5');
  t.same(parseMonitorLine('10.99.0.5 dev d0 lladdr 02:00:00:00:00:0A REACHABLE'), { kind: 'learnt', neighbour: { address: a, interface: 'd0', lladdr: '02:00:00:00:00:0a', updated: 0 } });
  t.same(parseMonitorLine('[NEIGH]fd00:99::5 dev d0 lladdr 02:00:00:00:00:06 router STALE'), undefined, 'a glued prefix is not an address');
  t.same(parseMonitorLine('fd00:99::5 dev d0 lladdr 02:00:00:00:00:06 router STALE')?.kind, 'learnt');
  t.same(parseMonitorLine('10.99.0.5 dev d0 FAILED'), { kind: 'gone', address: a, interface: 'd0' });
  t.same(parseMonitorLine('10.99.0.5 dev d0 lladdr 02:00:00:00:00:0a INCOMPLETE'), { kind: 'gone', address: a, interface: 'd0' });
  t.same(parseMonitorLine('Deleted 10.99.0.5 dev d0 lladdr 02:00:00:00:00:0a STALE'), { kind: 'gone', address: a, interface: 'd0' });
  t.equal(parseMonitorLine('miss 10.99.0.5 dev d0 INCOMPLETE'), undefined);
  t.equal(parseMonitorLine('not an address dev d0'), undefined);
  t.equal(parseMonitorLine(''), undefined);
});

const NS = `pcnm-${process.pid}`;
const inNs = (...args: string[]) => {
  const r = spawnSync('ip', ['netns', 'exec', NS, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
};
const waitFor = async (what: () => boolean, ms = 15_000) => {
  for (const end = Date.now() + ms; Date.now() < end; ) {
    if (what()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return what();
};

t.test('a followed table sees an entry arrive, move to another device and leave, with one full read', async (t) => {
  requireRoot();
  spawnSync('ip', ['netns', 'del', NS]);
  const made = spawnSync('ip', ['netns', 'add', NS], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(made.stderr);
  t.teardown(() => void spawnSync('ip', ['netns', 'del', NS]));
  inNs('ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
  inNs('ip', 'link', 'set', 'd0', 'up');
  inNs('ip', 'link', 'set', 'd1', 'up');
  inNs('ip', 'addr', 'add', '10.99.0.1/24', 'dev', 'd0');
  inNs('ip', 'neigh', 'add', '10.99.0.4', 'lladdr', '02:00:00:00:00:04', 'dev', 'd0', 'nud', 'reachable');

  let reads = 0;
  const read = (): Promise<Neighbour[]> =>
    new Promise((resolve) => {
      reads++;
      execFile('ip', ['netns', 'exec', NS, 'ip', '-j', '-s', 'neigh', 'show'], (err, out) => resolve(err ? [] : parseNeighbours(out)));
    });
  const n = new Neighbours(read, () => performance.now(), 0);
  const states: boolean[] = [];
  const whys: string[] = [];
  const stop = n.follow({ command: ['ip', 'netns', 'exec', NS, 'ip', 'monitor', 'neigh'], onState: (running, why) => (states.push(running), running || whys.push(why ?? '?')) });
  t.teardown(stop);
  t.ok(await waitFor(() => states.includes(true)), 'the monitor runs and the first full read is merged');
  t.equal(n.deviceOf(mustParseIp('10.99.0.4')), 'd0/02:00:00:00:00:04', 'what was there before comes from the full read');

  const b = mustParseIp('10.99.0.5');
  t.equal(n.deviceOf(b), undefined);
  inNs('ip', 'neigh', 'add', '10.99.0.5', 'lladdr', '02:00:00:00:00:05', 'dev', 'd0', 'nud', 'reachable');
  t.ok(await waitFor(() => n.deviceOf(b) === 'd0/02:00:00:00:00:05'), 'an entry that arrives is known');
  inNs('ip', 'neigh', 'change', '10.99.0.5', 'lladdr', '02:00:00:00:00:07', 'dev', 'd0', 'nud', 'reachable');
  t.ok(await waitFor(() => n.deviceOf(b) === 'd0/02:00:00:00:00:07'), 'another host taking the address over is another device');
  t.ok(
    n.entries().some((e) => e.address === b && e.updated !== undefined && e.updated < 5),
    'an announced entry says how recently it changed',
  );
  inNs('ip', 'neigh', 'del', '10.99.0.5', 'dev', 'd0');
  t.ok(await waitFor(() => n.deviceOf(b) === undefined), 'an entry that leaves is forgotten');
  await n.refresh();
  t.equal(reads, 1, `one full read: lookups and refreshes of a followed table fork nothing (states ${JSON.stringify(states)}, ends ${JSON.stringify(whys)})`);
});

t.test('"spawned" is said once ip is subscribed, not when the process starts: a change made at that moment is announced', async (t) => {
  requireRoot();
  const ns = `${NS}s`;
  spawnSync('ip', ['netns', 'del', ns]);
  const made = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(made.stderr);
  t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
  const run = (...args: string[]) => spawnSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8' });
  run('ip', 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1');
  run('ip', 'link', 'set', 'd0', 'up');
  run('ip', 'link', 'set', 'd1', 'up');
  run('ip', 'addr', 'add', '10.98.0.1/24', 'dev', 'd0');

  // The process starts at once but binds its netlink socket half a second
  // later (as a loaded machine can make `ip` do): the add below, made the
  // moment "spawned" is said, must be announced.
  const changes: NeighbourChange[] = [];
  let spawnedAt = 0;
  const startedAt = Date.now();
  const stop = monitorNeighbours(
    {
      spawned: () => {
        spawnedAt = Date.now();
        run('ip', 'neigh', 'add', '10.98.0.7', 'lladdr', '02:00:00:00:00:77', 'dev', 'd0', 'nud', 'reachable');
      },
      change: (c) => changes.push(c),
      lost: () => {},
      ended: () => {},
    },
    ['ip', 'netns', 'exec', ns, 'sh', '-c', 'sleep 0.5; exec ip monitor neigh'],
  );
  t.teardown(stop);
  t.ok(await waitFor(() => spawnedAt > 0), 'spawned is said');
  t.ok(spawnedAt - startedAt >= 400, `not before ip bound its socket (${spawnedAt - startedAt} ms after the start)`);
  t.ok(
    await waitFor(() => changes.some((c) => c.kind === 'learnt' && c.neighbour.lladdr === '02:00:00:00:00:77'), 3000),
    'the entry added at that moment is announced',
  );
});

t.test('subscribed: false for a process without a bound netlink socket, true for ip monitor', async (t) => {
  const { spawn } = await import('node:child_process');
  const sleeper = spawn('sleep', ['5']);
  const monitor = spawn('ip', ['monitor', 'neigh']);
  t.teardown(() => {
    sleeper.kill('SIGKILL');
    monitor.kill('SIGKILL');
  });
  await new Promise((r) => monitor.once('spawn', r));
  t.ok(await waitFor(() => subscribed(monitor.pid as number), 3000), 'ip monitor neigh: subscribed');
  t.notOk(subscribed(sleeper.pid as number), 'sleep: not');
  t.notOk(subscribed(2 ** 22 + 1), 'no such process: not');
});

t.test('a monitor that cannot run leaves the table polled', async (t) => {
  let reads = 0;
  const n = new Neighbours(async () => (reads++, [{ address: mustParseIp('10.99.0.9'), interface: 'd0', lladdr: '02:00:00:00:00:09' }]), () => performance.now(), 0);
  const states: [boolean, string | undefined][] = [];
  const stop = n.follow({ command: ['/nonexistent/ip', 'monitor', 'neigh'], onState: (running, why) => states.push([running, why]) });
  t.teardown(stop);
  t.ok(await waitFor(() => states.length > 0), 'the failure is told');
  t.equal(states[0]?.[0], false);
  const before = reads;
  await n.refresh();
  t.ok(reads > before, 'refresh reads the table again, as without a monitor');
  t.equal(n.deviceOf(mustParseIp('10.99.0.9')), 'd0/02:00:00:00:00:09');
});
