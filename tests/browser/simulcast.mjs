// Simulcast and layer choice, seen in headless Chromium.
//
//   node simulcast.mjs --url http://127.0.0.1:PORT --room ROOM [--chromium PATH] [--timeout 60]
//
// Alice publishes her (fake) camera as three simulcast layers, as the web client always does. Bob
// watches in a large window, Carol in a small one; each page tells the server its tiles' sizes.
// Asserts:
//   1. Alice's browser sends three layers (outbound-rtp per rid has encoded frames for each; her browser's own
//      bandwidth estimate must first grow to carry the top one);
//   2. Bob decodes Alice's top layer (getStats frameWidth equal to the widest layer she sends);
//   3. Carol decodes a smaller layer than Bob, with frames still decoding;
//   4. when Carol's window grows, she climbs to the top layer, and frames keep decoding across the
//      switch (one continuous stream: framesDecoded only grows);
//   5. when Carol's window shrinks again she goes back down;
//   6. dynacast: when Bob's window shrinks too, nobody wants the top layer and Alice's browser stops
//      encoding it; when his window grows again it starts again and he decodes the top layer.
// With --shaped-chromium (a Chromium that runs in a network namespace whose link to the server is the
// veth --shape-dev on this side), Dave watches from there in a large window:
//   7. unshaped, he decodes the top layer;
//   8. with his downlink shaped by `tc ... tbf rate --shape-rate`, he decodes a lower layer and frames
//      keep decoding, while Bob keeps the layer he had;
//   9. with the limit lifted, he climbs back to the top layer (the time it took is in the summary).
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, joined, parseArgs, receivedVideo, sentLayers, waitFor } from './lib.mjs';

const USAGE = 'usage: simulcast.mjs --url URL --room ROOM [--chromium PATH] [--timeout S] ' +
  '[--shaped-chromium PATH --shape-dev DEV [--shape-rate 400kbit] [--climb-timeout S]]';

