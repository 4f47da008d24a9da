// Accessibility (WCAG 2.1 AA) and the Swedish/English interface of the Samtal pages, in headless Chromium.
//
//   node accessibility.mjs --url http://127.0.0.1:PORT --moderator JWT --participant JWT --officer JWT
//                          --admin JWT --meeting ID --started MS [--chromium /usr/bin/chromium]
//                          [--timeout 30] [--screenshots DIR]
//
// --url is a running Samtal server with auth.secret set; --moderator and --participant are join tokens
// for any room ("*") without a name, --officer (compliance) and --admin (administrator) sign in to the
// archive, whose store holds meeting --meeting, sealed, started at --started (ms since the epoch).
// Checks, each against a deadline:
//   1. the catalogues (web/i18n/en.json, sv.json) have the same keys, no empty message, the same
//      {placeholders} and plural forms, and every key the pages and scripts name;
//   2. for English and then Swedish, each in a Chromium started with --lang=en-US / --lang=sv-SE:
//      axe-core finds no serious or critical violation on the meeting page before joining, during a
//      meeting (Alice, a moderator, and Bob; also with the shortcuts dialog open), on the archive
//      page (sign-in, meetings list, a transcript, the audit trail) and on the Matrix widget (its
//      message page, and in a frame with its meeting running); the main controls show the catalogue's
//      words for that language, `lang` is set, dates are formatted for the locale; a tile's speaking
//      ring comes with an icon and words; reduced motion stops the recording dot's blinking;
//      in English a moderator mutes Bob with the keyboard on his tile's "Mute Bob" button, and Bob's
//      page is muted; in Swedish the language switch turns the meeting and archive pages to English,
//      and the choice outlives a reload;
//   3. keyboard only (English): Mia tabs to the name field, types her name, tabs to Join and presses
//      Enter; M mutes her microphone and V her camera (Olle's page sees both, and a screen reader is
//      told), ? opens the shortcuts dialog with the focus in it and Escape closes it; she tabs to Leave
//      (its focus ring shows) and presses Enter, and Olle sees her go.
// Prints one JSON summary line on stdout (the violations of every page, serious or not, are in it);
// exits 0 on success, 1 naming what failed. Screenshots of each page in both languages, wide and
// narrow, go to --screenshots when given.

import { chromium } from 'playwright-core';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { CHROMIUM_FLAGS, parseArgs, screenshot, waitFor } from './lib.mjs';

const USAGE = 'usage: accessibility.mjs --url URL --moderator JWT --participant JWT --officer JWT --admin JWT --meeting ID --started MS [--chromium PATH] [--timeout S] [--screenshots DIR]';
const args = parseArgs(process.argv.slice(2), {
  url: null, moderator: null, participant: null, officer: null, admin: null, meeting: null, started: null,
  chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium', timeout: 30, screenshots: null,
}, ['url', 'moderator', 'participant', 'officer', 'admin', 'meeting', 'started'], USAGE);
args.url = args.url.replace(/\/+$/, '');
const T = Number(args.timeout);
const STARTED = Number(args.started);
const SERIOUS = ['serious', 'critical'];
const LOCALES = { en: 'en-US', sv: 'sv-SE' };

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const WEB = new URL('../../web/', import.meta.url);
const catalogue = Object.fromEntries(['en', 'sv'].map((l) => [l, JSON.parse(readFileSync(new URL(`i18n/${l}.json`, WEB), 'utf8'))]));

const summary = { ok: false, url: args.url, catalogue: null, audits: [], steps: [] };
const step = (name, detail = {}) => summary.steps.push({ name, ...detail });
const consoles = {};

/** Catalogue message `key` of `lang` with {placeholders} filled; plural forms chosen by `params.count`. */
function msg(lang, key, params = {}) {
  let m = catalogue[lang][key];
  if (m && typeof m === 'object') m = m[new Intl.PluralRules(LOCALES[lang]).select(Number(params.count))] ?? m.other;
  if (typeof m !== 'string') throw new Error(`no message ${key} in ${lang}.json`);
  return m.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

function expect(what, actual, wanted) {
  if (actual !== wanted) throw new Error(`${what}: ${JSON.stringify(actual)}, expected ${JSON.stringify(wanted)}`);
}

// ---- 1. the catalogues ----

function placeholders(message) {
  const texts = typeof message === 'string' ? [message] : Object.values(message);
  return [...new Set(texts.flatMap((s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1])))].sort().join(',');
}

