// Property-based fuzzing (fast-check) of the UPnP action handler, IgdControl,
// over the real mapping service (MappingService, shipped default policy, memory
// firewall): the parsers have their own fuzzer (upnp-fuzz.test.ts); this one
// starts where they hand over, with a parsed action from a LAN host.
//
// Each input is a short sequence of actions from a few LAN hosts: action
// names from the services' action table (and junk: wrong case, prototype
// names, other services' actions), sent to any service name and version,
// with in arguments present, missing or extra, and values that are hostile
// (the router's own addresses, the WAN's, broadcast, multicast, link-local,
// IPv4-mapped, numbers out of range or spelled oddly, huge strings). Before
// the sequence a victim host holds mappings and a pinhole the fuzzed hosts
// must not be able to touch. After every action:
//   - handle() resolved (nothing thrown or rejected);
//   - the result is the action's out arguments, in SCPD order, or an error
//     from the error table of the service the action belongs to (401 when
//     there is no such action);
// and after the sequence the service's invariants hold: every mapping points
// at a LAN host that is not the router, IPv4 ones from the external
// address and an allowed port; no address or /64 over the policy's quota;
// the memory kernel holds exactly the table's entries; the expiry heap
// holds exactly the table; the victim's mappings are as they were.
//
// One worker runs it; the main thread watches its progress counter and
// reports the input that was running if it stops (a synchronous hang).
// FUZZ_SEED=<int> replays another seed, FUZZ_RUNS=<int> sets the number of
// sequences (default below: about 100 000 actions in all).

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { isLinkLocal, isMulticast, isUnspecified, mustParseIp, prefixContains, type IpAddress } from '../src/net/address.js';
import { Neighbours, type Neighbour } from '../src/net/neighbours.js';
import { ACTIONS, serviceKeyFor, type ServiceKey } from '../src/protocols/upnp/description.js';
import { IgdControl, findAction, type ActionResult, type IgdEnvironment } from '../src/protocols/upnp/igd.js';
import { SERVICE_ERRORS, UpnpError } from '../src/protocols/upnp/soap.js';
import { sameHostBy } from '../src/server/upnp-door.js';
import { entryOf } from '../src/service/mapping-service.js';
import { keyOf, type Mapping } from '../src/domain/mapping.js';
import { EXTERNAL, LAN_PREFIXES, ROUTER, harness, type Harness } from './helpers/harness.js';
import { resolveRuns, resolveSeed, watchProgress } from './helpers/fuzz.js';

// ---------------------------------------------------------------- parameters

const DEFAULT_SEED = 0x16d0f022;
/** Sequences of 1..MAX_STEPS actions (about 6 on average): about 100 000 actions in all, some 15 s. */
const DEFAULT_RUNS = 16_000;
const MAX_STEPS = 24;
/** The shipped default policy's per-client quota. */
const QUOTA = 128;
const STALL_MS = 15_000;
const PROGRESS_BYTES = 8192;


// ------------------------------------------------------------------ the LAN

const ip = mustParseIp;
/**
 * The fuzzed hosts, all LAN sources (the server lets no other through): two
 * IPv4, one IPv6 host also asking from its link-local address, another IPv6
 * host. The first one's ULA (fd00::10, not a LAN prefix here) is a value.
 */
const CLIENTS = [ip('192.168.77.10'), ip('192.168.77.11'), ip('2001:db8:77::10'), ip('fe80::10'), ip('2001:db8:77::11')];
/** Holds mappings none of the fuzzed hosts may change. */
const VICTIM4 = ip('192.168.77.50');
const VICTIM6 = ip('2001:db8:77::50');
const NEIGHBOURS: Neighbour[] = [
  { address: ip('2001:db8:77::10'), interface: 'br-lan', lladdr: '02:00:00:00:00:10' },
  { address: ip('fd00::10'), interface: 'br-lan', lladdr: '02:00:00:00:00:10' },
  { address: ip('fe80::10'), interface: 'br-lan', lladdr: '02:00:00:00:00:10' },
  { address: ip('2001:db8:77::11'), interface: 'br-lan', lladdr: '02:00:00:00:00:11' },
  { address: VICTIM6, interface: 'br-lan', lladdr: '02:00:00:00:00:50' },
];

const ENV: IgdEnvironment = {
  uptime: () => 42,
  linkUp: () => true,
  wanCounters: () => ({ txBytes: 2 ** 40, rxBytes: 7, txPackets: 1, rxPackets: 2, speedMbps: 1000 }),
  outboundTimeout: (p) => (p === 6 ? 7440 : 180),
  sameHost: sameHostBy(new Neighbours(async () => NEIGHBOURS)),
};

