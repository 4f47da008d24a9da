// Chat and raised hands on the real meeting page, in two headless Chromium participants.
//
//   node chat_hands.mjs --url http://127.0.0.1:PORT --room ROOM [--chromium PATH] [--timeout 60]
//
// Anna opens the chat and sends a message with markup in it by typing and Enter; Bo sees the count of
// new messages on his Chat button, opens the chat and reads the message as text (no element made from
// the markup). Bo raises his hand with the H key; Anna's participant list shows his hand, and his
// Raise hand button is pressed; H again lowers it and Anna's list follows. Prints one JSON summary
// line; exits 0 on success, 1 naming what failed.

import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, joined, openMeeting, parseArgs, runChecks, waitFor } from './lib.mjs';

const args = parseArgs(
  process.argv.slice(2),
  { chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium', timeout: 60, url: null, room: null },
  ['url', 'room'],
  'usage: chat_hands.mjs --url URL --room ROOM [--chromium PATH] [--timeout S]',
);
const timeout = Number(args.timeout);
const url = args.url.replace(/\/+$/, '');
const MESSAGE = 'Hej Bo! <b>fet</b>';

const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: CHROMIUM_FLAGS });
const summary = { ok: false };

/** Bo's entry in `page`'s participant list: its text, or null when he is not listed. */
function entryOf(page, name) {
  return page.evaluate((name) => {
    const li = [...document.querySelectorAll('#people-list li')].find((el) => el.querySelector('.name')?.textContent === name);
    return li ? li.textContent : null;
  }, name);
}

await runChecks(summary, [browser], async (people) => {
  const anna = await openMeeting(browser, 'Anna', url, args.room);
  const bo = await openMeeting(browser, 'Bo', url, args.room);
  people.push(anna, bo);
  await joined(anna.page, 'Anna', timeout);
  await joined(bo.page, 'Bo', timeout);

  // Anna writes from the keyboard: the Chat button opens the panel with the focus in the text field.
  await anna.page.click('#chat-button');
  await anna.page.keyboard.type(MESSAGE);
  await anna.page.keyboard.press('Enter');
  await waitFor('Bo\'s Chat button never counted the new message', timeout, async () => {
    const label = await bo.page.textContent('#chat-button');
    return { ok: /1/.test(label), detail: label };
  });
  await bo.page.click('#chat-button');
  const read = await waitFor('Bo never read Anna\'s message', timeout, async () => {
    const got = await bo.page.evaluate(() => [...document.querySelectorAll('#chat-list li')].map((li) => ({
      who: li.querySelector('.speaker')?.textContent,
      text: li.querySelector('.text')?.textContent,
      markup: li.querySelector('.text b') !== null,
    })));
    return { ok: got.length === 1 && got[0].text === MESSAGE, detail: got };
  });
  if (read.detail[0].who !== 'Anna' || read.detail[0].markup) throw new Error(`message shown wrongly: ${JSON.stringify(read.detail)}`);
  const annaSees = await anna.page.evaluate(() => document.querySelector('#chat-list li .text')?.textContent);
  if (annaSees !== MESSAGE) throw new Error(`Anna does not see her own message: ${annaSees}`);
  summary.chat = read.detail;

  // Bo raises his hand with H (the focus away from any text field), and Anna's list shows it.
  await anna.page.click('#people-button');
  await bo.page.click('#chat-close');
  await bo.page.focus('#grid');
  await bo.page.keyboard.press('h');
  const raised = await waitFor('Anna\'s list never showed Bo\'s hand', timeout, async () => {
    const entry = await entryOf(anna.page, 'Bo');
    return { ok: !!entry && entry.includes('Hand raised'), detail: entry };
  });
  // Bo's page learns of his hand from the server as Anna's does; it may draw it a moment later.
  await waitFor('Bo\'s hand button never showed as pressed', timeout, async () => {
    const pressed = await bo.page.getAttribute('#hand-button', 'aria-pressed');
    return { ok: pressed === 'true', detail: pressed };
  });
  await bo.page.keyboard.press('h');
  const lowered = await waitFor('Anna\'s list kept Bo\'s hand up', timeout, async () => {
    const entry = await entryOf(anna.page, 'Bo');
    return { ok: !!entry && !entry.includes('Hand raised'), detail: entry };
  });
  summary.hand = { raised: raised.detail, lowered: lowered.detail };
});
