//! Recognising tasks in the block outline. Walks the document once in order and produces raw
//! tasks (with the key as written, the structural parent, metadata and description pieces),
//! phases, context sections and the statements of prose dependency sections. Keys, parents and
//! dependencies are settled afterwards by `assemble` and `deps`.
//!
//! What counts as a task, decided once per document:
//! - every list item with a checkbox, except inside acceptance criteria and in checklists beside
//!   a numbered or heading plan (open questions, verification checks);
//! - every heading keyed with a task word or spec-kit id (`## Task 1: ...`, `### Step 3 — ...`),
//!   and numbered headings (`### 2. Title`) under a task heading, or anywhere in a plan with
//!   neither checkboxes nor task words;
//! - when neither exists, the items of top-level numbered lists (`1. Create the schema`).
//!
//! Why this file is long: it is one walker over one document, and its parts (headings, lists,
//! items, paragraphs, dependency prose) share the walker's state (the open task, phase, section
//! and dependency scopes) at every step; split across files, each part would need the whole
//! state anyway, and the order of the decisions would no longer be readable in one place.

use std::ops::Range;

use super::blocks::{Doc, Kind, Line};
use super::head::{Head, clean, head_from};
use super::model::PlanTaskStatus;
use super::refs::{DepRefs, Ref, dep_refs, prose_statement, requirement_refs};
use super::rules::{Rules, rules};
use super::text::{
    KeyKind, Label, check_command, is_acceptance_heading, is_checkpoint, is_deps_heading,
    is_generic_task_section, is_prose_section, key_prefix, label, ordered_number, phase_heading,
    strip_emph, text_checkbox,
};