async function open(browser, name, url, room, viewport) {
  // A HiDPI screen (tiles count in device pixels), as on most laptops.
  const context = await browser.newContext({ viewport, deviceScaleFactor: 2 });
  const page = await context.newPage();
  const person = { name, page, console: [] };
  page.on('pageerror', (e) => person.console.push(`pageerror: ${e.message}`));
  const q = new URLSearchParams({ room, name, autojoin: '1' });
  await page.goto(`${url}/?${q}`);
  return person;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, timeout: '60', chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
    'shaped-chromium': '', 'shape-dev': '', 'shape-rate': '400kbit', 'climb-timeout': '90',
  }, ['url', 'room'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  // The server may listen on a namespace's address rather than loopback: let the camera work there.
  const flags = [...CHROMIUM_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${url}`];
  const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: flags });
  const shaped = args['shaped-chromium']
    ? await chromium.launch({ executablePath: args['shaped-chromium'], headless: true, args: flags })
    : null;
  const tc = (...a) => execFileSync('tc', a, { stdio: 'pipe' });
  const big = { width: 1280, height: 720 };
  const small = { width: 300, height: 200 };
  const summary = { ok: false, room: args.room };
  let people = [];
  try {
    people = [
      await open(browser, 'Alice', url, args.room, big),
      await open(browser, 'Bob', url, args.room, big),
      await open(browser, 'Carol', url, args.room, small),
    ];
    const [alice, bob, carol] = people;
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    // Only Alice's camera matters here: Bob and Carol stop theirs.
    await bob.page.click('#camera-button');
    await carol.page.click('#camera-button');

    // 1. Alice sends several layers of different sizes.
    const sent = await waitFor('Alice does not send simulcast layers', timeout, async () => {
      const s = await alice.page.evaluate(sentLayers);
      // Frames encoded so far: dynacast may already have switched off a layer nobody needs.
      const sending = Object.values(s).filter((l) => l.frames > 0);
      const top = Math.max(0, ...sending.map((l) => l.width));
      return { ok: sending.length >= 3 && top > 0, detail: s };
    });
    summary.alice_sends = sent.detail;
    const top = Math.max(...Object.values(sent.detail).map((l) => l.width));
    summary.top_width = top;

    const receiving = (p) => p.page.evaluate(receivedVideo).then((v) => v[alice.id] || { width: 0, frames: 0 });
    /** Waits until `p` decodes Alice at a width that `want` accepts, with frames advancing. */
    const decodes = async (p, what, want) => {
      let before = null;
      const r = await waitFor(`${p.name} does not decode ${what}`, timeout, async () => {
        const v = await receiving(p);
        const advancing = before !== null && v.frames > before.frames;
        if (before !== null && v.frames < before.frames) throw new Error(`${p.name}'s frame count went back`);
        before = v;
        return { ok: want(v.width) && advancing, detail: v };
      });
      return r.detail;
    };

    // 2. and 3.
    summary.bob = await decodes(bob, `the top layer (${top} wide)`, (w) => w === top);
    summary.carol_small = await decodes(carol, 'a smaller layer', (w) => w > 0 && w < top);
    // 4. Carol's window grows: her tile is big now, and she climbs.
    const framesBefore = (await receiving(carol)).frames;
    await carol.page.setViewportSize(big);
    const started = Date.now();
    summary.carol_big = await decodes(carol, 'the top layer after her window grew', (w) => w === top);
    summary.climb_ms = Date.now() - started;
    if (summary.carol_big.frames <= framesBefore) throw new Error('Carol decoded no frames across the switch');
    // 5. And back down.
    await carol.page.setViewportSize(small);
    summary.carol_small_again = await decodes(carol, 'a smaller layer after her window shrank', (w) => w > 0 && w < top);
    // 6. Dynacast: the top layer is wanted by nobody, then by Bob again.
    const topRid = Object.entries(sent.detail).find(([, l]) => l.width === top)[0];
    const topFrames = async () => (await alice.page.evaluate(sentLayers))[topRid] || { frames: 0 };
    await bob.page.setViewportSize(small);
    let last = null;
    summary.top_layer_off = (await waitFor(`Alice does not stop encoding layer ${topRid} that nobody receives`, timeout, async () => {
      const l = await topFrames();
      const stopped = l.active === false || (last !== null && l.frames === last.frames);
      last = l;
      return { ok: stopped, detail: l };
    })).detail;
    await bob.page.setViewportSize(big);
    summary.bob_end = await decodes(bob, 'the top layer again after his window grew', (w) => w === top);
    const back = await topFrames();
    if (!(back.frames > summary.top_layer_off.frames)) throw new Error(`Alice did not start layer ${topRid} again: ${JSON.stringify(back)}`);

    if (shaped) {
      // Four tiles now: a wider window keeps his tile of Alice above the middle layer's height.
      const dave = await open(shaped, 'Dave', url, args.room, { width: 1920, height: 1080 });
      people.push(dave);
      dave.id = await joined(dave.page, dave.name, timeout);
      await dave.page.click('#camera-button');
      // 7. Unshaped: the top layer.
      summary.dave_unshaped = await decodes(dave, 'the top layer before shaping', (w) => w === top);
      // Bob's tile shrank with a fourth participant in the grid: whatever it needs now, it keeps.
      summary.bob_with_dave = await decodes(bob, 'Alice with Dave in the room', (w) => w > 0);
      // 8. Shaped: a lower layer, still decoding; Bob unaffected.
      tc('qdisc', 'add', 'dev', args['shape-dev'], 'root', 'tbf', 'rate', args['shape-rate'], 'burst', '32kbit', 'latency', '300ms');
      let shapedAt = Date.now();
      summary.dave_shaped = await decodes(dave, `a lower layer with his link at ${args['shape-rate']}`, (w) => w > 0 && w < top);
      summary.drop_ms = Date.now() - shapedAt;
      // Frames keep coming at the lower layer (not one lucky frame before a freeze).
      await new Promise((r) => setTimeout(r, 3000));
      summary.dave_shaped_later = await decodes(dave, 'a lower layer, still decoding, while shaped', (w) => w > 0 && w < top);
      summary.bob_while_shaped = await decodes(bob, 'the same layer while Dave is shaped', (w) => w === summary.bob_with_dave.width);
      // 9. Lifted: back to the top.
      tc('qdisc', 'del', 'dev', args['shape-dev'], 'root');
      shapedAt = Date.now();
      const climb = Number(args['climb-timeout']);
      let before = null;
      const r = await waitFor('Dave does not climb back to the top layer', climb, async () => {
        const v = await receiving(dave);
        const ok = v.width === top && before !== null && v.frames > before.frames;
        before = v;
        return { ok, detail: v };
      });
      summary.dave_lifted = r.detail;
      summary.climb_back_ms = Date.now() - shapedAt;
    }
    summary.ok = true;
  } catch (e) {
    summary.error = e.message;
    summary.console = Object.fromEntries(people.map((p) => [p.name, p.console.slice(-10)]));
  } finally {
    await browser.close();
    if (shaped) await shaped.close();
  }
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
