// XML 1.0's characters and names (§2.2 Char, §2.3 Name, Namespaces §3
// NCName), and text escaped so that it stays text: what the parser
// (xml.ts) checks its input against, and what every document and SOAP
// message we build escapes its values with.

/**
 * Escapes text for element content and for attribute values in either quote
 * style, so that parsing gives the same string back. Characters XML 1.0 cannot carry at all (§2.2 Char: C0 controls other
 * than tab/LF/CR, lone surrogates, U+FFFE/U+FFFF) become U+FFFD, so a mapping
 * description holding such bytes still yields a well-formed document.
 */
export function escapeXml(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    switch (c) {
      case 0x26: out += '&amp;'; continue;
      case 0x3c: out += '&lt;'; continue;
      case 0x3e: out += '&gt;'; continue;
      case 0x22: out += '&quot;'; continue;
      case 0x27: out += '&apos;'; continue;
      // As references, white space survives both §2.11 line-end handling and
      // §3.3.3 attribute-value normalisation unchanged.
      case 0x09: out += '&#9;'; continue;
      case 0x0a: out += '&#10;'; continue;
      case 0x0d: out += '&#13;'; continue;
    }
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out += text.slice(i, i + 2);
        i++;
      } else out += '\ufffd';
      continue;
    }
    out += isXmlChar(c) ? text[i] : '\ufffd';
  }
  return out;
}

/** XML 1.0 §2.2 Char, for a single UTF-16 unit outside the surrogate range, or a full code point. */
export function isXmlChar(cp: number): boolean {
  if (cp < 0x20) return cp === 0x9 || cp === 0xa || cp === 0xd;
  if (cp <= 0xd7ff) return true;
  if (cp < 0xe000) return false;
  if (cp <= 0xfffd) return true;
  return cp >= 0x10000 && cp <= 0x10ffff;
}

/**
 * XML 1.0 §2.3 NameStartChar / NameChar, for one UTF-16 unit. Surrogates are
 * let through as name characters (the supplementary planes are allowed from
 * U+10000; pairing was already checked by the Char scan).
 */
export function isNameStart(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    c === 0x5f ||
    c === 0x3a ||
    (c >= 0xc0 && c <= 0xd6) ||
    (c >= 0xd8 && c <= 0xf6) ||
    (c >= 0xf8 && c <= 0x2ff) ||
    (c >= 0x370 && c <= 0x37d) ||
    (c >= 0x37f && c <= 0x1fff) ||
    c === 0x200c ||
    c === 0x200d ||
    (c >= 0x2070 && c <= 0x218f) ||
    (c >= 0x2c00 && c <= 0x2fef) ||
    (c >= 0x3001 && c <= 0xdfff) ||
    (c >= 0xf900 && c <= 0xfdcf) ||
    (c >= 0xfdf0 && c <= 0xfffd)
  );
}

export function isNameChar(c: number): boolean {
  return (
    isNameStart(c) ||
    c === 0x2d ||
    c === 0x2e ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0xb7 ||
    (c >= 0x300 && c <= 0x36f) ||
    c === 0x203f ||
    c === 0x2040
  );
}

export const isSpace = (c: number): boolean => c === 0x20 || c === 0x9 || c === 0xa || c === 0xd;

/** True when `name` is an XML Name (§2.3) without a colon (an NCName, Namespaces §3). */
export function isNcName(name: string): boolean {
  if (name.length === 0 || !isNameStart(name.charCodeAt(0)) || name.includes(':')) return false;
  for (let i = 1; i < name.length; i++) if (!isNameChar(name.charCodeAt(i))) return false;
  return true;
}
