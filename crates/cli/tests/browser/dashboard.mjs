// Loads skiff dashboard's page in headless Chromium (the system's browser, driven by
// playwright-core), waits until the service graph shows every expected node and an
// edge with traffic into each expected target, saves a screenshot, and prints what
// the graph holds as JSON on stdout. Exits non-zero, saying why, otherwise.
//
//   node dashboard.mjs URL SCREENSHOT.png NODE... -- EDGE_TARGET...
import { chromium } from 'playwright-core';

const [url, screenshot, ...rest] = process.argv.slice(2);
const split = rest.indexOf('--');
const nodes = split < 0 ? rest : rest.slice(0, split);
const targets = split < 0 ? [] : rest.slice(split + 1);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let state = null;
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url, { waitUntil: 'load' });
  try {
    await page.waitForFunction(
      ({ nodes, targets }) => {
        if (!window.skiff) return false;
        const s = window.skiff.state();
        const labels = new Set(s.nodes.map((n) => n.label));
        const moving = (t) =>
          s.edges.some((e) => e.rps > 0 && s.nodes.find((n) => n.id === e.target)?.label === t);
        // A few scrapes, so the charts of the side panel have points.
        const scrapes = window.skiff.graph ? window.skiff.graph.scrapes : 0;
        return scrapes >= 5 && nodes.every((n) => labels.has(n)) && targets.every(moving);
      },
      { nodes, targets },
      { timeout: 45000, polling: 500 },
    );
  } finally {
    state = await page.evaluate(() => (window.skiff ? window.skiff.state() : null));
  }
  // The page draws the side panels too; give the tables one refresh.
  await page.waitForSelector('#services tbody tr td.name', { timeout: 10000 });
  await page.waitForSelector('#proxies tbody tr td.name', { timeout: 10000 });
  await page.screenshot({ path: screenshot });
  if (errors.length) throw new Error(`the page threw: ${errors.join('; ')}`);
  const locks = await page.locator('#locks .lock').count();
  console.log(JSON.stringify({ ...state, locks }));
} catch (e) {
  console.error(`dashboard test: ${e.message}\ngraph state: ${JSON.stringify(state)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
