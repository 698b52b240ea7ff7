// One work session's thread, live: every interaction (turn) of its Helix session in order, each
// with its prompt (folded) and its entries: agent text (line breaks kept), thoughts folded in
// <details>, tool calls (title, kind, status chip, locations; input and output folded). The
// agent's latest plan and context usage are handed to the caller (`onPlan`, `onUsage`).
//
// Built for long threads: entries become one HTML string (every text through esc()) set once;
// only the last WINDOW items are drawn first, with a "show earlier" button drawing STEP more; new
// entries are fetched after the last seq already read (`after_seq`) and appended; a tool call's
// update replaces its one element. The scroll box follows the bottom while the reader is there.
//
// Performance marks (for tests): `thread-open`, `thread-loaded` (entries read) and
// `thread-rendered` (drawn) on every open.
//
// Stable ids: #thread-entries (the scroll box), #thread-show-earlier, #thread-show-all, [data-interaction-id]
// (one per turn, with data-state), [data-tool-call-id] (with data-tool-status).

import * as api from './api.js';
import { esc, label } from './dom.js';

/** How many items are drawn before "show earlier". */
export const WINDOW = 400;
/** How many more items each "show earlier" draws. */
const STEP = 2000;
const PAGE = 5000;

/** An interaction's items from its entries: consecutive texts merged, one item per tool call. */
export function newModel(interaction) {
  return { interaction, items: [], tools: new Map(), lastSeq: -1, plan: null, usage: null };
}

/** Applies entries (in seq order) to a model; returns the indices appended and changed. */
export function applyEntries(model, entries) {
  const first = model.items.length;
  const changed = new Set();
  for (const entry of entries) {
    if (entry.seq <= model.lastSeq) continue;
    model.lastSeq = entry.seq;
    const payload = entry.payload || {};
    if (entry.kind === 'message' || entry.kind === 'thought') {
      const last = model.items[model.items.length - 1];
      if (last && last.kind === entry.kind) {
        last.text += payload.text || '';
        if (model.items.length - 1 < first) changed.add(model.items.length - 1);
      } else {
        model.items.push({ kind: entry.kind, text: payload.text || '' });
      }
    } else if (entry.kind === 'tool_call') {
      const index = model.tools.get(payload.tool_call_id);
      if (index === undefined) {
        model.tools.set(payload.tool_call_id, model.items.length);
        model.items.push({ kind: 'tool', call: payload });
      } else {
        model.items[index].call = payload;
        if (index < first) changed.add(index);
      }
    } else if (entry.kind === 'plan') {
      model.plan = payload.entries || [];
    } else if (entry.kind === 'usage') {
      model.usage = payload;
    }
  }
  const appended = [];
  for (let i = first; i < model.items.length; i += 1) appended.push(i);
  return { appended, changed };
}

const itemId = (model, index) => `ti-${model.interaction.id}-${index}`;

function summaryOf(text, max = 90) {
  const line = String(text || '').trim().split('\n', 1)[0];
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}

function json(value) {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  try { return JSON.stringify(value, null, 2); } catch { return String(value); }
}

function toolHtml(call, shorten) {
  const status = call.status || 'pending';
  const locations = (call.locations || []).map((loc) =>
    `<li><code title="${esc(loc.path)}">${esc(shorten(loc.path))}${loc.line != null ? ':' + esc(loc.line) : ''}</code></li>`).join('');
  const input = call.raw_input !== undefined && call.raw_input !== null
    ? `<h4>Input${call.raw_input_truncated ? ' (cut)' : ''}</h4><pre>${esc(json(call.raw_input))}</pre>` : '';
  const output = (call.content || []).map((item) => {
    if (item.type === 'diff') {
      return `<h4>New text of <code>${esc(shorten(item.path))}</code>${item.truncated ? ' (cut)' : ''}</h4><pre>${esc(item.new_text)}</pre>`;
    }
    if (item.type === 'terminal') return `<p class="meta">Terminal <code>${esc(item.terminal_id)}</code></p>`;
    return `<h4>Output${item.truncated ? ' (cut)' : ''}</h4><pre>${esc(item.text)}</pre>`;
  }).join('');
  return `<details><summary><span class="tool-title">${esc(shorten(call.title || call.tool_call_id))}</span> `
    + `<span class="chip tool-kind">${esc(label(call.kind || 'other'))}</span> `
    + `<span class="chip tool-status tool-status-${esc(status)}">${esc(label(status))}</span></summary>`
    + `<div class="tool-body">${input}${output || '<p class="meta">No output yet.</p>'}</div></details>`
    + (locations ? `<ul class="tool-locations" aria-label="Files">${locations}</ul>` : '');
}

