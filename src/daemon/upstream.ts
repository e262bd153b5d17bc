// The PCP proxy's part of the daemon (RFC 7648): which upstream server, if
// any (--upstream-pcp), the wire to it, and what its events do here.
//
// - An explicit server: always relayed; its refusals and its silence are
//   the clients' refusals.
// - auto (the default): on a WAN address of the router's own, nothing
//   (today's behaviour). Behind the ISP's NAT, the discovered candidates
//   (src/net/upstream-discovery.ts) are probed; the first that answers is
//   used. None: mappings are granted here, and the log, doctor and status
//   say that they do not reach the internet; probed again every few minutes.
// - Upstream lost its state or announced itself, or its external address
//   changed: the upstream mappings are made again, this router's epoch
//   starts again (RFC 6887 §8.5: its external address is upstream's), the
//   PCP clients of moved mappings get mapping updates, and everyone hears
//   the announcements.

import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { UpstreamPcpSetting } from '../config.js';
import type { Logger } from '../log.js';
import { familyOf, type IpAddress } from '../net/address.js';
import { classifyWanIPv4, lineMismatch } from '../net/wan-address.js';
import { discoverUpstreams, type UpstreamSource } from '../net/upstream-discovery.js';
import { UpstreamPcpClient, type UpstreamWireStatus } from '../client/upstream-pcp.js';
import type { MappingService } from '../service/mapping-service.js';
import type { UpstreamRelay } from '../service/upstream.js';
import type { Mapping } from '../domain/mapping.js';
import type { Unwinding } from './teardown.js';

export interface UpstreamStatus {
  setting: string;
  /** proxying: relayed to `server`; not-needed: the WAN address is the router's own; none: behind NAT with no upstream that answers; off. */
  state: 'proxying' | 'not-needed' | 'none' | 'off';
  source?: UpstreamSource | 'configured';
  publicAddress: string | null;
  wire?: UpstreamWireStatus;
  counts?: { relayed: number; refused: number; unanswered: number; removed: number };
  detail: string;
}

export interface UpstreamParts {
  setting: UpstreamPcpSetting;
  /** The WAN zone's interfaces, in the admin's order: discovery looks at each (docs/upstream-pcp.md). */
  wans: readonly string[];
  /** false: a DS-Lite B4 — upstream maps each LAN host itself, named by THIRD_PARTY (RFC 7648 §3.3). */
  nat44?: boolean;
  stateDir: string;
  /** --flush-on-exit: the client mappings are removed upstream too when the daemon stops (within FLUSH_DEADLINE_MS). */
  flushOnExit?: boolean;
  service: MappingService;
  /** This router's own WAN IPv4 address (the PCP Client IP field toward upstream; on DS-Lite the B4's softwire address). */
  wanIPv4(): IpAddress | undefined;
  /** Start a new epoch, record it and announce it (RFC 6887 §14.1, RFC 6886 §3.2.1). */
  newEpoch(): Promise<void>;
  /** Tell the PCP clients of mappings whose external address or port changed (RFC 6887 §14.2). */
  tellMoved(moved: Mapping[]): void;
  /**
   * The kernel counts datagrams from the server's address and port only when
   * they arrive on the WAN (FirewallBackend.guardUpstream): Node tells no
   * arrival interface, and a LAN host can forge the server's source.
   */
  guardUpstream?(server: { address: IpAddress; port: number } | undefined): Promise<void>;
  log: Logger;
  /** Tests: shorter waits. */
  timing?: { irtMs?: number; patienceMs?: number; passMs?: number; reprobeMs?: number; bindPort?: number; flushDeadlineMs?: number };
}

export interface UpstreamPart {
  status(): UpstreamStatus;
  /** `why` 'stop' (an orderly exit) relays the flush of --flush-on-exit; a failed start does not. */
  stop(why?: Unwinding): Promise<void>;
}

/**
 * A LAN client's request waits at most this long for upstream: two sends at
 * §8.1.1's IRT of 3 s. A UPnP request waits less (service/upstream.ts: its
 * client's HTTP wait is shorter).
 */
const PATIENCE_MS = 4_000;
const PASS_MS = 2_000;
const REPROBE_MS = 300_000;
/** How long a stop with --flush-on-exit waits for upstream's answers to the removals: never holding the stop up for long. */
const FLUSH_DEADLINE_MS = 2_000;

