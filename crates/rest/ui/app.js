// vgashot's web page: every instance of a project as a card with a live thumbnail of its screen,
// Start and Stop buttons, and a large live view; a stopped VM's card shows its last recorded
// screen, and a timeline scrubs through a VM's screen history. It uses only the public API of the daemon that
// serves it, with the browser's own client certificate; no framework, no build step.
//
// Keeping it cheap: a thumbnail is refreshed about once a second and only while its card is on
// screen (IntersectionObserver) and the tab is visible, with `If-None-Match`, so an unchanged
// screen costs a 304 and no image decoding. The cards follow `/1.0/events` (lifecycle events)
// over a websocket: a start or an end of an instance, whoever or whatever caused it (a request,
// the guest powering off or panicking, QEMU dying), changes its card at once with the event's
// status and reason, and no request is made for it; an instance created or deleted reloads the
// list. Only while the websocket is down does the page poll the list instead.

'use strict';

const THUMB_WIDTH = 320;
const THUMB_INTERVAL_MS = 1000;
const THUMB_RETRY_MS = 5000;
const POLL_WITHOUT_EVENTS_MS = 5000;
/** The daemon's words for a VM without a display: its card stops asking for a screen. */
const NO_DISPLAY = 'Instance has no display';
const EVENTS_RETRY_MS = 5000;
const OPERATION_DEADLINE_MS = 120000;
const LIVE_FPS = 10;
const LIVE_QUALITY = 90;

const project = new URLSearchParams(location.search).get('project') || 'default';

const list = document.getElementById('instances');
const template = document.getElementById('card-template');
const notice = document.getElementById('notice');
const empty = document.getElementById('empty');
const connection = document.getElementById('connection');
const viewer = document.getElementById('viewer');
const viewerTitle = document.getElementById('viewer-title');
const viewerImage = document.getElementById('viewer-image');
const viewerError = document.getElementById('viewer-error');

/** The cards by instance name. */
const cards = new Map();
/** The card whose screen the large view shows, if it is open. */
let viewerCard = null;
/** Whether the events websocket is open (no poll while it is). */
let eventsOpen = false;
/** Lifecycle actions that carry an instance's new status and its reason in their context. */
const TRANSITIONS = new Set([
  'instance-started',
  'instance-stopped',
  'instance-shutdown',
  'instance-panicked',
  'instance-crashed',
]);

/** `path` with `params` and the page's project as its query string. */
function url(path, params = {}) {
  return `${path}?${new URLSearchParams({ ...params, project })}`;
}

/** The path of instance `name`, plus `rest`. */
function instancePath(name, rest = '') {
  return `/1.0/instances/${encodeURIComponent(name)}${rest}`;
}

/** Sends a request and returns its envelope; an error envelope becomes an Error with its text. */
async function api(method, path, body) {
  const init = { method, cache: 'no-store', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new Error(`cannot reach the daemon (${error.message})`);
  }
  const envelope = await response.json().catch(() => null);
  if (!response.ok || !envelope || envelope.type === 'error') {
    throw new Error(envelope?.error || `${response.status} ${response.statusText}`);
  }
  return envelope;
}

/** Sends a request that may start an operation, and waits until the operation ends. */
async function runOperation(method, path, body) {
  const envelope = await api(method, path, body);
  if (envelope.type !== 'async') {
    return envelope.metadata;
  }
  let operation = envelope.metadata;
  const deadline = Date.now() + OPERATION_DEADLINE_MS;
  while (operation.status_code < 200) {
    if (Date.now() > deadline) {
      throw new Error(`${operation.description}: not done after two minutes`);
    }
    operation = (await api('GET', `${envelope.operation}/wait?timeout=30`)).metadata;
  }
  if (operation.status_code !== 200) {
    throw new Error(operation.err || operation.status);
  }
  return operation;
}

/** Reads the error text of a failed image response (an Incus error envelope). */
async function errorText(response) {
  const envelope = await response.json().catch(() => null);
  return envelope?.error || `${response.status} ${response.statusText}`;
}

