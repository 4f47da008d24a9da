// A participant's network address changes mid-meeting (as when a laptop moves from Wi-Fi to a
// docking station): both its peer connections restart ICE, it stays in the meeting, and media
// flows again.
//
//   node address_change.mjs --url http://HOST:PORT --room ROOM --moved-chromium PATH --change PATH
//                           --new-ip IP [--chromium PATH] [--timeout 60]
//
// Alice runs in an ordinary headless Chromium; Bob in one started through --moved-chromium (a
// wrapper that runs Chromium in a network namespace). --change is a script that takes Bob's address
// away and gives him --new-ip. Asserts:
//   1. both join, each decodes the other's camera and hears the other;
//   2. after the change both of Bob's connections went through an ICE restart from the new address:
//      his publish offer and the server's subscribe offer carry new ICE credentials (a=ice-ufrag),
//      both connections are connected again, his publish connection's local candidate is the new
//      address;
//   3. Bob decodes Alice's camera again (the server's subscribe restart), Alice hears Bob again (his
//      publish restart) and decodes his camera again (his page moves the simulcast camera to a fresh
//      transceiver in the restart's offer: the server's WebRTC stack forgets, at every renegotiation,
//      which SSRC carries which simulcast layer, and Chromium names the layer only on a stream's
//      first packets);
//   4. Bob kept his participant id and was in Alice's participant list throughout (without the
//      restarts his connections would fail 25 s after the change and he would be removed).
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, decodes, joined, openMeeting, parseArgs, receivedAudio, runChecks, sleep, staysListed, waitFor } from './lib.mjs';

const USAGE = 'usage: address_change.mjs --url URL --room ROOM --moved-chromium PATH --change PATH --new-ip IP [--chromium PATH] [--timeout S]';

/** Runs in a page: the ICE ufrags of both connections' descriptions and the publish connection's local address. */
async function iceState() {
  const m = window.samtal;
  const ufrag = (d) => (d && (d.sdp.match(/^a=ice-ufrag:(\S+)/m) || [])[1]) || null;
  let localAddress = null;
  if (m.publishPc) {
    const stats = await m.publishPc.getStats();
    stats.forEach((r) => {
      if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
      const pair = stats.get(r.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      if (local) localAddress = local.address || local.ip || null;
    });
  }
  return {
    id: m.participantId,
    state: m.state,
    publishLocal: ufrag(m.publishPc && m.publishPc.localDescription),
    subscribeRemote: ufrag(m.subscribePc && m.subscribePc.remoteDescription),
    publishIce: m.publishPc && m.publishPc.iceConnectionState,
    subscribeIce: m.subscribePc && m.subscribePc.iceConnectionState,
    localAddress,
  };
}

/** Runs in a page: video RTP counters of both connections (for failure messages). */
async function rtpCounters() {
  const m = window.samtal;
  const out = { inbound: [], outbound: [] };
  for (const [pc, list, type] of [[m.subscribePc, out.inbound, 'inbound-rtp'], [m.publishPc, out.outbound, 'outbound-rtp']]) {
    if (!pc) continue;
    (await pc.getStats()).forEach((r) => {
      if (r.type === type && r.kind === 'video') {
        list.push({ rid: r.rid, packets: r.packetsReceived ?? r.packetsSent, frames: r.framesDecoded ?? r.framesEncoded, keyframes: r.keyFramesDecoded ?? r.keyFramesEncoded, pli: r.pliCount, active: r.active });
      }
    });
  }
  return out;
}

/** For a failure message: both sides' RTP counters. */
const counters = (viewer, sender) => async () => ({
  viewer: await viewer.page.evaluate(rtpCounters),
  sender: await sender.page.evaluate(rtpCounters),
});

/** Audio packets `viewer` receives from `id` over 2 s. */
async function audioFrom(viewer, id) {
  const before = (await viewer.page.evaluate(receivedAudio))[id]?.packets || 0;
  await sleep(2000);
  return ((await viewer.page.evaluate(receivedAudio))[id]?.packets || 0) - before;
}

async function hears(viewer, id, timeout) {
  return (await waitFor(`${viewer.name} does not hear ${id}`, timeout, async () => {
    const n = await audioFrom(viewer, id);
    return { ok: n >= 25, detail: n };
  })).detail;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, 'moved-chromium': null, change: null, 'new-ip': null, timeout: '60',
    chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room', 'moved-chromium', 'change', 'new-ip'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  const flags = [...CHROMIUM_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${url}`];
  const direct = await chromium.launch({ executablePath: args.chromium, headless: true, args: flags });
  const moved = await chromium.launch({ executablePath: args['moved-chromium'], headless: true, args: flags });
  const summary = { ok: false, room: args.room };
  await runChecks(summary, [direct, moved], async (people) => {
    const alice = await openMeeting(direct, 'Alice', url, args.room);
    const bob = await openMeeting(moved, 'Bob', url, args.room);
    people.push(alice, bob);
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    await decodes(alice, bob.id, timeout, counters(alice, bob));
    await decodes(bob, alice.id, timeout, counters(bob, alice));
    await hears(alice, bob.id, timeout);
    const before = await bob.page.evaluate(iceState);
    summary.before = before;
    await staysListed(alice, bob.id, "Bob left Alice's participant list while his address changed", async () => {
      execFileSync(args.change);
      const changedAt = Date.now();
      const after = await waitFor("Bob's connections do not restart ICE from his new address", timeout, async () => {
        const s = await bob.page.evaluate(iceState);
        const ok = s.publishLocal !== before.publishLocal && s.subscribeRemote !== before.subscribeRemote &&
          s.localAddress === args['new-ip'] && s.publishIce === 'connected' &&
          ['connected', 'completed'].includes(s.subscribeIce);
        return { ok, detail: s };
      });
      summary.restarted_after_ms = Date.now() - changedAt;
      summary.after = after.detail;
      summary.bob_video_from_alice = await decodes(bob, alice.id, timeout, counters(bob, alice));
      summary.alice_audio_from_bob = await hears(alice, bob.id, timeout);
      summary.alice_video_from_bob = await decodes(alice, bob.id, timeout, counters(alice, bob));
      summary.media_back_after_ms = Date.now() - changedAt;
      if (after.detail.id !== bob.id) throw new Error(`Bob's participant id changed: ${bob.id} -> ${after.detail.id}`);
    });
    summary.present_throughout = true;
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
