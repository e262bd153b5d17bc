// Adding and removing a static opening in the admin's policy file, for the
// admin API. The file is the admin's: everything outside the edited entry
// stays as it was, byte for byte where the layout allows.
//
// - YAML: the `yaml` package's document (parseDocument) locates the
//   `static:` list and its entries; a new entry is rendered by the same
//   package and spliced in after the last one, at the list's indentation; a
//   removed entry's lines go with the comment lines directly above it (they
//   describe it). An empty `static: []` (what removing the last entry
//   leaves) becomes a block list again on the next add, the line's comment
//   kept. A layout the splice cannot serve (a flow list `static: [ … ]`
//   with entries, an empty value over several lines) is edited through the
//   document and written by it: comments and order stay, spacing may not.
// - A written value YAML 1.1 readers (PyYAML, Ansible) would take for
//   something else is double-quoted: a link-layer address always (all
//   digits, `12:34:56:12:34:56`, is a base-60 integer to them), and any
//   string such as `yes`, `off` or `0777` (a boolean, an octal number).
// - JSON: parsed (key order is kept by JSON.parse) and written back with the
//   file's own indentation.
//
// Either way the result is checked twice before anything is written: parsed
// again, it must hold exactly the data meant (the old data with the one
// entry added or gone), and it must pass the loader (src/policy/load.ts),
// schema and all. Writing (writePolicyFile) is atomic, with one backup.

import { constants } from 'node:fs';
import { access, chmod, chown, open, readFile, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Document, Node, Pair } from 'yaml';
import { yaml } from './yaml-lazy.js';
import { MAX_FILE_BYTES, PolicyError, parsePolicyText, type FileStatic } from './load.js';

export type StaticEdit = { op: 'add'; entry: FileStatic } | { op: 'remove'; name: string };

/** Why an edit was not made; nothing was written. */
export type EditRefusal = 'no-file' | 'read-only' | 'invalid' | 'exists' | 'unknown' | 'io';

export class PolicyEditError extends Error {
  constructor(
    readonly refusal: EditRefusal,
    message: string,
  ) {
    super(message);
  }
}

/** The one generation of backup: the file as it was before the last edit. */
export const backupOf = (file: string) => `${file}.bak`;

/** The file is JSON when it says so by its name or by its first character; else YAML. */
export function formatOf(file: string, text: string): 'json' | 'yaml' {
  return /\.json$/i.test(file) || text.trimStart().startsWith('{') ? 'json' : 'yaml';
}

/** The static entries' names in a policy text (valid or not: what is there). */
function staticsOf(data: unknown): Record<string, unknown>[] {
  const list = (data as { static?: unknown } | null)?.static;
  return Array.isArray(list) ? (list as Record<string, unknown>[]) : [];
}

/** The data the edit means: the old data with the entry added at the end of `static`, or gone from it. */
function intended(data: unknown, edit: StaticEdit): unknown {
  const copy = structuredClone(data) as Record<string, unknown>;
  const list = staticsOf(copy);
  if (edit.op === 'add') copy.static = [...list, edit.entry];
  else copy.static = list.filter((s) => s.name !== edit.name);
  return copy;
}

/**
 * The file's text with the edit made. Throws PolicyEditError: `exists` (the
 * name is taken), `unknown` (no such name), `invalid` (the result would not
 * load, with the loader's words).
 */
export function editedText(text: string, file: string, edit: StaticEdit): string {
  const { parse } = yaml();
  const format = formatOf(file, text);
  let data: unknown;
  try {
    data = format === 'json' ? JSON.parse(text) : parse(text, { maxAliasCount: 0 });
  } catch (err) {
    throw new PolicyEditError('invalid', `${file} does not parse now (${(err as Error).message.split('\n')[0]}): fix it by hand first`);
  }
  const names = staticsOf(data).map((s) => s.name);
  if (edit.op === 'add' && names.includes(edit.entry.name)) throw new PolicyEditError('exists', `a static opening named ${JSON.stringify(edit.entry.name)} is already in ${file}`);
  if (edit.op === 'remove' && !names.includes(edit.name)) throw new PolicyEditError('unknown', `no static opening named ${JSON.stringify(edit.name)} in ${file}`);
  const want = intended(data, edit);
  const candidates = format === 'json' ? [jsonEdit(text, want)] : [spliceYaml(text, edit), documentEdit(text, edit)];
  const next = candidates.find((c) => c !== undefined && sameData(c, format, want));
  if (next === undefined) throw new PolicyEditError('invalid', `${file}: the edit could not be made without changing other parts of the file; edit it by hand`);
  try {
    parsePolicyText(next, file);
  } catch (err) {
    if (err instanceof PolicyError) throw new PolicyEditError('invalid', `the policy file would not be valid after this change, so it was left as it is:\n${err.message}`);
    throw err;
  }
  return next;
}