function show(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

// Cards -------------------------------------------------------------------------------------

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const card = cards.get(entry.target.dataset.name);
    if (!card) continue;
    card.visible = entry.isIntersecting;
    if (card.visible) refreshThumb(card);
  }
});

function makeCard(name) {
  const node = template.content.firstElementChild.cloneNode(true);
  node.dataset.name = name;
  const card = {
    name,
    node,
    status: '',
    reason: '',
    hasScreen: false,
    noDisplay: false,
    busy: false,
    visible: false,
    inFlight: false,
    etag: null,
    objectUrl: null,
    retryAt: 0,
    el: {
      name: node.querySelector('.name'),
      status: node.querySelector('.status'),
      screen: node.querySelector('.screen'),
      thumb: node.querySelector('.thumb'),
      placeholder: node.querySelector('.placeholder'),
      start: node.querySelector('.start'),
      stop: node.querySelector('.stop'),
      forceStop: node.querySelector('.force-stop'),
      history: node.querySelector('.history'),
      lastScreen: node.querySelector('.last-screen'),
      error: node.querySelector('.error'),
    },
  };
  card.el.name.textContent = name;
  card.el.thumb.alt = `Screen of ${name}`;
  card.el.screen.setAttribute('aria-label', `Open the live screen of ${name}`);
  card.el.start.setAttribute('aria-label', `Start ${name}`);
  card.el.stop.setAttribute('aria-label', `Stop ${name}`);
  card.el.forceStop.setAttribute('aria-label', `Force stop ${name}`);
  card.el.history.setAttribute('aria-label', `Screen history of ${name}`);
  card.el.history.addEventListener('click', () => openTimeline(card));
  card.el.screen.addEventListener('click', () => openViewer(card));
  card.el.start.addEventListener('click', () => act(card, 'Start', { action: 'start' }));
  // A clean shutdown (ACPI), stopped by force after 30 s by the daemon if the guest ignores it.
  card.el.stop.addEventListener('click', () => act(card, 'Stop', { action: 'stop', timeout: 30 }));
  card.el.forceStop.addEventListener('click', () =>
    act(card, 'Force stop', { action: 'stop', force: true }));
  observer.observe(node);
  return card;
}

function dropCard(card) {
  observer.unobserve(card.node);
  clearThumb(card);
  card.node.remove();
  cards.delete(card.name);
  if (viewerCard === card) viewer.close();
}

function clearThumb(card) {
  if (card.objectUrl) URL.revokeObjectURL(card.objectUrl);
  card.objectUrl = null;
  card.etag = null;
  card.el.thumb.removeAttribute('src');
  card.el.thumb.hidden = true;
  card.el.placeholder.hidden = false;
  card.el.lastScreen.hidden = true;
}

/**
 * Brings a card up to date with the instance's `status`, as the list or a lifecycle event reported
 * it; `reason` (why it stopped or failed) comes with events only, and is kept until the status
 * changes.
 */
function updateCard(card, status, reason, config) {
  const hadScreen = card.hasScreen;
  if (reason !== undefined) card.reason = reason;
  else if (status !== card.status) card.reason = '';
  card.status = status;
  // A VM without a display (`vgashot.vga: none`) has no screen to poll, running or not; a
  // thumbnail answered "Instance has no display" says so too, until the VM stops (and its
  // config may change).
  if (status === 'Stopped') card.noDisplay = false;
  card.noDisplay ||= config?.['vgashot.vga'] === 'none';
  card.hasScreen = (status === 'Running' || status === 'Frozen') && !card.noDisplay;
  card.node.dataset.status = status;
  card.node.dataset.display = card.noDisplay ? 'none' : '';
  card.el.status.textContent = status;
  card.el.status.dataset.status = status;
  card.el.screen.disabled = !card.hasScreen;
  if (!card.hasScreen) {
    // A card that just lost its screen (or never had a picture) shows the last one recorded.
    if (hadScreen || !card.objectUrl) {
      clearThumb(card);
      if (!card.noDisplay) showLastScreen(card);
    }
    card.el.placeholder.textContent = card.noDisplay
      ? `${status}: no display (vgashot.vga is none)`
      : `${status}: ${card.reason || 'no screen'}`;
  } else if (!hadScreen) {
    card.el.lastScreen.hidden = true;
    card.el.thumb.alt = `Screen of ${card.name}`;
    card.el.placeholder.textContent = 'Loading the screen…';
    card.retryAt = 0;
    refreshThumb(card);
  }
  updateButtons(card);
}

