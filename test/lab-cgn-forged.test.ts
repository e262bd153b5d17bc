// Issue 14: the upstream PCP server's word counts only from the WAN. In the
// double-NAT lab (scripts/lab-cgn.sh) a LAN host gives itself the ISP
// server's address and sends, from its PCP port, what only the server may
// send: an ANNOUNCE with epoch 0 (a restart: every upstream mapping would be
// made again and the CPE's epoch would start over) and an answer to a
// request it knows the nonce of (its own) naming an address the ISP never
// gave. Reverse-path filtering is off on the CPE, so what stops them is
// portcullis' own input rule (src/firewall/nft/ruleset.ts, upstreamLine),
// whose counter must show them dropped.

import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import { CLI, lanClients } from './helpers/lab.js';
import { PUBLIC, cgnLab } from './helpers/cgn-lab.js';

const c = await cgnLab(`cf${process.pid % 10000}`, t, (lab) => {
  for (const k of ['all', 'default', 'lan0', 'wan0']) lab.exec('cpe', ['sysctl', '-qw', `net.ipv4.conf.${k}.rp_filter=0`]);
  // The forger: the LAN host holds the ISP server's address too.
  lab.exec('lan', ['ip', 'addr', 'add', '100.64.0.1/32', 'dev', 'eth0']);
});
const { lab, cpeDir } = c;
const { pcp } = lanClients(lab, '192.168.77.1');

/** PCP ANNOUNCE response (RFC 6887 §7.2, §14.1): R=1 opcode 0, SUCCESS, lifetime 0, this epoch. */
function announce(epoch: number): string {
  const b = Buffer.alloc(24);
  b[0] = 2;
  b[1] = 0x80;
  b.writeUInt32BE(epoch, 8);
  return b.toString('hex');
}

/** A MAP SUCCESS response (§7.2, §11.1) for `nonce`, naming `address`:`port`. */
function mapAnswer(nonce: string, protocol: number, internalPort: number, address: string, port: number): string {
  const b = Buffer.alloc(60);
  b[0] = 2;
  b[1] = 0x81;
  b.writeUInt32BE(600, 4);
  b.writeUInt32BE(100_000, 8);
  Buffer.from(nonce, 'hex').copy(b, 24);
  b[36] = protocol;
  b.writeUInt16BE(internalPort, 40);
  b.writeUInt16BE(port, 42);
  b.writeUInt16BE(0xffff, 54);
  Buffer.from(address.split('.').map(Number)).copy(b, 56);
  return b.toString('hex');
}

/** Sends `hex` from 100.64.0.1:`fromPort` (the ISP server's address, on the LAN) to the CPE's LAN address, `times` times. */
function forge(hex: string, fromPort: number, times: number, everyMs: number): ChildProcess {
  const script = `
const s = require('node:dgram').createSocket('udp4');
s.bind(${fromPort}, '100.64.0.1', () => {
  let n = 0;
  const go = () => { s.send(Buffer.from('${hex}', 'hex'), 5350, '192.168.77.1'); if (++n < ${times}) setTimeout(go, ${everyMs}); else setTimeout(() => process.exit(0), 100); };
  go();
});`;
  return lab.spawn('lan', [process.execPath, '-e', script]);
}

/** Packets our upstream rule dropped, from its counter. */
function dropped(): number {
  const out = lab.exec('cpe', ['nft', 'list', 'chain', 'inet', 'portcullis', 'input']).stdout;
  const m = /saddr 100\.64\.0\.1 udp sport (\d+) counter packets (\d+)/.exec(out);
  return m ? Number(m[2]) : -1;
}

const ended = (c: ChildProcess) => new Promise((r) => (c.exitCode !== null ? r(undefined) : c.once('exit', r)));

t.test('a forged ANNOUNCE from the LAN: no loss seen, no repair, the mapping stays as it was', async (t) => {
  const nonce = 'aaaaaaaaaaaaaaaaaaaaaaaa';
  const r = pcp('--proto', 'udp', '--port', '40020', '--lifetime', '600', '--nonce', nonce);
  t.match(r, { result: 'SUCCESS', externalAddress: PUBLIC });
  await new Promise((r) => setTimeout(r, 3000));
  const before = dropped();
  const from = c.cpe.lines.length;
  await ended(forge(announce(0), 5351, 5, 200));
  await new Promise((r) => setTimeout(r, 1500));
  const after = c.cpe.lines.slice(from);
  t.notOk(after.some((l) => l.includes('"event":"upstream-state-lost"')), 'no loss of upstream\'s state seen');
  // (The ISP's own start-up ANNOUNCEs may still come, with its epoch.)
  t.notOk(after.some((l) => l.includes('"event":"upstream-announce"') && l.includes('"epoch":0,')), 'the forged ANNOUNCE never reached the daemon');
  t.equal(dropped() - before, 5, 'our rule dropped all five');
  const again = pcp('--proto', 'udp', '--port', '40020', '--lifetime', '600', '--nonce', nonce);
  t.match(again, { result: 'SUCCESS', externalAddress: PUBLIC, externalPort: r.externalPort }, 'the same mapping');
  // At least 3 + 1 + 1.5 s passed: an epoch started again by the forgery would be lower.
  t.ok((again.epoch as number) >= (r.epoch as number) + 5, `the CPE's epoch went on (${r.epoch} → ${again.epoch})`);
});

t.test('someone deletes the rule: the daemon\'s repair puts it back', async (t) => {
  const listing = lab.exec('cpe', ['nft', '-a', 'list', 'chain', 'inet', 'portcullis', 'input']).stdout;
  const handle = /saddr 100\.64\.0\.1 udp sport 5351 counter packets \d+ bytes \d+ drop # handle (\d+)/.exec(listing)?.[1];
  t.ok(handle, 'the rule is there');
  lab.exec('cpe', ['nft', 'delete', 'rule', 'inet', 'portcullis', 'input', 'handle', handle ?? '0']);
  t.equal(dropped(), -1, 'gone');
  const deadline = Date.now() + 25_000;
  while (dropped() < 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
  t.ok(dropped() >= 0, 'back within the reconciliation period (10 s)');
});

t.test('a forged answer from the LAN while upstream is silent: not taken, the client hears upstream\'s silence', async (t) => {
  // Nothing answers on that port; the forger sends from it.
  await c.restartCpe(['--upstream-pcp', '100.64.0.1:5399']);
  const before = dropped();
  const nonce = '0123456789abcdef01234567';
  // Answers for the request the client is about to make (upstream's internal port is the CPE's external one, here the same).
  const forger = forge(mapAnswer(nonce, 17, 40021, '11.22.33.99', 40021), 5399, 12, 250);
  const r = pcp('--proto', 'udp', '--port', '40021', '--lifetime', '600', '--nonce', nonce);
  await ended(forger);
  t.match(r, { result: 'NETWORK_FAILURE' }, 'upstream said nothing; the forgery is not its word');
  t.ok(dropped() - before >= 12, `our rule dropped them (${dropped() - before})`);
  const ls = lab.exec('cpe', [process.execPath, CLI, 'ls', '--state-dir', cpeDir]).stdout;
  t.notMatch(ls, /11\.22\.33\.99/, 'no mapping names the forged address');
  t.notMatch(ls, /:40021\b/, 'the local half was undone');
  const st = lab.exec('cpe', [process.execPath, CLI, 'status', '--state-dir', cpeDir]).stdout;
  t.notMatch(st, /external address 11\.22\.33\.99/, 'status does not tell the forged address');
});
