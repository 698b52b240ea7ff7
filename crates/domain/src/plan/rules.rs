//! Document-wide decisions taken before the walk: where the checkboxes are (read from the
//! source, since plans use `[~]`, `[-]` and `[/]` that Markdown does not know), which of them are
//! acceptance criteria rather than tasks, whether numbered headings are tasks, and which numbered
//! lists are task lists in a plan with neither checkboxes nor task headings.

use std::collections::HashSet;

use super::blocks::{Doc, Kind};
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
    };
    b.build();
    b.rules
}

struct Builder<'a, 'd> {
    doc: &'d Doc<'a>,
    rules: Rules,
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
        let mut word_heading = false;
        let mut numeric_heading = false;
        for &id in &doc.roots {
            if let Some(Kind::Heading(level)) = self.doc.kind(id) {
                if criteria_level.is_some_and(|l| level <= l) {
                    criteria_level = None;
                }
                let text = self.doc.heading_text(id);
                if is_acceptance_heading(&text) {
                    criteria_level = Some(level);
                }
                let plain = strip_emph(&text);
                let plain = text_checkbox(plain.trim()).map_or(plain.trim(), |(_, r)| r);
                match key_prefix(plain) {
                    Some(k) if matches!(k.kind, KeyKind::TKey | KeyKind::Word) => {
                        word_heading = true;
                    }
                    Some(k) if k.kind == KeyKind::Numeric && !is_prose_section(k.rest) => {
                        numeric_heading = true;
                    }
                    _ => {}
                }
            } else if criteria_level.is_some() {
                mark(&mut criteria_lists, id);
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
        let has_checkbox = doc
            .roots
            .iter()
            .any(|&r| self.rules.has_task.get(r).copied().unwrap_or(false));
        self.rules.numeric_headings_are_tasks = !has_checkbox && !word_heading;
        let heading_tasks =
            word_heading || (numeric_heading && self.rules.numeric_headings_are_tasks);
        if !has_checkbox && !heading_tasks {
            self.pick_numbered_lists();
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
