// The chat protocol's bounds (web-demo/README.md, "Bounds"), checked before anything is sent so
// that a person hears about a mistake at once; the backend checks them again.

export const MAX_TEXT = 2000; // characters (code points), as the backend counts
export const MAX_NICK = 32;
export const ROOM_RE = /^[a-z0-9-]{1,32}$/;
// Printable: no control/format/unassigned characters and no separators other than the space
// (what Python's str.isprintable() accepts, which the backend checks).
const NICK_RE = /^(?:[^\p{C}\p{Z}]| )+$/u;
export const BAD_TEXT_RE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

/** Characters as the backend counts them: code points, not UTF-16 units. */
export const codePoints = (text) => [...text].length;

/** @param {string} nick already trimmed */
export function validNick(nick) {
  return nick.length > 0 && codePoints(nick) <= MAX_NICK && NICK_RE.test(nick);
}
