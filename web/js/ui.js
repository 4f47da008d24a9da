// DOM side of the Samtal page: views, notices, the participant grid (one tile per camera and per
// screen share, keyed by data-participant-id and data-source), speaking and mute indicators, toolbar,
// and transcription: the banner while it is on, live captions, the transcript panel. Every word
// shown comes from the message catalogues (i18n.js).

import { formatTime, languageName, localize, t, translate } from './i18n.js';

const $ = (id) => document.getElementById(id);

const ICON_MIC_OFF = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11z"/><path d="M3 3l18 18" stroke="currentColor" stroke-width="2.5"/></svg>';
const ICON_CAM_OFF = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 6h12a2 2 0 0 1 2 2v2.5l4-3v9l-4-3V16a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2z"/><path d="M2 2l20 20" stroke="currentColor" stroke-width="2.5"/></svg>';
/** Sound waves: the speaking cue next to a name (so that speaking is not shown by the ring's colour alone). */
const ICON_SPEAKING = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 10v4h4l5 4V6L7 10z"/><path d="M15.5 8.5a5 5 0 0 1 0 7M18.5 5.5a9 9 0 0 1 0 13" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg>';
const SPEAKING_LEVEL = 0.03;

export function showView(which) {
  $('prejoin').hidden = which !== 'prejoin';
  $('meeting').hidden = which !== 'meeting';
  // One set of device selects, shown in whichever view is active.
  (which === 'meeting' ? $('device-slot') : $('preview-box')).appendChild($('devices'));
}

/**
 * Shows a message (a string, or {key, params} of a catalogue message, which follows a change of
 * language); errors stay until closed, info goes away by itself.
 */
export function notice(message, level = 'error') {
  const box = document.createElement('div');
  box.className = `notice ${level}`;
  box.setAttribute('role', level === 'error' ? 'alert' : 'status');
  const text = document.createElement('span');
  if (message && typeof message === 'object') localize(text, message.key, message.params);
  else text.textContent = message;
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  localize(close, 'notice.dismiss', null, 'aria-label');
  close.onclick = () => box.remove();
  box.append(text, close);
  $('notices').appendChild(box);
  if (level !== 'error') setTimeout(() => box.remove(), 6000);
}

export function clearNotices() {
  $('notices').replaceChildren();
}

/** Says something to screen readers only (a polite live region), e.g. what a keyboard shortcut did. */
export function announce(key, params = null) {
  const box = $('announcer');
  if (!box) return;
  // Emptied first, so that the same words said twice are read twice.
  box.textContent = '';
  setTimeout(() => localize(box, key, params), 50);
}

/** The top bar's connection state: `state` for the dot, `key` the catalogue message of the words. */
export function setConnectionState(state, key) {
  const el = $('connection-state');
  el.dataset.state = state;
  if (el.getAttribute('data-i18n') !== key) localize(el, key);
}

/** Describes the meeting's connection for the top bar: [state, message key]. */
export function connectionSummary(meeting) {
  if (!meeting) return ['idle', 'conn.idle'];
  switch (meeting.state) {
    case 'connecting':
      return ['connecting', 'conn.connecting'];
    case 'lobby':
      return ['connecting', 'conn.lobby'];
    case 'joined': {
      if (meeting.reconnecting) return ['connecting', 'conn.reconnecting'];
      const states = [meeting.publishPc, meeting.subscribePc]
        .filter((pc) => pc && (pc.signalingState !== 'stable' || pc.remoteDescription))
        .map((pc) => pc.connectionState);
      if (states.includes('failed')) return ['failed', 'conn.mediaFailed'];
      if (states.includes('disconnected')) return ['connecting', 'conn.mediaReconnecting'];
      if (states.length && states.every((s) => s === 'connected')) return ['connected', 'conn.connected'];
      return ['connecting', states.length ? 'conn.connectingMedia' : 'conn.waitingForMedia'];
    }
    case 'left':
      return ['idle', 'conn.idle'];
    default:
      return ['failed', 'conn.disconnected'];
  }
}

