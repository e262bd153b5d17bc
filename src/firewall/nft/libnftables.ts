// Talking to nftables in-process: libnftables (man 3 libnftables), the
// library the `nft` binary is a thin shell around, reached through koffi — a C
// FFI whose prebuilt binaries ship inside its npm package, so nothing is
// compiled at install and Debian's nftables package (libnftables.so.1) is all
// the runtime needs. Same commands, same atomic transactions, same JSON; what
// goes away is a process, a file and a fresh netlink socket per batch.
//
// One context for the daemon's life, as firewalld keeps one: the context is
// not thread-safe, so calls are serialized here, and each runs on koffi's
// worker thread so the event loop keeps answering while the kernel commits.

import { mallocTrimOf } from '../malloc-trim.js';
import { parseListing, type NftCommand, type NftResult, type NftRunner } from './run.js';

/** Output flags of `nft_ctx_output_set_flags` (libnftables.h): the CLI's -a, -j, -t. */
export const OUTPUT = { HANDLE: 1 << 3, JSON: 1 << 4, TERSE: 1 << 11 } as const;
const LIST_OPTIONS: Readonly<Record<string, number>> = { '-a': OUTPUT.HANDLE, '-j': OUTPUT.JSON, '-t': OUTPUT.TERSE };

/** What one `nft_run_cmd_from_buffer` left: its return code and the buffered output and error text. */
export interface NftCall {
  rc: number;
  output: string;
  error: string;
}

/** One libnftables context. `run` must not be called again before `done`: the runner serializes. */
export interface NftContext {
  run(text: string, flags: number, done: (r: NftCall | Error) => void): void;
  /**
   * Gives the C heap's free pages back to the system (glibc's malloc_trim);
   * absent where the C library has none (musl). See TRIM_AFTER_BYTES.
   */
  release?(done: () => void): void;
}

/**
 * libnftables parses a batch into jansson's tree and nft's own (kilobytes an
 * element), lists into more, and frees it all when the call returns; glibc
 * keeps the freed pages. After the reinstall of 35 200 mappings they were
 * 50–140 MiB of the daemon's RSS that nothing used (bench/restart-heap.ts
 * with BENCH_REAL_NFT and BENCH_TRIM). A call that moved this much text
 * (in and out) is followed by a trim, run on koffi's worker thread before
 * the next call: the small calls of ordinary requests pay nothing, a 2 048-
 * entry batch (~300 KiB) or a listing of a large set pays a few ms.
 */
export const TRIM_AFTER_BYTES = 64 << 10;

/**
 * A bound on one call, as the process path has: a kernel that never answers
 * must not wedge the daemon. A worker thread cannot be killed, so past the
 * bound the call is reported failed, the context is given up (it is still in
 * use by the thread that hangs) and every later call takes `fallback`.
 */
const CALL_TIMEOUT_MS = 30_000;

/**
 * koffi gives an asynchronous call a 128 KiB stack by default. A 100 000-
 * element JSON batch and a 20 000-element script ran within it here, but
 * libnftables is written for a process's 8 MiB (bison, glibc name lookups in
 * rules that name hosts): a margin, paid once, since calls are serialized
 * and only one such stack is ever in use.
 */
const ASYNC_STACK_BYTES = 4 << 20;

/** Opens one context on libnftables.so.1; throws when koffi or the library cannot be loaded. */
export async function openLibnftables(soname = 'libnftables.so.1'): Promise<NftContext> {
  const koffi = (await import('koffi')).default;
  if (koffi.config().async_stack_size! < ASYNC_STACK_BYTES) koffi.config({ ...koffi.config(), async_stack_size: ASYNC_STACK_BYTES });
  const lib = koffi.load(soname);
  const ctxNew = lib.func('void *nft_ctx_new(uint32_t flags)');
  const setFlags = lib.func('void nft_ctx_output_set_flags(void *ctx, unsigned int flags)');
  const bufferOutput = lib.func('int nft_ctx_buffer_output(void *ctx)');
  const bufferError = lib.func('int nft_ctx_buffer_error(void *ctx)');
  const runCmd = lib.func('int nft_run_cmd_from_buffer(void *ctx, const char *buf)');
  // Each read returns what was written since the last and rewinds the buffer.
  const output = lib.func('const char *nft_ctx_get_output_buffer(void *ctx)');
  const error = lib.func('const char *nft_ctx_get_error_buffer(void *ctx)');
  const ctx: unknown = ctxNew(0);
  if (!ctx) throw new Error('nft_ctx_new returned NULL');
  if (bufferOutput(ctx) !== 0 || bufferError(ctx) !== 0) throw new Error('nft_ctx_buffer_output/error failed');
  const trim = mallocTrimOf(koffi);
  return {
    ...(trim ? { release: (done: () => void) => trim.async(0, () => done()) } : {}),
    run(text, flags, done) {
      setFlags(ctx, flags);
      runCmd.async(ctx, text, (err: unknown, rc: number) => {
        // Read both even after a failure so the next call starts with empty buffers.
        const r = { rc, output: (output(ctx) as string | null) ?? '', error: (error(ctx) as string | null) ?? '' };
        done(err ? (err instanceof Error ? err : new Error(String(err))) : r);
      });
    },
  };
}

