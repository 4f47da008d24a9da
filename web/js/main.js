// Entry point of the Samtal page: reads the URL state (?room=&name=&token=&autojoin=1, #jwt=, and the
// embedding options of docs/embedding.md), runs the device preview, joins and leaves meetings, wires
// buttons and keyboard shortcuts to the Meeting, runs the iframe bridge when embedded, and exposes
// read-only debug state as window.samtal for tests. Words shown come from i18n.js.

import { Meeting, openLocalMedia } from './meeting.js';
import { defaultSignalingUrl } from './signaling.js';
import { startEmbedBridge } from './embed.js';
import * as ui from './ui.js';
import * as i18n from './i18n.js';
import * as people from './people.js';

const $ = (id) => document.getElementById(id);

/** Toolbar button names of the `toolbar` parameter (interfaceConfigOverwrite.TOOLBAR_BUTTONS) and their elements. */
const TOOLBAR_BUTTONS = {
  microphone: 'mic-button',
  camera: 'camera-button',
  desktop: 'share-button',
  transcription: 'transcribe-button',
  closedcaptions: 'captions-button',
  transcript: 'transcript-button',
  devices: 'device-slot',
  hangup: 'leave-button',
};

let meeting = null;
let preview = null; // MediaStream shown before joining; handed to the Meeting on join
let previewing = null; // the running startPreview() promise
let joining = false;
let lastEnd = 'idle'; // state of the meeting that ended last: left or failed
const params = readParams();
/** Mute state to join with; the toggles change it before joining. */
const startMuted = { microphone: params.audioMuted, camera: params.videoMuted };
/** UI state of the transcription controls. */
const view = { captionsVisible: params.captions, transcriptOpen: false, peopleOpen: false, chatOpen: false, chatRead: 0, audioOnly: false };
/** /client-config.json: {allowed_origins, auth, transcription_available}; null until loaded or when unreachable. */
let clientConfig = null;
/** Lifecycle events for the embed bridge: `meeting` {meeting} whenever a Meeting is created, `view` (captions shown/hidden). */
const app = new EventTarget();

function readParams() {
  const q = new URLSearchParams(window.location.search);
  const h = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  const flag = (name) => q.get(name) === '1' || q.get(name) === 'true';
  return {
    room: q.get('room') || '',
    name: q.get('name') || '',
    token: q.get('token') || h.get('jwt') || '',
    autojoin: q.get('autojoin') === '1',
    embed: flag('embed'),
    lang: q.get('lang') || '',
    audioMuted: flag('audio_muted'),
    videoMuted: flag('video_muted'),
    relay: flag('relay'),
    captions: q.get('captions') !== '0' && q.get('captions') !== 'false',
    transcriptionLanguage: q.get('transcription_language') || '',
    toolbar: q.has('toolbar') ? q.get('toolbar').split(',').map((s) => s.trim()).filter(Boolean) : null,
    matrixRoom: q.get('matrix_room') || '',
    parentOrigin: q.get('parent_origin') || '',
  };
}