function checkCatalogues() {
  const problems = [];
  const [en, sv] = [catalogue.en, catalogue.sv];
  for (const k of Object.keys(en)) if (!(k in sv)) problems.push(`sv.json lacks ${k}`);
  for (const k of Object.keys(sv)) if (!(k in en)) problems.push(`en.json lacks ${k}`);
  for (const [lang, cat] of Object.entries(catalogue)) {
    for (const [k, v] of Object.entries(cat)) {
      const forms = typeof v === 'string' ? [v] : Object.values(v);
      if (typeof v !== 'string' && (typeof v !== 'object' || !('other' in v))) problems.push(`${lang}: ${k} is neither a string nor plural forms with "other"`);
      if (forms.some((f) => typeof f !== 'string' || !f.trim())) problems.push(`${lang}: ${k} is empty`);
    }
  }
  for (const k of Object.keys(en)) {
    if (k in sv && placeholders(en[k]) !== placeholders(sv[k]) && !(k.startsWith('media.') && !k.includes('.the.') && !k.includes('.a.'))) {
      problems.push(`${k}: placeholders {${placeholders(en[k])}} in English, {${placeholders(sv[k])}} in Swedish`);
    }
  }
  // Every key named by the pages (data-i18n*) and by literal t()/localize() calls in the scripts.
  const files = ['index.html', 'officer.html', 'widget.html'];
  const walk = (dir) => readdirSync(new URL(dir, WEB), { withFileTypes: true })
    .flatMap((d) => (d.isDirectory() ? walk(`${dir}${d.name}/`) : d.name.endsWith('.js') ? [`${dir}${d.name}`] : []));
  files.push(...walk('js/'));
  // Quoted strings that start like a key ('toolbar.mute'); keys put together at run time are not seen.
  const namespaces = [...new Set(Object.keys(en).map((k) => k.split('.')[0]))].join('|');
  const quoted = new RegExp(`'((?:${namespaces})\\.[A-Za-z][A-Za-z.]*)'`, 'g');
  const named = new Set();
  for (const f of files) {
    const text = readFileSync(new URL(f, WEB), 'utf8');
    for (const m of text.matchAll(/data-i18n(?:-[a-z-]+)?="([^"]+)"/g)) named.add(m[1]);
    for (const m of text.matchAll(quoted)) named.add(m[1]);
  }
  for (const k of named) if (!(k in en)) problems.push(`${k} is named in web/ but not in the catalogues`);
  if (problems.length) throw new Error(`catalogue problems: ${problems.join('; ')}`);
  summary.catalogue = { keys: Object.keys(en).length, named: named.size };
}

// ---- helpers ----

async function newPage(context, label) {
  const page = await context.newPage();
  consoles[label] = [];
  page.on('console', (m) => { if (m.type() === 'error') consoles[label].push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => consoles[label].push(`pageerror: ${e.message}`));
  return page;
}

/** Runs axe-core in `frame` (a page or frame); records the violations; throws on serious or critical ones. */
async function audit(frame, what) {
  await frame.evaluate(AXE_SOURCE);
  const violations = await frame.evaluate(async () => {
    const result = await window.axe.run(document, {
      iframes: false,
      resultTypes: ['violations'],
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    });
    return result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 6).map((n) => ({ target: n.target.join(' '), html: n.html.slice(0, 160), why: n.failureSummary })),
    }));
  });
  const serious = violations.filter((v) => SERIOUS.includes(v.impact));
  summary.audits.push({ what, serious: serious.length, violations });
  if (serious.length) {
    console.error(`axe: ${what}:\n${JSON.stringify(serious, null, 2)}`);
    throw new Error(`axe-core: ${serious.length} serious or critical violation(s) on ${what}: ${serious.map((v) => `${v.id} (${v.nodes.map((n) => n.target).join(', ')})`).join('; ')}`);
  }
}