function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/);
  return (parts[0][0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
}

function makeTile(key, participantId, source, local) {
  const tile = document.createElement('div');
  tile.className = `tile ${source === 'screen_share' ? 'screen' : 'camera'}`;
  tile.dataset.key = key;
  tile.dataset.participantId = participantId;
  tile.dataset.source = source;
  if (local) tile.dataset.local = 'true';
  tile.setAttribute('role', 'group');
  tile.innerHTML = `<video autoplay playsinline muted></video><div class="avatar" aria-hidden="true"></div>
    <div class="label"><span class="icon speaking-cue" hidden>${ICON_SPEAKING}<span class="sr-only" data-i18n="tile.speaking"></span></span><span class="icon mic-off" hidden data-i18n-title="tile.micMuted">${ICON_MIC_OFF}<span class="sr-only" data-i18n="tile.micMuted"></span></span><span class="icon cam-off" hidden data-i18n-title="tile.cameraOff">${ICON_CAM_OFF}<span class="sr-only" data-i18n="tile.cameraOff"></span></span><span class="name"></span><span class="sr-only dominant-cue" hidden data-i18n="tile.dominant"></span><span class="interrupted" hidden data-i18n="tile.interrupted"></span></div>`;
  if (source === 'camera' && !local) {
    tile.appendChild(document.createElement('audio')).autoplay = true;
    tile.insertAdjacentHTML('beforeend', `<div class="mod-controls" hidden>
      <button type="button" data-action="mute" data-i18n="tile.mute"></button><button type="button" data-action="remove" data-i18n="tile.remove"></button></div>`);
  }
  translate(tile);
  return tile;
}

function bind(el, track) {
  if (el._track === track) return;
  el._track = track;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) el.play().catch(() => {}); // autoplay may need a click; the join click usually gave it
}

/** What the grid should show: [{key, participantId, source, local, name, video, audio, micMuted, camMuted}]. */
/** Audio only: no remote video is shown, so none is asked of the server (tiles report 0 x 0). */
let audioOnly = false;

export function setAudioOnly(on) {
  audioOnly = !!on;
  const button = $('audio-only-button');
  button.setAttribute('aria-pressed', String(audioOnly));
}

function desiredTiles(meeting) {
  const tiles = [];
  const me = meeting.participantId;
  const mic = meeting.local.microphone;
  const cam = meeting.local.camera;
  tiles.push({
    key: `${me}:camera`, participantId: me, source: 'camera', local: true, person: meeting.name, name: t('tile.you', { name: meeting.name }),
    video: cam && !cam.muted ? cam.track : null, audio: null, micMuted: !mic || mic.muted, camMuted: !cam || cam.muted,
  });
  if (meeting.local.screen_share) {
    tiles.push({ key: `${me}:screen_share`, participantId: me, source: 'screen_share', local: true,
      person: meeting.name, name: t('tile.yourScreen', { name: meeting.name }), video: meeting.local.screen_share.track, audio: null, micMuted: false, camMuted: false });
  }
  for (const p of meeting.participants.values()) {
    const bySource = {};
    for (const track of p.tracks.values()) bySource[track.source] = track;
    const media = (info) => (info && meeting.remoteMedia.get(info.track_id)?.track) || null;
    const camInfo = bySource.camera;
    // Last-N: the server pauses cameras of people outside this participant's selection; show their avatar.
    const forwarded = !meeting.forwardedVideo || meeting.forwardedVideo.has(p.id);
    tiles.push({
      key: `${p.id}:camera`, participantId: p.id, source: 'camera', local: false, trackId: camInfo?.track_id,
      person: p.name, name: p.transcriptionOptOut ? t('tile.notTranscribed', { name: p.name }) : p.name,
      video: camInfo && !camInfo.muted && forwarded && !audioOnly ? media(camInfo) : null, audio: media(bySource.microphone),
      micMuted: !bySource.microphone || bySource.microphone.muted, camMuted: !camInfo || camInfo.muted,
      interrupted: !!p.mediaInterrupted,
    });
    if (bySource.screen_share) {
      tiles.push({ key: `${p.id}:screen_share`, participantId: p.id, source: 'screen_share', local: false,
        trackId: bySource.screen_share.track_id,
        person: p.name, name: t('tile.screen', { name: p.name }), video: audioOnly ? null : media(bySource.screen_share), audio: null,
        micMuted: false, camMuted: false });
    }
  }
  // Screen shares first: they get the big slot.
  return tiles.sort((a, b) => (b.source === 'screen_share') - (a.source === 'screen_share'));
}

