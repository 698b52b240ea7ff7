//! The walk over a requirements document's outline (the plan parser's [`Doc`]): headings open
//! and close requirement and acceptance scopes, list items and paragraph lines become criteria.
//! Code blocks, tables and HTML are opaque in the outline, so nothing in them is read.

use std::collections::HashSet;

use super::ids::{
    id_prefix, is_acceptance_label, is_child_of, is_ears, is_numeric_id, one_line,
    requirement_heading,
};
use super::{CriteriaParse, Criterion};
use crate::plan::blocks::{Doc, Kind};
use crate::plan::text::{is_acceptance_heading, ordered_number, text_checkbox};

/// Words a bare dotted id needs after it (`1.1 Overview` is a table of contents, not a
/// criterion) unless the rest is an EARS statement or the id is bold.
const MIN_WORDS_AFTER_NUMERIC_ID: usize = 3;

/// What a heading opened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// A requirement or user story; `next` numbers its unnumbered criteria.
    Requirement {
        id: String,
        next: u64,
    },
    /// `#### Acceptance Criteria`: every item below it is a criterion.
    Acceptance,
    Other,
}

#[derive(Debug)]
struct Open {
    level: u8,
    scope: Scope,
}

/// Where a criterion went, so the wrapped lines of a paragraph can follow it.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Kept(usize),
    Duplicate(usize),
}

pub(super) fn walk(doc: &Doc<'_>) -> CriteriaParse {
    let mut w = Walker {
        doc,
        out: CriteriaParse::default(),
        seen: HashSet::new(),
        open: Vec::new(),
        labelled_acceptance: false,
    };
    for &id in &doc.roots {
        w.block(id);
    }
    w.out
}

struct Walker<'a, 'd> {
    doc: &'d Doc<'a>,
    out: CriteriaParse,
    seen: HashSet<String>,
    /// Headings enclosing the current block, outermost first.
    open: Vec<Open>,
    /// A paragraph such as `**Acceptance Scenarios**:` announced the lists that follow.
    labelled_acceptance: bool,
}

impl Walker<'_, '_> {
    fn block(&mut self, id: usize) {
        match self.doc.kind(id) {
            Some(Kind::Heading(level)) => self.heading(id, level),
            Some(Kind::Para) => self.paragraph(id, true),
            Some(Kind::List { ordered }) => self.list(id, ordered, true),
            Some(Kind::Quote) => {
                for &c in self.doc.children(id) {
                    self.block(c);
                }
            }
            Some(Kind::Item | Kind::Rule | Kind::Opaque) | None => {}
        }
    }

    fn heading(&mut self, id: usize, level: u8) {
        let text = self.doc.heading_text(id);
        while self.open.last().is_some_and(|o| o.level >= level) {
            self.open.pop();
        }
        self.labelled_acceptance = false;
        let scope = if let Some(req) = requirement_heading(&text) {
            Scope::Requirement { id: req, next: 1 }
        } else if is_acceptance_heading(&text) {
            Scope::Acceptance
        } else {
            Scope::Other
        };
        self.open.push(Open { level, scope });
    }

    /// The innermost open requirement's id.
    fn requirement(&self) -> Option<&str> {
        self.open.iter().rev().find_map(|o| match &o.scope {
            Scope::Requirement { id, .. } => Some(id.as_str()),
            _ => None,
        })
    }

    fn next_number(&mut self) -> Option<&mut u64> {
        self.open.iter_mut().rev().find_map(|o| match &mut o.scope {
            Scope::Requirement { next, .. } => Some(next),
            _ => None,
        })
    }

    fn in_acceptance(&self) -> bool {
        self.labelled_acceptance || self.open.iter().any(|o| o.scope == Scope::Acceptance)
    }

    /// Lines starting with an explicit id are criteria; the lines after one, up to the next id,
    /// are its wrapped text. A top-level paragraph ending in an acceptance label opens an
    /// acceptance scope for the lists after it; any other closes it.
    fn paragraph(&mut self, id: usize, top_level: bool) {
        let lines = self.doc.lines(id);
        if top_level {
            self.labelled_acceptance = lines
                .last()
                .is_some_and(|l| is_acceptance_label(self.doc.text(l)));
        }
        let mut current: Option<Slot> = None;
        for l in lines {
            let text = self.doc.text(l);
            if let Some((cid, rest)) = self.explicit(text) {
                let requirement = self.requirement_of(&cid);
                current = Some(self.push(cid, requirement, rest, l.line + 1));
            } else if let Some(slot) = current {
                self.append(slot, &one_line(text));
            }
        }
    }

