//! Reading references out of text: the task references of a dependency line
//! (`Depends on: Task 1, 2.3`, `(depends on T012, T013)`, a title), requirement ids
//! (`_Requirements: 1.1, 2.3_`, `FR-015`, `[Spec §2.1]`) and the statements of a prose
//! dependency section (`T014 depends on T012`, `T004 blocks T005-T008`).

use super::text::{KeyKind, dotted_number, is_none_word, strip_prefix_ci, t_key, task_word_number};

/// One reference to a task, or to every task of a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ref {
    Key(String),
    /// `T012-T015`, `1.1-1.3`: the keys between the two ends, both included.
    Range(String, String),
    Phase(String),
    Title(String),
}

/// The references of one dependency value, and the whole value for a title match when splitting
/// it on commas cut a title in pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DepRefs {
    pub refs: Vec<Ref>,
    pub whole: String,
}

const PUNCT_SEPARATORS: &[char] = &[',', ';', '、', '，', '；'];
const WORD_SEPARATORS: &[&str] = &[" and ", " & ", " e ", " y ", " und ", " or "];
const RANGE_SEPARATORS: &[&str] = &["..", "-", "–", "—", " to ", " a ", "~", "〜", "～"];
const PHASE_REF_WORDS: &[&str] = &["phase", "fase", "stage", "フェーズ", "阶段"];
const REQUIREMENT_WORDS: &[&str] = &[
    "requirements",
    "requirement",
    "reqs",
    "req",
    "requisitos",
    "requisito",
    "要件",
    "需求",
];
const REQUIREMENT_PREFIXES: &[&str] = &["NFR-", "FR-", "SC-", "REQ-"];

/// Longest range a reference may expand to; longer ones are kept as their two ends.
const MAX_RANGE: u64 = 200;

/// Splits a list of references on commas, semicolons and conjunctions.
fn pieces(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in value.split(PUNCT_SEPARATORS) {
        let mut rest = part;
        // Each round consumes at least one separator, so this ends.
        loop {
            let found = WORD_SEPARATORS
                .iter()
                .filter_map(|w| find_ci(rest, w).map(|i| (i, w.len())))
                .min();
            match found.and_then(|(i, n)| Some((rest.get(..i)?, rest.get(i + n..)?))) {
                Some((head, tail)) => {
                    out.push(head);
                    rest = tail;
                }
                None => {
                    out.push(rest);
                    break;
                }
            }
        }
    }
    out.into_iter()
        .map(|p| {
            p.trim()
                .trim_matches(|c: char| "()[]`*_.\"'“”".contains(c) || c.is_whitespace())
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// Byte offset of the first ASCII-case-insensitive occurrence of the ASCII `needle`.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| {
        h.get(i..i + n.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(n))
    })
}

/// A key at the start of `s` (`T012`, `Task 3`, `#3`, `2.1`) and what follows it.
fn key_atom(s: &str, bare_numbers: bool) -> Option<(String, &str)> {
    if let Some((key, KeyKind::TKey, rest)) = t_key(s) {
        return Some((key, rest));
    }
    if let Some((num, rest)) = task_word_number(s) {
        return Some((num.to_owned(), rest));
    }
    let (s, bare_numbers) = match s.strip_prefix('#') {
        Some(r) => (r, true),
        None => (s, bare_numbers),
    };
    if bare_numbers {
        let (num, rest) = dotted_number(s)?;
        if rest.chars().next().is_none_or(|c| !c.is_alphanumeric()) {
            return Some((num.to_owned(), rest));
        }
    }
    None
}

/// A phase reference at the start of `s` (`Phase 2`).
fn phase_atom(s: &str) -> Option<(String, &str)> {
    PHASE_REF_WORDS.iter().find_map(|w| {
        let rest = strip_prefix_ci(s, w)?.trim_start();
        let (num, rest) = dotted_number(rest)?;
        Some((num.to_owned(), rest))
    })
}

/// A key or a range of keys at the start of `s`, and what follows.
fn key_or_range(s: &str, bare_numbers: bool) -> Option<(Ref, &str)> {
    let (a, rest) = key_atom(s, bare_numbers)?;
    for sep in RANGE_SEPARATORS {
        if let Some(after) = strip_prefix_ci(rest, sep)
            && let Some((b, rest2)) = key_atom(after.trim_start(), true)
        {
            return Some((Ref::Range(a, b), rest2));
        }
    }
    Some((Ref::Key(a), rest))
}

/// The piece as one reference when it is nothing but a key, range or phase.
fn whole_ref(piece: &str) -> Option<Ref> {
    if let Some((r, rest)) = key_or_range(piece, true)
        && rest.trim().is_empty()
    {
        return Some(r);
    }
    match phase_atom(piece) {
        Some((num, rest)) if rest.trim().is_empty() => Some(Ref::Phase(num)),
        _ => None,
    }
}