async function loadClientConfig() {
  try {
    const r = await fetch('/client-config.json', { cache: 'no-cache' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    clientConfig = await r.json();
  } catch (e) {
    console.warn('samtal: no /client-config.json, assuming a server with tokens and no embedding', e);
    clientConfig = null;
  }
  renderTranscription();
  return clientConfig;
}

/** Moderators may switch transcription, and everyone on an open server. */
function canToggleTranscription() {
  if (!meeting || meeting.state !== 'joined') return false;
  return meeting.role === 'moderator' || (clientConfig !== null && clientConfig.auth === false);
}

function stopPreview() {
  if (preview) preview.getTracks().forEach((t) => t.stop());
  preview = null;
  $('preview').srcObject = null;
}

async function refreshDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const stream = meeting && meeting.state === 'joined' ? meeting.localStream : preview;
  const current = (kind) => stream?.getTracks().find((t) => t.kind === kind)?.getSettings().deviceId;
  ui.fillDeviceSelect($('mic-select'), devices, 'audioinput', current('audio') || $('mic-select').value);
  ui.fillDeviceSelect($('camera-select'), devices, 'videoinput', current('video') || $('camera-select').value);
}

function startPreview() {
  previewing = (async () => {
    stopPreview();
    const { stream, warnings } = await openLocalMedia({
      audioDeviceId: $('mic-select').value || undefined,
      videoDeviceId: $('camera-select').value || undefined,
    });
    preview = stream;
    $('preview').srcObject = stream.getVideoTracks().length ? stream : null;
    warnings.forEach((w) => ui.notice(w));
    await refreshDevices();
  })();
  return previewing;
}

function render() {
  if (!meeting) return;
  ui.renderGrid(meeting);
  ui.reportVideoTiles(meeting);
  ui.showDominantSpeaker(meeting);
  ui.updateToolbar(meeting);
  ui.setConnectionState(...ui.connectionSummary(meeting));
}

function renderTranscription() {
  ui.updateTranscription(meeting, { ...view, canToggle: canToggleTranscription() });
}

function renderCaptions() {
  ui.renderCaptions(meeting, view.captionsVisible);
  ui.renderSummary(meeting);
  ui.renderTranscript(meeting);
  renderTranscription();
}

async function join(event) {
  if (event) event.preventDefault();
  if (joining || (meeting && meeting.state === 'joined')) return;
  const form = $('join-form');
  if (!form.reportValidity()) return;
  joining = true;
  $('join-button').disabled = true;
  ui.clearNotices();
  try {
    if (previewing) await previewing;
    const name = $('name').value.trim();
    const room = $('room').value.trim();
    try {
      localStorage.setItem('samtal.name', name);
    } catch { /* storage may be off */ }
    const extra = params.matrixRoom ? { matrix_room: params.matrixRoom } : {};
    const m = new Meeting({
      url: defaultSignalingUrl(), room, name, token: params.token, stream: preview || new MediaStream(),
      startMuted: { ...startMuted }, extra, relay: params.relay,
    });
    meeting = m;
    preview = null; // the meeting owns these tracks now
    for (const ev of ['state', 'roster', 'media', 'local', 'connection']) m.addEventListener(ev, render);
    m.addEventListener('levels', (e) => ui.showLevels(e.detail.levels));
    m.addEventListener('dominant-speaker', () => ui.showDominantSpeaker(m));
    m.addEventListener('notice', (e) => ui.notice(e.detail.message, e.detail.level));
    m.addEventListener('local', refreshDevices);
    m.addEventListener('transcription', renderTranscription);
    m.addEventListener('transcription', renderPanels);
    m.addEventListener('caption', renderCaptions);
    m.addEventListener('summary', () => {
      view.transcriptOpen = true;
      renderCaptions();
      ui.announce('summary.ready');
    });
    m.addEventListener('roster', renderPanels);
    m.addEventListener('knock', (e) => ui.notice(i18n.t('lobby.knocking', { name: e.detail.name }), 'info'));
    m.addEventListener('state', () => {
      $('lobby-cancel').hidden = m.state !== 'lobby';
      if (m.state === 'lobby') ui.announce('conn.lobby');
    });
    m.addEventListener('chat', renderPanels);
    m.addEventListener('state', renderPanels);
    m.addEventListener('state', renderTranscription);
    m.addEventListener('ended', (e) => onEnded(m, e.detail));
    app.dispatchEvent(new CustomEvent('meeting', { detail: { meeting: m } }));
    ui.setConnectionState('connecting', 'conn.connecting');
    await m.join();
    $('room-label').textContent = room;
    i18n.localize($('meeting-heading'), 'meeting.headingRoom', { room });
    ui.showView('meeting');
    render();
    renderCaptions();
  } catch (e) {
    // When the meeting ended itself (fatal error, closed socket), onEnded has already reported it.
    if (meeting) {
      ui.notice(e.message);
      ui.setConnectionState('failed', 'conn.idle');
      lastEnd = 'failed';
      preview = meeting.localStream; // the socket never opened: keep the devices
      $('preview').srcObject = preview.getVideoTracks().length ? preview : null;
      meeting = null;
    }
  } finally {
    joining = false;
    $('join-button').disabled = false;
  }
}

function onEnded(m, { reason, message }) {
  if (m !== meeting) return;
  $('lobby-cancel').hidden = true;
  lastEnd = m.state;
  ui.renderGrid(null);
  ui.showView('prejoin');
  $('room-label').textContent = '';
  ui.setConnectionState(reason === 'left' ? 'idle' : 'failed', 'conn.idle');
  ui.notice(message, reason === 'left' ? 'info' : 'error');
  meeting = null;
  view.transcriptOpen = false;
  Object.assign(view, { peopleOpen: false, chatOpen: false, chatRead: 0 });
  $('chat-list').replaceChildren();
  renderCaptions();
  renderPanels();
  startPreview();
}

// ---- participant list and chat ----

function renderPanels() {
  people.renderPeople(meeting, view);
  people.renderChat(meeting, view);
}

function setPanelOpen(panel, open) {
  const key = panel === 'people' ? 'peopleOpen' : 'chatOpen';
  view[key] = open === undefined ? !view[key] : !!open;
  renderPanels();
  if (view[key]) $(panel === 'people' ? 'people-close' : 'chat-input').focus();
}

function toggleHand() {
  if (!meeting || meeting.state !== 'joined') return;
  const raise = !meeting.handRaisedAt;
  meeting.setHand(raise);
  ui.announce(raise ? 'announce.handRaised' : 'announce.handLowered');
}

function sendChat(e) {
  e.preventDefault();
  const input = $('chat-input');
  if (meeting && input.value.trim()) {
    meeting.sendChat(input.value);
    input.value = '';
  }
  input.focus();
}

// ---- actions (buttons and the embed bridge) ----

function toggleMute(source) {
  if (meeting && meeting.state === 'joined') {
    return meeting.setMuted(source, !meeting.isMuted(source));
  }
  startMuted[source] = !startMuted[source]; // not joined yet: join that way
  return undefined;
}

// ---- keyboard shortcuts (listed in the shortcuts dialog, README.md) ----

/** What a shortcut did, said to screen readers: the device's state after the change. */
async function toggleMuteAnnounced(source) {
  const m = meeting;
  if (!m.local[source]) {
    ui.announce(source === 'camera' ? 'announce.noCamera' : 'announce.noMicrophone');
    return;
  }
  await toggleMute(source);
  if (m !== meeting) return;
  const off = m.isMuted(source);
  if (source === 'camera') ui.announce(off ? 'announce.cameraOff' : 'announce.cameraOn');
  else ui.announce(off ? 'announce.microphoneOff' : 'announce.microphoneOn');
}

function openShortcuts() {
  const dialog = $('shortcuts-dialog');
  if (dialog.open) return;
  dialog.returnTo = document.activeElement;
  dialog.showModal();
  $('shortcuts-close').focus();
}

function closeShortcuts() {
  const dialog = $('shortcuts-dialog');
  if (dialog.open) dialog.close();
}

/**
 * M: microphone off/on, V: camera off/on, ?: the list of shortcuts. Only in a meeting, without
 * Ctrl/Alt/Meta, and not while typing in a field or choosing in a list (there the letters are input).
 */
function onShortcut(e) {
  if (e.defaultPrevented || e.ctrlKey || e.altKey || e.metaKey || e.repeat) return;
  const target = e.target instanceof Element ? e.target : null;
  if (target && target.closest('input, textarea, select, [contenteditable]:not([contenteditable="false"]), dialog')) return;
  if (e.key === '?') {
    e.preventDefault();
    openShortcuts();
    return;
  }
  if (!meeting || meeting.state !== 'joined') return;
  const key = e.key.toLowerCase();
  if (key === 'm' || key === 'v') {
    e.preventDefault();
    toggleMuteAnnounced(key === 'm' ? 'microphone' : 'camera');
  } else if (key === 'h') {
    e.preventDefault();
    toggleHand();
  }
}

/**
 * Audio only (as on a thin or costly link): no remote video is shown or received, and the camera is
 * turned off; turning it off again shows video again (the camera stays off until turned on).
 */
async function toggleAudioOnly() {
  view.audioOnly = !view.audioOnly;
  ui.setAudioOnly(view.audioOnly);
  if (view.audioOnly && meeting && meeting.state === 'joined' && meeting.local.camera && !meeting.isMuted('camera')) {
    await meeting.setMuted('camera', true);
  } else if (view.audioOnly) {
    startMuted.camera = true;
  }
  render();
  ui.reportVideoTiles(meeting);
  ui.announce(view.audioOnly ? 'announce.audioOnlyOn' : 'announce.audioOnlyOff');
}

function toggleShareScreen() {
  if (meeting) return meeting.sharing ? meeting.stopScreenShare() : meeting.startScreenShare();
}

function hangup() {
  if (meeting) meeting.leave();
}

function setTranscription(enabled, options = {}) {
  if (!meeting || meeting.state !== 'joined') return false;
  const language = options.language || $('transcription-language').value || params.transcriptionLanguage || undefined;
  return meeting.setTranscription(enabled, { language, prompt: options.prompt });
}

function setCaptionsVisible(visible) {
  view.captionsVisible = visible === undefined ? !view.captionsVisible : !!visible;
  renderCaptions();
  app.dispatchEvent(new CustomEvent('view'));
}

function setTranscriptOpen(open) {
  view.transcriptOpen = open === undefined ? !view.transcriptOpen : !!open;
  renderCaptions();
}

/**
 * Changes the display name. Before joining it is the name to join with; in a meeting the protocol has
 * no rename yet, so it changes this page's own label and the name of the next join.
 */
function setDisplayName(name) {
  const clean = String(name ?? '').trim().slice(0, 64);
  if (!clean) return;
  $('name').value = clean;
  try {
    localStorage.setItem('samtal.name', clean);
  } catch { /* storage may be off */ }
  if (meeting) {
    meeting.name = clean;
    render();
  }
}

function wireControls() {
  $('join-form').addEventListener('submit', join);
  $('mic-button').onclick = () => toggleMute('microphone');
  $('camera-button').onclick = () => toggleMute('camera');
  $('share-button').onclick = toggleShareScreen;
  $('leave-button').onclick = hangup;
  $('transcribe-button').onclick = () => meeting && setTranscription(!meeting.transcription.enabled);
  // While transcription runs, another language applies at once (the server tells the worker).
  $('transcription-language').onchange = () => meeting?.transcription.enabled && setTranscription(true);
  $('audio-only-button').onclick = toggleAudioOnly;
  $('consent-button').onclick = () => meeting && meeting.setTranscriptionOptOut(!meeting.transcriptionOptOut);
  $('captions-button').onclick = () => setCaptionsVisible();
  $('transcript-button').onclick = () => setTranscriptOpen();
  $('transcript-close').onclick = () => setTranscriptOpen(false);
  $('shortcuts-button').onclick = openShortcuts;
  $('hand-button').onclick = toggleHand;
  $('people-button').onclick = () => setPanelOpen('people');
  $('people-close').onclick = () => setPanelOpen('people', false);
  $('chat-button').onclick = () => setPanelOpen('chat');
  $('chat-close').onclick = () => setPanelOpen('chat', false);
  $('chat-form').addEventListener('submit', sendChat);
  // Enter sends, Shift+Enter starts a new line.
  $('chat-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) sendChat(e);
  });
  $('lock-room').onchange = (e) => meeting && meeting.setLocked(e.target.checked);
  $('lobby-room').onchange = (e) => meeting && meeting.setLobby(e.target.checked);
  $('lobby-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-admit]');
    if (button && meeting) meeting.decideLobby(button.closest('li').dataset.participantId, button.dataset.admit === 'true');
  });
  $('lobby-cancel').onclick = () => meeting && meeting.state === 'lobby' && meeting.leave();
  $('mute-all-button').onclick = () => meeting && meeting.roomAction('mute_all');
  $('end-all-button').onclick = () => {
    if (meeting && window.confirm(i18n.t('people.endConfirm'))) meeting.roomAction('end');
  };
  $('people-list').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action="lower_hand"]');
    if (button && meeting) meeting.moderate('lower_hand', button.closest('li').dataset.participantId);
  });
  $('shortcuts-close').onclick = closeShortcuts;
  // Closed (Close, Escape): the focus goes back where it was, unless the user has moved it meanwhile
  // (the close event comes a task later).
  $('shortcuts-dialog').addEventListener('close', () => {
    const back = $('shortcuts-dialog').returnTo;
    const moved = document.activeElement && document.activeElement !== document.body;
    if (!moved && back && back.isConnected && typeof back.focus === 'function') back.focus();
  });
  document.addEventListener('keydown', onShortcut);
  // A change of language: the words built here are built again (marked elements follow by themselves).
  i18n.events.addEventListener('change', () => {
    render();
    renderCaptions();
    renderPanels();
  });
  $('grid').addEventListener('click', (e) => {
    const button = e.target.closest('.mod-controls button');
    if (button && meeting) meeting.moderate(button.dataset.action, button.closest('.tile').dataset.participantId);
  });
  for (const [id, kind] of [['mic-select', 'audio'], ['camera-select', 'video']]) {
    $(id).addEventListener('change', (e) => {
      if (meeting && meeting.state === 'joined') meeting.switchDevice(kind, e.target.value);
      else startPreview();
    });
  }
  if (navigator.mediaDevices) navigator.mediaDevices.addEventListener('devicechange', refreshDevices);
  // Resume audio output that autoplay rules held back, on the first click anywhere.
  document.addEventListener('click', () => {
    for (const el of document.querySelectorAll('audio, video')) if (el.paused && el.srcObject) el.play().catch(() => {});
    if (meeting && meeting.audioCtx && meeting.audioCtx.state === 'suspended') meeting.audioCtx.resume();
  });
  window.addEventListener('pagehide', () => meeting && meeting.leave());
}

