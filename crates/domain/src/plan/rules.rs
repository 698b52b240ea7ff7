//! Document-wide decisions taken before the walk: where the checkboxes are (read from the
//! source, since plans use `[~]`, `[-]` and `[/]` that Markdown does not know), which of them are
//! acceptance criteria rather than tasks, whether numbered headings are tasks, and which numbered
//! lists are task lists in a plan with neither checkboxes nor task headings.
//!
//! Checklists that are not the plan ([`super::side`]: open questions, verification checks) do
//! not count as checkbox tasks when the document also has a numbered-list or heading plan.

use std::collections::HashSet;

use super::blocks::{Doc, Kind};
use super::side::{is_question_item, is_side_heading};
use super::text::{
    KeyKind, Label, is_acceptance_heading, is_deps_heading, is_prose_section, is_task_section_hint,
    key_prefix, label, source_checkbox, strip_emph, text_checkbox,
};

#[derive(Debug, Default)]
pub(crate) struct Rules {
    /// Per node: the byte offset of the checkbox state character of an item or heading.
    pub checkboxes: Vec<Option<usize>>,
    /// Per node: whether it is, or holds, a checkbox task.
    pub has_task: Vec<bool>,
    /// Top-level lists whose items are tasks (plans of plain numbered lists).
    pub numbered_lists: HashSet<usize>,
    /// Whether `### 2. Title` headings are tasks everywhere.
    pub numeric_headings_are_tasks: bool,
}

pub(crate) fn rules(doc: &Doc<'_>) -> Rules {
    let mut b = Builder {
        doc,
        rules: Rules {
            checkboxes: vec![None; doc.nodes.len()],
            has_task: vec![false; doc.nodes.len()],
            ..Rules::default()
        },
        side: vec![false; doc.nodes.len()],
    };
    b.build();
    b.rules
}

struct Builder<'a, 'd> {
    doc: &'d Doc<'a>,
    rules: Rules,
    /// Per node: a top-level block that is a checklist beside the plan, not the plan.
    side: Vec<bool>,
}

impl Builder<'_, '_> {
    /// Decides the document-wide rules: which checkboxes count, whether numbered headings are
    /// tasks, and which numbered lists are task lists.
    fn build(&mut self) {
        let doc = self.doc;
        for (id, node) in doc.nodes.iter().enumerate() {
            if matches!(node.kind, Kind::Item | Kind::Heading(_))
                && let Some(slot) = self.rules.checkboxes.get_mut(id)
            {
                *slot = source_checkbox(doc.src, node.range.start);
            }
        }
        // Checkboxes right after an acceptance label or under an acceptance heading are criteria.
        let mut criteria_level: Option<u8> = None;
        let mut prev: Option<usize> = None;
        let mut criteria_lists = vec![false; doc.nodes.len()];
        let mut side_level: Option<u8> = None;
        let mut word_heading = false;
        let mut numeric_heading = false;
        // Numbered headings other than side headings (`## 4. Verification`): a plan of them
        // outranks a side checklist.
        let mut plan_headings = 0usize;
        for &id in &doc.roots {
            if let Some(Kind::Heading(level)) = self.doc.kind(id) {
                if criteria_level.is_some_and(|l| level <= l) {
                    criteria_level = None;
                }
                if side_level.is_some_and(|l| level <= l) {
                    side_level = None;
                }
                let text = self.doc.heading_text(id);
                if is_acceptance_heading(&text) {
                    criteria_level = Some(level);
                }
                let side = is_side_heading(&text);
                if side && side_level.is_none() {
                    side_level = Some(level);
                }
                let plain = strip_emph(&text);
                let plain = text_checkbox(plain.trim()).map_or(plain.trim(), |(_, r)| r);
                match key_prefix(plain) {
                    Some(k) if matches!(k.kind, KeyKind::TKey | KeyKind::Word) => {
                        word_heading = true;
                    }
                    Some(k) if k.kind == KeyKind::Numeric && !is_prose_section(k.rest) => {
                        numeric_heading = true;
                        if !side {
                            plan_headings += 1;
                        }
                    }
                    _ => {}
                }
            } else {
                if criteria_level.is_some() {
                    mark(&mut criteria_lists, id);
                }
                if side_level.is_some() || self.question_list(id) {
                    mark(&mut self.side, id);
                }
            }
            self.criteria_after_label(id, prev, &mut criteria_lists);
            prev = Some(id);
        }
        for id in (0..doc.nodes.len()).rev() {
            let boxed = self.doc.kind(id) == Some(Kind::Item)
                && self.rules.checkboxes.get(id).is_some_and(Option::is_some);
            let mut has = boxed;
            if !criteria_lists.get(id).copied().unwrap_or(false) {
                has = has
                    || self
                        .doc
                        .children(id)
                        .iter()
                        .any(|&c| self.rules.has_task.get(c).copied().unwrap_or(false));
            } else {
                has = false;
                for &c in self.doc.children(id) {
                    if let Some(slot) = self.rules.has_task.get_mut(c) {
                        *slot = false;
                    }
                }
            }
            if let Some(slot) = self.rules.has_task.get_mut(id) {
                *slot = has;
            }
        }
        let has_task = |r: &usize| self.rules.has_task.get(*r).copied().unwrap_or(false);
        let is_side = |r: &usize| self.side.get(*r).copied().unwrap_or(false);
        let mut has_checkbox = doc.roots.iter().any(has_task);
        let plan_checkbox = doc.roots.iter().any(|r| has_task(r) && !is_side(r));
        if has_checkbox && !plan_checkbox && self.other_plan(word_heading, plan_headings) {
            self.demote_side_checklists();
            has_checkbox = false;
        }
        self.rules.numeric_headings_are_tasks = !has_checkbox && !word_heading;
        let heading_tasks =
            word_heading || (numeric_heading && self.rules.numeric_headings_are_tasks);
        if !has_checkbox && !heading_tasks {
            self.pick_numbered_lists();
        }
    }

