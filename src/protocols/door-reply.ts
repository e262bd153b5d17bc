// What a front door's handler makes of one datagram: PCP's and NAT-PMP's
// handlers answer in the same shape, so the socket above them needs no
// knowledge of either.

export interface DoorReply {
  /** undefined: stay silent (RFC 6887 §8.2, RFC 6886 §3.1). */
  reply: Buffer | undefined;
  /** For the log line: what happened, in the RFC's words. */
  result: string;
  detail?: string;
  /** The mapping service made (and logged) the decision. */
  decided?: boolean;
}
