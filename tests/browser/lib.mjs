// Helpers shared by the browser drivers: Chromium flags, argument parsing, polling with a deadline.

import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

/** The flags three_party.mjs uses: fake camera and microphone, no permission prompts, loopback ICE. */
export const CHROMIUM_FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
  '--auto-select-desktop-capture-source=Entire screen',
];

/**
 * A headless Firefox (`executablePath`, ESR) driven by puppeteer-core over WebDriver BiDi, with a fake
 * camera and microphone. Firefox offers no loopback ICE candidate: run it inside a network namespace
 * with an address of its own.
 */
export function launchFirefox(executablePath, { secureHosts = [] } = {}) {
  return puppeteer.launch({
    browser: 'firefox', executablePath, headless: true, protocol: 'webDriverBiDi',
    extraPrefsFirefox: {
      // Pages served over plain HTTP from these hosts count as secure contexts (what
      // --unsafely-treat-insecure-origin-as-secure does for Chromium): getDisplayMedia needs one.
      ...(secureHosts.length ? { 'dom.securecontext.allowlist': secureHosts.join(',') } : {}),
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      'media.autoplay.default': 0,
      // The page is served from the namespace link's address: let it use camera and microphone.
      'media.devices.insecure.enabled': true,
      'media.getusermedia.insecure.enabled': true,
    },
  });
}

/** A headless Chromium (`executablePath`) whose fake microphone plays the WAV file `wav`. */
export function launchWithMicrophone(executablePath, wav) {
  return chromium.launch({ executablePath, headless: true, args: [...CHROMIUM_FLAGS, `--use-file-for-fake-audio-capture=${wav}`] });
}

/** `--key value` pairs into `defaults` (every key must be known); `required` keys must be given. */
export function parseArgs(argv, defaults, required, usage) {
  const args = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) || i + 1 >= argv.length) throw new Error(`unknown or incomplete argument ${argv[i]}\n${usage}`);
    args[key] = argv[++i];
  }
  for (const key of required) if (!args[key]) throw new Error(`missing --${key}\n${usage}`);
  return args;
}

