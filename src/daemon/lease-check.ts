// RFC 6887 §15: lifetimes end with the host's DHCP lease. dnsmasq's lease
// file is read at start (before the first request) and looked at again every
// CHECK_EVERY_MS; the mappings of hosts whose lease ended are revoked.

import type { Logger } from '../log.js';
import { CHECK_EVERY_MS, type DhcpLeases } from '../net/dhcp-leases.js';
import type { MappingService } from '../service/mapping-service.js';

/**
 * Hands the leases to the service, checks them once, and returns the stop of
 * the check loop. This loop is the file's only reader: the listings read the
 * table it keeps (a second reader's refresh would take the lost leases the
 * revocation relies on).
 */
export async function checkLeases(leases: DhcpLeases, service: MappingService, log: Logger): Promise<() => void> {
  /** The last error said, so that one that persists is said once. */
  let said: string | undefined;
  const check = async (): Promise<void> => {
    const r = await leases.refresh();
    if (leases.error !== undefined && leases.error !== said) log.warn({ event: 'dhcp-leases', file: leases.file, error: leases.error, detail: 'the last leases read stay in force' });
    said = leases.error;
    if (r.changed) log.info({ event: 'dhcp-leases', file: leases.file, leases: leases.size, skippedLines: leases.skipped });
    await service.revokeEndedLeases(r.lost);
  };
  service.useLeases(leases);
  await check();
  const timer = setInterval(() => check().catch((err: unknown) => log.error({ event: 'dhcp-leases-failed', error: (err as Error).message })), CHECK_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
