// A three-party meeting with Firefox: one Firefox and two Chromium participants, simulcast both ways.
//
//   node firefox_three_party.mjs --url http://HOST:PORT --room ROOM [--firefox PATH] [--chromium PATH] [--timeout 60]
//
// Run inside a network namespace with an address of its own (Firefox offers no loopback candidate).
// Bob's page runs in headless Firefox ESR, Alice's and Carol's in headless Chromium; all three publish
// their microphones, Alice and Bob their cameras the way the web client always does (three simulcast
// encodings). Asserts:
//   0. audio in every direction: each page receives packets with sound from the two others;
//   1. Firefox sends its camera as several layers of different sizes (outbound-rtp per rid);
//   2. Alice (large window) decodes Bob's widest layer, Carol (small window) a narrower one, both with
//      frames advancing: the server tells Firefox's layers apart and forwards one to each;
//   3. Firefox as a viewer: Bob (large window) decodes a large layer of Alice's; when his window shrinks
//      he decodes a lower one, and when it grows again the large one, with his decoder's frame count only
//      growing across both switches (picture numbers continuous in the stream he receives);
//   4. Bob shares his screen from Firefox (its section was offered empty at join, which Firefox marks
//      port 0 + a=bundle-only): Alice and Carol decode a track of Bob's announced as screen_share
//      while his camera goes on; when he stops, its tile goes away;
//   5. Bob leaves: Alice's and Carol's pages no longer list him.
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import os from 'node:os';
import { chromium } from 'playwright-core';
import {
  CHROMIUM_FLAGS, joined, launchFirefox, openPuppeteerMeeting, parseArgs, receivedAudio, receivedMedia, receivedVideo,
  runChecks, screenToShare, sentLayers, sleep, waitFor,
} from './lib.mjs';

