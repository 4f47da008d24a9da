// DOM side of the Samtal page: views, notices, the participant grid (one tile per camera and per
// screen share, keyed by data-participant-id and data-source), speaking and mute indicators, toolbar.

const $ = (id) => document.getElementById(id);

const ICON_MIC_OFF = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11z"/><path d="M3 3l18 18" stroke="currentColor" stroke-width="2.5"/></svg>';
const ICON_CAM_OFF = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 6h12a2 2 0 0 1 2 2v2.5l4-3v9l-4-3V16a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2z"/><path d="M2 2l20 20" stroke="currentColor" stroke-width="2.5"/></svg>';
const SPEAKING_LEVEL = 0.03;

export function showView(which) {
  $('prejoin').hidden = which !== 'prejoin';
  $('meeting').hidden = which !== 'meeting';
  // One set of device selects, shown in whichever view is active.
  (which === 'meeting' ? $('device-slot') : $('preview-box')).appendChild($('devices'));
}

/** Shows a message; errors stay until closed, info goes away by itself. */
export function notice(message, level = 'error') {
  const box = document.createElement('div');
  box.className = `notice ${level}`;
  box.setAttribute('role', level === 'error' ? 'alert' : 'status');
  const text = document.createElement('span');
  text.textContent = message;
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', 'Dismiss');
  close.onclick = () => box.remove();
  box.append(text, close);
  $('notices').appendChild(box);
  if (level !== 'error') setTimeout(() => box.remove(), 6000);
}

export function clearNotices() {
  $('notices').replaceChildren();
}

export function setConnectionState(state, text) {
  const el = $('connection-state');
  el.dataset.state = state;
  el.textContent = text;
}

/** Describes the meeting's connection for the top bar. */
export function connectionSummary(meeting) {
  if (!meeting) return ['idle', 'Not connected'];
  switch (meeting.state) {
    case 'connecting':
      return ['connecting', 'Connecting…'];
    case 'joined': {
      const states = [meeting.publishPc, meeting.subscribePc]
        .filter((pc) => pc && (pc.signalingState !== 'stable' || pc.remoteDescription))
        .map((pc) => pc.connectionState);
      if (states.includes('failed')) return ['failed', 'Media connection failed'];
      if (states.includes('disconnected')) return ['connecting', 'Media reconnecting…'];
      if (states.length && states.every((s) => s === 'connected')) return ['connected', 'Connected'];
      return ['connecting', states.length ? 'Connecting media…' : 'Connected (waiting for media)'];
    }
    case 'left':
      return ['idle', 'Not connected'];
    default:
      return ['failed', 'Disconnected'];
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
  tile.innerHTML = `<video autoplay playsinline muted></video><div class="avatar"></div>
    <div class="label"><span class="icon mic-off" hidden title="Microphone muted">${ICON_MIC_OFF}</span><span class="icon cam-off" hidden title="Camera off">${ICON_CAM_OFF}</span><span class="name"></span></div>`;
  if (source === 'camera' && !local) {
    tile.appendChild(document.createElement('audio')).autoplay = true;
    tile.insertAdjacentHTML('beforeend', `<div class="mod-controls" hidden>
      <button type="button" data-action="mute">Mute</button><button type="button" data-action="remove">Remove</button></div>`);
  }
  return tile;
}

function bind(el, track) {
  if (el._track === track) return;
  el._track = track;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) el.play().catch(() => {}); // autoplay may need a click; the join click usually gave it
}

/** What the grid should show: [{key, participantId, source, local, name, video, audio, micMuted, camMuted}]. */
function desiredTiles(meeting) {
  const tiles = [];
  const me = meeting.participantId;
  const mic = meeting.local.microphone;
  const cam = meeting.local.camera;
  tiles.push({
    key: `${me}:camera`, participantId: me, source: 'camera', local: true, name: `${meeting.name} (you)`,
    video: cam && !cam.muted ? cam.track : null, audio: null, micMuted: !mic || mic.muted, camMuted: !cam || cam.muted,
  });
  if (meeting.local.screen_share) {
    tiles.push({ key: `${me}:screen_share`, participantId: me, source: 'screen_share', local: true,
      name: `${meeting.name} (your screen)`, video: meeting.local.screen_share.track, audio: null, micMuted: false, camMuted: false });
  }
  for (const p of meeting.participants.values()) {
    const bySource = {};
    for (const t of p.tracks.values()) bySource[t.source] = t;
    const media = (t) => (t && meeting.remoteMedia.get(t.track_id)?.track) || null;
    const camInfo = bySource.camera;
    tiles.push({
      key: `${p.id}:camera`, participantId: p.id, source: 'camera', local: false, name: p.name,
      video: camInfo && !camInfo.muted ? media(camInfo) : null, audio: media(bySource.microphone),
      micMuted: !bySource.microphone || bySource.microphone.muted, camMuted: !camInfo || camInfo.muted,
    });
    if (bySource.screen_share) {
      tiles.push({ key: `${p.id}:screen_share`, participantId: p.id, source: 'screen_share', local: false,
        name: `${p.name} (screen)`, video: media(bySource.screen_share), audio: null, micMuted: false, camMuted: false });
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
    tile.querySelector('.avatar').textContent = initials(d.name.replace(/ \(.*\)$/, ''));
    bind(tile.querySelector('video'), d.video);
    tile.classList.toggle('has-video', !!d.video);
    tile.classList.toggle('mirrored', d.local && d.source === 'camera');
    const audio = tile.querySelector('audio');
    if (audio) bind(audio, d.audio);
    const mod = tile.querySelector('.mod-controls');
    if (mod) mod.hidden = meeting.role !== 'moderator';
    if (d.source === 'camera') {
      tile.querySelector('.mic-off').hidden = !d.micMuted;
      tile.querySelector('.cam-off').hidden = !d.camMuted;
    }
  });
  for (const el of existing.values()) {
    for (const m of el.querySelectorAll('video, audio')) m.srcObject = null;
    el.remove();
  }
  grid.dataset.count = String(grid.children.length);
}

export function showLevels(levels) {
  for (const tile of $('grid').querySelectorAll('.tile.camera')) {
    tile.classList.toggle('speaking', (levels.get(tile.dataset.participantId) || 0) > SPEAKING_LEVEL);
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
  mic.textContent = micMuted ? 'Unmute' : 'Mute';
  mic.setAttribute('aria-pressed', String(micMuted && !mic.disabled));
  cam.textContent = camMuted ? 'Start video' : 'Stop video';
  cam.setAttribute('aria-pressed', String(camMuted && !cam.disabled));
  share.hidden = !(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia);
  share.textContent = meeting.sharing ? 'Stop sharing' : 'Share screen';
  share.setAttribute('aria-pressed', String(meeting.sharing));
}

/** Fills a select with devices of one kind, keeping `selectedId` chosen. */
export function fillDeviceSelect(select, devices, kind, selectedId) {
  const label = kind === 'audioinput' ? 'Microphone' : 'Camera';
  const options = devices.filter((d) => d.kind === kind && d.deviceId).map((d, i) => {
    const o = document.createElement('option');
    o.value = d.deviceId;
    o.textContent = d.label || `${label} ${i + 1}`;
    o.selected = d.deviceId === selectedId;
    return o;
  });
  if (!options.length) {
    const o = document.createElement('option');
    o.value = '';
    o.textContent = `No ${label.toLowerCase()}`;
    options.push(o);
  }
  select.replaceChildren(...options);
  select.disabled = options.length < 2 && !options[0].value;
}
