// Wires the parts together: interfaces → firewall backend → mapping service →
// the PCP/NAT-PMP listener. Used by the CLI and, in-process, by the tests.

import type { Config } from './config.js';
import { ConfigError } from './config.js';
import type { FirewallBackend } from './firewall/backend.js';
import { MemoryFirewall } from './firewall/memory.js';
import { NftBackend, NftSetupError } from './firewall/nft/backend.js';
import type { Logger } from './log.js';
import { prefixContains, type IpAddress } from './net/address.js';
import { interfaceExists, lanAddresses, routerAddresses, wanIPv4, type InterfaceReader } from './net/interfaces.js';
import { LanSources } from './net/lan-source.js';
import { hostsBy } from './net/hosts.js';
import { Neighbours, type NeighbourReader } from './net/neighbours.js';
import { DhcpLeases, CHECK_EVERY_MS as LEASE_CHECK_MS } from './net/dhcp-leases.js';
import { PolicyError, builtinPolicy, describeStatic, loadPolicyFile, summarize, type LoadedPolicy } from './policy/load.js';
import { ControlServer, controlSocketPath } from './server/control-socket.js';
import { startUpnp, type Upnp } from './server/upnp-door.js';
import { readFileSync } from 'node:fs';
import { protocolName } from './net/ipproto.js';
import { PortControlServer, DEFAULT_PORT_CONTROL } from './server/port-control.js';
import { DEFAULT_SERVICE_CONFIG, MappingService } from './service/mapping-service.js';
import { monotonicClock, type Clock } from './state/clock.js';
import { Epoch } from './state/epoch.js';
import { DurableStore, StateLockedError, epochStartMono } from './state/store.js';
import { networkInterfaces } from 'node:os';

export interface DaemonDeps {
  clock?: Clock;
  firewall?: FirewallBackend;
  /** A policy given directly (tests); otherwise cfg.policy's file, or the built-in default. */
  policy?: LoadedPolicy;
  interfaces?: InterfaceReader;
  /** The kernel's neighbour table (`ip -j neigh` by default): who is one device. */
  neighbours?: NeighbourReader;
}

export interface ReloadReport {
  source: string;
  rules: number;
  statics: number;
  revoked: { internal: string; protocol: number; internalPort: number; rule: string; reason: string }[];
  staticsAdded: number;
  staticsRemoved: number;
}

export interface Daemon {
  readonly service: MappingService;
  readonly firewall: FirewallBackend;
  readonly server: PortControlServer;
  /** The UPnP IGD front door, when enabled. */
  readonly upnp: Upnp | undefined;
  /** The policy in force. */
  policy(): LoadedPolicy;
  /**
   * Reads the policy file again; if it is valid, swaps it in (statics diffed,
   * mappings it no longer allows removed). A bad file throws PolicyError and
   * changes nothing.
   */
  reloadPolicy(): Promise<ReloadReport>;
  stop(): Promise<void>;
}

/** How often the LAN and WAN addresses are looked at again (a cheap read of the interface list). */
const WAN_POLL_MS = 2000;

