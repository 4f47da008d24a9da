// A participant's websocket is closed and its link cut: the session resumes on a new websocket
// without a rejoin when the link is back within the server's grace period, and ends clearly when
// it is not.
//
//   node resume.mjs --url http://HOST:PORT --room ROOM --cut-chromium PATH --cut-dev DEV --grace S
//                   [--cut-seconds 5] [--chromium PATH] [--timeout 60]
//
// Alice runs in an ordinary headless Chromium; Bob in one started through --cut-chromium (a wrapper
// that runs Chromium in a network namespace whose only link is the veth DEV on this side), and
// reaches the server through a TCP proxy run here, so that his connections can be closed for real.
// A cut: the proxy closes every connection (both ends see the TCP connection end) and refuses new
// ones, and DEV goes down; it ends with DEV up and the proxy accepting again. Asserts:
//   1. both join and each decodes the other's camera;
//   2. short cut (--cut-seconds, below the grace period): Bob's page shows "Reconnecting"; during
//      the cut Alice turns her camera off and Bob his microphone; afterwards Bob's page resumed
//      (same participant id, no rejoin), each page shows the other's change (messages missed in
//      either direction were delivered), both decode each other's camera again, and Bob never left
//      Alice's participant list;
//   3. long cut (grace + 5 s): Alice sees Bob leave no earlier than the grace period after the cut,
//      and Bob's page ends the meeting saying the connection could not be restored.
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, decodes, joined, openMeeting, parseArgs, runChecks, sleep, startProxy, staysListed, waitFor } from './lib.mjs';

const USAGE = 'usage: resume.mjs --url URL --room ROOM --cut-chromium PATH --cut-dev DEV --grace S [--cut-seconds S] [--chromium PATH] [--timeout S]';

/** Runs in a page: the signaling and meeting state the checks look at. */
function pageState() {
  const m = window.samtal;
  return {
    state: m && m.state,
    id: m && m.participantId,
    reconnecting: !!(m && m.reconnecting),
    connection: document.getElementById('connection-state').textContent,
    participants: m ? [...m.participants.keys()] : [],
    muted: m ? Object.fromEntries([...m.participants].map(([id, p]) => [id, [...p.tracks.values()].filter((t) => t.muted).map((t) => t.source)])) : {},
    notices: [...document.querySelectorAll('#notices .notice')].map((n) => n.textContent),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, 'cut-chromium': null, 'cut-dev': null, grace: null, 'cut-seconds': '5', timeout: '60',
    chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room', 'cut-chromium', 'cut-dev', 'grace'], USAGE);
  const timeout = Number(args.timeout);
  const grace = Number(args.grace);
  const url = args.url.replace(/\/+$/, '');
  const target = new URL(url);
  const proxy = await startProxy(target.hostname, target);
  const flags = (u) => [...CHROMIUM_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${u}`];
  const direct = await chromium.launch({ executablePath: args.chromium, headless: true, args: flags(url) });
  const cutBrowser = await chromium.launch({ executablePath: args['cut-chromium'], headless: true, args: flags(proxy.url) });
  const link = (state) => execFileSync('ip', ['link', 'set', 'dev', args['cut-dev'], state]);
  const summary = { ok: false, room: args.room, grace_s: grace };
  try {
    await runChecks(summary, [direct, cutBrowser], async (people) => {
      const alice = await openMeeting(direct, 'Alice', url, args.room);
      const bob = await openMeeting(cutBrowser, 'Bob', proxy.url, args.room);
      people.push(alice, bob);
      for (const p of people) p.id = await joined(p.page, p.name, timeout);
      await decodes(alice, bob.id, timeout);
      await decodes(bob, alice.id, timeout);

      /** Cuts Bob off: his connections end, then his link goes. Returns when his page noticed. */
      const cut = async () => {
        proxy.cut();
        const at = Date.now();
        link('down');
        await waitFor("Bob's page does not show that it is reconnecting", timeout, async () => {
          const s = await bob.page.evaluate(pageState);
          return { ok: s.reconnecting && /Reconnecting/.test(s.connection), detail: s };
        });
        return at;
      };
      const heal = () => {
        link('up');
        proxy.restore();
      };

      // --- short cut ---
      await staysListed(alice, bob.id, "Bob left Alice's participant list during a cut shorter than the grace period", async () => {
        const cutAt = await cut();
        try {
          summary.reconnecting_shown_after_ms = Date.now() - cutAt;
          // Messages for the other side while Bob's websocket is gone, in both directions.
          await alice.page.click('#camera-button');
          await bob.page.click('#mic-button');
          await sleep(Math.max(0, Number(args['cut-seconds']) * 1000 - (Date.now() - cutAt)));
        } finally {
          heal();
        }
        const upAt = Date.now();
        const resumed = await waitFor("Bob's page does not resume", timeout, async () => {
          const s = await bob.page.evaluate(pageState);
          return { ok: s.state === 'joined' && !s.reconnecting && !/Reconnecting/.test(s.connection), detail: s };
        });
        summary.resumed_after_ms = Date.now() - upAt;
        if (resumed.detail.id !== bob.id) throw new Error(`Bob's participant id changed: ${bob.id} -> ${resumed.detail.id}`);
        await waitFor("Bob's page does not show the camera Alice turned off while he was away", timeout, async () => {
          const s = await bob.page.evaluate(pageState);
          return { ok: (s.muted[alice.id] || []).includes('camera'), detail: s.muted };
        });
        await waitFor("Alice's page does not show the microphone Bob turned off while he was away", timeout, async () => {
          const s = await alice.page.evaluate(pageState);
          return { ok: (s.muted[bob.id] || []).includes('microphone'), detail: s.muted };
        });
        summary.frames_alice_from_bob_after = await decodes(alice, bob.id, timeout);
      });
      summary.present_throughout = true;
      await alice.page.click('#camera-button');
      await bob.page.click('#mic-button');
      summary.frames_bob_from_alice_after = await decodes(bob, alice.id, timeout);

      // --- long cut ---
      const longAt = await cut();
      try {
        await waitFor('Alice does not see Bob leave after the grace period', grace + timeout, async () => {
          const s = await alice.page.evaluate(pageState);
          return { ok: !s.participants.includes(bob.id), detail: s.participants };
        });
        summary.left_after_ms = Date.now() - longAt;
        if (summary.left_after_ms < (grace - 1) * 1000) {
          throw new Error(`Bob was removed ${summary.left_after_ms} ms after the cut, before the ${grace} s grace period`);
        }
        const ended = await waitFor("Bob's page does not end the meeting", timeout, async () => {
          const s = await bob.page.evaluate(pageState);
          return { ok: s.state === 'failed' && s.notices.length > 0, detail: s };
        });
        summary.bob_told = ended.detail.notices.join(' | ');
        if (!/could not be restored|no session to resume/.test(summary.bob_told)) {
          throw new Error(`Bob's page ended without saying the connection could not be restored: ${summary.bob_told}`);
        }
      } finally {
        await sleep(Math.max(0, (grace + 5) * 1000 - (Date.now() - longAt)));
        heal();
      }
    });
  } finally {
    proxy.close();
  }
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
