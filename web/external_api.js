/*
 * Samtal iframe API: embed a Samtal meeting in any web page and drive it from there.
 *
 *   <script src="https://meet.example.org/external_api.js"></script>
 *   <script>
 *     const meeting = new SamtalMeeting('meet.example.org', {
 *       roomName: 'weekly', parentNode: document.querySelector('#meet'), userInfo: { displayName: 'Alice' },
 *     });
 *     meeting.on('joined', (e) => console.log('joined as', e.participantId));
 *     meeting.executeCommand('toggleAudio');
 *   </script>
 *
 * No build step: this file is a classic script that defines `SamtalMeeting` globally; it may also be
 * loaded with `import 'https://meet.example.org/external_api.js'` (then use globalThis.SamtalMeeting),
 * or `import { SamtalMeeting } from 'https://meet.example.org/external_api.mjs'`. Types:
 * external_api.d.ts. Reference: docs/embedding.md.
 *
 * The page in the iframe accepts commands only from sites listed in the server's [embed]
 * allowed_origins; this side accepts messages only from the iframe it created, from the meeting's origin.
 */
(function (root) {
  'use strict';

  var COMMANDS = [
    'toggleAudio', 'toggleVideo', 'toggleShareScreen', 'hangup', 'displayName',
    'startTranscription', 'stopTranscription', 'toggleCaptions', 'toggleTranscript',
  ];
  var EVENTS = [
    'ready', 'joined', 'left', 'participantJoined', 'participantLeft', 'dominantSpeakerChanged', 'muteChanged',
    'captionReceived', 'transcriptionStatusChanged', 'captionsToggled', 'readyToClose',
  ];
  var TOOLBAR_BUTTONS = ['microphone', 'camera', 'desktop', 'transcription', 'closedcaptions', 'transcript', 'devices', 'hangup'];
  var ROOM = /^[A-Za-z0-9_.-]{1,64}$/;
  /** The iframe's default title (read by screen readers) in the languages of the meeting page. */
  var FRAME_TITLES = { en: 'Samtal meeting', sv: 'Samtalsmöte' };

  /** 'meet.example.org' -> https://meet.example.org/; a full http(s) URL is kept (path included). */
  function meetingBase(domain) {
    var d = String(domain || '').trim();
    if (!d) throw new Error('SamtalMeeting: a domain is required, e.g. "meet.example.org"');
    if (!/^https?:\/\//i.test(d)) d = 'https://' + d;
    var url = new URL(d);
    if (!/\/$/.test(url.pathname)) url.pathname += '/';
    url.search = '';
    url.hash = '';
    return url;
  }

  function size(value, fallback) {
    if (value === undefined || value === null || value === '') return fallback;
    return typeof value === 'number' ? value + 'px' : String(value);
  }

  function pick(options, config, key) {
    if (config && config[key] !== undefined) return config[key];
    return options[key];
  }

  /**
   * new SamtalMeeting(domain, options): creates the iframe in options.parentNode (default document.body)
   * and joins options.roomName as options.userInfo.displayName.
   */
  function SamtalMeeting(domain, options) {
    if (!(this instanceof SamtalMeeting)) throw new TypeError('SamtalMeeting must be called with new');
    options = options || {};
    var config = options.configOverwrite || {};
    var iface = options.interfaceConfigOverwrite || {};
    if (!ROOM.test(options.roomName || '')) {
      throw new Error('SamtalMeeting: roomName must be 1-64 characters of A-Z a-z 0-9 _ . -');
    }
    var base = meetingBase(domain);
    this._origin = base.origin;
    this._listeners = {};
    this._queue = [];
    this._ready = false;
    this._disposed = false;

    var q = new URLSearchParams();
    q.set('room', options.roomName);
    var name = options.userInfo && options.userInfo.displayName;
    if (name) q.set('name', String(name).slice(0, 64));
    // Straight into the meeting unless the pre-join page (device preview) is asked for; without a name
    // the pre-join page asks for one.
    if (config.prejoinPageEnabled !== true) q.set('autojoin', '1');
    q.set('embed', '1');
    var here = root.location && root.location.origin;
    if (here && here !== 'null') q.set('parent_origin', here);
    var lang = pick(options, config, 'lang') || pick(options, config, 'defaultLanguage');
    if (lang) q.set('lang', lang);
    if (pick(options, config, 'startWithAudioMuted')) q.set('audio_muted', '1');
    if (pick(options, config, 'startWithVideoMuted')) q.set('video_muted', '1');
    if (config.captionsVisible === false) q.set('captions', '0');
    if (config.transcriptionLanguage) q.set('transcription_language', config.transcriptionLanguage);
    if (Array.isArray(iface.TOOLBAR_BUTTONS)) {
      q.set('toolbar', iface.TOOLBAR_BUTTONS.filter(function (b) { return TOOLBAR_BUTTONS.indexOf(b) >= 0; }).join(','));
    }
    if (options.matrixRoomId) q.set('matrix_room', options.matrixRoomId);
    var url = base.href + '?' + q.toString();
    // The token goes in the fragment: it never reaches server logs or Referer headers.
    if (options.jwt) url += '#jwt=' + encodeURIComponent(options.jwt);

    var iframe = document.createElement('iframe');
    iframe.src = url;
    iframe.name = 'samtal-' + Math.random().toString(36).slice(2);
    iframe.title = options.title || FRAME_TITLES[String(lang || '').toLowerCase().split(/[-_]/)[0]] || FRAME_TITLES.en;
    iframe.allow = 'camera; microphone; display-capture; autoplay; fullscreen; clipboard-write';
    iframe.style.border = '0';
    iframe.style.width = size(options.width, '100%');
    iframe.style.height = size(options.height, '600px');
    this._iframe = iframe;

    var self = this;
    this._onMessage = function (ev) { self._receive(ev); };
    root.addEventListener('message', this._onMessage);
    if (typeof options.onload === 'function') iframe.addEventListener('load', options.onload);
    (options.parentNode || document.body).appendChild(iframe);
  }

  SamtalMeeting.prototype._receive = function (ev) {
    if (this._disposed || !this._iframe || ev.source !== this._iframe.contentWindow) return;
    if (ev.origin !== this._origin) return;
    var msg = ev.data;
    if (!msg || typeof msg !== 'object' || msg.samtal !== 'event' || typeof msg.event !== 'string') return;
    if (msg.event === 'ready' && !this._ready) {
      this._ready = true;
      var queued = this._queue.splice(0);
      for (var i = 0; i < queued.length; i++) this._post(queued[i]);
    }
    this._emit(msg.event, msg.data || {});
  };

  SamtalMeeting.prototype._post = function (message) {
    var w = this._iframe && this._iframe.contentWindow;
    if (w) w.postMessage(message, this._origin);
  };

  SamtalMeeting.prototype._emit = function (event, data) {
    var fns = (this._listeners[event] || []).slice();
    for (var i = 0; i < fns.length; i++) {
      try {
        fns[i].call(this, data);
      } catch (e) {
        setTimeout(function () { throw e; });
      }
    }
  };

  /**
   * Runs a command in the meeting: toggleAudio, toggleVideo, toggleShareScreen, hangup,
   * displayName(name), startTranscription({language?, prompt?}), stopTranscription,
   * toggleCaptions(visible?), toggleTranscript(open?). Commands given before the meeting page is ready wait.
   */
  SamtalMeeting.prototype.executeCommand = function (name) {
    if (this._disposed) return;
    if (COMMANDS.indexOf(name) < 0) throw new Error('SamtalMeeting: unknown command ' + name);
    var message = { samtal: 'command', command: name, args: Array.prototype.slice.call(arguments, 1) };
    if (this._ready) this._post(message);
    else this._queue.push(message);
  };

  /** executeCommands({toggleAudio: [], displayName: ['Bob']}): several commands at once. */
  SamtalMeeting.prototype.executeCommands = function (commands) {
    for (var name in commands) {
      if (Object.prototype.hasOwnProperty.call(commands, name)) {
        this.executeCommand.apply(this, [name].concat(commands[name] || []));
      }
    }
  };

  /** Listens to an event (see EVENTS); the listener gets the event's data object. */
  SamtalMeeting.prototype.on = function (event, fn) {
    if (typeof fn !== 'function') throw new TypeError('SamtalMeeting.on: listener must be a function');
    if (EVENTS.indexOf(event) < 0) console.warn('SamtalMeeting: no such event ' + event);
    (this._listeners[event] = this._listeners[event] || []).push(fn);
    return this;
  };

  SamtalMeeting.prototype.off = function (event, fn) {
    var fns = this._listeners[event];
    if (!fns) return this;
    if (fn === undefined) {
      delete this._listeners[event];
    } else {
      var i = fns.indexOf(fn);
      if (i >= 0) fns.splice(i, 1);
    }
    return this;
  };

  SamtalMeeting.prototype.once = function (event, fn) {
    var self = this;
    var wrapped = function (data) {
      self.off(event, wrapped);
      fn.call(self, data);
    };
    return this.on(event, wrapped);
  };

  SamtalMeeting.prototype.addListener = SamtalMeeting.prototype.on;
  SamtalMeeting.prototype.removeListener = SamtalMeeting.prototype.off;

  SamtalMeeting.prototype.getIFrame = function () {
    return this._iframe;
  };

  /** Leaves the meeting and removes the iframe; the object is dead afterwards. */
  SamtalMeeting.prototype.dispose = function () {
    if (this._disposed) return;
    if (this._ready) this._post({ samtal: 'command', command: 'hangup', args: [] });
    this._disposed = true;
    root.removeEventListener('message', this._onMessage);
    this._listeners = {};
    this._queue = [];
    if (this._iframe && this._iframe.parentNode) this._iframe.parentNode.removeChild(this._iframe);
    this._iframe = null;
  };

  SamtalMeeting.COMMANDS = COMMANDS.slice();
  SamtalMeeting.EVENTS = EVENTS.slice();

  root.SamtalMeeting = SamtalMeeting;
  if (typeof module === 'object' && module && module.exports) module.exports = { SamtalMeeting: SamtalMeeting };
})(typeof globalThis !== 'undefined' ? globalThis : window);
