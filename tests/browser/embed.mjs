// End-to-end check of embedding: the iframe API (web/external_api.js + web/js/embed.js), the origin
// rules, the Matrix widget (web/widget.html), and transcription in the meeting page (banner, toggle,
// live captions, transcript panel), with headless Chromium.
//
//   node embed.mjs --url http://127.0.0.1:PORT --host http://127.0.0.1:PORT2 --other http://127.0.0.1:PORT3
//                  [--room ROOM] [--chromium /usr/bin/chromium] [--timeout 45] [--screenshots DIR]
//
// --url is a running Samtal server on an open configuration (no tokens) whose [embed] allowed_origins
// holds --host's origin and not --other's; --host and --other both serve tests/browser/embed/ (host.html,
// element.html). Checks, each against a deadline:
//   1. a page on the allowed origin embeds a meeting with SamtalMeeting: `ready` and `joined` (with the
//      participant id the meeting page has) reach it; a second participant (Watcher, the plain page)
//      arrives as participantJoined with its name; the embedded participant joined muted
//      (startWithAudioMuted) and Watcher sees that; toggleAudio/toggleVideo (un)mute the embedded
//      participant as Watcher sees it (mute_changed: muted flag and icon); Watcher's camera toggle comes
//      back as muteChanged; transcription: both show "Transcription unavailable" while no worker is
//      connected, a stand-in worker (a raw websocket registered as `worker`) makes it available,
//      startTranscription shows the banner to everyone, the worker's segments arrive as live captions
//      with the speaker's name (the interim replaced by its final) and as captionReceived events, the
//      transcript panel lists the finals, toggleCaptions hides captions, stopTranscription removes the
//      banner; hangup gives left and readyToClose and Watcher sees the participant go;
//   2. a page on the other origin cannot embed: the frame never runs the app (CSP frame-ancestors) and
//      nobody joins; with CSP switched off in the browser (so the page's own check is what is tested)
//      the meeting loads and joins but ignores the page's commands and posts it no events;
//   3. element.html plays Element's side of the Matrix widget API against widget.html: content_loaded,
//      the capabilities request and answer, supported_api_versions both ways, an error for an unknown
//      action; the widget's meeting joins the room derived from the Matrix room id under the Matrix
//      display name and exposes the Matrix room id; Watcher sees that name; im.vector.hangup leaves.
// Prints one JSON summary line on stdout; exits 0 on success, 1 naming what failed.

import { chromium } from 'playwright-core';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { CHROMIUM_FLAGS, parseArgs, waitFor, holds } from './lib.mjs';

const USAGE = 'usage: embed.mjs --url URL --host ALLOWED_HOST_URL --other OTHER_HOST_URL [--room ROOM] [--chromium PATH] [--timeout S] [--screenshots DIR] --worker-key KEY';
const MATRIX_ROOM = '!VqZkPWxbLcDrHnTa:example.org';
const MATRIX_USER = '@alice:example.org';
const MATRIX_NAME = 'Alice från Matrix';

const args = parseArgs(process.argv.slice(2), {
  url: null, host: null, other: null, room: `embed${Date.now() % 100000}`,
  chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium', timeout: 45, screenshots: null, 'worker-key': null,
}, ['url', 'host', 'other', 'worker-key'], USAGE);
args.timeout = Number(args.timeout);
for (const k of ['url', 'host', 'other']) args[k] = args[k].replace(/\/+$/, '');
const T = args.timeout;
const serverOrigin = new URL(args.url).origin;

const summary = { ok: false, url: args.url, host: args.host, other: args.other, room: args.room, steps: [] };
const consoles = {};
const step = (name, detail = {}) => summary.steps.push({ name, ...detail });

async function open(context, label, url) {
  const page = await context.newPage();
  consoles[label] = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoles[label].push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => consoles[label].push(`pageerror: ${e.message}`));
  await page.goto(url);
  return page;
}

/** The frame of `page` that shows the Samtal meeting page (its URL is the server's `/?…`). */
function meetingFrame(page) {
  return page.frames().find((f) => f.url().startsWith(`${args.url}/?`)) || null;
}

async function events(page, name) {
  return page.evaluate((n) => window.hostEvents.filter((e) => !n || e.name === n).map((e) => ({ name: e.name, data: e.data })), name);
}

