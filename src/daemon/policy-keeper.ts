// The policy in force, and its reload: read the file again, and only if it is
// valid swap it into the service (mappings it no longer allows revoked) and
// the firewall (static openings diffed). Reloads run one at a time, in the
// order asked (SIGHUP and the control socket may ask at once).

import { ConfigError } from '../config.js';
import type { FirewallBackend } from '../firewall/backend.js';
import type { Logger } from '../log.js';
import { PolicyError, builtinPolicy, loadPolicyFile, type LoadedPolicy } from '../policy/load.js';
import type { MappingService } from '../service/mapping-service.js';
import type { Clock } from '../state/clock.js';

export interface ReloadReport {
  source: string;
  rules: number;
  statics: number;
  revoked: { internal: string; protocol: number; internalPort: number; rule: string; reason: string }[];
  staticsAdded: number;
  staticsRemoved: number;
}

export class PolicyKeeper {
  private loaded: LoadedPolicy;
  private reloading: Promise<unknown> = Promise.resolve();

  /**
   * `file` undefined: the built-in default. `given`: a policy handed over
   * directly (tests). A file that is not valid stops the start.
   */
  constructor(
    private readonly file: string | undefined,
    private readonly clock: Clock,
    private readonly log: Logger,
    given?: LoadedPolicy,
  ) {
    try {
      this.loaded = given ?? this.read();
    } catch (err) {
      throw err instanceof PolicyError ? new ConfigError(`policy not valid, not starting:\n${err.message}`) : err;
    }
    log.info({ event: 'policy', source: this.loaded.source, rules: this.loaded.rules.length, statics: this.loaded.statics.length });
  }

  current(): LoadedPolicy {
    return this.loaded;
  }

  /** Swaps in the file as it is now; a bad file throws PolicyError and changes nothing. */
  reload(service: MappingService, firewall: FirewallBackend): Promise<ReloadReport> {
    const run = async (): Promise<ReloadReport> => {
      const next = this.read();
      const swap = await service.swapPolicy(next.policy, next.statics);
      const fw = await firewall.setStatics(next.statics);
      this.loaded = next;
      const report: ReloadReport = {
        source: next.source,
        rules: next.rules.length,
        statics: next.statics.length,
        revoked: swap.removed.map((r) => ({ internal: r.mapping.internalAddress, protocol: r.mapping.protocol, internalPort: r.mapping.internalPort, rule: r.rule, reason: r.reason })),
        staticsAdded: fw.added,
        staticsRemoved: fw.removed,
      };
      this.log.warn({ event: 'policy-reloaded', ...report, revoked: report.revoked.length });
      return report;
    };
    const p = this.reloading.then(run, run);
    this.reloading = p.catch(() => undefined);
    return p;
  }

  private read(): LoadedPolicy {
    const now = () => this.clock.now();
    return this.file ? loadPolicyFile(this.file, now) : builtinPolicy(now);
  }
}
