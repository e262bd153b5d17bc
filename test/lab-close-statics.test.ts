// The admin closes static openings (issue 13): a policy reload with fewer
// statics closes their rules, and the flows already running through them end
// too — a UDP stream (echoed, so established) and a TCP connection from the
// WAN host, through an IPv4 forward and through an IPv6 pinhole. A static
// that stays keeps its flows.

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { liveFlows, type LiveFlows } from './helpers/live-flows.js';
import { sleep, until } from './helpers/wait.js';

const lab: Lab = labUp(`cs${process.pid % 10000}`);
t.teardown(() => lab.down());

const STATE = stateDir();
const POLICY = join(STATE, 'policy.yaml');
const RULES = `version: 1
rules:
  - name: everyone-high
    action: allow
    match: { internalPorts: 1024-65535 }
`;
const KEPT = `  - name: kept
    pinhole: { to: "2001:db8:77::2", protocol: any, ports: 40701 }
`;
const STATICS = `static:
  - name: fw-udp
    forward: { protocol: udp, port: 40501, to: 192.168.77.2, toPort: 40501 }
  - name: fw-tcp
    forward: { protocol: tcp, port: 40501, to: 192.168.77.2, toPort: 40501 }
  - name: ph
    pinhole: { to: "2001:db8:77::2", protocol: any, ports: 40601 }
${KEPT}`;

t.test('a reload without the statics ends the flows through them; the one kept keeps its flows', async (t) => {
  writeFileSync(POLICY, RULES + STATICS);
  const daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', STATE, '--policy', POLICY, '--no-upnp', '--no-announce']);
  t.teardown(() => void daemon.kill('SIGTERM'));
  await waitForLine(daemon, (l) => l.includes('"event":"started"'), 20_000);
  const flows: Record<string, LiveFlows> = {
    forward: await liveFlows(lab, { port: 40501, to: '198.51.100.1', toPort: 40501, sourcePort: 46500 }),
    pinhole: await liveFlows(lab, { port: 40601, to: '2001:db8:77::2', toPort: 40601, sourcePort: 46600 }),
    kept: await liveFlows(lab, { port: 40701, to: '2001:db8:77::2', toPort: 40701, sourcePort: 46700 }),
  };
  t.teardown(() => Object.values(flows).forEach((f) => f.stop()));
  const flowing = () => Object.values(flows).every((f) => f.counts().udp >= 3 && f.counts().tcp >= 3);
  t.ok(await until(flowing, 20_000), `every flow arrives before the reload: ${JSON.stringify(Object.fromEntries(Object.entries(flows).map(([k, f]) => [k, f.counts()])))}`);

  writeFileSync(POLICY, RULES + 'static:\n' + KEPT);
  const reload = lab.exec('rtr', [process.execPath, CLI, 'policy', 'reload', '--state-dir', STATE], { allowFail: true, timeoutMs: 60_000 });
  t.equal(reload.code, 0, reload.stderr);
  // The flows are forgotten off the reload's path and looked for again after 1 s (conntrack.ts, end()).
  await sleep(2000);
  const closed = { forward: flows.forward!.counts(), pinhole: flows.pinhole!.counts(), kept: flows.kept!.counts() };
  await until(() => flows.kept!.counts().udp > closed.kept.udp + 3 && flows.kept!.counts().tcp > closed.kept.tcp + 3, 3_000);
  await sleep(500);
  for (const name of ['forward', 'pinhole'] as const) {
    const after = flows[name]!.counts();
    t.equal(after.udp, closed[name].udp, `${name}: no datagram of the UDP stream after the reload (${JSON.stringify(closed[name])} then ${JSON.stringify(after)})`);
    t.equal(after.tcp, closed[name].tcp, `${name}: no data of the TCP connection after the reload`);
  }
  const kept = flows.kept!.counts();
  t.ok(kept.udp > closed.kept.udp && kept.tcp > closed.kept.tcp, `the static that stays keeps its flows (${JSON.stringify(closed.kept)} then ${JSON.stringify(kept)})`);
});