// ------------------------------------------------------------------ inputs

const KNOWN_ACTIONS = [...new Set(Object.values(ACTIONS).flatMap((m) => [...m.keys()]))];
const KNOWN_ARGS = [...new Set(Object.values(ACTIONS).flatMap((m) => [...m.values()].flatMap((a) => a.in)))];

const actionName: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...KNOWN_ACTIONS) },
  { weight: 1, arbitrary: fc.constantFrom(...KNOWN_ACTIONS).map((a) => a.toLowerCase()) },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '', 'AddPortMapping ', 'QueryStateVariable', 'GetPortMappingNumberOfEntries') },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

const serviceName: fc.Arbitrary<{ name: string; version: number }> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ name: fc.constantFrom('WANIPConnection', 'WANIPv6FirewallControl', 'WANCommonInterfaceConfig'), version: fc.constantFrom(1, 2) }) },
  { weight: 1, arbitrary: fc.record({ name: fc.constantFrom('Layer3Forwarding', '__proto__', 'WANPPPConnection', ''), version: fc.integer({ min: -1, max: 1000 }) }) },
);

const ADDRESSES = [
  ...CLIENTS,
  'fd00::10',
  VICTIM4,
  VICTIM6,
  ...ROUTER,
  '192.168.77.255',
  '192.168.77.0',
  '10.0.0.5',
  '203.0.113.5',
  '2001:db8:99::5',
  '127.0.0.1',
  '0.0.0.0',
  '::',
  '::1',
  'fe80::1',
  'fe80::10%br-lan',
  'ff02::1',
  '224.0.0.1',
  '255.255.255.255',
  '::ffff:192.168.77.10',
  '::ffff:192.168.77.1',
  '192.168.077.010',
  '0xc0.0xa8.0x4d.0x0a',
  '3232254218',
  ' 192.168.77.10 ',
  'localhost',
  '*',
];
const NUMBERS = ['0', '1', '80', '1023', '1024', '5350', '5351', '40000', '65535', '65536', '86400', '604800', '604801', '4294967295', '4294967296', '-1', '+80', ' 80 ', '0x50', '1e3', '08', '80.0', '00000000040000', '99999999999999999999'];

const argValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...NUMBERS) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 70000 }).map(String) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 20 }).map(String) },
  { weight: 5, arbitrary: fc.constantFrom(...ADDRESSES) },
  { weight: 3, arbitrary: fc.constantFrom('TCP', 'UDP', 'udp', 'Tcp', 'SCTP', '6', '17', '65535', '') },
  { weight: 2, arbitrary: fc.constantFrom('1', '0', 'true', 'false', 'yes', 'no', 'maybe') },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(5000), 'é'.repeat(300), 'game\n\u0000\u0007', '<a>&amp;</a>', '${jndi}', '%s%n') },
);

/** Stands for the calling host's own address in an argument value. */
const SELF = '$self';
const PORTS = ['1024', '40000', '40001', '65535', '80', '0'];

/** Values that make sense for the argument (so the deep paths run), or anything hostile. */
function valueFor(name: string): fc.Arbitrary<string> {
  const typed = ((): fc.Arbitrary<string> => {
    if (/RemoteHost$/.test(name)) return fc.constantFrom('', '', '203.0.113.5', '2001:db8:99::5', '*');
    if (/Port$/.test(name)) return fc.constantFrom(...PORTS);
    if (name === 'NewProtocol') return fc.constantFrom('TCP', 'UDP');
    if (name === 'Protocol') return fc.constantFrom('6', '17', '65535');
    if (/InternalClient$/.test(name)) return fc.constantFrom(SELF, SELF, SELF, VICTIM4, VICTIM6, ...CLIENTS);
    if (name === 'NewEnabled' || name === 'NewManage') return fc.constantFrom('1', '0');
    if (/Lease(Duration|Time)$/.test(name)) return fc.constantFrom('0', '1', '3600', '86400', '604800');
    if (name === 'UniqueID') return fc.integer({ min: 0, max: 6 }).map(String);
    if (name === 'NewPortMappingIndex') return fc.integer({ min: 0, max: 6 }).map(String);
    if (name === 'NewNumberOfPorts') return fc.constantFrom('0', '1', '10');
    return fc.string({ maxLength: 20 });
  })();
  return fc.oneof({ weight: 4, arbitrary: typed }, { weight: 1, arbitrary: argValue });
}

