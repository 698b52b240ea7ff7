// The task's implementation view: `mount(container, ctx)` renders it (see task.js for ctx).
//
// What it shows: progress against the plan, the plan as a dependency graph of work sessions
// (graph.js), the work-session cards with Cancel / Retry (sessions.js), and the selected
// session's thread live (thread.js) with its pending permission requests, the agent's plan,
// context usage, and a box to send a follow-up message. Everything refreshes from the task's
// event stream (debounced); the thread reads only the entries after the last one it has.
// The selected session is in the URL (`?session=stws_…`, pushState; the back button works).
//
// Stable ids for tests: #progress (with data-completed, data-total), #progress-bar,
// #impl-graph (svg; nodes `a.graph-node[data-work-session-id][data-status]`), #work-sessions
// (see sessions.js), #thread-panel (data-work-session-id of the one shown), #thread-title,
// #thread-status, #thread-usage, #thread-permissions, #thread (the entries, see thread.js),
// #thread-plan, #message-form, #message-text, #message-send, #message-help.

import * as api from './api.js';
import { h, replace, label, debounce } from './dom.js';
import { attempt, permissionCard, toast } from './shell.js';
import { buildGraph, renderGraph, sessionTitle, STATUS_MARK } from './graph.js';
import { renderSessions } from './sessions.js';
import { Thread } from './thread.js';

/** Below this width the graph is drawn top to bottom. */
const NARROW = 700;

/** Event kinds that change the overview (sessions, tasks, progress). */
const OVERVIEW_EVENTS = /^(work_session\.|implementation_task\.|zed_thread\.|spec_task\.|agent\.|turn\.)/;

