// The transcript archive page (officer.html): sign-in, search, transcript view with export, integrity
// check, legal hold and deletion, and the audit trail for administrators. State is the URL hash
// (#meeting=ID, #audit) so that the back button and reloads work. Words shown come from the message
// catalogues (../i18n.js); a change of language draws the current view again from what it holds.

import * as api from './api.js';
import * as oidc from './oidc.js';
import { events as languageEvents, formatDate, languageName, localize, t } from '../i18n.js';

const $ = (id) => document.getElementById(id);
const el = (tag, { dataset, ...props } = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset); // dataset itself cannot be assigned
  node.append(...children);
  return node;
};

/** Milliseconds since the epoch as date and time in the page's language. */
const when = (ms) => (ms === null || ms === undefined ? '—' : formatDate(ms));
/** Offset in a meeting as h:mm:ss. */
const offset = (ms) => {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
};

let me = null; // {actor, role, room}
let current = null; // the transcript on screen
let lastSearch = null; // {q, result} of the list on screen, drawn again on a change of language

function showError(e) {
  const box = $('error');
  box.textContent = e ? (e.code ? t('officer.errorCode', { message: e.message, code: e.code }) : String(e.message || e)) : '';
  box.hidden = !e;
  if (e && e.status === 401) signOut();
}

async function guarded(fn) {
  showError(null);
  try {
    return await fn();
  } catch (e) {
    showError(e);
    return undefined;
  }
}

// --- sign-in ----------------------------------------------------------------------------------

async function signIn(value) {
  api.credential.set(value.trim());
  try {
    me = await api.whoami();
  } catch (e) {
    api.credential.clear();
    throw e;
  }
  if (!['compliance', 'administrator', 'moderator'].includes(me.role)) {
    api.credential.clear();
    throw new Error(t('officer.roleRefused', { actor: me.actor, role: roleName(me.role) }));
  }
  showWhoami();
  $('sign-out').hidden = false;
  $('audit-tab').hidden = me.role !== 'administrator';
  $('delete').hidden = me.role !== 'administrator';
  $('hold').hidden = !['compliance', 'administrator'].includes(me.role);
  $('verify').hidden = !['compliance', 'administrator'].includes(me.role);
  $('signin-view').hidden = true;
  $('archive-view').hidden = false;
  await route();
}

/** A role's name in the page's language. */
function roleName(role) {
  const key = `officer.role.${role}`;
  const name = t(key);
  return name === key ? role : name;
}

function showWhoami() {
  $('whoami').textContent = me ? t('officer.whoami', { actor: me.actor, role: roleName(me.role) }) : '';
}

function signOut() {
  api.credential.clear();
  me = null;
  $('whoami').textContent = '';
  $('sign-out').hidden = true;
  $('archive-view').hidden = true;
  $('signin-view').hidden = false;
}

// --- search -----------------------------------------------------------------------------------

function filters() {
  const day = (id, end) => {
    const v = $(id).value;
    if (!v) return undefined;
    const d = new Date(`${v}T00:00:00`);
    if (end) d.setDate(d.getDate() + 1); // "to" is inclusive on the page, exclusive in the API
    return d.getTime();
  };
  return { room: $('f-room').value.trim(), participant: $('f-participant').value.trim(), from: day('f-from'), to: day('f-to', true) };
}

function meetingLink(meeting, ...extra) {
  const link = el('a', { href: `#meeting=${encodeURIComponent(meeting.id)}`, className: 'meeting-link' }, `${meeting.room} — ${when(meeting.started_at)}`);
  return el('li', { className: 'result' }, link, ...extra);
}

async function runSearch() {
  const q = $('q').value.trim();
  const result = q ? await api.search(q, filters()) : await api.meetings(filters());
  lastSearch = { q, result };
  renderResults();
}

/** The search result or meetings list of lastSearch. */
function renderResults() {
  const list = $('results');
  list.replaceChildren();
  if (!lastSearch) return;
  const { q, result } = lastSearch;
  if (q) {
    const count = result.hits.length;
    $('result-summary').textContent = t('officer.passagesFound', { count, shown: `${count}${result.truncated ? '+' : ''}`, q });
    for (const hit of result.hits) {
      const quote = el('blockquote', { className: 'hit' });
      quote.innerHTML = hit.highlight; // the server escapes the text and adds only <mark>
      const who = el('span', { className: 'speaker' }, `${hit.segment.speaker_name}, ${offset(hit.segment.start_ms - hit.meeting.started_at)}`);
      list.append(meetingLink(hit.meeting, who, quote));
    }
  } else {
    $('result-summary').textContent = t('officer.meetingsFound', { count: result.meetings.length });
    for (const m of result.meetings) {
      const state = m.ended_at ? t('officer.ended', { when: when(m.ended_at) }) : t('officer.running');
      list.append(meetingLink(m, el('span', { className: 'facts' }, state, m.legal_hold ? t('officer.underHold') : '')));
    }
  }
}

// --- one meeting ------------------------------------------------------------------------------

