// The conntrack table in process: one NETLINK_NETFILTER socket, reached
// through libc with koffi (as libnftables.ts reaches libnftables), speaking
// ctnetlink-codec.ts' messages. Nothing is compiled and no library beyond
// libc is needed.
//
// The kernel does its work inside the calls: a dump walks the table when the
// request is sent and again each time its answer is read, a deletion happens
// in the send. So every call runs on koffi's worker thread, never on the
// event loop's, and every wait is bounded: a read is a poll() with a timeout
// first, then a non-blocking recv(); a dump is read for at most MAX_FLOWS
// flows and MAX_DATAGRAMS datagrams, after which the socket is replaced (a
// dump left half-read would make the kernel refuse the next one, EBUSY).

import { decodeMessages, encodeDelete, encodeDump, NETLINK_NETFILTER, type Flow, type TupleFilter } from './ctnetlink-codec.js';

/** A datagram socket to the kernel; every call bounded. */
export interface NetlinkSocket {
  /** Sends one datagram; false if the kernel did not take all of it. */
  send(buf: Buffer): Promise<boolean>;
  /** The next datagram, or undefined after `ms` without one. */
  receive(ms: number): Promise<Buffer | undefined>;
  close(): void;
}

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_NETLINK = 270;
/** Acknowledgements without a copy of the request (linux/netlink.h). */
const NETLINK_CAP_ACK = 10;
const POLLIN = 0x1;
const MSG_DONTWAIT = 0x40;
/** recv() returns the datagram's real length, so a truncated one is seen. */
const MSG_TRUNC = 0x20;
/** A dump's datagrams are at most a page or 32 KiB (netlink_dump); room to spare. */
const RECEIVE_BYTES = 64 << 10;

/** A read waits this long for the kernel at most. */
export const RECEIVE_MS = 1_000;
/** Flows read from one dump at most: the rest is not read (the socket is replaced). */
export const MAX_FLOWS = 8_192;
/** Datagrams read for one request at most (a kernel that keeps sending). */
const MAX_DATAGRAMS = 2_048;
/** Deletions sent in one datagram (each answered by a 36-octet acknowledgement). */
const DELETES_PER_SEND = 64;

type Koffi = typeof import('koffi').default;
interface AsyncFn {
  (...args: unknown[]): number;
  async(...args: unknown[]): void;
}

/** libc's socket calls through koffi, bound once (a socket is opened again after a failed or cut-short request). */
let libc: Promise<Record<'socket' | 'bind' | 'setsockopt' | 'send' | 'recv' | 'poll' | 'close', AsyncFn>> | undefined;
function bindLibc(): NonNullable<typeof libc> {
  libc ??= (async () => {
    const koffi: Koffi = (await import('koffi')).default;
    const lib = koffi.load('libc.so.6');
    const fn = (proto: string) => lib.func(proto) as unknown as AsyncFn;
    return {
      socket: fn('int socket(int domain, int type, int protocol)'),
      bind: fn('int bind(int fd, const void *addr, uint32_t len)'),
      setsockopt: fn('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
      send: fn('long send(int fd, const void *buf, size_t len, int flags)'),
      recv: fn('long recv(int fd, _Out_ void *buf, size_t len, int flags)'),
      poll: fn('int poll(_Inout_ void *fds, unsigned long n, int timeout)'),
      close: fn('int close(int fd)'),
    };
  })();
  // A failure to load is not kept: the caller falls back, and a later call may try again.
  libc.catch(() => (libc = undefined));
  return libc;
}

/** Opens a NETLINK_NETFILTER socket through libc; throws when koffi, libc or the socket is not to be had. */
export async function openNetlinkSocket(): Promise<NetlinkSocket> {
  const { socket, bind, setsockopt, send, recv, poll, close } = await bindLibc();
  const fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) throw new Error('socket(AF_NETLINK, NETLINK_NETFILTER) failed');
  // struct sockaddr_nl: family, pad, port id 0 (the kernel picks), no groups.
  const addr = Buffer.alloc(12);
  addr.writeUInt16LE(AF_NETLINK, 0);
  if (bind(fd, addr, addr.length) !== 0) {
    close(fd);
    throw new Error('bind(AF_NETLINK) failed');
  }
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, Buffer.from(new Int32Array([1]).buffer), 4);
  let closed = false;
  const callAsync = (f: AsyncFn, ...args: unknown[]) =>
    new Promise<number>((resolve) => f.async(...args, (err: unknown, rc: number) => resolve(err ? -1 : Number(rc))));
  return {
    async send(buf) {
      if (closed) return false;
      return (await callAsync(send, fd, buf, buf.length, 0)) === buf.length;
    },
    async receive(ms) {
      if (closed) return undefined;
      // struct pollfd: int fd, short events, short revents.
      const pfd = Buffer.alloc(8);
      pfd.writeInt32LE(fd, 0);
      pfd.writeInt16LE(POLLIN, 4);
      if ((await callAsync(poll, pfd, 1, Math.max(0, Math.floor(ms)))) <= 0 || closed) return undefined;
      const buf = Buffer.alloc(RECEIVE_BYTES);
      const n = await callAsync(recv, fd, buf, buf.length, MSG_DONTWAIT | MSG_TRUNC);
      // A datagram longer than the buffer was cut: an answer we cannot read whole is none.
      if (n < 0 || n > buf.length) return undefined;
      return buf.subarray(0, n);
    },
    close() {
      if (closed) return;
      closed = true;
      close(fd);
    },
  };
}