export async function mount(container, ctx) {
  const state = { sessions: [], tasks: [], progress: null, selected: null, thread: null, permissions: [] };
  const els = skeleton();
  replace(container, els.root);

  const hrefOf = (id) => `${location.pathname}?session=${encodeURIComponent(id)}`;
  const byId = (id) => state.sessions.find((ws) => ws.id === id);

  async function loadOverview() {
    const [sessions, tasks, progress] = await Promise.all([
      api.get(`/spec-tasks/${ctx.taskId}/work-sessions`),
      api.get(`/spec-tasks/${ctx.taskId}/implementation-tasks`),
      api.get(`/spec-tasks/${ctx.taskId}/progress`),
    ]);
    state.sessions = sessions.work_sessions;
    state.tasks = tasks.implementation_tasks;
    state.progress = progress;
  }

  function drawOverview() {
    drawProgress(els.progress, state.progress, state.sessions);
    drawGraph();
    renderSessions(els.list, state.sessions, {
      tasks: state.tasks, selected: state.selected, onSelect: (id) => select(id, true), onChanged: refreshSoon,
    });
    drawThreadHead();
  }

  let vertical = null;
  function drawGraph() {
    vertical = els.graphWrap.clientWidth > 0 && els.graphWrap.clientWidth < NARROW;
    renderGraph(els.graph, buildGraph(state.sessions, state.tasks), {
      vertical, selected: state.selected, hrefOf, onSelect: (id) => select(id, true),
    });
  }

  const refreshSoon = debounce(async () => {
    try {
      await loadOverview();
      drawOverview();
    } catch (err) {
      console.warn('refresh failed', err);
    }
  }, 250);

  /** Shows the thread of work session `id` (or none); `push` records it in the history. */
  async function select(id, push) {
    if (id && !byId(id)) id = null;
    if (push) {
      const url = new URL(location.href);
      if (id) url.searchParams.set('session', id); else url.searchParams.delete('session');
      history.pushState({ session: id }, '', url);
    }
    if (state.selected === id && state.thread) return;
    state.selected = id;
    state.thread?.close();
    state.thread = null;
    drawGraph();
    renderSessions(els.list, state.sessions, {
      tasks: state.tasks, selected: id, onSelect: (sid) => select(sid, true), onChanged: refreshSoon,
    });
    drawThreadHead();
    drawPlan(null);
    drawUsage(null);
    if (!id) {
      replace(els.thread, h('p', { class: 'empty' }, 'Pick a work session to see its thread.'));
      return;
    }
    const thread = new Thread(els.thread, { onPlan: drawPlan, onUsage: drawUsage, shorten: shortener(ctx.task, byId(id)) });
    state.thread = thread;
    loadPermissions();
    try {
      await thread.open(byId(id).helix_session_id);
    } catch (err) {
      if (state.thread === thread) replace(els.thread, h('p', { class: 'error-box', role: 'alert' }, err.message));
    }
  }

  function drawThreadHead() {
    const ws = byId(state.selected);
    els.panel.dataset.workSessionId = ws?.id || '';
    replace(els.title, ws ? ['Thread: ', sessionTitle(ws)] : 'Thread');
    replace(els.status, ws ? [h('span', { class: `chip ws-status ws-status-${ws.status}` }, `${STATUS_MARK[ws.status] || ''} ${label(ws.status)}`),
      ws.queue_reason ? h('span', { class: 'meta' }, ' ', ws.queue_reason) : null] : null);
    const active = ws?.status === 'active';
    els.text.disabled = !active;
    els.send.disabled = !active;
    els.form.hidden = !ws;
    replace(els.help, !ws ? '' : active ? 'Queued after the turn that is running; the agent answers in this thread.'
      : `Messages go to active sessions; this one is ${label(ws.status)}.`);
  }

  function drawPlan(entries) {
    if (!entries?.length) { els.plan.hidden = true; replace(els.planList); return; }
    els.plan.hidden = false;
    const mark = { completed: '☑', in_progress: '◐', pending: '☐' };
    replace(els.planList, entries.map((step) => h('li', { class: `plan-step plan-${step.status}`, dataset: { status: step.status } },
      h('span', { class: 'plan-mark', 'aria-hidden': 'true' }, mark[step.status] || '☐'), ' ',
      h('span', {}, step.content), ' ',
      h('span', { class: 'meta' }, `(${label(step.status)}${step.priority && step.priority !== 'medium' ? `, ${step.priority} priority` : ''})`))));
  }

  function drawUsage(usage) {
    if (!usage) { replace(els.usage); return; }
    const pct = usage.size ? Math.round((usage.used / usage.size) * 100) : 0;
    const fmt = (n) => Number(n).toLocaleString();
    replace(els.usage, h('span', { class: 'chip', title: 'Context window use' },
      `${fmt(usage.used)} / ${fmt(usage.size)} tokens (${pct}%)`,
      usage.cost ? ` · ${usage.cost.amount.toFixed(2)} ${usage.cost.currency}` : ''));
  }

  async function loadPermissions() {
    const id = state.selected;
    if (!id) { replace(els.permissions); return; }
    try {
      const list = await api.get(`/work-sessions/${id}/permission-requests`);
      if (state.selected !== id) return;
      const pending = list.permission_requests.filter((r) => r.status === 'pending');
      replace(els.permissions, pending.length
        ? [h('h3', {}, `Waiting for your answer (${pending.length})`), pending.map(permissionCard)] : null);
    } catch (err) {
      console.warn('permission requests unavailable', err);
    }
  }
  const permissionsSoon = debounce(loadPermissions, 200);

  els.form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = els.text.value.trim();
    const id = state.selected;
    if (!text || !id) { els.text.focus(); return; }
    els.send.disabled = true;
    const sent = await attempt(() => api.post(`/work-sessions/${id}/message`, { text }), 'Message queued');
    els.send.disabled = byId(id)?.status !== 'active';
    if (sent) {
      els.text.value = '';
      state.thread?.onEvent({ kind: 'turn.queued', payload: {} });
    }
  });
  els.text.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) els.form.requestSubmit();
  });

  window.addEventListener('popstate', () => {
    const id = new URLSearchParams(location.search).get('session');
    select(id || defaultSelection(state.sessions), false);
  });
  window.addEventListener('resize', debounce(() => {
    const now = els.graphWrap.clientWidth < NARROW;
    if (now !== vertical) drawGraph();
  }, 150));
  document.addEventListener('permissions-changed', permissionsSoon);

  ctx.subscribe((event) => {
    if (OVERVIEW_EVENTS.test(event.kind)) refreshSoon();
    if (event.kind.startsWith('permission.')) permissionsSoon();
    state.thread?.onEvent(event);
  });

  try {
    await loadOverview();
  } catch (err) {
    toast(err.message, 'error');
  }
  drawOverview();
  const wanted = new URLSearchParams(location.search).get('session');
  const first = wanted && byId(wanted) ? wanted : defaultSelection(state.sessions);
  if (wanted && !byId(wanted)) toast(`No work session ${wanted} in this task.`, 'error');
  history.replaceState({ session: first }, '', location.href);
  await select(first, false);
}

/** Paths as people read them: relative to the session's worktree or the project. */
function shortener(task, ws) {
  const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const roots = [ws.worktree_path, task.project_path].filter(Boolean).map((root) => escape(root.replace(/\/+$/, '')));
  // A worktree removed after its merge is no longer recorded; its path still names the session.
  roots.push(`[^\\s'"]*/worktrees/${escape(task.id)}/${escape(ws.id)}`);
  const pattern = new RegExp(`(${roots.join('|')})/`, 'g');
  return (text) => String(text).replace(pattern, '');
}