export async function startDaemon(cfg: Config, log: Logger, deps: DaemonDeps = {}): Promise<Daemon> {
  const read = deps.interfaces ?? networkInterfaces;
  const clock = deps.clock ?? monotonicClock;
  for (const name of [...cfg.lan, cfg.wan]) {
    if (!interfaceExists(name, read)) throw new ConfigError(`interface ${name} does not exist`);
  }
  let lan = lanAddresses(cfg.lan, read);
  // A LAN that is down or unnumbered at boot is served as soon as it has addresses.
  if (lan.length === 0) log.warn({ event: 'lan-addresses', detail: `${cfg.lan.join(', ')} have no addresses yet: serving as soon as they do` });
  // The one "is this request from the LAN" rule of every door; closed until
  // the kernel's arrival-interface guard is confirmed below.
  const sources = new LanSources(cfg.lan, lan);
  // A host is a device (one link-layer address), for secure mode and for
  // every door's fairness accounting.
  const neighbours = new Neighbours(deps.neighbours);
  sources.hostOf = hostsBy(neighbours);
  // The router's own addresses (never a mapping target), read again at every
  // poll: one added later must not become one.
  let routerAddrs = routerAddresses(read);
  // Set once the listener is up: what to do when the LAN's addresses change.
  let onLanChange: ((snapshot: InterfaceReader) => Promise<void>) | undefined;

  let externalIp: IpAddress | undefined = cfg.externalIp ?? wanIPv4(cfg.wan, read);
  // Set once everything is up: what to do when the WAN address changes.
  let onExternalChange: ((to: IpAddress) => Promise<void>) | undefined;
  // One cheap poll of the interface list for both: the LAN's addresses and
  // (unless given on the command line) the WAN's.
  const wanPoll: NodeJS.Timeout | undefined = setInterval(() => {
    // One read of the interface list per poll serves all three questions.
    const now = read();
    const snapshot = () => now;
    routerAddrs = routerAddresses(snapshot);
    if (onLanChange) onLanChange(snapshot).catch((err: unknown) => log.error({ event: 'lan-addresses-failed', error: (err as Error).message }));
    if (cfg.externalIp) return;
    const wan = wanIPv4(cfg.wan, snapshot);
    if (wan === externalIp) return;
    log.warn({ event: 'external-address', from: externalIp ?? null, to: wan ?? null });
    externalIp = wan;
    if (wan && onExternalChange) {
      onExternalChange(wan).catch((err: unknown) => log.error({ event: 'external-address-failed', error: (err as Error).message }));
    }
  }, WAN_POLL_MS);
  wanPoll?.unref();
  if (!externalIp) log.warn({ event: 'external-address', detail: `${cfg.wan} has no IPv4 address yet: IPv4 requests get NETWORK_FAILURE` });

  const readPolicy = (): LoadedPolicy => {
    if (!cfg.policy) return builtinPolicy(() => clock.now());
    return loadPolicyFile(cfg.policy, () => clock.now());
  };
  let policy: LoadedPolicy;
  try {
    policy = deps.policy ?? readPolicy();
  } catch (err) {
    if (wanPoll) clearInterval(wanPoll);
    throw err instanceof PolicyError ? new ConfigError(`policy not valid, not starting:\n${err.message}`) : err;
  }
  log.info({ event: 'policy', source: policy.source, rules: policy.rules.length, statics: policy.statics.length });

  // The state directory first: opening it takes its lock, so a second
  // daemon on the same directory stops here, before it touches nftables or
  // the files.
  let opened: Awaited<ReturnType<typeof DurableStore.open>>;
  try {
    opened = await DurableStore.open(cfg.stateDir, clock.wall());
  } catch (err) {
    if (wanPoll) clearInterval(wanPoll);
    throw new ConfigError(err instanceof StateLockedError ? err.message : `state directory ${cfg.stateDir}: ${(err as Error).message} (give a writable --state-dir)`);
  }
  const { store, state } = opened;
  let firewall: FirewallBackend;
  try {
    firewall = deps.firewall ?? makeBackend(cfg, clock, log);
    // Recorded first so that start() installs them with everything else.
    await firewall.setStatics(policy.statics);
    await firewall.start();
  } catch (err) {
    if (wanPoll) clearInterval(wanPoll);
    await store.close();
    throw err instanceof NftSetupError ? new ConfigError(`nftables: ${err.message}`) : err;
  }
  const epoch = new Epoch(clock);
  const service = new MappingService(
    {
      ...DEFAULT_SERVICE_CONFIG,
      minLifetime: cfg.lifetime.min,
      maxLifetime: cfg.lifetime.max,
      maxMappings: cfg.maxMappings,
      maxFiltersPerMapping: cfg.maxFiltersPerMapping,
      // One LAN interface has nobody to leave room for.
      interfaceShare: cfg.lan.length > 1 ? DEFAULT_SERVICE_CONFIG.interfaceShare : 1,
    },
    policy.policy,
    firewall,
    {
      externalIPv4: () => externalIp,
      isLanHost: (a) => sources.isLanHost(a),
      hostOf: (a) => sources.hostOf(a),
      isRouterAddress: (a) => routerAddrs.has(a),
      interfaceOf: (a) => lan.find((l) => prefixContains(l.prefix, a))?.interface,
    },
    clock,
    epoch,
    log,
  );
  // Durable state first: mappings come back with what they have left, and the
  // epoch continues; lost or damaged state starts a new epoch. Both are announced below.
  const now = { mono: clock.now(), wall: clock.wall(), bootId: clock.bootId() };
  if (state.status === 'loaded' && state.epoch) epoch.restore(epochStartMono(state.epoch, now, state.lastWriteWall));
  const recovered = service.restore(state.mappings, state.lastWriteWall);
  log[state.status === 'corrupt' ? 'warn' : 'info']({
    event: 'state',
    status: state.status,
    detail: state.detail,
    movedAside: state.movedAside,
    ...recovered,
    epoch: epoch.seconds(),
    stateDir: cfg.stateDir,
  });
  service.attachStore(store);
  // Restored mappings are judged by the policy in force now (it may have
  // changed while the daemon was down), and the static forwards enter the table.
  const initial = await service.swapPolicy(policy.policy, policy.statics);
  // RFC 6887 §15: lifetimes end with the host's DHCP lease, from the first request on.
  const leases = cfg.dhcpLeases ? new DhcpLeases(cfg.dhcpLeases) : undefined;
  let leaseError: string | undefined;
  const checkLeases = async (): Promise<void> => {
    if (!leases) return;
    const r = await leases.refresh();
    if (leases.error !== undefined && leases.error !== leaseError) log.warn({ event: 'dhcp-leases', file: leases.file, error: leases.error, detail: 'the last leases read stay in force' });
    leaseError = leases.error;
    if (r.changed) log.info({ event: 'dhcp-leases', file: leases.file, leases: leases.size, skippedLines: leases.skipped });
    await service.revokeEndedLeases(r.lost);
  };
  if (leases) {
    service.useLeases(leases);
    await checkLeases();
  }

  const server = new PortControlServer(
    { ...DEFAULT_PORT_CONTROL, port: cfg.port, announcePort: cfg.announcePort, rate: cfg.rateLimit },
    lan,
    sources,
    service,
    log,
  );
  let reconciler: NodeJS.Timeout | undefined;
  let upnp: Upnp | undefined;
  // Fail closed: no door answers while the kernel does not keep the WAN away
  // from our ports. Checked at start, at every reconcile, and at every
  // address poll while it is missing (so an admin's fix takes effect within 2 s).
  let guardDetail = '';
  const checkGuard = async (): Promise<void> => {
    const g = firewall.guard ? await firewall.guard().catch((err: unknown) => ({ ok: false, detail: (err as Error).message })) : { ok: true, detail: 'nothing is enforced (memory backend)' };
    if (g.ok !== sources.open || (!g.ok && g.detail !== guardDetail)) {
      if (g.ok) log.warn({ event: 'lan-guard', status: 'in place', detail: g.detail, note: 'answering requests' });
      else log.error({ event: 'lan-guard', status: 'MISSING', detail: g.detail, note: 'NOT answering any request until the kernel drops our ports on non-LAN interfaces' });
    }
    guardDetail = g.ok ? '' : g.detail;
    sources.setGuarded(g.ok);
  };
  try {
    if (!(firewall instanceof NftBackend)) {
      await service.withDesiredEntries((desired) => firewall.apply(desired.map((d) => ({ op: 'put' as const, entry: d.entry, timeoutSeconds: d.timeoutSeconds }))));
    } else {
      // The kernel is made to match the restored table: missing entries
      // added with what they have left, entries no mapping owns removed.
      await reconcileNft(service, firewall, log, 'start');
      if (cfg.reconcileSeconds > 0) {
        let busy = false;
        reconciler = setInterval(() => {
          if (busy) return;
          busy = true;
          firewall
            .intact()
            .then(async (ok) => {
              if (!ok) {
                // Closed from the moment the damage is seen until it is repaired.
                await checkGuard();
                await reconcileNft(service, firewall, log, 'objects or elements missing');
              }
              await checkGuard();
            })
            .catch((err: unknown) => log.error({ event: 'nft-reconcile-failed', error: (err as Error).message }))
            .finally(() => (busy = false));
        }, cfg.reconcileSeconds * 1000);
        reconciler.unref();
      }
    }
    await checkGuard();
    await service.compactStore();
    await server.start();
    if (cfg.upnp.enabled) {
      upnp = await startUpnp({ cfg: cfg.upnp, wan: cfg.wan, lan, sources, neighbours, service, deviceUuid: store.deviceUuid, version: packageVersion(), log });
    }
  } catch (err) {
    await upnp?.stop();
    if (reconciler) clearInterval(reconciler);
    if (wanPoll) clearInterval(wanPoll);
    await server.stop();
    await firewall.stop();
    await store.close();
    throw err;
  }
  // Every start is announced (RFC 6886 §3.2.1: boot, reboot "or any other
  // event that may indicate possible loss or change of NAT mapping state";
  // RFC 6887 §14.1.3). After kept state the epoch continues, and a client's
  // §8.5 check then confirms nothing was lost instead of guessing.
  if (cfg.announce) server.announce();

  // The WAN address may have changed while the daemon was down.
  const stale = externalIp !== undefined && service.count((m) => m.family === 4 && m.origin !== 'static' && m.externalAddress !== externalIp) > 0;
  // RFC 6887 §8.5: a new external address starts a new epoch. The mappings
  // move to it, PCP clients get mapping updates (§14.2), and everyone gets
  // the announcements (RFC 6887 §14.1, RFC 6886 §3.2.1).
  const leaseTimer = leases
    ? setInterval(() => checkLeases().catch((err: unknown) => log.error({ event: 'dhcp-leases-failed', error: (err as Error).message })), LEASE_CHECK_MS)
    : undefined;
  leaseTimer?.unref();
  onExternalChange = async (to) => {
    const moved = await service.moveExternalAddress(to);
    epoch.reset();
    await service.recordEpoch();
    server.mappingsMoved(moved);
    if (cfg.announce) server.announce();
  };
  // Addresses added to the LAN after start (SLAAC, a new prefix) are served
  // within one poll; removed ones are no longer bound.
  let lanBusy = false;
  onLanChange = async (snapshot) => {
    const next = lanAddresses(cfg.lan, snapshot);
    const key = (l: typeof lan) => l.map((x) => `${x.bindAddress}/${x.prefix.length}`).sort().join(',');
    if (!sources.open) await checkGuard();
    // Unchanged addresses, unless one is still waiting to be bound (tentative at start).
    if (lanBusy || (key(next) === key(lan) && server.waiting().length === 0)) return;
    lanBusy = true;
    try {
      const changed = key(next) !== key(lan);
      lan = next;
      sources.update(next);
      if (changed) log.info({ event: 'lan-addresses', addresses: next.map((l) => l.bindAddress) });
      await server.updateAddresses(next);
      await upnp?.updateAddresses(next);
    } finally {
      lanBusy = false;
    }
  };
  if (stale && externalIp) {
    log.warn({ event: 'external-address', detail: 'changed while the daemon was down', to: externalIp });
    await onExternalChange(externalIp);
  }
  let reloading: Promise<unknown> = Promise.resolve();
  const reloadPolicy = (): Promise<ReloadReport> => {
    const run = async (): Promise<ReloadReport> => {
      const next = readPolicy();
      const swap = await service.swapPolicy(next.policy, next.statics);
      const fw = await firewall.setStatics(next.statics);
      policy = next;
      const report: ReloadReport = {
        source: next.source,
        rules: next.rules.length,
        statics: next.statics.length,
        revoked: swap.removed.map((r) => ({ internal: r.mapping.internalAddress, protocol: r.mapping.protocol, internalPort: r.mapping.internalPort, rule: r.rule, reason: r.reason })),
        staticsAdded: fw.added,
        staticsRemoved: fw.removed,
      };
      log.warn({ event: 'policy-reloaded', ...report, revoked: report.revoked.length });
      return report;
    };
    const p = reloading.then(run, run);
    reloading = p.catch(() => undefined);
    return p;
  };
  if (initial.removed.length) log.warn({ event: 'policy-applied-to-restored', revoked: initial.removed.length });

  const control = new ControlServer(
    controlSocketPath(cfg.stateDir),
    async (req) => {
      if (req.op === 'reload') return reloadPolicy();
      if (req.op === 'policy') return summarize(policy);
      return listing(service, policy);
    },
    log,
  );
  try {
    await control.start();
  } catch (err) {
    // The daemon still works; only the CLI's reload/list do not.
    log.error({ event: 'control-socket-failed', path: controlSocketPath(cfg.stateDir), error: (err as Error).message });
  }

  log.info({ event: 'started', backend: firewall.name, externalIPv4: externalIp ?? null, lan: cfg.lan, wan: cfg.wan });

  return {
    service,
    firewall,
    server,
    upnp,
    policy: () => policy,
    reloadPolicy,
    async stop() {
      if (wanPoll) clearInterval(wanPoll);
      if (leaseTimer) clearInterval(leaseTimer);
      if (reconciler) clearInterval(reconciler);
      await control.stop();
      await upnp?.stop();
      await server.stop();
      if (cfg.flushOnExit) {
        const removed = await service.flushAll();
        log.info({ event: 'flushed-on-exit', removed });
      }
      service.stop();
      await store.close();
      await firewall.stop();
      log.info({ event: 'stopped' });
    },
  };
}

