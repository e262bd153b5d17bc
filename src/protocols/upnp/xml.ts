// A small, closed XML 1.0 parser for what UPnP control traffic carries: SOAP
// envelopes (UDA 1.1 §3.2) and, in tests, our own descriptions. Not a general
// parser, on purpose:
//
// - SOAP 1.1 §3: "A SOAP message MUST NOT contain a Document Type Declaration"
//   and "MUST NOT contain Processing Instructions". So `<!DOCTYPE`, `<!ENTITY`
//   and every other `<!` markup except comments and CDATA are refused where
//   they start, before anything is expanded or fetched (no billion laughs, no
//   XXE); the only `<?` accepted is one XML declaration before the root.
// - Only the five predefined entities (XML 1.0 §4.6) and character references
//   (§4.1) are decoded; a reference to a code point outside Char (§2.2) fails.
// - Namespaces in XML 1.0 §5-6: default (xmlns) and prefixed (xmlns:p)
//   declarations are resolved per element scope; an unbound prefix fails.
// - Every cost is bounded up front: input length, nesting depth, element
//   count and attributes per element. The scan is a single pass with no
//   backtracking, so time is linear in the (bounded) input.
//
// Errors are values; nothing here throws on any input.
//
// The parser is one state machine with its bounds beside it, kept whole in
// this file so a reader sees which rule guards which limit; the character
// and name classes it checks against, and escaping, are in xml-chars.ts.

import { isNameChar, isNameStart, isNcName, isSpace, isXmlChar } from './xml-chars.js';

const XML_NAMESPACE = 'http://www.w3.org/XML/1998/namespace';
const XMLNS_NAMESPACE = 'http://www.w3.org/2000/xmlns/';

export interface XmlLimits {
  /** Input length in UTF-16 code units (a body of N octets decodes to ≤ N). */
  maxLength: number;
  maxDepth: number;
  maxElements: number;
  maxAttributes: number;
}

const DEFAULT_XML_LIMITS: Readonly<XmlLimits> = {
  maxLength: 64 * 1024,
  maxDepth: 32,
  maxElements: 1024,
  maxAttributes: 32,
};

export interface XmlAttribute {
  /** The qualified name as written (`s:encodingStyle`). */
  name: string;
  prefix: string | undefined;
  local: string;
  /** Namespaces §6.2: an unprefixed attribute is in no namespace (''). */
  namespace: string;
  value: string;
}

export interface XmlElement {
  kind: 'element';
  name: string;
  prefix: string | undefined;
  local: string;
  /** Resolved namespace URI; '' when the element is in no namespace. */
  namespace: string;
  attributes: XmlAttribute[];
  children: XmlNode[];
}

export interface XmlText {
  kind: 'text';
  text: string;
  /** True for a CDATA section (its content is taken verbatim). */
  cdata: boolean;
}

export type XmlNode = XmlElement | XmlText;

/**
 * LIMIT: a bound was hit; FORBIDDEN: markup SOAP 1.1 §3 excludes (DTD,
 * entity declarations, processing instructions); MALFORMED: not well-formed.
 */
export type XmlErrorCode = 'LIMIT' | 'FORBIDDEN' | 'MALFORMED';

export type XmlParseResult = { ok: true; root: XmlElement } | { ok: false; code: XmlErrorCode; detail: string };

/** Concatenated character data directly inside `el` (not of its descendants). */
export function textOf(el: XmlElement): string {
  let s = '';
  for (const c of el.children) if (c.kind === 'text') s += c.text;
  return s;
}

export function childElements(el: XmlElement): XmlElement[] {
  return el.children.filter((c): c is XmlElement => c.kind === 'element');
}

const PREDEFINED_ENTITIES: ReadonlyMap<string, string> = new Map([
  ['lt', '<'],
  ['gt', '>'],
  ['amp', '&'],
  ['quot', '"'],
  ['apos', "'"],
]);
/** `&#x10FFFF;` is the longest legal reference: bounds the search for ';'. */
const MAX_REFERENCE_LENGTH = 10;

