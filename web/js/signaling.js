// Samtal signaling: the websocket to /ws and the JSON messages of docs/protocol.md.
// Knows nothing about WebRTC or the DOM; it delivers server messages as events and sends client ones.

const PING_INTERVAL_MS = 10_000;

/** The websocket URL of the page's own origin (wss: when the page is https). */
export function defaultSignalingUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

/**
 * One websocket session. Events (EventTarget, CustomEvent with `detail`):
 *  - `message`: detail = a parsed server message (any type)
 *  - `close`: detail = {code, reason, wasOpen}
 */
export class Signaling extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.pingTimer = null;
    this.nonce = 0;
    this.closedByUs = false;
  }

  /** Opens the socket; resolves when open, rejects with a readable Error when the server is unreachable. */
  open() {
    return new Promise((resolve, reject) => {
      let opened = false;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        reject(new Error(`Bad server address ${this.url}: ${e.message}`));
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        opened = true;
        this.pingTimer = setInterval(() => this.send({ type: 'ping', nonce: String(++this.nonce) }), PING_INTERVAL_MS);
        resolve();
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data !== 'string') return;
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          console.warn('samtal: server sent invalid JSON', ev.data);
          return;
        }
        if (msg && typeof msg.type === 'string') this.dispatchEvent(new CustomEvent('message', { detail: msg }));
      };
      ws.onclose = (ev) => {
        clearInterval(this.pingTimer);
        this.pingTimer = null;
        if (!opened) {
          reject(new Error(`Cannot reach the server (${this.url}).`));
          return;
        }
        if (!this.closedByUs) {
          this.dispatchEvent(new CustomEvent('close', { detail: { code: ev.code, reason: ev.reason, wasOpen: true } }));
        }
      };
      // onerror is always followed by onclose, which reports it.
      ws.onerror = () => {};
    });
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(msg) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  close() {
    this.closedByUs = true;
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    if (this.ws) this.ws.close(1000, 'bye');
  }
}
