//! Small string matchers on the text of one heading, list item or line: checkboxes, task keys,
//! markers, metadata labels and the words plans use for tasks and phases in the languages seen
//! (English, Portuguese, Spanish, German, Japanese, Chinese). No regular expressions: every
//! matcher walks its input once, so cost stays linear in the line. The word lists are in
//! [`super::words`].

use super::blocks::EMPH;
use super::model::PlanTaskStatus;
use super::words::{
    CHECKPOINT_WORDS, CJK_NUMERALS, CJK_PHASE_WORDS, COLONLESS, GENERIC_TASK_SECTIONS, LABELS,
    NONE_WORDS, NUMBER_WORDS, PHASE_WORDS, PROSE_SECTIONS, TASK_SECTION_HINTS, TASK_WORDS,
};

/// What a metadata line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Depends,
    Requirements,
    Effort,
    Acceptance,
    /// A command that checks the task (`_Verify: cargo test -p auth_`).
    Verify,
}

/// `s` without a leading `word`, compared ASCII-case-insensitively.
pub(crate) fn strip_prefix_ci<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    if head.eq_ignore_ascii_case(word) {
        s.get(word.len()..)
    } else {
        None
    }
}

/// Removes the emphasis marks the outline leaves in inline text.
pub(crate) fn strip_emph(s: &str) -> String {
    s.chars().filter(|&c| c != EMPH).collect()
}

/// The status a checkbox character stands for.
pub(crate) fn checkbox_status(c: u8) -> Option<PlanTaskStatus> {
    match c {
        b' ' => Some(PlanTaskStatus::Pending),
        b'x' | b'X' => Some(PlanTaskStatus::Completed),
        b'~' | b'-' | b'/' => Some(PlanTaskStatus::InProgress),
        _ => None,
    }
}

