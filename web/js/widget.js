// Samtal as a Matrix widget (web/widget.html). The Matrix client (Element) loads this page in an iframe
// with the widget URL's template variables filled in; the page
//   1. speaks the Matrix widget API with the client over postMessage: answers `capabilities`,
//      `supported_api_versions`, `notify_capabilities`, `visibility` and `im.vector.hangup`; sends
//      `content_loaded`, `supported_api_versions` and `set_always_on_screen`;
//   2. derives the Samtal room from the Matrix room id (samtalRoomFor below) and embeds that meeting
//      (external_api.mjs) under the user's Matrix display name, passing the Matrix room id along
//      (`matrix_room`, window.samtal.matrixRoomId in the meeting frame).
//
// Widget URL parameters (any one spelling each): matrixRoomId | matrix_room_id, userId | matrix_user_id,
// displayName | matrix_display_name, widgetId (added by Element), parentUrl (added by Element); a join
// token for servers with [auth] may be put in the fragment (#jwt=…).
// Widget API messages are accepted only from the parent window at the client's origin, which must be
// this server's own or one of [embed] allowed_origins (the server's frame-ancestors CSP enforces that too).
// The meeting gets the widget's language (i18n.js: a choice saved on this server's pages, else Element's
// client language, else the browser's).

import { SamtalMeeting } from '../external_api.mjs';
import { normalizeOrigin, originAllowed } from './embed.js';
import { language, localize, t } from './i18n.js';

/** Widget API versions this widget speaks. */
const SUPPORTED_VERSIONS = ['0.0.1', '0.0.2', 'org.matrix.msc2871'];
/** Capabilities asked for: keep the call visible (picture in picture) when the user leaves the room view. */
const CAPABILITIES = ['m.always_on_screen'];
const REQUEST_TIMEOUT_MS = 10_000;

// ---- the room mapping ----

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
  0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
  0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of the UTF-8 bytes of `text`, as lower-case hex (works without crypto.subtle, on plain http too). */
export function sha256Hex(text) {
  const bytes = new TextEncoder().encode(text);
  const bitLength = bytes.length * 8;
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 2 ** 32));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    const add = [a, b, c, d, e, f, g, hh];
    for (let i = 0; i < 8; i++) h[i] = (h[i] + add[i]) >>> 0;
  }
  return [...h].map((x) => x.toString(16).padStart(8, '0')).join('');
}

/**
 * The Samtal room of a Matrix room: "mx-" and the first 32 hex digits (128 bits) of the SHA-256 of the
 * room id, e.g. "!abc:example.org" -> "mx-…". Deterministic (everyone in the Matrix room meets in the
 * same Samtal room), always a valid room name (35 characters of [a-z0-9-]), and it does not show the
 * Matrix room id in URLs or logs. Reproduce it with
 *   printf '%s' '!abc:example.org' | sha256sum | cut -c1-32
 */
export function samtalRoomFor(matrixRoomId) {
  return `mx-${sha256Hex(matrixRoomId).slice(0, 32)}`;
}

// ---- widget URL parameters ----

/** The first of `names` that has a value, skipping template variables the client did not fill in. */
function param(q, ...names) {
  for (const n of names) {
    const v = q.get(n);
    if (v && v.trim() && !/^\$[A-Za-z0-9_.]+$/.test(v.trim())) return v.trim();
  }
  return '';
}

export function readWidgetParams(search = window.location.search) {
  const q = new URLSearchParams(search);
  const matrixRoomId = param(q, 'matrixRoomId', 'matrix_room_id', 'roomId');
  const userId = param(q, 'userId', 'matrix_user_id');
  let displayName = param(q, 'displayName', 'matrix_display_name');
  if (!displayName && userId) displayName = userId.replace(/^@/, '').split(':')[0];
  return {
    matrixRoomId,
    userId,
    displayName: (displayName || t('widget.matrixUser')).slice(0, 64),
    widgetId: param(q, 'widgetId', 'matrix_widget_id') || null,
    parentUrl: param(q, 'parentUrl') || null,
    jwt: new URLSearchParams(window.location.hash.replace(/^#/, '')).get('jwt') || null,
    theme: param(q, 'theme', 'org.matrix.msc2873.client_theme') || null,
    language: param(q, 'lang', 'org.matrix.msc2873.client_language') || null,
  };
}

// ---- the widget API ----

const params = readWidgetParams();
const state = {
  widgetId: params.widgetId,
  clientOrigin: null,
  allowed: null, // [embed] allowed_origins once /client-config.json is loaded
  requested: CAPABILITIES.slice(),
  approved: null,
  clientVersions: null,
  contentLoaded: null, // the client's answer to content_loaded: 'ok', 'error: …' or null
  log: [], // every widget API message in and out, for tests and debugging
  meeting: null,
  room: params.matrixRoomId ? samtalRoomFor(params.matrixRoomId) : null,
};
const pending = new Map(); // requestId -> {resolve, reject, timer}
let nextId = 0;

function postToClient(message) {
  if (!state.clientOrigin) return false;
  state.log.push({ dir: 'out', message });
  window.parent.postMessage(message, state.clientOrigin);
  return true;
}

/** Sends a fromWidget request; resolves with the client's `response`. */
function request(action, data = {}) {
  if (!state.widgetId || !state.clientOrigin) return Promise.reject(new Error('the Matrix client is not known yet'));
  const requestId = `samtal-${Date.now()}-${nextId++}`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(requestId);
      reject(new Error(`${action}: no answer from the Matrix client`));
    }, REQUEST_TIMEOUT_MS);
    pending.set(requestId, { resolve, reject, timer });
    postToClient({ api: 'fromWidget', widgetId: state.widgetId, requestId, action, data });
  });
}

