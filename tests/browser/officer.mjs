// End-to-end check of the transcript archive page (web/officer.html) in headless Chromium.
//
//   node officer.mjs --url http://127.0.0.1:PORT --officer JWT --admin JWT --word WORD --meeting ID
//                    --speaker NAME --decision WORD --action WORD --downloads DIR [--chromium /usr/bin/chromium]
//                    [--timeout 30]
//
// --url is a running Samtal server with auth.secret set whose archive holds meeting --meeting, sealed,
// with at least two speakers, one of them --speaker, and --word said in it. Checks, each against a deadline:
//   1. a wrong credential is refused on the sign-in form with the server's message, and no archive shows;
//   2. the officer (role compliance) signs in: name and role shown, no audit tab, no delete button;
//   3. the meetings list shows the meeting; searching for --word lists a hit of that meeting with the word
//      inside <mark>; opening it shows every segment with times and speakers; the speaker filter leaves
//      only --speaker's segments; the meeting's stored summary shows above the transcript, with a
//      decision and an action item taken from what was said (--decision and --action, words of each);
//   4. the four export buttons download files (saved under --downloads as <format>.<ext>); the WebVTT one
//      carries the digest the page shows; "Verify integrity" reports the transcript intact;
//   5. the administrator signs in (after signing out): the audit tab lists the officer's search,
//      exports and summary read under the officer's name, and "Verify the trail" reports it intact.
// Prints one JSON summary line on stdout; exits 0 on success, 1 naming what failed.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CHROMIUM_FLAGS, parseArgs, waitFor } from './lib.mjs';

const USAGE = 'usage: officer.mjs --url URL --officer JWT --admin JWT --word WORD --meeting ID --speaker NAME --decision WORD --action WORD --downloads DIR [--chromium PATH] [--timeout S]';
const args = parseArgs(process.argv.slice(2), {
  url: null, officer: null, admin: null, word: null, meeting: null, speaker: null, decision: null, action: null, downloads: null,
  chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium', timeout: 30,
}, ['url', 'officer', 'admin', 'word', 'meeting', 'speaker', 'decision', 'action', 'downloads'], USAGE);
const T = Number(args.timeout);
const summary = { ok: false, steps: [], downloads: {} };
const step = (name, detail = {}) => summary.steps.push({ name, ...detail });
const consoleErrors = [];

async function signIn(page, credential) {
  await page.fill('#credential', credential);
  await page.click('#signin-form button[type=submit]');
}