/// A slice of source kept for a description; `tight` joins it to the previous piece with one
/// line break (items of one list, lines of one paragraph) instead of a blank line.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub range: Range<usize>,
    pub tight: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RawTask {
    pub raw_key: Option<String>,
    pub key_kind: Option<KeyKind>,
    pub from_heading: bool,
    pub numbered_item: bool,
    /// Byte offset of the checkbox's state character.
    pub checkbox: Option<usize>,
    pub status: PlanTaskStatus,
    pub title: String,
    /// Text that did not fit the title, put first in the description.
    pub title_overflow: Option<String>,
    /// 0-based source line.
    pub line: usize,
    /// The enclosing task in the outline (numbering may override it).
    pub parent: Option<usize>,
    pub phase: Option<usize>,
    pub pieces: Vec<Piece>,
    pub criteria: Vec<String>,
    pub reqs: Vec<String>,
    /// Commands of `Verify:` lines.
    pub checks: Vec<String>,
    pub deps: Vec<(DepRefs, usize)>,
    pub effort: Option<String>,
    pub parallel: bool,
    pub optional: bool,
    pub checkpoint: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RawPhase {
    pub title: String,
    pub line: usize,
    pub ordered: bool,
    pub number: Option<String>,
    pub pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawSection {
    pub heading: Option<String>,
    pub line: usize,
    pub pieces: Vec<Piece>,
    /// Generic names (`## Tasks`) never become phases.
    pub generic: bool,
    /// Set once a task appears directly under the section: it is then a phase.
    pub phase: Option<usize>,
}

/// `dependents` wait for `prereqs`, as stated on `line` of a dependency section.
#[derive(Debug, Clone)]
pub(crate) struct ProseDep {
    pub dependents: Vec<Ref>,
    pub prereqs: Vec<Ref>,
    pub line: usize,
    pub text: String,
}

#[derive(Debug, Default)]
pub(crate) struct Extracted {
    pub title: Option<String>,
    pub tasks: Vec<RawTask>,
    pub phases: Vec<RawPhase>,
    pub sections: Vec<RawSection>,
    pub prose_deps: Vec<ProseDep>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Task(usize),
    Phase(usize),
    Section(usize),
    Criteria(usize),
    Deps(usize),
    /// A plain heading inside a task: its content stays the task's.
    Sub,
}

#[derive(Debug, Clone, Copy)]
struct Ctx {
    level: u8,
    scope: Scope,
}

/// Who receives a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Task(usize),
    Criteria(usize),
    Deps(usize),
    Phase(usize),
    Section(usize),
}

pub(crate) fn extract(doc: &Doc<'_>) -> Extracted {
    let mut w = Walker::new(doc);
    for &id in &doc.roots {
        w.root(id);
    }
    w.out
}

struct Walker<'a, 'd> {
    doc: &'d Doc<'a>,
    rules: Rules,
    out: Extracted,
    ctx: Vec<Ctx>,
    preamble: Option<usize>,
    pending_criteria: Option<usize>,
}

impl<'a, 'd> Walker<'a, 'd> {
    fn new(doc: &'d Doc<'a>) -> Self {
        Walker {
            doc,
            rules: rules(doc),
            out: Extracted::default(),
            ctx: Vec::new(),
            preamble: None,
            pending_criteria: None,
        }
    }

    fn kind(&self, id: usize) -> Option<Kind> {
        self.doc.kind(id)
    }

    fn lines(&self, id: usize) -> &'d [Line] {
        self.doc.lines(id)
    }

    fn children(&self, id: usize) -> &'d [usize] {
        self.doc.children(id)
    }

    fn range(&self, id: usize) -> Range<usize> {
        self.doc.range(id)
    }

    fn root(&mut self, id: usize) {
        match self.kind(id) {
            Some(Kind::Heading(level)) => self.heading(id, level),
            Some(_) => {
                let owner = self.owner();
                self.block(id, owner);
            }
            None => {}
        }
    }

    fn owner(&mut self) -> Owner {
        for c in self.ctx.iter().rev() {
            match c.scope {
                Scope::Task(t) => return Owner::Task(t),
                Scope::Criteria(t) => return Owner::Criteria(t),
                Scope::Deps(s) => return Owner::Deps(s),
                Scope::Phase(p) => return Owner::Phase(p),
                Scope::Section(s) => return Owner::Section(s),
                Scope::Sub => {}
            }
        }
        Owner::Section(self.preamble_section())
    }

    fn preamble_section(&mut self) -> usize {
        if let Some(s) = self.preamble {
            return s;
        }
        let s = self.new_section(None, 0, true);
        self.preamble = Some(s);
        s
    }

    fn new_section(&mut self, heading: Option<String>, line: usize, generic: bool) -> usize {
        self.out.sections.push(RawSection {
            heading,
            line,
            pieces: Vec::new(),
            generic,
            phase: None,
        });
        self.out.sections.len() - 1
    }

    fn innermost_deps(&self) -> Option<usize> {
        self.ctx.iter().rev().find_map(|c| match c.scope {
            Scope::Deps(s) => Some(s),
            _ => None,
        })
    }

    fn innermost_phase(&self) -> Option<usize> {
        self.ctx.iter().rev().find_map(|c| match c.scope {
            Scope::Phase(p) => Some(p),
            _ => None,
        })
    }

    fn innermost_task(&self) -> Option<usize> {
        self.ctx.iter().rev().find_map(|c| match c.scope {
            Scope::Task(t) => Some(t),
            _ => None,
        })
    }

    fn heading(&mut self, id: usize, level: u8) {
        let text = self.doc.heading_text(id);
        let line = self.doc.line_of(self.range(id).start);
        while self.ctx.last().is_some_and(|c| c.level >= level) {
            self.ctx.pop();
        }
        self.pending_criteria = None;
        let in_task = self.innermost_task();
        let head = self.heading_head(id, &text, in_task.is_some());
        if level == 1
            && self.out.title.is_none()
            && self.out.tasks.is_empty()
            && in_task.is_none()
            && head.is_none()
        {
            self.out.title = Some(clean(&strip_emph(&text)));
            return;
        }
        let plain = clean(&strip_emph(&text));
        let scope = if let Some(head) = head {
            let t = self.new_task(head, id, line, true, false);
            Scope::Task(t)
        } else if let Some(t) = in_task {
            if is_acceptance_heading(&text) {
                Scope::Criteria(t)
            } else {
                self.piece(Owner::Task(t), self.range(id), false);
                Scope::Sub
            }
        } else if let Some(s) = self.innermost_deps() {
            // Sub-headings of a dependency section (`### Phase Dependencies`) stay in it.
            self.piece(Owner::Deps(s), self.range(id), false);
            Scope::Deps(s)
        } else if let Some(number) = phase_heading(&plain) {
            self.out.phases.push(RawPhase {
                title: plain,
                line,
                ordered: true,
                number,
                pieces: Vec::new(),
            });
            Scope::Phase(self.out.phases.len() - 1)
        } else if is_deps_heading(&text) {
            let s = self.new_section(Some(plain), line, true);
            Scope::Deps(s)
        } else if let Some(p) = self.innermost_phase() {
            // A group inside a phase (`### Tests for User Story 1`): its prose is the phase's.
            let s = self.new_section(Some(plain), line, true);
            if let Some(sec) = self.out.sections.get_mut(s) {
                sec.phase = Some(p);
            }
            Scope::Section(s)
        } else {
            let generic = is_generic_task_section(&text) || is_acceptance_heading(&text);
            let s = self.new_section(Some(plain), line, generic);
            Scope::Section(s)
        };
        self.ctx.push(Ctx { level, scope });
    }

    /// The head of a heading task, or `None` when the heading is not one.
    /// Numbered headings are tasks in plans of numbered headings, and under a task heading in
    /// any plan (`## Task 2` → `### 2.1 Handler`); elsewhere they number document sections
    /// (`## 1. Overview`).
    fn heading_head(&self, id: usize, text: &str, in_task: bool) -> Option<Head> {
        let first = text.trim();
        let (status, rest) = match self.rules.checkboxes.get(id).copied().flatten() {
            Some(_) => text_checkbox(first)
                .map_or((PlanTaskStatus::NoCheckbox, first), |(s, r)| {
                    (s, r.trim_start())
                }),
            None => (PlanTaskStatus::NoCheckbox, first),
        };
        let plain = strip_emph(rest);
        let k = key_prefix(&plain)?;
        let ok = match k.kind {
            KeyKind::TKey | KeyKind::Word => true,
            KeyKind::Numeric => {
                (self.rules.numeric_headings_are_tasks || in_task) && !is_prose_section(k.rest)
            }
            KeyKind::Placeholder => false,
        };
        if !ok {
            return None;
        }
        Some(head_from(rest, &[], status, None))
    }

    fn phase_for_new_task(&mut self) -> Option<usize> {
        for c in self.ctx.iter().rev() {
            if let Scope::Phase(p) = c.scope {
                return Some(p);
            }
        }
        let s = self.ctx.iter().rev().find_map(|c| match c.scope {
            Scope::Section(s) => Some(s),
            _ => None,
        })?;
        let sec = self.out.sections.get_mut(s)?;
        if sec.generic {
            return None;
        }
        if let Some(p) = sec.phase {
            return Some(p);
        }
        let p = self.out.phases.len();
        self.out.phases.push(RawPhase {
            title: sec.heading.clone().unwrap_or_default(),
            line: sec.line,
            ordered: false,
            number: None,
            pieces: std::mem::take(&mut sec.pieces),
        });
        sec.phase = Some(p);
        Some(p)
    }

    fn new_task(
        &mut self,
        head: Head,
        node: usize,
        line: usize,
        from_heading: bool,
        numbered_item: bool,
    ) -> usize {
        let parent = self.innermost_task();
        let phase = match parent {
            Some(p) => self.out.tasks.get(p).and_then(|t| t.phase),
            None => self.phase_for_new_task(),
        };
        let checkbox = self.rules.checkboxes.get(node).copied().flatten();
        let checkpoint = is_checkpoint(&head.title);
        let t = self.out.tasks.len();
        self.out.tasks.push(RawTask {
            raw_key: head.key,
            key_kind: head.kind,
            from_heading,
            numbered_item,
            checkbox: if head.status == PlanTaskStatus::NoCheckbox {
                None
            } else {
                checkbox
            },
            status: head.status,
            title: head.title,
            title_overflow: head.overflow,
            line,
            parent,
            phase,
            pieces: Vec::new(),
            criteria: Vec::new(),
            reqs: head.stories,
            checks: Vec::new(),
            deps: Vec::new(),
            effort: None,
            parallel: head.parallel,
            optional: head.optional,
            checkpoint,
        });
        for (kind, value) in head.metas {
            self.apply_label(t, kind, &value, line);
        }
        t
    }

    fn apply_label(&mut self, t: usize, kind: Label, value: &str, line: usize) {
        let Some(task) = self.out.tasks.get_mut(t) else {
            return;
        };
        match kind {
            Label::Depends => task.deps.push((dep_refs(value), line)),
            Label::Requirements => requirement_refs(value, &mut task.reqs),
            Label::Effort => {
                if task.effort.is_none() && !value.trim().is_empty() {
                    task.effort = Some(value.trim().to_owned());
                }
            }
            Label::Acceptance => {
                if !value.trim().is_empty() {
                    task.criteria.push(value.trim().to_owned());
                }
            }
            Label::Verify => {
                if let Some(command) = check_command(value) {
                    task.checks.push(command);
                }
            }
        }
    }

    fn piece(&mut self, owner: Owner, range: Range<usize>, tight: bool) {
        let p = Piece { range, tight };
        match owner {
            Owner::Task(t) | Owner::Criteria(t) => {
                if let Some(task) = self.out.tasks.get_mut(t) {
                    task.pieces.push(p);
                }
            }
            Owner::Phase(ph) => {
                if let Some(phase) = self.out.phases.get_mut(ph) {
                    phase.pieces.push(p);
                }
            }
            Owner::Section(s) | Owner::Deps(s) => {
                let phase = self.out.sections.get(s).and_then(|sec| sec.phase);
                match phase.and_then(|ph| self.out.phases.get_mut(ph)) {
                    Some(phase) => phase.pieces.push(p),
                    None => {
                        if let Some(sec) = self.out.sections.get_mut(s) {
                            sec.pieces.push(p);
                        }
                    }
                }
            }
        }
    }

    fn block(&mut self, id: usize, owner: Owner) {
        let criteria = self.pending_criteria.take();
        match self.kind(id) {
            Some(Kind::List { ordered }) => self.list(id, ordered, owner, criteria),
            Some(Kind::Para) => self.para(id, 0, owner),
            Some(Kind::Rule) => {}
            Some(_) => {
                if let Owner::Deps(_) = owner {
                    self.prose_deps(id);
                }
                let start = self.doc.block_start(self.range(id).start);
                self.piece(owner, start..self.range(id).end, false);
            }
            None => {}
        }
    }

    fn list(&mut self, id: usize, ordered: bool, owner: Owner, criteria: Option<usize>) {
        let criteria = match owner {
            Owner::Criteria(t) => Some(t),
            _ => criteria,
        };
        let task_list = self.rules.numbered_lists.contains(&id);
        let mut first = true;
        for &item in self.children(id) {
            if let Some(t) = criteria {
                self.criterion_item(t, item);
                continue;
            }
            match self.item_head(item, ordered, task_list) {
                Some(head) => self.item_task(item, head, task_list),
                None => self.detail_item(item, owner, !first),
            }
            first = false;
            self.pending_criteria = None;
        }
    }

    fn item_head(&self, item: usize, ordered: bool, task_list: bool) -> Option<Head> {
        let boxed = self.rules.checkboxes.get(item).copied().flatten().is_some()
            && self.rules.has_task.get(item).copied().unwrap_or(false);
        if !boxed && !task_list {
            return None;
        }
        let &para = self.children(item).first()?;
        if self.kind(para) != Some(Kind::Para) {
            return None;
        }
        let lines = self.lines(para);
        let (first, more) = lines.split_first()?;
        let mut text = self.doc.text(first);
        let mut status = PlanTaskStatus::NoCheckbox;
        if boxed {
            let (s, rest) = text_checkbox(text)?;
            status = s;
            text = rest;
        }
        let number = if ordered {
            ordered_number(self.doc.src, self.range(item).start)
        } else {
            None
        };
        // Only the first few lines can continue a title.
        let more: Vec<&str> = more.iter().take(8).map(|l| self.doc.text(l)).collect();
        Some(head_from(text, &more, status, number))
    }

    fn item_task(&mut self, item: usize, head: Head, numbered: bool) {
        let line = self.doc.line_of(self.range(item).start);
        let consumed = head.consumed;
        let t = self.new_task(head, item, line, false, numbered);
        self.ctx.push(Ctx {
            level: u8::MAX,
            scope: Scope::Task(t),
        });
        let children = self.children(item);
        if let Some((&first, rest)) = children.split_first() {
            self.para(first, consumed, Owner::Task(t));
            for &c in rest {
                self.block(c, Owner::Task(t));
            }
        }
        self.pending_criteria = None;
        self.ctx.pop();
    }

    fn criterion_item(&mut self, t: usize, item: usize) {
        let text = self.item_first_line(item);
        let text = text_checkbox(text.trim()).map_or(text.trim(), |(_, r)| r.trim());
        if let Some(task) = self.out.tasks.get_mut(t)
            && !text.is_empty()
        {
            task.criteria.push(text.to_owned());
        }
    }

    /// The plain text of an item's first paragraph, lines joined by spaces.
    fn item_first_line(&self, item: usize) -> String {
        let Some(&para) = self.children(item).first() else {
            return String::new();
        };
        if self.kind(para) != Some(Kind::Para) {
            return String::new();
        }
        let mut s = String::new();
        for l in self.lines(para) {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(strip_emph(self.doc.text(l)).trim());
        }
        s
    }

    fn detail_item(&mut self, item: usize, owner: Owner, tight: bool) {
        let children = self.children(item);
        let first_para = children
            .first()
            .copied()
            .filter(|&p| self.kind(p) == Some(Kind::Para));
        if let (Owner::Task(t), Some(p)) = (owner, first_para) {
            let first = self.lines(p).first().map_or("", |l| self.doc.text(l));
            if let Some((kind, value)) = label(first) {
                let line = self.doc.line_of(self.range(item).start);
                self.apply_label(t, kind, &value, line);
                // `- Requirements:` followed by one id per nested bullet, or
                // `- Acceptance criteria:` followed by one criterion per bullet.
                for &c in children.iter().skip(1) {
                    if let Some(Kind::List { .. }) = self.kind(c) {
                        for &sub in self.children(c) {
                            let v = self.item_first_line(sub);
                            let v = text_checkbox(&v).map_or(v.as_str(), |(_, r)| r.trim());
                            let l = self.doc.line_of(self.range(sub).start);
                            if kind != Label::Effort {
                                self.apply_label(t, kind, v, l);
                            }
                        }
                    }
                }
                return;
            }
        }
        if let Owner::Deps(_) = owner {
            self.prose_deps(item);
        }
        if self.rules.has_task.get(item).copied().unwrap_or(false) {
            // A grouping bullet over checkbox tasks: keep its own text, walk its children.
            if let Some(p) = first_para {
                let r = self.range(p);
                let start = self.doc.block_start(self.range(item).start);
                self.piece(owner, start..r.end, tight);
            }
            for &c in children.iter().skip(usize::from(first_para.is_some())) {
                self.block(c, owner);
            }
        } else {
            let r = self.range(item);
            let start = self.doc.block_start(r.start);
            self.piece(owner, start..r.end, tight);
        }
    }

    fn para(&mut self, id: usize, from: usize, owner: Owner) {
        if self.kind(id) != Some(Kind::Para) {
            self.block(id, owner);
            return;
        }
        let lines = self.lines(id).get(from..).unwrap_or(&[]);
        if lines.is_empty() {
            return;
        }
        match owner {
            Owner::Task(t) => {
                let mut run: Option<(usize, usize)> = None;
                let mut first_run = true;
                for l in lines {
                    if let Some((kind, value)) = label(self.doc.text(l)) {
                        if kind == Label::Acceptance && value.is_empty() {
                            self.pending_criteria = Some(t);
                        }
                        self.apply_label(t, kind, &value, l.line);
                        if let Some((a, b)) = run.take() {
                            self.line_piece(owner, a, b, !first_run);
                            first_run = false;
                        }
                    } else {
                        run = Some(run.map_or((l.line, l.line), |(a, _)| (a, l.line)));
                    }
                }
                if let Some((a, b)) = run {
                    self.line_piece(owner, a, b, !first_run);
                }
            }
            Owner::Criteria(t) => {
                for l in lines {
                    let text = clean(&strip_emph(self.doc.text(l)));
                    if let Some(task) = self.out.tasks.get_mut(t)
                        && !text.is_empty()
                    {
                        task.criteria.push(text);
                    }
                }
            }
            Owner::Deps(_) | Owner::Phase(_) | Owner::Section(_) => {
                if let Owner::Deps(_) = owner {
                    self.prose_deps(id);
                }
                if let (Some(a), Some(b)) = (lines.first(), lines.last()) {
                    self.line_piece(owner, a.line, b.line, false);
                }
            }
        }
    }

    fn line_piece(&mut self, owner: Owner, first: usize, last: usize, tight: bool) {
        let start = self.doc.line_range(first).start;
        let end = self.doc.line_range(last).end;
        if start < end {
            self.piece(owner, start..end, tight);
        }
    }

    /// Dependency statements in every paragraph under `id`.
    fn prose_deps(&mut self, id: usize) {
        let mut stack = vec![(id, 0usize)];
        while let Some((n, depth)) = stack.pop() {
            if self.kind(n) == Some(Kind::Para) {
                for l in self.lines(n) {
                    let text = strip_emph(self.doc.text(l));
                    if let Some((dependents, prereqs)) = prose_statement(&text) {
                        self.out.prose_deps.push(ProseDep {
                            dependents,
                            prereqs,
                            line: l.line,
                            text: text.trim().to_owned(),
                        });
                    }
                }
            }
            if depth <= 2 * super::blocks::MAX_DEPTH {
                for &c in self.children(n).iter().rev() {
                    stack.push((c, depth + 1));
                }
            }
        }
    }
}
