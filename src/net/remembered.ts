// A pure function of its input with its last answers kept: for what every
// request computes again from the same few hundred LAN addresses (parsing,
// wire forms, /64 units). Bounded: emptied when full, so a client cycling
// through many inputs costs only its own calls, never memory.

export function remembered<K, V>(max: number, make: (key: K) => V): (key: K) => V {
  const kept = new Map<K, V>();
  return (key) => {
    const known = kept.get(key);
    if (known !== undefined || kept.has(key)) return known as V;
    const value = make(key);
    if (kept.size >= max) kept.clear();
    kept.set(key, value);
    return value;
  };
}
