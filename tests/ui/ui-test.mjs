// Drives vgashot's web page in Debian's headless Chromium with playwright-core (no browser
// download; the set-up is browser.mjs's). `tests/ui.rs` starts the daemon with a TLS listener,
// a running VM that shows colour bars and a stopped one, trusts a client certificate it made,
// and runs this script with:
//
//   VGASHOT_UI_URL        https://127.0.0.1:PORT (or `vgashot ui`'s http://127.0.0.1:PORT)
//   VGASHOT_UI_CERT/KEY   the trusted client certificate and its key (PEM), which Chromium
//                         presents through Playwright's `clientCertificates`; none through
//                         `vgashot ui`, which sets instead
//   VGASHOT_UI_ENTRY      the address `vgashot ui` printed, with its one-time token; the page is
//                         opened there instead of at VGASHOT_UI_URL/ui
//   VGASHOT_UI_RUNNING    the running VM's name; VGASHOT_UI_STOPPED the stopped one's;
//                         VGASHOT_UI_HEADLESS a running one without a display
//   VGASHOT_UI_BARS       JSON: the fixture's bar colours (vgashot_fixtures::BAR_COLOURS)
//   VGASHOT_UI_SCREEN     the running VM's screen size, `640x480`
//   VGASHOT_CHROMIUM      the browser (default /usr/bin/chromium)
//   VGASHOT_UI_SCREENSHOT optional: where to save a screenshot of the page (docs/ui.png)
//
// It exits 0 when every check passed, and prints one JSON line of timings.

import { readFile } from 'node:fs/promises';
import { check, env, stopwatch, until, withChromium } from './browser.mjs';

const base = env('VGASHOT_UI_URL');
const running = env('VGASHOT_UI_RUNNING');
const stopped = env('VGASHOT_UI_STOPPED');
const headless = env('VGASHOT_UI_HEADLESS');
const bars = JSON.parse(env('VGASHOT_UI_BARS'));
const [screenWidth, screenHeight] = env('VGASHOT_UI_SCREEN').split('x').map(Number);
const screenshot = process.env.VGASHOT_UI_SCREENSHOT;
const entry = process.env.VGASHOT_UI_ENTRY ?? `${base}/ui`;

/** How far a JPEG thumbnail's pixel may be from the exact colour, per channel. */
const TOLERANCE = 40;

const { step, total } = stopwatch();

