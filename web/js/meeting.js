// Meeting: one participant's session in a room — the join handshake, the two peer connections of
// docs/protocol.md (`publish`: we offer our mic/camera/screen; `subscribe`: the server offers everyone
// else's tracks), local mute/device/screen-share changes and the roster of remote participants.
// It has no DOM code: ui.js listens to its events and reads its state. Its messages (notices, errors)
// come from the catalogues of i18n.js.

import { Signaling } from './signaling.js';
import { t } from './i18n.js';

const SOURCES = ['microphone', 'camera', 'screen_share'];

/** Splits an SDP into m-sections: [{mid, kind, direction, streamId, trackId}]. */
export function parseSdpSections(sdp) {
  const sections = [];
  let cur = null;
  for (const raw of (sdp || '').split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('m=')) {
      const [kind, port] = line.slice(2).split(' ');
      cur = { mid: null, kind, direction: 'sendrecv', port, bundleOnly: false, streamId: null, trackId: null };
      sections.push(cur);
    } else if (cur) {
      let m;
      if ((m = /^a=mid:(\S+)/.exec(line))) cur.mid = m[1];
      else if (line === 'a=bundle-only') cur.bundleOnly = true;
      else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) cur.direction = line.slice(2);
      else if ((m = /^a=msid:(\S+)(?:\s+(\S+))?/.exec(line))) {
        cur.streamId = m[1];
        cur.trackId = m[2] || null;
      } else if (!cur.streamId && (m = /^a=ssrc:\d+ msid:(\S+)(?:\s+(\S+))?/.exec(line))) {
        cur.streamId = m[1];
        cur.trackId = m[2] || null;
      }
    }
  }
  // A rejected m-section (port 0) carries nothing, whatever its attributes say; port 0 with
  // a=bundle-only is not a rejection but a section that shares the bundle's transport (RFC 8843:
  // Firefox offers a transceiver without a track so).
  for (const sec of sections) {
    sec.rejected = sec.port === '0' && !sec.bundleOnly;
    if (sec.rejected) sec.direction = 'inactive';
    delete sec.port;
    delete sec.bundleOnly;
  }
  return sections;
}

function candidateToWire(c) {
  return { candidate: c.candidate, sdp_mid: c.sdpMid ?? null, sdp_mline_index: c.sdpMLineIndex ?? null };
}

function candidateFromWire(c) {
  return { candidate: c.candidate || '', sdpMid: c.sdp_mid ?? null, sdpMLineIndex: c.sdp_mline_index ?? null };
}

/** A readable sentence for a getUserMedia/getDisplayMedia failure; `what`: microphone, camera or screen. */
export function describeMediaError(e, what) {
  // The device as the sentences need it: definite ("the microphone", "mikrofonen") and indefinite.
  const params = { device: t(`media.the.${what}`), a: t(`media.a.${what}`), error: e && e.message ? e.message : String(e) };
  switch (e && e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return t('media.denied', params);
    case 'NotFoundError':
    case 'OverconstrainedError':
      return t('media.notFound', params);
    case 'NotReadableError':
    case 'AbortError':
      return t('media.busy', params);
    default:
      return t('media.failed', params);
  }
}

/** What the camera is asked for: 720p, so that the three simulcast layers are 180p, 360p and 720p. */
const CAMERA_SIZE = { width: { ideal: 1280 }, height: { ideal: 720 } };

/**
 * Opens microphone and camera, falling back to whichever one works.
 * Returns {stream, warnings: [string]}; the stream may have no tracks.
 */
export async function openLocalMedia({ audioDeviceId, videoDeviceId } = {}) {
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    return { stream: new MediaStream(), warnings: [t('media.insecure')] };
  }
  const audio = audioDeviceId ? { deviceId: { exact: audioDeviceId } } : true;
  const video = { ...CAMERA_SIZE, ...(videoDeviceId ? { deviceId: { exact: videoDeviceId } } : {}) };
  try {
    return { stream: await md.getUserMedia({ audio, video }), warnings: [] };
  } catch (both) {
    const stream = new MediaStream();
    const warnings = [];
    for (const [kind, c, what] of [['audio', { audio }, 'microphone'], ['video', { video }, 'camera']]) {
      try {
        (await md.getUserMedia(c)).getTracks().forEach((t) => stream.addTrack(t));
      } catch (e) {
        warnings.push(describeMediaError(e, what));
      }
    }
    return { stream, warnings };
  }
}

/**
 * Events (CustomEvent, `detail`): `state` {state}, `roster` (participants or their tracks changed),
 * `media` (remote media tracks changed), `local` (own tracks/mute changed), `connection` (peer
 * connection states), `levels` {levels: Map id -> 0..1}, `notice` {message, level}, `ended` {reason, message},
 * `participant-joined` {participant}, `participant-left` {participant, reason},
 * `mute` {participantId, source, muted, local} (anyone's microphone/camera/screen muted or unmuted),
 * `transcription` {status} (transcription switched, or its availability changed),
 * `caption` {caption} (a live caption; an interim one is replaced by the next with the same utterance_id).
 */
/**
 * How long the publish connection may stay disconnected before the client restarts its ICE: long
 * enough for a blip on an unchanged path to heal by itself (a restart renegotiates, which costs the
 * server its knowledge of our simulcast layers), short enough to beat the server's 25 s failure.
 */
