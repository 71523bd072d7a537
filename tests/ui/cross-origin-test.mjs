// A web site the user visits tries to use the daemon through the user's browser, which holds a
// trusted client certificate and presents it to the daemon for any page, as it sends a cookie.
// `tests/attacks/browser.rs` starts the daemon with a TLS listener and a running VM, trusts the
// certificate, and runs this script with (besides browser.mjs's):
//
//   VGASHOT_UI_RUNNING    a running VM, whose screen the foreign page tries to show
//   VGASHOT_UI_FORBIDDEN  the name of the VM the foreign page tries to create and start
//
// The foreign page is served by this script, on another loopback port (another origin). From
// it: a `no-cors` `text/plain` POST that would create and start a VM (a "simple" request, which
// needs no preflight), a `fetch` of `/1.0/instances`, a websocket to `/1.0/events`, and `<img>`s
// of a screenshot and of the MJPEG stream. Every one of them must be refused by the daemon with
// a 403, as seen on the wire, and none may open or load. Meanwhile the daemon's own page keeps
// working in the same browser. Exits 0 when every check passed; prints one JSON line.

import http from 'node:http';
import { check, env, stopwatch, until, withChromium } from './browser.mjs';

const base = env('VGASHOT_UI_URL');
const running = env('VGASHOT_UI_RUNNING');
const forbidden = env('VGASHOT_UI_FORBIDDEN');
const { step, total } = stopwatch();

// The other web site: one empty page, on another port of the loopback.
const site = http.createServer((request, response) => {
  response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  response.end('<!doctype html><title>another site</title><p>Nothing to see here.');
});
await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
const elsewhere = `http://127.0.0.1:${site.address().port}`;

/** What the page at `origin` gets when it tries each way in; runs in the browser. */
async function attempts({ base, running, forbidden }) {
  const outcome = {};
  const created = JSON.stringify({
    name: forbidden,
    type: 'virtual-machine',
    source: { type: 'none' },
    start: true,
  });
  try {
    const reply = await fetch(`${base}/1.0/instances`, {
      method: 'POST',
      mode: 'no-cors',
      credentials: 'include',
      headers: { 'Content-Type': 'text/plain' },
      body: created,
    });
    // Opaque whatever the daemon answered: the wire tells (below).
    outcome.post = reply.type;
  } catch (error) {
    outcome.post = `failed: ${error.message}`;
  }
  try {
    const reply = await fetch(`${base}/1.0/instances`, { credentials: 'include' });
    outcome.list = `read ${reply.status}: ${await reply.text()}`;
  } catch (error) {
    outcome.list = 'refused';
  }
  outcome.events = await new Promise((resolve) => {
    const socket = new WebSocket(`${base.replace(/^https:/, 'wss:')}/1.0/events`);
    socket.onopen = () => {
      resolve('open');
      socket.close();
    };
    socket.onclose = (event) => resolve(`closed ${event.code}`);
  });
  const image = (path) =>
    new Promise((resolve) => {
      const img = new Image();
      img.onload = () => resolve(`loaded ${img.naturalWidth}x${img.naturalHeight}`);
      img.onerror = () => resolve('error');
      img.src = `${base}${path}`;
    });
  outcome.screenshot = await image(`/1.0/instances/${running}/console?type=vga`);
  outcome.stream = await image(`/1.0/instances/${running}/console?type=vga&stream=mjpeg`);
  return outcome;
}

