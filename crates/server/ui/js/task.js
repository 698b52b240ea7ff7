// A task's page: its header (name, status, prompt, actions) and one of three views, each a
// module with `mount(container, ctx)`: spec review (`spec.js`), implementation
// (`implementation.js`) and review (`review.js`). Each view has its own URL
// (`/tasks/{id}/spec`…); `/tasks/{id}` picks the view the task's status calls for.

import * as api from './api.js';
import { h, replace, label, timeAgo, statusChip } from './dom.js';
import { boot, attempt, toast } from './shell.js';
import { subscribe } from './live.js';

const VIEWS = [
  { id: 'spec', title: 'Spec' },
  { id: 'implementation', title: 'Implementation' },
  { id: 'review', title: 'Review' },
];

/** The view a task's status calls for. */
export function defaultView(status) {
  if (['spec_approved', 'implementation_queued', 'implementation', 'implementation_failed'].includes(status)) return 'implementation';
  if (['implementation_review', 'done'].includes(status)) return 'review';
  return 'spec';
}

const main = document.getElementById('main');
const taskId = boot.task_id;
const listeners = new Set();
let task = null;
let header = null;

function actions() {
  const buttons = [];
  if (task.status === 'backlog' || task.status === 'spec_failed') {
    buttons.push(h('button', {
      type: 'button', class: 'primary', onclick: async () => {
        const updated = await attempt(() => api.post(`/spec-tasks/${taskId}/start-planning`), 'Planning started');
        if (updated) setTask(updated);
      },
    }, task.status === 'backlog' ? 'Start planning' : 'Plan again'));
  }
  buttons.push(h('button', {
    type: 'button', onclick: async () => {
      const updated = await attempt(() => api.post(`/spec-tasks/${taskId}/${task.archived ? 'unarchive' : 'archive'}`),
        task.archived ? 'Unarchived' : 'Archived');
      if (updated) setTask(updated);
    },
  }, task.archived ? 'Unarchive' : 'Archive'));
  return buttons;
}

function renderHeader() {
  const fresh = h('header', { class: 'task-head' },
    h('p', { class: 'crumbs' }, h('a', { href: '/' }, 'Board'), ' / ', h('span', {}, taskId)),
    h('div', { class: 'page-head' },
      h('h1', { id: 'task-name' }, task.name),
      h('div', { class: 'actions' }, actions())),
    h('p', { class: 'meta' },
      statusChip(task.status), ' ',
      task.archived ? h('span', { class: 'chip' }, 'archived') : null, ' ',
      h('span', { class: 'chip' }, task.type), ' ',
      h('span', { class: `chip priority-${task.priority}` }, task.priority), ' · ',
      task.project_path ? h('code', { title: 'Project path' }, task.project_path) : 'no project', ' · ',
      task.branch_name ? [h('code', { title: 'Task branch' }, task.branch_name), ' · '] : null,
      'updated ', timeAgo(task.updated_at)),
    task.error ? h('p', { class: 'error-box', role: 'alert' }, task.error) : null,
    h('details', { class: 'prompt' }, h('summary', {}, 'Prompt'), h('p', { class: 'prose' }, task.original_prompt)),
    h('nav', { class: 'tabs', 'aria-label': 'Task views' }, VIEWS.map((view) => h('a', {
      href: `/tasks/${taskId}/${view.id}`,
      'aria-current': view.id === currentView() ? 'page' : null,
    }, view.title))));
  if (header) header.replaceWith(fresh); else main.prepend(fresh);
  header = fresh;
  document.title = `${task.name} · spectask`;
}

function currentView() {
  return boot.view || defaultView(task.status);
}

function setTask(updated) {
  const before = task;
  task = updated;
  renderHeader();
  for (const fn of listeners) fn(task, before);
}

/** What a view gets: the task, the live stream of this task, and ways to refresh. */
function context() {
  return {
    taskId,
    get task() { return task; },
    /** Calls `fn(task, before)` whenever the task changes. */
    onTask(fn) { listeners.add(fn); },
    /** The task's events, live. */
    subscribe(fn) { return subscribe(taskId, fn); },
    async refreshTask() { setTask(await api.get(`/spec-tasks/${taskId}`)); return task; },
    setTask,
  };
}

async function init() {
  task = await api.get(`/spec-tasks/${taskId}`);
  replace(main);
  renderHeader();
  const view = currentView();
  const container = h('section', { class: 'view', id: `view-${view}`, 'aria-label': `${VIEWS.find((v) => v.id === view).title} view` });
  main.append(container);
  subscribe(taskId, (event) => {
    if (event.kind.startsWith('spec_task.')) {
      api.get(`/spec-tasks/${taskId}`).then(setTask).catch((err) => {
        if (err.status === 404) toast('This task was deleted.', 'error');
      });
    }
  });
  const module = await import(`./${view}.js`);
  await module.mount(container, context());
  document.body.dataset.ready = 'true';
}

init().catch((err) => {
  replace(main, h('p', { class: 'error-box', role: 'alert' }, err.message));
  toast(err.message, 'error');
});

export { label };
