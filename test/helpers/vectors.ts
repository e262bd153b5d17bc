// Loads rfc-vectors/: one JSON file per case.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Vector {
  file: string;
  protocol: 'pcp' | 'natpmp';
  description: string;
  rfc: string;
  source: string;
  external?: null;
  setup: { source: string; request: string }[];
  request: string;
  /** Hex, "xx" = any octet; null = the server must stay silent. */
  response: string | null;
  /** Deliberately malformed request (exempt from the tshark check). */
  malformed: boolean;
}

export const VECTOR_DIR = fileURLToPath(new URL('../../../rfc-vectors/', import.meta.url));

export function loadVectors(): Vector[] {
  const out: Vector[] = [];
  for (const protocol of ['pcp', 'natpmp'] as const) {
    for (const f of readdirSync(join(VECTOR_DIR, protocol)).sort()) {
      if (!f.endsWith('.json')) continue;
      const v = JSON.parse(readFileSync(join(VECTOR_DIR, protocol, f), 'utf8')) as Omit<Vector, 'file' | 'protocol'>;
      out.push({ ...v, file: `${protocol}/${f}`, protocol });
    }
  }
  return out;
}

/** Does `actual` match a hex pattern where "xx" is any octet? */
export function matchesPattern(actual: Buffer, pattern: string): boolean {
  if (pattern.length !== actual.length * 2) return false;
  const hex = actual.toString('hex');
  for (let i = 0; i < pattern.length; i += 2) {
    const p = pattern.slice(i, i + 2);
    if (p !== 'xx' && p !== hex.slice(i, i + 2)) return false;
  }
  return true;
}
