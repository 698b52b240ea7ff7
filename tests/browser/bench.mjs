// The web UI's rendering benchmark (BENCHMARKS.md "Web UI"): how long Chromium takes to show the
// board with 1,000 tasks and a thread of 10,000 entries, and what a page weighs. Not a test:
//
//   cargo build --release -p spectask -p spectask-acp-test-agent
//   node tests/browser/bench.mjs [--tasks 1000] [--entries 10000] [--runs 5]
//
// It starts `target/release/spectask serve` on a fresh data directory with a loopback planner (a
// tiny OpenAI-compatible server in this process) and our test agent, whose one work session
// streams `--entries` alternating message and thought entries; creates `--tasks` tasks; then
// loads each page `--runs` times in a fresh browser context and reports the median time from
// navigation start to the page's `data-ready` plus the next frame (everything drawn).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, arg, i, all) =>
  (arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
const TASKS = Number(args.tasks || 1000);
const ENTRIES = Number(args.entries || 10000);
const RUNS = Number(args.runs || 5);
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const BIN = path.join(TARGET, 'release/spectask');
const AGENT = path.join(TARGET, 'release/spectask-acp-test-agent');

const SPEC = `# Requirements: Bench\n\n## Requirement 1\n\n**User Story:** As a user, I want a long thread.\n\n### Acceptance Criteria\n\n1. WHEN it runs THE SYSTEM SHALL talk.\n\n# Design: Bench\n\nOne session.\n\n# Implementation Plan: Bench\n\n- [ ] 1. Talk a lot\n  - _Requirements: 1.1_\n`;

function planner() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 0, model: 'bench',
        choices: [{ index: 0, message: { role: 'assistant', content: SPEC }, finish_reason: 'stop' }] }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function api(base, method, apiPath, body) {
  const response = await fetch(base + '/api/v1' + apiPath, { method,
    headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${apiPath}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function until(what, check, timeout = 300000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check().catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error('timed out: ' + what);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function startServer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spectask-ui-bench-'));
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  const steps = [];
  for (let i = 0; i < ENTRIES; i += 1) {
    steps.push(i % 2 ? { kind: 'thought', text: `Thinking about step ${i}.` }
      : { kind: 'message', text: `Step ${i}: a line of agent output about the work.\n` });
  }
  fs.writeFileSync(path.join(dir, 'script.json'), JSON.stringify({ steps }));
  fs.writeFileSync(path.join(data, 'spectask.toml'),
    `default_agent = 'bench'\n[agents.bench]\ncommand = '${AGENT}'\nenv = { SPECTASK_TEST_AGENT_SCRIPT_FILE = '${path.join(dir, 'script.json')}' }\n`);
  const fake = await planner();
  const child = spawn(BIN, ['--log-json', 'serve', '--bind', '127.0.0.1:0', '--data-dir', data,
    '--llm-base-url', `http://127.0.0.1:${fake.address().port}/v1`, '--llm-model', 'bench', '--default-isolation', 'shared'],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  const base = await new Promise((resolve, reject) => {
    let buffer = '';
    child.stderr.on('data', (chunk) => {
      buffer += chunk;
      for (const line of buffer.split('\n')) {
        const match = line.includes('spectask listening') && line.match(/"addr":"([^"]+)"/);
        if (match) resolve('http://' + match[1]);
      }
      buffer = buffer.slice(buffer.lastIndexOf('\n') + 1);
    });
    child.on('exit', (code) => reject(new Error('server exited ' + code)));
  });
  return { base, child, fake, dir };
}

/** Median time to `data-ready` + one frame, and the page's weight, over RUNS fresh loads. */
async function measure(browser, url, readyCheck) {
  const times = [];
  let weight = null;
  for (let run = 0; run < RUNS; run += 1) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(url, { waitUntil: 'commit' });
    await page.waitForFunction(readyCheck, null, { timeout: 120000, polling: 'raf' });
    const ms = await page.evaluate(() => new Promise((resolve) =>
      requestAnimationFrame(() => resolve(performance.now()))));
    times.push(ms);
    if (run === 0) {
      weight = await page.evaluate(() => {
        const resources = performance.getEntriesByType('resource');
        const nav = performance.getEntriesByType('navigation')[0];
        const assets = resources.filter((r) => r.name.includes('/ui/assets/'));
        const apiCalls = resources.filter((r) => r.name.includes('/api/v1/') && !r.name.includes('/events/stream'));
        const sum = (list) => list.reduce((total, r) => total + (r.encodedBodySize || 0), 0);
        return { html: nav.encodedBodySize, assets: sum(assets), assetFiles: assets.length,
          api: sum(apiCalls), apiCalls: apiCalls.length, nodes: document.getElementsByTagName('*').length,
          heapMB: performance.memory ? Math.round(performance.memory.usedJSHeapSize / 1048576) : null };
      });
    }
    await context.close();
  }
  times.sort((a, b) => a - b);
  return { median: Math.round(times[Math.floor(times.length / 2)]), min: Math.round(times[0]), max: Math.round(times.at(-1)), weight };
}

const { base, child, fake, dir } = await startServer();
const browser = await chromium.launch({ executablePath: process.env.SPECTASK_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  // The long thread first: one task planned, approved and run.
  const long = await api(base, 'POST', '/spec-tasks/from-prompt', { prompt: 'A long thread', project_path: dir });
  await until('spec review', async () => (await api(base, 'GET', `/spec-tasks/${long.id}`)).status === 'spec_review');
  await api(base, 'POST', `/spec-tasks/${long.id}/approve-specs`, { approved: true });
  await until('implementation review', async () =>
    (await api(base, 'GET', `/spec-tasks/${long.id}`)).status === 'implementation_review');
  const sessions = await api(base, 'GET', `/spec-tasks/${long.id}/work-sessions`);
  const sid = sessions.work_sessions[0].id;
  const started = Date.now();
  for (let i = 0; i < TASKS; i += 8) {
    await Promise.all(Array.from({ length: Math.min(8, TASKS - i) }, (_, k) => api(base, 'POST', '/spec-tasks/from-prompt',
      { prompt: `Benchmark task ${i + k}: add a setting to the profile page and test it`, auto_start: false })));
  }
  console.log(`created ${TASKS} tasks in ${Date.now() - started} ms`);

  const board = await measure(browser, base + '/', () => document.body.dataset.ready === 'true');
  const cards = TASKS + 1;
  console.log(`board, ${cards} tasks: median ${board.median} ms (min ${board.min}, max ${board.max})`, JSON.stringify(board.weight));
  const thread = await measure(browser, `${base}/tasks/${long.id}/implementation?session=${sid}`,
    () => document.body.dataset.ready === 'true' && performance.getEntriesByName('thread-rendered').length > 0);
  console.log(`thread, ${ENTRIES} entries: median ${thread.median} ms (min ${thread.min}, max ${thread.max})`, JSON.stringify(thread.weight));

  // Everything drawn: "show earlier" until the whole thread is on the page.
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(`${base}/tasks/${long.id}/implementation?session=${sid}`);
  await page.waitForFunction(() => performance.getEntriesByName('thread-rendered').length > 0);
  const started2 = await page.evaluate(() => performance.now());
  let clicks = 0;
  while (await page.locator('#thread-show-earlier').count()) {
    await page.click('#thread-show-earlier');
    clicks += 1;
  }
  const drawn = await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve(performance.now()))));
  const nodes = await page.evaluate(() => document.getElementsByTagName('*').length);
  console.log(`thread, all ${ENTRIES} entries drawn after ${clicks} "show earlier": ${Math.round(drawn - started2)} ms more, ${nodes} elements`);

  // Or at once: "show all".
  const times = [];
  for (let run = 0; run < RUNS; run += 1) {
    const fresh = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    await fresh.goto(`${base}/tasks/${long.id}/implementation?session=${sid}`);
    await fresh.waitForFunction(() => performance.getEntriesByName('thread-rendered').length > 0);
    const before = await fresh.evaluate(() => performance.now());
    await fresh.click('#thread-show-all');
    const after = await fresh.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve(performance.now()))));
    times.push(after - before);
    await fresh.context().close();
  }
  times.sort((a, b) => a - b);
  console.log(`thread, all ${ENTRIES} entries drawn at once ("show all"): median ${Math.round(times[Math.floor(times.length / 2)])} ms more (min ${Math.round(times[0])}, max ${Math.round(times.at(-1))})`);
} finally {
  await browser.close();
  child.kill('SIGTERM');
  fake.close();
}
