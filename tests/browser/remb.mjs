// Layer choice toward a subscriber that reports its own estimate (REMB), with aiortc as that subscriber.
//
//   node remb.mjs --url http://HOST:PORT --room ROOM --peer AIORTC_PEER.PY --python PYTHON
//                 --netns NS --inner-ip ADDR --shape-dev DEV [--shape-rate 400kbit]
//                 [--chromium PATH] [--timeout 60] [--climb-timeout 120]
//
// Alice publishes her (fake) camera from headless Chromium as three simulcast layers. Dave is aiortc
// (an independent WebRTC stack that does no transport-wide congestion feedback: it estimates its
// downlink itself from abs-send-time and reports it by REMB), run inside the network namespace NS
// whose link to the server is the veth DEV on this side. Asserts, from the frames Dave decodes:
//   1. unshaped, once the server allocates on his own estimate, he decodes Alice's top layer;
//   2. with his downlink shaped by `tc ... tbf rate --shape-rate`, he decodes a lower layer and
//      frames keep decoding (for 10 s more, never the top layer);
//   3. with the limit lifted, he climbs back to the top layer (the time it took is in the summary).
// Prints one JSON summary line on stdout; exits 0 on success, 1 with a message naming what failed.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, joined, openMeeting, parseArgs, runChecks, waitFor } from './lib.mjs';

const USAGE = 'usage: remb.mjs --url URL --room ROOM --peer PATH --python PATH --netns NS --inner-ip ADDR ' +
  '--shape-dev DEV [--shape-rate 400kbit] [--chromium PATH] [--timeout S] [--climb-timeout S]';

/** Starts the aiortc peer inside the namespace; `latest()` is its last progress line, `seconds(n)` its last n. */
function startDave(args, url) {
  const ws = url.replace(/^http/, 'ws') + '/ws';
  const child = spawn('ip', [
    'netns', 'exec', args.netns, args.python, args.peer, '--ws', ws, '--room', args.room, '--name', 'Dave',
    '--host', args['inner-ip'], '--video-progress', '--duration', '600',
    ...(process.env.SAMTAL_REMB_DEBUG ? ['-v'] : []),
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (process.env.SAMTAL_REMB_DEBUG) child.stderr.pipe(fs.createWriteStream(process.env.SAMTAL_REMB_DEBUG));
  const lines = [];
  const stderr = [];
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    try {
      const m = JSON.parse(l);
      if (m.progress) lines.push(m.progress);
    } catch { /* not ours */ }
  });
  readline.createInterface({ input: child.stderr }).on('line', (l) => { stderr.push(l); if (stderr.length > 20) stderr.shift(); });
  let exited = null;
  child.on('exit', (code) => { exited = code; });
  return {
    seconds: (n) => {
      if (exited !== null) throw new Error(`aiortc exited with ${exited}: ${stderr.join(' | ')}`);
      return lines.slice(-n);
    },
    stop: () => child.kill('SIGTERM'),
    stderr,
  };
}

/** Waits until Dave's last `n` seconds all decoded frames at a width `want` accepts. */
async function decodes(dave, what, timeout, n, want) {
  const r = await waitFor(`Dave (aiortc) does not decode ${what}`, timeout, async () => {
    const last = dave.seconds(n);
    const ok = last.length === n && last.every((s) => s.frames > 0 && want(s.width));
    return { ok, detail: last };
  });
  return r.detail.at(-1);
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: null, room: null, peer: null, python: null, netns: null, 'inner-ip': null, 'shape-dev': null,
    'shape-rate': '400kbit', chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium', timeout: '60',
    'climb-timeout': '120',
  }, ['url', 'room', 'peer', 'python', 'netns', 'inner-ip', 'shape-dev'], USAGE);
  const timeout = Number(args.timeout);
  const url = args.url.replace(/\/+$/, '');
  const flags = [...CHROMIUM_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${url}`];
  const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: flags });
  const tc = (...a) => execFileSync('tc', a, { stdio: 'pipe' });
  const summary = { ok: false, room: args.room };
  let dave = null;
  let shaped = false;
  // runChecks exits the process when done: the body cleans up after itself.
  await runChecks(summary, [browser], async (people) => {
    try {
      const alice = await openMeeting(browser, 'Alice', url, args.room, { context: { viewport: { width: 1280, height: 720 } } });
      people.push(alice);
      alice.id = await joined(alice.page, 'Alice', timeout);
      dave = startDave(args, url);
      // 1. Unshaped: the top layer (the camera's 1280 x 720), 3 s in a row, on Dave's own estimate:
      //    until his first REMB the server has none and sends everything, then it starts low and
      //    climbs, which must not be mistaken for the shaping's effect.
      await waitFor('the server never had an estimate of Dave\'s downlink', timeout, async () => {
        const text = await (await fetch(`${url}/metrics`)).text();
        const m = text.match(/^samtal_estimated_subscribers (\d+)/m);
        return { ok: !!m && Number(m[1]) >= 1, detail: m ? m[0] : 'no samtal_estimated_subscribers' };
      });
      const estimatedAt = dave.seconds(400).length;
      await waitFor('Dave (aiortc) does not decode the top layer before shaping', timeout, async () => {
        const since = dave.seconds(400).slice(estimatedAt);
        const last = since.slice(-3);
        return { ok: last.length === 3 && last.every((s) => s.frames > 0 && s.width >= 1280), detail: last };
      });
      summary.unshaped = dave.seconds(1)[0];
      const top = summary.unshaped.width;
      // 2. Shaped: a lower layer, still decoding.
      tc('qdisc', 'add', 'dev', args['shape-dev'], 'root', 'tbf', 'rate', args['shape-rate'], 'burst', '32kbit', 'latency', '300ms');
      shaped = true;
      const shapedAt = Date.now();
      summary.shaped = await decodes(dave, `a lower layer with his link at ${args['shape-rate']}`, timeout, 3, (w) => w > 0 && w < top);
      summary.drop_ms = Date.now() - shapedAt;
      await new Promise((r) => setTimeout(r, 10_000));
      const held = dave.seconds(10);
      summary.shaped_later = held;
      const frames = held.reduce((n, s) => n + s.frames, 0);
      if (held.some((s) => s.width >= top)) throw new Error(`Dave got the top layer back while shaped: ${JSON.stringify(held)}`);
      if (frames < 20) throw new Error(`Dave's video stalled while shaped (${frames} frames in 10 s): ${JSON.stringify(held)}`);
      // 3. Lifted: back to the top layer.
      tc('qdisc', 'del', 'dev', args['shape-dev'], 'root');
      shaped = false;
      const liftedAt = Date.now();
      summary.lifted = await decodes(dave, 'the top layer after the limit was lifted', Number(args['climb-timeout']), 2, (w) => w >= top);
      summary.climb_ms = Date.now() - liftedAt;
    } finally {
      if (shaped) tc('qdisc', 'del', 'dev', args['shape-dev'], 'root');
      // Width x frames per second, for the record (and for the reader of a failure).
      try {
        summary.history = dave?.seconds(400).map((s) => `${s.width}x${s.frames}`).join(' ');
      } catch { /* it exited: the error says why */ }
      dave?.stop();
    }
  });
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: e.message }));
  process.exit(1);
});
