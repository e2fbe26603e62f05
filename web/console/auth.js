// Who the console acts as. Locally an agent pastes a token; on AWS the console signs in
// with the OIDC authorization-code flow and PKCE (Cognito's hosted UI, or the team's own
// issuer), and keeps the access token, which the API's JWT authorizer checks.

import { useEffect, useRef, useState } from 'preact/hooks';
import { html, Notice } from './ui.js';
import { t } from './i18n.js';

const TOKEN = 'helpdesk.token';
/** The prefix of the unsent replies and notes this tab keeps (ticket.js). */
export const DRAFTS = 'helpdesk.draft.';
const PKCE = 'helpdesk.pkce';

export function currentToken() {
  return localStorage.getItem(TOKEN);
}

export function setToken(token) {
  localStorage.setItem(TOKEN, token);
}

/** Forgets the token. `ended`: the desk stopped taking it (a 401), not the agent's choice. */
export function signOut({ ended = false } = {}) {
  localStorage.removeItem(TOKEN);
  // The agent's own sign-out leaves nothing for whoever signs in next; a session that
  // ended keeps the drafts for the same agent signing in again.
  if (!ended) {
    Object.keys(sessionStorage)
      .filter((k) => k.startsWith(DRAFTS))
      .forEach((k) => sessionStorage.removeItem(k));
  }
  window.dispatchEvent(new CustomEvent('helpdesk:signed-out', { detail: { ended } }));
}

/** Calls `f(token)` when another tab of this console signs in (a token) or out (null), so
 * every tab follows; returns the function that stops it. */
export function onOtherTabs(f) {
  const listener = (e) => {
    if (e.key === TOKEN || e.key === null) f(localStorage.getItem(TOKEN));
  };
  window.addEventListener('storage', listener);
  return () => window.removeEventListener('storage', listener);
}

/** How this desk signs agents in: {"auth": "token"} or {"auth": "oidc", ...}. */
export async function loadConfig() {
  try {
    const r = await fetch('config.json', { cache: 'no-cache' });
    if (r.ok) return await r.json();
  } catch {
    /* fall through to tokens */
  }
  return { auth: 'token' };
}

function base64url(bytes) {
  let s = '';
  bytes.forEach((b) => (s += String.fromCharCode(b)));
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(n) {
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

function redirectUri() {
  return location.origin + location.pathname;
}

/** Sends the browser to the issuer's sign-in page with a fresh PKCE challenge. */
export async function startOidc(cfg) {
  const verifier = randomString(48);
  const state = randomString(16);
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const challenge = base64url(new Uint8Array(digest));
  sessionStorage.setItem(PKCE, JSON.stringify({ verifier, state }));
  const url = new URL(cfg.authorize_url);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', cfg.client_id);
  url.searchParams.set('redirect_uri', redirectUri());
  url.searchParams.set('scope', cfg.scope || 'openid email profile');
  url.searchParams.set('state', state);
  url.searchParams.set('code_challenge', challenge);
  url.searchParams.set('code_challenge_method', 'S256');
  location.assign(url.toString());
}

/**
 * Completes a sign-in when the issuer has sent the browser back with a code: checks the
 * state, trades the code and the verifier for tokens, and keeps the access token.
 * Returns an error message, or null.
 */
export async function finishOidc(cfg) {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  const error = params.get('error');
  if (!code && !error) return null;
  history.replaceState(null, '', location.pathname + location.hash);
  if (error) return t('signin.oidc_refused') + t('error.detail', { detail: params.get('error_description') || error });
  let saved;
  try {
    saved = JSON.parse(sessionStorage.getItem(PKCE) || 'null');
  } catch {
    saved = null;
  }
  sessionStorage.removeItem(PKCE);
  if (!saved || saved.state !== params.get('state')) return t('signin.oidc_mismatch');
  const body = new URLSearchParams({
    grant_type: 'authorization_code',
    client_id: cfg.client_id,
    code,
    redirect_uri: redirectUri(),
    code_verifier: saved.verifier,
  });
  const r = await fetch(cfg.token_url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body,
  });
  if (!r.ok) return t('signin.oidc_refused') + t('error.detail', { detail: String(r.status) });
  const tokens = await r.json();
  const token = tokens.access_token || tokens.id_token;
  if (!token) return t('signin.oidc_no_token');
  setToken(token);
  return null;
}

/** The sign-in page. */
export function SignIn({ config, onSignedIn, error }) {
  const [token, setTokenText] = useState('');
  const [failed, setFailed] = useState(error || null);
  useEffect(() => setFailed(error || null), [error]);
  // The page is for one thing: the focus starts on it (the token box, or the SSO button).
  const first = useRef(null);
  useEffect(() => first.current?.focus(), []);
  const submit = async (e) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) return;
    setToken(value);
    // null when signed in, else what went wrong: the token refused, or the desk unreachable.
    const problem = await onSignedIn();
    if (problem) {
      localStorage.removeItem(TOKEN);
      setFailed(problem);
    }
  };
  return html`<main class="signin">
    <h1>${t('signin.title')}</h1>
    ${config.auth === 'oidc'
      ? html`<button ref=${first} class="primary" onClick=${() => startOidc(config)}>${t('signin.sso')}</button>`
      : html`<form onSubmit=${submit}>
          <label class="field">
            <span>${t('signin.token')}</span>
            <input ref=${first} type="password" autocomplete="current-password" value=${token}
              onInput=${(e) => setTokenText(e.currentTarget.value)} />
          </label>
          <p class="hint">${t('signin.hint')}</p>
          <button class="primary" type="submit">${t('signin.submit')}</button>
        </form>`}
    <${Notice} kind="error">${failed}<//>
  </main>`;
}
