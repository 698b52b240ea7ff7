//! Small matchers on the text of one heading, list item or line of a requirements document:
//! explicit ids at the start of a line (`1.1`, `FR-001`, `AC-1`, `R1.2`), requirement headings
//! (`Requirement 1`, `User Story 2 - ...`, `2.1 Login`), acceptance labels and EARS statements.
//! Like the plan's matchers, each walks its input a bounded number of times; no regular
//! expressions. Text comes from the plan's outline, so emphasis boundaries are marked with
//! [`EMPH`].

use crate::plan::blocks::EMPH;
use crate::plan::text::{dotted_number, is_acceptance_heading, strip_emph, strip_prefix_ci};

/// Id prefixes that make an id however they are written (`FR-001`, `fr-001`, `R1.2`, `US1`):
/// spec-kit's functional, non-functional and success criteria, and the usual requirement,
/// acceptance-criterion and user-story prefixes. Other prefixes need more evidence, see
/// [`id_prefix`].
const KNOWN_PREFIXES: &[&str] = &["NFR", "FR", "SC", "REQ", "AC", "US", "R"];

/// Words of a requirement heading (`Requirement 1`, `要件 2`), longest spelling first.
const REQUIREMENT_WORDS: &[&str] = &[
    "requirement",
    "requisito",
    "requerimiento",
    "anforderung",
    "exigence",
    "req",
    "要件",
    "需求",
];

/// Words of a user-story heading (`User Story 1 - Title (Priority: P1)`), longest first.
const STORY_WORDS: &[&str] = &[
    "user story",
    "história de usuário",
    "historia de usuario",
    "story",
    "ユーザーストーリー",
    "用户故事",
];

/// Characters that may end an id: `1.1 WHEN`, `FR-001: System`, `1.2) The`, `AC-1 — The`.
const ID_ENDS: &[char] = &[':', '：', '.', ')', ']', '-', '—', '–', '|', ','];

/// Words that open an EARS statement or a Given/When/Then scenario.
const EARS_OPENERS: &[&str] = &["when", "while", "if", "where", "given"];

/// An id written at the start of a line, and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IdPrefix<'a> {
    /// As written, with the letters of a prefix upper-cased (`fr-001` is `FR-001`).
    pub id: String,
    /// The text after the id and its separator (may still hold emphasis marks).
    pub rest: &'a str,
    /// The id is emphasised (`**1.2** The system shall`): written as an id on purpose.
    pub bold: bool,
    /// The id is a bare dotted number (`2.3.1`), easier to mistake for a version or a figure.
    pub numeric: bool,
}

/// An id at the start of `text`: a dotted number with at least one dot (`1.1`, `2.3.1`) or a
/// prefixed id (`FR-001`, `AC-1`, `R1.2`, `US1`). Prefixes outside [`KNOWN_PREFIXES`] count only
/// in capitals, with a hyphen, and when bold or followed by a colon (`**SEC-01**`, `PERF-2:`), so
/// `UTF-8 text` and `HTTP2 support` are not ids. The id must end at a separator: `1.5x` is none.
pub(super) fn id_prefix(text: &str) -> Option<IdPrefix<'_>> {
    let s = text.trim_start();
    let bold = s.starts_with(EMPH);
    let s = s.trim_start_matches(|c: char| c == EMPH || c.is_whitespace());
    let (id, numeric, after) = if let Some((num, after)) = dotted_number(s) {
        if !num.contains('.') {
            return None;
        }
        (num.to_owned(), true, after)
    } else {
        let letters_len = s.bytes().take_while(u8::is_ascii_alphabetic).count();
        if letters_len == 0 || letters_len > 6 {
            return None;
        }
        let letters = s.get(..letters_len)?;
        let upper = letters.to_ascii_uppercase();
        let rest = s.get(letters_len..)?;
        let (hyphen, rest) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (num, after) = dotted_number(rest)?;
        let written_upper = letters == upper;
        let ok = if KNOWN_PREFIXES.contains(&upper.as_str()) {
            written_upper || hyphen
        } else {
            let colon = after.trim_start_matches(EMPH).starts_with([':', '：']);
            written_upper && hyphen && letters_len >= 2 && (bold || colon)
        };
        if !ok {
            return None;
        }
        let sep = if hyphen { "-" } else { "" };
        (format!("{upper}{sep}{num}"), false, after)
    };
    let after = after.trim_start_matches(EMPH);
    if after
        .chars()
        .next()
        .is_some_and(|c| !c.is_whitespace() && !ID_ENDS.contains(&c))
    {
        return None;
    }
    let rest =
        after.trim_start_matches(|c: char| c == EMPH || c.is_whitespace() || ID_ENDS.contains(&c));
    Some(IdPrefix {
        id,
        rest,
        bold,
        numeric,
    })
}

