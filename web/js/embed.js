// The meeting page's side of the iframe API (web/external_api.js, docs/embedding.md): when the page is
// in a frame, it takes commands from its parent by postMessage and posts meeting events back.
//
// Messages, both ways, are plain objects:
//   parent -> page  {samtal: 'command', command: 'toggleAudio', args: []}
//   page -> parent  {samtal: 'event', event: 'joined', data: {...}}
// Commands are accepted only from the parent window, and only when its origin is this page's own or one
// of /client-config.json's allowed_origins (the same list the server puts in its frame-ancestors CSP).
// Events are posted only to that parent, with its origin as the target, so no other site reads them.

const PROTOCOL_VERSION = 1;

/** `https://Example.org:443/` -> `https://example.org`; null when it is not an http(s) origin. */
export function normalizeOrigin(value) {
  try {
    const u = new URL(value);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return null;
    return u.origin;
  } catch {
    return null;
  }
}

/** Whether `origin` may drive this page: its own origin or one of the allowed ones. */
export function originAllowed(origin, allowedOrigins, own = window.location.origin) {
  const o = normalizeOrigin(origin);
  if (!o) return false;
  if (o === own) return true;
  return (allowedOrigins || []).some((a) => normalizeOrigin(a) === o);
}

/**
 * The origin to post events to: the browser's record of the parent (location.ancestorOrigins, where it
 * exists), else what the embedder said (`parent_origin`), else the referrer; only when it is allowed.
 */
function parentOriginFrom(claimed, allowed) {
  const ancestors = window.location.ancestorOrigins;
  if (ancestors && ancestors.length) return originAllowed(ancestors[0], allowed) ? normalizeOrigin(ancestors[0]) : null;
  for (const candidate of [claimed, document.referrer]) {
    if (candidate && originAllowed(candidate, allowed)) return normalizeOrigin(candidate);
  }
  return null;
}

const kindOf = (source) => (source === 'microphone' ? 'audio' : 'video');

function captionData(c) {
  return {
    utteranceId: c.utterance_id,
    participantId: c.participant_id,
    displayName: c.name,
    text: c.text,
    final: c.final,
    language: c.language,
    startMs: c.start_ms,
    endMs: c.end_ms,
  };
}

function transcriptionData(t) {
  return { enabled: t.enabled, available: t.available, language: t.language, meetingId: t.meeting_id };
}

/**
 * Starts the bridge. `config`: promise of /client-config.json (or null); `current()`: the Meeting now;
 * `commands`: name -> function(...args) for the commands the parent may send; `app`: EventTarget that
 * fires `meeting` {meeting} for every new Meeting and `view` when captions are shown or hidden.
 */
export function startEmbedBridge({ app, config, parentOrigin: claimed, current, commands, captionsVisible }) {
  if (window.parent === window) return null;
  let allowed = null; // null until /client-config.json is known: until then messages wait
  let target = null; // the parent's origin, once known and allowed
  let announced = false;
  const waiting = [];

  const post = (event, data = {}) => {
    if (!target) return;
    try {
      window.parent.postMessage({ samtal: 'event', event, data }, target);
    } catch (e) {
      console.warn('samtal: cannot post to the embedding page', e);
    }
  };

  const announce = () => {
    if (announced || !target) return;
    announced = true;
    post('ready', { version: PROTOCOL_VERSION, commands: Object.keys(commands) });
    const m = current();
    if (m && m.state === 'joined') joinedEvents(m); // joined before the parent listened
  };

  const joinedEvents = (m) => {
    post('joined', { participantId: m.participantId, room: m.room, displayName: m.name, role: m.role, matrixRoomId: m.extra?.matrix_room ?? null });
    for (const p of m.participants.values()) post('participantJoined', { id: p.id, displayName: p.name, role: p.role });
    post('transcriptionStatusChanged', transcriptionData(m.transcription));
  };

  const handle = (ev) => {
    const msg = ev.data;
    if (!msg || typeof msg !== 'object' || msg.samtal !== 'command') return;
    if (ev.source !== window.parent) return;
    if (!originAllowed(ev.origin, allowed)) {
      console.warn(`samtal: ignored a command from ${ev.origin}, which is not an allowed origin`);
      return;
    }
    if (!target) {
      target = normalizeOrigin(ev.origin);
      announce();
    }
    if (msg.command === 'hangup' && !(current() && current().state === 'joined')) {
      post('readyToClose', {}); // nothing to leave
      return;
    }
    const fn = Object.prototype.hasOwnProperty.call(commands, msg.command) ? commands[msg.command] : null;
    if (!fn) {
      console.warn(`samtal: unknown command ${msg.command}`);
      return;
    }
    try {
      const r = fn(...(Array.isArray(msg.args) ? msg.args : []));
      if (r && typeof r.catch === 'function') r.catch((e) => console.warn(`samtal: command ${msg.command} failed`, e));
    } catch (e) {
      console.warn(`samtal: command ${msg.command} failed`, e);
    }
  };

  window.addEventListener('message', (ev) => {
    if (allowed === null) waiting.push(ev);
    else handle(ev);
  });

  app.addEventListener('meeting', (e) => {
    const m = e.detail.meeting;
    m.addEventListener('state', () => {
      if (m.state === 'joined') joinedEvents(m);
    });
    m.addEventListener('participant-joined', ({ detail: { participant: p } }) => post('participantJoined', { id: p.id, displayName: p.name, role: p.role }));
    m.addEventListener('participant-left', ({ detail: { participant: p, reason } }) => post('participantLeft', { id: p.id, displayName: p.name, reason }));
    m.addEventListener('dominant-speaker', ({ detail: d }) => post('dominantSpeakerChanged', { id: d.participantId }));
    m.addEventListener('mute', ({ detail: d }) => {
      post('muteChanged', { participantId: d.participantId, local: d.local, source: d.source, kind: kindOf(d.source), muted: d.muted });
    });
    m.addEventListener('caption', ({ detail: { caption } }) => post('captionReceived', captionData(caption)));
    m.addEventListener('transcription', ({ detail: { status } }) => {
      if (m.state === 'joined') post('transcriptionStatusChanged', transcriptionData(status)); // at joining: in joinedEvents
    });
    m.addEventListener('ended', ({ detail: { reason, message } }) => {
      post('left', { reason, message, participantId: m.participantId });
      post('readyToClose', {});
    });
  });

  app.addEventListener('view', () => post('captionsToggled', { visible: captionsVisible() }));

  Promise.resolve(config).then((cfg) => {
    allowed = (cfg && Array.isArray(cfg.allowed_origins)) ? cfg.allowed_origins : [];
    target = parentOriginFrom(claimed, allowed);
    if (!target) console.warn('samtal: embedded by a page whose origin is not in [embed] allowed_origins: no events are sent to it');
    announce();
    for (const ev of waiting.splice(0)) handle(ev);
  });
  return { post };
}
