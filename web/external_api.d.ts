// Types of the Samtal iframe API (external_api.js, external_api.mjs). Reference: docs/embedding.md.
//
//   <script src="https://meet.example.org/external_api.js"></script>   -> window.SamtalMeeting
//   import { SamtalMeeting } from 'https://meet.example.org/external_api.mjs';

export interface SamtalUserInfo {
  /** Display name in the meeting (1-64 characters). Without it the page asks for a name. */
  displayName?: string;
}

/** The subset of Jitsi's configOverwrite that Samtal understands; other keys are ignored. */
export interface SamtalConfigOverwrite {
  startWithAudioMuted?: boolean;
  startWithVideoMuted?: boolean;
  /** true: show the pre-join page (name and device preview) instead of joining at once. Default false. */
  prejoinPageEnabled?: boolean;
  /** false: start with live captions hidden (the user can show them). Default true. */
  captionsVisible?: boolean;
  /** Language asked for when transcription is started from this page ("sv", "en", …); default automatic. */
  transcriptionLanguage?: string;
  /** Same as the `lang` option. */
  defaultLanguage?: string;
}

export type SamtalToolbarButton =
  | 'microphone' | 'camera' | 'desktop' | 'transcription' | 'closedcaptions' | 'transcript' | 'devices' | 'hangup';

/** The subset of Jitsi's interfaceConfigOverwrite that Samtal understands. */
export interface SamtalInterfaceConfigOverwrite {
  /** The toolbar buttons to show; the others are hidden. Default: all. */
  TOOLBAR_BUTTONS?: SamtalToolbarButton[];
}

export interface SamtalMeetingOptions {
  /** Room name: 1-64 characters of A-Z a-z 0-9 _ . - */
  roomName: string;
  /** Where the iframe goes; default document.body. */
  parentNode?: Element;
  /** Number (pixels) or CSS length; default '100%'. */
  width?: number | string;
  /** Number (pixels) or CSS length; default 600px. */
  height?: number | string;
  /** Join token, for servers with [auth]; passed in the URL fragment, never to the server's logs. */
  jwt?: string;
  userInfo?: SamtalUserInfo;
  /**
   * Interface language: "en" (English) or "sv" (Swedish), or a tag such as "sv-SE". Passed to the
   * iframe as `?lang=`; a language the user picked with the page's own switch wins, and without either
   * the browser's languages decide (then English).
   */
  lang?: string;
  startWithAudioMuted?: boolean;
  startWithVideoMuted?: boolean;
  configOverwrite?: SamtalConfigOverwrite;
  interfaceConfigOverwrite?: SamtalInterfaceConfigOverwrite;
  /** The Matrix room this meeting belongs to (set by the Matrix widget). */
  matrixRoomId?: string;
  /** The iframe's title, for screen readers; default "Samtal meeting" ("Samtalsmöte" with lang "sv"). */
  title?: string;
  /** Called on the iframe's load event. */
  onload?: (this: HTMLIFrameElement, ev: Event) => void;
}

export type SamtalSource = 'microphone' | 'camera' | 'screen_share';

export interface SamtalTranscriptionStatus {
  enabled: boolean;
  /** A transcription service is connected. */
  available: boolean;
  language: string | null;
  meetingId: string | null;
}

export interface SamtalEvents {
  /** The meeting page is loaded and takes commands. */
  ready: { version: number; commands: string[] };
  joined: { participantId: string; room: string; displayName: string; role: string; matrixRoomId: string | null };
  /** reason: left (hangup or Leave), removed (by a moderator), error, disconnected. */
  left: { reason: string; message: string; participantId: string | null };
  /** Also sent, right after `joined`, for everyone already in the room. */
  participantJoined: { id: string; displayName: string; role: string };
  participantLeft: { id: string; displayName: string; reason: string };
  /** The room's dominant speaker changed (the server's decision; the same for everyone). */
  dominantSpeakerChanged: { id: string };
  /** Anyone's microphone (kind audio) or camera/screen (kind video) muted or unmuted; local: it is us. */
  muteChanged: { participantId: string; local: boolean; source: SamtalSource; kind: 'audio' | 'video'; muted: boolean };
  /** A live caption; an interim one (final: false) is replaced by the next with the same utteranceId. */
  captionReceived: {
    utteranceId: string;
    participantId: string;
    displayName: string;
    text: string;
    final: boolean;
    language: string | null;
    startMs: number;
    endMs: number;
  };
  transcriptionStatusChanged: SamtalTranscriptionStatus;
  captionsToggled: { visible: boolean };
  /** The meeting is over for this user (after `left`, or hangup when not in a meeting): remove the iframe. */
  readyToClose: Record<string, never>;
}

export interface SamtalCommands {
  toggleAudio: [];
  toggleVideo: [];
  /** Browsers may refuse screen capture without a click inside the meeting frame. */
  toggleShareScreen: [];
  hangup: [];
  displayName: [name: string];
  /** Moderators only (anyone on a server without [auth]). */
  startTranscription: [options?: { language?: string; prompt?: string }];
  stopTranscription: [];
  /** Without an argument: toggle. */
  toggleCaptions: [visible?: boolean];
  toggleTranscript: [open?: boolean];
}

export declare class SamtalMeeting {
  /** domain: "meet.example.org" (https is implied) or a full URL such as "http://127.0.0.1:8080/". */
  constructor(domain: string, options: SamtalMeetingOptions);
  executeCommand<K extends keyof SamtalCommands>(name: K, ...args: SamtalCommands[K]): void;
  executeCommands(commands: { [K in keyof SamtalCommands]?: SamtalCommands[K] }): void;
  on<K extends keyof SamtalEvents>(event: K, listener: (data: SamtalEvents[K]) => void): this;
  off<K extends keyof SamtalEvents>(event: K, listener?: (data: SamtalEvents[K]) => void): this;
  once<K extends keyof SamtalEvents>(event: K, listener: (data: SamtalEvents[K]) => void): this;
  addListener<K extends keyof SamtalEvents>(event: K, listener: (data: SamtalEvents[K]) => void): this;
  removeListener<K extends keyof SamtalEvents>(event: K, listener?: (data: SamtalEvents[K]) => void): this;
  getIFrame(): HTMLIFrameElement | null;
  /** Leaves the meeting and removes the iframe. */
  dispose(): void;
  static readonly COMMANDS: ReadonlyArray<keyof SamtalCommands>;
  static readonly EVENTS: ReadonlyArray<keyof SamtalEvents>;
}

export default SamtalMeeting;

declare global {
  interface Window {
    SamtalMeeting: typeof SamtalMeeting;
  }
}
