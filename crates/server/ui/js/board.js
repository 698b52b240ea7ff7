// The board: every SpecTask in a column by status group, kept current from the event stream;
// search and filters live in the URL (shareable, back button); create from a prompt; archive.

import * as api from './api.js';
import { h, replace, timeAgo, label, debounce } from './dom.js';
import { attempt, toast } from './shell.js';
import { subscribe } from './live.js';

export const COLUMNS = [
  { id: 'backlog', title: 'Backlog', statuses: ['backlog'] },
  { id: 'planning', title: 'Planning', statuses: ['spec_generation', 'spec_revision'] },
  { id: 'spec_review', title: 'Spec review', statuses: ['spec_review'] },
  { id: 'implementing', title: 'Implementing', statuses: ['spec_approved', 'implementation_queued', 'implementation'] },
  { id: 'implementation_review', title: 'Implementation review', statuses: ['implementation_review'] },
  { id: 'done', title: 'Done', statuses: ['done'] },
  { id: 'failed', title: 'Failed', statuses: ['spec_failed', 'implementation_failed'] },
];

const columnOf = (status) => COLUMNS.find((column) => column.statuses.includes(status))?.id ?? 'backlog';
const tasks = new Map();
const main = document.getElementById('main');
let filters = readFilters();
let profiles = { agents: [], planners: [], default_agent: null };

function readFilters() {
  const params = new URLSearchParams(location.search);
  return {
    q: params.get('q') || '',
    type: params.get('type') || '',
    priority: params.get('priority') || '',
    archived: params.get('archived') || 'false',
  };
}

function matches(task) {
  if (filters.type && task.type !== filters.type) return false;
  if (filters.priority && task.priority !== filters.priority) return false;
  if (filters.archived === 'false' && task.archived) return false;
  if (filters.archived === 'true' && !task.archived) return false;
  if (filters.q) {
    const q = filters.q.toLowerCase();
    if (!task.name.toLowerCase().includes(q) && !task.original_prompt.toLowerCase().includes(q)) return false;
  }
  return true;
}

function card(task) {
  const archive = h('button', {
    type: 'button', class: 'link small',
    'aria-label': `${task.archived ? 'Unarchive' : 'Archive'} ${task.name}`,
    onclick: async () => {
      const updated = await attempt(() => api.post(`/spec-tasks/${task.id}/${task.archived ? 'unarchive' : 'archive'}`),
        task.archived ? 'Unarchived' : 'Archived');
      if (updated) upsert(updated);
    },
  }, task.archived ? 'Unarchive' : 'Archive');
  return h('li', { class: 'card', id: `card-${task.id}`, dataset: { status: task.status } },
    h('a', { class: 'card-title', href: `/tasks/${task.id}` }, task.name),
    h('div', { class: 'card-meta' },
      h('span', { class: `chip status status-${task.status}` }, label(task.status)),
      h('span', { class: 'chip' }, task.type),
      task.priority !== 'medium' ? h('span', { class: `chip priority-${task.priority}` }, task.priority) : null),
    task.error ? h('p', { class: 'card-error' }, task.error) : null,
    h('div', { class: 'card-foot' }, timeAgo(task.updated_at), archive));
}

function renderBoard() {
  const board = document.getElementById('board');
  const byColumn = new Map(COLUMNS.map((column) => [column.id, []]));
  for (const task of tasks.values()) if (matches(task)) byColumn.get(columnOf(task.status)).push(task);
  const sections = COLUMNS.map((column) => {
    const items = byColumn.get(column.id).sort((a, b) => b.updated_at.localeCompare(a.updated_at));
    const list = h('ol', { class: 'cards' });
    const fragment = document.createDocumentFragment();
    for (const task of items) fragment.append(card(task));
    list.append(fragment);
    return h('section', { class: 'column', id: `column-${column.id}`, 'aria-labelledby': `heading-${column.id}` },
      h('h2', { id: `heading-${column.id}` }, column.title, ' ', h('span', { class: 'count' }, String(items.length))),
      items.length ? list : h('p', { class: 'empty' }, 'Nothing here.'));
  });
  replace(board, sections);
}

function upsert(task) {
  tasks.set(task.id, task);
  renderSoon();
}
const renderSoon = debounce(renderBoard, 50);

async function load() {
  const archived = filters.archived;
  const { items } = await api.getAll('/spec-tasks' + api.query({ archived, q: filters.q, type: filters.type, priority: filters.priority }), 'spec_tasks');
  tasks.clear();
  for (const task of items) tasks.set(task.id, task);
  renderBoard();
}

function select(name, text, options, value) {
  return h('label', {}, text,
    h('select', { name }, options.map(([v, t]) => h('option', { value: v, selected: v === value }, t))));
}

