// --upstream-pcp / upstreamPcp: auto (the default), off, ADDR[:PORT] or
// [IPv6]:PORT; anything else is refused with the setting's name.

import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseUpstreamPcp, resolveConfig } from '../src/config.js';

t.test('the setting\'s forms', async (t) => {
  t.equal(resolveConfig({}, { lan: ['br-lan'], wan: 'eth1' }).upstreamPcp, 'auto', 'auto by default');
  t.equal(parseUpstreamPcp('off'), 'off');
  t.same(parseUpstreamPcp('100.64.0.1'), { address: '100.64.0.1', port: 5351 }, 'the PCP server port by default');
  t.same(parseUpstreamPcp('100.64.0.1:15351'), { address: '100.64.0.1', port: 15351 });
  t.same(parseUpstreamPcp('[2001:db8::1]:5351'), { address: '2001:db8::1', port: 5351 });
  t.same(parseUpstreamPcp('2001:db8::1'), { address: '2001:db8::1', port: 5351 }, 'a bare IPv6 address');
  for (const bad of ['', 'upstream.example', '100.64.0.1:0', '100.64.0.1:70000', '[2001:db8::1]:x', '300.1.1.1']) {
    t.throws(() => parseUpstreamPcp(bad), /is not auto, off, ADDR or ADDR:PORT/, JSON.stringify(bad));
  }
});

t.test('flags over the file; the file validated by the schema', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cfg-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ lan: ['br-lan'], wan: 'eth1', upstreamPcp: '100.64.0.1' }));
  const fromFile = loadConfigFile(file);
  t.same(resolveConfig(fromFile, {}).upstreamPcp, { address: '100.64.0.1', port: 5351 });
  t.equal(resolveConfig(fromFile, { upstreamPcp: 'off' }).upstreamPcp, 'off', 'the flag wins');
  writeFileSync(file, JSON.stringify({ lan: ['br-lan'], wan: 'eth1', upstreamPcp: 5351 }));
  t.throws(() => loadConfigFile(file), /upstreamPcp: must be string/);
});

t.test('--no-nat44 (DS-Lite) and --lan-route', async (t) => {
  const base = { lan: ['br-lan'], wan: 'ds-wan' };
  t.equal(resolveConfig({}, base).nat44, true, 'NAT44 by default');
  t.equal(resolveConfig({}, { ...base, nat44: false }).nat44, false);
  t.throws(() => resolveConfig({}, { ...base, nat44: false, upstreamPcp: 'off' }), /needs the AFTR's PCP server/, 'no NAT44 with no upstream is refused');
  t.same(resolveConfig({}, { ...base, lanRoutes: ['192.168.77.0/24'] }).lanRoutes, [{ address: '192.168.77.0', length: 24 }]);
  t.throws(() => resolveConfig({}, { ...base, lanRoutes: ['192.168.77.0/33'] }), /is not a prefix/);
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cfg-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ ...base, nat44: false, upstreamPcp: '192.0.0.1', lanRoutes: ['10.0.0.0/8'] }));
  t.match(resolveConfig(loadConfigFile(file), {}), { nat44: false, upstreamPcp: { address: '192.0.0.1' }, lanRoutes: [{ length: 8 }] }, 'the file\'s keys');
  writeFileSync(file, JSON.stringify({ ...base, nat44: 'no' }));
  t.throws(() => loadConfigFile(file), /nat44: must be boolean/);
});
