// The task's spec view (`/tasks/{id}/spec`): the planner's output while it writes, then the three
// documents of any revision (rendered by the server: `GET /ui/render/spec-tasks/{id}/revisions/
// {n}/{doc}`, sanitised there), a comparison of any two revisions, anchored comments on selected
// text, and the review decision bound to the revision on screen. See task.js for `ctx`.
//
// URL: `?rev=N` the revision shown (default the latest), `?diff=A..B` compare mode (with
// `&layout=split` side by side), `&doc=design` the document tab. Back and forward work.
//
// Stable hooks for browser tests:
//   #planning, #planning-output (the planner's live text), #planning-state
//   #revision-select, #compare-button, #diff-from, #diff-to, #diff-layout, #revision-diff
//   #tab-requirements|#tab-design|#tab-plan, #doc-requirements|#doc-design|#doc-plan (the
//     rendered documents, `data-revision` on each)
//   #newer-revision (notice "Revision N is available"), #show-latest-revision
//   #review, #review-revision (the number decided on), #approve-specs, #request-changes-text,
//     #request-changes, #stale-revision (role=alert, 409 stale_revision), #stale-show-latest,
//     #review-error, #trace-review (the gaps between criteria and plan, trace.js: #trace-warnings)
//   #comment-button (floats by a selection), #comment-form, #comment-text, #comment-quote,
//     #comment-error, #comment-without-quote
//   #comments, `[data-comment-id]` (list items and `mark.comment-anchor` in the documents),
//     `data-state` open|resolved

import * as api from './api.js';
import { h, replace, timeAgo, label, debounce } from './dom.js';
import { toast } from './shell.js';
import { diffTable } from './spec_diff.js';
import { PlanningOutput } from './spec_planning.js';
import { markQuote, sourceQuote } from './spec_text.js';
import { renderWarnings } from './trace.js';

const DOCS = [
  { id: 'requirements', title: 'Requirements', field: 'requirements_spec' },
  { id: 'design', title: 'Design', field: 'technical_design' },
  { id: 'plan', title: 'Implementation plan', field: 'implementation_plan' },
];
const PLANNING = ['spec_generation', 'spec_revision'];

export async function mount(container, ctx) {
  const view = new SpecView(container, ctx);
  await view.start();
}

class SpecView {
  constructor(container, ctx) {
    this.container = container;
    this.ctx = ctx;
    this.revisions = [];
    this.latest = null;
    this.shown = null; // the revision on screen (reading mode)
    this.compare = null; // { from, to } in compare mode
    this.layout = 'unified';
    this.doc = 'requirements';
    this.sources = new Map(); // revision → SpecRevision (the Markdown)
    this.comments = [];
    this.seenLatest = null; // the latest revision the reviewer was told about
    this.selection = null;
  }

  get status() { return this.ctx.task.status; }
  get inReview() { return this.status === 'spec_review'; }
  get commentable() { return this.inReview && !this.compare && this.shown !== null && this.shown === this.latest; }