const same = (text) => text;

/** One item as an `<li>` string; `shorten` rewrites paths for display. */
export function itemHtml(model, index, shorten = same) {
  const item = model.items[index];
  const id = itemId(model, index);
  if (item.kind === 'message') {
    return `<li class="entry entry-message" id="${id}"><div class="prose">${esc(item.text)}</div></li>`;
  }
  if (item.kind === 'thought') {
    return `<li class="entry entry-thought" id="${id}"><details><summary>Thought: ${esc(summaryOf(item.text, 70))}</summary>`
      + `<div class="prose">${esc(item.text)}</div></details></li>`;
  }
  const call = item.call;
  return `<li class="entry entry-tool" id="${id}" data-tool-call-id="${esc(call.tool_call_id)}" `
    + `data-tool-status="${esc(call.status || 'pending')}">${toolHtml(call, shorten)}</li>`;
}

function headHtml(model, number) {
  const { interaction } = model;
  const error = interaction.error ? `<p class="error-box" role="alert">${esc(interaction.error)}</p>` : '';
  return `<details class="turn-prompt"><summary><span class="turn-number">Turn ${number}</span> `
    + `<span class="chip turn-state turn-state-${esc(interaction.state)}">${esc(stateLabel(interaction.state))}</span> `
    + `<span class="meta">${esc(summaryOf(interaction.prompt_message))}</span></summary>`
    + `<div class="prose">${esc(interaction.prompt_message)}</div></details>${error}`;
}

function stateLabel(state) {
  return { waiting: 'working', complete: 'complete', error: 'error', interrupted: 'interrupted' }[state] || state;
}

/**
 * A live thread in `root`. `onPlan(entries|null)` and `onUsage(usage|null)` get the agent's
 * latest plan and context usage whenever they change; `shorten(path)` shortens the paths shown.
 */
export class Thread {
  constructor(root, { onPlan = () => {}, onUsage = () => {}, shorten = same } = {}) {
    this.root = root;
    this.shorten = shorten;
    this.onPlan = onPlan;
    this.onUsage = onUsage;
    this.session = null;
    this.models = new Map();
    this.window = WINDOW;
    this.dirty = new Set();
    this.refreshSession = false;
    this.syncing = null;
    this.timer = null;
    this.closed = false;
    this.needsRender = false;
  }

  /** Loads the Helix session `sessionId` and every entry, then draws it. */
  async open(sessionId) {
    this.sessionId = sessionId;
    performance.mark('thread-open');
    this.root.replaceChildren();
    this.root.insertAdjacentHTML('beforeend', '<p class="loading">Loading the thread…</p>');
    await this.loadSession();
    await Promise.all([...this.models.values()].map((model) => this.fetchEntries(model)));
    if (this.closed) return;
    performance.mark('thread-loaded');
    this.render();
    this.scrollToBottom();
    performance.mark('thread-rendered');
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
  }

  async loadSession() {
    const session = await api.get(`/sessions/${this.sessionId}`);
    if (this.closed) return [];
    this.session = session;
    const fresh = [];
    for (const interaction of session.interactions) {
      const model = this.models.get(interaction.id);
      if (model) {
        // Fewer entries than read: a retried attempt cleared them.
        const current = interaction.entry_count <= model.lastSeq ? this.reset(model) : model;
        current.interaction = interaction;
      } else {
        const created = newModel(interaction);
        this.models.set(interaction.id, created);
        fresh.push(created);
      }
    }
    return fresh;
  }

