//! The acceptance-criteria parser on realistic requirements documents (Kiro, spec-kit, plain
//! EARS with explicit ids), asserting the exact ids; its trace against plans; and property
//! tests: any text parses without panicking, and generated Kiro documents give exactly their
//! `r.c` ids.

// Helpers outside #[test] fns are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

mod support;

use proptest::prelude::*;
use spectask_domain::{
    CriteriaParse, TraceWarningKind, covers, parse_criteria, parse_plan, trace_warnings,
};

fn fixture(name: &str) -> CriteriaParse {
    let path = format!(
        "{}/tests/fixtures/requirements/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    parse_criteria(&std::fs::read_to_string(&path).unwrap())
}

fn ids(parsed: &CriteriaParse) -> Vec<&str> {
    parsed.criteria.iter().map(|c| c.id.as_str()).collect()
}

fn text<'p>(parsed: &'p CriteriaParse, id: &str) -> &'p str {
    parsed
        .criterion(id)
        .map(|c| c.text.as_str())
        .unwrap_or_else(|| panic!("no criterion {id}"))
}

#[test]
fn kiro_requirements() {
    let parsed = fixture("kiro.md");
    assert_eq!(
        ids(&parsed),
        ["1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "3.1", "3.2"]
    );
    assert!(parsed.duplicates.is_empty());
    assert_eq!(
        text(&parsed, "1.1"),
        "WHEN the user stops typing for 2 seconds THEN the system SHALL save the draft"
    );
    assert_eq!(
        text(&parsed, "2.2"),
        "WHEN the user picks a version THEN the system SHALL show a diff against the current \
         draft before restoring it"
    );
    let c = parsed.criterion("3.2").unwrap();
    assert_eq!(c.requirement.as_deref(), Some("3"));
    assert_eq!(c.line, 45);
}

#[test]
fn spec_kit_spec() {
    let parsed = fixture("speckit.md");
    assert_eq!(
        ids(&parsed),
        [
            "US1.1", "US1.2", "US2.1", "FR-001", "FR-002", "FR-003", "FR-004", "FR-005", "SC-001",
            "SC-002"
        ]
    );
    assert!(parsed.duplicates.is_empty());
    assert_eq!(
        text(&parsed, "US1.2"),
        "Given an album with photos, When the user opens it, Then the photos show as tiles in \
         date order"
    );
    assert_eq!(
        parsed.criterion("US2.1").unwrap().requirement.as_deref(),
        Some("US2")
    );
    assert_eq!(
        text(&parsed, "FR-003"),
        "Users MUST be able to drag and drop albums to reorder them"
    );
    assert_eq!(parsed.criterion("FR-003").unwrap().requirement, None);
    assert_eq!(
        text(&parsed, "SC-002"),
        "The main page shows 1,000 albums in under 2 seconds"
    );
}

#[test]
fn plain_ears_with_explicit_ids() {
    let parsed = fixture("ears.md");
    assert_eq!(
        ids(&parsed),
        [
            "1.1", "1.2", "1.3", "2.1", "2.2", "AC-1", "3.1", "3.3", "R4.1", "R4.2"
        ]
    );
    assert!(parsed.duplicates.is_empty());
    assert_eq!(
        text(&parsed, "2.1"),
        "IF the user lacks the `reports.export` permission THEN the system shall hide the Export \
         button"
    );
    assert_eq!(
        text(&parsed, "1.3"),
        "The system shall quote fields that contain commas or line breaks"
    );
    let requirements: Vec<Option<&str>> = parsed
        .criteria
        .iter()
        .map(|c| c.requirement.as_deref())
        .collect();
    assert_eq!(
        requirements,
        [
            Some("1"),
            Some("1"),
            Some("1"),
            Some("2"),
            Some("2"),
            None,
            Some("3"),
            Some("3"),
            Some("R4"),
            Some("R4")
        ]
    );
}

#[test]
fn the_kiro_plan_traces_to_the_kiro_requirements() {
    let criteria = fixture("kiro.md").criteria;
    let plan = parse_plan(
        "# Implementation Plan\n\n\
         - [ ] 1. Autosave\n  - _Requirements: 1.1, 1.2_\n\
         - [ ] 2. History panel\n  - _Requirements: 2_\n\
         - [ ] 3. Purge job\n  - _Requirements: 3.1, 4.1_\n",
    );
    let warnings = trace_warnings(&criteria, &plan.tasks);
    let got: Vec<(TraceWarningKind, String)> = warnings
        .iter()
        .map(|w| {
            let subject = w
                .criterion_id
                .clone()
                .or_else(|| {
                    Some(format!(
                        "{}:{}",
                        w.task_key.as_deref()?,
                        w.reference.as_deref()?
                    ))
                })
                .unwrap();
            (w.kind, subject)
        })
        .collect();
    assert_eq!(
        got,
        [
            (TraceWarningKind::UncoveredCriterion, "1.3".to_owned()),
            (TraceWarningKind::UncoveredCriterion, "3.2".to_owned()),
            (TraceWarningKind::UnknownReference, "3:4.1".to_owned()),
        ]
    );
    let history = plan.task("2").unwrap();
    let linked: Vec<&str> = criteria
        .iter()
        .filter(|c| history.requirement_refs.iter().any(|r| covers(r, c)))
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(linked, ["2.1", "2.2", "2.3"]);
}

#[test]
fn the_spec_kit_plan_traces_by_story_and_requirement() {
    let criteria = fixture("speckit.md").criteria;
    let plan = parse_plan(
        "## Phase 1: Setup\n\n\
         - [ ] T001 Create the album store (FR-001, FR-004)\n\n\
         ## Phase 2: User Story 1\n\n\
         - [ ] T002 [US1] Main page grouped by date per FR-002 and SC-001, SC-002\n\
         - [ ] T003 [US2] Drag and drop reordering (FR-003)\n",
    );
    let uncovered: Vec<&str> = trace_warnings(&criteria, &plan.tasks)
        .iter()
        .map(|w| {
            assert_eq!(w.kind, TraceWarningKind::UncoveredCriterion, "{w:?}");
            criteria
                .iter()
                .find(|c| Some(&c.id) == w.criterion_id.as_ref())
                .map(|c| c.id.as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(uncovered, ["FR-005"]);
}

/// Fragments requirements documents are made of, so generated documents reach the parser's
/// interesting paths.
const FRAGMENTS: &[&str] = &[
    "# Requirements Document",
    "## Requirements",
    "### Requirement 1",
    "### Requirement 2: Export",
    "## Requirement 10",
    "### User Story 1 - Browse (Priority: P1)",
    "### 2.1 Login",
    "### R4 Audit",
    "#### Acceptance Criteria",
    "**Acceptance Scenarios**:",
    "Acceptance criteria:",
    "**User Story:** As a user, I want",
    "1. ",
    "1) ",
    "3. ",
    "- ",
    "* ",
    "- [ ] ",
    "  ",
    "    ",
    "\t",
    "WHEN the user saves THEN the system SHALL persist",
    "THE SYSTEM SHALL",
    "the system shall",
    "IF x THEN y",
    "**Given** a, **When** b, **Then** c",
    "**FR-001**: System MUST",
    "FR-002: ",
    "fr-3 ",
    "NFR-002",
    "SC-001",
    "1.1 ",
    "2.3.1 ",
    "**1.2** ",
    "AC-1: ",
    "R1.2 ",
    "US1.1 ",
    "UTF-8 ",
    "2.5 seconds",
    "```",
    "```md",
    "~~~",
    "> ",
    "| a | b |",
    "|---|---|",
    "---",
    "**",
    "_",
    "`",
    "<div>",
    "[link](http://x)",
    "要件 1",
    "受け入れ基準",
    "\u{E000}",
    "é",
    "\r",
];

fn markdownish() -> impl Strategy<Value = String> {
    support::markdownish(FRAGMENTS)
}

/// Parses, checks the invariants every result must hold, and returns it.
fn parse_checked(md: &str) -> CriteriaParse {
    let parsed = parse_criteria(md);
    let line_count = md.split('\n').count();
    let mut seen = std::collections::HashSet::new();
    for c in &parsed.criteria {
        assert!(seen.insert(c.id.as_str()), "id {} is unique", c.id);
        assert!(!c.id.is_empty() && !c.text.is_empty(), "{c:?}");
        assert!(c.line >= 1 && c.line <= line_count, "{c:?}");
        assert!(!c.text.contains(['\n', '\r', '\u{E000}']), "{c:?}");
    }
    for d in &parsed.duplicates {
        let first = parsed
            .criterion(&d.id)
            .expect("a duplicate repeats a kept id");
        assert!(first.line <= d.line, "{d:?}");
    }
    let json = serde_json::to_string(&parsed).expect("serialises");
    let back: CriteriaParse = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, parsed);
    parsed
}

/// One criterion's wording, in the EARS forms Kiro writes.
fn ears_text() -> impl Strategy<Value = String> {
    (
        0..4u8,
        "[a-z]{1,8}( [a-z]{1,8}){0,4}",
        "[a-z]{1,8}( [a-z]{1,8}){0,4}",
    )
        .prop_map(|(form, trigger, response)| match form {
            0 => format!("WHEN {trigger} THEN the system SHALL {response}"),
            1 => format!("WHEN {trigger} THE SYSTEM SHALL {response}"),
            2 => format!("IF {trigger} THEN the system SHALL {response}"),
            _ => format!("WHILE {trigger} the system shall {response}"),
        })
}

/// A Kiro requirements document with `criteria[r]` criteria under requirement `r + 1`, written
/// in the heading and numbering variants seen, with the texts expected for each criterion.
fn kiro_document() -> impl Strategy<Value = (String, Vec<Vec<String>>)> {
    let requirement = (
        0..3u8,
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(ears_text(), 1..6),
    );
    prop::collection::vec(requirement, 1..8).prop_map(|requirements| {
        let mut md = String::from("# Requirements Document\n\n## Introduction\n\nSome prose.\n\n");
        md.push_str("## Requirements\n\n");
        let mut expected = Vec::new();
        for (i, (heading, story, lazy, texts)) in requirements.into_iter().enumerate() {
            let r = i + 1;
            match heading {
                0 => md.push_str(&format!("### Requirement {r}\n\n")),
                1 => md.push_str(&format!("### Requirement {r}: Feature {r}\n\n")),
                _ => md.push_str(&format!("## Requirement {r}\n\n")),
            }
            if story {
                md.push_str("**User Story:** As a user, I want it, so that it works.\n\n");
            }
            md.push_str("#### Acceptance Criteria\n\n");
            for (c, text) in texts.iter().enumerate() {
                let n = if lazy { 1 } else { c + 1 };
                md.push_str(&format!("{n}. {text}\n"));
            }
            md.push('\n');
            expected.push(texts);
        }
        (md, expected)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_unicode_never_panics_and_is_deterministic(md in "\\PC{0,400}") {
        let a = parse_checked(&md);
        prop_assert_eq!(a, parse_criteria(&md));
    }

    #[test]
    fn markdownish_noise_never_panics_and_is_deterministic(md in markdownish()) {
        let a = parse_checked(&md);
        let plan = parse_plan(&md);
        let _ = trace_warnings(&a.criteria, &plan.tasks);
        prop_assert_eq!(a, parse_criteria(&md));
    }

    #[test]
    fn kiro_documents_give_exactly_their_ids((md, expected) in kiro_document()) {
        let parsed = parse_checked(&md);
        let want: Vec<(String, String)> = expected
            .iter()
            .enumerate()
            .flat_map(|(r, texts)| {
                texts
                    .iter()
                    .enumerate()
                    .map(move |(c, t)| (format!("{}.{}", r + 1, c + 1), t.clone()))
            })
            .collect();
        let got: Vec<(String, String)> = parsed
            .criteria
            .iter()
            .map(|c| (c.id.clone(), c.text.clone()))
            .collect();
        prop_assert_eq!(got, want, "{}", md);
        prop_assert!(parsed.duplicates.is_empty());
        for c in &parsed.criteria {
            let r = c.id.split('.').next().unwrap_or_default();
            prop_assert_eq!(c.requirement.as_deref(), Some(r));
        }
    }
}

/// Inputs built to hurt: each must parse in well under a second even in a debug build.
#[test]
fn pathological_inputs_finish_quickly() {
    let cases: Vec<(&str, String)> = vec![
        (
            "nested quotes",
            "> ".repeat(50_000) + "- 1.1 WHEN x THEN y SHALL z",
        ),
        (
            "nested lists",
            (0..1_000)
                .map(|i| format!("{}- 1.{i} The system shall {i}\n", "  ".repeat(i)))
                .collect(),
        ),
        ("emphasis", "*_".repeat(50_000)),
        (
            "huge line",
            format!("- FR-001: {}", "word ".repeat(200_000)),
        ),
        (
            "many criteria",
            (0..20_000)
                .map(|i| format!("- FR-{i}: System MUST {i}\n"))
                .collect(),
        ),
        (
            "many requirements",
            (0..5_000)
                .map(|i| format!("### Requirement {i}\n#### Acceptance Criteria\n1. a\n2. b\n"))
                .collect(),
        ),
        ("many dots", format!("- {} shall", "1.".repeat(50_000))),
        (
            "huge number",
            format!("1{}. WHEN x THEN y", "9".repeat(100)),
        ),
    ];
    for (name, md) in cases {
        let start = Instant::now();
        let parsed = parse_criteria(&md);
        let plan = parse_plan(&md);
        let _ = trace_warnings(&parsed.criteria, &plan.tasks);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "{name} took {took:?}");
    }
}