/// The id of a requirement heading: `Requirement 1: Title` is `1`, `User Story 2 - Title` is
/// `US2`, a numbered heading (`2.1 Login`, `3. Export`) its number, and a prefixed id
/// (`FR-001: Login`, `R1 Login`) the id. `None` for any other heading.
pub(super) fn requirement_heading(text: &str) -> Option<String> {
    let plain = strip_emph(text);
    let s = plain.trim();
    for word in REQUIREMENT_WORDS {
        if let Some(num) = strip_prefix_ci(s, word).and_then(number_after_word) {
            return Some(num.to_owned());
        }
    }
    for word in STORY_WORDS {
        if let Some(num) = strip_prefix_ci(s, word).and_then(number_after_word) {
            return Some(format!("US{num}"));
        }
    }
    if let Some((num, after)) = dotted_number(s) {
        let ok = match after.chars().next() {
            None => num.contains('.'),
            Some('.' | ')' | ':' | '：') => true,
            Some(c) => c.is_whitespace() && num.contains('.'),
        };
        return ok.then(|| num.to_owned());
    }
    id_prefix(text).filter(|p| !p.numeric).map(|p| p.id)
}

/// The number after a heading word (`Requirement 1:`, `要件1`, `Story #2`), ending at a
/// non-alphanumeric character so `Requirements 1` (plural) and `Request1` are not matched.
fn number_after_word(rest: &str) -> Option<&str> {
    let rest = rest.trim_start_matches([' ', '\t', '\u{3000}', '#']);
    let (num, after) = dotted_number(rest)?;
    after
        .chars()
        .next()
        .is_none_or(|c| !c.is_alphanumeric())
        .then_some(num)
}

/// A paragraph that announces acceptance criteria (`**Acceptance Scenarios**:`,
/// `Acceptance criteria:`): short, naming acceptance, and ending with a colon or wholly
/// emphasised, so prose that starts with "Acceptance" is not one.
pub(super) fn is_acceptance_label(text: &str) -> bool {
    let t = text.trim();
    let plain = strip_emph(t);
    let plain = plain.trim();
    let labelled = plain.ends_with([':', '：']) || (t.starts_with(EMPH) && t.ends_with(EMPH));
    labelled && plain.chars().count() <= 48 && is_acceptance_heading(plain)
}

/// Whether plain text is an EARS statement (`The system shall ...`, `WHEN ... THE SYSTEM SHALL
/// ...`, `IF ... THEN ...`) or a Given/When/Then scenario. `shall` counts in any case.
pub(super) fn is_ears(text: &str) -> bool {
    let lower = text.trim_start().to_lowercase();
    if has_word(&lower, "shall") {
        return true;
    }
    let opens = EARS_OPENERS.iter().any(|w| {
        lower
            .strip_prefix(w)
            .is_some_and(|r| r.chars().next().is_none_or(|c| !c.is_alphanumeric()))
    });
    opens && has_word(&lower, "then")
}

