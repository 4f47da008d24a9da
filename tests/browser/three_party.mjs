// End-to-end check of the Samtal web client with three headless Chromium participants.
//
//   node three_party.mjs --url http://127.0.0.1:PORT --room ROOM [--chromium /usr/bin/chromium]
//                        [--timeout 60] [--screenshot FILE]
// (--chromium defaults to $SAMTAL_CHROMIUM, else /usr/bin/chromium)
//
// Opens the real page three times (Alice, Bob, Carol; ?autojoin=1) against a running server and
// asserts, by polling RTCPeerConnection stats until a deadline:
//   1. every participant decodes video and receives audio with energy (the fake mic's beep) from both
//      others, each track attributed to its sender by the msid stream id (= publisher's participant id);
//   2. when Alice shares her screen, Bob and Carol decode frames from a third video track of Alice's,
//      announced with source screen_share, and go on decoding her camera; when she stops, its tile
//      goes away; and all that again for a second share;
//   3. when Carol clicks Leave, her tile and roster entry disappear for Alice and Bob;
//   4. Dave, whose camera is refused, joins and shares his screen; Alice and Bob decode it.
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.
// `--timeout` is the deadline in seconds for each of those waits.

import { chromium } from 'playwright-core';
import { writeFileSync } from 'node:fs';
import {
  CHROMIUM_FLAGS, installCanvasScreen, parseArgs, receivedMedia, screenToShare, sleep, waitFor,
} from './lib.mjs';

const NAMES = ['Alice', 'Bob', 'Carol'];

const USAGE = 'usage: three_party.mjs --url URL --room ROOM [--chromium PATH] [--timeout S] [--screenshot FILE]';