/** Watcher's view of one participant: listed?, name, mute flags and the icons on its tile. */
async function seenBy(page, id) {
  return page.evaluate((pid) => {
    const p = window.samtal.participants.get(pid);
    const tile = document.querySelector(`#grid .tile.camera[data-participant-id="${pid}"]`);
    const bySource = {};
    if (p) for (const t of p.tracks.values()) bySource[t.source] = t.muted;
    return {
      listed: !!p, name: p ? p.name : null, muted: bySource,
      micIcon: tile ? !tile.querySelector('.mic-off').hidden : null,
      camIcon: tile ? !tile.querySelector('.cam-off').hidden : null,
    };
  }, id);
}

async function namesSeenBy(page) {
  return page.evaluate(() => [...window.samtal.participants.values()].map((p) => p.name));
}

/** The transcription UI of a meeting page (or frame). */
async function transcriptionUi(frame) {
  return frame.evaluate(() => {
    const $ = (id) => document.getElementById(id);
    const visible = (el) => !!el && !el.hidden && getComputedStyle(el).display !== 'none';
    return {
      banner: visible($('transcription-banner')),
      bannerText: $('transcription-banner-text').textContent,
      toggle: visible($('transcribe-button')),
      toggleDisabled: $('transcribe-button').disabled,
      toggleText: $('transcribe-button').textContent,
      unavailable: visible($('transcription-unavailable')),
      captionsShown: !$('captions').hidden,
      captions: [...document.querySelectorAll('#captions .caption')].map((c) => ({
        id: c.dataset.utteranceId, speaker: c.querySelector('.speaker').textContent, text: c.querySelector('.text').textContent, final: c.dataset.final,
      })),
      panel: visible($('transcript-panel')),
      transcript: [...document.querySelectorAll('#transcript-list li')].map((li) => ({
        id: li.dataset.utteranceId, speaker: li.querySelector('.speaker').textContent, text: li.querySelector('.text').textContent,
      })),
      state: window.samtal.transcription,
    };
  });
}

/** Runs in a page on the server's origin: a stand-in transcription worker over raw websockets. */
function installFakeWorker({ wsUrl, workerKey }) {
  const fake = { jobs: [], joined: null, errors: [], sent: [] };
  window.fake = fake;
  const open = (onMessage, first) => {
    const ws = new WebSocket(wsUrl);
    ws.onopen = () => {
      ws.send(JSON.stringify(first));
      setInterval(() => ws.readyState === 1 && ws.send(JSON.stringify({ type: 'ping' })), 5000);
    };
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    return ws;
  };
  fake.worker = open((m) => {
    if (m.type === 'error') fake.errors.push(m);
    if (m.type !== 'job') return;
    fake.jobs.push({ action: m.action, room: m.room, meeting_id: m.meeting_id, language: m.language ?? null });
    if (m.action === 'start') {
      fake.session = open((s) => {
        if (s.type === 'joined') fake.joined = { participant_id: s.participant_id, role: s.role, room: s.room };
        if (s.type === 'error') fake.errors.push(s);
      }, { type: 'join', room: m.room, name: 'Transcriber', token: m.token, hidden: true });
    }
  }, { type: 'worker', capacity: 1, token: workerKey });
  window.sendSegment = (seg) => {
    fake.sent.push(seg);
    fake.session.send(JSON.stringify({ type: 'segment', language: 'en', confidence: 0.9, ...seg }));
  };
}

async function shot(page, name) {
  if (!args.screenshots) return;
  mkdirSync(args.screenshots, { recursive: true });
  await page.screenshot({ path: `${args.screenshots}/${name}.png` }).catch(() => {});
}

// ---- 1. an allowed origin embeds a meeting ----

