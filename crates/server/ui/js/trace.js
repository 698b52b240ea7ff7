// The traceability matrix (`GET /spec-tasks/{id}/trace`): every acceptance criterion of the
// requirements with the plan tasks naming it, their work sessions, commits and latest check runs,
// the reviewer's verdict, and where it stands. `renderMatrix(container, taskId)` draws the table (implementation review);
// `renderWarnings(container, taskId)` only the gaps between criteria and plan (spec review).
//
// Stable ids: #trace-matrix (the table; each row has data-criterion = its id and
// data-coverage = its coverage), #trace-coverage (the summary line), #trace-warnings (the list
// of gaps, each item data-kind = uncovered_criterion | unknown_reference).

import * as api from './api.js';
import { h, replace, label } from './dom.js';

const COVERAGE_TITLES = {
  met_by_checks: 'met: checks pass',
  met_by_review: 'met: reviewer',
  failing: 'failing checks',
  pending: 'checks not run yet',
  not_checked: 'no check',
  uncovered: 'no task',
};

function summary(coverage) {
  const parts = [`${coverage.met_by_checks} of ${coverage.criteria} criteria met by passing checks`];
  if (coverage.met_by_review) parts.push(`${coverage.met_by_review} by the reviewer only`);
  if (coverage.failing) parts.push(`${coverage.failing} failing`);
  if (coverage.pending) parts.push(`${coverage.pending} pending`);
  if (coverage.not_checked) parts.push(`${coverage.not_checked} without a check`);
  if (coverage.uncovered) parts.push(`${coverage.uncovered} named by no task`);
  return parts.join(' · ');
}

function warningList(warnings) {
  if (!warnings.length) return null;
  return h('ul', { id: 'trace-warnings', class: 'warnings' },
    warnings.map((w) => h('li', { class: 'warning', dataset: { kind: w.kind } }, w.message)));
}

function checkCell(task) {
  if (!task.checks.length) return h('span', { class: 'meta' }, 'no check');
  if (!task.check_runs.length) return h('span', { class: 'meta' }, 'not run yet');
  return task.check_runs.map((run) => h('details', { class: `trace-check trace-check-${run.status}` },
    h('summary', {}, h('span', { class: `chip status status-${run.status === 'passed' ? 'completed' : 'failed'}` }, label(run.status)),
      ' ', h('code', {}, run.command), ` · round ${run.round} · ${run.duration_ms} ms`),
    h('pre', { class: 'check-output' }, run.output_tail || '(no output)')));
}

function taskLines(criterion) {
  if (!criterion.tasks.length) return h('span', { class: 'meta' }, 'no task names it');
  return criterion.tasks.map((task) => h('div', { class: 'trace-task' },
    h('strong', {}, `${task.key}. `), task.title, ' ',
    h('span', { class: `chip status status-${task.status}` }, label(task.status)),
    task.files.length ? h('span', { class: 'meta', title: task.files.join('\n') }, ` · ${task.files.length} file${task.files.length === 1 ? '' : 's'}`) : null,
    task.commits.length ? h('span', { class: 'meta' }, ` · ${task.commits.length} commit${task.commits.length === 1 ? '' : 's'}: `,
      task.commits.map((c) => h('code', { title: c.summary }, c.id.slice(0, 8))).flatMap((c, i) => (i ? [' ', c] : [c]))) : null,
    h('div', { class: 'trace-checks' }, checkCell(task))));
}

function verdictCell(criterion) {
  const v = criterion.verdict;
  if (!v) return h('span', { class: 'meta' }, '—');
  return h('div', { class: 'trace-verdict', dataset: { verdict: v.verdict } },
    h('span', { class: `chip verdict verdict-${v.verdict}` }, label(v.verdict)),
    ' ', h('span', { class: 'meta' }, `by ${v.reviewer}`),
    h('p', { class: 'verdict-reason' }, v.reason));
}

/** The whole matrix, with its summary and warnings. */
export async function renderMatrix(container, taskId) {
  const matrix = await api.get(`/spec-tasks/${taskId}/trace`);
  if (!matrix.criteria.length) {
    replace(container, h('p', { class: 'meta' }, 'The requirements have no acceptance criteria spectask recognises (numbered EARS criteria, Kiro or spec-kit ids).'));
    return matrix;
  }
  replace(container,
    h('p', { id: 'trace-coverage', class: 'meta' }, summary(matrix.coverage)),
    warningList(matrix.warnings),
    h('table', { id: 'trace-matrix', class: 'trace' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Criterion'), h('th', { scope: 'col' }, 'Coverage'), h('th', { scope: 'col' }, 'Tasks, commits and checks'), h('th', { scope: 'col' }, 'Review'))),
      h('tbody', {}, matrix.criteria.map((c) => h('tr', { dataset: { criterion: c.id, coverage: c.coverage } },
        h('th', { scope: 'row' }, h('strong', {}, c.id), ' ', c.text),
        h('td', {}, h('span', { class: `chip coverage coverage-${c.coverage}` }, COVERAGE_TITLES[c.coverage] || label(c.coverage))),
        h('td', {}, taskLines(c)),
        h('td', {}, verdictCell(c)))))));
  return matrix;
}

/** Only the gaps between the criteria and the plan (nothing when there are none). */
export async function renderWarnings(container, taskId) {
  const matrix = await api.get(`/spec-tasks/${taskId}/trace`);
  replace(container, matrix.warnings.length
    ? [h('p', { class: 'meta' }, 'Traceability: the plan and the acceptance criteria do not match everywhere. You can still approve.'), warningList(matrix.warnings)]
    : null);
  return matrix;
}