interface Call {
  client: number;
  service: { name: string; version: number };
  action: string;
  args: [string, string][];
  /** Seconds the clock moves before the call. */
  wait: number;
}

/** The in arguments of the action (one sometimes dropped), plus sometimes a stray one. */
const call: fc.Arbitrary<Call> = fc.record({ service: serviceName, action: actionName }).chain(({ service, action }) => {
  const names = findAction(service.name, service.version, action)?.in ?? [];
  return fc
    .record({
      client: fc.integer({ min: 0, max: CLIENTS.length - 1 }),
      values: fc.tuple(...names.map((n) => valueFor(n))),
      drop: fc.option(fc.integer({ min: 0, max: Math.max(0, names.length - 1) }), { freq: 8 }),
      extra: fc.option(fc.tuple(fc.oneof(fc.constantFrom(...KNOWN_ARGS), fc.string({ maxLength: 12 })), argValue), { freq: 8 }),
      wait: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 700 }) }),
    })
    .map(({ client, values, drop, extra, wait }) => {
      const args: [string, string][] = names.map((n, i) => [n, values[i] ?? '']);
      if (drop !== null && drop < args.length) args.splice(drop, 1);
      if (extra) args.push(extra);
      return { client, service, action, args, wait };
    });
});

const sequence = fc.array(call, { minLength: 1, maxLength: MAX_STEPS });

// -------------------------------------------------------------- the checks

/** Where findAction looks when the named service lacks the action (igd.ts). */
const SEARCH_ORDER: readonly ServiceKey[] = ['WANIPConnection:2', 'WANIPv6FirewallControl:1', 'WANCommonInterfaceConfig:1'];

/** The service whose error table an action answers from: the named one if it has the action, else the one it was found in. */
function ownerOf(name: string, version: number, action: string): string | undefined {
  const own = serviceKeyFor(name, version);
  const key = own && ACTIONS[own].has(action) ? own : SEARCH_ORDER.find((k) => ACTIONS[k].has(action));
  return key?.split(':')[0];
}

function checkResult(c: Call, r: ActionResult): string | undefined {
  const entry = findAction(c.service.name, c.service.version, c.action);
  if (!entry) return r.ok || r.error !== UpnpError.INVALID_ACTION ? `no action ${c.action}, yet ${show(r)}` : undefined;
  if (r.ok) {
    const names = r.out.map(([n]) => n);
    if (names.join() !== entry.out.join()) return `out arguments ${names.join()} ≠ ${entry.out.join()}`;
    if (r.out.some(([, v]) => typeof v !== 'string')) return 'an out value is not a string';
    return undefined;
  }
  const owner = ownerOf(c.service.name, c.service.version, c.action);
  const table = owner ? SERVICE_ERRORS[owner] : undefined;
  if (!table || !Object.values(table).includes(r.error)) return `error ${r.error.code} (${r.error.name}) is not in ${owner}'s error table`;
  if (typeof r.detail !== 'string') return 'detail is not a string';
  return undefined;
}

const isLan = (a: IpAddress) => LAN_PREFIXES.some((p) => prefixContains(p, a));

function checkService(h: Harness, victims: readonly Mapping[]): string | undefined {
  const table = h.table;
  const now = h.clock.now();
  for (const m of table.values()) {
    const a = m.internalAddress;
    if (ROUTER.has(a)) return `mapping ${keyOf(m)} points at the router`;
    if (!isLan(a) || isLinkLocal(a) || isMulticast(a) || isUnspecified(a)) return `mapping ${keyOf(m)} points outside the LAN`;
    if (m.family === 4) {
      if (m.externalAddress !== EXTERNAL) return `mapping ${keyOf(m)} on external address ${m.externalAddress}`;
      if (m.origin !== 'static' && (m.externalPort < 1024 || m.externalPort > 65535)) return `mapping ${keyOf(m)} on external port ${m.externalPort}`;
      if (m.protocol === 17 && (m.externalPort === 5350 || m.externalPort === 5351)) return `mapping ${keyOf(m)} on reserved UDP ${m.externalPort}`;
      const holder = table.holderOfExternalPort(m.protocol, m.externalPort);
      if (!holder || !holder.internal.startsWith(`${a}|${m.protocol}|${m.internalPort}`)) return `mapping ${keyOf(m)} does not hold its external port`;
    }
    if (table.countFor(a) > QUOTA) return `${a} holds ${table.countFor(a)} > ${QUOTA}`;
    if (table.countForHost(a) > QUOTA) return `the /64 of ${a} holds ${table.countForHost(a)} > ${QUOTA}`;
    if (m.expiresAt <= m.grantedAt) return `mapping ${keyOf(m)} expires before it was granted`;
  }
  if (table.scheduled !== table.size) return `${table.scheduled} expiry entries for ${table.size} mappings`;
  const want = [...table.values()].filter((m) => m.origin !== 'static' && m.expiresAt > now).map((m) => JSON.stringify(entryOf(m))).sort();
  const have = h.firewall.list().map((e) => JSON.stringify(e)).sort();
  if (want.join('\n') !== have.join('\n')) return `table and memory firewall disagree:\n table ${want.join('\n       ')}\n kernel ${have.join('\n       ')}`;
  for (const v of victims) {
    const now = table.get(keyOf(v));
    if (now !== v) return `the victim's mapping ${keyOf(v)} changed: ${JSON.stringify(now ?? null)}`;
  }
  return undefined;
}