function updateButtons(card) {
  const stopped = card.status === 'Stopped' || card.status === 'Error';
  card.el.start.disabled = card.busy || !stopped;
  card.el.stop.disabled = card.busy || stopped;
  card.el.forceStop.disabled = card.busy || stopped;
  card.node.setAttribute('aria-busy', String(card.busy));
}

/** Starts or stops an instance, follows the operation, and shows its error on the card. */
async function act(card, label, body) {
  card.busy = true;
  show(card.el.error, '');
  updateButtons(card);
  try {
    await runOperation('PUT', url(instancePath(card.name, '/state')), body);
  } catch (error) {
    show(card.el.error, `${label} failed: ${error.message}`);
  } finally {
    card.busy = false;
    updateButtons(card);
    await loadList();
  }
}

/** Fetches the card's thumbnail unless the screen is unchanged (a 304 for the known ETag). */
async function refreshThumb(card) {
  if (card.inFlight || !card.hasScreen || document.hidden || Date.now() < card.retryAt) return;
  card.inFlight = true;
  try {
    const headers = card.etag ? { 'If-None-Match': card.etag } : {};
    const path = url(instancePath(card.name, '/console'), {
      type: 'vga',
      width: THUMB_WIDTH,
      format: 'jpeg',
    });
    const response = await fetch(path, { cache: 'no-store', headers });
    if (response.status === 304) return;
    if (!response.ok) {
      const reason = await errorText(response);
      if (response.status === 400 && reason === NO_DISPLAY) {
        card.noDisplay = true;
        updateCard(card, card.status);
        return;
      }
      // Most likely the instance stopped meanwhile: its lifecycle event says so (the list,
      // while the websocket is down); retry later otherwise.
      card.retryAt = Date.now() + THUMB_RETRY_MS;
      if (card.hasScreen && !card.objectUrl) {
        card.el.placeholder.textContent = `No screen: ${reason}`;
      }
      if (!eventsOpen) scheduleList();
      return;
    }
    const blob = await response.blob();
    if (!card.hasScreen) return;
    const previous = card.objectUrl;
    card.objectUrl = URL.createObjectURL(blob);
    card.etag = response.headers.get('ETag');
    card.el.thumb.src = card.objectUrl;
    card.el.thumb.hidden = false;
    card.el.placeholder.hidden = true;
    if (previous) URL.revokeObjectURL(previous);
  } catch {
    // The connection dropped: the next tick tries again.
  } finally {
    card.inFlight = false;
  }
}

function tickThumbs() {
  if (!document.hidden) {
    for (const card of cards.values()) {
      if (card.visible) refreshThumb(card);
    }
  }
  setTimeout(tickThumbs, THUMB_INTERVAL_MS);
}

// The list ----------------------------------------------------------------------------------

let listInFlight = false;
let listAgain = false;
let listTimer = null;

/** Reads the instances and brings the cards up to date, keeping their nodes (and focus). */
async function loadList() {
  if (listInFlight) {
    listAgain = true;
    return;
  }
  listInFlight = true;
  try {
    const envelope = await api('GET', url('/1.0/instances', { recursion: 1 }));
    render(envelope.metadata || []);
    show(notice, '');
  } catch (error) {
    show(notice, `Cannot list the instances: ${error.message}`);
  } finally {
    listInFlight = false;
    if (listAgain) {
      listAgain = false;
      loadList();
    }
  }
}

/** Loads the list soon, once for a burst of events. */
function scheduleList(delay = 100) {
  clearTimeout(listTimer);
  listTimer = setTimeout(loadList, delay);
}