    /// The items of a list. With `derive`, items under a requirement also get `<req>.<n>` ids
    /// (all items in an acceptance scope, EARS statements anywhere); nested lists only yield
    /// explicit ids, so the sub-points of a criterion are not numbered as criteria.
    fn list(&mut self, id: usize, ordered: bool, derive: bool) {
        let items = self.doc.children(id);
        // The rendered number of an item is the list's start plus its position, whatever
        // numbers the later items were written with (`1.` on every line is common).
        let start = items
            .first()
            .filter(|_| ordered)
            .and_then(|&i| ordered_number(self.doc.src, self.doc.range(i).start))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1);
        for (position, &item) in items.iter().enumerate() {
            let line = self.doc.line_of(self.doc.range(item).start) + 1;
            let text = self.item_text(item);
            let text = text_checkbox(text.trim()).map_or(text.trim(), |(_, rest)| rest.trim());
            if let Some((cid, rest)) = self.explicit(text) {
                let requirement = self.requirement_of(&cid);
                self.push(cid, requirement, rest, line);
                continue;
            }
            let plain = one_line(text);
            let acceptance = self.in_acceptance();
            if derive
                && !plain.is_empty()
                && (acceptance || is_ears(&plain))
                && let Some(req) = self.requirement().map(str::to_owned)
            {
                // Ordered items carry their number; bullets continue the requirement's count.
                let n = if ordered {
                    start.saturating_add(u64::try_from(position).unwrap_or(u64::MAX))
                } else {
                    self.next_number().map_or(1, |next| *next)
                };
                if let Some(next) = self.next_number() {
                    *next = n.saturating_add(1);
                }
                self.push(format!("{req}.{n}"), Some(req), plain, line);
                continue;
            }
            self.item_children(item);
        }
    }

    /// The text of an item's first paragraph on one line, emphasis marks kept.
    fn item_text(&self, item: usize) -> String {
        let Some(&para) = self.doc.children(item).first() else {
            return String::new();
        };
        if self.doc.kind(para) != Some(Kind::Para) {
            return String::new();
        }
        let mut s = String::new();
        for l in self.doc.lines(para) {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(self.doc.text(l).trim());
        }
        s
    }

    /// The blocks inside an item that is no criterion: nested lists and later paragraphs may
    /// still hold explicitly numbered criteria (`- Login` → `  - 1.1 WHEN ...`).
    fn item_children(&mut self, item: usize) {
        let children = self.doc.children(item);
        let skip = usize::from(
            children
                .first()
                .is_some_and(|&c| self.doc.kind(c) == Some(Kind::Para)),
        );
        for &c in children.iter().skip(skip) {
            match self.doc.kind(c) {
                Some(Kind::List { ordered }) => self.list(c, ordered, false),
                Some(Kind::Para) => self.paragraph(c, false),
                Some(Kind::Quote) => {
                    for &q in self.doc.children(c) {
                        match self.doc.kind(q) {
                            Some(Kind::List { ordered }) => self.list(q, ordered, false),
                            Some(Kind::Para) => self.paragraph(q, false),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// An explicit id at the start of `text` and the criterion's text after it. A bare dotted
    /// number that is not bold must be followed by a statement (EARS, or a few words), and under
    /// a numbered requirement must extend its number: under `Requirement 1`, `2.5 seconds after
    /// ...` is a sentence, not criterion 2.5.
    fn explicit(&self, text: &str) -> Option<(String, String)> {
        let found = id_prefix(text)?;
        let rest = one_line(found.rest);
        if rest.is_empty() || is_story(&found.id, &rest) {
            return None;
        }
        if found.numeric && !found.bold {
            let statement =
                is_ears(&rest) || rest.split_whitespace().count() >= MIN_WORDS_AFTER_NUMERIC_ID;
            let extends = match self.requirement() {
                Some(req) if is_numeric_id(req) => is_child_of(&found.id, req),
                _ => true,
            };
            if !statement || !extends {
                return None;
            }
        }
        Some((found.id, rest))
    }

    /// The requirement an explicitly numbered criterion belongs to: the open requirement when
    /// the id extends it, else the id's dotted prefix (`R1.2` → `R1`, `2.3.1` → `2.3`), else the
    /// open requirement (`AC-1` under `Requirement 3`).
    fn requirement_of(&self, id: &str) -> Option<String> {
        let open = self.requirement();
        if let Some(req) = open
            && is_child_of(id, req)
        {
            return Some(req.to_owned());
        }
        if let Some((head, _)) = id.rsplit_once('.') {
            return Some(head.to_owned());
        }
        open.filter(|req| *req != id).map(str::to_owned)
    }

    fn push(&mut self, id: String, requirement: Option<String>, text: String, line: usize) -> Slot {
        let criterion = Criterion {
            id,
            requirement,
            text,
            line,
        };
        if self.seen.contains(&criterion.id) {
            self.out.duplicates.push(criterion);
            Slot::Duplicate(self.out.duplicates.len() - 1)
        } else {
            self.seen.insert(criterion.id.clone());
            self.out.criteria.push(criterion);
            Slot::Kept(self.out.criteria.len() - 1)
        }
    }

    fn append(&mut self, slot: Slot, more: &str) {
        let target = match slot {
            Slot::Kept(i) => self.out.criteria.get_mut(i),
            Slot::Duplicate(i) => self.out.duplicates.get_mut(i),
        };
        if let Some(c) = target
            && !more.is_empty()
        {
            c.text.push(' ');
            c.text.push_str(more);
        }
    }
}

/// Whether an id line states a user story rather than a criterion: `**US1**: ...` names a story,
/// and so does any id followed by "As a ..." (`R2: As an admin, I want ...`).
fn is_story(id: &str, rest: &str) -> bool {
    let story_id = id
        .strip_prefix("US")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let lower = rest.get(..6).unwrap_or(rest).to_ascii_lowercase();
    story_id || lower.starts_with("as a ") || lower.starts_with("as an ")
}