/** Hides the toolbar buttons not named in `toolbar` (when given). */
function applyToolbar(names) {
  if (!names) return;
  for (const [name, id] of Object.entries(TOOLBAR_BUTTONS)) {
    if (!names.includes(name)) $(id).classList.add('excluded');
  }
}

const copyCaption = (c) => ({ ...c });

// Read-only view of the session for tests and debugging.
window.samtal = Object.freeze({
  get state() { return meeting ? meeting.state : lastEnd; },
  get participantId() { return meeting ? meeting.participantId : null; },
  /** The signaling websocket dropped and the session is being resumed. */
  get reconnecting() { return meeting ? meeting.reconnecting : false; },
  /** The room's dominant speaker as the server announced it (a participant id), or null. */
  get dominantSpeaker() { return meeting ? meeting.dominantSpeaker : null; },
  /** Last-N: ids whose cameras the server forwards to us, or null before it said. */
  get forwardedVideo() { return meeting ? meeting.forwardedVideo : null; },
  get role() { return meeting ? meeting.role : null; },
  get room() { return meeting ? meeting.room : null; },
  get name() { return meeting ? meeting.name : null; },
  get publishPc() { return meeting ? meeting.publishPc : null; },
  get subscribePc() { return meeting ? meeting.subscribePc : null; },
  /** Map id -> {id, name, role, tracks: Map track_id -> {track_id, kind, source, muted, stream_id}} */
  get participants() { return meeting ? meeting.participants : new Map(); },
  /** Map track_id -> {participantId, track, mid, kind}: what the subscribe connection receives now. */
  get remoteMedia() { return meeting ? meeting.remoteMedia : new Map(); },
  get sharing() { return meeting ? meeting.sharing : false; },
  /** {locked, lobby}: the room's settings as moderators set them. */
  get roomSettings() { return meeting ? { ...meeting.roomSettings } : { locked: false, lobby: false }; },
  /** Moderators: who waits in the lobby, [{id, name, since}]. */
  get lobby() { return meeting ? [...meeting.lobby] : []; },
  /** Whether our microphone/camera is muted (before joining: whether we will join muted). */
  isMuted(source) { return meeting && meeting.state === 'joined' ? meeting.isMuted(source) : !!startMuted[source]; },
  /** {enabled, available, language, meeting_id} of the room's transcription. */
  get transcription() { return meeting ? { ...meeting.transcription } : { enabled: false, available: !!clientConfig?.transcription_available, language: null, meeting_id: null }; },
  /** The latest captions, interim and final: [{utterance_id, participant_id, name, text, final, ...}]. */
  get captions() { return meeting ? [...meeting.captions.values()].map(copyCaption) : []; },
  /** Final captions of this meeting, in order. */
  get transcript() { return meeting ? meeting.transcript.map(copyCaption) : []; },
  get captionsVisible() { return view.captionsVisible; },
  /** The Matrix room this meeting belongs to (from the widget, `matrix_room` in the URL), or null. */
  get matrixRoomId() { return params.matrixRoom || null; },
  get embedded() { return window.parent !== window; },
  get clientConfig() { return clientConfig ? JSON.parse(JSON.stringify(clientConfig)) : null; },
  /** The interface language ('en', 'sv'). */
  get language() { return i18n.language(); },
});