function reply(req, response) {
  postToClient({ ...req, response });
}

const errorResponse = (message) => ({ error: { message } });

function onToWidget(req) {
  switch (req.action) {
    case 'capabilities':
      reply(req, { capabilities: state.requested });
      break;
    case 'notify_capabilities':
      state.approved = Array.isArray(req.data?.approved) ? req.data.approved : [];
      reply(req, {});
      break;
    case 'supported_api_versions':
      reply(req, { supported_versions: SUPPORTED_VERSIONS });
      break;
    case 'visibility':
    case 'theme_change':
    case 'language_change':
      reply(req, {});
      break;
    case 'im.vector.hangup':
      if (state.meeting) state.meeting.executeCommand('hangup');
      reply(req, {});
      break;
    default:
      reply(req, errorResponse(`Unknown or unsupported action: ${req.action}`));
  }
}

function onMessage(ev) {
  if (ev.source !== window.parent || window.parent === window) return;
  const msg = ev.data;
  if (!msg || typeof msg !== 'object' || typeof msg.action !== 'string' || !msg.requestId) return;
  if (msg.api !== 'toWidget' && msg.api !== 'fromWidget') return;
  if (state.clientOrigin ? ev.origin !== state.clientOrigin : !originAllowed(ev.origin, state.allowed)) {
    console.warn(`samtal widget: ignored a widget API message from ${ev.origin}`);
    return;
  }
  if (!state.clientOrigin) {
    state.clientOrigin = normalizeOrigin(ev.origin);
    sendContentLoaded();
  }
  if (state.widgetId && msg.widgetId && msg.widgetId !== state.widgetId) return; // another widget's
  state.log.push({ dir: 'in', message: msg });
  if (msg.api === 'toWidget' && msg.response === undefined) {
    if (!state.widgetId) {
      state.widgetId = msg.widgetId;
      sendContentLoaded();
    }
    onToWidget(msg);
  } else if (msg.api === 'fromWidget' && msg.response !== undefined) {
    const p = pending.get(msg.requestId);
    if (!p) return;
    pending.delete(msg.requestId);
    clearTimeout(p.timer);
    if (msg.response && msg.response.error) p.reject(new Error(msg.response.error.message || 'error'));
    else p.resolve(msg.response);
  }
}

let contentLoadedSent = false;
/** Tells the client the widget is up (clients that wait for the iframe's load event answer with an error: fine). */
function sendContentLoaded() {
  if (contentLoadedSent || !state.widgetId || !state.clientOrigin) return;
  contentLoadedSent = true;
  request('content_loaded', {})
    .then(() => { state.contentLoaded = 'ok'; })
    .catch((e) => { state.contentLoaded = `error: ${e.message}`; });
  request('supported_api_versions', {})
    .then((r) => { state.clientVersions = Array.isArray(r.supported_versions) ? r.supported_versions : []; })
    .catch(() => { state.clientVersions = []; });
}

function setAlwaysOnScreen(value) {
  if (!(state.approved || state.requested).includes('m.always_on_screen')) return;
  request('set_always_on_screen', { value }).catch(() => {});
}

/** The client's origin as far as the page can tell before it speaks: Element's parentUrl, else the browser's record. */
function expectedClientOrigin(allowed) {
  const candidates = [params.parentUrl, window.location.ancestorOrigins?.[0], document.referrer];
  for (const c of candidates) {
    if (c && originAllowed(c, allowed)) return normalizeOrigin(c);
  }
  return null;
}

/** Shows catalogue message `key` instead of a meeting, with a language switch. */
function showError(key) {
  const el = document.getElementById('widget-error');
  localize(el, key);
  el.hidden = false;
  document.getElementById('widget-message').hidden = false;
  document.getElementById('meet').hidden = true;
}

function startMeeting() {
  const meeting = new SamtalMeeting(window.location.origin, {
    roomName: state.room,
    parentNode: document.getElementById('meet'),
    width: '100%',
    height: '100%',
    userInfo: { displayName: params.displayName },
    jwt: params.jwt || undefined,
    lang: language(),
    matrixRoomId: params.matrixRoomId,
    title: t('widget.frameTitle'),
  });
  meeting.on('joined', () => setAlwaysOnScreen(true));
  meeting.on('readyToClose', () => setAlwaysOnScreen(false));
  state.meeting = meeting;
}

async function main() {
  const waiting = [];
  const early = (ev) => waiting.push(ev);
  window.addEventListener('message', early);
  try {
    const r = await fetch('/client-config.json', { cache: 'no-cache' });
    state.allowed = r.ok ? (await r.json()).allowed_origins || [] : [];
  } catch {
    state.allowed = [];
  }
  window.removeEventListener('message', early);
  window.addEventListener('message', onMessage);
  state.clientOrigin = expectedClientOrigin(state.allowed);
  for (const ev of waiting) onMessage(ev);
  sendContentLoaded();
  if (!params.matrixRoomId) {
    showError('widget.noRoom');
    return;
  }
  startMeeting();
}

// Read-only view for tests and debugging.
window.samtalWidget = Object.freeze({
  get room() { return state.room; },
  get matrixRoomId() { return params.matrixRoomId || null; },
  get userId() { return params.userId || null; },
  get displayName() { return params.displayName; },
  get widgetId() { return state.widgetId; },
  get clientOrigin() { return state.clientOrigin; },
  get capabilities() { return { requested: state.requested.slice(), approved: state.approved && state.approved.slice() }; },
  get clientVersions() { return state.clientVersions && state.clientVersions.slice(); },
  get contentLoaded() { return state.contentLoaded; },
  get log() { return JSON.parse(JSON.stringify(state.log)); },
});

if (window.parent === window) {
  showError('widget.notInClient');
} else {
  main();
}