/** What a request came to. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; detail: string };

/**
 * ctnetlink over one socket: one request at a time (the caller runs one at a
 * time), answers matched by sequence number, stale ones skipped.
 */
export class Ctnetlink {
  private seq = Math.floor(Math.random() * 0x7fff_ffff);
  private socket: NetlinkSocket | undefined;

  constructor(private readonly open: () => Promise<NetlinkSocket>) {}

  /** Opens the socket now (at the path's choice), so a failure is known before the first run. */
  async ready(): Promise<void> {
    this.socket ??= await this.open();
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  /** The flows the kernel's filter lets through, at most MAX_FLOWS. */
  async dump(filter: TupleFilter): Promise<Outcome<{ flows: Flow[]; complete: boolean }>> {
    const socket = (this.socket ??= await this.open());
    const seq = this.nextSeq();
    if (!(await socket.send(encodeDump(seq, filter)))) return this.failed('the dump request was not sent');
    const flows: Flow[] = [];
    for (let datagrams = 0; datagrams < MAX_DATAGRAMS; datagrams++) {
      const buf = await socket.receive(RECEIVE_MS);
      if (!buf) return this.failed(`no answer to a dump within ${RECEIVE_MS} ms`);
      const decoded = decodeMessages(buf);
      for (const a of decoded.answers) {
        if (a.seq !== seq) continue;
        if (a.kind === 'flow') flows.push(a.flow);
        else if (a.kind === 'done' || (a.kind === 'ack' && a.errno !== 0)) {
          return a.errno ? this.failed(`the kernel refused the dump: errno ${a.errno}`) : { ok: true, value: { flows, complete: true } };
        }
      }
      if (!decoded.ok) return this.failed(`a malformed answer: ${decoded.detail}`);
      if (flows.length >= MAX_FLOWS) {
        // The rest stays unread: a new socket for the next request.
        this.close();
        return { ok: true, value: { flows: flows.slice(0, MAX_FLOWS), complete: false } };
      }
    }
    return this.failed(`a dump of more than ${MAX_DATAGRAMS} datagrams`);
  }

  /** Deletes flows by their original tuple and id: how many went; a flow already gone (ENOENT) is no failure. */
  async remove(flows: readonly Flow[]): Promise<Outcome<number>> {
    let deleted = 0;
    for (let i = 0; i < flows.length; i += DELETES_PER_SEND) {
      const socket = (this.socket ??= await this.open());
      const chunk = flows.slice(i, i + DELETES_PER_SEND);
      const seqs = new Set<number>();
      const messages = chunk.map((f) => {
        const seq = this.nextSeq();
        seqs.add(seq);
        return encodeDelete(seq, f);
      });
      if (!(await socket.send(Buffer.concat(messages)))) return this.failed('the deletions were not sent');
      for (let datagrams = 0; seqs.size && datagrams < MAX_DATAGRAMS; datagrams++) {
        const buf = await socket.receive(RECEIVE_MS);
        if (!buf) return this.failed(`${seqs.size} deletions unanswered after ${RECEIVE_MS} ms`);
        const decoded = decodeMessages(buf);
        for (const a of decoded.answers) {
          if (a.kind !== 'ack' || !seqs.delete(a.seq)) continue;
          // ENOENT (2): the flow ended meanwhile, or its id no longer names that tuple's entry.
          if (a.errno !== 0 && a.errno !== 2) return this.failed(`the kernel refused a deletion: errno ${a.errno}`);
          if (a.errno === 0) deleted++;
        }
        if (!decoded.ok) return this.failed(`a malformed answer: ${decoded.detail}`);
      }
      if (seqs.size) return this.failed(`${seqs.size} deletions unanswered`);
    }
    return { ok: true, value: deleted };
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0 || 1;
    return this.seq;
  }

  /** A request that went wrong: the socket may hold its leftovers, so the next request opens a new one. */
  private failed(detail: string): { ok: false; detail: string } {
    this.close();
    return { ok: false, detail };
  }
}