class XmlError {
  constructor(
    readonly code: XmlErrorCode,
    readonly detail: string,
  ) {}
}

interface OpenElement {
  el: XmlElement;
  /** Prefix → namespace bindings in scope (inherited, then this element's own). */
  scope: ReadonlyMap<string, string>;
}

/**
 * Parses `input` into an element tree. `limits` overrides the defaults field
 * by field (the caller usually passes the HTTP body bound as `maxLength`).
 */
export function parseXml(input: string, limits: Partial<XmlLimits> = {}): XmlParseResult {
  const lim: XmlLimits = { ...DEFAULT_XML_LIMITS, ...limits };
  if (input.length > lim.maxLength) {
    return { ok: false, code: 'LIMIT', detail: `document of ${input.length} characters > ${lim.maxLength}` };
  }
  try {
    return { ok: true, root: new Parser(input, lim).document() };
  } catch (e) {
    if (e instanceof XmlError) return { ok: false, code: e.code, detail: e.detail };
    throw e;
  }
}

/**
 * Internally a private exception type lets any helper abandon the parse;
 * parseXml turns it back into a value, and anything else (a bug) propagates.
 */
class Parser {
  private pos = 0;
  private elements = 0;
  private readonly stack: OpenElement[] = [];

  private readonly s: string;

  constructor(
    input: string,
    private readonly lim: XmlLimits,
  ) {
    // §2.11: CRLF and lone CR are read as LF before anything else (so a CR
    // survives only as the reference &#13;, which escapeXml emits).
    this.s = input.includes('\r') ? input.replace(/\r\n?/g, '\n') : input;
  }

  private fail(code: XmlErrorCode, detail: string): never {
    throw new XmlError(code, `${detail} at offset ${this.pos}`);
  }

  document(): XmlElement {
    this.checkChars();
    const s = this.s;
    // A UTF-8 byte order mark decodes to U+FEFF at offset 0.
    if (s.charCodeAt(0) === 0xfeff) this.pos = 1;
    // §2.8 puts the declaration at the very start; leading white space is
    // tolerated because some control points send a newline first.
    this.skipSpace();
    if (s.startsWith('<?xml', this.pos) && isSpaceOrEnd(s.charCodeAt(this.pos + 5))) this.xmlDeclaration();
    let root: XmlElement | undefined;
    while (this.pos < s.length) {
      this.skipSpace();
      if (this.pos >= s.length) break;
      if (s.charCodeAt(this.pos) !== 0x3c) this.fail('MALFORMED', 'character data outside the root element');
      if (s.startsWith('<!--', this.pos)) {
        this.comment();
      } else if (s.startsWith('<?', this.pos)) {
        this.fail('FORBIDDEN', 'processing instruction');
      } else if (s.startsWith('<!', this.pos)) {
        this.fail('FORBIDDEN', `markup declaration ${JSON.stringify(s.slice(this.pos, this.pos + 9))}`);
      } else if (root) {
        this.fail('MALFORMED', 'a second root element');
      } else {
        root = this.content();
      }
    }
    if (!root) this.fail('MALFORMED', 'no root element');
    return root;
  }

