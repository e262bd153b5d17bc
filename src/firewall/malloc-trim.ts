// glibc's malloc_trim, reached through koffi: hands the pages the C heap
// holds free back to the system. What the firewall's C libraries allocate
// (libnftables' parse trees and listings, koffi's marshalling) is freed when
// a call returns, but glibc keeps the pages for later; only the top of an
// arena goes back by itself. Trimmed, a daemon's RSS is what it uses.
//
// Absent (undefined) where koffi or glibc is not to be had (musl has no
// malloc_trim): nothing is trimmed and everything else works as before.

type Koffi = typeof import('koffi').default;

/** malloc_trim(pad) bound through koffi: callable on the main thread, or on koffi's worker with `async`. */
export interface MallocTrim {
  (pad: number): number;
  async(pad: number, cb: (err: unknown, freed: number) => void): void;
}

/** glibc's malloc_trim from an already loaded koffi, or undefined. */
export function mallocTrimOf(koffi: Koffi): MallocTrim | undefined {
  try {
    return koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as unknown as MallocTrim;
  } catch {
    return undefined;
  }
}

/** A trim of the whole C heap now, on this thread (a few ms after a burst); undefined where none can be had. */
export async function loadMallocTrim(): Promise<(() => void) | undefined> {
  try {
    const trim = mallocTrimOf((await import('koffi')).default);
    return trim && (() => void trim(0));
  } catch {
    return undefined;
  }
}
