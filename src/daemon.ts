// Wires the parts together: the address watch → state directory → firewall
// → mapping service → the doors (PCP/NAT-PMP, UPnP) and the control socket.
// Each part that starts pushes its stop onto one stack (src/daemon/teardown.ts):
// a failed start and stop() unwind it alike. Used by the CLI and, in-process,
// by the tests.

import { networkInterfaces } from 'node:os';
import { ConfigError, type Config } from './config.js';
import type { FirewallBackend } from './firewall/backend.js';
import type { Logger } from './log.js';
import { prefixContains, type IpAddress } from './net/address.js';
import { AddressWatch } from './net/address-watch.js';
import { hostsBy } from './net/hosts.js';
import { interfaceExists, type InterfaceReader } from './net/interfaces.js';
import { LanSources } from './net/lan-source.js';
import { Neighbours, type NeighbourReader } from './net/neighbours.js';
import type { LoadedPolicy } from './policy/load.js';
import { ControlServer, controlSocketPath } from './server/control-socket.js';
import { DEFAULT_PORT_CONTROL, PortControlServer } from './server/port-control.js';
import { startUpnp, type Upnp } from './server/upnp-door.js';
import { DEFAULT_SERVICE_CONFIG, MappingService, type ServiceConfig } from './service/mapping-service.js';
import { monotonicClock, type Clock } from './state/clock.js';
import { Epoch } from './state/epoch.js';
import { keepIntact, makeBackend, startFirewall, syncFirewall } from './daemon/firewall.js';
import { followLan } from './daemon/follow-lan.js';
import { LanGuard } from './daemon/lan-guard.js';
import { checkLeases } from './daemon/lease-check.js';
import { DhcpLeases } from './net/dhcp-leases.js';
import { controlHandler } from './daemon/control.js';
import { RecentEvents } from './daemon/recent.js';
import { PolicyKeeper, type ReloadReport } from './daemon/policy-keeper.js';
import { DeviceLocator, followDevices } from './daemon/device-statics.js';
import type { StaticEdit } from './policy/edit.js';
import { guardedMetricsPorts, prepareMetrics, serveMetricsOf, warnIfBehindNat } from './daemon/metrics.js';
import { openState, restoreState } from './daemon/state.js';
import { adminGuardedPorts, prepareAdmin, startAdmin } from './server/admin/start.js';
import { Teardown } from './daemon/teardown.js';
import { startUpstream } from './daemon/upstream.js';
import { IdleGarbage, collectGarbage } from './daemon/garbage.js';
import { loadMallocTrim } from './firewall/malloc-trim.js';
import { NO_TELEMETRY } from './telemetry.js';
import { packageVersion } from './version.js';

export type { ReloadReport } from './daemon/policy-keeper.js';

export interface DaemonDeps {
  clock?: Clock;
  firewall?: FirewallBackend;
  /** A policy given directly (tests); otherwise cfg.policy's file, or the built-in default. */
  policy?: LoadedPolicy;
  interfaces?: InterfaceReader;
  /** The kernel's neighbour table (`ip -j neigh` by default): who is one device. */
  neighbours?: NeighbourReader;
  /** Shorter upstream waits (tests). */
  upstreamTiming?: Parameters<typeof startUpstream>[0]['timing'];
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
  /** Adds or removes a static opening in the policy file, then reloads it (PolicyEditError when it cannot). */
  editStatics(change: StaticEdit): Promise<ReloadReport>;
  stop(): Promise<void>;
}

