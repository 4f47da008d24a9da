// The officer page's sign-in through an OpenID Connect provider (authorization code + PKCE), in
// headless Chromium:
//
//   node oidc_signin.mjs --url http://127.0.0.1:PORT [--chromium PATH] [--timeout 30]
//
// --url is a Samtal server whose auth.oidc names a provider (the test's stand-in) that signs the user
// in without asking. Checks: the page offers the provider's button; clicking it goes to the provider
// and back; the page trades the code for a token and is signed in with the role the token carries;
// the code is gone from the address bar. Prints one JSON summary line; exits 0 on success, 1 otherwise.

import { chromium } from 'playwright-core';
import { CHROMIUM_FLAGS, parseArgs, waitFor } from './lib.mjs';

const args = parseArgs(process.argv.slice(2), { url: null, chromium: process.env.SAMTAL_CHROMIUM || '/usr/bin/chromium', timeout: 30 }, ['url'],
  'usage: oidc_signin.mjs --url URL [--chromium PATH] [--timeout S]');
const T = Number(args.timeout);
const summary = { ok: false, console_errors: [] };

async function main() {
  const browser = await chromium.launch({ executablePath: args.chromium, args: CHROMIUM_FLAGS });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error') summary.console_errors.push(m.text()); });
    page.on('pageerror', (e) => summary.console_errors.push(`pageerror: ${e.message}`));
    await page.goto(`${args.url.replace(/\/+$/, '')}/officer.html`);
    await waitFor('the provider\'s sign-in button', T, async () => ({ ok: await page.isVisible('#oidc-signin'), detail: null }));
    summary.button = await page.textContent('#oidc-signin');
    await page.click('#oidc-signin');
    const signedIn = await waitFor('signed in through the provider', T, async () => {
      const who = await page.textContent('#whoami');
      const error = (await page.isVisible('#error')) ? await page.textContent('#error') : null;
      return { ok: who.length > 0 && (await page.isVisible('#archive-view')), detail: { who, error, url: page.url() } };
    });
    summary.whoami = signedIn.detail.who;
    summary.final_url = page.url();
    summary.ok = true;
  } finally {
    await browser.close();
  }
}

main()
  .then(() => { console.log(JSON.stringify(summary)); process.exit(0); })
  .catch((e) => { summary.error = e.message; console.log(JSON.stringify(summary)); console.error(e.stack); process.exit(1); });
