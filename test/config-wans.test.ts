// --wan repeated, or the config file's `wan` as one name or a list: one WAN
// zone of several interfaces in the admin's order (a DS-Lite line: the
// native IPv6 link and the softwire). An old file with one name keeps
// working unchanged; duplicates, a LAN among them and bad names are refused
// with the setting named.

import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile, resolveConfig } from '../src/config.js';
import { ROUTER_OPTIONS, routerFlags } from '../src/cli/flags.js';

const dir = mkdtempSync(join(tmpdir(), 'portcullis-wans-'));
const file = (data: object) => {
  const f = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(f, JSON.stringify(data));
  return f;
};
const flags = (...argv: string[]) => routerFlags(parseArgs({ args: argv, options: ROUTER_OPTIONS, strict: true }).values);

t.test('an old file with one WAN name: the same router as before', async (t) => {
  const cfg = resolveConfig(loadConfigFile(file({ lan: ['br-lan'], wan: 'eth1' })), {});
  t.same(cfg.wans, ['eth1']);
  t.notOk('wan' in cfg, 'one key for the zone');
  t.same(resolveConfig({}, flags('--lan', 'br-lan', '--wan', 'eth1')).wans, ['eth1'], 'one --wan');
});

t.test('a list in the file, or --wan repeated: the zone in the admin\'s order', async (t) => {
  t.same(resolveConfig(loadConfigFile(file({ lan: ['br-lan'], wan: ['wan0', 'ds0'] })), {}).wans, ['wan0', 'ds0']);
  t.same(resolveConfig({}, flags('--lan', 'lan0', '--wan', 'ds0', '--wan', 'wan0')).wans, ['ds0', 'wan0'], 'the order given');
  t.same(resolveConfig(loadConfigFile(file({ lan: ['br-lan'], wan: ['wan0', 'ds0'] })), flags('--wan', 'eth9')).wans, ['eth9'], 'the flags replace the file\'s list');
});

t.test('what is refused, and how it is said', async (t) => {
  const refused = (flagsOrFile: object, message: RegExp | string, what: string) => t.throws(() => resolveConfig({}, { lan: ['lan0'], ...flagsOrFile }), message instanceof RegExp ? message : new ConfigError(message), what);
  refused({ wan: ['wan0', 'wan0'] }, 'WAN interface wan0 is given twice', 'a duplicate');
  refused({ wan: ['wan0', 'lan0'] }, 'interface lan0 cannot be both LAN and WAN', 'a LAN among them');
  refused({ wan: ['wan0', 'ds0; drop'] }, /interface name "ds0; drop" is not a plain interface name/, 'a bad name anywhere in the list');
  refused({ wan: [] }, /^no WAN interface: give --wan IFACE \(repeatable/, 'none');
  refused({}, /^no WAN interface/, 'none given at all');
  refused({ wan: Array.from({ length: 9 }, (_, i) => `wan${i}`) }, '9 WAN interfaces: at most 8', 'too many');
  t.throws(() => resolveConfig({}, flags('--lan', 'lan0', '--wan', 'wan0', '--wan', 'wan0')), new ConfigError('WAN interface wan0 is given twice'), 'from the command line too');
  t.throws(() => loadConfigFile(file({ lan: ['br-lan'], wan: 5 })), /\/wan: must be string/, 'the schema: a name or a list of names');
  t.throws(() => loadConfigFile(file({ lan: ['br-lan'], wan: [] })), /\/wan: must NOT have fewer than 1 items/, 'the schema: not an empty list');
  t.throws(() => loadConfigFile(file({ lan: ['br-lan'], wan: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] })), /\/wan: must NOT have more than 8 items/, 'the schema: at most 8');
});