async function allowedOriginEmbeds(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const room = args.room;
  const q = new URLSearchParams({ server: args.url, room, name: 'Hosted', audio_muted: '1' });
  const host = await open(context, 'host', `${args.host}/host.html?${q}`);

  const joined = await waitFor('the host page did not get ready and joined events from the embedded meeting', T, async () => {
    const ev = await events(host);
    const frame = meetingFrame(host);
    const inside = frame ? await frame.evaluate(() => ({ state: window.samtal?.state, id: window.samtal?.participantId })) : null;
    const j = ev.find((e) => e.name === 'joined');
    const ok = ev.some((e) => e.name === 'ready') && !!j && inside?.state === 'joined' && j.data.participantId === inside.id;
    return { ok, detail: ok ? j.data : { events: ev, inside, status: await host.textContent('#status') } };
  });
  const hostedId = joined.detail.participantId;
  if (joined.detail.displayName !== 'Hosted' || joined.detail.room !== room) throw new Error(`joined event carries ${JSON.stringify(joined.detail)}`);
  step('allowed origin: ready + joined', { participantId: hostedId });
  const frame = meetingFrame(host);

  const watcher = await open(context, 'watcher', `${args.url}/?${new URLSearchParams({ room, name: 'Watcher', autojoin: '1' })}`);
  const watcherId = (await waitFor('Watcher did not join', T, async () => {
    const st = await watcher.evaluate(() => ({ state: window.samtal.state, id: window.samtal.participantId }));
    return { ok: st.state === 'joined', detail: st };
  })).detail.id;

  await waitFor('the host did not get participantJoined for Watcher', T, async () => {
    const ev = await events(host, 'participantJoined');
    return { ok: ev.some((e) => e.data.id === watcherId && e.data.displayName === 'Watcher'), detail: ev };
  });
  step('participantJoined with the name', { watcherId });

  // Hosted joined with startWithAudioMuted.
  await waitFor("Watcher does not see Hosted's microphone muted (startWithAudioMuted)", T, async () => {
    const s = await seenBy(watcher, hostedId);
    return { ok: s.muted.microphone === true && s.micIcon === true, detail: s };
  });
  step('startWithAudioMuted: Watcher sees the microphone muted');
  for (const muted of [false, true]) {
    await host.evaluate(() => window.meeting.executeCommand('toggleAudio'));
    await waitFor(`after toggleAudio Watcher does not see Hosted ${muted ? 'muted' : 'unmuted'} (flag and icon)`, T, async () => {
      const s = await seenBy(watcher, hostedId);
      return { ok: s.muted.microphone === muted && s.micIcon === muted, detail: s };
    });
    await waitFor(`no muteChanged event for the own microphone ${muted ? 'muted' : 'unmuted'}`, T, async () => {
      const ev = await events(host, 'muteChanged');
      return { ok: ev.some((e) => e.data.participantId === hostedId && e.data.local && e.data.kind === 'audio' && e.data.muted === muted), detail: ev };
    });
  }
  step('toggleAudio twice: Watcher sees unmute, then mute');

  await host.evaluate(() => window.meeting.executeCommand('toggleVideo'));
  await waitFor('after toggleVideo Watcher does not see the camera off', T, async () => {
    const s = await seenBy(watcher, hostedId);
    const inside = await frame.evaluate(() => window.samtal.isMuted('camera'));
    return { ok: s.camIcon === true && inside, detail: { watcher: s, mutedInside: inside } };
  });
  step('toggleVideo: camera off');

  await waitFor("Hosted's page does not know Watcher's camera", T, async () => {
    const cam = await frame.evaluate((id) => [...(window.samtal.participants.get(id)?.tracks.values() || [])].find((t) => t.source === 'camera')?.muted, watcherId);
    return { ok: cam === false, detail: cam };
  });
  await watcher.click('#camera-button');
  await waitFor("the host did not get muteChanged for Watcher's camera", T, async () => {
    const ev = await events(host, 'muteChanged');
    return { ok: ev.some((e) => e.data.participantId === watcherId && !e.data.local && e.data.kind === 'video' && e.data.source === 'camera' && e.data.muted), detail: ev };
  });
  step("muteChanged for the other's camera");

  // Transcription: nothing connected to transcribe yet.
  await waitFor('the toggle does not say transcription is unavailable', T, async () => {
    const [w, h] = [await transcriptionUi(watcher), await transcriptionUi(frame)];
    const ok = [w, h].every((u) => u.toggle && u.toggleDisabled && u.unavailable && !u.banner);
    return { ok, detail: { watcher: w, hosted: h } };
  });
  step('transcription unavailable without a worker');

  const workerPage = await open(context, 'worker', `${args.url}/healthz`);
  await workerPage.evaluate(installFakeWorker, { wsUrl: `${args.url.replace(/^http/, 'ws')}/ws`, workerKey: args['worker-key'] });
  await waitFor('transcription did not become available when a worker connected', T, async () => {
    const ev = await events(host, 'transcriptionStatusChanged');
    const w = await transcriptionUi(watcher);
    const ok = ev.some((e) => e.data.available && !e.data.enabled) && w.toggle && !w.toggleDisabled && !w.unavailable;
    return { ok, detail: { events: ev, watcher: w } };
  });

  await host.evaluate(() => window.meeting.executeCommand('startTranscription', { language: 'en' }));
  await waitFor('startTranscription did not show the banner to everyone', T, async () => {
    const [w, h] = [await transcriptionUi(watcher), await transcriptionUi(frame)];
    const ev = await events(host, 'transcriptionStatusChanged');
    const ok = w.banner && h.banner && w.toggleText === 'Stop transcription' && ev.some((e) => e.data.enabled && e.data.available && e.data.language === 'en' && e.data.meetingId);
    return { ok, detail: { watcher: w, hosted: h, events: ev } };
  });
  const job = await waitFor('the worker got no job, or its hidden participant did not join', T, async () => {
    const f = await workerPage.evaluate(() => ({ jobs: window.fake.jobs, joined: window.fake.joined, errors: window.fake.errors }));
    return { ok: !!f.joined && f.jobs.some((j) => j.action === 'start' && j.room === room), detail: f };
  });
  step('startTranscription: banner for everyone, job to the worker', { job: job.detail.jobs[0] });

  const t0 = Date.now();
  await workerPage.evaluate(({ id, t0 }) => window.sendSegment({ utterance_id: 'utt-1', participant_id: id, start_ms: t0, end_ms: t0 + 900, text: 'Hello every', final: false }), { id: hostedId, t0 });
  await waitFor('the interim caption is not shown', T, async () => {
    const [w, h] = [await transcriptionUi(watcher), await transcriptionUi(frame)];
    const ok = [w, h].every((u) => u.captions.some((c) => c.id === 'utt-1' && c.text === 'Hello every' && c.speaker === 'Hosted' && c.final === 'false'));
    return { ok, detail: { watcher: w.captions, hosted: h.captions } };
  });
  await workerPage.evaluate(({ id, t0 }) => window.sendSegment({ utterance_id: 'utt-1', participant_id: id, start_ms: t0, end_ms: t0 + 1500, text: 'Hello everyone', final: true }), { id: hostedId, t0 });
  await workerPage.evaluate(({ id, t0 }) => window.sendSegment({ utterance_id: 'utt-2', participant_id: id, start_ms: t0 + 2000, end_ms: t0 + 3000, text: 'Hi Hosted', final: true }), { id: watcherId, t0 });
  await waitFor('the final caption did not replace the interim one', T, async () => {
    const [w, h] = [await transcriptionUi(watcher), await transcriptionUi(frame)];
    const ok = [w, h].every((u) => {
      const one = u.captions.filter((c) => c.id === 'utt-1');
      return one.length === 1 && one[0].text === 'Hello everyone' && one[0].final === 'true' &&
        u.captions.some((c) => c.id === 'utt-2' && c.speaker === 'Watcher' && c.text === 'Hi Hosted');
    });
    return { ok, detail: { watcher: w.captions, hosted: h.captions } };
  });
  const captionEvents = (await events(host, 'captionReceived')).map((e) => e.data);
  const want = [['utt-1', false, 'Hello every', 'Hosted'], ['utt-1', true, 'Hello everyone', 'Hosted'], ['utt-2', true, 'Hi Hosted', 'Watcher']];
  for (const [id, final, text, name] of want) {
    if (!captionEvents.some((c) => c.utteranceId === id && c.final === final && c.text === text && c.displayName === name)) {
      throw new Error(`no captionReceived ${JSON.stringify({ id, final, text, name })}: ${JSON.stringify(captionEvents)}`);
    }
  }
  step('captions: interim replaced by final, with speaker names; captionReceived events', { captionEvents: captionEvents.length });

  await watcher.click('#transcript-button');
  await waitFor('the transcript panel does not list the final captions', T, async () => {
    const w = await transcriptionUi(watcher);
    const ok = w.panel && JSON.stringify(w.transcript) === JSON.stringify([
      { id: 'utt-1', speaker: 'Hosted', text: 'Hello everyone' }, { id: 'utt-2', speaker: 'Watcher', text: 'Hi Hosted' },
    ]);
    return { ok, detail: w };
  });
  step('transcript panel lists the finals');
  await shot(watcher, 'watcher-transcribing');
  await shot(host, 'host-transcribing');

  await host.evaluate(() => window.meeting.executeCommand('toggleCaptions'));
  await waitFor('toggleCaptions did not hide the captions', T, async () => {
    const h = await transcriptionUi(frame);
    const ev = await events(host, 'captionsToggled');
    return { ok: !h.captionsShown && ev.some((e) => e.data.visible === false), detail: { hosted: h, events: ev } };
  });
  await watcher.click('#captions-button');
  await waitFor('the captions button did not hide the captions', T, async () => {
    const w = await transcriptionUi(watcher);
    return { ok: !w.captionsShown, detail: w };
  });
  step('captions hidden by command and by button');

  await host.evaluate(() => window.meeting.executeCommand('stopTranscription'));
  await waitFor('stopTranscription did not remove the banner', T, async () => {
    const [w, h] = [await transcriptionUi(watcher), await transcriptionUi(frame)];
    const ev = await events(host, 'transcriptionStatusChanged');
    const ok = !w.banner && !h.banner && ev.length && ev[ev.length - 1].data.enabled === false;
    return { ok, detail: { watcher: w.banner, hosted: h.banner, events: ev } };
  });
  step('stopTranscription: banner gone');
  await workerPage.close();

  await host.evaluate(() => window.meeting.executeCommand('hangup'));
  await waitFor('hangup did not give left and readyToClose', T, async () => {
    const names = (await events(host)).map((e) => e.name);
    const left = (await events(host, 'left'))[0];
    return { ok: left?.data.reason === 'left' && names.indexOf('readyToClose') > names.indexOf('left'), detail: names };
  });
  await waitFor('Watcher still sees Hosted after hangup', T, async () => {
    const s = await seenBy(watcher, hostedId);
    return { ok: !s.listed, detail: s };
  });
  step('hangup: left, readyToClose; Watcher sees Hosted go');
  await host.close();
  return { context, watcher, watcherId };
}