const problems = [];
await withChromium(async (browser, certified) => {
  step('launch');
  const context = await browser.newContext({
    ...certified,
    acceptDownloads: true,
    viewport: { width: 1000, height: 560 },
  });
  const page = await context.newPage();
  // Any script error, or anything the Content-Security-Policy blocked, fails the test.
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) {
      problems.push(`CSP: ${message.text()}`);
    }
  });
  const thumbStatuses = [];
  const headlessScreens = [];
  page.on('response', (response) => {
    if (/\/console\?.*width=320/.test(response.url())) thumbStatuses.push(response.status());
    if (response.url().includes(`/instances/${headless}/console`)) {
      headlessScreens.push(response.url());
    }
  });

  // The page: `/ui` (or the token's address) redirects to `/ui/`, which comes with a strict
  // policy.
  const response = await page.goto(entry);
  check(response.ok(), `GET /ui/: ${response.status()}`);
  check(new URL(response.url()).pathname === '/ui/', `redirected to ${response.url()}`);
  const headers = response.headers();
  check(headers['content-type'] === 'text/html; charset=utf-8', headers['content-type']);
  check(/default-src 'none'/.test(headers['content-security-policy']), 'no CSP');
  if (process.env.VGASHOT_UI_ENTRY) {
    // The token became a session cookie that no script can read and no other site sends.
    const cookies = await context.cookies();
    check(cookies.length === 1 && cookies[0].name === 'vgashot_ui' && cookies[0].httpOnly &&
      cookies[0].sameSite === 'Strict' && cookies[0].path === '/', JSON.stringify(cookies));
    check((await page.evaluate(() => document.cookie)) === '', 'the cookie is readable');
    check(!page.url().includes('token='), `the token stays in the address: ${page.url()}`);
  }
  step('page loaded');

  const card = (name) => page.locator(`li.card[data-name="${name}"]`);
  const statusOf = (name) => card(name).locator('.status').textContent();
  await until(`${running} Running`, async () => (await statusOf(running)) === 'Running');
  await until(`${stopped} Stopped`, async () => (await statusOf(stopped)) === 'Stopped');
  check(await card(stopped).locator('.screen').isDisabled(), 'a stopped VM has no screen');
  check(await card(stopped).locator('.thumb').isHidden(), 'a stopped VM shows a placeholder');
  await until(`${headless} Running`, async () => (await statusOf(headless)) === 'Running');
  check(await card(headless).locator('.screen').isDisabled(), 'a VM without a display has no screen');
  const headlessText = await card(headless).locator('.placeholder').textContent();
  check(headlessText === 'Running: no display (vgashot.vga is none)', `placeholder: ${headlessText}`);
  step('cards listed');

  // The thumbnail shows the bars: read its pixels through a canvas (a blob: URL of this origin,
  // so the canvas is not tainted) in the middle of each bar, in the first two bands (the second
  // one inverted).
  const expected = [];
  for (let band = 0; band < 2; band += 1) {
    bars.forEach((colour, bar) => {
      const rgb = band % 2 === 1 ? colour.map((value) => 255 - value) : colour;
      expected.push({ bar, band, rgb });
    });
  }
  const pixelsOf = (name) =>
    card(name)
      .locator('.thumb')
      .evaluate((img, samples) => {
        if (!img.complete || img.naturalWidth === 0 || img.hidden) return { failure: 'no image' };
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const context2d = canvas.getContext('2d');
        context2d.drawImage(img, 0, 0);
        const pixels = samples.map(({ bar, band }) => {
          const x = Math.floor(((bar + 0.5) * canvas.width) / 8);
          const y = Math.floor(((band + 0.5) * canvas.height) / 8);
          return Array.from(context2d.getImageData(x, y, 1, 1).data.slice(0, 3));
        });
        return { width: img.naturalWidth, height: img.naturalHeight, src: img.src, pixels };
      }, expected);
  const showsBars = async (name) => {
    const seen = await pixelsOf(name);
    if (seen.failure) return seen;
    const wrong = expected.filter((sample, index) =>
      sample.rgb.some((value, channel) => Math.abs(value - seen.pixels[index][channel]) > TOLERANCE),
    );
    if (wrong.length > 0) return { failure: 'colours differ', seen, wrong };
    return seen;
  };
  const thumb = await until(`${running}'s thumbnail shows the bars`, () => showsBars(running));
  check(thumb.width === 320, `thumbnail width ${thumb.width}`);
  check(thumb.height === Math.round((320 * screenHeight) / screenWidth), `height ${thumb.height}`);
  check(thumb.src.startsWith('blob:'), `thumbnail src ${thumb.src}`);
  step('thumbnail shows the bars');

  // The screen is static: the refreshes that follow are conditional GETs answered 304.
  await until('thumbnail refreshes answered 304', async () =>
    thumbStatuses.filter((status) => status === 304).length >= 2, 10000);
  step('thumbnail refreshes are 304s');

  if (screenshot) {
    await page.screenshot({ path: screenshot });
    step('screenshot saved');
  }

  // The large view, by keyboard: the thumbnail is a button; Enter opens the live view.
  const open = page.getByRole('button', { name: `Open the live screen of ${running}` });
  await open.focus();
  await page.keyboard.press('Enter');
  const viewer = page.locator('#viewer');
  await until('the viewer opens', () => viewer.evaluate((dialog) => dialog.open));
  await until('the live view shows the screen at full size', () =>
    page.locator('#viewer-image').evaluate((img) =>
      img.naturalWidth === 640 && img.src.includes('stream=mjpeg')));
  step('live view open');

  // "Save PNG" downloads the plain PNG as NAME-TIMESTAMP.png.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Save PNG' }).click(),
  ]);
  const file = download.suggestedFilename();
  check(new RegExp(`^${running}-\\d{8}T\\d{6}Z\\.png$`).test(file), `download named ${file}`);
  const png = await readFile(await download.path());
  check(png.subarray(1, 4).toString() === 'PNG', 'the download is a PNG');
  check(png.readUInt32BE(16) === screenWidth && png.readUInt32BE(20) === screenHeight,
    `PNG of ${png.readUInt32BE(16)}x${png.readUInt32BE(20)}`);
  await page.keyboard.press('Escape');
  await until('the viewer closes', () => viewer.evaluate((dialog) => !dialog.open));
  // The dialog's close event comes a moment after `open` turns false.
  await until('the stream stops', () =>
    page.locator('#viewer-image').evaluate((img) => img.getAttribute('src') === null));
  step('PNG saved');

  // Stopped through the API (by another client, as far as the page knows): the card follows.
  const stop = await page.evaluate(async (name) => {
    const reply = await fetch(`/1.0/instances/${name}/state?project=default`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'stop', force: true }),
    });
    const envelope = await reply.json();
    const done = await fetch(`${envelope.operation}/wait?timeout=30`).then((r) => r.json());
    return done.metadata.status;
  }, running);
  check(stop === 'Success', `stop: ${stop}`);
  await until(`${running}'s card shows Stopped`, async () =>
    (await statusOf(running)) === 'Stopped', 15000);
  // Its card now shows the last screen of its history, marked with when and why.
  await until('the stopped VM shows its last screen, marked', async () =>
    /^Last screen, .+ \((change|stop)\)$/.test(await card(running).locator('.last-screen').textContent()));
  await until(`${running}'s last screen shows the bars`, () => showsBars(running));
  step('card shows Stopped with its last screen');

  // The timeline: every screenshot of the history, scrubbed with a slider, saved as a PNG.
  await page.getByRole('button', { name: `Screen history of ${running}` }).click();
  const timeline = page.locator('#timeline');
  await until('the timeline opens', () => timeline.evaluate((dialog) => dialog.open));
  await until('the timeline shows a screenshot', async () =>
    /^\d+ of \d+, .+ \((change|stop|manual)/.test(await page.locator('#timeline-caption').textContent()));
  await page.locator('#timeline-scrub').fill('0');
  await until('the first screenshot is shown', async () =>
    /^1 of \d+/.test(await page.locator('#timeline-caption').textContent()));
  const [frame] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#timeline-save').click(),
  ]);
  const frameFile = frame.suggestedFilename();
  check(new RegExp(`^${running}-\\d{8}T\\d{6}Z\\.png$`).test(frameFile), `frame named ${frameFile}`);
  const framePng = await readFile(await frame.path());
  check(framePng.subarray(1, 4).toString() === 'PNG', 'the saved frame is a PNG');
  await page.keyboard.press('Escape');
  await until('the timeline closes', () => timeline.evaluate((dialog) => !dialog.open));
  step('timeline scrubbed and a frame saved');

  // An error from the API shows on the card in the daemon's words: the page's Start request is
  // made stateful on its way, which the daemon refuses with a 400 error envelope.
  const statePath = `**/1.0/instances/${running}/state?*`;
  await page.route(statePath, (route) =>
    route.continue({ postData: JSON.stringify({ action: 'start', stateful: true }) }));
  await page.getByRole('button', { name: `Start ${running}` }).click();
  await until('the error envelope shows on the card', async () =>
    (await card(running).locator('.error').textContent()) ===
      'Start failed: Stateful start and stop are not supported', 15000);
  await page.unroute(statePath);
  step('errors shown');

  // The Start button starts it again, and the bars come back.
  await page.getByRole('button', { name: `Start ${running}` }).click();
  await until(`${running}'s card shows Running`, async () =>
    (await statusOf(running)) === 'Running', 30000);
  await until('the last-screen mark is gone', () => card(running).locator('.last-screen').isHidden());
  await until('the old error is gone', async () =>
    !(await card(running).locator('.error').isVisible()));
  await until(`${running}'s thumbnail shows the bars again`, () => showsBars(running), 60000);
  step('Start button started it');

  // All this while, the card of the VM without a display asked for no screen.
  check(headlessScreens.length === 0, `screens asked of ${headless}: ${headlessScreens}`);
  check(problems.length === 0, problems.join('\n'));
  await context.close();
});
console.log(JSON.stringify({ ok: true, timings: total() }));
