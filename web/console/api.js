// The one place the console talks to the desk. Every call carries the agent's credential;
// errors arrive in the API's form ({"error": {"code", "message"}}) and are thrown as
// ApiError, so components only handle the cases they care about (401, 409).

import { currentToken, signOut } from './auth.js';
import { t } from './i18n.js';

/** A refused call: `message` in the reader's language where the console knows the code,
 * `detail` the desk's own words (which name the ticket or the field). */
export class ApiError extends Error {
  constructor(status, code, message, detail = message) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/**
 * Calls the API. Returns { status, data, etag }. `etag` sends If-None-Match, and a 304
 * comes back as { status: 304, data: null }. `ifMatch` sends a ticket's version.
 * `idempotencyKey` sends the `Idempotency-Key` under which the desk takes a request once.
 */
export async function api(method, path, { body, etag, ifMatch, signal, idempotencyKey } = {}) {
  const headers = { Accept: 'application/json' };
  const token = currentToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (etag) headers['If-None-Match'] = etag;
  if (ifMatch !== undefined) headers['If-Match'] = `"${ifMatch}"`;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-cache',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', t('error.code.network'), e.message);
  }
  const newEtag = response.headers.get('ETag');
  if (response.status === 304) return { status: 304, data: null, etag: newEtag || etag };
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && token) signOut({ ended: true });
    const err = (data && data.error) || {};
    const code = err.code || 'http_' + response.status;
    const detail = err.message || response.statusText;
    throw new ApiError(response.status, code, inLanguage(code, detail, response.status), detail);
  }
  return { status: response.status, data, etag: newEtag };
}

/** A refusal said in the reader's language: by its code where the console knows it (an
 * entry may add the desk's own words as `{detail}`, marked as a quotation), else by its
 * status, with the desk's words only as that detail. Never the API's English alone. */
function inLanguage(code, detail, status) {
  const key = 'error.code.' + code;
  const quoted = detail ? t('error.detail', { detail }) : '';
  const text = t(key, { detail: quoted });
  if (text !== key) return text;
  return t('error.code.unknown', { status, detail: quoted });
}

/** A new random key, for an `Idempotency-Key` (random UUIDs need a secure context, which a
 * desk reached over plain HTTP on the network is not). */
export function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The query string of the non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}
