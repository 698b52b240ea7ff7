// The live event stream (`/api/v1/events/stream`), shared by every part of a page: one
// EventSource per filter, resumed by the browser with Last-Event-ID after a dropped connection.
// Listeners get the parsed event (`{id, spec_task_id, kind, entity_id, actor, payload, created_at}`).
// The header's live indicator says whether updates are flowing.

import { boot } from './shell.js';

const sources = new Map();

function indicator(state) {
  const el = document.getElementById('live-status');
  if (!el) return;
  el.dataset.state = state;
  el.textContent = state === 'open' ? 'Live' : state === 'connecting' ? 'Reconnecting…' : 'Offline';
  el.title = state === 'open' ? 'Receiving live updates' : 'Live updates paused; the page retries';
}

/**
 * Calls `listener(event)` for every event committed from now on (of one task when `specTaskId`
 * is given). Returns a function that stops listening.
 */
export function subscribe(specTaskId, listener) {
  const key = specTaskId || '*';
  let entry = sources.get(key);
  if (!entry) {
    const url = '/api/v1/events/stream' + (specTaskId ? '?spec_task_id=' + encodeURIComponent(specTaskId) : '');
    const source = new EventSource(url);
    entry = { source, listeners: new Set() };
    const dispatch = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      for (const fn of entry.listeners) {
        try { fn(event); } catch (err) { console.error('live listener failed', err); }
      }
    };
    // Named SSE events reach only listeners registered for their name.
    for (const kind of boot.event_kinds) source.addEventListener(kind, dispatch);
    source.onopen = () => indicator('open');
    source.onerror = () => indicator(source.readyState === EventSource.CLOSED ? 'closed' : 'connecting');
    sources.set(key, entry);
    indicator('connecting');
  }
  entry.listeners.add(listener);
  return () => {
    entry.listeners.delete(listener);
    if (entry.listeners.size === 0) {
      entry.source.close();
      sources.delete(key);
    }
  };
}
