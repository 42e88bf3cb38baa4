// Full page loads in headless Chromium (navigation start to the load event), for
// benches/people.py part 8: FM_BASE, FM_TOKEN (a device token, sent as a Bearer header),
// FM_PATHS (newline-separated paths), FM_PEERS (where scripts/deps put playwright-core).
// Prints one JSON line: {"path": [ms, …], …}.
import { createRequire } from 'node:module';

const require = createRequire(process.env.FM_PEERS + '/node_modules/');
const { chromium } = require('playwright-core');

const browser = await chromium.launch({
  executablePath: process.env.FM_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({
  viewport: { width: 1280, height: 900 },
  extraHTTPHeaders: { Authorization: `Bearer ${process.env.FM_TOKEN}` },
});
const page = await context.newPage();
const out = {};
for (const path of process.env.FM_PATHS.split('\n').filter(Boolean)) {
  const r = await page.goto(process.env.FM_BASE + path, { waitUntil: 'load' });
  if (r.status() !== 200) throw new Error(`${path}: ${r.status()}`);
  const ms = await page.evaluate(() => {
    const [n] = performance.getEntriesByType('navigation');
    return n.loadEventEnd - n.startTime;
  });
  (out[path.split('?')[0].replace(/\/contacts\/.*/, '/contacts/{id}')] ??= []).push(ms);
}
console.log(JSON.stringify(out));
await browser.close();