  async start() {
    this.build();
    this.readUrl();
    await Promise.all([this.loadRevisions(), this.loadComments()]);
    this.seenLatest = this.latest;
    this.planning.update();
    await this.apply();
    this.ctx.subscribe((event) => this.onEvent(event));
    this.ctx.onTask((task, before) => this.onTask(task, before));
    window.addEventListener('popstate', () => { this.readUrl(); this.apply(); });
    document.addEventListener('selectionchange', debounce(() => this.onSelection(), 120));
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && !this.form.hidden) this.closeForm();
    });
  }

  // ---- layout -------------------------------------------------------------------------------

  build() {
    this.notice = h('div', { id: 'spec-notice', class: 'spec-notice', 'aria-live': 'polite' });
    this.planning = new PlanningOutput(this.ctx, () => (this.latest === null ? null : this.latest + 1));

    this.toolbar = h('div', { class: 'spec-toolbar', role: 'group', 'aria-label': 'Revision' });
    this.tabs = h('div', { class: 'doc-tabs', role: 'tablist', 'aria-label': 'Documents' },
      DOCS.map((doc) => h('button', {
        type: 'button', role: 'tab', id: `tab-${doc.id}`, 'aria-controls': `doc-${doc.id}`,
        onclick: () => this.selectDoc(doc.id, true),
        onkeydown: (event) => this.tabKey(event, doc.id),
      }, doc.title)));
    this.panels = DOCS.map((doc) => h('div', {
      id: `doc-${doc.id}`, class: 'doc-body markdown', role: 'tabpanel', 'aria-labelledby': `tab-${doc.id}`, tabindex: '0',
      dataset: { document: doc.id },
    }));
    this.docs = h('div', { class: 'docs', id: 'docs' }, this.tabs, this.panels);
    this.docs.addEventListener('click', (event) => {
      const mark = event.target.closest?.('mark.comment-anchor');
      if (mark) this.focusComment(mark.dataset.commentId);
    });
    this.diff = h('div', { id: 'revision-diff', class: 'revision-diff', hidden: true, 'aria-live': 'polite' });
    this.empty = h('p', { class: 'empty', id: 'no-revisions', hidden: true });

    this.review = h('section', { id: 'review', class: 'review-box', 'aria-labelledby': 'review-heading' });
    this.commentsBox = h('section', { id: 'comments', class: 'comments', 'aria-labelledby': 'comments-heading' });

    this.button = h('button', {
      type: 'button', id: 'comment-button', class: 'comment-button primary small', hidden: true,
      onmousedown: (event) => event.preventDefault(), // keep the selection
      onclick: () => this.openForm(),
    }, 'Comment');
    this.quote = h('blockquote', { id: 'comment-quote', class: 'quote' });
    this.text = h('textarea', { id: 'comment-text', rows: 4, required: true, maxlength: 16384 });
    this.formError = h('p', { id: 'comment-error', class: 'form-error', role: 'alert' });
    this.form = h('form', { id: 'comment-form', class: 'comment-form', hidden: true, 'aria-label': 'New comment' },
      h('p', { class: 'meta' }, 'Comment on'), this.quote,
      h('label', {}, 'Your comment', this.text),
      this.formError,
      h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => this.closeForm() }, 'Cancel'),
        h('button', { type: 'submit', class: 'primary' }, 'Add comment')));
    this.form.addEventListener('submit', (event) => { event.preventDefault(); this.submitComment(true); });

    replace(this.container,
      this.notice, this.planning.el, this.toolbar, this.empty,
      h('div', { class: 'spec-layout' },
        h('div', { class: 'spec-main' }, this.docs, this.diff),
        h('aside', { class: 'spec-side', 'aria-label': 'Review and comments' }, this.review, this.commentsBox)),
      this.button, this.form);
  }

  // ---- URL ----------------------------------------------------------------------------------

  readUrl() {
    const params = new URLSearchParams(location.search);
    const rev = Number.parseInt(params.get('rev') || '', 10);
    this.wantedRev = Number.isInteger(rev) && rev > 0 ? rev : null;
    const diff = /^(\d+)\.\.(\d+)$/.exec(params.get('diff') || '');
    this.compare = diff ? { from: Number(diff[1]), to: Number(diff[2]) } : null;
    this.layout = params.get('layout') === 'split' ? 'split' : 'unified';
    const doc = params.get('doc');
    this.doc = DOCS.some((d) => d.id === doc) ? doc : 'requirements';
  }

  writeUrl(push) {
    const params = new URLSearchParams();
    if (this.compare) {
      params.set('diff', `${this.compare.from}..${this.compare.to}`);
      if (this.layout === 'split') params.set('layout', 'split');
    } else if (this.shown !== null && this.shown !== this.latest) params.set('rev', String(this.shown));
    else if (this.shown !== null && this.wantedRev) params.set('rev', String(this.shown));
    if (this.doc !== 'requirements' && !this.compare) params.set('doc', this.doc);
    const url = location.pathname + (params.toString() ? '?' + params : '');
    if (url === location.pathname + location.search) return;
    if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
  }

  /** Shows what the URL asks for. */
  async apply() {
    this.renderToolbar();
    if (!this.revisions.length) {
      this.docs.hidden = true;
      this.diff.hidden = true;
      this.empty.hidden = false;
      this.empty.textContent = PLANNING.includes(this.status)
        ? 'The first draft appears here when the planner has finished.'
        : 'No specs yet.';
      this.renderReview();
      this.renderComments();
      return;
    }
    this.empty.hidden = true;
    if (this.compare) await this.showDiff();
    else await this.showRevision(this.wantedRev && this.hasRevision(this.wantedRev) ? this.wantedRev : this.latest);
  }

  hasRevision(n) { return this.revisions.some((r) => r.revision === n); }

  async navigate(change) {
    if (this.staleBox) this.staleBox.hidden = true;
    if (this.reviewError) this.reviewError.textContent = '';
    Object.assign(this, change);
    if ('shown' in change) this.wantedRev = change.shown;
    this.writeUrl(true);
    await this.apply();
  }

  // ---- data ---------------------------------------------------------------------------------

  async loadRevisions() {
    const list = await api.get(`/spec-tasks/${this.ctx.taskId}/revisions`);
    this.revisions = list.revisions;
    this.latest = this.revisions.length ? this.revisions[this.revisions.length - 1].revision : null;
  }

  async loadComments() {
    const list = await api.get(`/spec-tasks/${this.ctx.taskId}/comments`);
    this.comments = list.comments;
  }

  async source(n) {
    if (!this.sources.has(n)) this.sources.set(n, await api.get(`/spec-tasks/${this.ctx.taskId}/revisions/${n}`));
    return this.sources.get(n);
  }

  // ---- reading ------------------------------------------------------------------------------

  async showRevision(n) {
    this.shown = n;
    if (n === this.latest) { this.seenLatest = n; replace(this.notice); }
    this.docs.hidden = false;
    this.diff.hidden = true;
    this.renderToolbar();
    this.selectDoc(this.doc, false);
    this.renderReview();
    const base = `/ui/render/spec-tasks/${this.ctx.taskId}/revisions/${n}`;
    await Promise.all([
      this.source(n).catch(() => null),
      ...DOCS.map(async (doc, i) => {
        const panel = this.panels[i];
        if (panel.dataset.revision === String(n)) return;
        panel.setAttribute('aria-busy', 'true');
        try {
          const html = await api.request('GET', `${base}/${doc.id}`);
          if (this.shown !== n) return;
          // Server-rendered and sanitised (raw HTML escaped, unsafe links removed).
          panel.innerHTML = html;
          panel.dataset.revision = String(n);
        } catch (err) {
          replace(panel, h('p', { class: 'error-box', role: 'alert' }, err.message));
          delete panel.dataset.revision;
        } finally {
          panel.removeAttribute('aria-busy');
        }
      }),
    ]);
    this.renderComments();
  }

  selectDoc(id, user) {
    this.doc = id;
    DOCS.forEach((doc, i) => {
      const selected = doc.id === id;
      const tab = this.tabs.children[i];
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
      this.panels[i].hidden = !selected;
    });
    if (user) this.writeUrl(false);
  }

  tabKey(event, id) {
    const i = DOCS.findIndex((d) => d.id === id);
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    let next = null;
    if (step) next = (i + step + DOCS.length) % DOCS.length;
    if (event.key === 'Home') next = 0;
    if (event.key === 'End') next = DOCS.length - 1;
    if (next === null) return;
    event.preventDefault();
    this.selectDoc(DOCS[next].id, true);
    this.tabs.children[next].focus();
  }

  // ---- comparing ----------------------------------------------------------------------------

  async showDiff() {
    const { from, to } = this.compare;
    this.docs.hidden = true;
    this.diff.hidden = false;
    this.renderReview();
    this.renderComments();
    if (!this.hasRevision(from) || !this.hasRevision(to)) {
      replace(this.diff, h('p', { class: 'error-box', role: 'alert' }, `Revision ${this.hasRevision(from) ? to : from} does not exist.`));
      return;
    }
    replace(this.diff, h('p', { class: 'loading' }, `Comparing revision ${from} with revision ${to}…`));
    try {
      const diff = await api.get(`/spec-tasks/${this.ctx.taskId}/revisions/${from}/diff/${to}`);
      if (!this.compare || this.compare.from !== from || this.compare.to !== to) return;
      replace(this.diff,
        h('h2', {}, `Changes from revision ${from} to revision ${to}`),
        h('p', { class: 'meta diff-legend' },
          h('span', { class: 'diff-key diff-add' }, '+ added'), ' ', h('span', { class: 'diff-key diff-del' }, '− removed')),
        DOCS.map((doc) => h('section', { class: 'diff-doc', id: `diff-${doc.id}` },
          diffTable(diff[doc.id], this.layout, doc.title))));
    } catch (err) {
      replace(this.diff, h('p', { class: 'error-box', role: 'alert' }, err.message));
    }
  }

  renderToolbar() {
    if (!this.revisions.length) { replace(this.toolbar); return; }
    const options = (selected) => [...this.revisions].reverse().map((r) => h('option', {
      value: r.revision, selected: r.revision === selected,
    }, `Revision ${r.revision}${r.revision === this.latest ? ' (latest)' : ''} · ${new Date(r.created_at).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' })}`));
    if (!this.compare) {
      const select = h('select', { id: 'revision-select', onchange: (e) => this.navigate({ shown: Number(e.target.value), compare: null }) },
        options(this.shown ?? this.latest));
      replace(this.toolbar,
        h('label', { class: 'inline' }, 'Revision', select),
        h('button', {
          type: 'button', id: 'compare-button', disabled: this.revisions.length < 2,
          title: this.revisions.length < 2 ? 'There is only one revision' : null,
          onclick: () => {
            const to = this.shown ?? this.latest;
            const from = to > 1 ? to - 1 : to + 1;
            this.navigate({ compare: { from: Math.min(from, to), to: Math.max(from, to) } });
          },
        }, 'Compare revisions'),
        this.feedbackNote());
      return;
    }
    const from = h('select', { id: 'diff-from', onchange: (e) => this.navigate({ compare: { ...this.compare, from: Number(e.target.value) } }) }, options(this.compare.from));
    const to = h('select', { id: 'diff-to', onchange: (e) => this.navigate({ compare: { ...this.compare, to: Number(e.target.value) } }) }, options(this.compare.to));
    const layout = h('select', { id: 'diff-layout', onchange: (e) => this.navigate({ layout: e.target.value }) },
      h('option', { value: 'unified', selected: this.layout === 'unified' }, 'Unified'),
      h('option', { value: 'split', selected: this.layout === 'split' }, 'Side by side'));
    replace(this.toolbar,
      h('label', { class: 'inline' }, 'From', from),
      h('label', { class: 'inline' }, 'To', to),
      h('label', { class: 'inline' }, 'Layout', layout),
      h('button', { type: 'button', id: 'read-button', onclick: () => this.navigate({ compare: null, shown: this.compare.to }) },
        `Read revision ${this.compare.to}`));
  }

  /** The review feedback the shown revision answers, if any. */
  feedbackNote() {
    const revision = this.revisions.find((r) => r.revision === this.shown);
    if (!revision?.feedback) return null;
    return h('details', { class: 'feedback' }, h('summary', {}, 'Feedback this revision answers'),
      h('p', { class: 'prose' }, revision.feedback));
  }

  // ---- review -------------------------------------------------------------------------------

  renderReview() {
    const n = this.compare ? null : this.shown;
    const open = this.comments.filter((c) => !c.resolved).length;
    let why = null;
    if (!this.inReview) why = `Decisions are open while the task is in spec review (it is in ${label(this.status)}).`;
    else if (this.compare) why = 'Leave the comparison to decide on one revision.';
    else if (n === null) why = 'There is no revision to decide on yet.';
    const disabled = why !== null;
    this.staleBox = this.staleBox || h('div', { id: 'stale-revision', class: 'stale', role: 'alert', hidden: true });
    this.reviewError = this.reviewError || h('div', { id: 'review-error', class: 'form-error', role: 'alert' });
    this.changesText = this.changesText || h('textarea', { id: 'request-changes-text', rows: 3, maxlength: 16384 });
    // The gaps between criteria and plan, for the latest revision (the one the trace reads).
    this.traceBox = this.traceBox || h('div', { id: 'trace-review', 'aria-live': 'polite' });
    if (this.inReview && n !== null && n === this.latest) {
      if (this.traceFor !== n) {
        this.traceFor = n;
        renderWarnings(this.traceBox, this.ctx.taskId).catch(() => { this.traceFor = null; });
      }
    } else {
      this.traceFor = null;
      replace(this.traceBox);
    }
    replace(this.review,
      h('h2', { id: 'review-heading' }, 'Review'),
      n !== null && this.latest !== null && n !== this.latest
        ? h('p', { class: 'warning' }, `You are reading revision ${n}; revision ${this.latest} is the latest.`)
        : null,
      why ? h('p', { class: 'meta' }, why) : h('p', { class: 'meta' }, 'Deciding on revision ',
        h('strong', { id: 'review-revision' }, String(n)), open ? ` · ${open} open comment${open === 1 ? '' : 's'} go to the planner with a request for changes.` : '.'),
      this.staleBox,
      this.reviewError,
      this.traceBox,
      h('button', { type: 'button', id: 'approve-specs', class: 'primary', disabled, onclick: () => this.decide(true) },
        n !== null && !this.compare ? `Approve revision ${n}` : 'Approve'),
      h('label', {}, 'What should change? (optional with open comments)', this.changesText),
      h('button', { type: 'button', id: 'request-changes', disabled, onclick: () => this.decide(false) }, 'Request changes'));
    this.changesText.disabled = disabled;
  }

  async decide(approved) {
    const revision = this.shown;
    const body = { approved, revision };
    const text = this.changesText.value.trim();
    if (!approved && text) body.comments = text;
    this.staleBox.hidden = true;
    this.reviewError.textContent = '';
    for (const id of ['approve-specs', 'request-changes']) this.review.querySelector('#' + id).disabled = true;
    try {
      const task = await api.post(`/spec-tasks/${this.ctx.taskId}/approve-specs`, body);
      if (!approved) this.changesText.value = '';
      toast(approved ? `Revision ${revision} approved` : `Changes requested on revision ${revision}; the planner is revising`, 'ok');
      this.ctx.setTask(task);
    } catch (err) {
      if (err.code === 'stale_revision') this.showStale(err);
      else if (err.code === 'plan_invalid') {
        const problems = err.body?.error?.plan_errors || [];
        replace(this.reviewError, h('p', {}, err.message),
          problems.length ? h('ul', {}, problems.map((p) => h('li', {}, p.message))) : null);
      } else this.reviewError.textContent = err.message;
      await this.ctx.refreshTask().catch(() => null);
      this.renderReview();
      if (err.code === 'stale_revision') this.staleBox.hidden = false;
    }
  }

  showStale(err) {
    const latest = err.body?.error?.latest_revision;
    replace(this.staleBox,
      h('p', {}, h('strong', {}, 'Not decided: '), err.message),
      latest ? h('button', {
        type: 'button', id: 'stale-show-latest', class: 'primary small',
        onclick: async () => {
          await this.refreshRevisions();
          this.navigate({ shown: latest, compare: null });
        },
      }, `Show revision ${latest}`) : null);
    this.staleBox.hidden = false;
    this.staleBox.scrollIntoView?.({ block: 'nearest' });
  }

  // ---- comments -----------------------------------------------------------------------------

  renderComments() {
    const shown = this.compare ? null : this.shown;
    const here = this.comments.filter((c) => c.revision === shown);
    const elsewhere = this.comments.length - here.length;
    const open = here.filter((c) => !c.resolved).length;
    const items = here.map((c) => {
      const doc = DOCS.find((d) => d.id === c.document);
      return h('li', { class: 'comment', dataset: { commentId: c.id, state: c.resolved ? 'resolved' : 'open' }, tabindex: '-1' },
        h('p', { class: 'comment-meta' },
          h('span', { class: `chip comment-state state-${c.resolved ? 'resolved' : 'open'}` },
            c.resolved ? `resolved${c.resolved_in_revision ? ' in revision ' + c.resolved_in_revision : ''}` : 'open'),
          ' ', h('span', {}, doc ? doc.title : c.document), ' · ', c.created_by, ' · ', timeAgo(c.created_at)),
        c.quoted_text ? h('blockquote', { class: 'quote' }, c.quoted_text) : null,
        c.line ? h('p', { class: 'meta' }, `Line ${c.line}`) : null,
        h('p', { class: 'prose comment-text' }, c.comment),
        c.quoted_text ? h('button', { type: 'button', class: 'link small', onclick: () => this.showAnchor(c) }, 'Show in document') : null);
    });
    replace(this.commentsBox,
      h('h2', { id: 'comments-heading' }, 'Comments ', h('span', { class: 'count' }, here.length ? `${open} open of ${here.length}` : '')),
      this.commentable
        ? h('p', { class: 'help' }, 'Select text in a document to comment on it.')
        : h('p', { class: 'help' }, 'Comments can be added to the latest revision while the task is in spec review.'),
      items.length ? h('ol', { class: 'comment-list' }, items)
        : h('p', { class: 'empty' }, shown === null ? 'Comments belong to one revision.' : `No comments on revision ${shown}.`),
      elsewhere && shown !== null ? h('p', { class: 'meta' }, `${elsewhere} comment${elsewhere === 1 ? '' : 's'} on other revisions.`) : null);
    this.markComments(here);
  }

  /** Highlights each comment's quote in its rendered document. */
  markComments(comments) {
    for (const panel of this.panels) {
      for (const mark of panel.querySelectorAll('mark.comment-anchor')) mark.replaceWith(...mark.childNodes);
      panel.normalize();
    }
    for (const c of comments) {
      if (!c.quoted_text) continue;
      const panel = this.panels[DOCS.findIndex((d) => d.id === c.document)];
      if (!panel || panel.dataset.revision !== String(c.revision)) continue;
      const marks = markQuote(panel, c.quoted_text, {
        dataset: { commentId: c.id, state: c.resolved ? 'resolved' : 'open' },
        title: `${c.resolved ? 'Resolved' : 'Open'} comment: ${c.comment}`,
      });
      const item = this.commentsBox.querySelector(`li[data-comment-id="${CSS.escape(c.id)}"]`);
      if (!marks.length && item) item.append(h('p', { class: 'meta unanchored' }, 'The quoted text is not visible in the rendered document.'));
    }
  }

  showAnchor(comment) {
    this.selectDoc(comment.document, true);
    const mark = this.container.querySelector(`mark.comment-anchor[data-comment-id="${CSS.escape(comment.id)}"]`);
    if (!mark) { toast('The quoted text is not visible in the rendered document.'); return; }
    mark.scrollIntoView({ block: 'center' });
    mark.classList.add('flash');
    setTimeout(() => mark.classList.remove('flash'), 1600);
  }

  focusComment(id) {
    const item = this.commentsBox.querySelector(`li[data-comment-id="${CSS.escape(id)}"]`);
    if (!item) return;
    item.scrollIntoView({ block: 'nearest' });
    item.focus();
    item.classList.add('flash');
    setTimeout(() => item.classList.remove('flash'), 1600);
  }

  onSelection() {
    if (!this.form.hidden) return;
    const selection = document.getSelection();
    const text = selection && !selection.isCollapsed ? selection.toString() : '';
    const range = text.trim() && selection.rangeCount ? selection.getRangeAt(0) : null;
    const node = range?.commonAncestorContainer;
    const panel = (node?.nodeType === Node.ELEMENT_NODE ? node : node?.parentElement)?.closest('.doc-body');
    if (!range || !panel || !this.commentable || !this.panels.includes(panel)) {
      this.button.hidden = true;
      this.selection = null;
      return;
    }
    this.selection = { document: panel.dataset.document, text, rect: range.getBoundingClientRect() };
    this.place(this.button, this.selection.rect);
    this.button.hidden = false;
  }

  /** Positions a floating element under `rect` (viewport coordinates) inside the view. */
  place(el, rect) {
    const box = this.container.getBoundingClientRect();
    const width = Math.min(el.offsetWidth || 120, box.width);
    el.style.top = `${Math.round(rect.bottom - box.top + 6)}px`;
    el.style.left = `${Math.round(Math.max(0, Math.min(rect.left - box.left, box.width - width)))}px`;
  }

  openForm() {
    if (!this.selection) return;
    this.pending = this.selection;
    this.button.hidden = true;
    const quote = this.pending.text.trim();
    this.quote.textContent = quote.length > 300 ? quote.slice(0, 300) + '…' : quote;
    this.formError.textContent = '';
    this.text.value = '';
    this.form.hidden = false;
    this.place(this.form, this.pending.rect);
    this.text.focus();
  }

  closeForm() {
    this.form.hidden = true;
    this.pending = null;
  }

  async submitComment(withQuote) {
    const pending = this.pending;
    if (!pending || !this.text.value.trim()) { this.formError.textContent = 'Write a comment first.'; return; }
    const body = { document: pending.document, comment: this.text.value };
    if (withQuote) {
      const source = await this.source(this.shown).catch(() => null);
      const markdown = source ? source[DOCS.find((d) => d.id === pending.document).field] : '';
      body.quoted_text = sourceQuote(pending.text, markdown) ?? pending.text.trim();
    }
    try {
      await api.post(`/spec-tasks/${this.ctx.taskId}/comments`, body);
      this.closeForm();
      document.getSelection()?.removeAllRanges();
      toast('Comment added', 'ok');
      await this.loadComments();
      this.renderComments();
      this.renderReview();
    } catch (err) {
      replace(this.formError, err.message);
      if (err.code === 'quote_not_found') {
        this.formError.append(' ', h('button', {
          type: 'button', id: 'comment-without-quote', class: 'link small', onclick: () => this.submitComment(false),
        }, 'Add it to the document without the quote'));
      }
    }
  }

  // ---- live ---------------------------------------------------------------------------------

  onEvent(event) {
    this.planning.onEvent(event);
    if (event.kind === 'revision.created') this.onNewRevision();
    else if (event.kind.startsWith('comment.')) this.loadComments().then(() => { this.renderComments(); this.renderReview(); }).catch(() => null);
  }

  async refreshRevisions() {
    await this.loadRevisions();
    this.renderToolbar();
  }

  async onNewRevision() {
    const before = this.latest;
    await this.refreshRevisions().catch(() => null);
    if (this.latest === before) return;
    await this.loadComments().catch(() => null);
    if (before === null) {
      // Nothing was on screen: show the first draft.
      this.seenLatest = this.latest;
      await this.apply();
      return;
    }
    this.renderReview();
    this.renderComments();
    this.showNewer();
  }

  /** Tells the reviewer that a newer revision exists, without changing what they read. */
  showNewer() {
    if (this.latest === null || this.latest === this.seenLatest || this.shown === this.latest) {
      replace(this.notice);
      return;
    }
    // The address names what is on screen, so reloading or coming back shows the same revision.
    if (!this.compare && this.shown !== null && !this.wantedRev) {
      this.wantedRev = this.shown;
      this.writeUrl(false);
    }
    replace(this.notice, h('div', { id: 'newer-revision', class: 'notice' },
      h('span', {}, `Revision ${this.latest} is available.`), ' ',
      h('button', {
        type: 'button', id: 'show-latest-revision', class: 'primary small',
        onclick: () => { this.seenLatest = this.latest; replace(this.notice); this.navigate({ shown: this.latest, compare: null }); },
      }, `Show revision ${this.latest}`), ' ',
      this.shown !== null ? h('button', {
        type: 'button', class: 'small',
        onclick: () => { this.seenLatest = this.latest; replace(this.notice); this.navigate({ compare: { from: this.shown, to: this.latest } }); },
      }, `Compare with revision ${this.shown}`) : null));
  }

  onTask(task, before) {
    if (before && task.status === before.status) return;
    this.planning.update();
    this.renderReview();
    this.renderComments();
    if (!this.revisions.length) this.apply();
  }
}