function init() {
  let savedName = '';
  try {
    savedName = localStorage.getItem('samtal.name') || '';
  } catch { /* storage may be off */ }
  if (params.embed || window.parent !== window) document.body.classList.add('embedded');
  $('name').value = params.name || savedName;
  $('room').value = params.room;
  applyToolbar(params.toolbar);
  wireControls();
  ui.showView('prejoin');
  const configured = loadClientConfig();
  if (window.parent !== window) {
    startEmbedBridge({
      app,
      config: configured,
      parentOrigin: params.parentOrigin,
      current: () => meeting,
      captionsVisible: () => view.captionsVisible,
      commands: {
        toggleAudio: () => toggleMute('microphone'),
        toggleVideo: () => toggleMute('camera'),
        toggleShareScreen,
        hangup,
        displayName: setDisplayName,
        startTranscription: (options) => setTranscription(true, options || {}),
        stopTranscription: () => setTranscription(false),
        toggleCaptions: setCaptionsVisible,
        toggleTranscript: setTranscriptOpen,
      },
    });
  }
  // Tile sizes change with the window, the page's visibility and the grid's layout.
  const reportTiles = () => ui.reportVideoTiles(meeting);
  window.addEventListener('resize', reportTiles);
  document.addEventListener('visibilitychange', reportTiles);
  setInterval(reportTiles, 1000);
  startPreview().finally(() => {
    if (params.autojoin && params.room && params.name) join();
  });
}

init();
