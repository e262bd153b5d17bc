// RFC 6887 §8.5: how a PCP client tells from a server's Epoch Time that the
// server lost its mapping state. A pure function of the previous and the
// current observation (server epoch seconds, client clock seconds).

export interface EpochSeen {
  /** The server's Epoch Time field. */
  readonly serverEpoch: number;
  /** The client's own clock (seconds) when the response arrived. */
  readonly clientTime: number;
}

/**
 * Whether `current` shows the server lost state since `previous`: its epoch
 * went back by more than a second, or the two clocks drifted apart by more
 * than 2 s plus 1/16 of the elapsed time either way (§8.5's slack for clock
 * skew and delivery delay). No previous observation proves nothing.
 */
export function epochLost(previous: EpochSeen | undefined, current: EpochSeen): boolean {
  if (!previous) return false;
  if (current.serverEpoch + 1 < previous.serverEpoch) return true;
  const clientDelta = current.clientTime - previous.clientTime;
  const serverDelta = current.serverEpoch - previous.serverEpoch;
  return clientDelta + 2 < serverDelta - serverDelta / 16 || serverDelta + 2 < clientDelta - clientDelta / 16;
}