function sameData(text: string, format: 'json' | 'yaml', want: unknown): boolean {
  const { parse } = yaml();
  try {
    return isDeepStrictEqual(format === 'json' ? JSON.parse(text) : parse(text, { maxAliasCount: 0 }), want);
  } catch {
    return false;
  }
}

function jsonEdit(text: string, want: unknown): string {
  // The file's own indentation: that of its first indented line (two spaces if none).
  const indent = /\n([ \t]+)\S/.exec(text)?.[1] ?? '  ';
  return JSON.stringify(want, null, indent) + (text.endsWith('\n') ? '\n' : '');
}

/** Through the yaml document: comments and order kept, the layout the package's. */
function documentEdit(text: string, edit: StaticEdit): string | undefined {
  const { isMap, isScalar, isSeq, parseDocument } = yaml();
  const doc = parseDocument(text);
  if (doc.errors.length) return undefined;
  const list = doc.get('static', true);
  if (edit.op === 'add') {
    if (isSeq(list)) list.add(quotedFor11(doc.createNode(edit.entry)));
    else doc.set('static', quotedFor11(doc.createNode([edit.entry])));
  } else {
    if (!isSeq(list)) return undefined;
    const i = list.items.findIndex((item) => nameOf(item) === edit.name);
    if (i < 0) return undefined;
    list.delete(i);
  }
  return doc.toString();
}

/** An entry's `name`, if it is a mapping with a plain name. */
function nameOf(item: unknown): unknown {
  const { isMap, isScalar } = yaml();
  if (!isMap(item)) return undefined;
  const n = item.get('name', true);
  return isScalar(n) ? n.value : undefined;
}

const lineStart = (text: string, at: number) => text.lastIndexOf('\n', at - 1) + 1;
/** Just past the end of the line holding the last non-blank character before `at`. */
function lineEndBefore(text: string, at: number): number {
  let i = at;
  while (i > 0 && /\s/.test(text[i - 1] as string)) i--;
  const nl = text.indexOf('\n', i);
  return nl < 0 ? text.length : nl + 1;
}

/** The start of an item's lines, with the comment lines directly above it. */
function itemStart(text: string, at: number): number {
  let start = lineStart(text, at);
  while (start > 0) {
    const prev = lineStart(text, start - 1);
    if (!/^\s*#/.test(text.slice(prev, start))) break;
    start = prev;
  }
  return start;
}

/** In place, in a block list: the text around the entry untouched. Undefined when the layout is not that. */
function spliceYaml(text: string, edit: StaticEdit): string | undefined {
  const { isMap, isScalar, isSeq, parseDocument } = yaml();
  const doc = parseDocument(text);
  if (doc.errors.length || !isMap(doc.contents)) return undefined;
  const pair = doc.contents.items.find((p: Pair) => isScalar(p.key) && p.key.value === 'static');
  if (!pair) {
    if (edit.op !== 'add') return undefined;
    const sep = text === '' || text.endsWith('\n') ? '' : '\n';
    return `${text}${sep}static:\n${render(edit.entry, '  ')}`;
  }
  const list = pair.value;
  if (isSeq(list) && list.flow && list.items.length === 0) return edit.op === 'add' ? blockFromEmpty(text, pair, edit.entry) : undefined;
  if (!isSeq(list) || list.flow || list.items.length === 0) return undefined;
  const ranges = list.items.map((item) => (isMap(item) || isScalar(item) || isSeq(item) ? item.range : undefined));
  if (ranges.some((r) => !r)) return undefined;
  const first = ranges[0] as [number, number, number];
  const indent = /^[ ]*/.exec(text.slice(lineStart(text, first[0])))?.[0] ?? '';
  if (edit.op === 'add') {
    const last = ranges[ranges.length - 1] as [number, number, number];
    const at = lineEndBefore(text, last[1]);
    const sep = at === text.length && !text.endsWith('\n') ? '\n' : '';
    return `${text.slice(0, at)}${sep}${render(edit.entry, indent)}${text.slice(at)}`;
  }
  const i = list.items.findIndex((item) => nameOf(item) === edit.name);
  if (i < 0) return undefined;
  const r = ranges[i] as [number, number, number];
  const start = itemStart(text, r[0]);
  const next = ranges[i + 1];
  const end = next ? itemStart(text, next[0]) : lineEndBefore(text, r[1]);
  let out = text.slice(0, start) + text.slice(end);
  if (list.items.length === 1) {
    // The list is empty now: `static:` alone would be null, which the schema refuses.
    const key = pair.key as { range?: [number, number, number] };
    const colon = key.range ? out.indexOf(':', key.range[1]) : -1;
    if (colon < 0) return undefined;
    out = `${out.slice(0, colon + 1)} []${out.slice(colon + 1)}`;
  }
  return out;
}

/**
 * `static: []   # comment` (on one line) → `static:   # comment` and the
 * entry as a block list under it, two spaces in from the key.
 */
function blockFromEmpty(text: string, pair: Pair, entry: FileStatic): string | undefined {
  const key = (pair.key as { range?: [number, number, number] }).range;
  const value = (pair.value as { range?: [number, number, number] }).range;
  if (!key || !value || !/^\[[ \t]*\]$/.test(text.slice(value[0], value[1]))) return undefined;
  const keyIndent = text.slice(lineStart(text, key[0]), key[0]);
  if (!/^ *$/.test(keyIndent)) return undefined;
  const nl = text.indexOf('\n', value[1]);
  const lineEnd = nl < 0 ? text.length : nl;
  const comment = text.slice(value[1], lineEnd);
  const head = text.slice(0, value[0]).replace(/[ \t]+$/, '');
  return `${head}${comment.trim() ? comment : ''}\n${render(entry, `${keyIndent}  `)}${text.slice(nl < 0 ? text.length : nl + 1)}`;
}

/** One list item at the list's indentation, as the yaml package writes it, YAML 1.1's misreadings quoted. */
function render(entry: FileStatic, indent: string): string {
  const { Document } = yaml();
  return quotedFor11(new Document([entry]))
    .toString({ lineWidth: 0 })
    .split('\n')
    .map((l) => (l ? indent + l : l))
    .join('\n');
}

/** A plain string YAML 1.1 would read as something else (a boolean, a base-60 or octal number, null). */
function misreadBy11(value: string): boolean {
  const { parse } = yaml();
  try {
    return parse(value, { version: '1.1' }) !== value;
  } catch {
    return true;
  }
}

/** Double quotes on every `mac` value and on each string YAML 1.1 would misread; the node returned. */
function quotedFor11<T extends Document | Node>(node: T): T {
  const { Scalar, isScalar, visit } = yaml();
  visit(node, {
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.value === 'mac' && isScalar(pair.value)) pair.value.type = Scalar.QUOTE_DOUBLE;
    },
    Scalar(key, scalar) {
      if (key !== 'key' && typeof scalar.value === 'string' && misreadBy11(scalar.value)) scalar.type = Scalar.QUOTE_DOUBLE;
    },
  });
  return node;
}