/** A trim, waited for at most `ms` (it cannot wedge the calls behind it). */
function released(release: (done: () => void) => void, ms: number): Promise<void> {
  return new Promise((done) => {
    const timer = setTimeout(done, ms);
    release(() => {
      clearTimeout(timer);
      done();
    });
  });
}

export interface LibraryRunnerOptions {
  timeoutMs?: number;
  /** Where calls go once a call has outlived the bound. */
  fallback?: NftRunner;
  /** Told once, when a call outlives the bound. */
  onWedged?: (ms: number) => void;
}

/** The NftRunner over one context: the process path's semantics, without the process. */
export function libraryRunner(ctx: NftContext, options: LibraryRunnerOptions = {}): NftRunner & { readonly kind: 'library' | 'process' } {
  const timeoutMs = options.timeoutMs ?? CALL_TIMEOUT_MS;
  let wedged = false;
  let tail: Promise<unknown> = Promise.resolve();
  const wedgedText = `libnftables did not return within ${timeoutMs} ms; no further calls are made on it\n`;
  const wedgedResult = (): NftResult => ({ ok: false, stdout: '', stderr: wedgedText });

  /** undefined: the context was given up before this call. */
  const call = (text: string, flags: number): Promise<NftCall | undefined> => {
    const next = tail.then(
      () =>
        new Promise<NftCall | undefined>((resolve) => {
          if (wedged) return resolve(undefined);
          const timer = setTimeout(() => {
            wedged = true;
            options.onWedged?.(timeoutMs);
            // Failed, not retried on the fallback: the kernel may yet apply it.
            resolve({ rc: -1, output: '', error: wedgedText });
          }, timeoutMs);
          ctx.run(text, flags, (r) => {
            clearTimeout(timer);
            // A bug in the binding, not nft's verdict: reported as a failed call.
            resolve(r instanceof Error ? { rc: -1, output: '', error: `libnftables call failed: ${r.message}\n` } : r);
          });
        }),
    );
    // The caller has its answer at once; the next call waits for the trim.
    tail = next.then((r) => (r && ctx.release && text.length + r.output.length >= TRIM_AFTER_BYTES ? released(ctx.release.bind(ctx), timeoutMs) : undefined));
    return next;
  };
  const result = (r: NftCall): NftResult => ({ ok: r.rc === 0, stdout: r.output, stderr: r.error });

  return {
    get kind() {
      return wedged && options.fallback ? 'process' : 'library';
    },
    async batch(commands: readonly NftCommand[]) {
      // With JSON output set, nft_run_cmd_from_buffer parses the input as JSON, as `nft -j -f` does.
      const r = await call(JSON.stringify({ nftables: commands }), OUTPUT.JSON);
      if (r) return result(r);
      return options.fallback ? options.fallback.batch(commands) : wedgedResult();
    },
    async script(text) {
      const r = await call(text, 0);
      if (r) return result(r);
      return options.fallback ? options.fallback.script(text) : wedgedResult();
    },
    async list(args) {
      let flags = OUTPUT.JSON;
      let i = 0;
      for (; i < args.length && args[i]!.startsWith('-'); i++) {
        const flag = LIST_OPTIONS[args[i]!];
        if (flag === undefined) return { ok: false, error: `nft option ${args[i]} has no libnftables equivalent here` };
        flags |= flag;
      }
      const r = await call(args.slice(i).join(' '), flags);
      if (!r) return options.fallback ? options.fallback.list(args) : { ok: false, error: wedgedText.trim() };
      return r.rc === 0 ? parseListing(r.output) : { ok: false, error: r.error.trim() };
    },
  };
}
