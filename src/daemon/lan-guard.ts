// Fail closed: no door answers while the kernel does not keep the WAN away
// from our ports (src/net/lan-source.ts). Checked at start, at every
// reconcile, and at every address poll while it is missing (so an admin's
// fix takes effect within one poll).

import type { FirewallBackend } from '../firewall/backend.js';
import type { Logger } from '../log.js';
import type { LanSources } from '../net/lan-source.js';

export class LanGuard {
  /** Why the guard was last found missing ('' while it is in place): a new reason is said again. */
  private missing = '';

  constructor(
    private readonly firewall: FirewallBackend,
    private readonly sources: LanSources,
    private readonly log: Logger,
  ) {}

  /** Asks the firewall, opens or closes every door accordingly, and says so when that changes. */
  async check(): Promise<void> {
    const g = this.firewall.guard
      ? await this.firewall.guard().catch((err: unknown) => ({ ok: false, detail: (err as Error).message }))
      : { ok: true, detail: 'nothing is enforced (memory backend)' };
    if (g.ok !== this.sources.open || (!g.ok && g.detail !== this.missing)) {
      if (g.ok) this.log.warn({ event: 'lan-guard', status: 'in place', detail: g.detail, note: 'answering requests' });
      else this.log.error({ event: 'lan-guard', status: 'MISSING', detail: g.detail, note: 'NOT answering any request until the kernel drops our ports on non-LAN interfaces' });
    }
    this.missing = g.ok ? '' : g.detail;
    this.sources.setGuarded(g.ok);
  }
}
