// Entry point of the Samtal page: reads ?room=&name=&token=&autojoin=1 (or #jwt=), runs the device
// preview, joins and leaves meetings, wires buttons to the Meeting, and exposes read-only debug state
// as window.samtal for tests.

import { Meeting, openLocalMedia } from './meeting.js';
import { defaultSignalingUrl } from './signaling.js';
import * as ui from './ui.js';

const $ = (id) => document.getElementById(id);

let meeting = null;
let preview = null; // MediaStream shown before joining; handed to the Meeting on join
let previewing = null; // the running startPreview() promise
let joining = false;
let lastEnd = 'idle'; // state of the meeting that ended last: left or failed

function readParams() {
  const q = new URLSearchParams(window.location.search);
  const h = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  return {
    room: q.get('room') || '',
    name: q.get('name') || '',
    token: q.get('token') || h.get('jwt') || '',
    autojoin: q.get('autojoin') === '1',
  };
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
  ui.updateToolbar(meeting);
  ui.setConnectionState(...ui.connectionSummary(meeting));
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
    const { token } = readParams();
    const m = new Meeting({ url: defaultSignalingUrl(), room, name, token, stream: preview || new MediaStream() });
    meeting = m;
    preview = null; // the meeting owns these tracks now
    for (const ev of ['state', 'roster', 'media', 'local', 'connection']) m.addEventListener(ev, render);
    m.addEventListener('levels', (e) => ui.showLevels(e.detail.levels));
    m.addEventListener('notice', (e) => ui.notice(e.detail.message, e.detail.level));
    m.addEventListener('local', refreshDevices);
    m.addEventListener('ended', (e) => onEnded(m, e.detail));
    ui.setConnectionState('connecting', 'Connecting…');
    await m.join();
    $('room-label').textContent = room;
    ui.showView('meeting');
    render();
  } catch (e) {
    // When the meeting ended itself (fatal error, closed socket), onEnded has already reported it.
    if (meeting) {
      ui.notice(e.message);
      ui.setConnectionState('failed', 'Not connected');
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
  lastEnd = m.state;
  ui.renderGrid(null);
  ui.showView('prejoin');
  $('room-label').textContent = '';
  ui.setConnectionState(reason === 'left' ? 'idle' : 'failed', 'Not connected');
  ui.notice(message, reason === 'left' ? 'info' : 'error');
  meeting = null;
  startPreview();
}

function wireControls() {
  $('join-form').addEventListener('submit', join);
  $('mic-button').onclick = () => meeting && meeting.setMuted('microphone', !meeting.isMuted('microphone'));
  $('camera-button').onclick = () => meeting && meeting.setMuted('camera', !meeting.isMuted('camera'));
  $('share-button').onclick = () => meeting && (meeting.sharing ? meeting.stopScreenShare() : meeting.startScreenShare());
  $('leave-button').onclick = () => meeting && meeting.leave();
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

// Read-only view of the session for tests and debugging.
window.samtal = Object.freeze({
  get state() { return meeting ? meeting.state : lastEnd; },
  get participantId() { return meeting ? meeting.participantId : null; },
  get publishPc() { return meeting ? meeting.publishPc : null; },
  get subscribePc() { return meeting ? meeting.subscribePc : null; },
  /** Map id -> {id, name, role, tracks: Map track_id -> {track_id, kind, source, muted, stream_id}} */
  get participants() { return meeting ? meeting.participants : new Map(); },
  /** Map track_id -> {participantId, track, mid, kind}: what the subscribe connection receives now. */
  get remoteMedia() { return meeting ? meeting.remoteMedia : new Map(); },
  get sharing() { return meeting ? meeting.sharing : false; },
});

function init() {
  const params = readParams();
  let savedName = '';
  try {
    savedName = localStorage.getItem('samtal.name') || '';
  } catch { /* storage may be off */ }
  $('name').value = params.name || savedName;
  $('room').value = params.room;
  wireControls();
  ui.showView('prejoin');
  startPreview().finally(() => {
    if (params.autojoin && params.room && params.name) join();
  });
}

init();