function show(x: unknown): string {
  return JSON.stringify(x, (_, v: unknown) => (typeof v === 'string' && v.length > 80 ? `${v.slice(0, 80)}…(${v.length})` : v));
}

// ------------------------------------------------------------- one sequence

async function world(): Promise<{ h: Harness; igd: IgdControl; victims: Mapping[] }> {
  const h = harness();
  try {
    return await victimsOf(h);
  } catch (err) {
    h.service.stop();
    throw err;
  }
}

async function victimsOf(h: Harness): Promise<{ h: Harness; igd: IgdControl; victims: Mapping[] }> {
  const igd = new IgdControl(h.service, ENV);
  const victims: Mapping[] = [];
  const granted = (r: Awaited<ReturnType<typeof h.service.map>>) => {
    if (!r.ok) throw new Error(`victim setup refused: ${r.detail}`);
    victims.push(r.mapping);
  };
  // The victim's mappings, made over each protocol, on ports the fuzz also names.
  granted(await h.service.map({ via: 'pcp', client: VICTIM4, internalAddress: VICTIM4, protocol: 17, internalPort: 40000, suggestedExternalPort: 40000, lifetime: 86400 }));
  granted(await h.service.map({ via: 'natpmp', client: VICTIM4, internalAddress: VICTIM4, protocol: 6, internalPort: 1024, suggestedExternalPort: 1024, lifetime: 86400 }));
  const up = await igd.handle({ serviceName: 'WANIPConnection', serviceVersion: 2, action: 'AddPortMapping', client: VICTIM4, args: new Map([['NewRemoteHost', ''], ['NewExternalPort', '65535'], ['NewProtocol', 'TCP'], ['NewInternalPort', '65535'], ['NewInternalClient', VICTIM4], ['NewEnabled', '1'], ['NewPortMappingDescription', 'victim'], ['NewLeaseDuration', '0']]) });
  if (!up.ok) throw new Error(`victim AddPortMapping refused: ${show(up)}`);
  const pin = await igd.handle({ serviceName: 'WANIPv6FirewallControl', serviceVersion: 1, action: 'AddPinhole', client: VICTIM6, args: new Map([['RemoteHost', ''], ['RemotePort', '0'], ['InternalClient', VICTIM6], ['InternalPort', '40000'], ['Protocol', '17'], ['LeaseTime', '86400']]) });
  if (!pin.ok) throw new Error(`victim AddPinhole refused: ${show(pin)}`);
  for (const m of h.service.mappings()) if (!victims.includes(m)) victims.push(m);
  return { h, igd, victims };
}

/**
 * One sequence in a world of its own, stopped after it: a service left
 * running keeps its expiry timer (a real one, for the fake clock's day-long
 * victims) and with it the whole world — 12.5 KB a sequence, which ran the
 * million-sequence run out of heap at ~330 000 (seen as a "hang" while GC thrashed).
 */
async function runSequence(seq: readonly Call[]): Promise<void> {
  const { h, igd, victims } = await world();
  try {
    await steps(seq, h, igd, victims);
  } finally {
    h.service.stop();
  }
}

