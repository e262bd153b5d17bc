// The daemon's backend with a WAN zone of two interfaces (--wan wan0 --wan
// ds0), started through one nft path (`library` or `process`), printed as
// JSON: whether it started, its own checks, and the rules as nft lists them
// back. Run as `ip netns exec NS node nft-multiwan.js PATH`: in-process
// libnftables talks to the namespace of the process it is in.

import { resolveConfig } from '../../src/config.js';
import { makeBackend } from '../../src/daemon/firewall.js';
import { nftRunner } from '../../src/firewall/nft/run.js';
import { mustParseIp } from '../../src/net/address.js';
import { monotonicClock } from '../../src/state/clock.js';
import { memoryLogger } from './memory-logger.js';

const path = process.argv[2] as 'library' | 'process';
const wans = process.argv.slice(3);
const log = memoryLogger();
const cfg = resolveConfig({}, { lan: ['lan0'], wan: wans, nft: { path } });
const fw = makeBackend(cfg, monotonicClock, log);
const out: Record<string, unknown> = {};
out.started = await fw.start().then(() => 'started', (err: Error) => err.message);
await fw.guardUpstream?.({ address: mustParseIp('192.0.0.1'), port: 5351 });
out.intact = await fw.intact?.();
out.guard = (await fw.guard?.())?.ok;
out.path = log.lines.find((l) => l.event === 'nft-ready')?.path;
const listed = await nftRunner().list(['list', 'table', 'inet', 'portcullis']);
out.rules = listed.ok ? listed.items.filter((i) => 'rule' in i).map((i) => i.rule) : listed.error;
process.stdout.write(JSON.stringify(out));
