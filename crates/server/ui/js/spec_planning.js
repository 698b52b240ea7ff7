// The planner's output while it writes (task status spec_generation or spec_revision; also the
// last output of a failed planning): the planning session's latest interaction, re-read when an
// `interaction.*` event arrives (one request at a time), shown as it grows and kept scrolled to
// the end unless the reader scrolled up. Ids: #planning, #planning-state, #planning-output.

import * as api from './api.js';
import { h, replace } from './dom.js';

const PLANNING = ['spec_generation', 'spec_revision'];

export class PlanningOutput {
  /** `ctx` is the task view's context; `nextRevision()` the number being written, or null. */
  constructor(ctx, nextRevision) {
    this.ctx = ctx;
    this.nextRevision = nextRevision;
    this.busy = false;
    this.dirty = false;
    this.state = h('p', { id: 'planning-state', class: 'meta', 'aria-live': 'polite' });
    this.prompt = h('details', { class: 'planning-prompt' });
    this.output = h('pre', { id: 'planning-output', class: 'planning-output is-empty', role: 'log', 'aria-label': 'Planner output', tabindex: '0' });
    this.el = h('section', { id: 'planning', class: 'planning', 'aria-labelledby': 'planning-heading', hidden: true },
      h('h2', { id: 'planning-heading' }, 'Planner output'), this.state, this.prompt, this.output);
  }

  /** Shows or hides the section for the task's status; refreshes it when shown. */
  update() {
    const task = this.ctx.task;
    const visible = PLANNING.includes(task.status) || (task.status === 'spec_failed' && !!task.spec_session_id);
    this.el.hidden = !visible;
    if (visible) this.refresh();
  }

  /** An event of the task's stream. */
  onEvent(event) {
    if (!this.el.hidden && event.kind.startsWith('interaction.')) this.refresh();
  }

  async refresh() {
    if (this.busy) { this.dirty = true; return; }
    this.busy = true;
    try {
      const sessionId = this.ctx.task.spec_session_id;
      const session = sessionId ? await api.get(`/sessions/${sessionId}`) : null;
      const last = session?.interactions[session.interactions.length - 1];
      if (!last) { this.state.textContent = 'Waiting for the planner…'; return; }
      const out = this.output;
      const atEnd = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
      const next = this.nextRevision();
      if (last.state === 'error') this.state.textContent = `The planner failed: ${last.error || 'unknown error'}`;
      else if (PLANNING.includes(this.ctx.task.status)) {
        this.state.textContent = `The planner is writing ${next ? `revision ${next}` : 'the first draft'}…`;
      } else this.state.textContent = 'The planner has finished.';
      if (this.prompt.dataset.interaction !== last.id) {
        replace(this.prompt, h('summary', {}, 'Prompt'), h('pre', { class: 'prose' }, last.prompt_message));
        this.prompt.dataset.interaction = last.id;
      }
      if (out.textContent !== last.response_message) {
        out.textContent = last.response_message || '';
        out.classList.toggle('is-empty', !last.response_message);
        if (atEnd) out.scrollTop = out.scrollHeight;
      }
    } catch (err) {
      this.state.textContent = err.message;
    } finally {
      this.busy = false;
      if (this.dirty) { this.dirty = false; setTimeout(() => this.refresh(), 150); }
    }
  }
}
