// The work-session cards of the implementation view: status, why it waits, its task and
// requirement ids, branch and worktree, commits, overlapping and conflicting files, error or the
// agent's summary, and the Cancel / Retry actions its status allows.
//
// Stable ids: #work-sessions (the list), each card `li#ws-<id>[data-work-session-id][data-status]`,
// its buttons `#ws-select-<id>`, `#ws-cancel-<id>`, `#ws-retry-<id>`.

import * as api from './api.js';
import { h, replace, label, timeAgo } from './dom.js';
import { attempt } from './shell.js';
import { STATUS_MARK, sessionTitle } from './graph.js';

/** Statuses from which the API accepts each action. */
export const CAN_CANCEL = ['pending', 'active', 'blocked'];
export const CAN_RETRY = ['failed'];

function short(commit) {
  return String(commit || '').slice(0, 10);
}

function card(ws, { tasks, selected, titleOf, onSelect, onChanged }) {
  const mine = tasks.filter((t) => t.assigned_work_session_id === ws.id);
  const requirements = [...new Set(mine.flatMap((t) => t.requirement_refs || []))];
  const action = (kind, text, path, done, cls) => h('button', {
    type: 'button', id: `ws-${kind}-${ws.id}`, class: `small ${cls || ''}`,
    'aria-label': `${text} ${sessionTitle(ws)}`,
    onclick: async (event) => {
      event.currentTarget.disabled = true;
      const updated = await attempt(() => api.post(path), done);
      if (updated) onChanged();
      else event.target.disabled = false;
    },
  }, text);
  const parent = ws.spawned_by_session_id || ws.parent_work_session_id;
  const facts = [];
  if (ws.queue_reason) facts.push(h('p', { class: 'ws-reason' }, h('strong', {}, 'Why it waits: '), ws.queue_reason));
  if (ws.waiting_for) facts.push(h('p', { class: 'ws-reason' }, 'Waits for ', titleOf(ws.waiting_for), ' to end (it touched the same file).'));
  if (ws.error) facts.push(h('p', { class: 'card-error', role: 'note' }, ws.error));
  if (ws.agent_gave_up) facts.push(h('p', { class: 'card-error' }, 'The agent gave up: ', ws.agent_gave_up));
  if (ws.agent_summary) facts.push(h('details', { class: 'ws-summary' }, h('summary', {}, 'Agent summary'), h('p', { class: 'prose' }, ws.agent_summary)));
  if (mine.length) {
    facts.push(h('p', { class: 'meta' }, 'Tasks ', mine.map((t) => t.key).join(', '),
      requirements.length ? [' · implements ', requirements.map((r, i) => [i ? ', ' : '', h('span', { class: 'req' }, r)])] : null));
  }
  if (parent) facts.push(h('p', { class: 'meta' }, 'Spawned by ', titleOf(parent)));
  if (ws.branch_name || ws.worktree_path) {
    facts.push(h('p', { class: 'meta ws-git' },
      ws.branch_name ? ['Branch ', h('code', {}, ws.branch_name)] : null,
      ws.branch_name && ws.worktree_path ? ' · ' : null,
      ws.worktree_path ? ['worktree ', h('code', {}, ws.worktree_path)] : null));
  }
  if (ws.commits?.length) {
    facts.push(h('details', { class: 'ws-commits' },
      h('summary', {}, `${ws.commits.length} commit${ws.commits.length === 1 ? '' : 's'}`),
      h('ul', {}, ws.commits.map((c) => h('li', {}, h('code', { title: c.id }, short(c.id)), ' ', c.summary, ' ',
        h('span', { class: 'meta' }, '· ', c.author, ' · ', timeAgo(c.committed_at)))))));
  }
  if (ws.conflict_files?.length) {
    facts.push(h('div', { class: 'ws-conflicts' }, h('strong', {}, 'Merge conflict in:'),
      h('ul', {}, ws.conflict_files.map((f) => h('li', {}, h('code', {}, f))))));
  }
  if (ws.overlaps?.length) {
    facts.push(h('details', { class: 'ws-overlaps' }, h('summary', {}, `Overlaps with other sessions (${ws.overlaps.length})`),
      h('ul', {}, ws.overlaps.map((o) => h('li', {}, h('code', {}, o.path), ' also touched by ', titleOf(o.other_work_session_id))))));
  }
  const buttons = [h('button', {
    type: 'button', id: `ws-select-${ws.id}`, class: 'small',
    'aria-pressed': String(ws.id === selected), onclick: () => onSelect(ws.id),
  }, ws.id === selected ? 'Showing thread' : 'Show thread')];
  if (CAN_CANCEL.includes(ws.status)) buttons.push(action('cancel', 'Cancel', `/work-sessions/${ws.id}/cancel`, 'Work session cancelled', 'danger'));
  if (CAN_RETRY.includes(ws.status)) buttons.push(action('retry', 'Retry', `/work-sessions/${ws.id}/retry`, 'Work session queued again'));
  return h('li', {
    class: 'card ws-card' + (ws.id === selected ? ' selected' : ''), id: `ws-${ws.id}`,
    dataset: { workSessionId: ws.id, status: ws.status },
  },
  h('h3', { class: 'ws-title' }, sessionTitle(ws)),
  h('p', { class: 'card-meta' },
    h('span', { class: `chip ws-status ws-status-${ws.status}` }, `${STATUS_MARK[ws.status] || ''} ${label(ws.status)}`),
    ws.phase === 'planning' ? h('span', { class: 'chip' }, 'planning') : null,
    ws.zed_thread ? h('span', { class: 'chip', title: 'Thread status' }, 'thread ', label(ws.zed_thread.status)) : null,
    h('span', { class: 'meta' }, ws.started_at ? ['started ', timeAgo(ws.started_at)] : ['created ', timeAgo(ws.created_at)])),
  facts,
  h('div', { class: 'actions' }, buttons));
}

/** Redraws the list, keeping the focus on the same button when it still exists. */
export function renderSessions(list, sessions, options) {
  const focused = document.activeElement?.id;
  const byId = new Map(sessions.map((ws) => [ws.id, ws]));
  const titleOf = (id) => h('a', { href: `?session=${id}`, onclick: (event) => { event.preventDefault(); options.onSelect(id); } },
    byId.has(id) ? sessionTitle(byId.get(id)) : id);
  const fragment = document.createDocumentFragment();
  for (const ws of sessions) fragment.append(card(ws, { ...options, titleOf }));
  replace(list, sessions.length ? fragment : h('li', { class: 'empty' }, 'No work sessions yet: they are created when the specs are approved.'));
  if (focused) {
    const again = document.getElementById(focused);
    if (again && list.contains(again) && document.activeElement !== again) again.focus();
  }
}
