// What every page shares: the boot data, toasts, the permission badge and panel (pending
// permission requests of every task, answered in place), and signing out.

import * as api from './api.js';
import { h, replace, label, timeAgo } from './dom.js';

export const boot = JSON.parse(document.getElementById('boot')?.textContent || '{}');

/** A short message in the corner; `kind` is `info`, `ok` or `error`. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const item = h('div', { class: `toast toast-${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 9000 : 4000);
}

/** Runs an action, reporting its failure as a toast; returns its result or undefined. */
export async function attempt(action, success) {
  try {
    const result = await action();
    if (success) toast(success, 'ok');
    return result;
  } catch (err) {
    toast(err.message || String(err), 'error');
    return undefined;
  }
}

const permissions = { pending: [], open: false };

/** The pending permission requests, refreshed from the API. */
export async function refreshPermissions() {
  try {
    const list = await api.get('/permission-requests?status=pending');
    permissions.pending = list.permission_requests;
  } catch (err) {
    if (err.status !== 401) console.warn('permission requests unavailable', err);
    return;
  }
  renderPermissions();
  document.dispatchEvent(new CustomEvent('permissions-changed', { detail: permissions.pending }));
}

/** The card of one permission request, with a button per option; used by the panel and pages. */
export function permissionCard(request) {
  const what = [];
  if (request.command) what.push(h('pre', { class: 'command' }, request.command));
  if (request.locations?.length) {
    what.push(h('ul', { class: 'paths' }, request.locations.map((path) => h('li', {}, h('code', {}, path)))));
  }
  if (!request.command && request.raw_input) {
    what.push(h('details', {}, h('summary', {}, 'Input'),
      h('pre', {}, JSON.stringify(request.raw_input, null, 2))));
  }
  const buttons = request.options.map((option) => h('button', {
    type: 'button',
    class: option.kind?.startsWith('allow') ? 'primary' : '',
    onclick: async (event) => {
      event.target.disabled = true;
      const done = await attempt(() => api.post(
        `/spec-tasks/${request.spec_task_id}/permission-requests/${request.id}`,
        { option_id: option.option_id }), `Answered: ${option.name}`);
      if (!done) event.target.disabled = false;
      refreshPermissions();
    },
  }, option.name));
  return h('article', { class: 'permission', dataset: { requestId: request.id } },
    h('h3', {}, request.title),
    h('p', { class: 'meta' },
      request.tool_kind ? h('span', { class: 'chip' }, label(request.tool_kind)) : null, ' ',
      h('a', { href: `/tasks/${request.spec_task_id}/implementation` + (request.work_session_id ? `#ws-${request.work_session_id}` : '') },
        request.work_session_id ? 'work session' : 'planning'), ' · asked ', timeAgo(request.created_at)),
    what,
    h('div', { class: 'actions', role: 'group', 'aria-label': 'Answer' }, buttons));
}

function renderPermissions() {
  const count = document.getElementById('permissions-count');
  const button = document.getElementById('permissions-button');
  if (!count || !button) return;
  const n = permissions.pending.length;
  count.textContent = String(n);
  count.setAttribute('aria-label', `${n} pending`);
  button.classList.toggle('attention', n > 0);
  const list = document.getElementById('permissions-list');
  replace(list, n === 0 ? h('p', { class: 'empty' }, 'No agent is waiting for an answer.')
    : permissions.pending.map(permissionCard));
}

function setPanel(open) {
  const panel = document.getElementById('permissions-panel');
  const button = document.getElementById('permissions-button');
  if (!panel || !button) return;
  permissions.open = open;
  panel.hidden = !open;
  button.setAttribute('aria-expanded', String(open));
  if (open) panel.querySelector('button, a')?.focus();
  else button.focus();
}

async function signOut() {
  await api.post('/ui/logout').catch(() => null);
  location.assign('/login');
}

function init() {
  if (boot.page === 'login') return;
  document.getElementById('permissions-button')?.addEventListener('click', () => setPanel(!permissions.open));
  document.getElementById('permissions-close')?.addEventListener('click', () => setPanel(false));
  document.getElementById('logout-button')?.addEventListener('click', signOut);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && permissions.open) setPanel(false);
  });
  if (boot.page === 'not_found') return;
  refreshPermissions();
  import('./live.js').then(({ subscribe }) => subscribe(null, (event) => {
    if (event.kind.startsWith('permission.')) refreshPermissions();
  }));
}

init();
