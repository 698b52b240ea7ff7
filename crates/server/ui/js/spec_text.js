// Between a spec document's Markdown source and its rendered HTML, for anchored comments.
//
// A comment's `quoted_text` must appear in the Markdown source (the API checks it), but a reviewer
// selects rendered text, which lacks the markup (`**bold**`, `[link](url)`, list bullets, table
// pipes). Both directions compare "skeletons": the text without whitespace and markup characters,
// each kept character remembering where it came from.
// - `sourceQuote(selection, markdown)`: the passage of the source a selection came from (exact
//   when the selection appears as is; else from the first to the last character of the match).
// - `markQuote(root, quote, attrs)`: wraps the rendered text a quote stands for in
//   `<mark class="comment-anchor">` elements (one per text node it spans); returns them.

const MARKUP = new Set(['*', '_', '~', '`', '[', ']', '#', '>', '|', '\\']);

// Per line of Markdown: the block markers (blockquote, bullet or number, task box, heading).
const LINE_PREFIX = /^[ \t]*(?:>[ \t]*)*(?:(?:[-+*]|\d{1,9}[.)])[ \t]+)?(?:\[[ xX]\][ \t]+)?(?:#{1,6}[ \t]+)?/;
// A table's delimiter row, which renders as nothing.
const TABLE_RULE = /^[ \t]*\|?[ \t]*:?-{1,}:?[ \t]*(?:\|[ \t]*:?-{1,}:?[ \t]*)*\|?[ \t]*$/;
// A link's destination (with its title), which renders as nothing.
const LINK_TARGET = /\]\((?:[^()\s]|\([^()]*\))*(?:\s+(?:"[^"]*"|'[^']*'))?\)/g;

/** `{ chars, at }`: the kept characters of `text` and, for each, its index in `text`. */
export function skeleton(text, markdown) {
  const skip = new Uint8Array(text.length);
  if (markdown) {
    let start = 0;
    for (const line of text.split('\n')) {
      if (TABLE_RULE.test(line) && line.includes('-')) skip.fill(1, start, start + line.length);
      else {
        const prefix = LINE_PREFIX.exec(line);
        if (prefix) skip.fill(1, start, start + prefix[0].length);
      }
      start += line.length + 1;
    }
    for (const match of text.matchAll(LINK_TARGET)) skip.fill(1, match.index, match.index + match[0].length);
  }
  let chars = '';
  const at = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (skip[i] || MARKUP.has(c) || /\s/.test(c)) continue;
    chars += c;
    at.push(i);
  }
  return { chars, at };
}

/** The passage of `markdown` that the rendered `selection` shows, or null when none matches. */
export function sourceQuote(selection, markdown) {
  const wanted = selection.trim();
  if (!wanted) return null;
  if (markdown.includes(wanted)) return wanted;
  const needle = skeleton(wanted, false).chars;
  if (!needle) return null;
  const hay = skeleton(markdown, true);
  const found = hay.chars.indexOf(needle);
  if (found < 0) return null;
  return markdown.slice(hay.at[found], hay.at[found + needle.length - 1] + 1);
}

/** The text nodes under `root` in document order, with their offsets in the concatenated text. */
function textNodes(root) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const nodes = [];
  let text = '';
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    nodes.push({ node, start: text.length });
    text += node.data;
  }
  return { nodes, text };
}

/**
 * Wraps the rendered text that the Markdown `quote` stands for (its first occurrence) in
 * `<mark class="comment-anchor">` elements with `attrs` (dataset and title); returns the marks,
 * empty when the quote cannot be found in the rendered text.
 */
export function markQuote(root, quote, attrs = {}) {
  const needle = skeleton(quote, true).chars;
  if (!needle) return [];
  const { nodes, text } = textNodes(root);
  const hay = skeleton(text, false);
  const found = hay.chars.indexOf(needle);
  if (found < 0) return [];
  const from = hay.at[found];
  const to = hay.at[found + needle.length - 1] + 1;
  const marks = [];
  for (const { node, start } of nodes) {
    const end = start + node.data.length;
    if (end <= from || start >= to) continue;
    const localFrom = Math.max(0, from - start);
    const localTo = Math.min(node.data.length, to - start);
    if (localTo <= localFrom || !node.data.slice(localFrom, localTo).trim()) continue;
    // Text inside a table row or list between cells is not wrapped (a mark there is invalid).
    const parent = node.parentElement;
    if (parent && ['TABLE', 'THEAD', 'TBODY', 'TR', 'UL', 'OL'].includes(parent.tagName)) continue;
    const middle = localFrom > 0 ? node.splitText(localFrom) : node;
    if (localTo - localFrom < middle.data.length) middle.splitText(localTo - localFrom);
    const mark = document.createElement('mark');
    mark.className = 'comment-anchor';
    Object.assign(mark.dataset, attrs.dataset || {});
    if (attrs.title) mark.title = attrs.title;
    middle.replaceWith(mark);
    mark.append(middle);
    marks.push(mark);
  }
  return marks;
}
