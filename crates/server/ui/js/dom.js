// Small DOM helpers shared by the pages. Text always goes in as text (never parsed as HTML):
// everything an agent or a user wrote is data.

/** An element: `h('a', {href: '/', class: 'x', onclick: fn}, 'text', child, [more])`. */
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** HTML-escapes text, for the few places that build markup as a string for speed. */
export function esc(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "3 minutes ago", with the exact time as the element's title. */
export function timeAgo(iso) {
  if (!iso) return h('span', {}, '—');
  const date = new Date(iso);
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  const units = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60]];
  let text = relative.format(seconds, 'second');
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) { text = relative.format(Math.round(seconds / size), unit); break; }
  }
  if (Math.abs(seconds) < 10) text = 'just now';
  return h('time', { datetime: iso, title: date.toLocaleString() }, text);
}

/** A status as people read it: `implementation_review` → "implementation review". */
export function label(status) {
  return String(status ?? '').replaceAll('_', ' ');
}

/** A status chip; its class carries the status for colour. */
export function statusChip(status) {
  return h('span', { class: `chip status status-${status}` }, label(status));
}

/** Calls `fn` once `ms` after the last of a burst of calls. */
export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