async function shoot(page, name) {
  await screenshot(page, args.screenshots, name);
}

/** The visible words of the element `selector` (its text, trimmed), or null when it is not shown. */
function textOf(frame, selector) {
  return frame.evaluate((sel) => {
    const el = document.querySelector(sel);
    if (!el || el.closest('[hidden]') || getComputedStyle(el).display === 'none') return null;
    return el.textContent.trim();
  }, selector);
}

/** Waits until the page's scripts have put it into `lang` (the catalogues load before anything is shown). */
async function inLanguage(frame, lang, what) {
  await waitFor(`${what} is not in ${lang}`, T, async () => {
    const st = await frame.evaluate(() => ({ lang: document.documentElement.lang, select: document.getElementById('lang-select')?.value }));
    return { ok: st.lang === lang && st.select === lang, detail: st };
  });
}

async function joinedIn(frame, who) {
  const r = await waitFor(`${who} did not join`, T, async () => {
    const st = await frame.evaluate(() => ({ state: window.samtal && window.samtal.state, id: window.samtal && window.samtal.participantId, notices: [...document.querySelectorAll('.notice span')].map((n) => n.textContent) }));
    return { ok: st.state === 'joined' && !!st.id, detail: st };
  });
  return r.detail.id;
}

/** What `page` knows of participant `id`'s microphone and camera: {listed, microphone, camera} (muted flags). */
function seenBy(page, id) {
  return page.evaluate((pid) => {
    const p = window.samtal.participants.get(pid);
    const out = { listed: !!p };
    if (p) for (const t of p.tracks.values()) out[t.source] = t.muted;
    return out;
  }, id);
}

/** Presses Tab until `predicate` (run in the page) holds; at most `max` times. */
async function tabTo(page, what, predicate, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(predicate)) return i + 1;
  }
  const at = await page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.outerHTML.slice(0, 80)));
  throw new Error(`Tab never reached ${what} (${max} presses; the focus is on ${at})`);
}

// ---- 2. the pages in one language ----

