// The task's review view: `mount(container, ctx)` renders it (see task.js for ctx).
//
// What it shows: first the traceability matrix (trace.js): each acceptance criterion with its
// tasks, their commits and latest check runs, and its coverage. Then the task's diff (the task
// branch against where it started), or one work session's own changes picked in a selector
// (diff.js); without git isolation (the diff API answers `no_branch`) the files each agent
// touched, from its tool calls, and a note saying so. Then the review gate: Approve, with what
// to do with the task branch (leave it, fast-forward or merge-commit it into the branch the task
// started from), or Request changes with a comment (optionally only for some sessions). Both are
// enabled only in `implementation_review`; a refusal (e.g. `dirty_worktree`, `merge_conflict`
// with its files) is shown in the page.
//
// Stable ids: #trace-matrix, #trace-coverage, #trace-warnings (trace.js), #task-diff (the diff
// area, data-source = "task" | a work session id | "touched"), #session-diff-select,
// #diff-fallback (shared mode), #review-gate, #review-state, #merge-mode, #merge-mode-help,
// #approve-implementation, #request-changes-comment, #reopen-<session id> (checkboxes),
// #request-changes-implementation, #review-error.

import * as api from './api.js';
import { h, replace, label } from './dom.js';
import { toast } from './shell.js';
import { showDiff, touchedFiles } from './diff.js';
import { sessionTitle } from './graph.js';
import { renderMatrix } from './trace.js';

const MERGE_MODES = [
  { value: 'none', title: 'Leave the branch (no merge)', help: 'Marks the task done and leaves its branch as it is, for a pull request or a merge by hand.' },
  { value: 'fast_forward', title: 'Fast-forward the base branch', help: 'Moves the branch the task started from to the task branch. Refused when the base branch has moved on since (not_fast_forward).' },
  { value: 'merge_commit', title: 'Merge with a merge commit', help: 'Merges the task branch into the branch the task started from with a merge commit. Refused on a conflict (the files are listed).' },
];

