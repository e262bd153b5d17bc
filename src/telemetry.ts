// What the parts report for the metrics (src/server/prometheus.ts counts it):
// requests answered, mappings ended, kernel commits, store syncs, repairs,
// epoch resets. A narrow sink on the ground floor, so the service, the
// servers and the firewall can report without knowing prom-client; without
// --metrics it is the no-op below. Every label value is from a small fixed
// set: never a client address.

export type Door = 'pcp' | 'natpmp' | 'upnp';

/** Why a mapping ended before its lifetime (or with it). */
export type RemovalReason =
  /** Its lifetime ran out. */
  | 'expired'
  /** Its client removed it (PCP lifetime 0, NAT-PMP delete, UPnP Delete*). */
  | 'client'
  /** The admin removed it (`portcullis rm`, --flush-on-exit). */
  | 'admin'
  /** A policy reload no longer allows it, or a static forward took its port. */
  | 'policy'
  /** Its host's DHCP lease ended (RFC 6887 §15). */
  | 'lease'
  /** The external IPv4 address changed: its entry on the old address went (the mapping moved to the new one). */
  | 'wan-change';

export const REMOVAL_REASONS: readonly RemovalReason[] = ['expired', 'client', 'admin', 'policy', 'lease', 'wan-change'];

export type CommitResult = 'committed' | 'refused' | 'unrecorded';

export interface Telemetry {
  /** A door answered (or dropped) a request: `op` and `result` are the door's own words (bounded sets). */
  request(door: Door, op: string, result: string, seconds: number): void;
  /** `count` mappings ended for `reason`. */
  removed(reason: RemovalReason, count: number): void;
  /** One batch went to the firewall (and, when committed, to the journal). */
  commit(result: CommitResult, seconds: number): void;
  /** One synced journal write (O_DSYNC) took this long. */
  storeSync(seconds: number): void;
  /** The durable store wrote this many bytes (journal records, a compaction's snapshot, a disk probe). */
  storeWritten(bytes: number): void;
  /** Reconciliation found the kernel damaged and repaired it. */
  repaired(): void;
  /** The epoch started again (state lost, or the external address changed). */
  epochReset(): void;
}

export const NO_TELEMETRY: Telemetry = {
  request: () => undefined,
  removed: () => undefined,
  commit: () => undefined,
  storeSync: () => undefined,
  storeWritten: () => undefined,
  repaired: () => undefined,
  epochReset: () => undefined,
};