/** The session to show when the URL names none: a running one, else the first of the plan. */
function defaultSelection(sessions) {
  const impl = sessions.filter((ws) => ws.phase === 'implementation');
  return (impl.find((ws) => ws.status === 'active') || impl.find((ws) => ws.status === 'failed')
    || impl[0] || sessions[0])?.id || null;
}

function drawProgress(el, progress, sessions) {
  const done = progress?.completed_tasks ?? 0;
  const total = progress?.total_tasks ?? 0;
  const pct = total ? Math.round((done / total) * 100) : 0;
  el.dataset.completed = String(done);
  el.dataset.total = String(total);
  const counts = {};
  for (const ws of sessions.filter((s) => s.phase === 'implementation')) counts[ws.status] = (counts[ws.status] || 0) + 1;
  const bar = h('div', {
    class: 'progress-bar', id: 'progress-bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': String(total || 0),
    'aria-valuenow': String(done), 'aria-valuetext': `${done} of ${total} tasks done`, 'aria-labelledby': 'progress-text',
  }, h('div', { class: 'progress-fill' }));
  bar.firstChild.style.width = `${pct}%`;
  replace(el,
    h('p', { class: 'progress-text', id: 'progress-text' },
      h('strong', {}, total ? `${done} of ${total} tasks done (${pct}%)` : 'No plan tasks yet'), ' ',
      Object.entries(counts).map(([status, n]) => h('span', { class: `chip ws-status ws-status-${status}` },
        `${n} ${label(status)}`))),
    bar);
}

function skeleton() {
  const graph = h('svg:svg', { id: 'impl-graph', class: 'impl-graph', role: 'group', 'aria-label': 'Work sessions and what they wait for' });
  const graphWrap = h('div', { class: 'graph-wrap' }, graph);
  const text = h('textarea', { id: 'message-text', name: 'text', rows: '3', required: true, 'aria-describedby': 'message-help' });
  const send = h('button', { type: 'submit', id: 'message-send', class: 'primary' }, 'Send');
  const help = h('p', { class: 'help', id: 'message-help' });
  const form = h('form', { id: 'message-form', class: 'message-form stack' },
    h('label', { for: 'message-text' }, 'Follow-up message to this session\'s agent', text), help,
    h('div', { class: 'actions' }, send, h('span', { class: 'meta' }, 'Ctrl+Enter sends')));
  const planList = h('ul', { class: 'plan-steps' });
  const plan = h('section', { id: 'thread-plan', class: 'thread-plan', hidden: true, 'aria-label': 'The agent\'s plan' },
    h('h3', {}, 'Agent plan'), planList);
  const els = {
    progress: h('section', { id: 'progress', class: 'impl-progress', 'aria-live': 'polite', 'aria-label': 'Progress' }),
    graph, graphWrap, form, text, send, help, plan, planList,
    list: h('ol', { id: 'work-sessions', class: 'cards ws-list' }),
    title: h('h2', { id: 'thread-title' }, 'Thread'),
    status: h('p', { id: 'thread-status', class: 'thread-status' }),
    usage: h('p', { id: 'thread-usage', class: 'thread-usage' }),
    permissions: h('div', { id: 'thread-permissions', class: 'thread-permissions', 'aria-live': 'polite' }),
    thread: h('div', { id: 'thread', class: 'thread' }),
  };
  els.panel = h('section', { id: 'thread-panel', class: 'thread-panel', 'aria-labelledby': 'thread-title' },
    h('div', { class: 'thread-head' }, els.title, els.status, els.usage),
    els.permissions, els.thread, els.plan, els.form);
  els.root = h('div', { class: 'impl' },
    els.progress,
    h('section', { class: 'impl-graph-section', 'aria-labelledby': 'graph-heading' },
      h('h2', { id: 'graph-heading' }, 'Plan'),
      h('p', { class: 'graph-legend meta' },
        h('span', { class: 'legend-edge' }, '→ waits for (arrow points to the waiting session)'), ' · ',
        h('span', { class: 'legend-spawn' }, '⇢ dashed: spawned by'), ' · ', 'select a node to see its thread'),
      graphWrap),
    // The thread comes first (on a phone it shows without scrolling past every card); on a
    // wide screen the cards sit to its left.
    h('div', { class: 'impl-columns' },
      els.panel,
      h('section', { class: 'ws-section', 'aria-labelledby': 'ws-heading' },
        h('h2', { id: 'ws-heading' }, 'Work sessions'), els.list)));
  return els;
}
