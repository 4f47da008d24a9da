// The lobby on the real meeting page, in three headless Chromium participants.
//
//   node lobby.mjs --url URL --room ROOM --moderator TOKEN --participant TOKEN [--chromium PATH] [--timeout 60]
//                  [--screenshots DIR]
//
// --url is a running Samtal server with auth.secret set; the tokens are join tokens for any room.
// Mo (moderator) joins, opens the participant list and ticks the lobby box. Ada joins and waits: her
// page says so in the top bar and offers "Stop waiting"; Mo gets a notice and Ada in the lobby list,
// lets her in, and Ada's page is in the meeting with Mo in her list. Bert knocks in Swedish and Mo
// turns him away: Bert's page is back at the join form saying, in Swedish, that a moderator did not let
// him in. Then the other room controls: Mo locks the room (Ada's list says so; Bert, trying again, is
// refused in Swedish), mutes everyone (Ada's microphone goes off, Mo's stays on), and ends the meeting
// for everyone (both pages are back at the join form, Ada told she was removed). Prints one JSON
// summary line; exits 0 on success, 1 naming what failed.

import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, joined, openMeeting, parseArgs, runChecks, screenshot, waitFor } from './lib.mjs';

const args = parseArgs(
  process.argv.slice(2),
  { chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium', timeout: 60, url: null, room: null, moderator: null, participant: null, screenshots: '' },
  ['url', 'room', 'moderator', 'participant'],
  'usage: lobby.mjs --url URL --room ROOM --moderator TOKEN --participant TOKEN [--chromium PATH] [--timeout S] [--screenshots DIR]',
);
const timeout = Number(args.timeout);
const url = args.url.replace(/\/+$/, '');

const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: CHROMIUM_FLAGS });
const summary = { ok: false };

/** With --screenshots: `page` as `name`.png, wide and narrow. */
const shoot = (page, name) => screenshot(page, args.screenshots, name);

/** The meeting's state in `page` ('lobby', 'joined', …). */
const stateOf = (page) => page.evaluate(() => window.samtal && window.samtal.state);

/** The names in the moderator's lobby list. */
const lobbyNames = (page) => page.evaluate(() => {
  const section = document.getElementById('lobby-section');
  if (section.hidden) return [];
  return [...document.querySelectorAll('#lobby-list li .name')].map((el) => el.textContent);
});

/** Waits until `person` waits in the lobby; returns what its top bar says. */
async function waitsInLobby(person) {
  const r = await waitFor(`${person.name} never waited in the lobby`, timeout, async () => {
    const state = await stateOf(person.page);
    const bar = await person.page.textContent('#connection-state');
    const cancel = await person.page.isVisible('#lobby-cancel');
    return { ok: state === 'lobby' && cancel, detail: { state, bar, cancel } };
  });
  return r.detail.bar;
}

/** Clicks the moderator's button for `name` in the lobby list: let in (`admit`) or turn away. */
async function decide(page, name, admit) {
  const names = await waitFor(`${name} never showed in the moderator's lobby list`, timeout, async () => {
    const got = await lobbyNames(page);
    return { ok: got.includes(name), detail: got };
  });
  await shoot(page, `lobby-moderator-${name}`);
  const button = page.locator('#lobby-list li', { hasText: name }).locator(`button[data-admit="${admit}"]`);
  const label = await button.textContent();
  await button.click();
  return { listed: names.detail, label };
}