/** Brings the grid in line with the meeting: adds, updates and removes tiles. */
export function renderGrid(meeting) {
  const grid = $('grid');
  if (!meeting || !meeting.participantId) {
    grid.replaceChildren();
    return;
  }
  const existing = new Map([...grid.children].map((el) => [el.dataset.key, el]));
  const wanted = desiredTiles(meeting);
  wanted.forEach((d, i) => {
    let tile = existing.get(d.key);
    if (!tile) tile = makeTile(d.key, d.participantId, d.source, d.local);
    existing.delete(d.key);
    if (grid.children[i] !== tile) grid.insertBefore(tile, grid.children[i] || null);
    tile.querySelector('.name').textContent = d.name;
    tile.setAttribute('aria-label', d.name);
    tile.querySelector('.avatar').textContent = initials(d.person);
    bind(tile.querySelector('video'), d.video);
    if (d.trackId) tile.dataset.trackId = d.trackId;
    else delete tile.dataset.trackId;
    tile.classList.toggle('has-video', !!d.video);
    tile.classList.toggle('mirrored', d.local && d.source === 'camera');
    const audio = tile.querySelector('audio');
    if (audio) bind(audio, d.audio);
    const mod = tile.querySelector('.mod-controls');
    if (mod) {
      mod.hidden = meeting.role !== 'moderator';
      // Each says whose: "Mute Alice", "Remove Alice".
      for (const button of mod.querySelectorAll('button')) {
        const key = button.dataset.action === 'mute' ? 'tile.muteWho' : 'tile.removeWho';
        if (button.getAttribute('aria-label') !== t(key, { name: d.person })) localize(button, key, { name: d.person }, 'aria-label');
      }
    }
    if (d.source === 'camera') {
      // An interrupted connection is said as such, not shown as muted devices.
      const interrupted = !!d.interrupted;
      tile.classList.toggle('interrupted', interrupted);
      tile.querySelector('.interrupted').hidden = !interrupted;
      tile.querySelector('.mic-off').hidden = !d.micMuted || interrupted;
      tile.querySelector('.cam-off').hidden = !d.camMuted || interrupted;
    }
  });
  for (const el of existing.values()) {
    for (const m of el.querySelectorAll('video, audio')) m.srcObject = null;
    el.remove();
  }
  grid.dataset.count = String(grid.children.length);
}

/**
 * Tells the server each remote video tile's size on screen (device pixels), or 0 x 0 for one that is
 * not seen (no video shown, scrolled away, or the page hidden): it forwards no more than that needs.
 */
export function reportVideoTiles(meeting) {
  if (!meeting || meeting.state !== 'joined') return;
  const view = { w: window.innerWidth, h: window.innerHeight };
  const dpr = window.devicePixelRatio || 1;
  for (const tile of $('grid').querySelectorAll('.tile[data-track-id]')) {
    const r = tile.querySelector('video').getBoundingClientRect();
    const seen = tile.classList.contains('has-video') && !document.hidden &&
      r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 && r.top < view.h && r.left < view.w;
    meeting.setVideoTile(tile.dataset.trackId, seen ? r.width * dpr : 0, seen ? r.height * dpr : 0);
  }
}

/** Marks the tile of the room's dominant speaker (the server's decision) and of no one else. */
export function showDominantSpeaker(meeting) {
  for (const tile of $('grid').querySelectorAll('.tile.camera')) {
    const id = tile.dataset.participantId;
    const dominant = meeting.dominantSpeaker != null && id === meeting.dominantSpeaker;
    tile.classList.toggle('dominant', dominant);
    tile.querySelector('.dominant-cue').hidden = !dominant;
  }
}

export function showLevels(levels) {
  for (const tile of $('grid').querySelectorAll('.tile.camera')) {
    const speaking = (levels.get(tile.dataset.participantId) || 0) > SPEAKING_LEVEL;
    tile.classList.toggle('speaking', speaking);
    const cue = tile.querySelector('.speaking-cue');
    if (cue.hidden === speaking) cue.hidden = !speaking;
  }
}

export function updateToolbar(meeting) {
  const mic = $('mic-button');
  const cam = $('camera-button');
  const share = $('share-button');
  mic.disabled = !meeting.local.microphone;
  cam.disabled = !meeting.local.camera;
  const micMuted = meeting.isMuted('microphone');
  const camMuted = meeting.isMuted('camera');
  localize(mic, micMuted ? 'toolbar.unmute' : 'toolbar.mute');
  mic.setAttribute('aria-pressed', String(micMuted && !mic.disabled));
  localize(cam, camMuted ? 'toolbar.startVideo' : 'toolbar.stopVideo');
  cam.setAttribute('aria-pressed', String(camMuted && !cam.disabled));
  share.hidden = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  localize(share, meeting.sharing ? 'toolbar.stopSharing' : 'toolbar.share');
  share.setAttribute('aria-pressed', String(meeting.sharing));
}

