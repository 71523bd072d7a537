// What the browser scripts share: their environment, checks that fail with a reason, polling
// with a deadline, timings, and Debian's headless Chromium (playwright-core, no browser
// download) with a browser context that presents the trusted client certificate to the daemon,
// as a user's browser with the certificate imported does. The Rust side (tests/support/browser.rs)
// sets VGASHOT_UI_URL (https://127.0.0.1:PORT), VGASHOT_UI_CERT and VGASHOT_UI_KEY (PEM) and
// VGASHOT_CHROMIUM. Through `vgashot ui` VGASHOT_UI_URL is http://127.0.0.1:PORT and there is no
// certificate: the browser then presents none.

import { chromium } from 'playwright-core';

export const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Polls `probe` until it returns a truthy value; the last value or error explains a timeout. */
export async function until(what, probe, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last && !last.failure) return last;
    } catch (error) {
      last = error.message;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not after ${timeoutMs} ms (${JSON.stringify(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Milliseconds per named step, logged as they end. */
export function stopwatch() {
  const timings = {};
  const started = Date.now();
  let mark = started;
  return {
    timings,
    step(name) {
      const now = Date.now();
      timings[name] = now - mark;
      mark = now;
      console.error(`${name} (${timings[name]} ms)`);
    },
    total() {
      timings.total = Date.now() - started;
      return timings;
    },
  };
}

/** Runs `body(browser, contextOptions)` with Chromium, and closes it whatever happens. */
export async function withChromium(body) {
  const browser = await chromium.launch({
    executablePath: env('VGASHOT_CHROMIUM', '/usr/bin/chromium'),
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const base = env('VGASHOT_UI_URL');
    if (!process.env.VGASHOT_UI_CERT) return await body(browser, {});
    return await body(browser, {
      clientCertificates: [
        { origin: base, certPath: env('VGASHOT_UI_CERT'), keyPath: env('VGASHOT_UI_KEY') },
      ],
      ignoreHTTPSErrors: true,
    });
  } finally {
    await browser.close();
  }
}