const report = {};
await withChromium(async (browser, certified) => {
  step('launch');
  const context = await browser.newContext(certified);
  const foreign = await context.newPage();

  // What the daemon answered each request of the foreign page, as seen on the wire through the
  // DevTools protocol: also for answers the page cannot read (opaque, refused by CORS, an image
  // that failed, a websocket handshake that failed).
  const answered = [];
  const sent = new Map();
  const pathOf = (url) => {
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  };
  const devtools = await context.newCDPSession(foreign);
  devtools.on('Network.requestWillBeSent', ({ requestId, request }) => {
    if (request.url.startsWith(base)) sent.set(requestId, `${request.method} ${pathOf(request.url)}`);
  });
  devtools.on('Network.responseReceivedExtraInfo', ({ requestId, statusCode }) => {
    if (sent.has(requestId)) answered.push(`${sent.get(requestId)} ${statusCode}`);
  });
  devtools.on('Network.webSocketCreated', ({ requestId, url }) => {
    if (url.startsWith(base.replace(/^https:/, 'wss:'))) sent.set(requestId, `WS ${pathOf(url)}`);
  });
  devtools.on('Network.webSocketHandshakeResponseReceived', ({ requestId, response }) => {
    if (sent.has(requestId)) answered.push(`${sent.get(requestId)} ${response.status}`);
  });
  // Chromium's Opaque Response Blocking may stop an <img>'s JSON answer before DevTools reports
  // its status; such a request is known to have been answered, and every status DevTools did
  // report is checked below.
  const blocked = new Set();
  devtools.on('Network.loadingFailed', ({ requestId, errorText }) => {
    if (sent.has(requestId) && errorText === 'net::ERR_BLOCKED_BY_ORB') blocked.add(sent.get(requestId));
  });
  // A refused handshake has no response event, only this error.
  devtools.on('Network.webSocketFrameError', ({ requestId, errorMessage }) => {
    const status = /Unexpected response code: (\d+)/.exec(errorMessage);
    if (sent.has(requestId)) answered.push(`${sent.get(requestId)} ${status?.[1] ?? errorMessage}`);
  });
  await devtools.send('Network.enable');

  await foreign.goto(`${elsewhere}/`);
  const outcome = await foreign.evaluate(attempts, { base, running, forbidden });
  report.foreign = outcome;
  check(outcome.post === 'opaque', `the no-cors POST: ${outcome.post}`);
  check(outcome.list === 'refused', `the fetch of /1.0/instances: ${outcome.list}`);
  check(outcome.events === 'closed 1006', `the websocket to /1.0/events: ${outcome.events}`);
  check(outcome.screenshot === 'error', `the screenshot <img>: ${outcome.screenshot}`);
  check(outcome.stream === 'error', `the stream <img>: ${outcome.stream}`);
  // Each request reached the daemon, and each got a 403.
  const expected = [
    'POST /1.0/instances 403',
    'GET /1.0/instances 403',
    'WS /1.0/events 403',
    `GET /1.0/instances/${running}/console?type=vga 403`,
    `GET /1.0/instances/${running}/console?type=vga&stream=mjpeg 403`,
  ];
  // Bounded generously: DevTools reports the answers after the page saw them, late on a loaded
  // machine.
  const seen = (line) => answered.includes(line) || blocked.has(line.replace(/ 403$/, ''));
  await until('every answer seen', async () =>
    expected.every(seen) || { failure: answered, blocked: [...blocked] }, 20000);
  report.answered = answered;
  check(answered.every((line) => expected.includes(line)), `answers: ${JSON.stringify(answered)}`);
  step('the foreign page got nothing');

  // The daemon's own page, in the same browser, meanwhile.
  const own = await context.newPage();
  const page = await own.goto(`${base}/ui/`);
  check(page.ok(), `GET /ui/: ${page.status()}`);
  const card = own.locator(`li.card[data-name="${running}"] .status`);
  await until(`${running} Running on the page`, async () => (await card.textContent()) === 'Running');
  const same = await own.evaluate(async () => {
    const list = await fetch('/1.0/instances').then((reply) => reply.status);
    const events = await new Promise((resolve) => {
      const socket = new WebSocket(`wss://${location.host}/1.0/events`);
      socket.onopen = () => {
        resolve('open');
        socket.close();
      };
      socket.onclose = (event) => resolve(`closed ${event.code}`);
    });
    return { list, events };
  });
  report.own = same;
  check(same.list === 200 && same.events === 'open', `the page's own requests: ${JSON.stringify(same)}`);
  step('the own page works');
  await context.close();
});
site.close();
console.log(JSON.stringify({ ok: true, ...report, timings: total() }));