// --- reading and writing ---------------------------------------------------

/** The file an edit works on: the target of a symbolic link (a rename would replace the link itself). */
export async function editableFile(file: string): Promise<{ target: string; text: string; mode: number; uid: number; gid: number }> {
  let target: string;
  try {
    target = await realpath(file);
  } catch (err) {
    throw new PolicyEditError('io', `cannot read the policy file ${file}: ${(err as Error).message}`);
  }
  const st = await stat(target);
  // Root may write anything: the file's write bits are the admin's word that it is not to be changed.
  if ((st.mode & 0o222) === 0) throw new PolicyEditError('read-only', `the policy file ${file} is read-only: nothing was changed (make it writable to edit it from the admin page)`);
  try {
    await access(target, constants.W_OK);
    await access(dirname(target), constants.W_OK);
  } catch {
    throw new PolicyEditError('read-only', `the policy file ${file} or its directory is not writable by the daemon: nothing was changed`);
  }
  if (st.size > MAX_FILE_BYTES) throw new PolicyEditError('invalid', `the policy file ${file} is larger than ${MAX_FILE_BYTES} bytes`);
  return { target, text: await readFile(target, 'utf8'), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
}

/**
 * Replaces `target` with `text` atomically: a temporary file in the same
 * directory, flushed, renamed over it, the directory flushed. With `backup`,
 * the previous contents go to FILE.bak first (the same way). A failure
 * leaves the file as it was; the temporary file is removed.
 */
export async function writePolicyFile(target: string, text: string, like: { mode: number; uid: number; gid: number }, backup?: string): Promise<void> {
  if (backup !== undefined) await atomicWrite(backupOf(target), backup, like);
  await atomicWrite(target, text, like);
}

async function atomicWrite(file: string, text: string, like: { mode: number; uid: number; gid: number }): Promise<void> {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const h = await open(tmp, 'wx', like.mode);
    try {
      await h.writeFile(text, 'utf8');
      await h.sync();
    } finally {
      await h.close();
    }
    await chmod(tmp, like.mode);
    if (process.getuid?.() === 0) await chown(tmp, like.uid, like.gid).catch(() => undefined);
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EROFS' || code === 'EACCES' || code === 'EPERM' ? 'read-only' : 'io';
    throw new PolicyEditError(why, `could not write ${file}: ${(err as Error).message}; nothing was changed`);
  }
  // The rename is durable only once the directory is.
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
