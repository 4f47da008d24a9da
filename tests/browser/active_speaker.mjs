// The server's dominant-speaker decision, seen in three headless Chromium participants.
//
//   node active_speaker.mjs --url http://127.0.0.1:PORT --room ROOM --speech SPEECH.wav --silence SILENCE.wav
//                           [--chromium PATH] [--timeout 60]
//
// Two browser processes: one whose fake microphone plays SPEECH.wav (Alice, and Bob who joins muted),
// one whose fake microphone plays SILENCE.wav (Carol). Chromium puts the RFC 6464 audio level of what
// it captures on every audio packet; the server decides from those levels. Asserts, in every page:
//   1. the room's dominant speaker becomes Alice (window.samtal.dominantSpeaker, and exactly one tile
//      marked `dominant`, hers);
//   2. when Alice mutes and Bob unmutes, it becomes Bob;
//   3. Carol (silent throughout) is never announced;
//   4. with the server's last-N at 1, Carol decodes frames only from the dominant speaker's camera:
//      Alice's, then Bob's (her other subscribed camera stops), and her page shows only that one.
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { joined, launchWithMicrophone, parseArgs, receivedVideo, waitFor } from './lib.mjs';

const USAGE = 'usage: active_speaker.mjs --url URL --room ROOM --speech WAV --silence WAV [--chromium PATH] [--timeout S]';

/** Runs in the page: records every dominant speaker the page shows, as it changes. */
function recordSpeakers() {
  window.__speakers = [];
  setInterval(() => {
    const s = window.samtal;
    const now = s && s.dominantSpeaker;
    const h = window.__speakers;
    if (now && h[h.length - 1] !== now) h.push(now);
  }, 50);
}

/** Runs in the page: whose cameras the server forwards and the page shows. */
function shown() {
  return {
    forwarded: window.samtal.forwardedVideo ? [...window.samtal.forwardedVideo] : null,
    showing: [...document.querySelectorAll('.tile.camera.has-video')].map((t) => t.dataset.participantId),
  };
}

/** Frames decoded per publisher (camera video only), and what the page shows. */
async function framesByPublisher(page) {
  const video = await page.evaluate(receivedVideo);
  const frames = Object.fromEntries(Object.entries(video).map(([id, v]) => [id, v.frames]));
  return { frames, ...(await page.evaluate(shown)) };
}

/** Frames Carol decodes from each of `a` and `b` over `seconds`. */
async function framesOver(page, seconds, a, b) {
  const before = await framesByPublisher(page);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = await framesByPublisher(page);
  const grew = (id) => (after.frames[id] || 0) - (before.frames[id] || 0);
  return { [a]: grew(a), [b]: grew(b), forwarded: after.forwarded, showing: after.showing };
}

/** Runs in the page: who the page says holds the floor, and which tiles are marked. */
function shownSpeaker() {
  const s = window.samtal;
  return {
    dominant: s ? s.dominantSpeaker : null,
    marked: [...document.querySelectorAll('.tile.dominant')].map((t) => t.dataset.participantId),
    history: window.__speakers || [],
  };
}

async function open(browser, name, url, room, extra) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  const person = { name, page, console: [] };
  page.on('pageerror', (e) => person.console.push(`pageerror: ${e.message}`));
  await page.addInitScript(recordSpeakers);
  const q = new URLSearchParams({ room, name, autojoin: '1', ...extra });
  await page.goto(`${url}/?${q}`);
  return person;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, speech: null, silence: null, timeout: '60',
    chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room', 'speech', 'silence'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  const speaking = await launchWithMicrophone(args.chromium, args.speech);
  const silent = await launchWithMicrophone(args.chromium, args.silence);
  const summary = { ok: false, room: args.room, participants: {} };
  let people = [];
  try {
    people = [
      await open(speaking, 'Alice', url, args.room, {}),
      await open(speaking, 'Bob', url, args.room, { audio_muted: '1' }),
      await open(silent, 'Carol', url, args.room, {}),
    ];
    const [alice, bob, carol] = people;
    for (const p of people) {
      p.id = await joined(p.page, p.name, timeout);
      summary.participants[p.name] = p.id;
    }

    const everyoneShows = async (who, what) => {
      const started = Date.now();
      for (const p of people) {
        await waitFor(`${p.name} does not show ${who.name} as ${what}`, timeout, async () => {
          const s = await p.page.evaluate(shownSpeaker);
          return { ok: s.dominant === who.id && s.marked.length === 1 && s.marked[0] === who.id, detail: s };
        });
      }
      return Date.now() - started;
    };

    /** Carol decodes the dominant speaker's camera and not the other's, and shows only that one. */
    const carolWatches = async (speaker, other) => {
      const r = await waitFor(`Carol does not decode only ${speaker.name}'s camera`, timeout, async () => {
        const f = await framesOver(carol.page, 2, speaker.id, other.id);
        const mine = (id) => f.showing.filter((s) => s !== carol.id).includes(id);
        return { ok: f[speaker.id] >= 10 && f[other.id] <= 1 && mine(speaker.id) && !mine(other.id), detail: f };
      });
      return r.detail;
    };

    // 1. Alice speaks (Bob is muted, Carol's microphone is silent).
    summary.alice_ms = await everyoneShows(alice, 'the dominant speaker');
    summary.carol_frames_alice_speaking = await carolWatches(alice, bob);
    // 2. Alice mutes, Bob unmutes: the floor moves to Bob.
    await alice.page.click('#mic-button');
    await bob.page.click('#mic-button');
    summary.bob_ms = await everyoneShows(bob, 'the dominant speaker after Alice muted and he unmuted');
    summary.carol_frames_bob_speaking = await carolWatches(bob, alice);
    // 3. Carol was never announced anywhere.
    for (const p of people) {
      const { history } = await p.page.evaluate(shownSpeaker);
      summary.participants[`${p.name}_saw`] = history;
      if (history.includes(carol.id)) throw new Error(`${p.name} was shown the silent Carol as speaker: ${JSON.stringify(history)}`);
      if (history[history.length - 1] !== bob.id) throw new Error(`${p.name} ended with ${history[history.length - 1]}, not Bob`);
    }
    summary.ok = true;
  } catch (e) {
    summary.error = e.message;
    summary.console = Object.fromEntries(people.map((p) => [p.name, p.console.slice(-10)]));
  } finally {
    await speaking.close();
    await silent.close();
  }
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
