// The policy in force, and its changes: a reload (read the file again, and
// only if it is valid swap it into the service, where mappings it no longer
// allows are revoked, and the firewall, where static openings are diffed), an
// edit from the admin API (the file changed safely, then reloaded), and a
// device that gained or lost an address (its device openings resolved again).
// All three run one at a time, in the order asked: SIGHUP, the control
// socket, the admin page and the device follower may ask at once.

import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import type { ConcreteStatic } from '../domain/mapping.js';
import type { FirewallBackend } from '../firewall/backend.js';
import type { Logger } from '../log.js';
import { NOT_SEEN, resolveStatics, type DeviceSighting } from '../policy/device-openings.js';
import { PolicyEditError, editableFile, editedText, writePolicyFile, type StaticEdit } from '../policy/edit.js';
import { MAX_FILE_BYTES, PolicyError, builtinPolicy, describeStatic, loadPolicyFile, parsePolicyText, type LoadedPolicy } from '../policy/load.js';
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

/** A policy as read, with the file's text when it came from one. */
type Read = LoadedPolicy & { text?: string };

/** What tells two installed static openings apart, for the log and the diff. */
const staticKey = (s: ConcreteStatic) => `${s.name}: ${describeStatic(s)}`;

export class PolicyKeeper {
  private loaded: LoadedPolicy;
  /** The static openings as installed: device openings resolved to their device's addresses now. */
  private resolved: readonly ConcreteStatic[];
  private sighting: (mac: string) => DeviceSighting = () => NOT_SEEN;
  private queue: Promise<unknown> = Promise.resolve();
  /** Counts what the admin page shows that moved here: every swap, every device opening that followed its device. */
  private changed = 0;
  /** The policy file's text as last put in force (undefined: not read from a file). */
  private loadedText: string | undefined;

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
      this.loaded = given ?? this.take(this.read());
    } catch (err) {
      throw err instanceof PolicyError ? new ConfigError(`policy not valid, not starting:\n${err.message}`) : err;
    }
    this.resolved = resolveStatics(this.loaded.statics, this.sighting);
    log.info({ event: 'policy', source: this.loaded.source, rules: this.loaded.rules.length, statics: this.loaded.statics.length });
  }

  current(): LoadedPolicy {
    return this.loaded;
  }

  /** The static openings the service and the firewall hold (device openings resolved). */
  inForce(): readonly ConcreteStatic[] {
    return this.resolved;
  }

  /** A counter that moves whenever the policy or the static openings in force change (the admin page's live events). */
  changes(): number {
    return this.changed;
  }

  /** Whether the policy has a device opening (else nobody needs to follow the neighbour table). */
  followsDevices(): boolean {
    return this.loaded.statics.some((s) => s.kind === 'device');
  }

  /**
   * Where devices are, from now on. Resolves the device openings at once
   * without installing anything: for before the firewall starts.
   */
  locateDevicesWith(sighting: (mac: string) => DeviceSighting): void {
    this.sighting = sighting;
    this.resolved = resolveStatics(this.loaded.statics, sighting);
  }

  /** Swaps in the file as it is now; a bad file throws PolicyError and changes nothing. */
  reload(service: MappingService, firewall: FirewallBackend): Promise<ReloadReport> {
    return this.serially(() => this.swapIn(this.read(), service, firewall));
  }

  /**
   * Resolves the device openings again; where a device's addresses moved,
   * the service and the firewall follow (only what changed is touched).
   */
  devicesMoved(service: MappingService, firewall: FirewallBackend): Promise<{ opened: string[]; closed: string[] }> {
    return this.serially(async () => {
      const next = resolveStatics(this.loaded.statics, this.sighting);
      const before = new Set(this.resolved.map(staticKey));
      const after = new Set(next.map(staticKey));
      const opened = [...after].filter((k) => !before.has(k));
      const closed = [...before].filter((k) => !after.has(k));
      if (!opened.length && !closed.length) return { opened, closed };
      await service.swapPolicy(this.loaded.policy, next);
      await firewall.setStatics(next);
      this.resolved = next;
      this.changed++;
      this.log.info({ event: 'device-openings-moved', opened, closed });
      return { opened, closed };
    });
  }

  /**
   * Adds or removes a static opening in the policy file (src/policy/edit.ts),
   * then reloads it. Throws PolicyEditError with what the admin can do; on
   * any refusal nothing was written. Should the firewall refuse the edited
   * policy, the previous file is put back and reloaded.
   */
  edit(change: StaticEdit, service: MappingService, firewall: FirewallBackend): Promise<ReloadReport> {
    return this.serially(async () => {
      if (this.file === undefined) {
        throw new PolicyEditError('no-file', 'the daemon runs on the built-in default policy (no --policy file), so there is no file to keep static openings in: start it with --policy FILE');
      }
      const f = await editableFile(this.file);
      const next = editedText(f.text, this.file, change);
      // The edit reloads the whole file: a hand edit not yet reloaded would come into force unseen.
      if (this.loadedText !== undefined && f.text !== this.loadedText) {
        throw new PolicyEditError('invalid', `the policy file ${this.file} has changed on disk since it was loaded; reload it first (portcullis policy reload) or undo the change: nothing was changed`);
      }
      await writePolicyFile(f.target, next, f, f.text);
      this.log.warn({ event: 'policy-edited', file: this.file, op: change.op, name: change.op === 'add' ? change.entry.name : change.name });
      try {
        return await this.swapIn(this.read(), service, firewall);
      } catch (err) {
        await writePolicyFile(f.target, f.text, f);
        await this.swapIn(this.read(), service, firewall).catch((again: unknown) => this.log.error({ event: 'policy-restore-failed', file: this.file, error: (again as Error).message }));
        throw new PolicyEditError('io', `the edited policy could not be put in force (${(err as Error).message}); the previous file was put back`);
      }
    });
  }

  private async swapIn(next: Read, service: MappingService, firewall: FirewallBackend): Promise<ReloadReport> {
    const resolved = resolveStatics(next.statics, this.sighting);
    const swap = await service.swapPolicy(next.policy, resolved);
    const fw = await firewall.setStatics(resolved);
    this.loaded = this.take(next);
    this.resolved = resolved;
    this.changed++;
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
  }

  private serially<T>(run: () => Promise<T>): Promise<T> {
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** The file as it is now, with the text it was read from. */
  private read(): Read {
    const now = () => this.clock.now();
    if (!this.file) return builtinPolicy(now);
    let text: string | undefined;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      // The loader says why, in its words.
    }
    return text === undefined || Buffer.byteLength(text) > MAX_FILE_BYTES ? loadPolicyFile(this.file, now) : { ...parsePolicyText(text, this.file, now), text };
  }

  /** A policy now in force: its text is what an edit must find on disk. */
  private take(r: Read): LoadedPolicy {
    this.loadedText = r.text;
    const { text: _text, ...loaded } = r;
    return loaded;
  }
}
