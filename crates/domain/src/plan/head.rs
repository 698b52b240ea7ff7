//! Reading a task's first line: checkbox already removed, then the key (`1.`, `2.3`, `T014`,
//! `Task 3:`), markers (`[P]`, `[US1]`, Kiro's optional `*`), trailing emphasised metadata
//! (`_Requirements: 1.1_`), parenthesised metadata (`(depends on T012)`), and the wrapped lines
//! that continue the title.

use super::blocks::EMPH;
use super::model::PlanTaskStatus;
use super::text::{
    KeyKind, Label, continues, ends_sentence, key_prefix, label, strip_emph, strip_markers,
};

/// Lines of a wrapped title joined back together at most.
const MAX_TITLE_LINES: usize = 6;

/// What the first line(s) of a task say.
#[derive(Debug)]
pub(crate) struct Head {
    pub key: Option<String>,
    pub kind: Option<KeyKind>,
    pub title: String,
    pub overflow: Option<String>,
    pub status: PlanTaskStatus,
    pub parallel: bool,
    pub optional: bool,
    pub stories: Vec<String>,
    pub metas: Vec<(Label, String)>,
    /// Lines of the first paragraph used by the title.
    pub consumed: usize,
}

/// Trims a heading or title: whitespace and trailing separators.
pub(crate) fn clean(s: &str) -> String {
    s.trim()
        .trim_end_matches([' ', '-', '—', '–', ':', '：', ',', '|', '\u{3000}'])
        .trim()
        .to_owned()
}

/// Reads a task's first line (after its checkbox) and the wrapped lines that continue it.
pub(crate) fn head_from(
    first: &str,
    more: &[&str],
    status: PlanTaskStatus,
    number: Option<String>,
) -> Head {
    let mut metas = Vec::new();
    let first = cut_meta(first, &mut metas);
    let plain = strip_emph(first);
    let mut optional = false;
    let mut s = plain.trim_start();
    if let Some(r) = s.strip_prefix('*') {
        optional = true;
        s = r.trim_start();
    }
    let (key, kind, rest) = match key_prefix(s) {
        Some(k) if k.kind == KeyKind::Placeholder => (None, None, k.rest),
        Some(k) => {
            optional |= k.optional;
            (Some(k.key), Some(k.kind), k.rest)
        }
        None => match number {
            Some(n) => (Some(n), Some(KeyKind::Numeric), s),
            None => (None, None, s),
        },
    };
    let (rest, parallel, stories) = strip_markers(rest);
    let mut title = rest.to_owned();
    let mut consumed = 1;
    for l in more.iter().take(MAX_TITLE_LINES) {
        // Trailing metadata or a full stop ends the title; the next line is description.
        if !metas.is_empty() || ends_sentence(&title) {
            break;
        }
        let plain = strip_emph(l);
        if label(l).is_some() || !continues(&plain) {
            break;
        }
        let mut extra = Vec::new();
        let cut = strip_emph(cut_meta(l, &mut extra));
        title.push(' ');
        title.push_str(cut.trim());
        metas.extend(extra);
        consumed += 1;
    }
    let title = parentheticals(&title, &mut metas);
    let mut title = clean(&title);
    let mut overflow = None;
    if title.chars().count() > crate::limits::MAX_NAME_CHARS {
        overflow = Some(title.clone());
        let mut cut: String = title
            .chars()
            .take(crate::limits::MAX_NAME_CHARS - 1)
            .collect();
        cut.push('…');
        title = cut;
    }
    Head {
        key,
        kind,
        title,
        overflow,
        status,
        parallel,
        optional,
        stories,
        metas,
        consumed,
    }
}

/// Cuts `line` at the first emphasised metadata (`_Requirements: 1.1_`), collecting every
/// emphasised label from there on.
fn cut_meta<'s>(line: &'s str, metas: &mut Vec<(Label, String)>) -> &'s str {
    let mut cut = None;
    let segments = line.split(EMPH);
    let mut offset: usize = 0;
    let mut inside = false;
    // Odd segments sit between an opening and a closing mark.
    for seg in segments {
        if inside && let Some((kind, value)) = label(seg) {
            if cut.is_none() {
                cut = Some(offset.saturating_sub(EMPH.len_utf8()));
            }
            metas.push((kind, value));
        }
        offset += seg.len() + EMPH.len_utf8();
        inside = !inside;
    }
    match cut {
        Some(c) => line.get(..c).unwrap_or(line),
        None => line,
    }
}

/// Removes `(depends on T012, T013)`, `(effort: 2h)` and similar from a title, collecting them.
fn parentheticals(title: &str, metas: &mut Vec<(Label, String)>) -> String {
    let mut out = String::with_capacity(title.len());
    let mut rest = title;
    while let Some(open) = rest.find(['(', '（']) {
        let (before, from) = rest.split_at(open);
        let close = from.find([')', '）']);
        let inner = close.and_then(|c| from.get(from.chars().next().map_or(1, char::len_utf8)..c));
        match (close, inner.and_then(label)) {
            (Some(c), Some(meta)) => {
                out.push_str(before.trim_end());
                metas.push(meta);
                let after_len = from
                    .get(c..)
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                rest = from.get(c + after_len..).unwrap_or("");
            }
            _ => {
                let step = from.chars().next().map_or(1, char::len_utf8);
                out.push_str(before);
                out.push_str(from.get(..step).unwrap_or(""));
                rest = from.get(step..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_meta_takes_trailing_requirements() {
        let mut metas = Vec::new();
        let line = format!("Build it {EMPH}Requirements: 1.1, 2.3{EMPH}");
        assert_eq!(cut_meta(&line, &mut metas).trim(), "Build it");
        assert_eq!(metas, vec![(Label::Requirements, "1.1, 2.3".to_owned())]);
        let mut metas = Vec::new();
        let line = format!("{EMPH}Bold title{EMPH} rest");
        assert_eq!(cut_meta(&line, &mut metas), line);
        assert!(metas.is_empty());
    }

    #[test]
    fn parentheticals_are_extracted() {
        let mut metas = Vec::new();
        let t = parentheticals(
            "Implement service in src/x.py (depends on T012, T013) now",
            &mut metas,
        );
        assert_eq!(t, "Implement service in src/x.py now");
        assert_eq!(metas, vec![(Label::Depends, "T012, T013".to_owned())]);
        let t = parentheticals("Keep (this) and （that）", &mut metas);
        assert_eq!(t, "Keep (this) and （that）");
    }
}