    /// Whether `id` is a checkbox list whose items are mostly questions (or struck-through,
    /// answered ones): a list of open questions even without a heading saying so.
    fn question_list(&self, id: usize) -> bool {
        if !matches!(self.doc.kind(id), Some(Kind::List { .. })) {
            return false;
        }
        let items = self.doc.children(id);
        let questions = items
            .iter()
            .filter(|&&item| {
                self.rules.checkboxes.get(item).is_some_and(Option::is_some)
                    && self.item_text(item).is_some_and(|t| {
                        let t = text_checkbox(t.trim()).map_or(t.trim(), |(_, r)| r);
                        is_question_item(t)
                    })
            })
            .count();
        questions > 0 && questions * 2 > items.len()
    }

    /// The text of an item's first paragraph, lines joined by spaces.
    fn item_text(&self, item: usize) -> Option<String> {
        let &para = self.doc.children(item).first()?;
        if self.doc.kind(para) != Some(Kind::Para) {
            return None;
        }
        let lines: Vec<&str> = self
            .doc
            .lines(para)
            .iter()
            .map(|l| self.doc.text(l).trim())
            .collect();
        Some(lines.join(" "))
    }

    /// Whether the document has a plan besides its side checklists: task headings, at least two
    /// numbered headings, or numbered lists of at least two items.
    fn other_plan(&mut self, word_heading: bool, plan_headings: usize) -> bool {
        if word_heading || plan_headings >= 2 {
            return true;
        }
        self.pick_numbered_lists();
        let items: usize = self
            .rules
            .numbered_lists
            .iter()
            .map(|&l| self.doc.children(l).len())
            .sum();
        self.rules.numbered_lists.clear();
        items >= 2
    }

    /// Side checklists hold no tasks: their items stay text of the section they sit in.
    fn demote_side_checklists(&mut self) {
        for &r in &self.doc.roots {
            if !self.side.get(r).copied().unwrap_or(false) {
                continue;
            }
            if let Some(slot) = self.rules.has_task.get_mut(r) {
                *slot = false;
            }
            for &c in self.doc.children(r) {
                if let Some(slot) = self.rules.has_task.get_mut(c) {
                    *slot = false;
                }
            }
        }
    }

    /// Marks lists that follow an `Acceptance criteria:` paragraph as criteria, at any depth.
    fn criteria_after_label(&self, id: usize, prev: Option<usize>, out: &mut [bool]) {
        let mut stack = vec![(id, prev, 0usize)];
        while let Some((id, prev, depth)) = stack.pop() {
            if matches!(self.doc.kind(id), Some(Kind::List { .. }))
                && let Some(p) = prev
                && self.doc.kind(p) == Some(Kind::Para)
                && let Some(last) = self.doc.lines(p).last()
                && let Some((Label::Acceptance, v)) = label(self.doc.text(last))
                && v.is_empty()
            {
                mark(out, id);
            }
            if depth > 2 * super::blocks::MAX_DEPTH {
                continue;
            }
            let mut before = None;
            for &c in self.doc.children(id) {
                stack.push((c, before, depth + 1));
                before = Some(c);
            }
        }
    }

    fn pick_numbered_lists(&mut self) {
        let mut headings: Vec<(u8, String)> = Vec::new();
        let mut hinted = Vec::new();
        let mut plain = Vec::new();
        for &id in &self.doc.roots {
            match self.doc.kind(id) {
                Some(Kind::Heading(level)) => {
                    headings.retain(|(l, _)| *l < level);
                    headings.push((level, self.doc.heading_text(id)));
                }
                Some(Kind::List { ordered }) => {
                    // A side checklist written as a numbered list is not the plan either.
                    if self.side.get(id).copied().unwrap_or(false) && self.holds_checkbox(id) {
                        continue;
                    }
                    let inner = headings.last().map(|(_, t)| t.as_str()).unwrap_or("");
                    if is_prose_section(inner)
                        || is_acceptance_heading(inner)
                        || is_deps_heading(inner)
                    {
                        continue;
                    }
                    if !ordered && !self.first_item_keyed(id) {
                        continue;
                    }
                    let hint = headings
                        .iter()
                        .any(|(l, t)| *l > 1 && is_task_section_hint(t));
                    if hint {
                        hinted.push(id);
                    } else {
                        plain.push(id);
                    }
                }
                _ => {}
            }
        }
        let chosen = if hinted.is_empty() { plain } else { hinted };
        self.rules.numbered_lists = chosen.into_iter().collect();
    }

    fn holds_checkbox(&self, list: usize) -> bool {
        self.doc
            .children(list)
            .iter()
            .any(|&item| self.rules.checkboxes.get(item).is_some_and(Option::is_some))
    }

    fn first_item_keyed(&self, list: usize) -> bool {
        let Some(&item) = self.doc.children(list).first() else {
            return false;
        };
        let Some(&para) = self.doc.children(item).first() else {
            return false;
        };
        let Some(line) = self.doc.lines(para).first() else {
            return false;
        };
        let plain = strip_emph(self.doc.text(line));
        key_prefix(&plain).is_some_and(|k| {
            matches!(k.kind, KeyKind::TKey | KeyKind::Word)
                || (k.kind == KeyKind::Numeric && k.key.contains('.'))
        })
    }
}

fn mark(flags: &mut [bool], id: usize) {
    if let Some(f) = flags.get_mut(id) {
        *f = true;
    }
}
