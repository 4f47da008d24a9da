// The participant list and the chat: who is here (role, microphone, raised hand, hands first in the
// order they went up), the moderator's room controls (lock, lobby, mute everyone, end for everyone)
// with whoever waits in the lobby, and
// the room's chat messages. Chat text is always shown as text, never as markup.

import { formatTime, localize, t } from './i18n.js';

const $ = (id) => document.getElementById(id);

/** Everyone in the meeting, this participant first, then raised hands by time, then by name. */
function roster(meeting) {
  const micOff = (p) => ![...p.tracks.values()].some((tr) => tr.source === 'microphone' && !tr.muted);
  const others = [...meeting.participants.values()].map((p) => ({
    id: p.id, name: p.name, role: p.role, hand: p.handRaisedAt ?? null, micOff: micOff(p), self: false,
  }));
  others.sort((a, b) => (a.hand ?? Infinity) - (b.hand ?? Infinity) || a.name.localeCompare(b.name));
  const self = {
    id: meeting.participantId, name: meeting.name, role: meeting.role, hand: meeting.handRaisedAt,
    micOff: meeting.isMuted('microphone'), self: true,
  };
  return [self, ...others];
}

/** The participant panel. `view.peopleOpen`: whether it is shown. */
export function renderPeople(meeting, view) {
  const panel = $('people-panel');
  panel.hidden = !(meeting && view.peopleOpen);
  $('people-button').setAttribute('aria-pressed', String(!!view.peopleOpen));
  const hand = $('hand-button');
  const raised = !!(meeting && meeting.handRaisedAt);
  hand.setAttribute('aria-pressed', String(raised));
  localize(hand, raised ? 'toolbar.lowerHand' : 'toolbar.raiseHand');
  if (!meeting) return;
  const moderator = meeting.role === 'moderator';
  $('room-controls').hidden = !moderator;
  $('lock-room').checked = !!meeting.roomSettings.locked;
  $('lobby-room').checked = !!meeting.roomSettings.lobby;
  $('room-locked').hidden = !meeting.roomSettings.locked;
  renderLobby(meeting, moderator);
  const items = roster(meeting).map((p) => {
    const li = document.createElement('li');
    li.dataset.participantId = p.id || '';
    const name = document.createElement('span');
    name.className = 'name';
    localize(name, p.self ? 'people.you' : 'people.name', { name: p.name });
    li.append(name);
    const tags = [];
    if (p.role === 'moderator') tags.push('people.moderator');
    if (p.hand) tags.push('people.handRaised');
    if (p.micOff) tags.push('people.micOff');
    for (const key of tags) {
      const tag = document.createElement('span');
      tag.className = `tag ${key.split('.')[1]}`;
      localize(tag, key);
      li.append(tag);
    }
    if (p.hand && moderator && !p.self) {
      const lower = document.createElement('button');
      lower.type = 'button';
      lower.dataset.action = 'lower_hand';
      localize(lower, 'people.lowerHand', { name: p.name });
      li.append(lower);
    }
    return li;
  });
  $('people-list').replaceChildren(...items);
  localize($('people-count'), 'people.count', { count: items.length });
}

/** Moderators: who waits in the lobby, each with buttons to let them in or turn them away. */
function renderLobby(meeting, moderator) {
  const waiting = moderator ? meeting.lobby : [];
  $('lobby-section').hidden = waiting.length === 0;
  const items = waiting.map((w) => {
    const li = document.createElement('li');
    li.dataset.participantId = w.id;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = w.name;
    li.append(name);
    for (const [admit, key] of [[true, 'lobby.admit'], [false, 'lobby.reject']]) {
      const button = document.createElement('button');
      button.type = 'button';
      button.dataset.admit = String(admit);
      if (!admit) button.className = 'danger';
      localize(button, key, { name: w.name });
      li.append(button);
    }
    return li;
  });
  $('lobby-list').replaceChildren(...items);
}

/** The chat panel. `view.chatOpen`: whether it is shown; unread messages count on the button. */
export function renderChat(meeting, view) {
  const panel = $('chat-panel');
  panel.hidden = !(meeting && view.chatOpen);
  const button = $('chat-button');
  button.setAttribute('aria-pressed', String(!!view.chatOpen));
  const unread = meeting && !view.chatOpen ? meeting.chat.length - (view.chatRead || 0) : 0;
  localize(button, unread > 0 ? 'toolbar.chatUnread' : 'toolbar.chat', { count: unread });
  if (!meeting) return;
  if (view.chatOpen) view.chatRead = meeting.chat.length;
  const list = $('chat-list');
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  const shown = new Set([...list.children].map((li) => li.dataset.id));
  for (const m of meeting.chat) {
    if (shown.has(m.id)) continue;
    const li = document.createElement('li');
    li.dataset.id = m.id;
    const time = document.createElement('time');
    time.dateTime = new Date(m.at).toISOString();
    time.textContent = formatTime(m.at);
    const who = document.createElement('span');
    who.className = 'speaker';
    who.textContent = m.participant_id === meeting.participantId ? t('people.you', { name: m.name }) : m.name;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    li.append(time, who, text);
    list.append(li);
  }
  $('chat-empty').hidden = meeting.chat.length > 0;
  $('chat-kept').hidden = !(meeting.transcription && meeting.transcription.enabled && meeting.transcription.chat_kept);
  if (stick) list.scrollTop = list.scrollHeight;
}