function render(instances) {
  instances.sort((a, b) => a.name.localeCompare(b.name));
  const names = new Set(instances.map((instance) => instance.name));
  for (const card of [...cards.values()]) {
    if (!names.has(card.name)) dropCard(card);
  }
  instances.forEach((instance, index) => {
    let card = cards.get(instance.name);
    if (!card) {
      card = makeCard(instance.name);
      cards.set(instance.name, card);
    }
    // Moving a node that holds the focus would drop it: move only what is out of place.
    if (list.children[index] !== card.node) {
      list.insertBefore(card.node, list.children[index] || null);
    }
    updateCard(card, instance.status, undefined, instance.config);
  });
  empty.hidden = instances.length > 0;
}

/** The fallback while the events websocket is down: the list, every few seconds. */
function pollList() {
  if (!document.hidden && !eventsOpen) loadList();
  setTimeout(pollList, POLL_WITHOUT_EVENTS_MS);
}

/** Applies one lifecycle event: a transition changes its card, anything else reloads the list. */
function onLifecycle(metadata) {
  const card = cards.get(metadata?.name);
  const status = metadata?.context?.status;
  if (card && TRANSITIONS.has(metadata.action) && status) {
    updateCard(card, status, metadata.context.reason || '');
  } else {
    scheduleList();
  }
}

/** Follows `/1.0/events` (lifecycle events), reloading the list once on every (re)connection. */
function listen() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const path = url('/1.0/events', { type: 'lifecycle' });
  let socket;
  try {
    socket = new WebSocket(`${scheme}//${location.host}${path}`);
  } catch {
    setTimeout(listen, EVENTS_RETRY_MS);
    return;
  }
  socket.addEventListener('open', () => {
    eventsOpen = true;
    connection.textContent = 'Live';
    scheduleList(0);
  });
  socket.addEventListener('message', (message) => {
    let event = null;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (event?.type === 'lifecycle') onLifecycle(event.metadata);
  });
  socket.addEventListener('close', () => {
    eventsOpen = false;
    connection.textContent = `Updating every ${POLL_WITHOUT_EVENTS_MS / 1000} s`;
    setTimeout(listen, EVENTS_RETRY_MS);
  });
}

// The large view ----------------------------------------------------------------------------

function openViewer(card) {
  if (!card.hasScreen) return;
  viewerCard = card;
  viewerTitle.textContent = `${card.name}: live screen`;
  viewerImage.alt = `Live screen of ${card.name}`;
  show(viewerError, '');
  stopStream();
  startStream();
  viewer.showModal();
}

/**
 * The live view is an `<img>` of the MJPEG stream: the daemon sends a frame when the screen
 * changes, at most `LIVE_FPS` a second, from the captures every other viewer shares. The stream
 * is closed (by dropping the `src`) when the view closes or the tab is hidden.
 */
function startStream() {
  if (!viewerCard || document.hidden) return;
  viewerImage.src = url(instancePath(viewerCard.name, '/console'), {
    type: 'vga',
    stream: 'mjpeg',
    fps: LIVE_FPS,
    quality: LIVE_QUALITY,
  });
}

function stopStream() {
  viewerImage.removeAttribute('src');
}

viewerImage.addEventListener('error', () => {
  if (viewerCard && viewerImage.getAttribute('src')) {
    show(viewerError, 'The screen stream ended (is the instance still running?)');
  }
});

viewer.addEventListener('close', () => {
  stopStream();
  viewerCard = null;
});

document.getElementById('viewer-close').addEventListener('click', () => viewer.close());

/** A timestamp for file names: `20250102T030405Z`. */
function stamp(date) {
  return date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
}

document.getElementById('viewer-save').addEventListener('click', async () => {
  if (!viewerCard) return;
  const name = viewerCard.name;
  show(viewerError, '');
  try {
    const response = await fetch(url(instancePath(name, '/console'), { type: 'vga' }), {
      cache: 'no-store',
    });
    if (!response.ok) throw new Error(await errorText(response));
    const href = URL.createObjectURL(await response.blob());
    const link = document.createElement('a');
    link.href = href;
    link.download = `${name}-${stamp(new Date())}.png`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60000);
  } catch (error) {
    show(viewerError, `Cannot save the screen: ${error.message}`);
  }
});

// The screen history -----------------------------------------------------------------------

/**
 * A stopped VM's card shows the last screen its history holds (`console?type=vga&at=now`),
 * marked as such with when and why it was taken (the screenshot `Content-Location` names).
 */
