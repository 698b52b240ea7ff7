// Shared by the browser tests: Chromium (Debian's, through playwright-core), pages that fail the
// test on any script error or Content-Security-Policy violation, screenshots under
// SPECTASK_SCREENSHOTS, and an axe-core accessibility check that fails on serious violations.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = process.env.SPECTASK_URL;
if (!BASE) throw new Error('SPECTASK_URL is not set: run through crates/cli/tests/cli/browser.rs');
const SHOTS = process.env.SPECTASK_SCREENSHOTS || path.resolve('screenshots');
fs.mkdirSync(SHOTS, { recursive: true });
const AXE = fs.readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');

/** Waits for a state, polling; never a fixed sleep. Fails with `what` after `timeout` ms. */
export async function until(what, check, timeout = 60000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) { last = err; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export function log(...args) {
  console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.SPECTASK_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/** A page whose script errors, failed requests to the server and CSP violations fail the test. */
export async function open(browser, { width = 1280, height = 900, mobile = false } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, isMobile: mobile, hasTouch: mobile });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`script error: ${err.message}`));
  page.on('console', (message) => {
    const text = message.text();
    // axe-core, evaluated by the test (no script URL), applies inline styles while it measures:
    // blocked by the CSP, harmlessly. The pages' own scripts always have a URL.
    if (message.location().url === '' && /inline style/.test(text)) return;
    if (message.type() === 'error' && !/status of (409|422|401|404)/.test(text)) page.problems.push(`console error: ${text}`);
    if (/Content Security Policy/i.test(text)) page.problems.push(`CSP: ${text}`);
  });
  page.setDefaultTimeout(30000);
  return page;
}

/** Fails if the page logged a script error or a CSP violation. */
export function assertClean(page) {
  if (page.problems.length) throw new Error('the page had problems:\n' + page.problems.join('\n'));
}

export async function ready(page) {
  await page.waitForFunction(() => document.body.dataset.ready === 'true');
}

export async function shot(page, name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log('screenshot', file);
}

/** axe-core on the page as it is: fails on serious or critical violations (all are logged). */
export async function axe(page, name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const run = await axe.run(document, { resultTypes: ['violations'] });
    return run.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) }));
  });
  fs.writeFileSync(path.join(SHOTS, `${name}.axe.json`), JSON.stringify(result, null, 2));
  for (const v of result) log(`axe ${name}: ${v.impact} ${v.id}: ${v.help} @ ${v.nodes.join(', ')}`);
  const serious = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (serious.length) throw new Error(`axe: ${serious.length} serious violation(s) on ${name}: ${serious.map((v) => v.id).join(', ')}`);
}

/** The JSON API, for checks and set-up the UI is not under test for. */
export async function api(method, apiPath, body) {
  const response = await fetch(BASE + '/api/v1' + apiPath, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(`${method} ${apiPath}: ${response.status} ${text}`);
  return data;
}

/** Selects `text` inside the element matching `selector` (the first text node holding it). */
export async function selectText(page, selector, text) {
  await page.evaluate(({ selector, text }) => {
    const root = document.querySelector(selector);
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const at = node.data.indexOf(text);
      if (at >= 0) {
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + text.length);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        document.dispatchEvent(new Event('selectionchange'));
        node.parentElement.dispatchEvent(new MouseEvent('mouseup', { bubbles: true }));
        return;
      }
    }
    throw new Error(`no text "${text}" in ${selector}`);
  }, { selector, text });
}
