// Remakes the README's picture of the web page from `cargo xtask demo --pictures`, which runs the
// daemon with its two VMs and a `vgashot ui`, and runs this script with:
//
//   VGASHOT_UI_ENTRY       the address `vgashot ui` printed, with its one-time token
//   VGASHOT_UI_RUNNING     the running VMs' names, comma-separated
//   VGASHOT_UI_SCREENSHOT  where to save the picture (docs/ui.png)
//   VGASHOT_CHROMIUM       the browser (default /usr/bin/chromium)
//
// It waits until every running VM's card shows its thumbnail, then saves the page.

import { env, until, withChromium } from './browser.mjs';

const entry = env('VGASHOT_UI_ENTRY');
const running = env('VGASHOT_UI_RUNNING').split(',');
const screenshot = env('VGASHOT_UI_SCREENSHOT');
process.env.VGASHOT_UI_URL ??= new URL(entry).origin;

await withChromium(async (browser, options) => {
  const context = await browser.newContext({ ...options, viewport: { width: 1000, height: 560 } });
  const page = await context.newPage();
  await page.goto(entry);
  for (const name of running) {
    await until(`${name}'s thumbnail`, () =>
      page.locator(`li.card[data-name="${name}"] .thumb`).evaluate((img) =>
        !img.hidden && img.complete && img.naturalWidth > 0));
  }
  await page.screenshot({ path: screenshot });
  await context.close();
});
console.log(JSON.stringify({ ok: true, screenshot }));