export async function mount(container, ctx) {
  let sessions = [];
  const select = h('select', { id: 'session-diff-select', name: 'source' });
  const diffBox = h('div', { id: 'task-diff', class: 'task-diff', 'aria-live': 'polite', 'aria-busy': 'true' },
    h('p', { class: 'loading' }, 'Loading the diff…'));
  const gate = gateForm(ctx, () => sessions);
  const traceBox = h('div', { class: 'trace-box', 'aria-live': 'polite' },
    h('p', { class: 'loading' }, 'Loading the acceptance criteria…'));

  replace(container, h('div', { class: 'review' },
    h('section', { class: 'review-trace', 'aria-labelledby': 'trace-heading' },
      h('h2', { id: 'trace-heading' }, 'Acceptance criteria'),
      traceBox),
    h('section', { class: 'review-diff', 'aria-labelledby': 'diff-heading' },
      h('div', { class: 'page-head' },
        h('h2', { id: 'diff-heading' }, 'Changes'),
        h('label', { class: 'inline-label' }, 'Show the changes of', select)),
      diffBox),
    gate.root));

  async function loadTrace() {
    try {
      await renderMatrix(traceBox, ctx.taskId);
    } catch (err) {
      replace(traceBox, h('p', { class: 'error-box', role: 'alert' }, `${err.message} (${err.code})`));
    }
  }

  async function loadSessions() {
    const list = await api.get(`/spec-tasks/${ctx.taskId}/work-sessions?phase=implementation`);
    sessions = list.work_sessions;
    const current = select.value || 'task';
    replace(select, h('option', { value: 'task' }, 'The whole task'),
      sessions.map((ws) => h('option', { value: ws.id }, `${sessionTitle(ws)} (${label(ws.status)})`)));
    select.value = sessions.some((ws) => ws.id === current) ? current : 'task';
    gate.drawSessions();
  }

  let loading = 0;
  async function loadDiff() {
    const source = select.value || 'task';
    const ticket = ++loading;
    diffBox.dataset.source = source;
    diffBox.setAttribute('aria-busy', 'true');
    const path = source === 'task' ? `/spec-tasks/${ctx.taskId}/diff` : `/work-sessions/${source}/diff`;
    try {
      await showDiff(diffBox, path);
    } catch (err) {
      if (ticket !== loading) return;
      if (err.code === 'no_branch') await fallback(source, err);
      else replace(diffBox, h('p', { class: 'error-box', role: 'alert' }, `${err.message} (${err.code})`));
    } finally {
      if (ticket === loading) diffBox.setAttribute('aria-busy', 'false');
    }
  }

  /** No branch to diff: say why, and list the files the agents touched. */
  const relative = (path) => {
    const root = (ctx.task.project_path || '').replace(/\/+$/, '');
    return root && path.startsWith(root + '/') ? path.slice(root.length + 1) : path;
  };

  async function fallback(source, err) {
    const chosen = source === 'task' ? sessions : sessions.filter((ws) => ws.id === source);
    const note = ctx.task.status === 'spec_review' || ctx.task.status.startsWith('spec') || ctx.task.status === 'backlog'
      ? 'Implementation has not started: there is no branch yet.'
      : 'This task has no git branch to diff (shared isolation, or the project is not a git repository): the agents wrote in the project directory itself.';
    replace(diffBox, h('div', { id: 'diff-fallback', class: 'diff-fallback' },
      h('p', { class: 'note' }, note, ' ', h('span', { class: 'meta' }, `(${err.message})`)),
      h('p', { class: 'loading' }, 'Reading the files the agents touched…')));
    try {
      const touched = await touchedFiles(chosen);
      diffBox.dataset.source = 'touched';
      const box = diffBox.querySelector('#diff-fallback');
      box.lastChild.replaceWith(touched.some((t) => t.paths.length)
        ? h('div', {}, h('p', {}, 'Files the agents edited, from their tool calls:'),
          touched.filter((t) => t.paths.length).map(({ ws, paths }) => h('section', { class: 'touched', dataset: { workSessionId: ws.id } },
            h('h3', {}, sessionTitle(ws)),
            h('ul', { class: 'touched-files' }, paths.map((p) => h('li', { dataset: { path: p } }, h('code', { title: p }, relative(p))))))))
        : h('p', { class: 'empty' }, 'No agent tool call edited a file.'));
    } catch (fail) {
      replace(diffBox, h('p', { class: 'error-box', role: 'alert' }, fail.message));
    }
  }

  select.addEventListener('change', loadDiff);
  ctx.onTask(() => gate.drawState());
  const refresh = debounced(async () => { await loadSessions().catch(() => null); await loadDiff(); await loadTrace(); }, 600);
  ctx.subscribe((event) => {
    if (/^(check\.completed|review\.verdict|work_session\.(merged|committed|status_changed)|spec_task\.(branch_merged|status_changed))/.test(event.kind)) refresh();
  });
  try {
    await loadSessions();
  } catch (err) {
    toast(err.message, 'error');
  }
  gate.drawState();
  await Promise.all([loadDiff(), loadTrace()]);
}