/** Polls `check` (returns {ok, detail}) until ok or the deadline; throws naming `what` and the last detail. */
export async function waitFor(what, timeoutS, check) {
  const deadline = Date.now() + timeoutS * 1000;
  let last = null;
  for (;;) {
    try {
      last = await check();
    } catch (e) {
      last = { ok: false, detail: `check threw: ${e.message}` };
    }
    if (last.ok) return last;
    if (Date.now() > deadline) throw new Error(`${what} (after ${timeoutS} s): ${JSON.stringify(last.detail)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Checks that `check` stays true for `seconds` (polling); throws naming `what` when it turns false. */
export async function holds(what, seconds, check) {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    const r = await check();
    if (!r.ok) throw new Error(`${what}: ${JSON.stringify(r.detail)}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the meeting page `page` of `name` has joined; returns its participant id. */
export async function joined(page, name, timeoutS) {
  const r = await waitFor(`${name} did not join`, timeoutS, async () => {
    const st = await page.evaluate(() => ({ state: window.samtal && window.samtal.state, id: window.samtal && window.samtal.participantId }));
    return { ok: st.state === 'joined' && !!st.id, detail: st };
  });
  return r.detail.id;
}

/**
 * Runs in the page (`page.evaluate(receivedVideo)`): the video it receives, by publisher (the stream id
 * of each m-section's msid in the server's subscribe offer): {width, frames} from inbound-rtp.
 */
export async function receivedVideo() {
  const pc = window.samtal && window.samtal.subscribePc;
  if (!pc || !pc.remoteDescription) return {};
  const streamOf = new Map();
  let mid = null;
  for (const line of pc.remoteDescription.sdp.split(/\r?\n/)) {
    let m;
    if (line.startsWith('m=')) mid = null;
    if ((m = /^a=mid:(\S+)/.exec(line))) mid = m[1];
    else if ((m = /^a=msid:(\S+) /.exec(line)) && mid != null) streamOf.set(mid, m[1]);
  }
  const out = {};
  for (const tr of pc.getTransceivers()) {
    if (tr.receiver.track.kind !== 'video' || !streamOf.has(tr.mid)) continue;
    const from = streamOf.get(tr.mid);
    (await tr.receiver.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      const seen = out[from] || { width: 0, frames: 0 };
      out[from] = { width: r.frameWidth || seen.width, frames: seen.frames + (r.framesDecoded || 0) };
    });
  }
  return out;
}

/**
 * Runs in the page: what the subscribe connection receives, per transceiver, attributed by the msid of
 * the server's SDP (stream id = publisher id, track id = published track id).
 */
export async function receivedMedia() {
  const s = window.samtal;
  const pc = s && s.subscribePc;
  if (!pc || !pc.remoteDescription) return [];
  const sections = new Map();
  let cur = null;
  for (const line of pc.remoteDescription.sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) cur = { direction: 'sendrecv', rejected: line.split(' ')[1] === '0', streamId: null, trackId: null };
    let m;
    if (!cur) continue;
    if ((m = /^a=mid:(\S+)/.exec(line))) sections.set(m[1], cur);
    else if (/^a=(sendonly|recvonly|sendrecv|inactive)$/.test(line)) cur.direction = line.slice(2);
    else if ((m = /^a=msid:(\S+) (\S+)/.exec(line))) [cur.streamId, cur.trackId] = [m[1], m[2]];
  }
  const out = [];
  for (const tr of pc.getTransceivers()) {
    const sec = sections.get(tr.mid);
    if (!sec || sec.rejected || !(sec.direction === 'sendonly' || sec.direction === 'sendrecv')) continue;
    let inbound = null;
    (await tr.receiver.getStats()).forEach((r) => { if (r.type === 'inbound-rtp') inbound = r; });
    const info = s.participants.get(sec.streamId)?.tracks.get(sec.trackId);
    out.push({
      mid: tr.mid,
      kind: tr.receiver.track.kind,
      from: sec.streamId,
      trackId: sec.trackId,
      source: info ? info.source : null,
      pageAttribution: s.remoteMedia.get(sec.trackId)?.participantId ?? null,
      framesDecoded: inbound?.framesDecoded ?? 0,
      packetsReceived: inbound?.packetsReceived ?? 0,
      totalAudioEnergy: inbound?.totalAudioEnergy ?? 0,
    });
  }
  return out;
}

/** Frames `viewer` (a person of openMeeting) decodes from participant `id` over `ms`. */
export async function framesFrom(viewer, id, ms = 2000) {
  const before = (await viewer.page.evaluate(receivedVideo))[id]?.frames || 0;
  await sleep(ms);
  return ((await viewer.page.evaluate(receivedVideo))[id]?.frames || 0) - before;
}

/**
 * Waits until `viewer` decodes at least 10 frames in 2 s from `id`'s camera; returns that count.
 * `explain()`, if given, adds to the failure message what it returns.
 */
export async function decodes(viewer, id, timeout, explain = null) {
  return (await waitFor(`${viewer.name} does not decode ${id}'s camera`, timeout, async () => {
    const f = await framesFrom(viewer, id);
    const detail = f >= 10 || !explain ? f : { frames: f, ...(await explain()) };
    return { ok: f >= 10, detail };
  })).detail;
}

/**
 * Runs `body` while checking every 250 ms that `viewer`'s page lists participant `id`; throws
 * `what` if it ever did not (an error of `body` goes first).
 */
export async function staysListed(viewer, id, what, body) {
  let present = true;
  const watch = setInterval(async () => {
    try {
      if (!(await viewer.page.evaluate((pid) => window.samtal.participants.has(pid), id))) present = false;
    } catch { /* the page is closing */ }
  }, 250);
  try {
    await body();
  } finally {
    clearInterval(watch);
  }
  if (!present) throw new Error(what);
}

/**
 * Runs in the page (`page.evaluate(receivedAudio)`): the audio it receives, by publisher (msid stream id
 * of the receiver's m-section): codec, packets, total audio energy, samples and concealed samples.
 */
export async function receivedAudio() {
  const pc = window.samtal && window.samtal.subscribePc;
  if (!pc) return {};
  const sdp = pc.remoteDescription ? pc.remoteDescription.sdp : '';
  const owner = {};
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const mid = /a=mid:(\S+)/.exec(section);
    const msid = /a=msid:(\S+) /.exec(section);
    if (mid && msid) owner[mid[1]] = msid[1];
  }
  const result = {};
  for (const tr of pc.getTransceivers()) {
    if (tr.receiver.track.kind !== 'audio' || !owner[tr.mid]) continue;
    const stats = await tr.receiver.getStats();
    stats.forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      const codec = r.codecId && stats.get(r.codecId);
      result[owner[tr.mid]] = {
        codec: codec ? codec.mimeType : null,
        packets: r.packetsReceived,
        energy: r.totalAudioEnergy || 0,
        samples: r.totalSamplesReceived || 0,
        concealed: r.concealedSamples || 0,
      };
    });
  }
  return result;
}

/**
 * Runs in the page (`page.evaluate(selectedPaths)`): for each of the page's peer connections, the local
 * candidate of the pair it uses: {type: 'host'|'srflx'|'relay', protocol: 'udp'|'tcp', relayProtocol
 * ('udp'|'tcp'|'tls', relay candidates only)}, or null before a pair is selected.
 */
