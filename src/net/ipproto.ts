// IANA protocol numbers of the transports a mapping can carry.

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export function isMappableProtocol(p: number): boolean {
  return p === IPPROTO_TCP || p === IPPROTO_UDP;
}

/** 'tcp', 'udp', or the number (0 = all protocols). */
export function protocolName(p: number): string {
  return p === IPPROTO_TCP ? 'tcp' : p === IPPROTO_UDP ? 'udp' : p === 0 ? 'all' : String(p);
}

/** The number of 'tcp' or 'udp', in any case (UPnP writes them upper-case); undefined for anything else. */
export function protocolByName(name: string): number | undefined {
  const n = name.toLowerCase();
  return n === 'tcp' ? IPPROTO_TCP : n === 'udp' ? IPPROTO_UDP : undefined;
}