// ---- 2. an origin that is not allowed ----

async function otherOriginCannotEmbed(browser, watcher) {
  const room = args.room;
  const context = await browser.newContext({ viewport: { width: 1024, height: 640 } });
  const q = new URLSearchParams({ server: args.url, room, name: 'Intruder' });
  const page = await open(context, 'other', `${args.other}/host.html?${q}`);
  await page.waitForFunction(() => window.meeting && window.meeting.getIFrame(), null, { timeout: T * 1000 });
  const iframe = await page.$('#meet iframe');
  // Chromium reports the refusal on the console of the embedding page.
  await waitFor('Chromium did not refuse the frame for frame-ancestors', T, async () => {
    const lines = consoles.other.filter((l) => /frame-ancestors/.test(l) && l.includes(serverOrigin));
    return { ok: lines.length > 0, detail: consoles.other };
  });
  await page.evaluate(() => { window.rawCommand('toggleAudio'); window.rawCommand('hangup'); });
  await holds('a page on an origin that is not allowed got the meeting into its frame', 4, async () => {
    const f = await iframe.contentFrame();
    const inside = f ? await f.evaluate(() => ({ url: location.href, app: typeof window.samtal })).catch((e) => ({ error: e.message })) : null;
    const ev = await events(page);
    const names = await namesSeenBy(watcher);
    const ok = (!inside || inside.app === 'undefined' || inside.error) && ev.length === 0 && !names.includes('Intruder');
    return { ok, detail: { inside, events: ev, watcherSees: names } };
  });
  const f = await iframe.contentFrame();
  step('other origin: frame blocked (CSP), nobody joined, no events', { frameUrl: f ? f.url() : null });
  await context.close();

  // The same with the CSP header taken off the server's responses on the way (as a proxy that drops
  // it would): now the page's own origin check has to refuse.
  // Chromium treats a document fulfilled by the test as public and would then refuse its websocket to
  // loopback (local network access checks), hence a second browser without those checks.
  const looseBrowser = await chromium.launch({
    executablePath: args.chromium, headless: true, args: [...CHROMIUM_FLAGS, '--disable-features=LocalNetworkAccessChecks'],
  });
  const loose = await looseBrowser.newContext({ viewport: { width: 1024, height: 640 } });
  await loose.route(`${args.url}/**`, async (route) => {
    const response = await route.fetch();
    const headers = { ...response.headers() };
    delete headers['content-security-policy'];
    await route.fulfill({ response, headers });
  });
  const q2 = new URLSearchParams({ server: args.url, room, name: 'Intruder2' });
  const page2 = await open(loose, 'other-nocsp', `${args.other}/host.html?${q2}`);
  const intruderId = (await waitFor('with CSP off the framed meeting did not load and join (cannot test the page check)', T, async () => {
    const fr = meetingFrame(page2);
    const st = fr ? await fr.evaluate(() => ({ state: window.samtal?.state, id: window.samtal?.participantId })).catch((e) => ({ error: e.message })) : null;
    return { ok: st?.state === 'joined', detail: st };
  })).detail.id;
  await waitFor('Watcher does not see Intruder2 with its microphone on', T, async () => {
    const s = await seenBy(watcher, intruderId);
    return { ok: s.listed && s.muted.microphone === false, detail: s };
  });
  await page2.evaluate(() => {
    window.rawCommand('toggleAudio');
    window.rawCommand('displayName', 'Renamed');
    window.rawCommand('hangup');
    window.meeting.executeCommand('toggleVideo');
  });
  await holds('the meeting page obeyed commands from an origin that is not allowed, or posted it events', 5, async () => {
    const s = await seenBy(watcher, intruderId);
    const fr = meetingFrame(page2);
    const inside = await fr.evaluate(() => ({ state: window.samtal.state, mic: window.samtal.isMuted('microphone'), cam: window.samtal.isMuted('camera'), name: window.samtal.name }));
    const messages = await page2.evaluate(() => window.allMessages.filter((m) => m.data && m.data.samtal));
    const ok = s.listed && s.muted.microphone === false && inside.state === 'joined' && !inside.mic && !inside.cam && inside.name === 'Intruder2' && messages.length === 0;
    return { ok, detail: { watcher: s, inside, messages } };
  });
  const otherOrigin = new URL(args.other).origin;
  if (!consoles['other-nocsp'].some((l) => l.includes(`ignored a command from ${otherOrigin}`))) {
    throw new Error(`the meeting page did not report refusing the commands: ${JSON.stringify(consoles['other-nocsp'])}`);
  }
  step('other origin with CSP off: joined, but commands ignored and no events posted');
  await looseBrowser.close();
  await waitFor('Watcher still sees Intruder2 after its page closed', T, async () => ({ ok: !(await seenBy(watcher, intruderId)).listed, detail: 'listed' }));
}