/// Whether `word` occurs in `hay` as a whole word.
fn has_word(hay: &str, word: &str) -> bool {
    hay.match_indices(word).any(|(at, _)| {
        let before = hay.get(..at).and_then(|s| s.chars().next_back());
        let after = hay.get(at + word.len()..).and_then(|s| s.chars().next());
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Text on one line without emphasis marks: runs of whitespace become one space.
pub(super) fn one_line(text: &str) -> String {
    strip_emph(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether an id is a bare dotted number (`1`, `2.3`).
pub(super) fn is_numeric_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Whether `id` is `parent` followed by `.` and more (`1.2` of `1`, not `10.2`).
pub(super) fn is_child_of(id: &str, parent: &str) -> bool {
    id.len() > parent.len()
        && id
            .get(..parent.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(parent))
        && id.as_bytes().get(parent.len()) == Some(&b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Option<(String, String, bool)> {
        id_prefix(text).map(|p| (p.id, strip_emph(p.rest), p.bold))
    }

    #[test]
    fn explicit_ids() {
        let e = EMPH;
        let some = |i: &str, r: &str, b: bool| Some((i.to_owned(), r.to_owned(), b));
        assert_eq!(id("1.1 WHEN x"), some("1.1", "WHEN x", false));
        assert_eq!(id("2.3.1: The system"), some("2.3.1", "The system", false));
        assert_eq!(
            id(&format!("{e}1.2{e} The system shall")),
            some("1.2", "The system shall", true)
        );
        assert_eq!(
            id(&format!("{e}FR-001{e}: System MUST")),
            some("FR-001", "System MUST", true)
        );
        assert_eq!(
            id("fr-015 System MUST"),
            some("FR-015", "System MUST", false)
        );
        assert_eq!(id("NFR-002: Fast"), some("NFR-002", "Fast", false));
        assert_eq!(id("AC-1 — Saves"), some("AC-1", "Saves", false));
        assert_eq!(id("R1.2) The"), some("R1.2", "The", false));
        assert_eq!(id("US1.3 Given"), some("US1.3", "Given", false));
        assert_eq!(
            id(&format!("{e}SEC-01{e} Encrypt")),
            some("SEC-01", "Encrypt", true)
        );
        assert_eq!(
            id("PERF-2: Under 200 ms"),
            some("PERF-2", "Under 200 ms", false)
        );
        for none in [
            "1. Title",
            "1 WHEN",
            "1.5x faster",
            "UTF-8 everywhere",
            "HTTP2 support",
            "r1.2 lower",
            "Requirement 1",
            "FR-001a x",
            "",
            "plain text",
        ] {
            assert_eq!(id(none), None, "{none}");
        }
    }

    #[test]
    fn requirement_headings() {
        let h = |s: &str| requirement_heading(s);
        assert_eq!(h("Requirement 1").as_deref(), Some("1"));
        assert_eq!(h("Requirement 2: Export").as_deref(), Some("2"));
        assert_eq!(h("要件 3: ログイン").as_deref(), Some("3"));
        assert_eq!(
            h("User Story 1 - Browse the catalog (Priority: P1)").as_deref(),
            Some("US1")
        );
        assert_eq!(h("2.1 Login").as_deref(), Some("2.1"));
        assert_eq!(h("3. Export").as_deref(), Some("3"));
        assert_eq!(h("FR-001: Login").as_deref(), Some("FR-001"));
        assert_eq!(h("R1 Login").as_deref(), Some("R1"));
        for none in [
            "Requirements",
            "Requirements: Dark mode",
            "Introduction",
            "2024 roadmap",
            "Acceptance Criteria",
        ] {
            assert_eq!(h(none), None, "{none}");
        }
    }

    #[test]
    fn acceptance_labels_and_ears() {
        let e = EMPH;
        assert!(is_acceptance_label(&format!("{e}Acceptance Scenarios{e}:")));
        assert!(is_acceptance_label(&format!("{e}Acceptance Criteria{e}")));
        assert!(is_acceptance_label("Acceptance criteria:"));
        assert!(!is_acceptance_label("Acceptance tests run every night."));
        assert!(is_ears(
            "WHEN the user saves THEN the system SHALL persist it"
        ));
        assert!(is_ears("The system shall log every login"));
        assert!(is_ears("IF the token expired THEN reject the request"));
        assert!(is_ears("Given a cart, When I pay, Then I get a receipt"));
        assert!(!is_ears("Whenever possible, keep it simple"));
        assert!(!is_ears("Marshall the data"));
    }
}
