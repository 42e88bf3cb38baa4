// The web app in a real browser: headless Chromium driven by playwright-core, every page
// checked by axe-core. Run by tests/browser.rs against a real hub it prepared:
//   node tests/browser/app.mjs   with FM_BASE, FM_USER, FM_PASSWORD, FM_TOKEN (a device
//   token, to write as a device while the page watches), FM_PEERS (node_modules' parent),
//   FM_SHOTS (where screenshots go). Prints one line per step; exits non-zero on a failure.
import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';

const require = createRequire(process.env.FM_PEERS + '/node_modules/');
const { chromium } = require('playwright-core');
const { AxeBuilder } = require('@axe-core/playwright');

const base = process.env.FM_BASE;
const user = process.env.FM_USER;
const token = process.env.FM_TOKEN;
const shots = process.env.FM_SHOTS;
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.FM_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
// Failed loads are reported with their URL below, not as their console echo.
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
});
page.on('response', (r) => { if (r.status() >= 400 && !expected.has(r.status())) problems.push(`${r.status()} from ${r.url()}`); });
// Statuses a step asks for on purpose (a wrong password).
const expected = new Set();
// A script a service sent would show as a dialog: none may ever open.
page.on('dialog', (d) => { problems.push(`a dialog opened: ${d.message()}`); d.dismiss(); });

const step = (what) => console.log(`step: ${what}`);
const checked = new Set();