function makeBackend(cfg: Config, clock: Clock, log: Logger): FirewallBackend {
  if (cfg.backend === 'memory') {
    log.warn({ event: 'backend', backend: 'memory', detail: 'nothing is enforced in the kernel: for tests and dry runs only' });
    return new MemoryFirewall(clock);
  }
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(cfg.nft.table)) throw new ConfigError(`--nft-table '${cfg.nft.table}' is not a valid table name`);
  return new NftBackend(
    { family: 'inet', table: cfg.nft.table, embedded: cfg.nft.embed },
    {
      wan: cfg.wan,
      lan: cfg.lan,
      mark: cfg.nft.mark,
      deviceUdpRate: cfg.deviceRateLimit,
      guarded: cfg.upnp.enabled ? { udp: [cfg.port, cfg.upnp.ssdpPort], tcp: [cfg.upnp.httpPort] } : { udp: [cfg.port], tcp: [] },
    },
    log,
  );
}

/**
 * Makes the kernel match the table now, then keeps checking cheaply: an
 * OpenWrt firewall reload (or an admin's `nft flush`) empties our chains and
 * sets behind our back, and the incumbent never notices.
 */
async function reconcileNft(service: MappingService, nft: NftBackend, log: Logger, why: string): Promise<void> {
  const r = await service.withDesiredEntries((desired) => nft.reconcile(desired));
  if (r.added || r.removed || r.recreated) log.warn({ event: 'nft-repaired', why, ...r });
}

