//! Checklists that sit next to a plan without being it: open questions (some struck through once
//! answered), verification and acceptance checks, test checklists. Recognised by the heading
//! they sit under or by items that are mostly questions, in the languages plans are written in
//! (English, German, French, Spanish, Portuguese, Japanese, Chinese, Russian).
//!
//! Such a checklist does not outrank a numbered-list or heading plan (`rules` decides); when the
//! document has no other plan, it is still the plan.

use super::text::{KeyKind, heading_norm, key_prefix, phase_heading, strip_emph};
use super::words::{SIDE_WORDS, WORK_WORDS};

/// Whether a heading names a checklist that is not the plan: questions, verification,
/// acceptance, checks, testing. Task and phase headings (`## Step 4: Testing`,
/// `## Phase 3: Verification`) and headings naming the work (`## Implementation checklist`)
/// are not.
pub(crate) fn is_side_heading(text: &str) -> bool {
    let plain = strip_emph(text);
    let mut rest = plain.trim();
    if let Some(k) = key_prefix(rest) {
        if k.kind != KeyKind::Numeric {
            return false;
        }
        rest = k.rest;
    }
    if phase_heading(rest).is_some() {
        return false;
    }
    let h = heading_norm(rest);
    !WORK_WORDS.iter().any(|w| has_word(&h, w)) && SIDE_WORDS.iter().any(|w| has_word(&h, w))
}

/// Whether a checklist item reads as a question or an answered (struck-through) one:
/// `Should the cache be per user?`, `~~Which database?~~ PostgreSQL`.
pub(crate) fn is_question_item(text: &str) -> bool {
    let plain = strip_emph(text);
    let t = plain.trim();
    t.starts_with("~~") || t.trim_end_matches(['*', '_', ' ']).ends_with(['?', '？'])
}

/// Whether `word` occurs in `hay`; Latin and Cyrillic words only as whole words.
fn has_word(hay: &str, word: &str) -> bool {
    let cjk = word.chars().next().is_some_and(is_cjk);
    hay.match_indices(word).any(|(at, _)| {
        if cjk {
            return true;
        }
        let before = hay.get(..at).and_then(|s| s.chars().next_back());
        let after = hay.get(at + word.len()..).and_then(|s| s.chars().next());
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Han, kana and the CJK punctuation block, where words are not separated by spaces.
fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3000}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{FF00}'..='\u{FFEF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_headings_in_several_languages() {
        for h in [
            "Open Questions",
            "5. Verification checklist",
            "Acceptance checks",
            "Final checks:",
            "Manual testing",
            "Offene Fragen",
            "Vérification",
            "Preguntas abiertas",
            "検証",
            "確認事項",
            "待解决问题",
            "Открытые вопросы",
            "**Verification**",
        ] {
            assert!(is_side_heading(h), "{h}");
        }
        for h in [
            "Implementation checklist",
            "Tasks",
            "Step 4: Testing",
            "Phase 3: Verification",
            "Checkout flow",
            "Plan",
            "実装タスク",
            "Requests",
        ] {
            assert!(!is_side_heading(h), "{h}");
        }
    }

    #[test]
    fn questions_and_struck_answers() {
        assert!(is_question_item("Should the cache be per user?"));
        assert!(is_question_item("キャッシュはユーザーごとにしますか？"));
        assert!(is_question_item("~~Which database?~~ PostgreSQL"));
        assert!(is_question_item("**Do we need a migration?**"));
        assert!(!is_question_item("Add the migration"));
    }
}