function filterBar() {
  const form = h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
    h('label', {}, 'Search', h('input', { type: 'search', name: 'q', value: filters.q, placeholder: 'Name or prompt' })),
    select('type', 'Type', [['', 'Any'], ...['feature', 'bug', 'refactor', 'chore', 'docs', 'test'].map((t) => [t, t])], filters.type),
    select('priority', 'Priority', [['', 'Any'], ...['low', 'medium', 'high', 'critical'].map((p) => [p, p])], filters.priority),
    select('archived', 'Show', [['false', 'Live'], ['true', 'Archived'], ['all', 'All']], filters.archived));
  const apply = () => {
    const data = new FormData(form);
    filters = { q: data.get('q').trim(), type: data.get('type'), priority: data.get('priority'), archived: data.get('archived') };
    const params = new URLSearchParams(Object.entries(filters).filter(([k, v]) => v && !(k === 'archived' && v === 'false')));
    const url = location.pathname + (params.toString() ? '?' + params : '');
    if (url !== location.pathname + location.search) history.pushState(null, '', url);
    load().catch((err) => toast(err.message, 'error'));
  };
  form.addEventListener('input', debounce(apply, 250));
  form.addEventListener('change', apply);
  return form;
}

function createDialog() {
  const error = h('p', { class: 'form-error', id: 'create-error', role: 'alert' });
  const pathHelp = h('p', { class: 'help', id: 'project-path-help' }, 'An absolute path to an existing directory; a git repository gets a branch per task.');
  const agentOptions = [['', profiles.default_agent ? `Default (${profiles.default_agent})` : 'Default'],
    ...profiles.agents.map((agent) => [agent.name, agent.name + (agent.available === false ? ' (not found)' : '')])];
  const plannerOptions = [['', 'Default planner'],
    ...profiles.planners.map((planner) => [planner.name, `${planner.name} (planner)`]),
    ...profiles.agents.map((agent) => [agent.name, `${agent.name} (agent)`])];
  const form = h('form', { method: 'dialog', class: 'stack' },
    h('h2', { id: 'create-title' }, 'New task'),
    h('label', {}, 'What should be built?', h('textarea', { name: 'prompt', rows: 6, required: true, maxlength: 262144 })),
    h('label', {}, 'Project path', h('input', { name: 'project_path', type: 'text', 'aria-describedby': 'project-path-help', placeholder: '/home/me/project', autocomplete: 'off' })),
    pathHelp,
    h('div', { class: 'row' },
      select('spec_agent', 'Planner', plannerOptions, ''),
      select('implementation_agent', 'Agent', agentOptions, ''),
      select('type', 'Type', ['feature', 'bug', 'refactor', 'chore', 'docs', 'test'].map((t) => [t, t]), 'feature'),
      select('priority', 'Priority', ['low', 'medium', 'high', 'critical'].map((p) => [p, p]), 'medium')),
    error,
    h('div', { class: 'actions' },
      h('button', { type: 'button', value: 'cancel', onclick: () => dialog.close() }, 'Cancel'),
      h('button', { type: 'submit', class: 'primary', value: 'create' }, 'Create and plan')));
  const dialog = h('dialog', { id: 'create-dialog', 'aria-labelledby': 'create-title' }, form);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { prompt: data.get('prompt'), type: data.get('type'), priority: data.get('priority') };
    for (const key of ['project_path', 'spec_agent', 'implementation_agent']) {
      const value = String(data.get(key) || '').trim();
      if (value) body[key] = value;
    }
    error.textContent = '';
    form.querySelector('[name=project_path]').removeAttribute('aria-invalid');
    try {
      const task = await api.post('/spec-tasks/from-prompt', body);
      dialog.close();
      location.assign(`/tasks/${task.id}`);
    } catch (err) {
      error.textContent = err.message;
      if (err.code === 'invalid_project_path') {
        const input = form.querySelector('[name=project_path]');
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
    }
  });
  return dialog;
}

async function init() {
  document.title = 'Board · spectask';
  profiles = await api.get('/agents').catch(() => profiles);
  const dialog = createDialog();
  replace(main,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Board'),
      h('button', { type: 'button', class: 'primary', id: 'new-task', onclick: () => { dialog.showModal(); dialog.querySelector('textarea').focus(); } }, 'New task')),
    filterBar(),
    h('div', { class: 'board', id: 'board', 'aria-live': 'off' }),
    dialog);
  window.addEventListener('popstate', () => {
    filters = readFilters();
    main.querySelector('.filters').replaceWith(filterBar());
    load();
  });
  subscribe(null, async (event) => {
    if (!event.spec_task_id || !event.kind.startsWith('spec_task.')) return;
    if (event.kind === 'spec_task.deleted') { tasks.delete(event.spec_task_id); renderSoon(); return; }
    try { upsert(await api.get(`/spec-tasks/${event.spec_task_id}`)); } catch (err) {
      if (err.status === 404) { tasks.delete(event.spec_task_id); renderSoon(); }
    }
  });
  await load();
  document.body.dataset.ready = 'true';
}

init().catch((err) => toast(err.message, 'error'));
