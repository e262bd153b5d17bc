// portcullis inside OpenWrt's firewall (issue 12): a table shaped as
// OpenWrt 23.05's fw4 makes it (`table inet fw4`, base chains with policy
// drop, per-zone chains), with the include files packaging/openwrt ships
// placed where fw4 places them: table-pre at the top of the table,
// chain-pre/<chain> at the top of that chain. portcullis runs embedded; then
// the table is deleted and rebuilt in one transaction, as `fw4 reload` does,
// and the mappings must work again within one reconcile period.

import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { reaches } from './helpers/reach.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const INCLUDES = join(ROOT, 'packaging', 'openwrt', 'nftables.d');
const include = (path: string) => readFileSync(join(INCLUDES, path), 'utf8');

const EXT = '198.51.100.1';
const LAN6 = '2001:db8:77::2';
const RECONCILE_SECONDS = 3;

/** The chain-pre include for `chain`, if packaging ships one. */
function pre(chain: string): string {
  try {
    return include(`chain-pre/${chain}/30-portcullis.nft`);
  } catch {
    return '';
  }
}

/** fw4's ruleset, as `fw4 print` renders it for a two-zone router (lan: br-lan, wan: wan0). */
function fw4Ruleset(): string {
  return `add table inet fw4
delete table inet fw4
table inet fw4 {
${include('table-pre/30-portcullis.nft')}
  chain input {
    type filter hook input priority filter; policy drop;
${pre('input')}
    iifname "lo" accept comment "!fw4: Accept traffic from loopback"
    ct state established,related accept comment "!fw4: Allow inbound established and related flows"
    iifname "br-lan" jump input_lan comment "!fw4: Handle lan IPv4/IPv6 input traffic"
    iifname "wan0" jump input_wan comment "!fw4: Handle wan IPv4/IPv6 input traffic"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
${pre('forward')}
    ct state established,related accept comment "!fw4: Allow forwarded established and related flows"
    iifname "br-lan" jump forward_lan comment "!fw4: Handle lan IPv4/IPv6 forward traffic"
    iifname "wan0" jump forward_wan comment "!fw4: Handle wan IPv4/IPv6 forward traffic"
  }
  chain output {
    type filter hook output priority filter; policy accept;
    oifname "lo" accept comment "!fw4: Accept traffic towards loopback"
    ct state established,related accept comment "!fw4: Allow outbound established and related flows"
  }
  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
  }
  chain input_lan {
${pre('input_lan')}
    jump accept_from_lan
  }
  chain input_wan {
${pre('input_wan')}
    meta nfproto ipv4 udp dport 68 counter accept comment "!fw4: Allow-DHCP-Renew"
    icmp type echo-request counter accept comment "!fw4: Allow-Ping"
    meta l4proto ipv6-icmp counter accept comment "!fw4: Allow-ICMPv6-Input"
    jump reject_from_wan
  }
  chain forward_lan {
${pre('forward_lan')}
    jump accept_to_wan comment "!fw4: Accept lan to wan forwarding"
    jump accept_to_lan
  }
  chain forward_wan {
${pre('forward_wan')}
    meta l4proto ipv6-icmp counter accept comment "!fw4: Allow-ICMPv6-Forward"
    ct status dnat accept comment "!fw4: Accept port forwards"
    jump reject_to_lan
  }
  chain accept_from_lan {
    iifname "br-lan" counter accept comment "!fw4: accept lan IPv4/IPv6 traffic"
  }
  chain accept_to_lan {
    oifname "br-lan" counter accept comment "!fw4: accept lan IPv4/IPv6 traffic"
  }
  chain accept_to_wan {
    meta nfproto ipv4 oifname "wan0" ct state invalid counter drop comment "!fw4: Prevent NAT leakage"
    oifname "wan0" counter accept comment "!fw4: accept wan IPv4/IPv6 traffic"
  }
  chain reject_from_wan {
    iifname "wan0" counter jump handle_reject comment "!fw4: reject wan IPv4/IPv6 traffic"
  }
  chain reject_to_lan {
    oifname "br-lan" counter jump handle_reject comment "!fw4: reject lan IPv4/IPv6 traffic"
  }
  chain handle_reject {
    meta l4proto tcp reject with tcp reset comment "!fw4: Reject TCP traffic"
    reject comment "!fw4: Reject any other traffic"
  }
  chain dstnat {
    type nat hook prerouting priority dstnat; policy accept;
${pre('dstnat')}
  }
  chain srcnat {
    type nat hook postrouting priority srcnat; policy accept;
${pre('srcnat')}
    oifname "wan0" jump srcnat_wan comment "!fw4: Handle wan IPv4/IPv6 srcnat traffic"
  }
  chain srcnat_wan {
    meta nfproto ipv4 masquerade comment "!fw4: Masquerade IPv4 wan traffic"
  }
}
`;
}

