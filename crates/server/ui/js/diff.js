// A paged git diff as the API gives it (`GET /spec-tasks/{id}/diff`, `/work-sessions/{sid}/diff`):
// totals, a file list with +/- counts linking to each file, and each file's unified patch with
// added and removed lines coloured and prefixed (+/-), built as one HTML string (every line
// through esc()). "Load more files" fetches the next page.
//
// Stable ids: #diff-summary (data-files, data-additions, data-deletions), #diff-files (the list,
// `li[data-path]`), #diff-patches (each file `details.diff-file[data-path]`), #diff-more.

import * as api from './api.js';
import { esc, h, replace, label } from './dom.js';

const PAGE = 50;

/** The patch of one file as `<pre>` markup: one span per line, classed by its kind. */
export function patchHtml(patch) {
  const lines = String(patch).split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let body = false;
  const out = [];
  for (const line of lines) {
    let cls = 'ctx';
    if (line.startsWith('@@')) { cls = 'hunk'; body = true; }
    else if (!body) {
      // The header repeats what the file's summary says; modes and renames stay.
      if (/^(diff --git |index |--- |\+\+\+ )/.test(line)) continue;
      cls = 'meta';
    }
    else if (line.startsWith('+')) cls = 'add';
    else if (line.startsWith('-')) cls = 'del';
    else if (line.startsWith('\\')) cls = 'meta';
    out.push(`<span class="dl dl-${cls}">${esc(line) || ' '}</span>`);
  }
  // Block spans, so no newline between them (a copy still gets one per line).
  return `<pre class="patch">${out.join('')}</pre>`;
}

function counts(file) {
  if (file.binary) return '<span class="meta">binary</span>';
  return `<span class="add-count" aria-label="${file.additions} added">+${file.additions}</span> `
    + `<span class="del-count" aria-label="${file.deletions} removed">−${file.deletions}</span>`;
}

function fileHtml(file, index) {
  const renamed = file.old_path ? ` <span class="meta">(from <code>${esc(file.old_path)}</code>)</span>` : '';
  let body;
  if (file.binary) body = '<p class="meta">Binary file: no patch.</p>';
  else if (!file.patch) body = '<p class="meta">No textual change.</p>';
  else body = patchHtml(file.patch) + (file.patch_truncated ? '<p class="meta">The patch is cut here: it is too long to show whole.</p>' : '');
  return `<details class="diff-file" id="diff-file-${index}" data-path="${esc(file.path)}" open>`
    + `<summary><code>${esc(file.path)}</code>${renamed} <span class="chip file-status-${esc(file.status)}">${esc(label(file.status))}</span> ${counts(file)}</summary>`
    + body + '</details>';
}

/**
 * Draws the diff at `path` (an API path) into `root`, page by page. Resolves to the first page,
 * or rejects with the API error (e.g. 409 `no_branch`).
 */
export async function showDiff(root, path) {
  const first = await api.get(`${path}?limit=${PAGE}`);
  let shown = 0;
  const summary = h('p', {
    id: 'diff-summary', class: 'diff-summary',
    dataset: { files: first.total_files, additions: first.additions, deletions: first.deletions },
  },
  h('strong', {}, `${first.total_files} file${first.total_files === 1 ? '' : 's'} changed`), ' ',
  h('span', { class: 'add-count' }, `+${first.additions}`), ' ', h('span', { class: 'del-count' }, `−${first.deletions}`),
  first.branch_name ? [' on ', h('code', {}, first.branch_name)] : null,
  ' · ', h('code', { title: `${first.base} → ${first.head}` }, `${first.base.slice(0, 8)}…${first.head.slice(0, 8)}`));
  const list = h('ol', { id: 'diff-files', class: 'diff-files', 'aria-label': 'Changed files' });
  const patches = h('div', { id: 'diff-patches', class: 'diff-patches' });
  const more = h('button', { type: 'button', id: 'diff-more', class: 'small' }, 'Load more files');
  const moreBox = h('p', { class: 'diff-more' }, more);

  function add(page) {
    const start = shown;
    list.insertAdjacentHTML('beforeend', page.files.map((file, i) =>
      `<li data-path="${esc(file.path)}"><a href="#diff-file-${start + i}"><code>${esc(file.path)}</code></a> ${counts(file)}</li>`).join(''));
    patches.insertAdjacentHTML('beforeend', page.files.map((file, i) => fileHtml(file, start + i)).join(''));
    shown += page.files.length;
    moreBox.hidden = page.next_offset === null || page.next_offset === undefined;
    more.dataset.offset = String(page.next_offset ?? '');
    replace(more, `Load more files (${shown} of ${first.total_files} shown)`);
  }
  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      add(await api.get(`${path}?limit=${PAGE}&offset=${more.dataset.offset}`));
    } catch (err) {
      replace(moreBox, h('span', { class: 'form-error', role: 'alert' }, err.message), ' ', more);
    } finally {
      more.disabled = false;
    }
  });
  add(first);
  replace(root, summary, first.total_files ? [list, patches, moreBox]
    : h('p', { class: 'empty' }, 'No change.'));
  return first;
}

/**
 * The files each work session's agent touched, from its tool calls (edits, deletes, moves and
 * file diffs): `[{ws, paths}]`. For tasks without git isolation, where there is no branch diff.
 */
export async function touchedFiles(sessions) {
  const result = [];
  for (const ws of sessions) {
    const session = await api.get(`/sessions/${ws.helix_session_id}`);
    const paths = new Set();
    for (const interaction of session.interactions) {
      for (let after = -1; ;) {
        const page = await api.get(`/sessions/${session.id}/interactions/${interaction.id}/entries?limit=5000`
          + (after >= 0 ? `&after_seq=${after}` : ''));
        for (const entry of page.entries) {
          if (entry.kind !== 'tool_call') continue;
          const call = entry.payload;
          if (['edit', 'delete', 'move'].includes(call.kind)) for (const loc of call.locations || []) paths.add(loc.path);
          for (const item of call.content || []) if (item.type === 'diff') paths.add(item.path);
        }
        if (page.entries.length < 5000) break;
        after = page.next_after_seq;
      }
    }
    result.push({ ws, paths: [...paths].sort() });
  }
  return result;
}