/** Fills a select with devices of one kind, keeping `selectedId` chosen. */
export function fillDeviceSelect(select, devices, kind, selectedId) {
  const which = kind === 'audioinput' ? 'microphone' : 'camera';
  const options = devices.filter((d) => d.kind === kind && d.deviceId).map((d, i) => {
    const o = document.createElement('option');
    o.value = d.deviceId;
    if (d.label) o.textContent = d.label;
    else localize(o, `devices.${which}Numbered`, { n: i + 1 });
    o.selected = d.deviceId === selectedId;
    return o;
  });
  if (!options.length) {
    const o = document.createElement('option');
    o.value = '';
    localize(o, `devices.no${which === 'microphone' ? 'Microphone' : 'Camera'}`);
    options.push(o);
  }
  select.replaceChildren(...options);
  select.disabled = options.length < 2 && !options[0].value;
}

// ---- transcription ----

/** How long a final caption stays under the video. */
const CAPTION_LINGER_MS = 8000;
/** The most caption lines shown at once. */
const CAPTION_LINES = 3;
let captionTimer = null;

/**
 * Banner and toolbar for transcription. `view`: {canToggle (may switch it), captionsVisible,
 * transcriptOpen}. The Transcribe toggle is offered to those who may switch it; without a connected
 * transcription service it says so and cannot be turned on.
 */
export function updateTranscription(meeting, view) {
  const status = meeting ? meeting.transcription : { enabled: false, available: false };
  const banner = $('transcription-banner');
  banner.hidden = !status.enabled;
  banner.dataset.available = String(!!status.available);
  const bannerText = $('transcription-banner-text');
  if (!status.available) localize(bannerText, 'transcription.onNoService');
  else if (status.language) localize(bannerText, 'transcription.onLanguage', { language: languageName(status.language) });
  else localize(bannerText, 'transcription.on');
  const consent = $('consent-button');
  const optedOut = !!(meeting && meeting.transcriptionOptOut);
  localize(consent, optedOut ? 'transcription.optIn' : 'transcription.optOut');
  consent.setAttribute('aria-pressed', String(optedOut));
  const toggle = $('transcribe-button');
  toggle.hidden = !view.canToggle;
  toggle.disabled = !status.enabled && !status.available;
  localize(toggle, status.enabled ? 'toolbar.stopTranscription' : 'toolbar.transcribe');
  toggle.setAttribute('aria-pressed', String(!!status.enabled));
  if (!status.enabled && !status.available) localize(toggle, 'toolbar.noTranscriptionService', null, 'title');
  else {
    toggle.removeAttribute('data-i18n-title');
    toggle.removeAttribute('title');
  }
  $('transcription-unavailable').hidden = !view.canToggle || status.enabled || !!status.available;
  const language = $('transcription-language');
  $('transcription-language-field').hidden = !view.canToggle || (!status.enabled && !status.available);
  fillTranscriptionLanguages(language);
  if (status.enabled) language.value = status.language || '';
  const hasText = !!(meeting && meeting.transcript.length);
  const captions = $('captions-button');
  captions.hidden = !status.enabled && !hasText;
  localize(captions, view.captionsVisible ? 'toolbar.hideCaptions' : 'toolbar.showCaptions');
  captions.setAttribute('aria-pressed', String(!view.captionsVisible));
  const transcript = $('transcript-button');
  transcript.hidden = !status.enabled && !hasText && !view.transcriptOpen;
  transcript.setAttribute('aria-pressed', String(!!view.transcriptOpen));
  $('transcript-panel').hidden = !view.transcriptOpen;
}

/**
 * Languages a moderator may pick for transcription (Whisper's codes), beside automatic detection:
 * Swedish and English first, then languages spoken by many in Sweden and its neighbours.
 */
const TRANSCRIPTION_LANGUAGES = ['sv', 'en', 'fi', 'no', 'da', 'de', 'fr', 'es', 'ar', 'so', 'fa', 'pl', 'uk', 'tr'];