const ICE_RESTART_AFTER_MS = 12_000;
/** And how long after a restart that did not help it tries again. */
const ICE_RESTART_RETRY_MS = 8_000;

/** The camera's simulcast layers, lowest first, each half the size of the next (the server relies on both). */
export const CAMERA_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class Meeting extends EventTarget {
  /**
   * `startMuted`: {microphone, camera} booleans: join with those muted. `extra`: more fields for the
   * join message (e.g. `matrix_room`; the server ignores fields it does not know). `relay`: media only
   * through the TURN server the server hands out (`iceTransportPolicy: 'relay'`).
   */
  constructor({ url, room, name, token, stream, startMuted = {}, extra = {}, relay = false }) {
    super();
    this.url = url;
    this.room = room;
    this.name = name;
    this.token = token || null;
    this.startMuted = startMuted;
    this.extra = extra;
    /** Transcription state of the room: {enabled, available, language, meeting_id}. */
    this.transcription = { enabled: false, available: false, language: null, meeting_id: null };
    /** Whether we opted out of transcription (our audio is then never transcribed). */
    this.transcriptionOptOut = !!(extra && extra.transcription_opt_out);
    /** utterance_id -> caption, in arrival order; the newest few, interim or final. */
    this.captions = new Map();
    /** Final captions of this session, in order: [{utterance_id, participant_id, name, text, start_ms, end_ms, language}]. */
    this.transcript = [];
    /** The last `meeting_summary` (moderators only), or null. */
    this.summary = null;
    this.state = 'idle';
    /** The signaling websocket dropped and the session is being resumed (the meeting goes on). */
    this.reconnecting = false;
    this.participantId = null;
    /** The room's dominant speaker as the server last announced (a participant id, maybe our own). */
    this.dominantSpeaker = null;
    /** Last-N: ids of the participants whose cameras the server forwards to us (null: all of them). */
    this.forwardedVideo = null;
    this.role = null;
    this.iceServers = [];
    this.relay = !!relay;
    /** id -> {id, name, role, tracks: Map track_id -> {track_id, kind, source, muted, stream_id}} */
    this.participants = new Map();
    /** track_id -> {participantId, track: MediaStreamTrack, mid, kind, receiver} (what the subscribe pc receives now) */
    this.remoteMedia = new Map();
    /** Track id -> the tile size last told to the server ("WxH"). */
    this.videoTiles = new Map();
    this.publishPc = null;
    this.subscribePc = null;
    this.sig = null;
    // Our own tracks, by source: {track, transceiver, muted}.
    this.localStream = stream || new MediaStream();
    this.local = {};
    for (const t of this.localStream.getTracks()) {
      this.local[t.kind === 'audio' ? 'microphone' : 'camera'] = { track: t, transceiver: null, muted: false };
    }
    this.pub = { busy: false, again: false, sentOnce: false, pendingCandidates: [], answerWaiter: null };
    this.sub = { chain: Promise.resolve(), sentOnce: false, pendingCandidates: [], remoteCandidates: [] };
    this.levelTimer = null;
    this.audioCtx = null;
    this.localAnalyser = null;
    this.lastFatalError = null;
    /** The room's chat messages, oldest first: [{id, participant_id, name, text, at}]. */
    this.chat = [];
    /** When our hand went up (ms since the Unix epoch), or null. */
    this.handRaisedAt = null;
    /** The room's settings as moderators set them. */
    this.roomSettings = { locked: false, lobby: false };
    /** Moderators: who waits in the lobby, in order of arrival: [{id, name, since}]. */
    this.lobby = [];
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    this.state = state;
    this.emit('state', { state });
  }

  notice(message, level = 'error') {
    this.emit('notice', { message, level });
  }

  // ---- joining and leaving ----

  /** Connects and joins; resolves after `joined`, rejects with a readable Error. */
  async join() {
    this.setState('connecting');
    this.sig = new Signaling(this.url);
    try {
      await this.sig.open();
    } catch (e) {
      this.setState('failed');
      throw e;
    }
    const joined = new Promise((resolve, reject) => {
      this.joinWaiter = { resolve, reject };
    });
    this.sig.addEventListener('message', (ev) => this.onMessage(ev.detail));
    this.sig.addEventListener('close', (ev) => this.onSocketClosed(ev.detail));
    this.sig.addEventListener('reconnecting', () => {
      // The session waits for us on the server: tracks, peer connections and place in the room stay.
      this.reconnecting = true;
      this.emit('connection');
    });
    this.sig.addEventListener('reconnected', () => {
      this.reconnecting = false;
      this.emit('connection');
    });
    const join = { ...this.extra, type: 'join', room: this.room, name: this.name, protocol: 1, resumable: true };
    if (this.token) join.token = this.token;
    this.sig.send(join);
    await joined;
  }

  leave() {
    if (this.state === 'left' || this.state === 'failed') return;
    this.sig && this.sig.send({ type: 'leave' });
    this.end('left', t('meeting.youLeft'));
  }

  /** Tears everything down once; `reason` is left, removed, error or disconnected. */
  end(reason, message) {
    if (this.state === 'left' || this.state === 'failed') return;
    clearInterval(this.levelTimer);
    clearTimeout(this.pub.iceTimer);
    for (const pc of [this.publishPc, this.subscribePc]) if (pc) pc.close();
    for (const l of Object.values(this.local)) if (l && l.track) l.track.stop();
    if (this.audioCtx) this.audioCtx.close().catch(() => {});
    if (this.sig) this.sig.close();
    this.setState(reason === 'left' ? 'left' : 'failed');
    if (this.joinWaiter) {
      this.joinWaiter.reject(new Error(message));
      this.joinWaiter = null;
    }
    this.emit('ended', { reason, message });
  }

  onSocketClosed({ code, reason, gaveUp }) {
    this.reconnecting = false;
    const lost = gaveUp
      ? t(reason ? 'meeting.lostForGoodReason' : 'meeting.lostForGood', { reason })
      : t(reason ? 'meeting.lostReason' : 'meeting.lost', { reason, code });
    const msg = this.lastFatalError || lost;
    this.end(this.lastFatalError ? 'error' : 'disconnected', msg);
  }

  // ---- server messages ----

  onMessage(msg) {
    switch (msg.type) {
      case 'joined':
        this.onJoined(msg);
        break;
      case 'offer':
        if (msg.pc === 'subscribe') this.sub.chain = this.sub.chain.then(() => this.onSubscribeOffer(msg.sdp)).catch((e) => this.notice(t('meeting.receiveFailed', { error: e.message })));
        break;
      case 'answer':
        if (msg.pc === 'publish' && this.pub.answerWaiter) this.pub.answerWaiter.resolve(msg.sdp);
        break;
      case 'candidate':
        this.onRemoteCandidate(msg.pc, msg.candidate);
        break;
      case 'participant_joined':
        if (!msg.participant) break;
        this.upsertParticipant(msg.participant);
        this.emit('roster');
        this.emit('participant-joined', { participant: this.participants.get(msg.participant.id) });
        break;
      case 'participant_left': {
        const gone = this.participants.get(msg.participant_id);
        this.participants.delete(msg.participant_id);
        if (this.dominantSpeaker === msg.participant_id) this.dominantSpeaker = null;
        for (const [tid, m] of this.remoteMedia) if (m.participantId === msg.participant_id) this.remoteMedia.delete(tid);
        this.emit('roster');
        this.emit('media');
        if (gone) this.emit('participant-left', { participant: gone, reason: msg.reason || 'left' });
        break;
      }
      case 'track_published': {
        const p = this.participants.get(msg.participant_id);
        if (p && msg.track) p.tracks.set(msg.track.track_id, { ...msg.track });
        this.emit('roster');
        break;
      }
      case 'track_unpublished': {
        const p = this.participants.get(msg.participant_id);
        if (p) p.tracks.delete(msg.track_id);
        this.remoteMedia.delete(msg.track_id);
        this.emit('roster');
        this.emit('media');
        break;
      }
      case 'dominant_speaker':
        // The server's decision, the same for everyone in the room; it stays until someone else speaks.
        this.dominantSpeaker = msg.participant_id;
        this.emit('dominant-speaker', { participantId: msg.participant_id });
        break;
      case 'video_forwarded':
        // Last-N: only these participants' cameras reach us now; the others are paused by the server.
        this.forwardedVideo = new Set(msg.participant_ids || []);
        this.emit('media');
        break;
      case 'publish_layers':
        this.setActiveLayers(msg.track_id, msg.active || []);
        break;
      case 'mute_changed':
        this.onMuteChanged(msg);
        break;
      case 'media_state': {
        const p = this.participants.get(msg.participant_id);
        if (p) {
          p.mediaInterrupted = msg.state === 'interrupted';
          this.emit('roster');
        }
        break;
      }
      case 'mute_request':
        if (msg.source === 'microphone' || msg.source === 'camera') {
          this.setMuted(msg.source, true, { tell: false });
          this.notice(t(msg.source === 'camera' ? 'meeting.moderatorMutedCamera' : 'meeting.moderatorMutedMicrophone'), 'info');
        }
        break;
      case 'removed':
        // A moderator's `end` removes everyone, the moderator too.
        this.lastFatalError = t(msg.by === this.participantId ? 'meeting.endedByModerator' : 'meeting.removed');
        this.end('removed', this.lastFatalError);
        break;
      case 'error':
        this.onError(msg);
        break;
      case 'transcription_status':
        this.onTranscriptionStatus(msg);
        break;
      case 'caption':
        this.onCaption(msg);
        break;
      case 'meeting_summary':
        // To moderators, once the ended transcription's summary is stored.
        this.summary = msg;
        this.emit('summary');
        break;
      case 'transcription_consent':
        this.onConsent(msg);
        break;
      case 'chat':
        this.chat.push(msg);
        this.emit('chat', { message: msg });
        break;
      case 'hand_changed': {
        const at = msg.raised_at ?? null;
        if (msg.participant_id === this.participantId) this.handRaisedAt = at;
        const p = this.participants.get(msg.participant_id);
        if (p) p.handRaisedAt = at;
        this.emit('roster');
        break;
      }
      case 'room_settings':
        this.roomSettings = { locked: !!msg.locked, lobby: !!msg.lobby };
        this.emit('roster');
        break;
      case 'lobby_waiting':
        // The room knocks: `joined` comes once a moderator lets us in.
        this.setState('lobby');
        break;
      case 'lobby': {
        const before = new Set(this.lobby.map((w) => w.id));
        this.lobby = msg.waiting || [];
        for (const w of this.lobby) if (!before.has(w.id)) this.emit('knock', { name: w.name });
        this.emit('roster');
        break;
      }
      default:
        break; // pong and anything newer
    }
  }

  onJoined(msg) {
    this.participantId = msg.participant_id;
    this.role = msg.role;
    this.iceServers = (msg.ice_servers || []).map((s) => {
      const o = { urls: s.urls };
      if (s.username != null) o.username = s.username;
      if (s.credential != null) o.credential = s.credential;
      return o;
    });
    for (const p of msg.participants || []) this.upsertParticipant(p);
    if (msg.transcription) this.onTranscriptionStatus(msg.transcription, { quiet: true });
    this.subscribePc = this.makePc('subscribe');
    this.publishPc = this.makePc('publish');
    this.setState('joined');
    if (this.joinWaiter) {
      this.joinWaiter.resolve();
      this.joinWaiter = null;
    }
    this.emit('roster');
    this.emit('local');
    for (const source of ['microphone', 'camera']) {
      const l = this.local[source];
      if (!l) continue;
      l.transceiver = this.publishPc.addTransceiver(l.track, this.sendInit(source));
    }
    // With a camera, the screen share's section is negotiated now, empty, and gets its track by
    // replaceTrack: sharing then never renegotiates, which would make the server lose the camera's
    // simulcast layers (the protocol's "Screen share without renegotiation"). Without one, a
    // participant who only watches needs no publish connection, and the section comes with the share.
    if (this.local.camera && navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia) this.addShareSection(null);
    for (const source of ['microphone', 'camera']) if (this.startMuted[source]) this.setMuted(source, true);
    if (this.local.microphone || this.local.camera) this.negotiatePublish();
    this.startLevels();
  }

  onError(msg) {
    // The server's own text is English: say it in the page's language where the code is known.
    const key = `error.${msg.code}`;
    const known = t(key) !== key;
    const text = t('meeting.serverError', {
      message: known ? t(key) : msg.message || t('meeting.serverErrorUnknown'), code: msg.code,
    });
    if (msg.fatal) this.lastFatalError = text;
    if (this.joinWaiter && (msg.fatal || msg.ref_type === 'join')) {
      this.joinWaiter.reject(new Error(text));
      this.joinWaiter = null;
    }
    if (msg.ref_type === 'offer' && this.pub.answerWaiter) this.pub.answerWaiter.reject(new Error(text));
    if (msg.fatal) this.end('error', text);
    else this.notice(text);
  }

  onMuteChanged({ participant_id, source, muted }) {
    if (participant_id === this.participantId) {
      const l = this.local[source];
      if (l && l.muted !== muted) this.setMuted(source, muted, { tell: false });
      return;
    }
    const p = this.participants.get(participant_id);
    if (!p) return;
    let changed = false;
    for (const t of p.tracks.values()) {
      if (t.source === source && t.muted !== muted) {
        t.muted = muted;
        changed = true;
      }
    }
    this.emit('roster');
    if (changed) this.emit('mute', { participantId: participant_id, source, muted, local: false });
  }

  onTranscriptionStatus(msg, { quiet = false } = {}) {
    const before = this.transcription;
    this.transcription = {
      enabled: !!msg.enabled,
      available: !!msg.available,
      language: msg.language ?? null,
      meeting_id: msg.meeting_id ?? null,
      chat_kept: !!msg.chat_kept,
    };
    if (!quiet && before.enabled !== this.transcription.enabled) {
      this.notice(t(this.transcription.enabled ? 'transcription.turnedOn' : 'transcription.turnedOff'), 'info');
    }
    this.emit('transcription', { status: { ...this.transcription } });
  }

  onCaption(msg) {
    if (typeof msg.utterance_id !== 'string' || typeof msg.text !== 'string') return;
    const caption = {
      utterance_id: msg.utterance_id,
      participant_id: msg.participant_id,
      name: msg.name || this.participants.get(msg.participant_id)?.name || (msg.participant_id === this.participantId ? this.name : '?'),
      text: msg.text,
      final: msg.final !== false,
      start_ms: msg.start_ms,
      end_ms: msg.end_ms,
      language: msg.language ?? null,
      confidence: msg.confidence ?? null,
      received: Date.now(),
    };
    const old = this.captions.get(caption.utterance_id);
    if (old && old.final && !caption.final) return; // a late interim never replaces its final
    this.captions.delete(caption.utterance_id);
    this.captions.set(caption.utterance_id, caption);
    while (this.captions.size > 50) this.captions.delete(this.captions.keys().next().value);
    if (caption.final) {
      const i = this.transcript.findIndex((c) => c.utterance_id === caption.utterance_id);
      if (i >= 0) this.transcript[i] = caption;
      else this.transcript.push(caption);
    }
    this.emit('caption', { caption });
  }

  onConsent({ participant_id: id, opt_out: optOut }) {
    if (id === this.participantId) {
      this.transcriptionOptOut = !!optOut;
      this.notice(t(optOut ? 'transcription.optedOut' : 'transcription.optedIn'), 'info');
      this.emit('transcription', { status: { ...this.transcription } });
    } else if (this.participants.has(id)) {
      this.participants.get(id).transcriptionOptOut = !!optOut;
      this.emit('roster');
    }
  }

  /** Opts out of transcription (`true`: our audio is no longer transcribed) or back in. */
  setTranscriptionOptOut(optOut) {
    return !!(this.sig && this.sig.send({ type: 'transcription_consent', opt_out: !!optOut }));
  }

  /** Turns transcription of the meeting on or off (moderators; anyone on an open server). */
  setTranscription(enabled, { language, prompt } = {}) {
    const msg = { type: 'transcription', enabled: !!enabled };
    if (enabled && language) msg.language = language;
    if (enabled && prompt) msg.prompt = prompt;
    return !!(this.sig && this.sig.send(msg));
  }

  upsertParticipant(info) {
    const tracks = new Map((info.tracks || []).map((t) => [t.track_id, { ...t }]));
    this.participants.set(info.id, {
      id: info.id, name: info.name, role: info.role, tracks, transcriptionOptOut: !!info.transcription_opt_out,
      handRaisedAt: info.hand_raised_at ?? null,
    });
  }

  /** Sends a chat message to the room (the server echoes it back as `chat`). */
  sendChat(text) {
    if (this.sig && String(text).trim()) this.sig.send({ type: 'chat', text: String(text) });
  }

  setHand(raised) {
    if (this.sig) this.sig.send({ type: 'hand', raised: !!raised });
  }

  /** Moderators: lock or unlock the room (`room_settings` carries every setting). */
  setLocked(locked) {
    if (this.sig) this.sig.send({ type: 'room_settings', ...this.roomSettings, locked: !!locked });
  }

  /** Moderators: make joiners wait in the lobby until a moderator lets them in, or stop. */
  setLobby(lobby) {
    if (this.sig) this.sig.send({ type: 'room_settings', ...this.roomSettings, lobby: !!lobby });
  }

  /** Moderators: let someone waiting in the lobby in, or turn it away. */
  decideLobby(participant, admit) {
    if (this.sig) this.sig.send({ type: 'lobby_decision', participant, admit: !!admit });
  }

  /** Moderators: 'mute_all' or 'end'. */
  roomAction(action) {
    if (this.sig) this.sig.send({ type: 'room_action', action });
  }

  // ---- peer connections ----

  makePc(which) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy: this.relay ? 'relay' : 'all' });
    const side = which === 'publish' ? this.pub : this.sub;
    pc.onicecandidate = (e) => {
      if (e.candidate && !e.candidate.candidate) return; // Firefox's empty one; the null that follows says it
      const wire = e.candidate ? candidateToWire(e.candidate) : { candidate: '', sdp_mid: null, sdp_mline_index: null };
      if (side.sentOnce) this.sig.send({ type: 'candidate', pc: which, candidate: wire });
      else side.pendingCandidates.push(wire);
    };
    pc.onconnectionstatechange = () => {
      this.emit('connection');
      if (pc.connectionState === 'failed') this.notice(t(which === 'publish' ? 'meeting.publishPcFailed' : 'meeting.subscribePcFailed'));
      if (which === 'publish' && pc.connectionState === 'connected') setTimeout(() => this.reannounceMutes(), 1500);
    };
    pc.oniceconnectionstatechange = () => {
      this.emit('connection');
      if (which === 'publish') this.watchPublishIce(pc);
    };
    if (which === 'subscribe') pc.ontrack = () => this.refreshRemoteMedia();
    return pc;
  }

  /**
   * Restarts ICE on the publish connection when it failed, or stayed disconnected for a moment (the
   * network changed: new addresses need new credentials to be tried). The server restarts the
   * subscribe connection itself when it stops hearing from it.
   */
  watchPublishIce(pc) {
    clearTimeout(this.pub.iceTimer);
    const restart = () => {
      if (pc !== this.publishPc || this.state !== 'joined') return;
      if (!['disconnected', 'failed'].includes(pc.iceConnectionState)) return;
      pc.restartIce();
      this.renewCamera();
      this.negotiatePublish();
      // Still cut off after this one: try again.
      this.pub.iceTimer = setTimeout(restart, ICE_RESTART_RETRY_MS);
    };
    if (pc.iceConnectionState === 'failed') restart();
    else if (pc.iceConnectionState === 'disconnected') this.pub.iceTimer = setTimeout(restart, ICE_RESTART_AFTER_MS);
  }

  /** How a microphone or camera transceiver sends. */
  sendInit(source) {
    const init = { direction: 'sendonly', streams: [this.localStream] };
    // The camera goes out as simulcast: the server forwards each viewer the layer its tile and link need.
    if (source === 'camera') init.sendEncodings = CAMERA_LAYERS.map((e) => ({ ...e }));
    return init;
  }

  /**
   * Moves our simulcast camera to a fresh transceiver, in the same offer as an ICE restart. Every
   * publish renegotiation makes the server forget which SSRC carries which simulcast layer (it
   * learns that from the RTP stream id, which the browser sends only on a stream's first packets),
   * so without this the camera would stay dark after the restart. The fresh transceiver's streams
   * are new and announce their layers again; the server ends the old track and publishes the new
   * one (the others see the camera tile come back with a new track id). A muted (stopped) camera
   * gets an empty transceiver that unmuting fills by replaceTrack.
   */
  renewCamera() {
    const l = this.local.camera;
    const pc = this.publishPc;
    if (!l || !l.transceiver || !pc) return;
    const fresh = l.track.readyState === 'live' ? l.track.clone() : null;
    l.transceiver.stop();
    l.transceiver = pc.addTransceiver(fresh || 'video', this.sendInit('camera'));
    if (fresh) {
      this.localStream.removeTrack(l.track);
      l.track.stop();
      this.localStream.addTrack(fresh);
      l.track = fresh;
      this.emit('local');
    }
  }

  /**
   * Tells the server again which of our tracks are muted. The server lists a track as unmuted when its
   * first packets arrive, even when we muted it before that (joining muted), so once media flows we
   * repeat our mute state; the others then show it right.
   */
  reannounceMutes() {
    if (this.state !== 'joined' || !this.sig) return;
    for (const source of ['microphone', 'camera']) {
      const l = this.local[source];
      if (l && l.muted) this.sig.send({ type: 'mute', source, muted: true });
    }
  }

  /** Sends candidates gathered before our first description went out. */
  flushCandidates(which) {
    const side = which === 'publish' ? this.pub : this.sub;
    side.sentOnce = true;
    for (const c of side.pendingCandidates.splice(0)) this.sig.send({ type: 'candidate', pc: which, candidate: c });
  }

  async onRemoteCandidate(which, c) {
    const pc = which === 'publish' ? this.publishPc : this.subscribePc;
    if (!pc || !c) return;
    if (!pc.remoteDescription) {
      this.sub.remoteCandidates.push([which, c]);
      return;
    }
    try {
      await pc.addIceCandidate(candidateFromWire(c));
    } catch (e) {
      console.warn('samtal: addIceCandidate failed', e);
    }
  }

  flushRemoteCandidates() {
    for (const [which, c] of this.sub.remoteCandidates.splice(0)) this.onRemoteCandidate(which, c);
  }

  async onSubscribeOffer(sdp) {
    const pc = this.subscribePc;
    if (!pc || pc.signalingState === 'closed') return;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.sig.send({ type: 'answer', pc: 'subscribe', sdp: pc.localDescription.sdp });
    this.flushCandidates('subscribe');
    this.flushRemoteCandidates();
    this.refreshRemoteMedia();
  }

  /** Rebuilds remoteMedia from the subscribe connection: every m-section the server sends on, by its msid. */
  refreshRemoteMedia() {
    const pc = this.subscribePc;
    if (!pc || !pc.remoteDescription) return;
    const byMid = new Map(parseSdpSections(pc.remoteDescription.sdp).map((s) => [s.mid, s]));
    const next = new Map();
    for (const tr of pc.getTransceivers()) {
      const s = byMid.get(tr.mid);
      if (!s || !tr.receiver.track || !(s.direction === 'sendonly' || s.direction === 'sendrecv') || !s.streamId) continue;
      const trackId = s.trackId || tr.receiver.track.id;
      next.set(trackId, { participantId: s.streamId, track: tr.receiver.track, mid: tr.mid, kind: tr.receiver.track.kind, receiver: tr.receiver });
    }
    const changed = next.size !== this.remoteMedia.size ||
      [...next].some(([id, m]) => { const o = this.remoteMedia.get(id); return !o || o.track !== m.track || o.participantId !== m.participantId; });
    this.remoteMedia = next;
    if (changed) this.emit('media');
  }

  /** Offers our current tracks on the publish connection; folds changes made meanwhile into one more offer. */
  async negotiatePublish() {
    const pc = this.publishPc;
    if (!pc || this.state !== 'joined') return;
    if (this.pub.busy) {
      this.pub.again = true;
      return;
    }
    this.pub.busy = true;
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const answered = new Promise((resolve, reject) => {
        this.pub.answerWaiter = { resolve, reject };
      });
      this.sig.send({ type: 'offer', pc: 'publish', sdp: pc.localDescription.sdp, tracks: this.declaredTracks() });
      this.flushCandidates('publish');
      let answer;
      try {
        answer = await answered;
      } catch (e) {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        throw e;
      }
      if (pc.signalingState !== 'closed') await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this.flushRemoteCandidates();

    } catch (e) {
      if (this.state === 'joined') this.notice(t('meeting.publishFailed', { error: e.message }));
    } finally {
      this.pub.busy = false;
      this.pub.answerWaiter = null;
    }
    if (this.pub.again && this.state === 'joined') {
      this.pub.again = false;
      this.negotiatePublish();
    }
  }

  /** The `tracks` list of a publish offer: each sending m-section's msid track id and its source. */
  declaredTracks() {
    const byMid = new Map(parseSdpSections(this.publishPc.localDescription.sdp).map((s) => [s.mid, s]));
    const out = [];
    const sections = { microphone: this.local.microphone?.transceiver, camera: this.local.camera?.transceiver, screen_share: this.shareTransceiver };
    for (const source of SOURCES) {
      const s = sections[source] && byMid.get(sections[source].mid);
      if (s && s.trackId && (s.direction === 'sendonly' || s.direction === 'sendrecv')) out.push({ track_id: s.trackId, source });
    }
    return out;
  }

  // ---- local controls ----

  isMuted(source) {
    const l = this.local[source];
    return !l || l.muted;
  }

  /**
   * Mutes or unmutes our microphone or camera. A muted camera is stopped (its light goes off) and
   * reopened on unmute. `tell: false` when the server already knows (moderator mute).
   */
  async setMuted(source, muted, { tell = true } = {}) {
    const l = this.local[source];
    if (!l) return;
    l.muted = muted;
    if (source === 'camera' && !muted && l.track.readyState === 'ended') {
      try {
        const s = await navigator.mediaDevices.getUserMedia({ video: { ...CAMERA_SIZE, ...(l.deviceId ? { deviceId: { exact: l.deviceId } } : {}) } });
        this.replaceLocalTrack('camera', s.getVideoTracks()[0]);
      } catch (e) {
        l.muted = true;
        this.notice(describeMediaError(e, 'camera'));
        this.emit('local');
        return;
      }
    }
    l.track.enabled = !muted;
    if (source === 'camera' && muted) {
      l.deviceId = l.track.getSettings().deviceId;
      l.track.stop();
    }
    if (tell && this.sig) this.sig.send({ type: 'mute', source, muted });
    this.emit('local');
    this.emit('mute', { participantId: this.participantId, source, muted, local: true });
  }

  replaceLocalTrack(source, track) {
    const l = this.local[source];
    const old = l.track;
    if (l.transceiver) l.transceiver.sender.replaceTrack(track);
    if (old !== track) {
      this.localStream.removeTrack(old);
      old.stop();
    }
    this.localStream.addTrack(track);
    l.track = track;
    if (source === 'microphone') this.localAnalyser = null;
  }

  /** Switches microphone (kind 'audio') or camera ('video') to another device, keeping the mute state. */
  async switchDevice(kind, deviceId) {
    const source = kind === 'audio' ? 'microphone' : 'camera';
    const l = this.local[source];
    if (!l) return;
    if (source === 'camera' && l.muted) {
      l.deviceId = deviceId; // opened on unmute
      return;
    }
    const c = kind === 'audio' ? { audio: { deviceId: { exact: deviceId } } } : { video: { ...CAMERA_SIZE, deviceId: { exact: deviceId } } };
    try {
      const track = (await navigator.mediaDevices.getUserMedia(c)).getTracks()[0];
      track.enabled = !l.muted;
      this.replaceLocalTrack(source, track);
      this.emit('local');
    } catch (e) {
      this.notice(describeMediaError(e, source === 'camera' ? 'camera' : 'microphone'));
    }
  }

  /** Moderator actions: mute someone's microphone, or remove them. The server answers `forbidden` otherwise. */
  moderate(action, participant, source = 'microphone') {
    const msg = { type: 'moderate', action, participant };
    if (action === 'mute') msg.source = source;
    this.sig && this.sig.send(msg);
  }

  /**
   * Tells the server how a received video track is shown: its tile's size in device pixels, or 0 x 0
   * when it is not shown. Sent only when it changed (to the nearest 16 pixels).
   */
  setVideoTile(trackId, width, height) {
    if (!this.sig || this.state !== 'joined') return;
    const q = (v) => Math.round(v / 16) * 16;
    const size = `${q(width)}x${q(height)}`;
    if (this.videoTiles.get(trackId) === size) return;
    this.videoTiles.set(trackId, size);
    this.sig.send({ type: 'video_tile', track_id: trackId, width: q(width), height: q(height) });
  }

  /** Dynacast: send only the simulcast encodings (by rid) that someone receives. */
  async setActiveLayers(trackId, rids) {
    // The server names the track as our offer did (a=msid), which outlives replaceTrack: find its m-section.
    const sdp = (this.publishPc && this.publishPc.localDescription && this.publishPc.localDescription.sdp) || '';
    const section = sdp.split(/\r?\nm=/).slice(1).find((m) => m.split(/\r?\n/).some((l) => l.startsWith('a=msid:') && l.split(' ')[1] === trackId));
    const mid = section && (/\r?\na=mid:(\S+)/.exec(section) || [])[1];
    const transceiver = mid != null && this.publishPc.getTransceivers().find((t) => t.mid === mid);
    if (!transceiver) return;
    const sender = transceiver.sender;
    const params = sender.getParameters();
    if (!params.encodings || params.encodings.length < 2) return;
    let changed = false;
    for (const e of params.encodings) {
      const active = rids.includes(e.rid);
      if (e.active !== active) {
        e.active = active;
        changed = true;
      }
    }
    if (changed) await sender.setParameters(params).catch(() => {});
  }

  get sharing() {
    return !!this.local.screen_share;
  }

  /** The screen share's section: one layer at a low frame rate, since text wants resolution, not motion. */
  addShareSection(track) {
    this.shareTransceiver = this.publishPc.addTransceiver(track || 'video', {
      direction: 'sendonly', streams: [this.localStream], sendEncodings: [{ maxFramerate: 5, maxBitrate: 2_500_000 }],
    });
    const params = this.shareTransceiver.sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    this.shareTransceiver.sender.setParameters(params).catch(() => {}); // not every browser takes it
  }

  async startScreenShare() {
    if (this.sharing || this.state !== 'joined') return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
      this.notice(t('share.unsupported'));
      return;
    }
    if (this.shareTransceiver && !this.shareTrackId()) {
      this.notice(t('share.notReady'));
      this.negotiatePublish(); // in case an earlier offer failed
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (e) {
      if (e.name !== 'NotAllowedError') this.notice(describeMediaError(e, 'screen'));
      return;
    }
    const track = stream.getVideoTracks()[0];
    if (this.sharing || this.state !== 'joined') {
      track.stop();
      return;
    }
    if ('contentHint' in track) track.contentHint = 'detail';
    track.addEventListener('ended', () => this.stopScreenShare()); // the browser's own "Stop sharing"
    if (!this.shareTransceiver) {
      // No camera whose layers a renegotiation could lose: the section comes with this offer.
      this.addShareSection(track);
      this.local.screen_share = { track, transceiver: this.shareTransceiver, muted: false };
      this.emit('local');
      this.negotiatePublish();
      return;
    }
    const transceiver = this.shareTransceiver;
    this.local.screen_share = { track, transceiver, muted: false };
    // Active before the first packet, so that the packet publishes the track.
    this.sig.send({ type: 'track_active', track_id: this.shareTrackId(), active: true });
    try {
      await transceiver.sender.replaceTrack(track);
    } catch (e) {
      this.notice(t('share.failed', { error: e.message }));
      this.stopScreenShare();
      return;
    }
    this.emit('local');
  }

  /** The share section's track id in our publish SDP, once negotiated. */
  shareTrackId() {
    const mid = this.shareTransceiver?.mid;
    const sdp = this.publishPc?.localDescription?.sdp;
    if (mid == null || !sdp) return null;
    return parseSdpSections(sdp).find((s) => s.mid === mid)?.trackId || null;
  }

  stopScreenShare() {
    const l = this.local.screen_share;
    if (!l) return;
    delete this.local.screen_share;
    l.track.stop();
    const trackId = this.shareTrackId();
    if (trackId && this.state === 'joined') this.sig.send({ type: 'track_active', track_id: trackId, active: false });
    if (this.publishPc && this.publishPc.signalingState !== 'closed') l.transceiver.sender.replaceTrack(null).catch(() => {});
    this.emit('local');
  }

  // ---- speaking levels ----

  startLevels() {
    let busy = false;
    this.levelTimer = setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        const levels = await this.audioLevels();
        if (this.state === 'joined') this.emit('levels', { levels });
      } catch { /* a connection closed under us */ }
      busy = false;
    }, 250);
  }

  /**
   * Map participant id -> audio level 0..1 since the last poll. From WebRTC stats: the energy received
   * (inbound-rtp) or captured (media-source), so short sounds between two polls still count; where a
   * browser lacks those, the RTP audio level or, for our own microphone, an analyser.
   */
  async audioLevels() {
    const levels = new Map();
    const put = (id, v) => levels.set(id, Math.max(levels.get(id) || 0, v));
    for (const m of this.remoteMedia.values()) {
      if (m.kind !== 'audio') continue;
      let level = null;
      (await m.receiver.getStats()).forEach((r) => { if (r.type === 'inbound-rtp') level = this.levelFrom(m.receiver, r); });
      if (level === null && m.receiver.getSynchronizationSources) {
        for (const src of m.receiver.getSynchronizationSources()) if (typeof src.audioLevel === 'number') level = Math.max(level || 0, src.audioLevel);
      }
      if (level !== null) put(m.participantId, level);
    }
    const mic = this.local.microphone;
    if (mic && !mic.muted) {
      let level = null;
      if (mic.transceiver) {
        const sender = mic.transceiver.sender;
        (await sender.getStats()).forEach((r) => { if (r.type === 'media-source' && r.kind === 'audio') level = this.levelFrom(sender, r); });
      }
      put(this.participantId, level ?? this.localLevel(mic.track));
    }
    return levels;
  }

  /** RMS level since the previous report of the same sender/receiver, else the report's audioLevel. */
  levelFrom(key, r) {
    if (!this.energy) this.energy = new WeakMap();
    if (typeof r.totalAudioEnergy === 'number' && typeof r.totalSamplesDuration === 'number') {
      const prev = this.energy.get(key);
      this.energy.set(key, { e: r.totalAudioEnergy, d: r.totalSamplesDuration });
      if (prev && r.totalSamplesDuration > prev.d) return Math.sqrt(Math.max(0, r.totalAudioEnergy - prev.e) / (r.totalSamplesDuration - prev.d));
    }
    return typeof r.audioLevel === 'number' ? r.audioLevel : null;
  }

  localLevel(track) {
    try {
      if (!this.audioCtx) this.audioCtx = new AudioContext();
      if (!this.localAnalyser) {
        this.localAnalyser = this.audioCtx.createAnalyser();
        this.localAnalyser.fftSize = 2048;
        this.audioCtx.createMediaStreamSource(new MediaStream([track])).connect(this.localAnalyser);
      }
      const buf = new Float32Array(this.localAnalyser.fftSize);
      this.localAnalyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      return Math.sqrt(sum / buf.length);
    } catch {
      return 0;
    }
  }
}
