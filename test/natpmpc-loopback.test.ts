// The literal check: Debian's natpmpc pointed at the daemon on
// loopback (in a namespace of this test's own, so port 5351 is ours):
// external address, a UDP and a TCP mapping, and their deletion.

import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { CLI, requireRoot, stateDir, waitForLine } from './helpers/lab.js';

requireRoot();
const NS = `plo${process.pid % 10000}`;
const sh = (...argv: string[]) => spawnSync('ip', ['netns', 'exec', NS, ...argv], { encoding: 'utf8', timeout: 20_000 });
spawnSync('ip', ['netns', 'add', NS]);
t.teardown(() => void spawnSync('ip', ['netns', 'del', NS]));
sh('ip', 'link', 'set', 'lo', 'up');
// (No dummy driver on every kernel: a veth pair whose other end stays idle.)
sh('ip', 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'wan0p');
sh('ip', 'addr', 'add', '198.51.100.1/24', 'dev', 'wan0');
sh('ip', 'link', 'set', 'wan0', 'up');
sh('ip', 'link', 'set', 'wan0p', 'up');

const daemon = spawn('ip', ['netns', 'exec', NS, process.execPath, CLI, 'serve', '--lan', 'lo', '--wan', 'wan0', '--backend', 'memory', '--state-dir', stateDir(), '--no-announce'], { stdio: ['ignore', 'pipe', 'pipe'] });
t.teardown(() => void daemon.kill('SIGKILL'));

t.test('natpmpc -g 127.0.0.1: address, UDP and TCP mappings, deletion', async (t) => {
  await waitForLine(daemon, (l) => l.includes('"event":"started"'));
  const natpmpc = (...args: string[]) => {
    const r = sh('natpmpc', '-g', '127.0.0.1', ...args);
    return `${r.stdout}${r.stderr}`;
  };
  t.match(natpmpc(), /Public IP address : 198\.51\.100\.1/);
  t.match(natpmpc('-a', '40001', '40001', 'udp', '3600'), /Mapped public port 40001 protocol UDP to local port 40001 liftime 3600/);
  t.match(natpmpc('-a', '40002', '40002', 'tcp', '3600'), /Mapped public port 40002 protocol TCP to local port 40002 liftime 3600/);
  t.match(natpmpc('-a', '0', '40001', 'udp', '0'), /Mapped public port 0 protocol UDP to local port 40001 liftime 0/);
  t.match(natpmpc('-a', '0', '40002', 'tcp', '0'), /Mapped public port 0 protocol TCP to local port 40002 liftime 0/);
});