/// Keys written inside prose: `T012`, `Task 3`, `Phase 2`, and with `dotted`, `2.1`.
fn embedded(s: &str, dotted: bool) -> Vec<Ref> {
    let mut out = Vec::new();
    let mut prev_alnum = false;
    let mut skip_to = 0;
    for (i, c) in s.char_indices() {
        if i < skip_to {
            prev_alnum = c.is_alphanumeric();
            continue;
        }
        if !prev_alnum && let Some(rest) = s.get(i..) {
            let found = key_or_range(rest, false)
                .or_else(|| {
                    let (num, r) = dotted_number(rest)?;
                    let ok = dotted
                        && num.contains('.')
                        && r.chars().next().is_none_or(|c| !c.is_alphanumeric());
                    ok.then(|| key_or_range(rest, true)).flatten()
                })
                .or_else(|| phase_atom(rest).map(|(n, r)| (Ref::Phase(n), r)));
            if let Some((r, after)) = found {
                skip_to = s.len() - after.len();
                out.push(r);
            }
        }
        prev_alnum = c.is_alphanumeric();
    }
    out
}

/// True when `s` holds an explicit task key (`T012`, `Task 3`, `2.1`, `#4`, `1`).
pub(crate) fn has_key_token(s: &str) -> bool {
    pieces(s).first().is_some_and(|p| whole_ref(p).is_some()) || !embedded(s, true).is_empty()
}

/// The references of a dependency value (`Task 1, Task 2`, `1.2, 3`, `Create the schema`).
/// A piece that is wholly a key is a key; a piece with keys inside keeps only those; any other
/// piece is a title.
pub(crate) fn dep_refs(value: &str) -> DepRefs {
    let whole = value
        .trim()
        .trim_end_matches(['.', '。', ')'])
        .trim()
        .to_owned();
    let mut refs = Vec::new();
    if is_none_word(&whole) {
        return DepRefs { refs, whole };
    }
    for p in pieces(&whole) {
        if is_none_word(p) {
            continue;
        }
        if let Some(r) = whole_ref(p) {
            refs.push(r);
            continue;
        }
        let inside = embedded(p, false);
        if inside.is_empty() {
            refs.push(Ref::Title(p.to_owned()));
        } else {
            refs.extend(inside);
        }
    }
    DepRefs { refs, whole }
}

/// Requirement ids of a `Requirements:` value: `1.1, 2.3`, `Requirements 4.1-4.3`, `FR-015`.
pub(crate) fn requirement_refs(value: &str, out: &mut Vec<String>) {
    for p in pieces(value) {
        let mut p = p;
        for w in REQUIREMENT_WORDS {
            if let Some(r) = strip_prefix_ci(p, w) {
                p = r.trim_start();
                break;
            }
        }
        let p = p.trim();
        if p.is_empty() || p.chars().count() > 64 {
            continue;
        }
        if let Some(expanded) = expand_numeric_range(p) {
            out.extend(expanded);
        } else {
            out.push(p.to_owned());
        }
    }
}

/// `4.1-4.3` as `4.1, 4.2, 4.3` when both ends share their prefix and the span is small.
fn expand_numeric_range(p: &str) -> Option<Vec<String>> {
    let (a, rest) = dotted_number(p)?;
    let sep = RANGE_SEPARATORS
        .iter()
        .find_map(|s| strip_prefix_ci(rest, s))?;
    let (b, tail) = dotted_number(sep.trim_start())?;
    if !tail.trim().is_empty() {
        return None;
    }
    numeric_span(a, b)
}

/// The dotted numbers from `a` to `b` when they differ only in their last component.
pub(crate) fn numeric_span(a: &str, b: &str) -> Option<Vec<String>> {
    let (pa, la) = a.rsplit_once('.').unwrap_or(("", a));
    let (pb, lb) = b.rsplit_once('.').unwrap_or(("", b));
    let (la, lb): (u64, u64) = (la.parse().ok()?, lb.parse().ok()?);
    if pa != pb || lb < la || lb - la > MAX_RANGE {
        return None;
    }
    Some(
        (la..=lb)
            .map(|n| {
                if pa.is_empty() {
                    n.to_string()
                } else {
                    format!("{pa}.{n}")
                }
            })
            .collect(),
    )
}

