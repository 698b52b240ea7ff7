// A unified diff (as `GET /spec-tasks/{id}/revisions/{a}/diff/{b}` returns per document) shown
// unified or side by side. Added and removed lines are coloured and also carry a visible `+` or
// `−` sign and a hidden "added"/"removed" word, so colour is never the only signal.

import { h } from './dom.js';

/** The hunks of a unified diff: `[{ header, lines: [{ kind: 'add'|'del'|'ctx', text }] }]`. */
export function parseUnified(text) {
  const hunks = [];
  let hunk = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('--- ') || line.startsWith('+++ ')) continue;
    if (line.startsWith('@@')) {
      hunk = { header: line, lines: [] };
      hunks.push(hunk);
    } else if (hunk && line.startsWith('+')) hunk.lines.push({ kind: 'add', text: line.slice(1) });
    else if (hunk && line.startsWith('-')) hunk.lines.push({ kind: 'del', text: line.slice(1) });
    else if (hunk && line.startsWith(' ')) hunk.lines.push({ kind: 'ctx', text: line.slice(1) });
    else if (hunk && line.startsWith('\\')) continue; // "\ No newline at end of file"
  }
  return hunks;
}

const SIGN = { add: '+', del: '−', ctx: ' ' };
const WORD = { add: 'added: ', del: 'removed: ', ctx: '' };

function cell(line) {
  if (!line) return [h('td', { class: 'diff-sign diff-none' }), h('td', { class: 'diff-text diff-none' })];
  return [
    h('td', { class: `diff-sign diff-${line.kind}`, 'aria-hidden': 'true' }, SIGN[line.kind]),
    h('td', { class: `diff-text diff-${line.kind}` },
      WORD[line.kind] ? h('span', { class: 'visually-hidden' }, WORD[line.kind]) : null, line.text),
  ];
}

/** One document's diff as a table, `layout` `unified` or `split`. */
export function diffTable(text, layout, caption) {
  const hunks = parseUnified(text);
  if (!hunks.length) return h('p', { class: 'empty diff-unchanged' }, `${caption}: unchanged.`);
  const rows = [];
  for (const hunk of hunks) {
    rows.push(h('tr', { class: 'diff-hunk' }, h('td', { colspan: layout === 'split' ? 4 : 2 }, hunk.header)));
    if (layout !== 'split') {
      for (const line of hunk.lines) rows.push(h('tr', { class: `diff-line diff-${line.kind}` }, cell(line)));
      continue;
    }
    // Side by side: context on both sides; a run of removals beside the additions that follow.
    let i = 0;
    while (i < hunk.lines.length) {
      const line = hunk.lines[i];
      if (line.kind === 'ctx') {
        rows.push(h('tr', { class: 'diff-line' }, cell(line), cell(line)));
        i++;
        continue;
      }
      const dels = [];
      const adds = [];
      while (i < hunk.lines.length && hunk.lines[i].kind === 'del') dels.push(hunk.lines[i++]);
      while (i < hunk.lines.length && hunk.lines[i].kind === 'add') adds.push(hunk.lines[i++]);
      for (let k = 0; k < Math.max(dels.length, adds.length); k++) {
        rows.push(h('tr', { class: 'diff-line' }, cell(dels[k]), cell(adds[k])));
      }
    }
  }
  // Column widths come from the first row of a fixed table, which is a hunk header here.
  const side = () => [h('col', { class: 'diff-sign-col' }), h('col', {})];
  return h('table', { class: `diff diff-${layout}` },
    h('caption', {}, caption),
    h('colgroup', {}, side(), layout === 'split' ? side() : null),
    layout === 'split'
      ? h('thead', {}, h('tr', {}, h('th', { colspan: 2, scope: 'colgroup' }, 'Before'), h('th', { colspan: 2, scope: 'colgroup' }, 'After')))
      : null,
    h('tbody', {}, rows));
}
