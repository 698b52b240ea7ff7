// The JSON API as the pages use it: every call goes to /api/v1 with the browser's session cookie
// (when the server requires a token), bodies are JSON, and failures become ApiError with the
// server's own code and message. A 401 sends the browser to the login page.

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export async function request(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path.startsWith('/') && !path.startsWith('/api/') && !path.startsWith('/ui/')
      ? '/api/v1' + path : path, init);
  } catch (err) {
    throw new ApiError(0, 'network', 'The server cannot be reached: ' + err.message, null);
  }
  if (response.status === 401 && path !== '/ui/login') {
    const next = location.pathname + location.search;
    location.assign('/login?next=' + encodeURIComponent(next));
    throw new ApiError(401, 'unauthorized', 'Sign in first.', null);
  }
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || 'http_' + response.status,
      error.message || `${method} ${path} failed with ${response.status}`, data);
  }
  return data;
}

export const get = (path) => request('GET', path);
export const post = (path, body = {}) => request('POST', path, body);
export const patch = (path, body) => request('PATCH', path, body);
export const del = (path) => request('DELETE', path);

/** Every page of a paged list endpoint (`limit`/`offset`, `total`), concatenated. */
export async function getAll(path, key, pageSize = 200) {
  const items = [];
  for (let offset = 0; ; offset += pageSize) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(`${path}${sep}limit=${pageSize}&offset=${offset}`);
    items.push(...page[key]);
    if (page[key].length < pageSize || items.length >= page.total) return { items, total: page.total };
  }
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? '?' + text : '';
}