export interface ListedMapping {
  origin: string;
  kind: string;
  protocol: string;
  internal: string;
  external: string;
  /** Seconds left, or 'static'. */
  lifetime: number | 'static';
  filters: string[];
  client: string;
  description: string;
}

/** Every opening, as `portcullis list` shows it: client mappings, static forwards and static pinholes. */
export function listing(service: MappingService, policy: LoadedPolicy): { mappings: ListedMapping[]; staticPinholes: { name: string; rule: string }[] } {
  const bracket = (a: string) => (a.includes(':') ? `[${a}]` : a);
  const mappings = service.mappings().map((m) => ({
    origin: m.origin,
    kind: m.kind,
    protocol: protocolName(m.protocol),
    internal: `${bracket(m.internalAddress)}:${m.internalPort}`,
    external: `${bracket(m.externalAddress)}:${m.externalPort}`,
    lifetime: m.origin === 'static' ? ('static' as const) : service.remaining(m),
    filters: m.filters.map((f) => `${f.prefix.address}/${f.prefix.length}${f.port ? `:${f.port}` : ''}`),
    client: m.client,
    description: m.description,
  }));
  const staticPinholes = policy.statics.filter((s) => s.kind === 'pinhole').map((s) => ({ name: s.name, rule: describeStatic(s) }));
  return { mappings, staticPinholes };
}

export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0';
  }
}