async function steps(seq: readonly Call[], h: Harness, igd: IgdControl, victims: Mapping[]): Promise<void> {
  for (const [i, c] of seq.entries()) {
    if (c.wait) {
      h.clock.advance(c.wait * 1000);
      h.service.expireDue();
    }
    const client = CLIENTS[c.client] as IpAddress;
    let r: ActionResult;
    try {
      r = await igd.handle({ serviceName: c.service.name, serviceVersion: c.service.version, action: c.action, args: new Map(c.args.map(([n, v]) => [n, v === SELF ? (client as string) : v])), client });
    } catch (err) {
      throw new Error(`step ${i}: handle threw: ${(err as Error).stack ?? String(err)}`);
    }
    const bad = checkResult(c, r);
    if (bad) throw new Error(`step ${i}: ${bad}`);
  }
  // The victims' lifetimes are a day; the sequence moves the clock at most MAX_STEPS × 700 s.
  const broken = checkService(h, victims);
  if (broken) throw new Error(broken);
}

// ------------------------------------------------------------ worker side

interface Report {
  runs: number;
  actions: number;
  failure?: string;
}

/** meta[0] = inputs started, meta[1] = bytes of the current input in `bytes`. */
function views(sab: SharedArrayBuffer): { meta: Int32Array; bytes: Uint8Array } {
  return { meta: new Int32Array(sab, 0, 2), bytes: new Uint8Array(sab, 8, PROGRESS_BYTES) };
}

async function runWorker(seed: number, runs: number, sab: SharedArrayBuffer): Promise<Report> {
  const { meta, bytes } = views(sab);
  let actions = 0;
  const property = fc.asyncProperty(sequence, async (seq) => {
    const text = Buffer.from(show(seq)).subarray(0, PROGRESS_BYTES);
    bytes.set(text);
    Atomics.store(meta, 1, text.length);
    Atomics.add(meta, 0, 1);
    actions += seq.length;
    await runSequence(seq);
  });
  const details = await fc.check(property, { seed, numRuns: runs });
  if (!details.failed) return { runs, actions };
  return {
    runs: details.numRuns,
    actions,
    failure: `FUZZ_SEED=${details.seed}, path ${details.counterexamplePath}, ${details.numShrinks} shrinks\ninput ${show(details.counterexample?.[0])}\n${details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)}`,
  };
}

// -------------------------------------------------------------- main side

function supervise(seed: number, runs: number): Promise<Report> {
  const sab = new SharedArrayBuffer(8 + PROGRESS_BYTES);
  const { meta, bytes } = views(sab);
  const lastInput = () => Buffer.from(bytes.subarray(0, Atomics.load(meta, 1))).toString();
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { seed, runs, sab }, resourceLimits: { maxOldGenerationSizeMb: 1024 } });
  return new Promise((resolve) => {
    let settled = false;
    const settle = (r: Report) => {
      if (settled) return;
      settled = true;
      stop();
      resolve(r);
    };
    const stop = watchProgress(
      () => Atomics.load(meta, 0),
      STALL_MS,
      () => {
        void worker.terminate();
        settle({ runs: Atomics.load(meta, 0), actions: 0, failure: `no progress for ${STALL_MS} ms (a hang); input running:\n${lastInput()}` });
      },
    );
    worker.once('message', (r: Report) => settle(r));
    worker.once('error', (e) => settle({ runs: Atomics.load(meta, 0), actions: 0, failure: `exception outside the property; last input ${lastInput()}:\n${e.stack ?? e.message}` }));
    worker.once('exit', (code) => settle({ runs: Atomics.load(meta, 0), actions: 0, failure: `worker exited (${code}) without a report; last input ${lastInput()}` }));
  });
}

if (isMainThread) {
  // tap only in the main thread: in a worker it would talk to the runner too.
  const { default: t } = await import('tap');
  const seed = resolveSeed(DEFAULT_SEED);
  const runs = resolveRuns(DEFAULT_RUNS);
  t.test('IgdControl over the mapping service: hostile action sequences', async (t) => {
    t.comment(`fuzz seed ${seed}, ${runs} sequences (FUZZ_SEED=<int>, FUZZ_RUNS=<int> to override)`);
    const started = Date.now();
    const r = await supervise(seed, runs);
    t.comment(`${r.runs} sequences, ${r.actions} actions in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    t.notOk(r.failure, 'every action answered from its tables; the service intact after every sequence', r.failure ? { failure: r.failure } : {});
    t.equal(r.runs, runs, 'every sequence ran');
  });
} else {
  const { seed, runs, sab } = workerData as { seed: number; runs: number; sab: SharedArrayBuffer };
  void runWorker(seed, runs, sab).then((r) => parentPort?.postMessage(r));
}