async function meetingPages(browser, lang) {
  const context = await browser.newContext({ locale: LOCALES[lang], viewport: { width: 1280, height: 720 } });
  const room = `a11y-${lang}`;
  // Before joining.
  const alice = await newPage(context, `alice-${lang}`);
  await alice.goto(`${args.url}/?room=${room}#jwt=${args.moderator}`);
  await inLanguage(alice, lang, 'the meeting page');
  expect(`join button (${lang})`, await textOf(alice, '#join-button'), msg(lang, 'join.button'));
  expect(`join form heading (${lang})`, await textOf(alice, '#join-title'), msg(lang, 'join.title'));
  expect(`name label (${lang})`, await textOf(alice, 'label:has(#name) span'), msg(lang, 'join.name'));
  await audit(alice, `the meeting page before joining (${lang})`);
  await shoot(alice, `meeting-prejoin-${lang}`);
  if (lang === 'en') {
    // Reduced motion: the recording dot does not blink.
    const blink = async () => alice.evaluate(() => getComputedStyle(document.querySelector('.rec-dot')).animationName);
    const normal = await blink();
    await alice.emulateMedia({ reducedMotion: 'reduce' });
    const reduced = await blink();
    await alice.emulateMedia({ reducedMotion: 'no-preference' });
    if (normal === 'none' || reduced !== 'none') throw new Error(`prefers-reduced-motion is not respected: animation ${normal} normally, ${reduced} reduced`);
    step('reduced motion', { normal, reduced });
  }

  // During a meeting: Alice (moderator) and Bob.
  await alice.fill('#name', 'Alice');
  await alice.click('#join-button');
  const aliceId = await joinedIn(alice, 'Alice');
  const bob = await newPage(context, `bob-${lang}`);
  await bob.goto(`${args.url}/?room=${room}&name=Bob&autojoin=1#jwt=${args.participant}`);
  const bobId = await joinedIn(bob, 'Bob');
  await waitFor(`Alice does not see Bob's tile with moderator buttons (${lang})`, T, async () => {
    const st = await alice.evaluate((id) => {
      const tile = document.querySelector(`#grid .tile.camera[data-participant-id="${id}"]`);
      const mute = tile && tile.querySelector('.mod-controls button[data-action="mute"]');
      return { tile: !!tile, shown: !!mute && !mute.closest('[hidden]'), label: mute && mute.getAttribute('aria-label'), tracks: window.samtal.participants.get(id)?.tracks.size || 0 };
    }, bobId);
    return { ok: st.tile && st.shown && st.tracks >= 2, detail: st };
  });
  await inLanguage(alice, lang, 'the meeting');
  const controls = await alice.evaluate((id) => {
    const tile = document.querySelector(`#grid .tile.camera[data-participant-id="${id}"]`);
    return {
      mic: document.getElementById('mic-button').textContent.trim(),
      camera: document.getElementById('camera-button').textContent.trim(),
      leave: document.getElementById('leave-button').textContent.trim(),
      muteBob: tile.querySelector('[data-action="mute"]').getAttribute('aria-label'),
      removeBob: tile.querySelector('[data-action="remove"]').getAttribute('aria-label'),
      muteText: tile.querySelector('[data-action="mute"]').textContent.trim(),
    };
  }, bobId);
  expect(`mute button (${lang})`, controls.mic, msg(lang, 'toolbar.mute'));
  expect(`camera button (${lang})`, controls.camera, msg(lang, 'toolbar.stopVideo'));
  expect(`leave button (${lang})`, controls.leave, msg(lang, 'toolbar.leave'));
  expect(`Bob's tile mute button's name (${lang})`, controls.muteBob, msg(lang, 'tile.muteWho', { name: 'Bob' }));
  expect(`Bob's tile remove button's name (${lang})`, controls.removeBob, msg(lang, 'tile.removeWho', { name: 'Bob' }));
  if (!controls.muteBob.includes(controls.muteText)) throw new Error(`the name "${controls.muteBob}" does not contain the visible label "${controls.muteText}"`);
  step(`meeting controls (${lang})`, controls);

  // Speaking is shown by an icon and words too, not by the ring's colour alone (the fake microphone beeps).
  const speaking = await waitFor(`no tile on Alice's page shows the speaking cue (${lang})`, T, async () => {
    const st = await alice.evaluate(() => [...document.querySelectorAll('#grid .tile.speaking')].map((tile) => {
      const cue = tile.querySelector('.speaking-cue');
      return { cue: !!cue && !cue.hidden && getComputedStyle(cue).display !== 'none', words: cue ? cue.textContent.trim() : null, icon: !!(cue && cue.querySelector('svg')) };
    }));
    return { ok: st.some((s) => s.cue && s.icon && s.words), detail: st };
  });
  expect(`the speaking cue's words (${lang})`, speaking.detail.find((s) => s.cue).words, msg(lang, 'tile.speaking'));

  await audit(alice, `the meeting page during a meeting (${lang})`);
  await shoot(alice, `meeting-${lang}`);
  // The shortcuts dialog, open.
  await alice.click('#shortcuts-button');
  await waitFor('the shortcuts dialog did not open', T, async () => ({ ok: await alice.evaluate(() => document.getElementById('shortcuts-dialog').open), detail: null }));
  expect(`shortcuts dialog title (${lang})`, await textOf(alice, '#shortcuts-title'), msg(lang, 'shortcuts.title'));
  await audit(alice, `the shortcuts dialog (${lang})`);
  await shoot(alice, `meeting-shortcuts-${lang}`);
  await alice.keyboard.press('Escape');
  await waitFor('Escape did not close the shortcuts dialog', T, async () => ({ ok: !(await alice.evaluate(() => document.getElementById('shortcuts-dialog').open)), detail: null }));

  if (lang === 'en') {
    // A moderator's per-tile control, by keyboard: its buttons appear with the focus, Enter mutes Bob.
    await alice.evaluate(() => document.activeElement && document.activeElement.blur());
    await tabTo(alice, '"Mute Bob"', () => document.activeElement?.getAttribute('aria-label') === 'Mute Bob');
    const shown = (await waitFor('the focused "Mute Bob" button is not shown with a focus ring', T, async () => {
      const st = await alice.evaluate(() => {
        const el = document.activeElement;
        const controls = el && el.closest('.mod-controls');
        if (!controls) return { focus: el ? el.outerHTML.slice(0, 120) : null };
        return { opacity: getComputedStyle(controls).opacity, outline: getComputedStyle(el).outlineStyle, focusVisible: el.matches(':focus-visible') };
      });
      return { ok: st.opacity === '1' && st.outline !== 'none' && st.focusVisible, detail: st };
    })).detail;
    await alice.keyboard.press('Enter');
    await waitFor('Bob was not muted by the moderator\'s keyboard press', T, async () => {
      const st = { bob: await bob.evaluate(() => window.samtal.isMuted('microphone')), alice: await seenBy(alice, bobId) };
      return { ok: st.bob && st.alice.microphone === true, detail: st };
    });
    step('moderator mutes Bob by keyboard', shown);
  } else {
    // The language switch turns the page to English, without leaving the meeting ...
    await alice.selectOption('#lang-select', 'en');
    await inLanguage(alice, 'en', 'the meeting after switching');
    const after = await alice.evaluate((id) => ({
      state: window.samtal.state,
      mic: document.getElementById('mic-button').textContent.trim(),
      leave: document.getElementById('leave-button').textContent.trim(),
      participants: document.getElementById('grid').getAttribute('aria-label'),
      muteBob: document.querySelector(`#grid .tile.camera[data-participant-id="${id}"] [data-action="mute"]`).getAttribute('aria-label'),
    }), bobId);
    expect('state after switching language', after.state, 'joined');
    expect('mute button after switching to English', after.mic, msg('en', 'toolbar.mute'));
    expect('leave button after switching to English', after.leave, msg('en', 'toolbar.leave'));
    expect('the grid\'s name after switching to English', after.participants, msg('en', 'meeting.participants'));
    expect('Bob\'s mute button after switching to English', after.muteBob, msg('en', 'tile.muteWho', { name: 'Bob' }));
    // ... and the choice outlives a reload, over the browser's Swedish.
    const again = await newPage(context, 'reloaded-sv');
    await again.goto(`${args.url}/?room=${room}`);
    await inLanguage(again, 'en', 'a new page after choosing English');
    expect('join button after choosing English', await textOf(again, '#join-button'), msg('en', 'join.button'));
    step('language switch (meeting page)', after);
    await again.close();
  }
  await bob.close();
  await alice.close();
  await context.close();
  return aliceId;
}

