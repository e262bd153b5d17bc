#!/usr/bin/env node
// The long fuzz run, outside CI: `npm run fuzz -- --runs N` (default 1 000 000)
// sends N inputs through each decoder (PCP, NAT-PMP, SSDP, SOAP, HTTP, GENA)
// and N action sequences through the UPnP action handler, with no per-test
// time limit. CI runs the same files at their default counts. FUZZ_SEED=<int>
// replays a seed; each file prints the seed it used.
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const i = args.indexOf('--runs');
const runs = i >= 0 ? args[i + 1] : '1000000';
if (!/^[0-9]{1,9}$/.test(runs ?? '') || Number(runs) < 1) {
  process.stderr.write(`usage: npm run fuzz -- [--runs N]   (N a positive integer, default 1000000; got ${JSON.stringify(runs)})\n`);
  process.exit(2);
}
const files = ['dist/test/fuzz.test.js', 'dist/test/upnp-fuzz.test.js', 'dist/test/igd-fuzz.test.js'];
const r = spawnSync('npx', ['tap', '--timeout=0', ...files], { stdio: 'inherit', env: { ...process.env, FUZZ_RUNS: runs } });
process.exit(r.status ?? 1);
