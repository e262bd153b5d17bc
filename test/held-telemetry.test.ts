// The reports the parts make before the metrics registry exists
// (src/daemon/metrics.ts, HeldTelemetry): prom-client is loaded once the
// doors are open, and nothing said before that may be lost or reordered.

import t from 'tap';
import { HeldTelemetry, MAX_HELD_REPORTS, prepareMetrics } from '../src/daemon/metrics.js';
import type { Telemetry } from '../src/telemetry.js';

/** A registry that writes down every report it is told. */
function recorder(): { told: string[]; telemetry: Telemetry } {
  const told: string[] = [];
  const say = (name: string) => (...args: unknown[]) => void told.push(`${name}(${args.join(',')})`);
  return {
    told,
    telemetry: { request: say('request'), removed: say('removed'), commit: say('commit'), storeSync: say('storeSync'), storeWritten: say('storeWritten'), repaired: say('repaired'), epochReset: say('epochReset') },
  };
}

t.test('held until attached, then handed on in order; after that told at once', async (t) => {
  const held = new HeldTelemetry();
  held.storeWritten(4096);
  held.epochReset();
  held.storeSync(0.002);
  held.commit('committed', 0.01);
  held.request('pcp', 'map', 'success', 0.003);
  held.removed('expired', 2);
  held.repaired();
  const r = recorder();
  t.same(r.told, [], 'nothing reaches a registry that is not there');
  held.attach(r.telemetry);
  t.same(r.told, ['storeWritten(4096)', 'epochReset()', 'storeSync(0.002)', 'commit(committed,0.01)', 'request(pcp,map,success,0.003)', 'removed(expired,2)', 'repaired()']);
  held.request('upnp', 'AddPortMapping', 'success', 0.02);
  t.equal(r.told.at(-1), 'request(upnp,AddPortMapping,success,0.02)');
  t.equal(r.told.length, 8);
  t.equal(held.lost, 0);
});

t.test('at most MAX_HELD_REPORTS are held; the rest are counted as lost, not invented', async (t) => {
  const held = new HeldTelemetry();
  for (let i = 0; i < MAX_HELD_REPORTS + 5; i++) held.storeWritten(1);
  const r = recorder();
  held.attach(r.telemetry);
  t.equal(r.told.length, MAX_HELD_REPORTS);
  t.equal(held.lost, 5);
});

t.test('--metrics is checked at once and loads nothing', async (t) => {
  const lan = [{ interface: 'br-lan', address: '192.168.77.1', prefix: { address: '192.168.77.0', length: 24 } }] as never;
  const m = prepareMetrics('192.168.77.1:9464', lan);
  t.ok(m?.telemetry instanceof HeldTelemetry);
  t.equal(prepareMetrics(undefined, lan), undefined);
  t.throws(() => prepareMetrics('198.51.100.1:9464', lan), /./, 'an address that is not the LAN’s stops the start');
});