async function archivePages(browser, lang) {
  const context = await browser.newContext({ locale: LOCALES[lang], viewport: { width: 1280, height: 720 } });
  const page = await newPage(context, `officer-${lang}`);
  page.on('dialog', (d) => d.dismiss());
  await page.goto(`${args.url}/officer.html`);
  await inLanguage(page, lang, 'the archive page');
  expect(`archive sign-in heading (${lang})`, await textOf(page, '#signin-title'), msg(lang, 'officer.signIn'));
  expect(`archive sign-in button (${lang})`, await textOf(page, '#signin-form button[type=submit]'), msg(lang, 'officer.signInButton'));
  await audit(page, `the archive sign-in (${lang})`);
  await shoot(page, `archive-signin-${lang}`);

  await page.fill('#credential', args.officer);
  await page.click('#signin-form button[type=submit]');
  await waitFor(`the officer is not signed in (${lang})`, T, async () => {
    const hrefs = await page.$$eval('#results a', (as) => as.map((a) => a.getAttribute('href')));
    return { ok: (await page.isVisible('#archive-view')) && hrefs.includes(`#meeting=${encodeURIComponent(args.meeting)}`), detail: { hrefs, error: await textOf(page, '#error') } };
  });
  expect(`meetings tab (${lang})`, await textOf(page, '#tabs [data-tab="search"]'), msg(lang, 'officer.meetingsTab'));
  expect(`search button (${lang})`, await textOf(page, '#search-form button[type=submit]'), msg(lang, 'officer.search'));
  const whoami = await textOf(page, '#whoami');
  if (!whoami.endsWith(`(${msg(lang, 'officer.role.compliance')})`)) throw new Error(`the role is not named in ${lang}: ${whoami}`);
  await audit(page, `the archive's meetings list (${lang})`);

  await page.click(`#results a[href="#meeting=${encodeURIComponent(args.meeting)}"]`);
  await waitFor(`the transcript is not shown (${lang})`, T, async () => ({ ok: (await page.isVisible('#meeting-view')) && (await page.$$('#segments .segment')).length > 0, detail: null }));
  const started = await page.evaluate(({ ms, locale }) => ({
    shown: document.querySelector('#meeting-facts dd[data-fact="Started"]').textContent,
    label: document.querySelector('#meeting-facts dd[data-fact="Started"]').previousElementSibling.textContent,
    want: new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(ms)),
  }), { ms: STARTED, locale: LOCALES[lang] });
  expect(`the meeting's start as ${LOCALES[lang]} writes it`, started.shown, started.want);
  expect(`the start's label (${lang})`, started.label, msg(lang, 'officer.fact.started'));
  expect(`verify button (${lang})`, await textOf(page, '#verify'), msg(lang, 'officer.verify'));
  await page.click('#verify');
  const verified = await waitFor(`verification shows no result (${lang})`, T, async () => {
    const text = await textOf(page, '#verify-result');
    return { ok: !!text && (await page.getAttribute('#verify-result', 'data-ok')) === 'true', detail: text };
  });
  const sealed = await page.evaluate(() => ({
    digest: document.querySelector('#meeting-facts dd[data-fact="Transcript digest"]').textContent,
    count: document.querySelectorAll('#segments .segment').length,
  }));
  expect(`the verification result (${lang})`, verified.detail, msg(lang, 'officer.intact', sealed));
  step(`archive (${lang})`, { started: started.shown, verified: verified.detail });
  await audit(page, `the archive's transcript view (${lang})`);
  await shoot(page, `archive-transcript-${lang}`);

  if (lang === 'sv') {
    await page.selectOption('#lang-select', 'en');
    await inLanguage(page, 'en', 'the archive after switching');
    const after = await page.evaluate(() => ({
      tab: document.querySelector('#tabs [data-tab="search"]').textContent,
      verify: document.getElementById('verify').textContent,
      started: document.querySelector('#meeting-facts dd[data-fact="Started"]').previousElementSibling.textContent,
    }));
    expect('meetings tab after switching to English', after.tab, msg('en', 'officer.meetingsTab'));
    expect('verify button after switching to English', after.verify, msg('en', 'officer.verify'));
    expect('the start\'s label after switching to English', after.started, msg('en', 'officer.fact.started'));
    step('language switch (archive page)', after);
    await page.selectOption('#lang-select', 'sv');
    await inLanguage(page, 'sv', 'the archive after switching back');
  }

  // The administrator's audit trail.
  await page.click('#sign-out');
  await waitFor('signed out', T, async () => ({ ok: await page.isVisible('#signin-view'), detail: null }));
  await page.fill('#credential', args.admin);
  await page.click('#signin-form button[type=submit]');
  await waitFor(`the administrator sees no audit tab (${lang})`, T, async () => ({ ok: await page.isVisible('#audit-tab'), detail: await textOf(page, '#error') }));
  await page.click('#audit-tab');
  await waitFor(`the audit trail is empty (${lang})`, T, async () => ({ ok: (await page.$$('#audit-table tbody tr')).length > 0, detail: null }));
  expect(`audit table's time column (${lang})`, await textOf(page, '#audit-table th:nth-child(2)'), msg(lang, 'officer.col.time'));
  await audit(page, `the archive's audit trail (${lang})`);
  await shoot(page, `archive-audit-${lang}`);
  await context.close();
}

