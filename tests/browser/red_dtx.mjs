// Opus RED and DTX between headless Chromium and the server, and transcription of what arrives.
//
//   node red_dtx.mjs --url http://127.0.0.1:PORT --room ROOM --speech SPEECH.wav --silence SILENCE.wav
//                    [--chromium PATH] [--timeout 60] [--captions 3]
//
// Two browser processes: Alice's fake microphone plays SPEECH.wav, Carol's plays SILENCE.wav. The
// server answers their publish offers with RED first and `usedtx=1` on Opus. Asserts:
//   1. the answers they applied list RED first and carry `usedtx=1` on Opus (Chromium's getStats
//      names the Opus inside RED as the codec either way: that RED arrives, the server counts);
//   2. Carol, whose subscribe connection negotiated RED, decodes sound from Alice's audio (energy grows);
//   3. DTX: Carol's silent microphone sends far fewer packets per second than Alice's speaking one;
//   4. Alice turns transcription on and the transcription service's final captions of her speech
//      reach her page (`--captions` of them): the service, which does not take RED, got the Opus
//      inside it.
// Prints one JSON summary line on stdout (packet rates, codecs, captions with their times); exits 0
// on success, 1 with a message naming what failed.

import { joined, launchWithMicrophone, openMeeting, parseArgs, receivedAudio, runChecks, sleep, waitFor } from './lib.mjs';

const USAGE = 'usage: red_dtx.mjs --url URL --room ROOM --speech WAV --silence WAV [--chromium PATH] [--timeout S] [--captions N]';

/** Runs in the page: the microphone's outbound-rtp (codec, packets sent) and what the answer says of Opus. */
async function sentAudio() {
  const pc = window.samtal && window.samtal.publishPc;
  if (!pc) return null;
  const stats = await pc.getStats();
  let out = null;
  stats.forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'audio') {
      const codec = r.codecId && stats.get(r.codecId);
      out = { codec: codec ? codec.mimeType : null, packets: r.packetsSent };
    }
  });
  const answer = pc.remoteDescription ? pc.remoteDescription.sdp : '';
  const opus = /a=rtpmap:(\d+) opus\/48000/i.exec(answer);
  const red = /a=rtpmap:(\d+) red\/48000/i.exec(answer);
  const fmtp = opus && new RegExp(`a=fmtp:${opus[1]} ([^\\r\\n]*)`).exec(answer);
  const m = /m=audio \S+ \S+ (\d+)/.exec(answer);
  return { ...out, opusFmtp: fmtp ? fmtp[1] : null, redFirst: !!red && !!m && m[1] === red[1] };
}

/** Packets per second each page's microphone sends over `seconds`. */
async function packetRates(people, seconds) {
  const before = await Promise.all(people.map((p) => p.page.evaluate(sentAudio)));
  await sleep(seconds * 1000);
  const after = await Promise.all(people.map((p) => p.page.evaluate(sentAudio)));
  return Object.fromEntries(people.map((p, i) => [p.name, (after[i].packets - before[i].packets) / seconds]));
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, speech: null, silence: null, timeout: '60', captions: '3',
    chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room', 'speech', 'silence'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  const speaking = await launchWithMicrophone(args.chromium, args.speech);
  const silent = await launchWithMicrophone(args.chromium, args.silence);
  const summary = { ok: false, room: args.room };
  await runChecks(summary, [speaking, silent], async (people) => {
    people.push(await openMeeting(speaking, 'Alice', url, args.room), await openMeeting(silent, 'Carol', url, args.room));
    const [alice, carol] = people;
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    summary.alice = alice.id;

    // 1. RED and DTX asked for.
    for (const p of people) {
      const r = await waitFor(`${p.name} was not asked for RED, or sends nothing`, timeout, async () => {
        const s = await p.page.evaluate(sentAudio);
        return { ok: !!s && s.redFirst && s.packets > 0, detail: s };
      });
      summary[`${p.name}_sent`] = r.detail;
      if (!/usedtx=1/.test(r.detail.opusFmtp || '')) throw new Error(`${p.name}'s answer has no usedtx=1: ${r.detail.opusFmtp}`);
    }
    // 2. Carol hears Alice.
    const heard = await waitFor('Carol does not decode audio from Alice', timeout, async () => {
      const a = await carol.page.evaluate(receivedAudio);
      const from = a[alice.id];
      if (!from) return { ok: false, detail: a };
      await sleep(2000);
      const later = (await carol.page.evaluate(receivedAudio))[alice.id];
      return { ok: later.energy > from.energy && later.packets > from.packets + 50, detail: { from, later } };
    });
    summary.carol_received = heard.detail.later;
    const carolTakesRed = await carol.page.evaluate(() => / red\/48000/.test(window.samtal.subscribePc.localDescription.sdp));
    if (!carolTakesRed) throw new Error("Carol's subscribe answer has no RED: she would get plain Opus");
    // 3. DTX: silence costs a fraction of the packets.
    const rates = await packetRates(people, 5);
    summary.packets_per_second = rates;
    if (!(rates.Carol < 15 && rates.Alice > 30)) throw new Error(`no DTX to be seen in the packet rates: ${JSON.stringify(rates)}`);
    // 4. Transcription of the RED'd, DTX'd speech.
    await waitFor('Alice has no transcribe button', timeout, async () => ({
      ok: await alice.page.isVisible('#transcribe-button'), detail: null,
    }));
    await alice.page.click('#transcribe-button');
    const wanted = Number(args.captions);
    const captions = await waitFor(`fewer than ${wanted} final captions of Alice`, timeout, async () => {
      const t = await alice.page.evaluate(() => window.samtal.transcript);
      const hers = t.filter((c) => c.final && c.participant_id === alice.id);
      return { ok: hers.length >= wanted, detail: hers.map((c) => ({ utterance_id: c.utterance_id, start_ms: c.start_ms, end_ms: c.end_ms, text: c.text })) };
    });
    summary.captions = captions.detail;
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
