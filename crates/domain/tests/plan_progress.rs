//! `render_progress`: only checkbox state bytes change, updates to tasks without a checkbox are
//! reported and left out, and re-parsing shows the new states.

use spectask_domain::{
    PlanTaskStatus, SkipReason, SkippedUpdate, parse_plan, render_progress, render_progress_report,
};

const KIRO: &str = "# Implementation Plan\n\n- [ ] 1. Set up\n  - [x] 1.1 Create the repo\n  - [ ]* 1.2 Write tests\n- [ ] 2. Build it\n";

fn statuses(md: &str) -> Vec<(String, PlanTaskStatus)> {
    parse_plan(md)
        .tasks
        .into_iter()
        .map(|t| (t.key, t.status))
        .collect()
}

#[test]
fn rewrites_only_the_state_characters() {
    let out = render_progress(
        KIRO,
        [
            ("1.1", PlanTaskStatus::Pending),
            ("1.2", PlanTaskStatus::Completed),
            ("2", PlanTaskStatus::InProgress),
        ],
    );
    // Kiro writes `[-]` for in progress.
    assert_eq!(
        out,
        "# Implementation Plan\n\n- [ ] 1. Set up\n  - [ ] 1.1 Create the repo\n  - [x]* 1.2 Write tests\n- [-] 2. Build it\n"
    );
    use PlanTaskStatus::*;
    assert_eq!(
        statuses(&out),
        [
            ("1".to_owned(), Pending),
            ("1.1".to_owned(), Pending),
            ("1.2".to_owned(), Completed),
            ("2".to_owned(), InProgress),
        ]
    );
}

#[test]
fn no_updates_is_the_identity() {
    let empty: [(&str, PlanTaskStatus); 0] = [];
    assert_eq!(render_progress(KIRO, empty), KIRO);
}

#[test]
fn spec_kit_completion_uses_upper_case_and_keeps_the_authors_spelling() {
    let md = "## Phase 1: Setup\n\n- [ ] T001 Create the project\r\n- [x] T002 [P] Add lint\r\n- [~] T003 Add CI\r\n";
    let report = render_progress_report(
        md,
        vec![
            ("T001".to_owned(), PlanTaskStatus::Completed),
            ("T002".to_owned(), PlanTaskStatus::Completed),
            ("t003".to_owned(), PlanTaskStatus::InProgress),
        ],
    );
    assert_eq!(
        report.markdown,
        "## Phase 1: Setup\n\n- [X] T001 Create the project\r\n- [x] T002 [P] Add lint\r\n- [~] T003 Add CI\r\n"
    );
    assert!(report.skipped.is_empty());
}

#[test]
fn checklist_in_progress_uses_tilde() {
    let md = "- [ ] Add the column\n- [ ] Hide archived projects\n";
    let out = render_progress(md, [("2", PlanTaskStatus::InProgress)]);
    assert_eq!(out, "- [ ] Add the column\n- [~] Hide archived projects\n");
}

#[test]
fn heading_checkboxes_are_updated_too() {
    let md = "### [ ] Task 1: Schema\n\nBody.\n\n### [x] Task 2: API\n";
    let out = render_progress(
        md,
        [
            ("1", PlanTaskStatus::Completed),
            ("2", PlanTaskStatus::Pending),
        ],
    );
    assert_eq!(
        out,
        "### [x] Task 1: Schema\n\nBody.\n\n### [ ] Task 2: API\n"
    );
}

#[test]
fn updates_that_cannot_be_shown_are_reported_and_left_out() {
    let md = "## Task 1: Schema\n\nCreate it.\n\n- [ ] 1. Write the migration\n";
    let report = render_progress_report(
        md,
        [
            ("1", PlanTaskStatus::Completed),
            ("1.1", PlanTaskStatus::NoCheckbox),
            ("9", PlanTaskStatus::Completed),
            ("1.1", PlanTaskStatus::Completed),
        ],
    );
    assert_eq!(
        report.markdown,
        "## Task 1: Schema\n\nCreate it.\n\n- [x] 1. Write the migration\n"
    );
    assert_eq!(
        report.skipped,
        [
            SkippedUpdate {
                key: "1".to_owned(),
                status: PlanTaskStatus::Completed,
                reason: SkipReason::NoCheckbox,
            },
            SkippedUpdate {
                key: "1.1".to_owned(),
                status: PlanTaskStatus::NoCheckbox,
                reason: SkipReason::NotACheckboxState,
            },
            SkippedUpdate {
                key: "9".to_owned(),
                status: PlanTaskStatus::Completed,
                reason: SkipReason::UnknownKey,
            },
        ]
    );
}

#[test]
fn fixtures_survive_a_full_round_of_updates() {
    let dir = format!("{}/tests/fixtures/plans", env!("CARGO_MANIFEST_DIR"));
    for name in [
        "kiro.md",
        "speckit.md",
        "portuguese.md",
        "japanese.md",
        "checklist.md",
    ] {
        let md = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let plan = parse_plan(&md);
        let updates: Vec<(String, PlanTaskStatus)> = plan
            .tasks
            .iter()
            .map(|t| (t.key.clone(), PlanTaskStatus::Completed))
            .collect();
        let out = render_progress(&md, updates);
        assert_eq!(out.len(), md.len(), "{name}");
        let changed: Vec<usize> = md
            .bytes()
            .zip(out.bytes())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        for &i in &changed {
            assert_eq!(
                &md[i - 1..i],
                "[",
                "{name}: byte {i} is not a checkbox state"
            );
        }
        let again = parse_plan(&out);
        for (before, after) in plan.tasks.iter().zip(&again.tasks) {
            assert_eq!(before.key, after.key);
            assert_eq!(before.title, after.title);
            let expected = if before.status == PlanTaskStatus::NoCheckbox {
                PlanTaskStatus::NoCheckbox
            } else {
                PlanTaskStatus::Completed
            };
            assert_eq!(after.status, expected, "{name} {}", before.key);
        }
    }
}