export async function selectedPaths() {
  const pathOf = async (pc) => {
    if (!pc) return null;
    const stats = await pc.getStats();
    let path = null;
    stats.forEach((r) => {
      if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
      const pair = stats.get(r.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      if (local) path = { type: local.candidateType, protocol: local.protocol, relayProtocol: local.relayProtocol || null };
    });
    return path;
  };
  const s = window.samtal;
  return { publish: await pathOf(s && s.publishPc), subscribe: await pathOf(s && s.subscribePc) };
}

/**
 * Runs in the page (`page.evaluate(gatherRelay, iceServers)`): gathers candidates through `iceServers`
 * with `iceTransportPolicy: 'relay'`; returns how many relay candidates came and the TURN errors seen.
 */
export async function gatherRelay(iceServers) {
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
  const relay = [];
  const errors = [];
  pc.onicecandidate = (e) => { if (e.candidate && / typ relay/.test(e.candidate.candidate)) relay.push(e.candidate.candidate); };
  pc.onicecandidateerror = (e) => errors.push({ code: e.errorCode, text: e.errorText, url: e.url });
  pc.addTransceiver('audio');
  await pc.setLocalDescription();
  await new Promise((done) => {
    const timer = setTimeout(done, 15000);
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') { clearTimeout(timer); done(); } };
  });
  pc.close();
  return { relay: relay.length, errors };
}

/**
 * Opens the meeting page for `name` in `room` in a new context of `browser`, joining at once; `extra`
 * adds URL parameters, `context` options for the browser context. Returns {name, page, console}.
 */
export async function openMeeting(browser, name, url, room, { extra = {}, context = {} } = {}) {
  const page = await (await browser.newContext({ viewport: { width: 960, height: 540 }, ...context })).newPage();
  const person = { name, page, console: [] };
  page.on('pageerror', (e) => person.console.push(`pageerror: ${e.message}`));
  await page.goto(`${url}/?${new URLSearchParams({ room, name, autojoin: '1', ...extra })}`);
  return person;
}

/**
 * Runs in the page (`page.evaluate(installCanvasScreen)`): a fake screen for getDisplayMedia, a canvas
 * animated via captureStream(), for headless browsers with no screen to capture.
 */
export function installCanvasScreen() {
  navigator.mediaDevices.getDisplayMedia = async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 640;
    canvas.height = 360;
    const ctx = canvas.getContext('2d');
    let n = 0;
    setInterval(() => {
      n++;
      ctx.fillStyle = `hsl(${(n * 5) % 360} 60% 40%)`;
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.fillStyle = '#fff';
      ctx.font = '40px sans-serif';
      ctx.fillText(`shared screen ${n}`, 40, 180);
    }, 66);
    return canvas.captureStream(15);
  };
}

/**
 * Makes sure `page` (playwright or puppeteer) has a screen to share: real getDisplayMedia where it
 * works headless, else installCanvasScreen. Returns 'ok' or why the real one failed.
 */
export async function screenToShare(page) {
  const probe = await page.evaluate(async () => {
    try {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: true });
      s.getTracks().forEach((t) => t.stop());
      return 'ok';
    } catch (e) {
      return `${e.name}: ${e.message}`;
    }
  });
  if (probe !== 'ok') await page.evaluate(installCanvasScreen);
  return probe;
}

/** Runs in the page: what its camera sends per simulcast layer (rid -> {width, frames, active}). */
export async function sentLayers() {
  const pc = window.samtal && window.samtal.publishPc;
  if (!pc) return {};
  const out = {};
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'video') {
      out[r.rid || r.ssrc] = { width: r.frameWidth || 0, frames: r.framesEncoded || 0, active: r.active };
    }
  });
  return out;
}

/** openMeeting for a browser driven by puppeteer (Firefox: launchFirefox), with an optional viewport. */
export async function openPuppeteerMeeting(browser, name, url, room, viewport = null) {
  const page = await browser.newPage();
  if (viewport) await page.setViewport(viewport);
  const person = { name, page, console: [] };
  page.on('pageerror', (e) => person.console.push(`pageerror: ${e.message}`));
  await page.goto(`${url}/?${new URLSearchParams({ room, name, autojoin: '1' })}`);
  return person;
}

/**
 * Runs a driver's checks: `body(people)` fills `summary` (and `people`, for the console lines kept on
 * failure); then closes `browsers`, prints `summary` as one JSON line with `ok`, and exits 0 or 1.
 */
export async function runChecks(summary, browsers, body) {
  const people = [];
  try {
    await body(people);
    summary.ok = true;
  } catch (e) {
    summary.ok = false;
    summary.error = e.message;
    summary.console = Object.fromEntries(people.map((p) => [p.name, p.console.slice(-10)]));
  } finally {
    for (const b of browsers) await b.close();
  }
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

/** A TCP proxy on `host` (any port) to `target`; `cut()` ends every connection and refuses new ones until `restore()`. */
export function startProxy(host, target) {
  const sockets = new Set();
  let open = true;
  const server = net.createServer((client) => {
    if (!open) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target.port, target.hostname);
    const pair = [client, upstream];
    const gone = () => pair.forEach((s) => { s.destroy(); sockets.delete(s); });
    for (const s of pair) {
      sockets.add(s);
      s.on('error', gone).on('close', gone);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => server.listen(0, host, () => resolve({
    url: `http://${host}:${server.address().port}`,
    cut() {
      open = false;
      for (const s of sockets) s.resetAndDestroy();
      sockets.clear();
    },
    restore() { open = true; },
    close() { server.close(); },
  })));
}

/** Screenshots of `page` into `dir` (nothing when `dir` is empty): `name`.png, and `name`-narrow.png
 *  at a phone's width (the whole page). */
export async function screenshot(page, dir, name) {
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  const wide = page.viewportSize();
  await page.screenshot({ path: join(dir, `${name}.png`) });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(dir, `${name}-narrow.png`), fullPage: true });
  await page.setViewportSize(wide);
}
