// The daemon's durable state: the state directory opened first (opening it
// takes its lock, so a second daemon on the same directory stops here,
// before it touches nftables or the files), then the mappings and the epoch
// it kept brought back into the service.

import { ConfigError } from '../config.js';
import type { Logger } from '../log.js';
import type { Telemetry } from '../telemetry.js';
import type { MappingService } from '../service/mapping-service.js';
import type { Clock } from '../state/clock.js';
import type { Epoch } from '../state/epoch.js';
import { DurableStore, StateLockedError, epochStartMono, type LoadedState } from '../state/store.js';

export async function openState(dir: string, clock: Clock, telemetry: Telemetry): Promise<{ store: DurableStore; state: LoadedState }> {
  try {
    const opened = await DurableStore.open(dir, clock.wall());
    opened.store.telemetry = telemetry;
    return opened;
  } catch (err) {
    throw new ConfigError(err instanceof StateLockedError ? err.message : `state directory ${dir}: ${(err as Error).message} (give a writable --state-dir)`);
  }
}

/**
 * Mappings come back with what they have left, and the epoch continues;
 * lost or damaged state starts a new epoch (told to the metrics as a reset:
 * clients see their epoch start again). From here on every change is
 * written to the store.
 *
 * `snapshotFirst`: the store must be given a snapshot before anyone is
 * answered — there is none (fresh, or moved aside as corrupt); the epoch
 * started again and must be recorded before a client hears it; or the wall
 * clock is behind the last record after a reboot (no RTC), so the earlier
 * boot's records must be rewritten on this boot's clock, or the next start
 * would count their lifetimes from scratch again. A store that loaded with
 * its epoch continuing needs none: rewriting 100 000 mappings (~50 MB)
 * would only delay the first answer, and its journal is folded in by the
 * usual compaction later.
 */
export function restoreState(service: MappingService, epoch: Epoch, opened: { store: DurableStore; state: LoadedState }, clock: Clock, stateDir: string, telemetry: Telemetry, log: Logger): { snapshotFirst: boolean } {
  const { store, state } = opened;
  const now = { mono: clock.now(), wall: clock.wall(), bootId: clock.bootId() };
  const continues = state.status === 'loaded' && state.epoch !== undefined;
  if (continues && state.epoch) epoch.restore(epochStartMono(state.epoch, now, state.lastWriteWall));
  else telemetry.epochReset();
  const clockBehind = now.wall < state.lastWriteWall && state.mappings.some((m) => m.bootId !== now.bootId);
  const recovered = service.restore(state.mappings, state.lastWriteWall, (key, from, m) => store.adopt(key, from, m));
  // Handed over: the store keeps the restored mappings themselves, and nothing
  // needs these records again (the daemon holds `state` as long as it runs).
  state.mappings.length = 0;
  log[state.status === 'corrupt' ? 'warn' : 'info']({
    event: 'state',
    status: state.status,
    detail: state.detail,
    movedAside: state.movedAside,
    ...recovered,
    epoch: epoch.seconds(),
    stateDir,
  });
  service.attachStore(store);
  return { snapshotFirst: !continues || clockBehind };
}