/// axe-core on the page: no serious or critical violation; screenshots at desktop and phone
/// widths; the page's load time (navigation start to load event) printed.
async function check(name) {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of bad) {
    problems.push(`axe ${name}: ${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  }
  const timing = await page.evaluate(() => {
    const [n] = performance.getEntriesByType('navigation');
    return n ? Math.round(n.loadEventEnd - n.startTime) : -1;
  });
  console.log(`page: ${name} load_ms=${timing} axe_violations=${results.violations.length} serious_or_critical=${bad.length}`);
  if (!checked.has(name)) {
    checked.add(name);
    await page.screenshot({ path: `${shots}/${name}-desktop.png`, fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: `${shots}/${name}-phone.png`, fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 2) problems.push(`${name}: ${overflow}px wider than a phone`);
    await page.setViewportSize({ width: 1280, height: 900 });
  }
}

async function api(method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/atom+xml;type=entry' },
    body,
  });
  return r;
}

try {
  step('log in');
  await page.goto(`${base}/`);
  await page.click('text=Log in');
  await check('login');
  await page.fill('#user', user);
  await page.fill('#password', 'not the password');
  expected.add(401);
  await page.click('button[type=submit]');
  assert.match(await page.textContent('#login-error'), /Wrong user name or password/);
  await page.fill('#password', process.env.FM_PASSWORD);
  await page.click('button[type=submit]');
  expected.delete(401);
  await page.waitForSelector('h1:has-text("Stream")');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'fm_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Lax', JSON.stringify(cookies));

  step('read the stream, nothing that services sent runs');
  await check('stream');
  assert.ok(await page.isVisible('text=Hello from the laptop'));
  assert.equal(await page.evaluate(() => window.__pwned === undefined), true);
  await page.keyboard.press('j');
  await page.keyboard.press('j');
  assert.equal(await page.locator('.item.current').count(), 1, 'j moves to an item');
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'q', '/ focuses search');
  await page.keyboard.press('Escape');
  await page.locator('body').click({ position: { x: 5, y: 5 } });

  step('a new item arrives live');
  await page.waitForTimeout(300); // the event stream is open
  const r = await api('POST', `/atompub/${user}/Notes`,
    '<entry xmlns="http://www.w3.org/2005/Atom"><title>Arrived while watching</title><content type="text">live</content></entry>');
  assert.equal(r.status, 201);
  await page.waitForSelector('#new-items:not([hidden])', { timeout: 10000 });
  assert.match(await page.textContent('#new-items'), /1 new item/);
  await page.click('#new-items');
  await page.waitForSelector('text=Arrived while watching');

  step('open a contact and add a note');
  await page.click('nav.main >> text=Contacts');
  await check('contacts');
  await page.click('text=Bob Builder');
  await page.waitForSelector('h1:has-text("Bob Builder")');
  await check('contact');
  await page.fill('#note', 'Called about the roof');
  await page.click('text=Add the note');
  await page.waitForSelector('.item:has-text("Called about the roof")');
  assert.ok(await page.isVisible('text=is its recipient') || await page.isVisible('text=is its actor'));

  step('merge and undo');
  await page.selectOption('#other', { label: 'Robert B (mailto:rob@work.example)' });
  await page.click('text=Merge into Bob Builder');
  await page.waitForSelector('text=Undo the merge');
  assert.ok(await page.isVisible('text=mailto:rob@work.example'));
  await page.click('text=Undo the merge');
  await page.waitForSelector('h1:has-text("Bob Builder")');
  assert.equal(await page.locator('text=Undo the merge').count(), 0);
  assert.equal(await page.locator('.chip:has-text("mailto:rob@work.example")').count(), 0);

  step('search and save a view');
  await page.fill('#q', 'roof');
  await page.keyboard.press('Enter');
  await page.waitForSelector('h2:has-text("Found")');
  await check('search');
  assert.ok(await page.isVisible('text=Called about the roof'));
  await page.fill('#vname', 'roofing');
  await page.click('text=Save the view');
  await page.waitForSelector('h1:has-text("View: roofing")');
  await check('view');
  const feedUrl = (await page.textContent('#feed-atom')).trim();
  const feed = await fetch(feedUrl, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(feed.status, 200);
  assert.match(await feed.text(), /Called about the roof/);

  step('resolve a conflict made by two devices');
  await page.click('nav.main >> text=Conflicts');
  await check('conflicts');
  await page.click('text=Shopping list');
  await page.waitForSelector('text=Other version');
  await check('conflict');
  await page.locator('form:has(input[name=keep][value="conflict-0"]) button').click();
  await page.waitForSelector('h2:has-text("History")');
  await check('item');
  const notes = await (await fetch(`${base}/atompub/${user}/Notes`, { headers: { authorization: `Bearer ${token}` } })).text();
  const shopping = notes.split('<entry').find((e) => e.includes('Shopping list'));
  assert.ok(shopping && !shopping.includes('<sx:conflicts>'), 'the feed shows the resolution');
  assert.match(shopping, /by="[^"]+\/web"/);

  step('files');
  await page.click('nav.main >> text=Files');
  await check('files');

  step('add and revoke a device');
  await page.click('nav.main >> text=Devices');
  await check('devices');
  await page.fill('#device', 'tablet');
  await page.click('text=Make a token');
  const newToken = (await page.textContent('#new-token')).trim();
  assert.match(await page.textContent('#agent-command'), new RegExp(`--token ${newToken}`));
  let probe = await fetch(`${base}/atompub`, { headers: { authorization: `Bearer ${newToken}` } });
  assert.equal(probe.status, 200);
  await page.click('button[aria-label="Revoke the token of tablet"]');
  await page.waitForSelector('h1:has-text("Devices")');
  probe = await fetch(`${base}/atompub`, { headers: { authorization: `Bearer ${newToken}` } });
  assert.equal(probe.status, 401);

  if (process.env.FM_GITHUB_API) {
    step('connect an OAuth connector through the provider\'s login page');
    await page.click('nav.main >> text=Connectors');
    await check('connectors');
    await page.selectOption('#kind', 'github');
    await page.fill('#coptions', `login=octocat\napi=${process.env.FM_GITHUB_API}`);
    await page.click('text=Add the connector');
    await page.waitForSelector('h1:has-text("Authorise github")');
    await check('authorise');
    await page.click('#authorise');
    // oidc-provider's own pages: its login form, then its consent form.
    await page.waitForSelector('input[name=login]', { timeout: 15000 });
    await page.fill('input[name=login]', 'alice');
    await page.fill('input[name=password]', 'any');
    await page.click('button[type=submit]');
    await page.waitForURL(/\/interaction\/|\/oauth\/callback/, { timeout: 15000 });
    if (!page.url().includes('/oauth/callback')) {
      await page.click('button[type=submit]');
    }
    await page.waitForURL(/\/oauth\/callback/, { timeout: 15000 });
    assert.match(await page.textContent('h1'), /connected|authori[sz]ed/i);
    await page.click('text=Back to your connectors');
    await page.waitForSelector('h2:has-text("github")');
    for (let i = 0; i < 50 && !(await page.isVisible('text=State: active')); i++) {
      await page.waitForTimeout(200);
      await page.reload();
    }
    assert.ok(await page.isVisible('text=State: active'), await page.textContent('main'));
  }

  step('feeds');
  await page.click('nav.main >> text=Feeds');
  await check('feeds');

  step('log out');
  await page.click('button:has-text("Log out")');
  await page.waitForSelector('h1:has-text("Log in")');
  await page.goto(`${base}/devices`);
  await page.waitForSelector('h1:has-text("Log in")');
} catch (e) {
  problems.push(`failed: ${e.stack || e}`);
  try { await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }); } catch {}
}
await browser.close();
for (const p of problems) console.log(`PROBLEM ${p}`);
process.exit(problems.length ? 1 : 0);