/// Byte offset of the state character of a checkbox written right after the list marker or
/// heading hashes that start at `start`: `- [x] ...`, `1. [ ] ...`, `### [~] ...`.
pub(crate) fn source_checkbox(src: &str, start: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut i = start;
    let at = |i: usize| bytes.get(i).copied();
    while matches!(at(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match at(i)? {
        b'-' | b'*' | b'+' => i += 1,
        b'#' => {
            while at(i) == Some(b'#') {
                i += 1;
            }
        }
        b'0'..=b'9' => {
            while matches!(at(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if !matches!(at(i), Some(b'.' | b')')) {
                return None;
            }
            i += 1;
        }
        _ => {}
    }
    while matches!(at(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    if at(i) != Some(b'[') || at(i + 2) != Some(b']') {
        return None;
    }
    checkbox_status(at(i + 1)?)?;
    match at(i + 3) {
        None | Some(b' ' | b'\t' | b'\r' | b'\n' | b'*') => Some(i + 1),
        _ => None,
    }
}

/// The number of an ordered list item as written at `start` (`3.` or `3)`).
pub(crate) fn ordered_number(src: &str, start: usize) -> Option<String> {
    let rest = src.get(start..)?.trim_start_matches([' ', '\t']);
    let digits: String = rest
        .chars()
        .take_while(char::is_ascii_digit)
        .take(10)
        .collect();
    if digits.is_empty() {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    Some(if digits.is_empty() { "0" } else { digits }.to_owned())
}

/// Inline text starting with a checkbox: its status and the text after it.
pub(crate) fn text_checkbox(text: &str) -> Option<(PlanTaskStatus, &str)> {
    let b = text.as_bytes();
    if b.first() != Some(&b'[') || b.get(2) != Some(&b']') {
        return None;
    }
    let status = checkbox_status(*b.get(1)?)?;
    Some((status, text.get(3..)?))
}

/// How a key was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// spec-kit `T014`.
    TKey,
    /// `1`, `2.3`.
    Numeric,
    /// `Task 3`, `Step 3`, `タスク3`: normalised to the number.
    Word,
    /// A placeholder such as `TXXX`, stripped from the title; the key is generated.
    Placeholder,
}

/// A key at the start of a title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPrefix<'a> {
    pub key: String,
    pub kind: KeyKind,
    pub rest: &'a str,
    /// A Kiro optional marker next to the number (`2.3*`).
    pub optional: bool,
}

/// `digits(.digits)*` at the start of `s`, at most 8 components: the number and what follows.
pub(crate) fn dotted_number(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut parts = 0;
    loop {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 9 {
            i += 1;
        }
        if i == start {
            // Only reachable on the first component: later ones are entered on a digit.
            return None;
        }
        parts += 1;
        // A dot not followed by a digit is punctuation (`3.`), not part of the number.
        if parts < 8 && b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            continue;
        }
        break;
    }
    Some((s.get(..i)?, s.get(i..)?))
}

/// `T` followed by at least three digits (`T014`), or a placeholder `TXXX`.
pub(crate) fn t_key(s: &str) -> Option<(String, KeyKind, &str)> {
    let b = s.as_bytes();
    if !matches!(b.first(), Some(b'T' | b't')) {
        return None;
    }
    let n = b.iter().skip(1).take_while(|c| c.is_ascii_digit()).count();
    if (3..=8).contains(&n) {
        let rest = s.get(1 + n..)?;
        if rest.chars().next().is_none_or(|c| !c.is_alphanumeric()) {
            return Some((format!("T{}", s.get(1..1 + n)?), KeyKind::TKey, rest));
        }
    }
    let x = b
        .iter()
        .skip(1)
        .take_while(|c| matches!(c, b'X' | b'x'))
        .count();
    if x >= 3 {
        let rest = s.get(1 + x..)?;
        if rest.chars().next().is_none_or(|c| !c.is_alphanumeric()) {
            return Some((String::new(), KeyKind::Placeholder, rest));
        }
    }
    None
}

/// `Task 3`, `Step #3`, `タスク3`: the number and what follows.
pub(crate) fn task_word_number(s: &str) -> Option<(&str, &str)> {
    TASK_WORDS.iter().find_map(|w| {
        let rest = strip_prefix_ci(s, w)?;
        let rest = rest.trim_start_matches([' ', '\u{3000}']);
        let rest = rest.strip_prefix('#').unwrap_or(rest);
        dotted_number(rest)
    })
}

/// Separators between a key and its title.
const KEY_SEPARATORS: &[char] = &[
    ' ', '\t', ':', '：', '.', ')', '-', '–', '—', '、', '\u{3000}', '|',
];

/// A task key at the start of `text`. Bare single numbers need punctuation (`3.`, `3)`, `3:`)
/// so `2 tables` is not a task; dotted numbers (`2.3 Title`) need none.
pub(crate) fn key_prefix(text: &str) -> Option<KeyPrefix<'_>> {
    let s = text.trim_start();
    let (key, kind, rest) = if let Some(found) = t_key(s) {
        found
    } else if let Some((num, rest)) = task_word_number(s) {
        (num.to_owned(), KeyKind::Word, rest)
    } else {
        let (num, rest) = dotted_number(s)?;
        let first = rest.chars().next();
        let ok = match first {
            Some('.' | ')' | ':' | '：' | '、' | '*') => true,
            None => num.contains('.'),
            Some(c) => c.is_whitespace() && num.contains('.'),
        };
        if !ok {
            return None;
        }
        (num.to_owned(), KeyKind::Numeric, rest)
    };
    let (rest, optional) = match rest.strip_prefix('*') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    // `1. Title` and `Task 1: Title` only: `1.5x faster` is not a key followed by a title.
    if kind != KeyKind::TKey && kind != KeyKind::Placeholder {
        let next = rest.chars().next();
        if next.is_some_and(|c| !KEY_SEPARATORS.contains(&c) && !c.is_whitespace()) {
            return None;
        }
    }
    let rest = rest.trim_start_matches(KEY_SEPARATORS);
    Some(KeyPrefix {
        key,
        kind,
        rest,
        optional,
    })
}

/// Markers around a title: `[P]`, `(P)`, `[US1]` after the key, and `(P)`/`[P]` at its end.
/// Returns the rest, the parallel flag and the story labels.
pub(crate) fn strip_markers(mut s: &str) -> (&str, bool, Vec<String>) {
    let mut parallel = false;
    let mut stories = Vec::new();
    for _ in 0..8 {
        let t = s.trim_start();
        if let Some(r) = t.strip_prefix("[P]").or_else(|| t.strip_prefix("(P)")) {
            parallel = true;
            s = r;
            continue;
        }
        if let Some(inner) = t.strip_prefix('[').and_then(|r| r.split_once(']')) {
            let (label, r) = inner;
            let is_story = label.len() <= 8
                && label.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("us"))
                && label.len() > 2
                && label.bytes().skip(2).all(|b| b.is_ascii_digit());
            if is_story {
                stories.push(label.to_ascii_uppercase());
                s = r;
                continue;
            }
        }
        break;
    }
    let mut t = s.trim();
    if let Some(r) = t.strip_suffix("(P)").or_else(|| t.strip_suffix("[P]")) {
        parallel = true;
        t = r.trim_end();
    }
    (t, parallel, stories)
}

/// A phase heading (`Phase 2: Core`, `Fase 1`, `Phase One`, `フェーズ1`, `第2阶段`) and its number,
/// if written in digits. The phase word must be followed by a number or a colon, so
/// `Phase Dependencies` is not a phase.
pub(crate) fn phase_heading(text: &str) -> Option<Option<String>> {
    let s = text.trim();
    for w in PHASE_WORDS {
        let Some(rest) = strip_prefix_ci(s, w) else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(next) = rest.chars().next() else {
            return Some(None);
        };
        if next.is_ascii_digit() {
            return Some(dotted_number(rest).map(|(n, _)| n.to_owned()));
        }
        if ":：".contains(next) || CJK_NUMERALS.contains(next) {
            return Some(None);
        }
        let word: String = rest.chars().take_while(|c| c.is_alphabetic()).collect();
        if NUMBER_WORDS.contains(&word.to_lowercase().as_str()) {
            return Some(None);
        }
    }
    if let Some(rest) = s.strip_prefix('第') {
        let head: String = rest.chars().take(8).collect();
        if CJK_PHASE_WORDS.iter().any(|w| head.contains(w)) {
            return Some(dotted_number(rest).map(|(n, _)| n.to_owned()));
        }
    }
    None
}

/// Normal form of a heading for the word lists: lowercase, no trailing colon.
pub(crate) fn heading_norm(text: &str) -> String {
    strip_emph(text)
        .trim()
        .trim_end_matches([':', '：'])
        .trim()
        .to_lowercase()
}

pub(crate) fn is_acceptance_heading(text: &str) -> bool {
    let h = heading_norm(text);
    LABELS
        .iter()
        .any(|(w, l)| *l == Label::Acceptance && h.starts_with(w))
}

/// `## Dependencies & Execution Order`, `## 依存関係`.
pub(crate) fn is_deps_heading(text: &str) -> bool {
    let h = heading_norm(text);
    [
        "dependenc",
        "execution order",
        "dependênc",
        "依存",
        "依赖",
        "执行顺序",
    ]
    .iter()
    .any(|w| h.contains(w))
}

pub(crate) fn is_generic_task_section(text: &str) -> bool {
    let h = heading_norm(text);
    GENERIC_TASK_SECTIONS.contains(&h.as_str())
}

pub(crate) fn is_task_section_hint(text: &str) -> bool {
    let h = heading_norm(text);
    TASK_SECTION_HINTS.iter().any(|w| h.contains(w))
}

pub(crate) fn is_prose_section(title: &str) -> bool {
    let h = heading_norm(title);
    PROSE_SECTIONS.contains(&h.as_str())
}

pub(crate) fn is_checkpoint(title: &str) -> bool {
    let t = title.trim_start();
    CHECKPOINT_WORDS.iter().any(|w| {
        strip_prefix_ci(t, w).is_some_and(|r| r.chars().next().is_none_or(|c| !c.is_alphabetic()))
    })
}

pub(crate) fn is_none_word(s: &str) -> bool {
    let t = s.trim().trim_end_matches(['.', '。']).trim().to_lowercase();
    t.is_empty() || NONE_WORDS.contains(&t.as_str())
}

/// `s` without leading whitespace and emphasis marks.
fn skip_blank(s: &str) -> &str {
    s.trim_start_matches(|c: char| c == EMPH || c.is_whitespace())
}

/// A metadata line (`Depends on: Task 1`, `_Requirements: 1.1_`, `Effort: S`): its label and
/// value. `line` may still hold emphasis marks.
pub(crate) fn label(line: &str) -> Option<(Label, String)> {
    // Emphasis marks may sit anywhere (`**Depends on:** 1`), so skip them while matching
    // instead of copying the line: most lines are not labels.
    let s = skip_blank(line).trim_start_matches(['-', '*', '+', '•']);
    let s = skip_blank(s);
    let first = s.as_bytes().first()?.to_ascii_lowercase();
    for (word, kind) in LABELS {
        // Cheap first-byte test before the full comparison: most lines are not labels.
        if word.as_bytes().first() != Some(&first) {
            continue;
        }
        let Some(rest) = strip_prefix_ci(s, word) else {
            continue;
        };
        let after = skip_blank(rest);
        if let Some(value) = after.strip_prefix([':', '：']) {
            let value = clean_value(&strip_emph(value));
            // `Verify: Tests pass` is prose about checking, not a command: it stays description.
            if *kind == Label::Verify && !value.is_empty() && check_command(&value).is_none() {
                return None;
            }
            return Some((*kind, value));
        }
        let spaced = rest.starts_with([' ', '\t']);
        if spaced && COLONLESS.contains(word) {
            let value = strip_emph(after);
            if super::refs::has_key_token(&value) {
                return Some((*kind, clean_value(&value)));
            }
        }
    }
    None
}

/// The command of a `Verify:` value, without the backticks around it. `None` for prose: a value
/// that starts with a capitalised word (`Tests pass`, `Run the suite`) begins a sentence, and a
/// value with code spans inside prose (`run \`npm test\` twice`) is not one command either.
/// Environment assignments (`RUST_LOG=debug cargo test`) are commands.
pub(crate) fn check_command(value: &str) -> Option<String> {
    let v = value.trim();
    // A full stop after a quoted command ends the sentence, it is not part of the command.
    let v = v
        .strip_suffix('.')
        .filter(|r| r.ends_with('`'))
        .unwrap_or(v);
    if let Some(inner) = v.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        let inner = inner.trim_matches('`').trim();
        return (!inner.is_empty() && !inner.contains('`')).then(|| inner.to_owned());
    }
    let mut chars = v.chars();
    let capitalised = chars.next().is_some_and(char::is_uppercase)
        && chars.next().is_some_and(char::is_lowercase);
    if v.is_empty() || v.contains('`') || capitalised {
        return None;
    }
    Some(v.to_owned())
}

fn clean_value(v: &str) -> String {
    v.trim().trim_end_matches(['_', '*']).trim().to_owned()
}

/// A title normalised for matching references by title.
pub(crate) fn norm_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in strip_emph(s).chars() {
        if matches!(c, '`' | '"' | '\'' | '“' | '”' | '*' | '_') {
            continue;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.extend(c.to_lowercase());
    }
    out.trim_end_matches(['.', ':', '。', '：', ';'])
        .trim_end()
        .to_owned()
}

/// True when a title line ends a sentence, so the next line is description, not title.
pub(crate) fn ends_sentence(s: &str) -> bool {
    s.trim_end()
        .ends_with(['.', ':', '。', '：', '!', '?', '！', '？'])
}

/// True when a line reads as the wrapped rest of the line before it.
pub(crate) fn continues(line: &str) -> bool {
    line.trim_start()
        .chars()
        .next()
        .is_some_and(|c| c.is_lowercase() || c.is_ascii_digit() || "(`/\"'".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_values_are_commands_or_prose() {
        let cmd = |s: &str| check_command(s);
        assert_eq!(
            cmd("cargo test -p auth login").as_deref(),
            Some("cargo test -p auth login")
        );
        assert_eq!(cmd("`npm test`").as_deref(), Some("npm test"));
        assert_eq!(cmd("``npm test -- --grep `x` ``"), None);
        assert_eq!(cmd("`npm test`.").as_deref(), Some("npm test"));
        assert_eq!(
            cmd("RUST_LOG=debug cargo test").as_deref(),
            Some("RUST_LOG=debug cargo test")
        );
        assert_eq!(cmd("Tests pass"), None);
        assert_eq!(cmd("Run `npm test`"), None);
        assert_eq!(cmd("run `npm test` twice"), None);
        assert_eq!(cmd("``"), None);
        assert_eq!(cmd(""), None);
    }

    #[test]
    fn verify_lines_are_labels_unless_prose() {
        let e = EMPH;
        assert_eq!(
            label(&format!("{e}Verify: cargo test -p auth login{e}")),
            Some((Label::Verify, "cargo test -p auth login".to_owned()))
        );
        assert_eq!(
            label("Verify: `npm test`"),
            Some((Label::Verify, "`npm test`".to_owned()))
        );
        assert_eq!(label("Verify:"), Some((Label::Verify, String::new())));
        assert_eq!(label("Verify: Tests pass and the page loads"), None);
        assert_eq!(label("Verify the output by hand"), None);
    }
}
