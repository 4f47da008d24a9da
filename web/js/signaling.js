// Samtal signaling: the websocket to /ws and the JSON messages of docs/protocol.md.
// Knows nothing about WebRTC or the DOM; it delivers server messages as events and sends client ones.
//
// A joined session survives a dropped websocket: the client opens `/ws?resume=TOKEN&received=N`
// (N: server messages received so far), the server sends again what was missed and then `resumed`
// with the count of client messages it received, and the client sends again the ones after that
// (docs/protocol.md, "Resuming a session").

import { t } from './i18n.js';

const PING_INTERVAL_MS = 5_000;
/** A socket that brought nothing (not even a pong) for this long is taken as dead. */
const SILENCE_MS = 12_000;
/** A new socket that does not open within this long is given up and tried again. */
const CONNECT_TIMEOUT_MS = 4_000;
/** Waits between resume attempts (the last one repeats) until the server's grace period ends. */
const RETRY_MS = [250, 500, 1_000, 2_000];
/** Client messages kept for sending again after a resume. */
const SENT_LOG_MAX = 512;

/** Closes a socket we no longer listen to: none of its events reach us, whatever state it is in. */
function forget(ws) {
  ws.onopen = ws.onmessage = ws.onclose = null;
  try {
    ws.close();
  } catch { /* already closing */ }
}

/** The websocket URL of the page's own origin (wss: when the page is https). */
export function defaultSignalingUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

/**
 * One signaling session, over one websocket at a time. Events (EventTarget, CustomEvent with `detail`):
 *  - `message`: detail = a parsed server message (any type)
 *  - `reconnecting`: the websocket dropped; resuming (detail = {until: ms timestamp})
 *  - `reconnected`: the session resumed on a new websocket
 *  - `close`: the session is over: detail = {code, reason, wasOpen, gaveUp}
 */
export class Signaling extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.opened = false;
    this.timer = null;
    this.retryTimer = null;
    this.nonce = 0;
    this.closedByUs = false;
    /** `resume` of `joined`: {token, grace_secs}, once joined on a server that offers it. */
    this.resume = null;
    /** The server said the session is over (fatal error, removal): never resume. */
    this.over = false;
    this.reconnecting = false;
    this.giveUpAt = 0;
    this.retries = 0;
    this.lastHeard = 0;
    /** Text messages received from the server in this session, over all its websockets. */
    this.received = 0;
    /** Messages sent in this session (numbered from 1), and the last SENT_LOG_MAX of them. */
    this.sentCount = 0;
    this.sentLog = [];
  }

  /** Opens the socket; resolves when open, rejects with a readable Error when the server is unreachable. */
  open() {
    return new Promise((resolve, reject) => {
      try {
        this.connect(this.url, { resolve, reject });
      } catch (e) {
        reject(new Error(t('signaling.badAddress', { url: this.url, error: e.message })));
      }
    });
  }

  connect(url, first = null) {
    const ws = new WebSocket(url);
    this.ws = ws;
    const connectTimer = setTimeout(() => {
      if (this.ws !== ws || ws.readyState !== WebSocket.CONNECTING) return;
      if (first) {
        forget(ws);
        first.reject(new Error(t('signaling.unreachable', { url: this.url })));
        return;
      }
      this.drop(ws, 1006);
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(connectTimer);
      this.opened = true;
      this.lastHeard = Date.now();
      clearInterval(this.timer);
      this.timer = setInterval(() => this.tick(ws), PING_INTERVAL_MS);
      if (first) first.resolve();
    };
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      clearTimeout(connectTimer);
      if (this.ws !== ws) return;
      if (first && !this.opened) {
        first.reject(new Error(t('signaling.unreachable', { url: this.url })));
        return;
      }
      this.onDropped(ev.code, ev.reason);
    };
    // onerror is always followed by onclose, which reports it.
    ws.onerror = () => {};
  }

  /** Every PING_INTERVAL_MS on an open socket: a ping, or giving the socket up when it went silent. */
  tick(ws) {
    if (this.ws !== ws) return;
    if (Date.now() - this.lastHeard > SILENCE_MS) {
      this.drop(ws, 1006);
      return;
    }
    this.send({ type: 'ping', nonce: String(++this.nonce) });
  }

  /** Gives a socket up without waiting for its closing handshake (the network may be gone). */
  drop(ws, code) {
    forget(ws);
    if (this.ws === ws) this.onDropped(code, '');
  }

  onFrame(data) {
    if (typeof data !== 'string') return;
    this.received += 1;
    this.lastHeard = Date.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn('samtal: server sent invalid JSON', data);
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    if (msg.type === 'joined' && msg.resume && typeof msg.resume.token === 'string') this.resume = msg.resume;
    if ((msg.type === 'error' && msg.fatal) || msg.type === 'removed') this.over = true;
    if (msg.type === 'resumed') this.onResumed(msg.received);
    this.dispatchEvent(new CustomEvent('message', { detail: msg }));
  }

  onResumed(received) {
    const missing = this.sentCount - received;
    if (missing > this.sentLog.length || missing < 0) {
      // The server lacks messages this client no longer has: the session cannot go on consistently.
      this.over = true;
      this.finish(1006, 'messages were lost while reconnecting', true);
      return;
    }
    for (const { text } of this.sentLog.slice(this.sentLog.length - missing)) this.ws.send(text);
    this.reconnecting = false;
    this.retries = 0;
    this.dispatchEvent(new CustomEvent('reconnected'));
  }

  /** The current socket closed or was given up. */
  onDropped(code, reason) {
    clearInterval(this.timer);
    this.timer = null;
    if (this.closedByUs) return;
    // Resume after a drop (1006: no close frame; 1005: no code), not after the server closed on purpose.
    const dropped = code === 1006 || code === 1005;
    if (this.resume && !this.over && (dropped || this.reconnecting)) {
      this.retry();
      return;
    }
    this.finish(code, reason, this.reconnecting);
  }

  retry() {
    if (!this.reconnecting) {
      this.reconnecting = true;
      this.retries = 0;
      this.giveUpAt = Date.now() + this.resume.grace_secs * 1000;
      this.dispatchEvent(new CustomEvent('reconnecting', { detail: { until: this.giveUpAt } }));
    }
    const wait = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
    this.retries += 1;
    if (Date.now() + wait >= this.giveUpAt) {
      this.finish(1006, `no resume within ${this.resume.grace_secs} s`, true);
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.closedByUs) return;
      const sep = this.url.includes('?') ? '&' : '?';
      this.connect(`${this.url}${sep}resume=${encodeURIComponent(this.resume.token)}&received=${this.received}`);
    }, wait);
  }

  finish(code, reason, gaveUp) {
    this.reconnecting = false;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) forget(ws);
    this.dispatchEvent(new CustomEvent('close', { detail: { code, reason, wasOpen: true, gaveUp } }));
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /**
   * Sends a message; while the session is resuming it is kept and sent after the resume. False
   * when the session is over.
   */
  send(msg) {
    if (msg.type === 'ping') {
      // Pings are counted by the server like any message, so they are numbered too, but only sent live.
      if (!this.isOpen || this.reconnecting) return false;
    } else if (!this.isOpen && !this.reconnecting) {
      return false;
    }
    const text = JSON.stringify(msg);
    this.sentCount += 1;
    this.sentLog.push({ n: this.sentCount, text });
    if (this.sentLog.length > SENT_LOG_MAX) this.sentLog.shift();
    if (this.isOpen && !this.reconnecting) this.ws.send(text);
    return true;
  }

  close() {
    this.closedByUs = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    this.timer = null;
    if (this.ws) this.ws.close(1000, 'bye');
  }
}