async function showLastScreen(card) {
  try {
    const response = await fetch(url(instancePath(card.name, '/console'), {
      type: 'vga',
      at: new Date().toISOString(),
      width: THUMB_WIDTH,
      format: 'jpeg',
    }), { cache: 'no-store' });
    if (!response.ok || card.hasScreen) return;
    const blob = await response.blob();
    const shotUrl = response.headers.get('Content-Location');
    const shot = shotUrl ? (await api('GET', url(shotUrl))).metadata : null;
    if (card.hasScreen) return;
    card.objectUrl = URL.createObjectURL(blob);
    card.el.thumb.src = card.objectUrl;
    card.el.thumb.alt = `Last screen of ${card.name}`;
    card.el.thumb.hidden = false;
    card.el.placeholder.hidden = true;
    card.el.lastScreen.textContent = shot
      ? `Last screen, ${new Date(shot.taken_at).toLocaleString()} (${shot.reason})`
      : 'Last screen';
    card.el.lastScreen.hidden = false;
  } catch {
    // No history (never ran, or recording disabled): the placeholder stays.
  }
}

const timeline = document.getElementById('timeline');
const timelineTitle = document.getElementById('timeline-title');
const timelineImage = document.getElementById('timeline-image');
const timelineScrub = document.getElementById('timeline-scrub');
const timelineCaption = document.getElementById('timeline-caption');
const timelineError = document.getElementById('timeline-error');
/** The instance and screenshots the timeline shows. */
let timelineShots = { name: '', shots: [] };

/** Opens a VM's timeline: every screenshot of its history, scrubbed with a slider. */
async function openTimeline(card) {
  timelineTitle.textContent = `${card.name}: screen history`;
  show(timelineError, '');
  timelineImage.removeAttribute('src');
  timeline.showModal();
  try {
    const shots = (await api('GET', url(instancePath(card.name, '/screenshots'), {
      recursion: 1,
    }))).metadata;
    timelineShots = { name: card.name, shots };
    timelineScrub.max = String(Math.max(shots.length - 1, 0));
    timelineScrub.value = timelineScrub.max;
    timelineScrub.disabled = shots.length === 0;
    showTimelineShot();
  } catch (error) {
    show(timelineError, `Cannot read the history: ${error.message}`);
  }
}

function selectedShot() {
  return timelineShots.shots[Number(timelineScrub.value)];
}

function showTimelineShot() {
  const shot = selectedShot();
  if (!shot) {
    timelineCaption.textContent = 'No screenshot recorded yet';
    return;
  }
  const path = instancePath(timelineShots.name, `/screenshots/${shot.id}/image`);
  timelineImage.src = url(path, { width: Math.min(shot.width, 800), format: 'jpeg' });
  timelineImage.alt = `Screen of ${timelineShots.name} at ${shot.taken_at}`;
  const note = shot.note ? `: ${shot.note}` : '';
  timelineCaption.textContent = `${Number(timelineScrub.value) + 1} of ${timelineShots.shots.length}, `
    + `${new Date(shot.taken_at).toLocaleString()} (${shot.reason}${shot.pinned ? ', pinned' : ''})${note}`;
}

timelineScrub.addEventListener('input', showTimelineShot);
document.getElementById('timeline-close').addEventListener('click', () => timeline.close());
document.getElementById('timeline-save').addEventListener('click', () => {
  const shot = selectedShot();
  if (!shot) return;
  const link = document.createElement('a');
  link.href = url(instancePath(timelineShots.name, `/screenshots/${shot.id}/image`));
  link.download = `${timelineShots.name}-${stamp(new Date(shot.taken_at))}.png`;
  document.body.append(link);
  link.click();
  link.remove();
});

// Start -------------------------------------------------------------------------------------

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    stopStream();
  } else {
    startStream();
    loadList();
    for (const card of cards.values()) {
      if (card.visible) refreshThumb(card);
    }
  }
});

document.getElementById('project-name').textContent = project;
document.title = `vgashot: ${project}`;
loadList();
listen();
tickThumbs();
setTimeout(pollList, POLL_WITHOUT_EVENTS_MS);