  /** One pass over the input for characters XML 1.0 §2.2 excludes (NUL, most C0 controls, unpaired surrogates). */
  private checkChars(): void {
    const s = this.s;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x20 && c < 0xd800) continue;
      if (c >= 0xd800 && c <= 0xdbff) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          i++;
          continue;
        }
      } else if (isXmlChar(c)) continue;
      this.pos = i;
      this.fail('MALFORMED', `character U+${c.toString(16).padStart(4, '0')} not allowed in XML`);
    }
  }

  private skipSpace(): void {
    while (this.pos < this.s.length && isSpace(this.s.charCodeAt(this.pos))) this.pos++;
  }

  /** XML 1.0 §2.8 XMLDecl: `<?xml version="1.x" ...?>`; its pseudo-attributes are not interpreted. */
  private xmlDeclaration(): void {
    const end = this.s.indexOf('?>', this.pos);
    if (end < 0) this.fail('MALFORMED', 'unterminated XML declaration');
    const body = this.s.slice(this.pos + 5, end);
    if (!/^\s+version\s*=\s*(["'])1\.\d+\1/.test(body)) this.fail('MALFORMED', 'XML declaration without a version');
    this.pos = end + 2;
  }

  /** §2.5: `<!--` … `-->`, and "--" must not occur inside. */
  private comment(): void {
    const end = this.s.indexOf('--', this.pos + 4);
    if (end < 0) this.fail('MALFORMED', 'unterminated comment');
    if (this.s.charCodeAt(end + 2) !== 0x3e) this.fail('MALFORMED', '"--" inside a comment');
    this.pos = end + 3;
  }

  /**
   * Parses one element and everything inside it, iteratively: depth is an
   * explicit stack bounded by maxDepth, never the JavaScript call stack.
   */
  private content(): XmlElement {
    const s = this.s;
    const root = this.startTag(undefined);
    if (!root.open) return root.el;
    let text = '';
    const flush = (): void => {
      const top = this.stack[this.stack.length - 1];
      if (top && text !== '') top.el.children.push({ kind: 'text', text, cdata: false });
      text = '';
    };
    while (this.stack.length > 0) {
      if (this.pos >= s.length) this.fail('MALFORMED', `unclosed element <${this.stack[this.stack.length - 1]?.el.name}>`);
      const c = s.charCodeAt(this.pos);
      if (c === 0x26) {
        text += this.reference();
        continue;
      }
      if (c !== 0x3c) {
        const next = nextSpecial(s, this.pos);
        const chunk = s.slice(this.pos, next);
        // §2.4: "]]>" is not allowed in content (it only closes CDATA).
        if (chunk.includes(']]>')) this.fail('MALFORMED', '"]]>" in character data');
        text += chunk;
        this.pos = next;
        continue;
      }
      if (s.startsWith('</', this.pos)) {
        flush();
        this.endTag();
        continue;
      }
      if (s.startsWith('<!--', this.pos)) {
        this.comment();
        continue;
      }
      if (s.startsWith('<![CDATA[', this.pos)) {
        flush();
        const end = s.indexOf(']]>', this.pos + 9);
        if (end < 0) this.fail('MALFORMED', 'unterminated CDATA section');
        this.stack[this.stack.length - 1]?.el.children.push({ kind: 'text', text: s.slice(this.pos + 9, end), cdata: true });
        this.pos = end + 3;
        continue;
      }
      if (s.startsWith('<?', this.pos)) this.fail('FORBIDDEN', 'processing instruction');
      if (s.startsWith('<!', this.pos)) this.fail('FORBIDDEN', `markup declaration ${JSON.stringify(s.slice(this.pos, this.pos + 9))}`);
      flush();
      const parent = this.stack[this.stack.length - 1];
      const child = this.startTag(parent);
      parent?.el.children.push(child.el);
    }
    return root.el;
  }

  /** §3.1 STag / EmptyElemTag. Pushes the element when it stays open. */
  private startTag(parent: OpenElement | undefined): { el: XmlElement; open: boolean } {
    const s = this.s;
    if (++this.elements > this.lim.maxElements) this.fail('LIMIT', `more than ${this.lim.maxElements} elements`);
    if (this.stack.length + 1 > this.lim.maxDepth) this.fail('LIMIT', `nesting deeper than ${this.lim.maxDepth}`);
    this.pos++; // '<'
    const name = this.name();
    const raw: { name: string; value: string }[] = [];
    for (;;) {
      const before = this.pos;
      this.skipSpace();
      const c = s.charCodeAt(this.pos);
      if (c === 0x3e || (c === 0x2f && s.charCodeAt(this.pos + 1) === 0x3e)) break;
      if (this.pos >= s.length) this.fail('MALFORMED', `unterminated start tag <${name}`);
      if (this.pos === before) this.fail('MALFORMED', `no space before an attribute in <${name}>`);
      if (raw.length >= this.lim.maxAttributes) this.fail('LIMIT', `more than ${this.lim.maxAttributes} attributes on <${name}>`);
      const an = this.name();
      this.skipSpace();
      if (s.charCodeAt(this.pos) !== 0x3d) this.fail('MALFORMED', `attribute ${an} without "="`);
      this.pos++;
      this.skipSpace();
      const value = this.attributeValue();
      if (raw.some((a) => a.name === an)) this.fail('MALFORMED', `duplicate attribute ${an}`);
      raw.push({ name: an, value });
    }
    const selfClosing = s.charCodeAt(this.pos) === 0x2f;
    this.pos += selfClosing ? 2 : 1;

    const scope = this.bindNamespaces(name, raw, parent?.scope);
    const [prefix, local] = splitQName(name);
    const el: XmlElement = {
      kind: 'element',
      name,
      prefix,
      local,
      namespace: this.resolve(prefix, scope, true),
      attributes: raw.map((a) => {
        const [p, l] = splitQName(a.name);
        return { name: a.name, prefix: p, local: l, namespace: this.attributeNamespace(a.name, p, scope), value: a.value };
      }),
      children: [],
    };
    this.checkExpandedAttributeNames(el);
    if (!selfClosing) this.stack.push({ el, scope });
    return { el, open: !selfClosing };
  }

  /** Namespaces §3: collects this element's xmlns declarations on top of the inherited scope. */
  private bindNamespaces(
    element: string,
    raw: readonly { name: string; value: string }[],
    inherited: ReadonlyMap<string, string> | undefined,
  ): ReadonlyMap<string, string> {
    const decls = raw.filter((a) => a.name === 'xmlns' || a.name.startsWith('xmlns:'));
    if (decls.length === 0 && inherited) return inherited;
    const scope = new Map(inherited ?? [['xml', XML_NAMESPACE]]);
    for (const d of decls) {
      if (d.name === 'xmlns') {
        scope.set('', d.value);
        continue;
      }
      const p = d.name.slice(6);
      if (!isNcName(p)) this.fail('MALFORMED', `bad namespace prefix "${p}" on <${element}>`);
      // §3: the xml prefix is fixed, xmlns is reserved, and (in XML 1.0
      // namespaces) a prefix cannot be unbound with an empty value.
      if (p === 'xmlns' || (p === 'xml') !== (d.value === XML_NAMESPACE)) this.fail('MALFORMED', `reserved prefix or namespace in ${d.name}`);
      if (d.value === '') this.fail('MALFORMED', `${d.name}="" (prefix undeclaration is XML 1.1 only)`);
      scope.set(p, d.value);
    }
    return scope;
  }

  private resolve(prefix: string | undefined, scope: ReadonlyMap<string, string>, isElement: boolean): string {
    if (prefix === undefined) return isElement ? (scope.get('') ?? '') : '';
    const ns = scope.get(prefix);
    if (ns === undefined) this.fail('MALFORMED', `unbound namespace prefix "${prefix}"`);
    return ns;
  }

  private attributeNamespace(name: string, prefix: string | undefined, scope: ReadonlyMap<string, string>): string {
    if (name === 'xmlns' || prefix === 'xmlns') return XMLNS_NAMESPACE;
    return this.resolve(prefix, scope, false);
  }

  /** Namespaces §6.3: no two attributes with the same local name and namespace. */
  private checkExpandedAttributeNames(el: XmlElement): void {
    const seen = new Set<string>();
    for (const a of el.attributes) {
      const key = `${a.namespace} ${a.local}`;
      if (seen.has(key)) this.fail('MALFORMED', `attribute {${a.namespace}}${a.local} twice on <${el.name}>`);
      seen.add(key);
    }
  }

  /** §3.1 ETag: `</Name S?>`, matching the innermost open element. */
  private endTag(): void {
    this.pos += 2;
    const name = this.name();
    this.skipSpace();
    if (this.s.charCodeAt(this.pos) !== 0x3e) this.fail('MALFORMED', `unterminated end tag </${name}`);
    this.pos++;
    const open = this.stack.pop();
    if (!open || open.el.name !== name) this.fail('MALFORMED', `</${name}> does not close <${open?.el.name}>`);
  }

  /** §2.3 Name, plus the Namespaces §3 QName shape: at most one colon, not at either end. */
  private name(): string {
    const s = this.s;
    const start = this.pos;
    if (!isNameStart(s.charCodeAt(start))) this.fail('MALFORMED', 'expected a name');
    let i = start + 1;
    while (i < s.length && isNameChar(s.charCodeAt(i))) i++;
    this.pos = i;
    const name = s.slice(start, i);
    const colon = name.indexOf(':');
    if (colon >= 0 && (colon === 0 || colon === name.length - 1 || name.indexOf(':', colon + 1) >= 0)) {
      this.fail('MALFORMED', `"${name}" is not a qualified name`);
    }
    return name;
  }

  /** §3.1 AttValue with §3.3.3 normalisation of literal white space. */
  private attributeValue(): string {
    const s = this.s;
    const quote = s.charCodeAt(this.pos);
    if (quote !== 0x22 && quote !== 0x27) this.fail('MALFORMED', 'attribute value not quoted');
    this.pos++;
    let v = '';
    for (;;) {
      if (this.pos >= s.length) this.fail('MALFORMED', 'unterminated attribute value');
      const c = s.charCodeAt(this.pos);
      if (c === quote) break;
      if (c === 0x3c) this.fail('MALFORMED', '"<" in an attribute value');
      if (c === 0x26) {
        v += this.reference();
        continue;
      }
      v += isSpace(c) ? ' ' : s[this.pos];
      this.pos++;
    }
    this.pos++;
    return v;
  }

  /** §4.1 CharRef and the five predefined EntityRefs; any other entity is undeclared. */
  private reference(): string {
    const s = this.s;
    // Bounded look-ahead: an unbounded indexOf(';') per '&' is quadratic on "&&&&…".
    let semi = this.pos + 1;
    while (semi < s.length && semi - this.pos <= MAX_REFERENCE_LENGTH && s.charCodeAt(semi) !== 0x3b) semi++;
    if (s.charCodeAt(semi) !== 0x3b) this.fail('MALFORMED', 'unterminated or overlong reference');
    const body = s.slice(this.pos + 1, semi);
    this.pos = semi + 1;
    const named = PREDEFINED_ENTITIES.get(body);
    if (named !== undefined) return named;
    let cp: number;
    if (/^#x[0-9a-fA-F]{1,6}$/.test(body)) cp = parseInt(body.slice(2), 16);
    else if (/^#[0-9]{1,7}$/.test(body)) cp = parseInt(body.slice(1), 10);
    else this.fail('MALFORMED', `undeclared entity &${body};`);
    if (!isXmlChar(cp)) this.fail('MALFORMED', `character reference &${body}; is not a legal character`);
    return String.fromCodePoint(cp);
  }
}

function isSpaceOrEnd(c: number): boolean {
  return Number.isNaN(c) || isSpace(c);
}

function splitQName(name: string): [string | undefined, string] {
  const colon = name.indexOf(':');
  return colon < 0 ? [undefined, name] : [name.slice(0, colon), name.slice(colon + 1)];
}

/**
 * Index of the next '<' or '&' at or after `from` (or the end). One forward
 * scan: two indexOf calls would each run ahead to the end of the input on
 * text like "x&amp;x&amp;…", making the whole parse quadratic.
 */
function nextSpecial(s: string, from: number): number {
  let i = from;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === 0x3c || c === 0x26) break;
    i++;
  }
  return i;
}