const lab: Lab = labUp(`pw${process.pid % 10000}`);
t.teardown(() => lab.down());
// fw4 is the router's only firewall here.
lab.exec('rtr', ['nft', 'delete', 'table', 'inet', 'lab_base']);
const fw4 = (): void => void lab.exec('rtr', ['nft', '-f', '-'], { input: fw4Ruleset() });

t.test('the shipped include files load into an fw4 table while portcullis is not running', async (t) => {
  fw4();
  const listing = lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'fw4']).stdout;
  for (const c of ['input', 'prerouting', 'forward', 'postrouting']) t.match(listing, new RegExp(`chain portcullis_${c} \\{`), `portcullis_${c} declared (empty)`);
  t.match(listing, /jump portcullis_input/, 'input jumps to the LAN guard');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40080, to: EXT }), 'nothing from the WAN reaches the LAN host');
});

t.test('embedded in fw4 with the shipped jumps: mappings work; after an fw4 reload they work again within one reconcile period', async (t) => {
  const cfg = join(stateDir(), 'config.json');
  writeFileSync(cfg, JSON.stringify({ reconcileSeconds: RECONCILE_SECONDS }));
  const d = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--config', cfg, '--state-dir', stateDir(), '--nft-table', 'fw4', '--nft-embed']);
  const logs: string[] = [];
  d.stdout?.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  t.teardown(() => void d.kill('SIGTERM'));
  await waitForLine(d, (l) => l.includes('"event":"started"'), 20_000);
  t.ok(logs.some((l) => l.includes('"event":"lan-guard"') && l.includes('in place')), 'the shipped input jump satisfies the LAN guard');
  t.notOk(logs.some((l) => l.includes('"status":"MISSING"')), 'never reported missing');

  const natpmpc = lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '40080', '40080', 'tcp', '600']).stdout;
  t.match(natpmpc, /Mapped public port 40080 protocol TCP to local port 40080/, 'natpmpc maps TCP 40080');
  const pcp = JSON.parse(lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', '2001:db8:77::1', '--proto', 'udp', '--port', '40081']).stdout) as { result: string };
  t.equal(pcp.result, 'SUCCESS', 'a PCP pinhole for UDP 40081');
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40080, to: EXT }), 'the WAN host reaches the IPv4 mapping');
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40081, to: LAN6 }), 'the WAN host reaches the IPv6 pinhole');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40082, to: EXT }), 'an unmapped port stays closed');

  // fw4 reload: the whole table deleted and rebuilt in one transaction; our
  // sets and rules are gone, the include files bring back the jumps and the
  // empty chains.
  fw4();
  const reloadedAt = Date.now();
  t.notMatch(lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'fw4']).stdout, /set portcullis_dnat4/, 'the reload took our sets away');
  await waitForLine(d, (l) => l.includes('"event":"nft-repaired"'), 30_000);
  const repairedIn = Date.now() - reloadedAt;
  // By the reconcile tick, not by chance later: within two periods, with
  // room for a loaded machine (a quiet one repairs within one period).
  t.ok(repairedIn <= (2 * RECONCILE_SECONDS + 10) * 1000, `repaired in ${repairedIn} ms (one reconcile period is ${RECONCILE_SECONDS} s)`);
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40080, to: EXT }), 'the IPv4 mapping works again');
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40081, to: LAN6 }), 'the IPv6 pinhole works again');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40082, to: EXT }), 'an unmapped port is still closed');
});
