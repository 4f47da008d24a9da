// Sign-in through the organisation's OpenID Connect provider (Keycloak, say): the authorization code
// flow with PKCE for a public client, entirely in the browser. The provider sends the browser back to
// this page with a one-time code; the page trades it, with the verifier only it knows, for an access
// token, which the server then checks against the provider's JWKS like any other token. The provider
// is asked to show its pages in the archive page's language (ui_locales).

import { language, t } from '../i18n.js';

const PENDING = 'samtal.officer.oidc';

const base64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const random = (n) => base64url(crypto.getRandomValues(new Uint8Array(n)));
const redirectUri = () => `${location.origin}${location.pathname}`;

/** Sends the browser to the provider's sign-in page. */
export async function redirect(config) {
  const verifier = random(48);
  const state = random(16);
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: config.client_id, redirect_uri: redirectUri(), scope: config.scope,
    state, code_challenge: challenge, code_challenge_method: 'S256', ui_locales: language(),
  }).toString();
  location.assign(url.toString());
}

/** Back from the provider with `query` (?code&state or ?error): the access token, or an error. */
export async function complete(config, query) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  if (query.has('error')) throw new Error(t('oidc.refused', { reason: query.get('error_description') || query.get('error') }));
  if (!pending || pending.state !== query.get('state')) throw new Error(t('oidc.stateMismatch'));
  const response = await fetch(config.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: query.get('code'), redirect_uri: redirectUri(),
      client_id: config.client_id, code_verifier: pending.verifier,
    }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.access_token) throw new Error(t('oidc.noToken', { status: response.status, reason: body.error_description || body.error || 'no access_token' }));
  return body.access_token;
}