/// Requirement ids written anywhere in text: `FR-015`, `SC-002`, `§2.1`.
pub(crate) fn scan_requirement_tokens(text: &str, out: &mut Vec<String>) {
    // Most text holds none: a fast substring test skips the character walk.
    if !(text.contains('§') || text.contains("R-") || text.contains("SC-") || text.contains("Q-"))
    {
        return;
    }
    let mut prev_alnum = false;
    for (i, c) in text.char_indices() {
        if !prev_alnum {
            let rest = text.get(i..).unwrap_or("");
            if let Some(r) = rest.strip_prefix('§')
                && let Some((num, _)) = dotted_number(r.trim_start())
            {
                out.push(format!("§{num}"));
            }
            for pre in REQUIREMENT_PREFIXES {
                if let Some(r) = rest.strip_prefix(pre) {
                    let digits: String =
                        r.chars().take_while(char::is_ascii_digit).take(9).collect();
                    if !digits.is_empty() {
                        out.push(format!("{pre}{digits}"));
                    }
                }
            }
        }
        prev_alnum = c.is_alphanumeric();
    }
}

/// Connectors of a prose dependency statement; `true` when the left side waits for the right.
const CONNECTORS: &[(&str, bool)] = &[
    (" depends on ", true),
    (" depend on ", true),
    (" requires ", true),
    (" require ", true),
    (" needs ", true),
    (" after ", true),
    (" blocked by ", true),
    (" waits for ", true),
    (" depende de ", true),
    (" dependem de ", true),
    (" após ", true),
    (" depois de ", true),
    (" blocks ", false),
    (" block ", false),
    (" before ", false),
    (" precedes ", false),
    (" antes de ", false),
    (" bloqueia ", false),
    (" → ", false),
    (" -> ", false),
];

/// A statement of a dependency section: the tasks that wait and the tasks they wait for.
/// Only explicit keys count, so prose about phases ("Depends on Setup completion") is ignored.
pub(crate) fn prose_statement(line: &str) -> Option<(Vec<Ref>, Vec<Ref>)> {
    let lower = line.to_ascii_lowercase();
    let (pos, len, waits) = CONNECTORS
        .iter()
        .filter_map(|(c, w)| lower.find(c).map(|i| (i, c.len(), *w)))
        .min()?;
    let left = embedded(line.get(..pos)?, true);
    let right = embedded(line.get(pos + len..)?, true);
    let keys = |v: Vec<Ref>| -> Vec<Ref> {
        v.into_iter()
            .filter(|r| matches!(r, Ref::Key(_) | Ref::Range(..)))
            .collect()
    };
    let (left, right) = (keys(left), keys(right));
    if left.is_empty() || right.is_empty() {
        return None;
    }
    Some(if waits { (left, right) } else { (right, left) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_values() {
        let r = |s: &str| dep_refs(s).refs;
        assert_eq!(
            r("Task 1, Task 2"),
            vec![Ref::Key("1".into()), Ref::Key("2".into())]
        );
        assert_eq!(
            r("1.2, 3"),
            vec![Ref::Key("1.2".into()), Ref::Key("3".into())]
        );
        assert_eq!(
            r("T012 and T013"),
            vec![Ref::Key("T012".into()), Ref::Key("T013".into())]
        );
        assert_eq!(
            r("T012-T015"),
            vec![Ref::Range("T012".into(), "T015".into())]
        );
        assert_eq!(r("None"), vec![]);
        assert_eq!(
            r("タスク1、タスク2"),
            vec![Ref::Key("1".into()), Ref::Key("2".into())]
        );
        assert_eq!(r("Phase 2"), vec![Ref::Phase("2".into())]);
        assert_eq!(
            r("Create the schema"),
            vec![Ref::Title("Create the schema".into())]
        );
        assert_eq!(r("Task 1 (schema must exist)"), vec![Ref::Key("1".into())]);
    }

    #[test]
    fn requirement_values() {
        let mut out = Vec::new();
        requirement_refs("1.1, 2.3", &mut out);
        requirement_refs("Requirements 4.1-4.3", &mut out);
        requirement_refs("FR-015", &mut out);
        assert_eq!(out, ["1.1", "2.3", "4.1", "4.2", "4.3", "FR-015"]);
        let mut out = Vec::new();
        scan_requirement_tokens("Add export (FR-015, SC-002) per [Spec §2.1]", &mut out);
        assert_eq!(out, ["FR-015", "SC-002", "§2.1"]);
    }

    #[test]
    fn prose_statements() {
        assert_eq!(
            prose_statement("T014 depends on T012, T013"),
            Some((
                vec![Ref::Key("T014".into())],
                vec![Ref::Key("T012".into()), Ref::Key("T013".into())]
            ))
        );
        assert_eq!(
            prose_statement("T004 blocks T005-T008"),
            Some((
                vec![Ref::Range("T005".into(), "T008".into())],
                vec![Ref::Key("T004".into())]
            ))
        );
        assert_eq!(
            prose_statement("Foundational: depends on Setup completion"),
            None
        );
        assert_eq!(prose_statement("Models before services"), None);
    }
}
