// Audio-only mode and the transcription language picker, in two headless Chromium pages.
//
//   node audio_only.mjs --url http://127.0.0.1:PORT --room ROOM [--chromium PATH] [--timeout 60]
//
// The server must have a transcription worker connected (the test connects one), so that the page
// offers transcription. Asserts:
//   1. Alice (who may switch transcription: an open server) picks Swedish and starts transcription:
//      Bob's page learns the meeting is transcribed in Swedish; then she picks English while it runs,
//      and Bob's page learns that;
//   2. Bob turns on audio only: his camera goes off (Alice's page shows it off), he decodes no more
//      frames of Alice's camera while her audio still arrives;
//   3. Bob turns audio only off: he decodes Alice's camera again;
//   4. Alice stops transcription: her page shows the meeting's summary (a decision the test stored
//      in the meeting) at the top of the transcript panel, as the server sends it to those who may switch
//      transcription (everyone here: an open server).
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { chromium } from 'playwright-core';
import {
  CHROMIUM_FLAGS, decodes, framesFrom, joined, openMeeting, parseArgs, receivedAudio, runChecks, sleep, waitFor,
} from './lib.mjs';

const USAGE = 'usage: audio_only.mjs --url URL --room ROOM [--chromium PATH] [--timeout S]';

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, timeout: '60', chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: CHROMIUM_FLAGS });
  const summary = { ok: false, room: args.room };
  await runChecks(summary, [browser], async (people) => {
    const alice = await openMeeting(browser, 'Alice', url, args.room);
    const bob = await openMeeting(browser, 'Bob', url, args.room);
    people.push(alice, bob);
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    const language = () => bob.page.evaluate(() => window.samtal.transcription);

    // 1. The language picker.
    await waitFor('Alice is offered no transcription language', timeout, async () => {
      const shown = await alice.page.locator('#transcription-language-field').isVisible();
      return { ok: shown, detail: shown };
    });
    await alice.page.selectOption('#transcription-language', 'sv');
    await alice.page.click('#transcribe-button');
    summary.swedish = (await waitFor("Bob's page does not learn of Swedish transcription", timeout, async () => {
      const s = await language();
      return { ok: s.enabled && s.language === 'sv', detail: s };
    })).detail;
    await alice.page.selectOption('#transcription-language', 'en');
    summary.english = (await waitFor("Bob's page does not learn that the language changed to English", timeout, async () => {
      const s = await language();
      return { ok: s.enabled && s.language === 'en' && s.meeting_id === summary.swedish.meeting_id, detail: s };
    })).detail;

    // 2. Audio only.
    summary.frames_before = await decodes(bob, alice.id, timeout);
    await bob.page.click('#audio-only-button');
    await waitFor("Alice's page does not show Bob's camera off", timeout, async () => {
      const off = await alice.page.evaluate((id) => {
        const p = window.samtal.participants.get(id);
        return !!p && [...p.tracks.values()].some((t) => t.source === 'camera' && t.muted);
      }, bob.id);
      return { ok: off, detail: off };
    });
    await sleep(1500); // what was on its way arrives
    const audioBefore = (await bob.page.evaluate(receivedAudio))[alice.id]?.packets || 0;
    summary.frames_audio_only = await framesFrom(bob, alice.id, 3000);
    const audioAfter = (await bob.page.evaluate(receivedAudio))[alice.id]?.packets || 0;
    summary.audio_packets_audio_only = audioAfter - audioBefore;
    if (summary.frames_audio_only !== 0) throw new Error(`Bob decoded ${summary.frames_audio_only} frames of Alice's camera in audio only`);
    if (summary.audio_packets_audio_only < 50) throw new Error(`Bob's audio from Alice stalled in audio only: ${summary.audio_packets_audio_only} packets in 3 s`);
    const pressed = await bob.page.getAttribute('#audio-only-button', 'aria-pressed');
    if (pressed !== 'true') throw new Error(`the audio-only button is not shown pressed: ${pressed}`);

    // 3. Video again.
    await bob.page.click('#audio-only-button');
    summary.frames_after = await decodes(bob, alice.id, timeout);

    // 4. Alice stops transcription: the summary the server stored shows at the top of her transcript
    // panel (the test stored an utterance with a decision in the meeting).
    await alice.page.click('#transcribe-button');
    summary.meeting_summary = (await waitFor("Alice's page does not show the meeting summary", timeout, async () => {
      const shown = await alice.page.evaluate(() => ({
        visible: !document.getElementById('meeting-summary').hidden && !document.getElementById('transcript-panel').hidden,
        decisions: [...document.querySelectorAll('#meeting-summary-body [data-part="decisions"] li')].map((li) => li.textContent),
      }));
      return { ok: shown.visible && shown.decisions.some((d) => d.includes('beslutar')), detail: shown };
    })).detail;
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
