// The whole flow as a person runs it in the browser, against a real server with the scripted
// test agent (crates/cli/tests/cli/browser.rs sets it up): create a task on the board, watch
// planning stream in, comment on a selected passage, request changes, see revision 2 and the diff,
// be refused approving the stale revision, approve revision 2, watch three threads run at once
// and the graph change colour, answer permission prompts, send a follow-up message, see the task
// reach review and approve it. Each page is screenshotted and checked with axe-core.

import { BASE, launch, open, ready, shot, axe, assertClean, until, log, api, selectText } from './lib.mjs';

const PROJECT = process.env.SPECTASK_PROJECT;
const FOLLOW_UP = process.env.SPECTASK_FOLLOW_UP;
const browser = await launch();

async function statusOf(id) {
  return (await api('GET', `/spec-tasks/${id}`)).status;
}

try {
  const page = await open(browser);

  // --- The board: create a task (a bad project path is refused at its field first).
  await page.goto(BASE + '/');
  await ready(page);
  await axe(page, 'board-empty');
  await page.click('#new-task');
  await page.getByLabel('What should be built?').fill('Write a greeting in three parts, one file each.');
  await page.getByLabel('Project path').fill('/no/such/directory');
  await page.getByRole('button', { name: 'Create and plan' }).click();
  await page.locator('#create-error').filter({ hasText: /.+/ }).waitFor();
  if (await page.getByLabel('Project path').getAttribute('aria-invalid') !== 'true') throw new Error('the bad path is not marked');
  log('a bad project path is refused at its field:', await page.locator('#create-error').textContent());
  await axe(page, 'board-create-dialog');
  await shot(page, 'board-create-dialog');
  await page.getByLabel('Project path').fill(PROJECT);
  await page.getByRole('button', { name: 'Create and plan' }).click();
  await page.waitForURL(/\/tasks\/spt_/);
  const taskId = page.url().match(/tasks\/(spt_[0-9A-Za-z]+)/)[1];
  log('created', taskId);

  // --- Planning streams in.
  await ready(page);
  const output = page.locator('#planning-output');
  await output.waitFor();
  const seen = new Set();
  await until('planning output growing', async () => {
    const text = (await output.textContent()) || '';
    if (text.length) seen.add(text.length);
    return seen.size >= 3 || (await statusOf(taskId)) === 'spec_review';
  });
  log('planning output seen at', seen.size, 'lengths');
  await shot(page, 'spec-planning');
  if (seen.size < 2) throw new Error('planning did not stream: one length only');

  // --- Revision 1 in review: rendered documents.
  await page.locator('#doc-requirements h1, #doc-requirements h2').first().waitFor({ timeout: 60000 });
  await until('spec_review', async () => (await statusOf(taskId)) === 'spec_review');
  await axe(page, 'spec-review');
  await shot(page, 'spec-review-r1');
  await page.click('#tab-design');
  await page.locator('#doc-design table').waitFor();
  await page.locator('#doc-design pre code [class^="hl-"], #doc-design pre code[class*="hl-"]').first().waitFor();
  await shot(page, 'spec-review-design');
  await page.click('#tab-requirements');

  // --- Comment on a selected passage.
  await selectText(page, '#doc-requirements', 'say hello');
  await page.locator('#comment-button').click();
  await page.locator('#comment-text').fill('Say it warmly.');
  await page.locator('#comment-form button[type=submit]').click();
  await page.locator('#comments [data-comment-id]').first().waitFor();
  await page.locator('#doc-requirements mark.comment-anchor').first().waitFor();
  log('comment anchored on the selected passage');
  await shot(page, 'spec-comment');

  // --- Request changes: revision 2 arrives.
  await page.locator('#request-changes-text').fill('Sign every part.');
  await page.locator('#request-changes').click();
  await shot(page, 'spec-request-changes');
  let seenTask = null;
  await until('revision 2', async () => {
    seenTask = await api('GET', `/spec-tasks/${taskId}`);
    seenTask.revisions = (await api('GET', `/spec-tasks/${taskId}/revisions`)).revisions.length;
    return seenTask.revisions >= 2 && seenTask.status === 'spec_review';
  }, 120000).catch((err) => {
    throw new Error(`${err.message}; on the page: "${page.problems.join(' | ')}"; the task: ${seenTask.status}, ${seenTask.revisions} revision(s), error ${seenTask.error}`);
  });
  log('revision 2 is in review');

  // --- Stale approval: the page still shows revision 1; approving it is refused, naming revision 2.
  await page.goto(`${BASE}/tasks/${taskId}/spec?rev=1`);
  await ready(page);
  await page.locator('#approve-specs').click();
  await page.locator('#stale-revision').filter({ hasText: /2/ }).waitFor();
  log('stale approval refused:', (await page.locator('#stale-revision').textContent()).trim());
  if ((await statusOf(taskId)) !== 'spec_review') throw new Error('a stale approval changed the task');
  await shot(page, 'spec-stale-approval');

  // --- The diff between revisions 1 and 2.
  await page.goto(`${BASE}/tasks/${taskId}/spec?diff=1..2`);
  await ready(page);
  await page.locator('#revision-diff').filter({ hasText: 'sign it' }).waitFor();
  await axe(page, 'spec-diff');
  await shot(page, 'spec-diff');

  // --- Approve revision 2, which added a criterion (2.1) no task names: the review says so.
  await page.goto(`${BASE}/tasks/${taskId}/spec?rev=2`);
  await ready(page);
  await page.locator('#trace-warnings [data-kind="uncovered_criterion"]').filter({ hasText: '2.1' }).waitFor();
  log('trace warning shown:', (await page.locator('#trace-warnings').textContent()).trim());
  await page.locator('#approve-specs').click();
  await until('implementation', async () => ['spec_approved', 'implementation_queued', 'implementation'].includes(await statusOf(taskId)));
  log('revision 2 approved');

  // --- Implementation: three threads at once, each waiting for a permission answer.
  await page.goto(`${BASE}/tasks/${taskId}/implementation`);
  await ready(page);
  const nodes = page.locator('#impl-graph [data-work-session-id]');
  await until('four sessions in the graph', async () => (await nodes.count()) === 4);
  const active = page.locator('#impl-graph [data-work-session-id][data-status="active"]');
  await until('three threads running at once', async () => (await active.count()) === 3, 120000);
  let prompts = '';
  await until('three permission prompts', async () => {
    prompts = (await api('GET', '/permission-requests')).permission_requests.map((r) => r.title).join(' | ');
    return (await page.locator('#permissions-count').textContent()).trim() === '3';
  }).catch((err) => { throw new Error(`${err.message}; badge ${prompts}`); });
  log('three threads running, three permission prompts');
  await axe(page, 'implementation');
  await shot(page, 'implementation-parallel');

  // --- A follow-up message to the first session, while it runs.
  const first = await active.first().getAttribute('data-work-session-id');
  await active.first().click();
  await page.waitForURL(new RegExp(`session=${first}`));
  await page.locator('#thread').filter({ hasText: 'goes in its own file' }).waitFor();
  await page.locator('#message-text').fill(`${FOLLOW_UP}: also sign it`);
  await page.locator('#message-send').click();
  log('follow-up sent to', first);

  // --- Answer the prompts from the panel as they come (the fourth session asks once the three
  // it depends on are merged); the graph changes colour as sessions complete.
  await page.click('#permissions-button');
  await page.locator('#permissions-panel').waitFor();
  await shot(page, 'permissions-panel');
  await axe(page, 'permissions-panel');
  const completed = page.locator('#impl-graph [data-work-session-id][data-status="completed"]');
  let answered = 0;
  await until('every session completed', async () => {
    const allow = page.locator('#permissions-list button', { hasText: /allow/i }).first();
    if (await allow.count()) {
      await allow.click();
      answered += 1;
      if (answered === 1) {
        await until('a session turns completed', async () => (await completed.count()) >= 1, 60000);
        log('the graph changes colour: one session completed');
      }
    }
    return (await completed.count()) === 4;
  }, 240000);
  log('permissions answered:', answered);
  await page.click('#permissions-close');
  await page.locator('#thread').filter({ hasText: `Follow-up ${FOLLOW_UP} acknowledged` }).waitFor();
  await shot(page, 'implementation-done');

  // --- Review: the diff, then approve.
  await until('implementation_review', async () => (await statusOf(taskId)) === 'implementation_review', 120000);
  await page.goto(`${BASE}/tasks/${taskId}/review`);
  await ready(page);
  await page.locator('#task-diff').filter({ hasText: 'part-one.txt' }).waitFor();
  // The matrix: task 1's check passed in its worktree; 2.1 is named by no task.
  await page.locator('#trace-matrix tr[data-criterion="1.1"][data-coverage="met_by_checks"]').waitFor();
  await page.locator('#trace-matrix tr[data-criterion="2.1"][data-coverage="uncovered"]').waitFor();
  await page.locator('#trace-matrix tr[data-criterion="1.1"] details').filter({ hasText: 'test -f part-one.txt' }).waitFor();
  log('trace:', (await page.locator('#trace-coverage').textContent()).trim());
  await axe(page, 'review');
  await shot(page, 'review');
  await page.locator('#approve-implementation').click();
  await until('done', async () => (await statusOf(taskId)) === 'done');
  log('approved: done');

  // --- The board shows it done; the agents page; a phone-sized board.
  await page.goto(BASE + '/');
  await ready(page);
  await page.locator(`#column-done #card-${taskId}`).waitFor();
  await shot(page, 'board');
  await page.goto(BASE + '/agents');
  await ready(page);
  await axe(page, 'agents');
  await shot(page, 'agents');
  assertClean(page);

  const phone = await open(browser, { width: 390, height: 844, mobile: true });
  await phone.goto(`${BASE}/tasks/${taskId}/review`);
  await ready(phone);
  await shot(phone, 'phone-review');
  await phone.goto(BASE + '/');
  await ready(phone);
  await shot(phone, 'phone-board');
  await axe(phone, 'phone-board');
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`the phone board scrolls sideways by ${overflow}px`);
  assertClean(phone);
} finally {
  await browser.close();
}
log('browser flow passed');