export async function startDaemon(cfg: Config, log: Logger, deps: DaemonDeps = {}): Promise<Daemon> {
  const read = deps.interfaces ?? networkInterfaces;
  const clock = deps.clock ?? monotonicClock;
  // Every part logs through it, so `portcullis status` can tell the recent errors, repairs and guard state.
  const recent = new RecentEvents(log);
  log = recent.logger;
  for (const name of cfg.lan) {
    if (!interfaceExists(name, read)) throw new ConfigError(`interface ${name} does not exist`);
  }
  // A WAN interface may come later (a DS-Lite softwire is made once the IPv6
  // link is up): its rules match it by name, and the address watch sees it
  // appear. With none of them there, the setting is wrong.
  const missingWans = cfg.wans.filter((name) => !interfaceExists(name, read));
  if (missingWans.length === cfg.wans.length) {
    throw new ConfigError(cfg.wans.length === 1 ? `interface ${cfg.wans[0]} does not exist` : `none of the WAN interfaces exists (${cfg.wans.join(', ')})`);
  }
  for (const name of missingWans) log.warn({ event: 'wan-missing', interface: name, detail: `${name} does not exist yet: its rules take effect when it appears` });
  const teardown = new Teardown(log);
  try {
    const watch = new AddressWatch({ lan: cfg.lan, wans: cfg.wans, externalIp: cfg.externalIp, read, log });
    // The one "is this request from the LAN" rule of every door; closed until
    // the kernel's arrival-interface guard is confirmed below. A host is a
    // device (one link-layer address), for secure mode and for every door's
    // fairness accounting.
    const sources = new LanSources(cfg.lan, watch.lan());
    const neighbours = new Neighbours(deps.neighbours);
    // Followed through `ip monitor neigh`: a request never forks to learn a device.
    teardown.push(neighbours.follow({ onState: (running, why) => (running ? log.info({ event: 'neighbours-followed' }) : log.warn({ event: 'neighbours-polled', why })) }));
    sources.hostOf = hostsBy(neighbours);
    watch.onLanChange((lan) => sources.update(lan));
    const policy = new PolicyKeeper(cfg.policy, clock, log, deps.policy);
    // Checked before anything starts: a WAN or wildcard address stops here.
    const metrics = prepareMetrics(cfg.metrics, watch.lan());
    const telemetry = metrics?.telemetry ?? NO_TELEMETRY;
    const admin = prepareAdmin(cfg.admin, watch.lan());

    const opened = await openState(cfg.stateDir, clock, telemetry);
    teardown.push(() => opened.store.close());
    const firewall = deps.firewall ?? makeBackend(cfg, clock, log, [...guardedMetricsPorts(metrics), ...adminGuardedPorts(admin)]);
    // Device openings start at the addresses their devices have now.
    const leases = cfg.dhcpLeases ? new DhcpLeases(cfg.dhcpLeases) : undefined;
    const locator = new DeviceLocator(neighbours, cfg.lan, leases);
    if (policy.followsDevices()) await neighbours.refresh();
    policy.locateDevicesWith((mac) => locator.sighting(mac));
    await startFirewall(firewall, policy.inForce());
    teardown.push(() => firewall.stop());

    const epoch = new Epoch(clock);
    const service = new MappingService(
      serviceConfig(cfg),
      policy.current().policy,
      firewall,
      {
        externalIPv4: () => watch.externalIPv4(),
        // On-link LAN hosts, and the admin's routed LAN prefixes (an AFTR's subscribers behind the softwire).
        isLanHost: (a) => sources.isLanHost(a) || cfg.lanRoutes.some((p) => prefixContains(p, a)),
        hostOf: (a) => sources.hostOf(a),
        isRouterAddress: (a) => watch.isRouterAddress(a),
        interfaceOf: (a) => watch.lan().find((l) => prefixContains(l.prefix, a))?.interface,
      },
      clock,
      epoch,
      log,
      undefined,
      telemetry,
    );
    teardown.push(async (why) => {
      if (why === 'stop' && cfg.flushOnExit) log.info({ event: 'flushed-on-exit', removed: await service.flushAll() });
      service.stop();
    });
    const restored = restoreState(service, epoch, opened, clock, cfg.stateDir, telemetry, log);
    // Restored mappings are judged by the policy in force now (it may have
    // changed while the daemon was down), and the static forwards enter the table.
    const initial = await service.swapPolicy(policy.current().policy, policy.inForce());
    if (leases) teardown.push(await checkLeases(leases, service, log));
    teardown.push(followDevices(policy, neighbours, service, firewall, log));

    const server = new PortControlServer({ ...DEFAULT_PORT_CONTROL, port: cfg.port, announcePort: cfg.announcePort, rate: cfg.rateLimit }, watch.lan(), sources, service, log, telemetry);
    teardown.push(() => server.stop());
    const guard = new LanGuard(firewall, sources, log);
    // Removes what no mapping owns; what is missing comes back after start (below).
    const reinstall = await syncFirewall(service, firewall, telemetry, log);
    await guard.check();
    if (restored.snapshotFirst) await service.compactStore();
    // Behind the ISP's NAT, IPv4 mappings are relayed to its PCP server (RFC 7648) before any client is served.
    const upstream = await startUpstream({
      setting: cfg.upstreamPcp,
      wans: cfg.wans,
      nat44: cfg.nat44,
      stateDir: cfg.stateDir,
      flushOnExit: cfg.flushOnExit,
      service,
      wanIPv4: () => watch.externalIPv4(),
      newEpoch: async () => {
        epoch.reset();
        telemetry.epochReset();
        await service.recordEpoch();
        if (cfg.announce) server.announce();
      },
      tellMoved: (moved) => server.mappingsMoved(moved),
      guardUpstream: async (s) => firewall.guardUpstream?.(s),
      log,
      timing: deps.upstreamTiming,
    });
    teardown.push((why) => upstream.stop(why));
    await server.start();
    const upnp = cfg.upnp.enabled
      ? await startUpnp({ cfg: cfg.upnp, wan: () => watch.ipv4Wan() ?? cfg.wans[0]!, lan: watch.lan(), sources, neighbours, service, deviceUuid: opened.store.deviceUuid, version: packageVersion(), log, telemetry })
      : undefined;
    if (upnp) teardown.push(() => upnp.stop());
    // Every start is announced (RFC 6886 §3.2.1: boot, reboot "or any other
    // event that may indicate possible loss or change of NAT mapping state";
    // RFC 6887 §14.1.3). After kept state the epoch continues, and a client's
    // §8.5 check then confirms nothing was lost instead of guessing.
    if (cfg.announce) server.announce();

    // RFC 6887 §8.5: a new external address starts a new epoch. The mappings
    // move to it, PCP clients get mapping updates (§14.2), and everyone gets
    // the announcements (RFC 6887 §14.1, RFC 6886 §3.2.1).
    const moveTo = async (to: IpAddress): Promise<void> => {
      warnIfBehindNat(to, log, upstream.status());
      const moved = await service.moveExternalAddress(to);
      epoch.reset();
      telemetry.epochReset();
      await service.recordEpoch();
      server.mappingsMoved(moved);
      if (cfg.announce) server.announce();
    };
    followLan(watch, upnp ? [server, upnp] : [server]);
    watch.onPoll(() => (sources.open ? undefined : guard.check()));
    watch.onExternalChange(moveTo);
    watch.start();
    teardown.push(() => watch.stop());
    // The WAN address may have changed while the daemon was down.
    const external = watch.externalIPv4();
    if (external && service.count((m) => m.family === 4 && m.origin !== 'static' && m.externalAddress !== external) > 0) {
      log.warn({ event: 'external-address', detail: 'changed while the daemon was down', to: external });
      await moveTo(external);
    } else warnIfBehindNat(external, log, upstream.status());
    if (initial.removed.length) log.warn({ event: 'policy-applied-to-restored', revoked: initial.removed.length });
    if (metrics) teardown.push(await serveMetricsOf(metrics, service, log));
    const editStatics = (change: StaticEdit) => policy.edit(change, service, firewall);
    if (admin) {
      const parts = { lan: () => watch.lan(), lanInterfaces: cfg.lan, sources, service, policy: () => policy.current(), inForce: () => policy.inForce(), policyChanges: () => policy.changes(), editStatics, neighbours, leases, log };
      teardown.push(await startAdmin(admin, cfg.stateDir, parts));
    }

    const reloadPolicy = () => policy.reload(service, firewall);
    const handler = controlHandler({ upstream: () => upstream.status(), service, firewall, policy: () => policy.current(), reloadPolicy, neighbours, recent, stateDir: cfg.stateDir, reconcileSeconds: cfg.reconcileSeconds, leases });
    const control = new ControlServer(controlSocketPath(cfg.stateDir), handler, log);
    await control.start().then(
      () => teardown.push(() => control.stop()),
      // The daemon still works; only the CLI's reload/list do not.
      (err: unknown) => log.error({ event: 'control-socket-failed', path: controlSocketPath(cfg.stateDir), error: (err as Error).message }),
    );

    log.info({ event: 'started', backend: firewall.name, externalIPv4: watch.externalIPv4() ?? null, lan: cfg.lan, wan: cfg.wans, ipv4Wan: watch.ipv4Wan() ?? null });
    // The kernel's missing entries come back in bounded batches while the
    // doors answer (daemon/firewall.ts); the periodic check starts after.
    let stopping = false;
    const reinstalled = reinstall
      .run(() => stopping)
      .then(async () => {
        const trimC = await loadMallocTrim();
        if (stopping) return;
        const garbage = collectGarbage((c) => log.debug({ event: 'start-compacted', ...c }), { trimC });
        log.debug({ event: 'start-garbage', ...(garbage?.collected ?? { detail: 'no full collection available' }) });
        if (garbage) {
          teardown.push(() => garbage.cancel());
          // From here on, after a burst: counted from the heap the start leaves.
          teardown.push(new IdleGarbage(log, { trimC }).start());
        }
        const intactCheck = keepIntact(service, firewall, guard, cfg.reconcileSeconds, telemetry, log);
        if (intactCheck) teardown.push(intactCheck);
      })
      .catch((err: unknown) => log.error({ event: 'nft-reinstall-failed', error: (err as Error).message, detail: 'the periodic reconciliation is not running' }));
    teardown.push(async () => {
      stopping = true;
      await reinstalled;
    });
    return {
      service,
      firewall,
      server,
      upnp,
      policy: () => policy.current(),
      reloadPolicy,
      editStatics,
      async stop() {
        await teardown.unwind('stop');
        log.info({ event: 'stopped' });
      },
    };
  } catch (err) {
    await teardown.unwind('failed start');
    throw err;
  }
}

function serviceConfig(cfg: Config): ServiceConfig {
  return {
    ...DEFAULT_SERVICE_CONFIG,
    minLifetime: cfg.lifetime.min,
    maxLifetime: cfg.lifetime.max,
    maxMappings: cfg.maxMappings,
    maxFiltersPerMapping: cfg.maxFiltersPerMapping,
    // One LAN interface has nobody to leave room for.
    interfaceShare: cfg.lan.length > 1 ? DEFAULT_SERVICE_CONFIG.interfaceShare : 1,
  };
}