function debounced(fn, ms) {
  let timer;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

/** The approve / request-changes forms; `drawState()` enables them by the task's status. */
function gateForm(ctx, sessionsOf) {
  const mode = h('select', { id: 'merge-mode', name: 'merge', 'aria-describedby': 'merge-mode-help' },
    MERGE_MODES.map((m) => h('option', { value: m.value }, m.title)));
  const modeHelp = h('p', { class: 'help', id: 'merge-mode-help' });
  const approve = h('button', { type: 'submit', id: 'approve-implementation', class: 'primary' }, 'Approve implementation');
  const comment = h('textarea', { id: 'request-changes-comment', name: 'comment', rows: '4', required: true });
  const reopen = h('fieldset', { class: 'reopen' });
  const requestChanges = h('button', { type: 'submit', id: 'request-changes-implementation' }, 'Request changes');
  const error = h('div', { id: 'review-error', class: 'review-error', role: 'alert' });
  const stateLine = h('p', { id: 'review-state', class: 'meta' });

  const showHelp = () => replace(modeHelp, MERGE_MODES.find((m) => m.value === mode.value).help);
  mode.addEventListener('change', showHelp);
  showHelp();

  function showError(err, what) {
    const detail = err.body?.error || {};
    replace(error, h('div', { class: 'error-box' },
      h('strong', {}, `${what} refused: `), err.message, ' ', h('code', {}, err.code),
      detail.conflict_files?.length ? h('ul', {}, detail.conflict_files.map((f) => h('li', {}, h('code', {}, f)))) : null,
      err.code === 'dirty_worktree' ? h('p', {}, 'Commit or stash the uncommitted changes in the project\'s work tree, then approve again; or approve without a merge.') : null,
      err.code === 'not_fast_forward' ? h('p', {}, 'The base branch has moved on: choose "Merge with a merge commit", or approve without a merge.') : null));
  }

  async function run(button, what, call) {
    button.disabled = true;
    replace(error);
    try {
      const task = await call();
      ctx.setTask(task);
      toast(`${what}: the task is now ${label(task.status)}.`, 'ok');
      return true;
    } catch (err) {
      showError(err, what);
      return false;
    } finally {
      drawState();
    }
  }

  const approveForm = h('form', { class: 'stack gate-approve', 'aria-labelledby': 'approve-heading' },
    h('h3', { id: 'approve-heading' }, 'Approve'),
    h('label', {}, 'What to do with the task branch', mode), modeHelp, h('div', { class: 'actions' }, approve));
  approveForm.addEventListener('submit', (event) => {
    event.preventDefault();
    run(approve, 'Approval', () => api.post(`/spec-tasks/${ctx.taskId}/approve-implementation`, { merge: mode.value }));
  });
  const changesForm = h('form', { class: 'stack gate-changes', 'aria-labelledby': 'changes-heading' },
    h('h3', { id: 'changes-heading' }, 'Request changes'),
    h('label', {}, 'What should change (sent to the agents as a new turn)', comment), reopen,
    h('div', { class: 'actions' }, requestChanges));
  changesForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = comment.value.trim();
    if (!text) { comment.focus(); return; }
    const picked = [...reopen.querySelectorAll('input:checked')].map((box) => box.value);
    const all = reopen.querySelectorAll('input').length;
    const body = { comment: text };
    if (picked.length && picked.length < all) body.work_session_ids = picked;
    if (await run(requestChanges, 'Request for changes', () => api.post(`/spec-tasks/${ctx.taskId}/request-changes`, body))) comment.value = '';
  });

  function drawState() {
    const open = ctx.task.status === 'implementation_review';
    for (const el of [mode, approve, comment, requestChanges, ...reopen.querySelectorAll('input')]) el.disabled = !open;
    // Without a task branch there is nothing to merge.
    const branch = Boolean(ctx.task.branch_name);
    for (const option of mode.options) option.disabled = !branch && option.value !== 'none';
    if (!branch && mode.value !== 'none') { mode.value = 'none'; showHelp(); }
    if (!branch) modeHelp.textContent = 'This task has no branch (shared isolation): approving marks it done; there is nothing to merge.';
    replace(stateLine, open ? 'The implementation waits for your review.'
      : ctx.task.status === 'done' ? 'This task is done: the implementation was approved.'
        : `Approve and request changes open once the task is in implementation review (it is in ${label(ctx.task.status)}).`);
  }

  function drawSessions() {
    const done = sessionsOf().filter((ws) => ws.status === 'completed');
    replace(reopen, done.length ? [h('legend', {}, 'Sessions to reopen (none checked: every completed session)'),
      done.map((ws) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', id: `reopen-${ws.id}`, value: ws.id }), ' ', sessionTitle(ws)))] : null);
    reopen.hidden = !done.length;
    drawState();
  }

  const root = h('section', { id: 'review-gate', class: 'review-gate', 'aria-labelledby': 'gate-heading' },
    h('h2', { id: 'gate-heading' }, 'Review'), stateLine, error,
    h('div', { class: 'gate-forms' }, approveForm, changesForm));
  return { root, drawState, drawSessions };
}
