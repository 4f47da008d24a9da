// A participant's link is cut for a while and comes back: the others see "connection interrupted"
// (not muted devices, not a leave), and media resumes without a rejoin.
//
//   node interruption.mjs --url http://HOST:PORT --room ROOM --cut-chromium PATH --cut-dev DEV
//                         [--cut-seconds 15] [--chromium PATH] [--timeout 60]
//   ip netns exec NS node interruption.mjs --url http://HOST:PORT --room ROOM --bob-firefox PATH
//                         --outside-chromium PATH --cut-dev DEV [--cut-seconds 15] [--timeout 60]
//
// Alice runs in an ordinary headless Chromium; Bob in one started through --cut-chromium (a wrapper
// that runs Chromium in a network namespace whose only link is the veth DEV on this side). With
// --bob-firefox, Bob runs in headless Firefox ESR instead: the driver itself then runs inside the
// namespace (puppeteer reaches Firefox over a local socket), Alice's Chromium outside it through
// --outside-chromium (a wrapper that runs it in the machine's own network namespace), and DEV is the
// namespace's end of the veth pair. Asserts:
//   1. both join and Alice decodes Bob's camera;
//   2. with DEV down (`ip link set dev DEV down`), Alice's page marks Bob's tile "connection
//      interrupted" (the server's `media_state`) without showing his devices as muted;
//   3. with DEV up again, the mark goes away and Alice decodes Bob's camera again;
//   4. Bob was in Alice's participant list throughout: no leave, no rejoin.
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import {
  CHROMIUM_FLAGS, decodes, joined, launchFirefox, openMeeting, openPuppeteerMeeting, parseArgs, runChecks, sleep,
  staysListed, waitFor,
} from './lib.mjs';

const USAGE = 'usage: interruption.mjs --url URL --room ROOM (--cut-chromium PATH | --bob-firefox PATH --outside-chromium PATH) ' +
  '--cut-dev DEV [--cut-seconds S] [--chromium PATH] [--timeout S]';

/** Runs in Alice's page: how Bob's tile looks, and whether he is in the participant list. */
function bobsTile(bobId) {
  const tile = document.querySelector(`.tile.camera[data-participant-id="${bobId}"]`);
  return {
    present: window.samtal.participants.has(bobId),
    interrupted: !!tile && !tile.querySelector('.interrupted').hidden,
    mutedShown: !!tile && (!tile.querySelector('.mic-off').hidden || !tile.querySelector('.cam-off').hidden),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, 'cut-chromium': '', 'bob-firefox': '', 'outside-chromium': '', 'cut-dev': null,
    'cut-seconds': '15', timeout: '60', chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room', 'cut-dev'], USAGE);
  const firefox = !!args['bob-firefox'];
  if (firefox ? !args['outside-chromium'] : !args['cut-chromium']) throw new Error(USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  const flags = [...CHROMIUM_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${url}`];
  const direct = await chromium.launch({ executablePath: args['outside-chromium'] || args.chromium, headless: true, args: flags });
  const cut = firefox
    ? await launchFirefox(args['bob-firefox'])
    : await chromium.launch({ executablePath: args['cut-chromium'], headless: true, args: flags });
  const link = (state) => execFileSync('ip', ['link', 'set', 'dev', args['cut-dev'], state]);
  const summary = { ok: false, room: args.room, bob_browser: firefox ? 'firefox' : 'chromium' };
  await runChecks(summary, [direct, cut], async (people) => {
    const alice = await openMeeting(direct, 'Alice', url, args.room);
    const bob = firefox ? await openPuppeteerMeeting(cut, 'Bob', url, args.room) : await openMeeting(cut, 'Bob', url, args.room);
    people.push(alice, bob);
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    await staysListed(alice, bob.id, "Bob left Alice's participant list during the cut", async () => {
      summary.frames_before = await decodes(alice, bob.id, timeout);
      link('down');
      const cutAt = Date.now();
      try {
        const marked = await waitFor("Alice's page does not mark Bob's connection interrupted", timeout, async () => {
          const t = await alice.page.evaluate(bobsTile, bob.id);
          return { ok: t.interrupted && !t.mutedShown, detail: t };
        });
        summary.marked_after_ms = Date.now() - cutAt;
        summary.marked = marked.detail;
        await sleep(Math.max(0, Number(args['cut-seconds']) * 1000 - (Date.now() - cutAt)));
      } finally {
        link('up');
      }
      const upAt = Date.now();
      await waitFor("Alice's page still marks Bob interrupted after his link came back", timeout, async () => {
        const t = await alice.page.evaluate(bobsTile, bob.id);
        return { ok: !t.interrupted, detail: t };
      });
      summary.cleared_after_ms = Date.now() - upAt;
      summary.frames_after = await decodes(alice, bob.id, timeout);
    });
    summary.present_throughout = true;
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