  reset(model) {
    this.needsRender = true;
    this.dirty.add(model.interaction.id);
    const again = newModel(model.interaction);
    this.models.set(model.interaction.id, again);
    return again;
  }

  /** Reads a model's entries after its last seq; returns what changed. */
  async fetchEntries(model) {
    const result = { appended: [], changed: new Set() };
    for (;;) {
      const after = model.lastSeq >= 0 ? `&after_seq=${model.lastSeq}` : '';
      const page = await api.get(`/sessions/${this.sessionId}/interactions/${model.interaction.id}/entries?limit=${PAGE}${after}`);
      const { appended, changed } = applyEntries(model, page.entries);
      result.appended.push(...appended);
      for (const index of changed) result.changed.add(index);
      if (page.entries.length < PAGE) return result;
    }
  }

  /** Feeds one event of the task; the thread refreshes what it concerns, debounced. */
  onEvent(event) {
    if (event.kind === 'interaction.updated') {
      if (event.payload?.session_id !== this.sessionId) return;
      const model = this.models.get(event.entity_id);
      if (!model) this.refreshSession = true;
      else if (event.payload.reset) this.reset(model);
      else this.dirty.add(event.entity_id);
    } else if (event.kind.startsWith('turn.') || event.kind === 'interaction.created'
      || event.kind === 'work_session.status_changed') {
      this.refreshSession = true;
    } else {
      return;
    }
    this.schedule();
  }