async function widgetPages(browser, lang) {
  const context = await browser.newContext({ locale: LOCALES[lang], viewport: { width: 1280, height: 720 } });
  // widget.html opened by itself: it says what it is, in the page's language, with a language switch.
  const alone = await newPage(context, `widget-alone-${lang}`);
  await alone.goto(`${args.url}/widget.html`);
  await inLanguage(alone, lang, 'the widget page');
  await waitFor(`the widget page does not say what it is in ${lang}`, T, async () => {
    const text = await textOf(alone, '#widget-error');
    return { ok: text === msg(lang, 'widget.notInClient'), detail: text };
  });
  await audit(alone, `the widget page alone (${lang})`);
  await alone.close();

  // In a frame of a page of the server's own origin (as a Matrix client would show it), with its meeting.
  const page = await newPage(context, `widget-${lang}`);
  const matrixRoom = `!a11y${lang}:example.org`;
  const src = `/widget.html?matrixRoomId=${encodeURIComponent(matrixRoom)}&displayName=Wanda#jwt=${args.participant}`;
  await page.route(`${args.url}/a11y-widget-host.html`, (route) => route.fulfill({
    contentType: 'text/html; charset=utf-8',
    body: `<!doctype html><html lang="${lang}"><head><title>Matrix client</title></head><body style="margin:0"><main>
      <iframe title="Samtal widget" allow="camera; microphone; display-capture; autoplay" style="width:100vw;height:95vh;border:0" src="${src}"></iframe></main></body></html>`,
  }));
  await page.goto(`${args.url}/a11y-widget-host.html`);
  const frames = await waitFor(`the widget's meeting did not join (${lang})`, T, async () => {
    const widget = page.frames().find((f) => f.url().includes('/widget.html'));
    const meeting = page.frames().find((f) => f.url().includes('embed=1'));
    const state = meeting ? await meeting.evaluate(() => window.samtal && window.samtal.state).catch(() => null) : null;
    return { ok: !!widget && state === 'joined', detail: { frames: page.frames().map((f) => f.url()), state }, widget, meeting };
  });
  const { widget, meeting } = frames;
  await inLanguage(meeting, lang, 'the widget\'s meeting');
  expect(`the widget's frame title (${lang})`, await widget.evaluate(() => document.querySelector('#meet iframe').title), msg(lang, 'widget.frameTitle'));
  expect(`the widget's meeting mute button (${lang})`, await textOf(meeting, '#mic-button'), msg(lang, 'toolbar.mute'));
  expect(`the widget's meeting leave button (${lang})`, await textOf(meeting, '#leave-button'), msg(lang, 'toolbar.leave'));
  await audit(widget, `the widget page (${lang})`);
  await audit(meeting, `the widget's meeting (${lang})`);
  await shoot(page, `widget-${lang}`);
  await context.close();
}

