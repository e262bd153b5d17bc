// Records read back from the store's files share their equal texts (see
// `sharedStrings`): a memory matter only, kept beside store.ts so that file
// stays the files' protocol.

import type { StoredMapping } from './records.js';

/** The empty filter list records without filters share (frozen: none is ever written to). */
const NO_STORED_FILTERS = Object.freeze([]) as unknown as StoredMapping['filters'];

/**
 * Read back, every record has its own copy of each text: the boot id, and an
 * address three times over (a pinhole's internal and external address and its
 * client are one). The store and the table (which takes a restored mapping's
 * addresses from its record) keep them all; one copy of each equal text for
 * the whole load is ~170 bytes less a mapping after a restart (bench/heap.ts). Values only:
 * nothing a record says changes.
 */
export function sharedStrings(): (m: StoredMapping) => StoredMapping {
  const seen = new Map<string, string>();
  const one = <T extends string>(text: T): T => {
    const had = seen.get(text);
    if (had !== undefined) return had as T;
    seen.set(text, text);
    return text;
  };
  return (m) => {
    m.internalAddress = one(m.internalAddress);
    m.externalAddress = one(m.externalAddress);
    m.owner = one(m.owner);
    m.bootId = one(m.bootId);
    // Read back, `[]` is a new array each time.
    if (m.filters.length === 0) m.filters = NO_STORED_FILTERS;
    return m;
  };
}