  schedule() {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => { this.timer = null; this.sync(); }, 150);
  }

  async sync() {
    if (this.syncing) { this.schedule(); return; }
    this.syncing = (async () => {
      try {
        let rerender = this.needsRender;
        this.needsRender = false;
        if (this.refreshSession) {
          this.refreshSession = false;
          const fresh = await this.loadSession();
          for (const model of fresh) this.dirty.add(model.interaction.id);
          rerender = rerender || fresh.length > 0;
        }
        const updates = [];
        for (const id of [...this.dirty]) {
          this.dirty.delete(id);
          const model = this.models.get(id);
          if (!model) continue;
          updates.push([model, await this.fetchEntries(model)]);
        }
        if (this.closed) return;
        if (rerender) { this.render(); this.followIfAtBottom(true); return; }
        this.followIfAtBottom(false, () => {
          this.updateHeads();
          for (const [model, result] of updates) this.patch(model, result);
        });
        this.reportSide();
      } catch (err) {
        console.warn('thread sync failed', err);
      } finally {
        this.syncing = null;
      }
    })();
  }

  /** Runs `change` keeping the box at the bottom when it was there. */
  followIfAtBottom(wasRendered, change = () => {}) {
    const box = this.root.querySelector('#thread-entries');
    const atBottom = !box || wasRendered || box.scrollHeight - box.scrollTop - box.clientHeight < 48;
    change();
    if (atBottom) this.scrollToBottom();
  }

  scrollToBottom() {
    const box = this.root.querySelector('#thread-entries');
    if (box) box.scrollTop = box.scrollHeight;
  }

  /** Every interaction in order, the last `this.window` items drawn. */
  render() {
    const models = this.session ? this.session.interactions.map((i) => this.models.get(i.id)).filter(Boolean) : [];
    const total = models.reduce((sum, m) => sum + m.items.length, 0);
    let skip = Math.max(0, total - this.window);
    const hidden = skip;
    const parts = [];
    if (hidden) {
      const next = Math.min(hidden, STEP);
      parts.push(`<p class="show-earlier"><button type="button" class="link" id="thread-show-earlier">Show ${next} earlier entr${next === 1 ? 'y' : 'ies'}</button>`
        + (hidden > next ? ` · <button type="button" class="link" id="thread-show-all">Show all ${hidden}</button>` : '')
        + ` <span class="meta">(${hidden} hidden)</span></p>`);
    }
    models.forEach((model, n) => {
      const from = Math.min(skip, model.items.length);
      skip -= from;
      model.from = from;
      const items = [];
      for (let i = from; i < model.items.length; i += 1) items.push(itemHtml(model, i, this.shorten));
      parts.push(`<section class="turn" data-interaction-id="${esc(model.interaction.id)}" data-state="${esc(model.interaction.state)}">`
        + `<div class="turn-head">${headHtml(model, n + 1)}</div>`
        + (from ? `<p class="meta">${from} earlier entries of this turn are hidden.</p>` : '')
        + `<ol class="entries">${items.join('')}</ol>`
        + (model.items.length === 0 ? `<p class="empty turn-empty">${model.interaction.state === 'waiting' ? 'Waiting for the agent…' : 'No entries.'}</p>` : '')
        + '</section>');
    });
    if (!models.length) parts.push('<p class="empty">This session has no turns yet.</p>');
    const box = document.createElement('div');
    box.id = 'thread-entries';
    box.className = 'thread-entries';
    box.tabIndex = 0;
    box.setAttribute('role', 'log');
    box.setAttribute('aria-label', 'Thread');
    box.innerHTML = parts.join('');
    const showMore = (more) => () => {
      this.window += more;
      const before = box.scrollHeight - box.scrollTop;
      this.render();
      const fresh = this.root.querySelector('#thread-entries');
      fresh.scrollTop = fresh.scrollHeight - before;
      fresh.focus();
    };
    box.querySelector('#thread-show-earlier')?.addEventListener('click', showMore(STEP));
    // One render of everything: cheaper than stepping there, each step re-rendering all shown.
    box.querySelector('#thread-show-all')?.addEventListener('click', showMore(total));
    this.root.replaceChildren(box);
    this.reportSide();
  }

  updateHeads() {
    this.session.interactions.forEach((interaction, n) => {
      const section = this.root.querySelector(`[data-interaction-id="${interaction.id}"]`);
      if (!section || section.dataset.state === interaction.state) return;
      section.dataset.state = interaction.state;
      const head = section.querySelector('.turn-head');
      const open = head.querySelector('details')?.open;
      head.innerHTML = headHtml(this.models.get(interaction.id), n + 1);
      if (open) head.querySelector('details').open = true;
      if (interaction.state !== 'waiting') section.querySelector('.turn-empty')?.replaceChildren('No entries.');
    });
  }

  /** Draws one model's new and changed items in place. */
  patch(model, { appended, changed }) {
    const section = this.root.querySelector(`[data-interaction-id="${model.interaction.id}"]`);
    if (!section) { this.render(); return; }
    const list = section.querySelector('.entries');
    for (const index of changed) {
      const el = document.getElementById(itemId(model, index));
      if (!el) continue;
      const open = [...el.querySelectorAll('details')].map((d) => d.open);
      el.outerHTML = itemHtml(model, index, this.shorten);
      const fresh = document.getElementById(itemId(model, index));
      fresh?.querySelectorAll('details').forEach((d, i) => { d.open = open[i] || false; });
    }
    if (appended.length) {
      section.querySelector('.turn-empty')?.remove();
      list.insertAdjacentHTML('beforeend', appended.map((i) => itemHtml(model, i, this.shorten)).join(''));
    }
  }

  /** The latest plan and usage over the turns, to the caller. */
  reportSide() {
    if (!this.session) return;
    let plan = null;
    let usage = null;
    for (const interaction of this.session.interactions) {
      const model = this.models.get(interaction.id);
      if (model?.plan) plan = model.plan;
      if (model?.usage) usage = model.usage;
    }
    this.onPlan(plan);
    this.onUsage(usage);
  }

  /** Every path the thread's tool calls touched (for the review's shared-mode fallback). */
  touchedPaths() {
    const paths = new Set();
    for (const model of this.models.values()) {
      for (const item of model.items) {
        if (item.kind !== 'tool' || item.call.kind === 'read' || item.call.kind === 'search') continue;
        for (const loc of item.call.locations || []) paths.add(loc.path);
        for (const content of item.call.content || []) if (content.type === 'diff') paths.add(content.path);
      }
    }
    return [...paths].sort();
  }
}
