// Reachability: a participant on a network that drops all UDP meets one on an open network, over the
// server's ICE-TCP candidate or through a TURN server.
//
//   node reachability.mjs --url http://HOST:PORT --room ROOM --blocked-chromium PATH
//                         [--bob-path host-tcp|relay-tcp|relay-tls] [--turn-probes JSON]
//                         [--chromium PATH] [--timeout 60]
//
// Alice runs in an ordinary headless Chromium; Bob in one started through --blocked-chromium (a
// wrapper that runs Chromium in a network namespace whose UDP is dropped by nftables). With a
// `relay-*` path Bob joins with `relay=1` (iceTransportPolicy 'relay': only through the TURN server
// the server hands out in `joined`). Asserts:
//   1. both join;
//   2. Bob decodes Alice's camera and receives her microphone with sound in it, and Alice the same of
//      Bob's: media flows both ways;
//   3. both of Bob's peer connections use the expected path: the server's passive TCP candidate
//      (host-tcp), or a relay candidate allocated over TCP (relay-tcp) or TLS (relay-tls); Alice's
//      use UDP;
//   4. each of --turn-probes ([{name, ice_servers, expect: "relay" | <TURN error code>}]) gathered in
//      Bob's page gives relay candidates, or none and that error (wrong or expired credentials: 401).
// coturn's certificate in the test is self-signed: Chromium runs with --ignore-certificate-errors,
// which stands in for a certificate from a CA the clients trust.
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { chromium } from 'playwright-core';
import {
  CHROMIUM_FLAGS, gatherRelay, joined, openMeeting, parseArgs, receivedAudio, receivedVideo, runChecks, selectedPaths, sleep, waitFor,
} from './lib.mjs';

const USAGE = 'usage: reachability.mjs --url URL --room ROOM --blocked-chromium PATH [--bob-path host-tcp|relay-tcp|relay-tls] '
  + '[--turn-probes JSON] [--chromium PATH] [--timeout S]';

/** `who` decodes video frames from `from` and receives audio with energy in it, both growing. */
async function receives(who, from, timeout) {
  const r = await waitFor(`${who.name} does not receive ${from.name}'s audio and video`, timeout, async () => {
    const before = { video: await who.page.evaluate(receivedVideo), audio: await who.page.evaluate(receivedAudio) };
    await sleep(2000);
    const after = { video: await who.page.evaluate(receivedVideo), audio: await who.page.evaluate(receivedAudio) };
    const frames = (after.video[from.id]?.frames || 0) - (before.video[from.id]?.frames || 0);
    const packets = (after.audio[from.id]?.packets || 0) - (before.audio[from.id]?.packets || 0);
    const energy = (after.audio[from.id]?.energy || 0) - (before.audio[from.id]?.energy || 0);
    return { ok: frames >= 10 && packets >= 25 && energy > 0, detail: { frames, packets, energy } };
  });
  return r.detail;
}

/** Whether a selected local candidate is the path `want` names. */
function isPath(path, want) {
  if (!path) return false;
  switch (want) {
    case 'udp': return path.protocol === 'udp' && path.type !== 'relay';
    // Chromium's active TCP candidate shows as peer-reflexive once it connected (its real port).
    case 'host-tcp': return path.type !== 'relay' && path.protocol === 'tcp';
    case 'relay-tcp': return path.type === 'relay' && path.relayProtocol === 'tcp';
    case 'relay-tls': return path.type === 'relay' && path.relayProtocol === 'tls';
    default: throw new Error(`unknown path ${want}`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, 'blocked-chromium': null, 'bob-path': 'host-tcp', 'turn-probes': '[]', timeout: '60',
    chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium',
  }, ['url', 'room', 'blocked-chromium'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  const bobPath = args['bob-path'];
  const probes = JSON.parse(args['turn-probes']);
  // The page is served from the link's address, not localhost: let it use camera and microphone.
  const flags = [...CHROMIUM_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${url}`, '--ignore-certificate-errors'];
  const direct = await chromium.launch({ executablePath: args.chromium, headless: true, args: flags });
  const blocked = await chromium.launch({ executablePath: args['blocked-chromium'], headless: true, args: flags });
  const summary = { ok: false, room: args.room, bob_path: bobPath };
  await runChecks(summary, [direct, blocked], async (people) => {
    const extra = bobPath.startsWith('relay') ? { relay: '1' } : {};
    people.push(await openMeeting(direct, 'Alice', url, args.room), await openMeeting(blocked, 'Bob', url, args.room, { extra }));
    const [alice, bob] = people;
    for (const p of people) p.id = await joined(p.page, p.name, timeout);
    summary.bob_receives = await receives(bob, alice, timeout);
    summary.alice_receives = await receives(alice, bob, timeout);
    for (const [p, want] of [[bob, bobPath], [alice, 'udp']]) {
      const r = await waitFor(`${p.name}'s connections do not both go ${want}`, timeout, async () => {
        const s = await p.page.evaluate(selectedPaths);
        return { ok: isPath(s.publish, want) && isPath(s.subscribe, want), detail: s };
      });
      summary[`${p.name}_paths`] = r.detail;
    }
    summary.probes = {};
    for (const probe of probes) {
      const got = await bob.page.evaluate(gatherRelay, probe.ice_servers);
      summary.probes[probe.name] = got;
      const ok = probe.expect === 'relay'
        ? got.relay > 0
        : got.relay === 0 && got.errors.some((e) => e.code === probe.expect);
      if (!ok) throw new Error(`TURN probe ${probe.name}: expected ${probe.expect}, got ${JSON.stringify(got)}`);
    }
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
