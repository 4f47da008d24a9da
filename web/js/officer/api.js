// The transcript archive's HTTP API (docs/http-api.md) as small async functions. The credential (a JWT
// or an API key) lives in sessionStorage: it is gone when the tab closes, and never sent anywhere but
// this server's /api/.

const KEY = 'samtal.officer.credential';

export const credential = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An API error: HTTP status plus the server's `error` code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { query, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  const headers = { Authorization: `Bearer ${credential.get() || ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let code = 'http_error';
    let message = `${response.status} ${response.statusText}`;
    try {
      const err = await response.json();
      code = err.error || code;
      message = err.message || message;
    } catch { /* not JSON */ }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

const json = async (method, path, options) => (await request(method, path, options)).json();

export const whoami = () => json('GET', '/api/whoami');
export const meetings = (filters) => json('GET', '/api/meetings', { query: filters });
export const search = (q, filters) => json('GET', '/api/search', { query: { q, ...filters } });
export const transcript = (id) => json('GET', `/api/meetings/${encodeURIComponent(id)}/transcript`);
/** The meeting's stored summary, or null when it has none (still running, or nothing was said). */
export async function summary(id) {
  try {
    return await json('GET', `/api/meetings/${encodeURIComponent(id)}/summary`);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'no_summary') return null;
    throw e;
  }
}
/** The chat kept with the meeting, oldest first (empty when none was kept). */
export const chat = (id) => json('GET', `/api/meetings/${encodeURIComponent(id)}/chat`);
export const verify = (id) => json('GET', `/api/meetings/${encodeURIComponent(id)}/verify`);
export const hold = (id, on, reason) => json('PUT', `/api/meetings/${encodeURIComponent(id)}/hold`, { body: { hold: on, reason } });
export const remove = (id) => json('DELETE', `/api/meetings/${encodeURIComponent(id)}`);
export const audit = (filters) => json('GET', '/api/audit', { query: filters });
export const auditVerify = () => json('GET', '/api/audit/verify');

/** Fetches a file from the API (with the credential) and hands it to the browser as a download. */
export async function download(path, query) {
  const response = await request('GET', path, { query });
  const disposition = response.headers.get('Content-Disposition') || '';
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] || 'download';
  const blob = await response.blob();
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return name;
}

export const exportTranscript = (id, format) => download(`/api/meetings/${encodeURIComponent(id)}/export`, { format });
export const exportAudit = (format) => download('/api/audit/export', { format });
