// Firefox and Chromium in one meeting.
//
//   node firefox.mjs --url http://HOST:PORT --room ROOM [--firefox PATH] [--chromium PATH] [--timeout 60]
//
// Run inside a network namespace with an address of its own (Firefox never offers a 127.0.0.1
// candidate, so a server on loopback is out of its reach). Bob's page runs in headless Firefox ESR
// (puppeteer-core over WebDriver BiDi, fake camera and microphone), Alice's in headless Chromium
// (playwright-core). Asserts:
//   1. both join;
//   2. Bob decodes Alice's camera and receives her microphone; Alice decodes Bob's camera and
//      receives his microphone with sound in it: media flows both ways through the server;
//   3. Bob's signaling websocket is cut (a TCP proxy between his page and the server ends the
//      connection and refuses new ones for 3 s): his page shows that it is reconnecting, resumes
//      the same session, and shows the camera Alice turned off meanwhile; Alice never sees him
//      leave, and his media still reaches her;
//   4. when Bob leaves, Alice's page no longer shows him.
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import os from 'node:os';
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, joined, launchFirefox, openMeeting, parseArgs, receivedAudio, receivedVideo, runChecks, sleep, startProxy, waitFor } from './lib.mjs';

const USAGE = 'usage: firefox.mjs --url URL --room ROOM [--firefox PATH] [--chromium PATH] [--timeout S]';

/** Frames decoded and audio packets (and energy, where the browser reports it) from `from`, over 2 s. */
async function flow(who, from) {
  const read = async () => ({ video: await who.page.evaluate(receivedVideo), audio: await who.page.evaluate(receivedAudio) });
  const before = await read();
  await sleep(2000);
  const after = await read();
  const grew = (kind, key) => (after[kind][from.id]?.[key] || 0) - (before[kind][from.id]?.[key] || 0);
  return { frames: grew('video', 'frames'), packets: grew('audio', 'packets'), energy: grew('audio', 'energy') };
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, timeout: '60', firefox: '/usr/bin/firefox-esr',
    chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  const chrome = await chromium.launch({
    executablePath: args.chromium, headless: true, args: [...CHROMIUM_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${url}`],
  });
  const firefox = await launchFirefox(args.firefox);
  const summary = { ok: false, room: args.room };
  await runChecks(summary, [chrome, firefox], async (people) => {
    const alice = await openMeeting(chrome, 'Alice', url, args.room);
    people.push(alice);
    const page = await firefox.newPage();
    const bob = { name: 'Bob', page, console: [] };
    page.on('pageerror', (e) => bob.console.push(`pageerror: ${e.message}`));
    // Bob reaches the server through a proxy on this namespace's own address (a page from loopback
    // gets no media in Firefox here), so that his websocket can be cut.
    const own = Object.values(os.networkInterfaces()).flat().find((a) => a.family === 'IPv4' && !a.internal);
    if (!own) throw new Error('no address of its own in this namespace');
    const proxy = await startProxy(own.address, new URL(url));
    await page.goto(`${proxy.url}/?${new URLSearchParams({ room: args.room, name: 'Bob', autojoin: '1' })}`);
    people.push(bob);
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    summary.firefox = await firefox.version();
    const bobGets = await waitFor("Bob (Firefox) does not receive Alice's camera and microphone", timeout, async () => {
      const f = await flow(bob, alice);
      return { ok: f.frames >= 10 && f.packets >= 25, detail: f };
    });
    summary.bob_receives = bobGets.detail;
    const aliceGets = await waitFor("Alice (Chromium) does not receive Bob's camera and microphone", timeout, async () => {
      const f = await flow(alice, bob);
      return { ok: f.frames >= 10 && f.packets >= 25 && f.energy > 0, detail: f };
    });
    summary.alice_receives = aliceGets.detail;

    // Bob's websocket is cut; his session resumes.
    let bobSeen = true;
    const watch = setInterval(async () => {
      try {
        if (!(await alice.page.evaluate(() => [...window.samtal.participants.keys()])).includes(bob.id)) bobSeen = false;
      } catch { /* closing */ }
    }, 250);
    const bobState = () => page.evaluate(() => ({
      state: window.samtal.state,
      id: window.samtal.participantId,
      reconnecting: window.samtal.reconnecting,
      connection: document.getElementById('connection-state').textContent,
    }));
    try {
      proxy.cut();
      const cutAt = Date.now();
      try {
        await waitFor("Bob's page (Firefox) does not show that it is reconnecting", timeout, async () => {
          const st = await bobState();
          return { ok: st.reconnecting && /Reconnecting/.test(st.connection), detail: st };
        });
        summary.reconnecting_shown_after_ms = Date.now() - cutAt;
        await alice.page.click('#camera-button');
        await sleep(Math.max(0, 3000 - (Date.now() - cutAt)));
      } finally {
        proxy.restore();
      }
      const restoredAt = Date.now();
      const resumed = await waitFor("Bob's page (Firefox) does not resume", timeout, async () => {
        const st = await bobState();
        return { ok: st.state === 'joined' && !st.reconnecting, detail: st };
      });
      summary.resumed_after_ms = Date.now() - restoredAt;
      if (resumed.detail.id !== bob.id) throw new Error(`Bob's participant id changed: ${bob.id} -> ${resumed.detail.id}`);
      await waitFor("Bob's page (Firefox) does not show the camera Alice turned off while he was away", timeout, async () => {
        const muted = await page.evaluate((aliceId) => {
          const a = window.samtal.participants.get(aliceId);
          return !!a && [...a.tracks.values()].some((t) => t.source === 'camera' && t.muted);
        }, alice.id);
        return { ok: muted, detail: muted };
      });
      summary.alice_receives_after_resume = (await waitFor("Alice no longer receives Bob after his resume", timeout, async () => {
        const f = await flow(alice, bob);
        return { ok: f.frames >= 10 && f.packets >= 25, detail: f };
      })).detail;
    } finally {
      clearInterval(watch);
    }
    if (!bobSeen) throw new Error("Bob left Alice's participant list while his websocket was cut");
    await page.close();
    await waitFor("Alice's page still shows Bob after he left", timeout, async () => {
      const ids = await alice.page.evaluate(() => [...window.samtal.participants.keys()]);
      return { ok: !ids.includes(bob.id), detail: ids };
    });
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