/** Fills the language select (again when the page's language changed: names are in it). */
function fillTranscriptionLanguages(select) {
  const names = TRANSCRIPTION_LANGUAGES.map((code) => [code, languageName(code)]);
  const auto = t('transcription.autoLanguage');
  if (select.dataset.filledFor === `${auto}|${names[0][1]}`) return;
  const value = select.value;
  select.replaceChildren(new Option(auto, ''), ...names.map(([code, name]) => new Option(name, code)));
  select.value = value;
  select.dataset.filledFor = `${auto}|${names[0][1]}`;
}

/** Live captions under the video: the newest few utterances; interim ones in place until their final. */
export function renderCaptions(meeting, visible) {
  const box = $('captions');
  clearTimeout(captionTimer);
  box.hidden = !visible;
  if (!meeting) {
    box.replaceChildren();
    return;
  }
  const now = Date.now();
  const shown = [...meeting.captions.values()]
    .filter((c) => !c.final || now - c.received < CAPTION_LINGER_MS)
    .slice(-CAPTION_LINES);
  const existing = new Map([...box.children].map((el) => [el.dataset.utteranceId, el]));
  const lines = shown.map((c) => {
    let line = existing.get(c.utterance_id);
    if (!line) {
      line = document.createElement('div');
      line.className = 'caption';
      line.dataset.utteranceId = c.utterance_id;
      line.append(document.createElement('span'), document.createElement('span'));
      line.children[0].className = 'speaker';
      line.children[1].className = 'text';
    }
    line.dataset.participantId = c.participant_id || '';
    line.dataset.final = String(c.final);
    line.children[0].textContent = c.name;
    line.children[1].textContent = c.text;
    return line;
  });
  box.replaceChildren(...lines);
  const expiries = shown.filter((c) => c.final).map((c) => c.received + CAPTION_LINGER_MS - now);
  if (expiries.length) captionTimer = setTimeout(() => renderCaptions(meeting, !box.hidden), Math.max(50, Math.min(...expiries)));
}

function clock(ms) {
  return formatTime(ms);
}

/** The meeting's summary at the top of the transcript panel, once the server has sent it (moderators). */
export function renderSummary(meeting) {
  const summary = meeting && meeting.summary;
  $('meeting-summary').hidden = !summary;
  if (!summary) return;
  const parts = [
    ['keyPoints', 'summary.keyPoints', summary.key_points || []],
    ['decisions', 'summary.decisions', summary.decisions || []],
    ['actionItems', 'summary.actionItems', summary.action_items || []],
  ];
  $('meeting-summary-body').replaceChildren(...parts.flatMap(([part, key, points]) => {
    const heading = document.createElement('h4');
    heading.textContent = t(key);
    let list;
    if (points.length) {
      list = document.createElement('ul');
      for (const p of points) {
        const li = document.createElement('li');
        if (p.speaker) {
          const who = document.createElement('span');
          who.className = 'speaker';
          who.textContent = p.speaker;
          li.append(who, ': ');
        }
        li.append(p.text);
        list.append(li);
      }
    } else {
      list = document.createElement('p');
      list.textContent = t('summary.none');
    }
    list.dataset.part = part;
    return [heading, list];
  }));
}

/** The transcript panel: every final caption of this meeting so far, oldest first. */
export function renderTranscript(meeting) {
  const list = $('transcript-list');
  const entries = meeting ? meeting.transcript : [];
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  const existing = new Map([...list.children].map((el) => [el.dataset.utteranceId, el]));
  const items = entries.map((c) => {
    let li = existing.get(c.utterance_id);
    if (!li) {
      li = document.createElement('li');
      li.dataset.utteranceId = c.utterance_id;
      li.append(document.createElement('time'), document.createElement('span'), document.createElement('span'));
      li.children[1].className = 'speaker';
      li.children[2].className = 'text';
    }
    li.dataset.participantId = c.participant_id || '';
    li.children[0].textContent = clock(c.start_ms);
    if (typeof c.start_ms === 'number') li.children[0].dateTime = new Date(c.start_ms).toISOString();
    li.children[1].textContent = c.name;
    li.children[2].textContent = c.text;
    return li;
  });
  list.replaceChildren(...items);
  $('transcript-empty').hidden = entries.length > 0;
  if (stick) list.scrollTop = list.scrollHeight;
}