function threePartyArgs(argv) {
  const args = parseArgs(argv, { chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium', timeout: 60, screenshot: null, url: null, room: null }, ['url', 'room'], USAGE);
  args.timeout = Number(args.timeout);
  args.url = args.url.replace(/\/+$/, '');
  return args;
}

async function main() {
  const args = threePartyArgs(process.argv.slice(2));
  const started = Date.now();
  const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: CHROMIUM_FLAGS });
  const people = [];
  const summary = { ok: false, url: args.url, room: args.room, screen_capture: null, participants: {} };
  try {
    for (const name of NAMES) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
      const page = await context.newPage();
      const person = { name, page, console: [] };
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') person.console.push(`${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => person.console.push(`pageerror: ${e.message}`));
      const q = new URLSearchParams({ room: args.room, name, autojoin: '1' });
      await page.goto(`${args.url}/?${q}`);
      people.push(person);
    }
    const byName = Object.fromEntries(people.map((p) => [p.name, p]));

    // Everyone joins.
    for (const p of people) {
      const r = await waitFor(`${p.name} did not join`, args.timeout, async () => {
        const st = await p.page.evaluate(() => ({
          state: window.samtal && window.samtal.state,
          id: window.samtal && window.samtal.participantId,
          notices: [...document.querySelectorAll('.notice span')].map((n) => n.textContent),
        }));
        return { ok: st.state === 'joined' && !!st.id, detail: st };
      });
      p.id = r.detail.id;
      summary.participants[p.name] = { id: p.id, received: {} };
    }

    // 1. Audio and video from both others, attributed by stream id.
    for (const p of people) {
      const others = people.filter((o) => o !== p);
      const r = await waitFor(`${p.name} does not receive audio+video from ${others.map((o) => o.name).join(' and ')}`, args.timeout, async () => {
        const media = await p.page.evaluate(receivedMedia);
        const missing = [];
        const figures = {};
        for (const o of others) {
          const video = media.find((m) => m.from === o.id && m.kind === 'video' && m.source === 'camera' && m.framesDecoded > 0);
          const audio = media.find((m) => m.from === o.id && m.kind === 'audio' && m.packetsReceived > 0 && m.totalAudioEnergy > 0);
          const wrong = media.find((m) => m.from === o.id && m.pageAttribution !== o.id);
          if (!video) missing.push(`decoded camera video from ${o.name}`);
          if (!audio) missing.push(`audio with energy from ${o.name}`);
          if (wrong) missing.push(`page attributes ${o.name}'s track ${wrong.trackId} to ${wrong.pageAttribution}`);
          figures[o.name] = {
            video_frames_decoded: video?.framesDecoded ?? 0,
            audio_packets_received: audio?.packetsReceived ?? 0,
            audio_energy: audio?.totalAudioEnergy ?? 0,
          };
        }
        return missing.length ? { ok: false, detail: { missing, media } } : { ok: true, detail: figures };
      });
      summary.participants[p.name].received = r.detail;
      const tiles = await p.page.locator('#grid .tile.camera[data-participant-id]').count();
      if (tiles !== 3) throw new Error(`${p.name} shows ${tiles} camera tiles, expected 3`);
    }

    // 2. Alice shares her screen. Real getDisplayMedia first; headless Chromium may have no screen to
    // capture, in which case the page's getDisplayMedia is replaced with a canvas captureStream().
    const alice = byName.Alice;
    const probe = await screenToShare(alice.page);
    summary.screen_capture = probe === 'ok' ? 'getDisplayMedia' : `canvas captureStream (getDisplayMedia failed headless: ${probe})`;
    // Twice: the second share reuses the section the first one left (track_active, no renegotiation).
    for (const round of [1, 2]) {
      await alice.page.click('#share-button');
      await waitFor('Alice did not start sharing', args.timeout, async () => ({ ok: await alice.page.evaluate(() => window.samtal.sharing), detail: 'window.samtal.sharing is false' }));
      for (const p of people.filter((o) => o !== alice)) {
        const r = await waitFor(`${p.name} does not decode Alice's screen share (share ${round})`, args.timeout, async () => {
          const media = await p.page.evaluate(receivedMedia);
          const fromAlice = media.filter((m) => m.from === alice.id && m.kind === 'video');
          const screen = fromAlice.find((m) => m.source === 'screen_share' && m.framesDecoded > 0);
          const tile = await p.page.locator(`#grid .tile[data-participant-id="${alice.id}"][data-source="screen_share"]`).count();
          const ok = fromAlice.length >= 2 && !!screen && tile === 1;
          return { ok, detail: ok ? screen.framesDecoded : { video_tracks_from_alice: fromAlice, screen_tiles: tile } };
        });
        // Alice's camera goes on while she shares (a renegotiation used to freeze its simulcast layers).
        const camera = await waitFor(`${p.name} stops decoding Alice's camera while she shares (share ${round})`, args.timeout, async () => {
          const frames = async () => (await p.page.evaluate(receivedMedia))
            .filter((m) => m.from === alice.id && m.source === 'camera').reduce((n, m) => n + m.framesDecoded, 0);
          const before = await frames();
          await sleep(2000);
          const f = (await frames()) - before;
          return { ok: f >= 10, detail: f };
        });
        const seen = summary.participants[p.name].received.Alice;
        seen[`screen_frames_decoded_${round}`] = r.detail;
        seen[`camera_frames_in_2s_while_sharing_${round}`] = camera.detail;
      }
      if (args.screenshot && round === 1) writeFileSync(args.screenshot, await byName.Bob.page.screenshot());

      await alice.page.click('#share-button'); // stop sharing
      for (const p of people.filter((o) => o !== alice)) {
        await waitFor(`${p.name} still shows Alice's screen share after she stopped (share ${round})`, args.timeout, async () => {
          const tile = await p.page.locator(`#grid .tile[data-participant-id="${alice.id}"][data-source="screen_share"]`).count();
          return { ok: tile === 0, detail: `${tile} screen tile(s)` };
        });
      }
    }

    // 3. Carol leaves.
    const carol = byName.Carol;
    await carol.page.click('#leave-button');
    for (const p of people.filter((o) => o !== carol)) {
      await waitFor(`${p.name} still shows Carol after she left`, args.timeout, async () => {
        const tiles = await p.page.locator(`#grid [data-participant-id="${carol.id}"]`).count();
        const listed = await p.page.evaluate((id) => window.samtal.participants.has(id), carol.id);
        return { ok: tiles === 0 && !listed, detail: { tiles, in_participants: listed } };
      });
    }
    const carolState = await carol.page.evaluate(() => window.samtal.state);
    if (carolState !== 'left') throw new Error(`Carol's page is in state ${carolState} after Leave, expected left`);

    // 4. Dave joins with a microphone only (his camera is refused) and shares his screen: without a
    // camera the page negotiates the share section when sharing starts. Alice and Bob decode it.
    const daveContext = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    const dave = { name: 'Dave', page: await daveContext.newPage(), console: [] };
    await dave.page.addInitScript(() => {
      const md = navigator.mediaDevices;
      const open = md.getUserMedia.bind(md);
      md.getUserMedia = (c) => (c && c.video ? Promise.reject(new DOMException('no camera here', 'NotFoundError')) : open(c));
    });
    await dave.page.goto(`${args.url}/?${new URLSearchParams({ room: args.room, name: 'Dave', autojoin: '1' })}`);
    const daveJoined = await waitFor('Dave did not join', args.timeout, async () => {
      const st = await dave.page.evaluate(() => ({ state: window.samtal?.state, id: window.samtal?.participantId, video_senders: window.samtal?.publishPc?.getTransceivers().filter((t) => t.sender.track?.kind === 'video' || t.receiver.track?.kind === 'video').length ?? null }));
      return { ok: st.state === 'joined' && !!st.id, detail: st };
    });
    dave.id = daveJoined.detail.id;
    if (daveJoined.detail.video_senders !== 0) throw new Error(`Dave's publish connection has ${daveJoined.detail.video_senders} video section(s) before sharing: no camera, so none is negotiated ahead`);
    if (probe !== 'ok') await dave.page.evaluate(installCanvasScreen);
    await dave.page.click('#share-button');
    for (const p of [alice, byName.Bob]) {
      const r = await waitFor(`${p.name} does not decode the screen Dave shares without a camera`, args.timeout, async () => {
        const screen = (await p.page.evaluate(receivedMedia)).find((m) => m.from === dave.id && m.source === 'screen_share' && m.framesDecoded > 0);
        return { ok: !!screen, detail: screen ? screen.framesDecoded : 'no decoded screen share from Dave' };
      });
      summary.participants[p.name].received.Dave = { screen_frames_decoded: r.detail };
    }
    await daveContext.close();

    summary.ok = true;
    summary.elapsed_s = (Date.now() - started) / 1000;
    console.log(JSON.stringify(summary));
  } catch (e) {
    summary.error = e.message;
    summary.console = Object.fromEntries(people.map((p) => [p.name, p.console.slice(-10)]));
    if (args.screenshot && people[1]) await people[1].page.screenshot({ path: args.screenshot }).catch(() => {});
    console.log(JSON.stringify(summary));
    console.error(`three_party: FAILED: ${e.message}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`three_party: ${e.message}`);
  process.exit(2);
});