/** Shows transcript `transcript`; `keepFilter`: drawn again (a change of language), keep the speaker chosen. */
function renderMeeting(transcript, keepFilter = false) {
  current = transcript;
  const m = transcript.meeting;
  $('meeting-title').textContent = `${m.room} — ${when(m.started_at)}`;
  // [data-fact (a fixed English name, for scripts and tests), label key, value]
  const facts = [
    ['Meeting id', 'officer.fact.id', m.id],
    ['Started', 'officer.fact.started', when(m.started_at)],
    ['Ended', 'officer.fact.ended', m.ended_at ? when(m.ended_at) : t('officer.stillRunning')],
    ['Language', 'officer.fact.language', m.language ? languageName(m.language) : t('officer.languageDetected')],
    ['Participants', 'officer.fact.participants', transcript.participants.map((p) => (p.opted_out_at ? t('officer.optedOut', { name: p.name, when: when(p.opted_out_at) }) : p.name)).join(', ') || '—'],
    ['Transcript digest', 'officer.fact.digest', m.transcript_digest || t('officer.notSealed')],
    ['Legal hold', 'officer.fact.hold', m.legal_hold ? t('officer.holdSince', { since: when(m.legal_hold.since), by: m.legal_hold.set_by, reason: m.legal_hold.reason }) : t('officer.no')],
  ];
  $('meeting-facts').replaceChildren(...facts.flatMap(([fact, key, v]) => [el('dt', {}, t(key)), el('dd', { dataset: { fact } }, v)]));
  localize($('hold'), m.legal_hold ? 'officer.liftHold' : 'officer.putOnHold');
  const speakers = [...new Map(transcript.segments.map((s) => [s.participant_id, s.speaker_name])).entries()];
  const chosen = $('speaker-filter').value;
  $('speaker-filter').replaceChildren(localize(el('option', { value: '' }), 'officer.everyone'), ...speakers.map(([id, name]) => el('option', { value: id }, name)));
  if (keepFilter && speakers.some(([id]) => id === chosen)) $('speaker-filter').value = chosen;
  if (!keepFilter) $('verify-result').hidden = true;
  renderSummary(transcript.summary);
  renderSegments();
  renderChat(transcript.chat || []);
}

/** The chat kept with the meeting, after the transcript: time into the meeting, sender, text (as text). */
function renderChat(messages) {
  $('kept-chat').hidden = messages.length === 0;
  $('chat-lines').replaceChildren(...messages.map((m) =>
    el('li', { className: 'segment', dataset: { participant: m.participant_id } },
      el('span', { className: 'time' }, offset(m.at - current.meeting.started_at)),
      el('span', { className: 'speaker' }, m.name),
      el('span', { className: 'text' }, m.text))));
}

/** The meeting's summary (`null`: none), under the facts. */
function renderSummary(summary) {
  $('summary').hidden = !summary;
  if (!summary) return;
  const parts = [
    ['keyPoints', 'officer.summary.keyPoints', summary.key_points],
    ['decisions', 'officer.summary.decisions', summary.decisions],
    ['actionItems', 'officer.summary.actionItems', summary.action_items],
  ];
  $('summary-body').replaceChildren(...parts.flatMap(([part, key, points]) => [
    el('h4', {}, t(key)),
    points.length
      ? el('ul', { dataset: { part } }, ...points.map((p) => el('li', {}, ...(p.speaker ? [el('span', { className: 'speaker' }, p.speaker), ': '] : []), p.text)))
      : el('p', { dataset: { part } }, t('officer.summary.none')),
  ]));
  const source = summary.source === 'extractive' ? t('officer.summary.extractive') : summary.source.replace(/^llm:/, '');
  $('summary-source').textContent = t('officer.summary.source', { when: when(summary.created_at), source });
}

function renderSegments() {
  const who = $('speaker-filter').value;
  const rows = current.segments
    .filter((s) => !who || s.participant_id === who)
    .map((s) =>
      el('li', { className: 'segment', dataset: { participant: s.participant_id } },
        el('span', { className: 'time' }, offset(s.start_ms - current.meeting.started_at)),
        el('span', { className: 'speaker' }, s.speaker_name),
        el('span', { className: 'text' }, s.text)));
  $('segments').replaceChildren(...(rows.length ? rows : [localize(el('li', { className: 'empty' }), 'officer.noSegments')]));
}

/** Shows a meeting's transcript, unless `stillWanted()` says another view was asked for meanwhile. */
async function openMeeting(id, stillWanted = () => true) {
  const [transcript, summary, chat] = await Promise.all([api.transcript(id), api.summary(id), api.chat(id)]);
  if (!stillWanted()) return;
  transcript.summary = summary;
  transcript.chat = chat.messages;
  renderMeeting(transcript);
  show('meeting');
}

async function verifyMeeting() {
  const r = await api.verify(current.meeting.id);
  const box = $('verify-result');
  box.hidden = false;
  box.dataset.ok = String(r.ok);
  box.textContent = r.ok
    ? t(r.sealed ? 'officer.intact' : 'officer.intactRunning', { count: r.segments, digest: r.computed_digest })
    : t('officer.altered', { breaks: r.breaks.map((b) => (b.index === null ? b.problem : t('officer.segmentBreak', { n: b.index + 1, id: b.utterance_id, problem: b.problem }))).join('; ') });
}