async function main() {
  mkdirSync(args.downloads, { recursive: true });
  const browser = await chromium.launch({ executablePath: args.chromium, args: CHROMIUM_FLAGS });
  try {
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    page.on('dialog', (d) => d.dismiss());
    await page.goto(`${args.url.replace(/\/+$/, '')}/officer.html`);

    // 1. A wrong credential.
    await signIn(page, 'not-a-token');
    await waitFor('the wrong credential is refused with a message', T, async () => {
      const error = await page.textContent('#error');
      const archive = await page.isVisible('#archive-view');
      return { ok: !archive && (await page.isVisible('#error')) && error.length > 0, detail: { error, archive } };
    });
    step('wrong credential refused', { error: await page.textContent('#error') });

    // 2. The officer signs in.
    await signIn(page, args.officer);
    await waitFor('the officer is signed in', T, async () => {
      const who = await page.textContent('#whoami');
      return { ok: (await page.isVisible('#archive-view')) && who.includes('compliance'), detail: who };
    });
    const officerSees = { audit: await page.isVisible('#audit-tab'), del: await page.isVisible('#delete') };
    if (officerSees.audit || officerSees.del) throw new Error(`an officer sees administrator controls: ${JSON.stringify(officerSees)}`);
    step('officer signed in', { whoami: await page.textContent('#whoami') });

    // 3. Meetings list, search, transcript, speaker filter.
    await waitFor('the meetings list shows the meeting', T, async () => {
      const hrefs = await page.$$eval('#results a', (as) => as.map((a) => a.getAttribute('href')));
      return { ok: hrefs.includes(`#meeting=${encodeURIComponent(args.meeting)}`), detail: hrefs };
    });
    await page.fill('#q', args.word);
    await page.click('#search-form button[type=submit]');
    const hit = await waitFor('a search hit with the word marked', T, async () => {
      const hits = await page.$$eval('#results .result', (rs) => rs.map((r) => ({ href: r.querySelector('a').getAttribute('href'), marks: [...r.querySelectorAll('mark')].map((m) => m.textContent) })));
      const mine = hits.filter((h) => h.href === `#meeting=${encodeURIComponent(args.meeting)}`);
      const marked = mine.some((h) => h.marks.some((m) => m.toLowerCase().startsWith(args.word.toLowerCase().replace(/\*$/, ''))));
      return { ok: marked, detail: { hits, summary: await page.textContent('#result-summary') } };
    });
    step('search', hit.detail);
    await page.click(`#results a[href="#meeting=${encodeURIComponent(args.meeting)}"]`);
    const all = await waitFor('the transcript shows its segments', T, async () => {
      const rows = await page.$$eval('#segments .segment', (ls) => ls.map((l) => ({ time: l.querySelector('.time').textContent, speaker: l.querySelector('.speaker').textContent, text: l.querySelector('.text').textContent })));
      const speakers = [...new Set(rows.map((r) => r.speaker))];
      return { ok: (await page.isVisible('#meeting-view')) && rows.length > 0 && speakers.length >= 2 && speakers.includes(args.speaker), detail: { rows, speakers } };
    });
    step('transcript', { segments: all.detail.rows.length, speakers: all.detail.speakers });
    const speakerValue = await page.$eval('#speaker-filter', (s, name) => [...s.options].find((o) => o.textContent === name)?.value, args.speaker);
    await page.selectOption('#speaker-filter', speakerValue);
    const filtered = await waitFor('the speaker filter leaves one speaker', T, async () => {
      const speakers = await page.$$eval('#segments .segment .speaker', (ss) => ss.map((s) => s.textContent));
      return { ok: speakers.length > 0 && speakers.length < all.detail.rows.length && speakers.every((s) => s === args.speaker), detail: speakers };
    });
    step('speaker filter', { shown: filtered.detail.length, of: all.detail.rows.length });
    const summarized = await waitFor('the meeting view shows its summary', T, async () => {
      const part = (name) => page.$$eval(`#summary-body [data-part="${name}"] li`, (ls) => ls.map((l) => l.textContent));
      const detail = { decisions: await part('decisions'), actions: await part('actionItems'), source: await page.textContent('#summary-source') };
      const has = (list, word) => list.some((text) => text.includes(word));
      return { ok: (await page.isVisible('#summary')) && has(detail.decisions, args.decision) && has(detail.actions, args.action), detail };
    });
    step('summary', summarized.detail);

    // 4. Exports and verification.
    const digest = await page.textContent('#meeting-facts dd[data-fact="Transcript digest"]');
    if (!digest.startsWith('sha256:')) throw new Error(`the page shows no sealed digest: ${digest}`);
    for (const format of ['vtt', 'srt', 'txt', 'json']) {
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: T * 1000 }), page.click(`[data-format="${format}"]`)]);
      const path = join(args.downloads, `${format}.${format}`);
      await download.saveAs(path);
      summary.downloads[format] = { path, suggested: download.suggestedFilename() };
    }
    step('exports', { digest, files: Object.keys(summary.downloads) });
    await page.click('#verify');
    const verified = await waitFor('verification reports the transcript intact', T, async () => {
      const text = await page.textContent('#verify-result');
      return { ok: (await page.isVisible('#verify-result')) && (await page.getAttribute('#verify-result', 'data-ok')) === 'true' && text.includes(digest), detail: text };
    });
    step('verify', { result: verified.detail });
    summary.digest = digest;

    // 5. The administrator and the audit trail.
    await page.click('#sign-out');
    await waitFor('signed out', T, async () => ({ ok: await page.isVisible('#signin-view'), detail: null }));
    await signIn(page, args.admin);
    await waitFor('the audit tab for the administrator', T, async () => ({ ok: await page.isVisible('#audit-tab'), detail: await page.textContent('#whoami') }));
    await page.click('#audit-tab');
    const audit = await waitFor('the audit trail lists the officer\'s search and exports', T, async () => {
      const rows = await page.$$eval('#audit-table tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
      const officerActions = rows.filter((r) => r[3] === 'compliance').map((r) => r[4]);
      const exports = officerActions.filter((a) => a === 'transcript.export').length;
      return { ok: officerActions.includes('search') && exports >= 4 && officerActions.includes('transcript.verify') && officerActions.includes('summary.read'), detail: { officerActions, rows: rows.length } };
    });
    step('audit trail', audit.detail);
    await page.click('#audit-verify');
    const trail = await waitFor('the audit trail verifies', T, async () => ({
      ok: (await page.getAttribute('#audit-result', 'data-ok')) === 'true',
      detail: await page.textContent('#audit-result'),
    }));
    step('audit verify', { result: trail.detail });
    summary.ok = true;
  } finally {
    await browser.close();
  }
}

main()
  .then(() => {
    summary.console_errors = consoleErrors;
    console.log(JSON.stringify(summary));
    process.exit(0);
  })
  .catch((e) => {
    summary.error = e.message;
    summary.console_errors = consoleErrors;
    console.log(JSON.stringify(summary));
    console.error(e.stack);
    process.exit(1);
  });
