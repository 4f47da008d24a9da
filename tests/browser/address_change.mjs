// A participant's network address changes mid-meeting (as when a laptop moves from Wi-Fi to a
// docking station): both its peer connections restart ICE and media flows again, without a rejoin.
//
//   node address_change.mjs --url http://HOST:PORT --room ROOM --moved-chromium PATH --change PATH
//                           --new-ip IP [--chromium PATH] [--timeout 60]
//
// Alice runs in an ordinary headless Chromium; Bob in one started through --moved-chromium (a
// wrapper that runs Chromium in a network namespace). --change is a script that takes Bob's address
// away and gives him --new-ip. Asserts:
//   1. both join and each decodes the other's camera;
//   2. after the change, each decodes the other's camera again;
//   3. both of Bob's connections went through an ICE restart: his publish offer and the server's
//      subscribe offer carry new ICE credentials (a=ice-ufrag), and his publish connection's local
//      candidate is the new address;
//   4. Bob kept his participant id and was in Alice's participant list throughout.
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, joined, openMeeting, parseArgs, receivedVideo, runChecks, sleep, waitFor } from './lib.mjs';

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

async function framesFrom(viewer, id) {
  const before = (await viewer.page.evaluate(receivedVideo))[id]?.frames || 0;
  await sleep(2000);
  return ((await viewer.page.evaluate(receivedVideo))[id]?.frames || 0) - before;
}

async function decodes(viewer, id, timeout) {
  return (await waitFor(`${viewer.name} does not decode ${id}'s camera`, timeout, async () => {
    const f = await framesFrom(viewer, id);
    return { ok: f >= 10, detail: f };
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
  let present = true;
  await runChecks(summary, [direct, moved], async (people) => {
    const alice = await openMeeting(direct, 'Alice', url, args.room);
    const bob = await openMeeting(moved, 'Bob', url, args.room);
    people.push(alice, bob);
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    await decodes(alice, bob.id, timeout);
    await decodes(bob, alice.id, timeout);
    const before = await bob.page.evaluate(iceState);
    summary.before = before;
    const watch = setInterval(async () => {
      try {
        const ids = await alice.page.evaluate(() => [...window.samtal.participants.keys()]);
        if (!ids.includes(bob.id)) present = false;
      } catch { /* the page is closing */ }
    }, 250);
    try {
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
      summary.alice_from_bob = await decodes(alice, bob.id, timeout);
      summary.bob_from_alice = await decodes(bob, alice.id, timeout);
      summary.media_back_after_ms = Date.now() - changedAt;
      if (after.detail.id !== bob.id) throw new Error(`Bob's participant id changed: ${bob.id} -> ${after.detail.id}`);
    } finally {
      clearInterval(watch);
    }
    if (!present) throw new Error("Bob left Alice's participant list while his address changed");
    summary.present_throughout = true;
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