export async function startUpstream(p: UpstreamParts): Promise<UpstreamPart> {
  const t = p.timing ?? {};
  const setting = typeof p.setting === 'string' ? p.setting : `${p.setting.address}:${p.setting.port}`;
  let wire: UpstreamPcpClient | undefined;
  let relay: UpstreamRelay | undefined;
  let source: UpstreamStatus['source'];
  let publicAddress: IpAddress | undefined;
  let passing = false;
  let timer: NodeJS.Timeout | undefined;
  let reprobe: NodeJS.Timeout | undefined;
  let noneDetail = '';

  const guard = async (server: { address: IpAddress; port: number } | undefined): Promise<void> => {
    try {
      await p.guardUpstream?.(server);
    } catch (err) {
      p.log.error({ event: 'upstream-guard-failed', server: server?.address, detail: `${(err as Error).message}: a LAN host could pose as the upstream server` });
    }
  };

  const use = async (address: IpAddress, port: number, from: UpstreamStatus['source'], mustAnswer: boolean): Promise<boolean> => {
    // Before the first datagram to it: even the probe's answer counts only from the WAN.
    await guard({ address, port });
    const w = new UpstreamPcpClient({ server: address, serverPort: port, irtMs: t.irtMs, bindPort: t.bindPort, log: p.log });
    await w.start();
    const client = p.wanIPv4();
    if (mustAnswer && (!client || !(await w.probe(client, t.patienceMs ?? PATIENCE_MS)))) {
      w.stop();
      await guard(undefined);
      return false;
    }
    wire = w;
    source = from;
    const r = p.service.useUpstream({
      server: w,
      nonceKey: nonceKey(p.stateDir),
      clientAddress: () => p.wanIPv4(),
      publicAddress: () => publicAddress,
      thirdParty: p.nat44 === false,
      patienceMs: t.patienceMs ?? PATIENCE_MS,
    });
    relay = r;
    r.onMoved = (moved) => p.tellMoved(moved);
    w.onStateLost(() => {
      relay?.recreateAll();
      void p.newEpoch();
      void pass();
    });
    w.onExternalAddress((to) => {
      if (publicAddress !== undefined && to !== publicAddress) {
        p.log.warn({ event: 'upstream-external-address', from: publicAddress, to });
        relay?.recreateAll();
        publicAddress = to;
        void p.newEpoch();
        void pass();
      } else publicAddress = to;
    });
    const detail = p.nat44 === false
      ? 'no NAT44 here (DS-Lite): IPv4 mappings are asked of the AFTR for each LAN host (THIRD_PARTY, RFC 7648 §3.3) and only admitted here'
      : 'IPv4 mappings are relayed to the ISP\'s PCP server (RFC 7648)';
    p.log.info({ event: 'upstream-pcp', server: address, port, source: from, thirdParty: p.nat44 === false, detail });
    await learnPublicAddress(w);
    timer = setInterval(() => void pass(), t.passMs ?? PASS_MS);
    timer.unref();
    void pass();
    return true;
  };

  /**
   * A short mapping tells upstream's external address before any client asks
   * (NAT-PMP clients ask for it first): of the discard port, as RFC 6887
   * §11.6 suggests, or, where upstream's policy keeps low ports, of this
   * socket's own port (answers to it are source-checked). Removed at once.
   */
  const learnPublicAddress = async (w: UpstreamPcpClient): Promise<void> => {
    const client = p.wanIPv4();
    if (!client) return;
    for (const internalPort of [9, w.localPort()]) {
      const ask = { protocol: 17, internalPort, suggestedExternalPort: 0, lifetime: 120, nonce: randomBytes(12), preferFailure: false, client, patienceMs: t.patienceMs ?? PATIENCE_MS };
      const a = await w.map(ask);
      if (a.ok) {
        void w.map({ ...ask, lifetime: 0 });
        return;
      }
      if (a.refusal === 'NETWORK_FAILURE') {
        p.log.warn({ event: 'upstream-unanswered', server: w.server, detail: a.detail });
        return;
      }
    }
    p.log.warn({ event: 'upstream-address-unknown', server: w.server, detail: 'upstream granted no mapping to learn its address from; the first client\'s mapping will tell' });
  };

  const pass = async (): Promise<void> => {
    if (passing || !relay) return;
    passing = true;
    try {
      await relay.pass();
    } finally {
      passing = false;
    }
  };

  const lookForOne = async (): Promise<void> => {
    const verdict = classifyWanIPv4(p.wanIPv4());
    if (verdict.reachable || wire) return;
    // IPv4 servers only: the relay speaks from the WAN's IPv4 address (the PCP Client IP field);
    // an IPv6 server (a DHCPv6 option, an IPv6 default router) is for the DS-Lite mode, not built yet.
    for (const c of (await discoverUpstreams({ wanInterfaces: p.wans })).filter((c) => familyOf(c.address) === 4)) {
      if (await use(c.address, 5351, c.source, true)) return;
    }
    const fresh = noneDetail === '';
    noneDetail = 'no upstream PCP server answered; IPv4 mappings are granted here only';
    // Said once (the WAN address's warning says what it means); the re-probes stay quiet.
    if (fresh) p.log.warn({ event: 'upstream-none', kind: verdict.kind, detail: `${noneDetail}: ${verdict.detail}` });
  };

  // The line is not what the settings say: said at start (doctor says it too).
  const mismatch = lineMismatch(p.wanIPv4(), { nat44: p.nat44 !== false, upstreamAuto: p.setting === 'auto' });
  if (mismatch?.level === 'warn') p.log.warn({ event: 'line-mismatch', detail: mismatch.detail, fix: mismatch.fix });
  else if (mismatch) p.log.info({ event: 'upstream-not-needed', detail: mismatch.detail });

  if (p.setting === 'off') {
    // Nothing relayed; the WAN address's own warning (daemon/metrics.ts) still says what it means.
  } else if (p.setting === 'auto') {
    await lookForOne();
    reprobe = setInterval(() => void lookForOne(), t.reprobeMs ?? REPROBE_MS);
    reprobe.unref();
  } else {
    await use(p.setting.address, p.setting.port, 'configured', false);
  }

  // No server in use: parts restored from an earlier run are not told (UpstreamRelay.over). With one, they stand until renewed.
  if (!wire) p.service.useUpstream(undefined);

  return {
    status(): UpstreamStatus {
      if (wire) {
        return { setting, state: 'proxying', source, publicAddress: publicAddress ?? null, wire: wire.status(), counts: relay?.counts(), detail: p.nat44 === false ? `IPv4 mappings are asked of ${wire.server} for each LAN host (DS-Lite, no NAT44 here)` : `IPv4 mappings are relayed to ${wire.server}` };
      }
      const verdict = classifyWanIPv4(p.wanIPv4());
      if (p.setting === 'off') return { setting, state: 'off', publicAddress: null, detail: verdict.reachable ? 'not relayed' : `not relayed: ${verdict.detail}` };
      if (verdict.reachable) return { setting, state: 'not-needed', publicAddress: null, detail: verdict.detail };
      return { setting, state: 'none', publicAddress: null, detail: `${noneDetail || 'not probed yet'}: ${verdict.detail}` };
    },
    async stop(why) {
      if (timer) clearInterval(timer);
      if (reprobe) clearInterval(reprobe);
      if (why === 'stop' && p.flushOnExit && relay && wire) {
        // Before the wire closes (the service's own flush comes after this, and asks upstream nothing more).
        const r = await relay.removeAllUpstream(t.flushDeadlineMs ?? FLUSH_DEADLINE_MS);
        p.log.info({ event: 'upstream-flushed-on-exit', server: wire.server, asked: r.asked, answered: r.answered });
      }
      // The relay stays attached: the parts it recorded stay in the table for whatever writes the store last.
      wire?.stop();
    },
  };
}

/** The key of the daemon's own upstream nonces (NAT-PMP, UPnP, static): random once, then the same after every restart. */
function nonceKey(stateDir: string): Buffer {
  const file = join(stateDir, 'upstream-nonce.key');
  try {
    const k = readFileSync(file);
    if (k.length === 32) return k;
  } catch {
    // First start with an upstream: made below.
  }
  const k = randomBytes(32);
  writeFileSync(file, k, { mode: 0o600 });
  return k;
}
