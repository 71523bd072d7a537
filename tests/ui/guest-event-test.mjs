// A card follows its instance's lifecycle events alone: `tests/ui.rs` gives the page a stopped
// VM booting the Linux guest, which powers itself off as soon as it is up. This script starts
// it through the API (as another client would), sees its card turn Running, then Stopped with
// the event's reason when the guest powers off, and checks that the page asked for the list
// not once meanwhile: the events websocket carried both changes. Environment as ui-test.mjs's,
// plus:
//
//   VGASHOT_UI_GUEST      the VM's name
//
// It exits 0 when every check passed, and prints one JSON line of timings.

import { check, env, stopwatch, until, withChromium } from './browser.mjs';

const base = env('VGASHOT_UI_URL');
const guest = env('VGASHOT_UI_GUEST');
/** A boot to the ready line and the power-off under TCG on a loaded 2-core machine. */
const GUEST_DEADLINE_MS = 120000;

const { step, total } = stopwatch();

const problems = [];
await withChromium(async (browser, certified) => {
  step('launch');
  const context = await browser.newContext({ ...certified, viewport: { width: 1000, height: 560 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  let listRequests = 0;
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === '/1.0/instances') listRequests += 1;
  });

  await page.goto(`${base}/ui/`);
  const card = page.locator(`li.card[data-name="${guest}"]`);
  const statusOf = () => card.locator('.status').textContent();
  await until(`${guest} Stopped`, async () => (await statusOf()) === 'Stopped');
  await until('the events websocket is open', async () =>
    (await page.locator('#connection').textContent()) === 'Live');
  step('card listed, events open');

  const before = listRequests;
  const start = await page.evaluate(async (name) => {
    const reply = await fetch(`/1.0/instances/${name}/state?project=default`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'start' }),
    });
    const envelope = await reply.json();
    const done = await fetch(`${envelope.operation}/wait?timeout=30`).then((r) => r.json());
    return done.metadata.status;
  }, guest);
  check(start === 'Success', `start: ${start}`);
  await until(`${guest}'s card shows Running`, async () => (await statusOf()) === 'Running');
  step('card shows Running');

  await until(`${guest}'s card shows Stopped after the guest powered off`, async () =>
    (await statusOf()) === 'Stopped', GUEST_DEADLINE_MS);
  const placeholder = await card.locator('.placeholder').textContent();
  check(placeholder === 'Stopped: the guest shut down', `placeholder ${placeholder}`);
  // Its thumbnail is now the last screen the history pinned, marked as such.
  await until(`${guest}'s card shows its last screen`, async () =>
    (await card.locator('.thumb').getAttribute('alt')) === `Last screen of ${guest}`);
  check(listRequests === before, `${listRequests - before} list requests while events were open`);
  step('card shows the guest shut down');

  check(problems.length === 0, problems.join('\n'));
  await context.close();
});
console.log(JSON.stringify({ ok: true, timings: total() }));