// ---- 3. the Matrix widget ----

async function matrixWidget(browser, watcherContext) {
  const expectedRoom = `mx-${createHash('sha256').update(MATRIX_ROOM).digest('hex').slice(0, 32)}`;
  const context = await browser.newContext({ viewport: { width: 1024, height: 640 } });
  const q = new URLSearchParams({ server: args.url, room: MATRIX_ROOM, user: MATRIX_USER, name: MATRIX_NAME });
  const element = await open(context, 'element', `${args.host}/element.html?${q}`);

  const handshake = await waitFor('the widget API handshake did not complete', T, async () => {
    const h = await element.evaluate(() => JSON.parse(JSON.stringify(window.widgetHost)));
    const caps = h.capabilities && h.capabilities.capabilities;
    const ok = h.contentLoaded && Array.isArray(caps) && caps.includes('m.always_on_screen') &&
      Array.isArray(h.versionsReply?.supported_versions) && h.versionsReply.supported_versions.includes('0.0.2') &&
      typeof h.unknownReply?.error?.message === 'string' && h.errors.length === 0;
    return { ok, detail: h };
  });
  const widgetFrame = element.frames().find((f) => f.url().startsWith(`${args.url}/widget.html`));
  const widgetView = await widgetFrame.evaluate(() => ({
    room: window.samtalWidget.room, matrixRoomId: window.samtalWidget.matrixRoomId, clientOrigin: window.samtalWidget.clientOrigin,
    approved: window.samtalWidget.capabilities.approved, clientVersions: window.samtalWidget.clientVersions, log: window.samtalWidget.log,
  }));
  if (widgetView.clientOrigin !== new URL(args.host).origin) throw new Error(`the widget took ${widgetView.clientOrigin} for the client's origin`);
  if (!widgetView.log.some((l) => l.dir === 'out' && l.message.api === 'fromWidget' && l.message.action === 'supported_api_versions')) {
    throw new Error(`the widget never asked the client for supported_api_versions: ${JSON.stringify(widgetView.log)}`);
  }
  step('widget API: content_loaded, capabilities, versions, unknown action refused', {
    capabilities: handshake.detail.capabilities.capabilities, versions: handshake.detail.versionsReply.supported_versions,
  });

  const inside = await waitFor("the widget's meeting did not join", T, async () => {
    const fr = meetingFrame(element);
    const st = fr ? await fr.evaluate(() => ({ state: window.samtal?.state, name: window.samtal?.name, room: window.samtal?.room, matrixRoomId: window.samtal?.matrixRoomId, id: window.samtal?.participantId })).catch((e) => ({ error: e.message })) : null;
    return { ok: st?.state === 'joined', detail: { st, frames: element.frames().map((f) => f.url()) } };
  });
  const st = inside.detail.st;
  if (st.name !== MATRIX_NAME || st.room !== expectedRoom || st.matrixRoomId !== MATRIX_ROOM || widgetView.room !== expectedRoom) {
    throw new Error(`widget meeting: ${JSON.stringify(st)}, widget room ${widgetView.room}; expected ${MATRIX_NAME} in ${expectedRoom} for ${MATRIX_ROOM}`);
  }
  const watcher = await open(watcherContext, 'watcher-mx', `${args.url}/?${new URLSearchParams({ room: expectedRoom, name: 'Watcher', autojoin: '1' })}`);
  await waitFor('Watcher does not see the Matrix display name in the derived room', T, async () => {
    const names = await watcher.evaluate(() => window.samtal.state === 'joined' && [...window.samtal.participants.values()].map((p) => p.name));
    return { ok: Array.isArray(names) && names.includes(MATRIX_NAME), detail: names };
  });
  await waitFor('the widget did not ask to stay on screen once joined', T, async () => {
    const a = await element.evaluate(() => window.widgetHost.alwaysOnScreen);
    return { ok: a.includes(true), detail: a };
  });
  step('widget meeting: derived room, Matrix display name, Matrix room id', { room: expectedRoom, participantId: st.id });
  await shot(element, 'element-widget');

  const hangupReply = await element.evaluate(() => window.sendToWidget('im.vector.hangup', {}));
  await waitFor('im.vector.hangup did not leave the meeting', T, async () => {
    const fr = meetingFrame(element);
    const state = await fr.evaluate(() => window.samtal.state);
    const a = await element.evaluate(() => window.widgetHost.alwaysOnScreen);
    const names = await namesSeenBy(watcher);
    return { ok: state === 'left' && a[a.length - 1] === false && !names.includes(MATRIX_NAME), detail: { state, alwaysOnScreen: a, watcherSees: names } };
  });
  step('im.vector.hangup leaves', { reply: hangupReply });
  await context.close();
}

async function main() {
  const started = Date.now();
  const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: CHROMIUM_FLAGS });
  try {
    const { context, watcher } = await allowedOriginEmbeds(browser);
    await otherOriginCannotEmbed(browser, watcher);
    await watcher.close();
    await matrixWidget(browser, context);
    summary.ok = true;
    summary.elapsed_s = (Date.now() - started) / 1000;
    console.log(JSON.stringify(summary));
  } catch (e) {
    summary.error = e.message;
    summary.console = Object.fromEntries(Object.entries(consoles).map(([k, v]) => [k, v.slice(-12)]));
    console.log(JSON.stringify(summary));
    console.error(`embed: FAILED: ${e.message}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`embed: ${e.message}`);
  process.exit(2);
});