// ---- 3. keyboard only ----

async function keyboardOnly(browser) {
  const context = await browser.newContext({ locale: LOCALES.en, viewport: { width: 1280, height: 720 } });
  const room = 'a11y-keys';
  const olle = await newPage(context, 'olle');
  await olle.goto(`${args.url}/?room=${room}&name=Olle&autojoin=1#jwt=${args.participant}`);
  await joinedIn(olle, 'Olle');

  const mia = await newPage(context, 'mia');
  await mia.goto(`${args.url}/?room=${room}#jwt=${args.moderator}`);
  await inLanguage(mia, 'en', 'Mia\'s page');
  await tabTo(mia, 'the name field', () => document.activeElement?.id === 'name');
  await mia.keyboard.type('Mia Vik'); // an m and a v: typed into the field, not taken as shortcuts
  if (await mia.evaluate(() => window.samtal.isMuted('microphone') || window.samtal.isMuted('camera'))) throw new Error('typing a name set off the mute shortcuts');
  await tabTo(mia, 'the join button', () => document.activeElement?.id === 'join-button');
  await mia.keyboard.press('Enter');
  const miaId = await joinedIn(mia, 'Mia');
  await waitFor('Olle does not see Mia\'s microphone and camera on', T, async () => {
    const st = await seenBy(olle, miaId);
    return { ok: st.listed && st.microphone === false && st.camera === false, detail: st };
  });
  step('keyboard: joined', { id: miaId, name: await mia.evaluate(() => window.samtal.name) });

  const announced = (key) => waitFor(`a screen reader was not told "${msg('en', key)}"`, T, async () => {
    const text = await mia.evaluate(() => document.getElementById('announcer').textContent);
    return { ok: text === msg('en', key), detail: text };
  });
  await mia.keyboard.press('m');
  await waitFor('M did not mute Mia\'s microphone as Olle sees it', T, async () => {
    const st = { olle: await seenBy(olle, miaId), pressed: await mia.getAttribute('#mic-button', 'aria-pressed') };
    return { ok: st.olle.microphone === true && st.pressed === 'true', detail: st };
  });
  await announced('announce.microphoneOff');
  await mia.keyboard.press('m');
  await waitFor('M again did not unmute Mia\'s microphone as Olle sees it', T, async () => {
    const st = { olle: await seenBy(olle, miaId), pressed: await mia.getAttribute('#mic-button', 'aria-pressed') };
    return { ok: st.olle.microphone === false && st.pressed === 'false', detail: st };
  });
  await announced('announce.microphoneOn');
  await mia.keyboard.press('v');
  await waitFor('V did not turn Mia\'s camera off as Olle sees it', T, async () => {
    const st = { olle: await seenBy(olle, miaId), pressed: await mia.getAttribute('#camera-button', 'aria-pressed') };
    return { ok: st.olle.camera === true && st.pressed === 'true', detail: st };
  });
  await announced('announce.cameraOff');
  step('keyboard: shortcuts', { microphone: 'off and on again', camera: 'off' });

  // The shortcuts dialog: ? opens it with the focus inside, Escape closes it.
  await mia.keyboard.press('?');
  await waitFor('? did not open the shortcuts dialog with the focus in it', T, async () => {
    const st = await mia.evaluate(() => ({ open: document.getElementById('shortcuts-dialog').open, focus: document.activeElement?.id }));
    return { ok: st.open && st.focus === 'shortcuts-close', detail: st };
  });
  await mia.keyboard.press('m'); // in the dialog, not a shortcut
  await mia.keyboard.press('Escape');
  await waitFor('Escape did not close the shortcuts dialog', T, async () => ({ ok: !(await mia.evaluate(() => document.getElementById('shortcuts-dialog').open)), detail: null }));
  expect('the microphone after pressing M inside the dialog', (await seenBy(olle, miaId)).microphone, false);
  step('keyboard: shortcuts dialog');

  // Leave with Tab and Enter; the focus ring shows on the way.
  await tabTo(mia, 'the leave button', () => document.activeElement?.id === 'leave-button');
  const ring = await mia.evaluate(() => {
    const s = getComputedStyle(document.activeElement);
    return { style: s.outlineStyle, width: parseFloat(s.outlineWidth), focusVisible: document.activeElement.matches(':focus-visible') };
  });
  if (ring.style === 'none' || ring.width < 2 || !ring.focusVisible) throw new Error(`no visible focus ring on the leave button: ${JSON.stringify(ring)}`);
  await mia.keyboard.press('Enter');
  await waitFor('Mia did not leave', T, async () => ({ ok: (await mia.evaluate(() => window.samtal.state)) === 'left', detail: null }));
  await waitFor('Olle still sees Mia after she left', T, async () => {
    const st = await seenBy(olle, miaId);
    return { ok: !st.listed, detail: st };
  });
  step('keyboard: left', { ring });
  await context.close();
}

async function main() {
  checkCatalogues();
  step('catalogues', summary.catalogue);
  for (const lang of ['en', 'sv']) {
    const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: [...CHROMIUM_FLAGS, `--lang=${LOCALES[lang]}`] });
    try {
      await archivePages(browser, lang);
      await meetingPages(browser, lang);
      await widgetPages(browser, lang);
      if (lang === 'en') await keyboardOnly(browser);
    } finally {
      await browser.close();
    }
  }
  summary.ok = true;
}

main()
  .then(() => {
    summary.console_errors = consoles;
    console.log(JSON.stringify(summary));
    process.exit(0);
  })
  .catch((e) => {
    summary.error = e.message;
    summary.console_errors = consoles;
    console.log(JSON.stringify(summary));
    console.error(e.stack);
    process.exit(1);
  });