async function toggleHold() {
  const on = !current.meeting.legal_hold;
  let reason = '';
  if (on) {
    reason = prompt(t('officer.holdReason')) || '';
    if (!reason.trim()) return;
  }
  await api.hold(current.meeting.id, on, reason.trim());
  const transcript = await api.transcript(current.meeting.id);
  transcript.summary = current.summary;
  renderMeeting(transcript);
}

async function deleteMeeting() {
  if (!confirm(t('officer.confirmDelete', { id: current.meeting.id, room: current.meeting.room }))) return;
  await api.remove(current.meeting.id);
  location.hash = '';
}

// --- audit trail ------------------------------------------------------------------------------

let auditEntries = null; // the audit trail on screen, newest first

async function loadAudit() {
  const { entries } = await api.audit({ limit: 1000 });
  auditEntries = entries.reverse();
  renderAudit();
}

function renderAudit() {
  const rows = auditEntries.map((e) =>
    el('tr', { dataset: { action: e.action, outcome: e.outcome } },
      ...[e.seq, when(e.at), e.actor, e.role, e.action, e.target, e.client, e.outcome].map((v) => el('td', {}, String(v)))));
  $('audit-table').tBodies[0].replaceChildren(...rows);
}

async function verifyAudit() {
  const r = await api.auditVerify();
  const box = $('audit-result');
  box.hidden = false;
  box.dataset.ok = String(r.ok);
  box.textContent = r.ok
    ? t('officer.trailIntact', { count: r.entries, head: r.head?.seq ?? 0 })
    : t('officer.altered', { breaks: r.breaks.map((b) => `#${b.seq}: ${b.problem}`).join('; ') });
}

// --- views ------------------------------------------------------------------------------------

function show(view) {
  for (const v of ['search', 'meeting', 'audit']) $(`${v}-view`).hidden = v !== view;
  for (const b of document.querySelectorAll('#tabs button')) b.setAttribute('aria-pressed', String(b.dataset.tab === (view === 'audit' ? 'audit' : 'search')));
}

// Routes can overlap (a sign-in routes to the last hash while the user already clicks a tab): only
// the latest may change the view.
let routes = 0;

async function route() {
  if (!me) return;
  const mine = ++routes;
  const hash = new URLSearchParams(location.hash.slice(1));
  await guarded(async () => {
    if (hash.has('meeting')) await openMeeting(hash.get('meeting'), () => mine === routes);
    else if (hash.has('audit') && me.role === 'administrator') {
      show('audit');
      await loadAudit();
    } else {
      show('search');
      await runSearch();
    }
  });
}

$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  guarded(() => signIn($('credential').value));
});
$('sign-out').addEventListener('click', signOut);
$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (location.hash) location.hash = '';
  else guarded(runSearch);
});
$('back').addEventListener('click', () => history.length > 1 ? history.back() : (location.hash = ''));
$('speaker-filter').addEventListener('change', renderSegments);
for (const b of document.querySelectorAll('[data-format]')) b.addEventListener('click', () => guarded(() => api.exportTranscript(current.meeting.id, b.dataset.format)));
$('verify').addEventListener('click', () => guarded(verifyMeeting));
$('hold').addEventListener('click', () => guarded(toggleHold));
$('delete').addEventListener('click', () => guarded(deleteMeeting));
for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => (location.hash = b.dataset.tab === 'audit' ? 'audit' : ''));
$('audit-refresh').addEventListener('click', () => guarded(loadAudit));
$('audit-verify').addEventListener('click', () => guarded(verifyAudit));
for (const b of document.querySelectorAll('[data-audit-format]')) b.addEventListener('click', () => guarded(() => api.exportAudit(b.dataset.auditFormat)));
window.addEventListener('hashchange', route);
// A change of language: what is on screen is drawn again from what the page holds, without asking
// the server again (every read is audited).
languageEvents.addEventListener('change', () => {
  showWhoami();
  renderResults();
  if (current) renderMeeting(current, true);
  if (!$('audit-view').hidden && auditEntries) renderAudit();
});

async function start() {
  const config = await fetch('/client-config.json').then((r) => r.json()).catch(() => ({}));
  if (config.oidc) {
    $('oidc-signin').textContent = config.oidc.label;
    $('oidc-signin').addEventListener('click', () => guarded(() => oidc.redirect(config.oidc)));
    $('oidc-box').hidden = false;
  }
  // Back from the identity provider (?code=…&state=…): trade the code for a token.
  const query = new URLSearchParams(location.search);
  if (config.oidc && (query.has('code') || query.has('error'))) {
    history.replaceState(null, '', location.pathname);
    const token = await guarded(() => oidc.complete(config.oidc, query));
    if (token) return guarded(() => signIn(token));
  }
  // A token in the fragment (#token=…, a link from an administrator) signs in at once and is removed
  // from the address bar.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get('token') || fragment.get('access_token');
  if (given) history.replaceState(null, '', location.pathname);
  const saved = given || api.credential.get();
  if (saved) await guarded(() => signIn(saved));
}

start();