const USAGE = 'usage: firefox_three_party.mjs --url URL --room ROOM [--firefox PATH] [--chromium PATH] [--timeout S]';

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, timeout: '60', firefox: '/usr/bin/firefox-esr',
    chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  if (!Object.values(os.networkInterfaces()).flat().some((a) => a.family === 'IPv4' && !a.internal)) {
    throw new Error('no address of its own in this namespace');
  }
  const chrome = await chromium.launch({
    executablePath: args.chromium, headless: true, args: [...CHROMIUM_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${url}`],
  });
  const firefox = await launchFirefox(args.firefox, { secureHosts: [new URL(url).hostname] });
  const big = { width: 1280, height: 720 };
  const small = { width: 300, height: 200 };
  const q = (name) => `${url}/?${new URLSearchParams({ room: args.room, name, autojoin: '1' })}`;
  const summary = { ok: false, room: args.room };
  await runChecks(summary, [chrome, firefox], async (people) => {
    const openChromium = async (name, viewport) => {
      const page = await (await chrome.newContext({ viewport })).newPage();
      const person = { name, page, console: [] };
      page.on('pageerror', (e) => person.console.push(`pageerror: ${e.message}`));
      await page.goto(q(name));
      people.push(person);
      return person;
    };
    const alice = await openChromium('Alice', big);
    const carol = await openChromium('Carol', small);
    const bob = await openPuppeteerMeeting(firefox, 'Bob', url, args.room, big);
    const { page } = bob;
    people.push(bob);
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    summary.firefox = await firefox.version();
    // Carol's camera is not needed.
    await carol.page.click('#camera-button');

    // 0. Audio in every direction: packets with sound over 2 s.
    summary.audio = {};
    for (const to of people) {
      for (const from of people.filter((p) => p !== to)) {
        summary.audio[`${from.name}->${to.name}`] = (await waitFor(`${to.name} does not hear ${from.name}`, timeout, async () => {
          const before = (await to.page.evaluate(receivedAudio))[from.id] || { packets: 0, energy: 0 };
          await sleep(2000);
          const after = (await to.page.evaluate(receivedAudio))[from.id] || { packets: 0, energy: 0 };
          const got = { packets: after.packets - before.packets, energy: after.energy - before.energy };
          return { ok: got.packets >= 25 && got.energy > 0, detail: got };
        })).detail;
      }
    }

    // 1. Firefox's layers.
    const sent = await waitFor('Bob (Firefox) does not send simulcast layers', timeout, async () => {
      const s = await bob.page.evaluate(sentLayers);
      const widths = new Set(Object.values(s).filter((l) => l.frames > 0 && l.width > 0).map((l) => l.width));
      return { ok: widths.size >= 2, detail: s };
    });
    summary.bob_sends = sent.detail;
    const bobTop = Math.max(...Object.values(sent.detail).map((l) => l.width));

    /** Waits until `viewer` decodes `from` at a width `want` accepts, frames advancing; returns {width, frames}. */
    const decodes = async (viewer, from, what, want) => {
      let before = null;
      const r = await waitFor(`${viewer.name} does not decode ${what}`, timeout, async () => {
        const v = (await viewer.page.evaluate(receivedVideo))[from.id] || { width: 0, frames: 0 };
        if (before !== null && v.frames < before.frames) throw new Error(`${viewer.name}'s frame count went back`);
        const advancing = before !== null && v.frames > before.frames;
        before = v;
        return { ok: want(v.width) && advancing, detail: v };
      });
      return r.detail;
    };

    // 2. Chromium viewers get Firefox's layers by their tiles.
    summary.alice_gets_bob = await decodes(alice, bob, `Bob's top layer (${bobTop} wide)`, (w) => w === bobTop);
    summary.carol_gets_bob = await decodes(carol, bob, "a smaller layer of Bob's", (w) => w > 0 && w < bobTop);

    // 3. Firefox as a viewer, across layer switches.
    // In a large window at one device pixel per CSS pixel his tile needs a middle or the top layer.
    const top = await decodes(bob, alice, "Alice's camera", (w) => w >= 640);
    summary.bob_gets_alice = top;
    await page.setViewport(small);
    const lower = await decodes(bob, alice, "a lower layer of Alice's after his window shrank", (w) => w > 0 && w < top.width);
    summary.bob_gets_alice_small = lower;
    await page.setViewport(big);
    const again = await decodes(bob, alice, "Alice's camera as large as before after his window grew", (w) => w === top.width);
    summary.bob_gets_alice_again = again;
    if (!(top.frames < lower.frames && lower.frames < again.frames)) {
      throw new Error(`Bob's frame count did not keep growing across the switches: ${top.frames}, ${lower.frames}, ${again.frames}`);
    }

    // 4. Bob shares his screen, and stops.
    summary.bob_screen_capture = await screenToShare(page);
    await page.click('#share-button');
    const shareTile = (viewer) => viewer.page.locator(`#grid .tile[data-participant-id="${bob.id}"][data-source="screen_share"]`).count();
    summary.bob_share = {};
    for (const viewer of [alice, carol]) {
      let before = null;
      summary.bob_share[viewer.name] = (await waitFor(`${viewer.name} does not decode Bob's screen share and camera`, timeout, async () => {
        const media = (await viewer.page.evaluate(receivedMedia)).filter((m) => m.from === bob.id && m.kind === 'video');
        const frames = (source) => media.filter((m) => m.source === source).reduce((n, m) => n + m.framesDecoded, 0);
        const now = { screen: frames('screen_share'), camera: frames('camera'), tiles: await shareTile(viewer), media };
        const ok = before !== null && now.tiles === 1 && now.screen > before.screen && now.camera > before.camera;
        before = now;
        return { ok, detail: now };
      })).detail;
      delete summary.bob_share[viewer.name].media;
    }
    await page.click('#share-button');
    for (const viewer of [alice, carol]) {
      await waitFor(`${viewer.name} still shows Bob's screen share after he stopped`, timeout, async () => {
        const tiles = await shareTile(viewer);
        return { ok: tiles === 0, detail: tiles };
      });
    }

    // 5. Bob leaves.
    await page.close();
    for (const viewer of [alice, carol]) {
      await waitFor(`${viewer.name}'s page still lists Bob after he left`, timeout, async () => {
        const ids = await viewer.page.evaluate(() => [...window.samtal.participants.keys()]);
        return { ok: !ids.includes(bob.id), detail: ids };
      });
    }
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