await runChecks(summary, [browser], async (people) => {
  const mo = await openMeeting(browser, 'Mo', url, args.room, { extra: { token: args.moderator } });
  people.push(mo);
  await joined(mo.page, 'Mo', timeout);
  await mo.page.click('#people-button');
  await mo.page.check('#lobby-room');
  await waitFor('the lobby setting never came back from the server', timeout, async () => {
    const on = await mo.page.evaluate(() => window.samtal.roomSettings.lobby);
    return { ok: on === true, detail: on };
  });

  const ada = await openMeeting(browser, 'Ada', url, args.room, { extra: { token: args.participant } });
  people.push(ada);
  const adaBar = await waitsInLobby(ada);
  await shoot(ada.page, 'lobby-waiting');
  if (!/moderator/i.test(adaBar)) throw new Error(`Ada's top bar does not say she waits for a moderator: ${adaBar}`);
  const knocked = await waitFor('Mo got no notice that Ada waits', timeout, async () => {
    const text = await mo.page.textContent('#notices');
    return { ok: text.includes('Ada is waiting'), detail: text };
  });
  summary.admit = await decide(mo.page, 'Ada', true);
  if (summary.admit.label !== 'Let Ada in') throw new Error(`admit button says ${summary.admit.label}`);
  await joined(ada.page, 'Ada', timeout);
  await ada.page.click('#people-button');
  await waitFor('Ada\'s list never showed Mo', timeout, async () => {
    const names = await ada.page.evaluate(() => [...document.querySelectorAll('#people-list li .name')].map((el) => el.textContent));
    return { ok: names.includes('Mo'), detail: names };
  });
  const adaSeesLobby = await ada.page.evaluate(() => !document.getElementById('room-controls').hidden || !document.getElementById('lobby-section').hidden);
  if (adaSeesLobby) throw new Error('a participant sees the room controls or the lobby');
  await waitFor('Ada stayed in Mo\'s lobby list', timeout, async () => {
    const got = await lobbyNames(mo.page);
    return { ok: got.length === 0, detail: got };
  });

  const bert = await openMeeting(browser, 'Bert', url, args.room, {
    extra: { token: args.participant }, context: { locale: 'sv-SE' },
  });
  people.push(bert);
  summary.bertWaits = await waitsInLobby(bert);
  summary.reject = await decide(mo.page, 'Bert', false);
  const turnedAway = await waitFor('Bert was never told he was turned away', timeout, async () => {
    const state = await stateOf(bert.page);
    const notices = await bert.page.textContent('#notices');
    const form = await bert.page.isVisible('#join-form');
    return { ok: form && notices.includes('En moderator släppte inte in dig'), detail: { state, notices, form } };
  });
  summary.bert = turnedAway.detail;
  summary.knockNotice = knocked.detail;

  // Lock: everyone's list says so, and Bert, trying again, is refused at once.
  await mo.page.check('#lock-room');
  await waitFor('Ada\'s list never said the room is locked', timeout, async () => {
    const shown = await ada.page.isVisible('#room-locked');
    return { ok: shown, detail: shown };
  });
  await bert.page.click('#join-button');
  const locked = await waitFor('Bert was never told the room is locked', timeout, async () => {
    const notices = await bert.page.textContent('#notices');
    return { ok: notices.includes('Rummet är låst'), detail: notices };
  });
  summary.locked = locked.detail;

  // Mute everyone: once Mo sees Ada's microphone on, the button turns it off on Ada's own page.
  await waitFor('Mo never saw Ada\'s microphone on', timeout, async () => {
    const entry = await mo.page.evaluate(() => [...document.querySelectorAll('#people-list li')]
      .find((li) => li.querySelector('.name')?.textContent === 'Ada')?.textContent ?? null);
    return { ok: !!entry && !entry.includes('Microphone off'), detail: entry };
  });
  await mo.page.click('#mute-all-button');
  await waitFor('Ada\'s microphone stayed on after mute everyone', timeout, async () => {
    const muted = await ada.page.evaluate(() => window.samtal.isMuted('microphone'));
    return { ok: muted === true, detail: muted };
  });
  if (await mo.page.evaluate(() => window.samtal.isMuted('microphone'))) throw new Error('mute everyone muted the moderator');

  // End for everyone, after the confirmation: both pages are back at the join form.
  mo.page.once('dialog', (dialog) => dialog.accept());
  await mo.page.click('#end-all-button');
  const ended = await waitFor('the meeting did not end for everyone', timeout, async () => {
    const pages = await Promise.all([mo, ada].map(async (p) => ({
      form: await p.page.isVisible('#join-form'), notices: await p.page.textContent('#notices'),
    })));
    return { ok: pages.every((p) => p.form) && pages[1].notices.includes('removed you'), detail: pages };
  });
  summary.ended = ended.detail;
});
