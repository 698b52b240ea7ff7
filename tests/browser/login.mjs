// Signing in on a server that requires its API token: a page opened without it goes to the login
// page, a wrong token is refused there, the right one becomes an HttpOnly, SameSite=Strict cookie
// (never the token itself) that lets the pages use the API, and signing out ends that.

import { BASE, launch, open, ready, shot, axe, assertClean, log } from './lib.mjs';

const TOKEN = process.env.SPECTASK_TOKEN;
const browser = await launch();
try {
  const page = await open(browser);
  await page.goto(BASE + '/agents');
  await page.waitForURL(/\/login\?next=(%2F|\/)agents$/);
  await ready(page);
  await axe(page, 'login');
  await shot(page, 'login');

  await page.getByLabel('API token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#login-error').filter({ hasText: /not this server/ }).waitFor();
  log('a wrong token is refused on the login page');

  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(BASE + '/agents');
  await ready(page);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'spectask_session');
  if (!session) throw new Error('no session cookie after signing in');
  if (!session.httpOnly || session.sameSite !== 'Strict') throw new Error(`cookie attributes: ${JSON.stringify(session)}`);
  if (session.value.includes(TOKEN)) throw new Error('the cookie carries the token itself');
  log('signed in: HttpOnly, SameSite=Strict cookie without the token');

  await page.goto(BASE + '/');
  await ready(page);
  await page.locator('#board').waitFor();
  await page.locator('#live-status[data-state="open"]').waitFor();
  log('the board loads its tasks and the live stream with the cookie');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/login/);
  await page.goto(BASE + '/');
  await page.waitForURL(/\/login\?next=(%2F|\/)$/);
  log('signed out: pages go to the login page again');
  assertClean(page);
} finally {
  await browser.close();
}
log('login flow passed');
