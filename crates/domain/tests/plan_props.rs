//! Property tests and the fuzz target of the plan parser (issue 3 accepts a proptest-based fuzz
//! target: the stable toolchain cannot build cargo-fuzz). Arbitrary Unicode and Markdown-shaped
//! noise never panic and always terminate; parsing is deterministic; `render_progress` with no
//! updates is the identity; updating then re-parsing yields the new states. Pathological inputs
//! (deep nesting, huge lines) finish quickly.

// Helpers outside #[test] fns are not covered by clippy's allow-expect-in-tests.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

mod support;

use proptest::prelude::*;
use spectask_domain::{PlanTaskStatus, parse_plan, render_progress};

/// Fragments plans are made of, so generated documents reach the parser's interesting paths.
const FRAGMENTS: &[&str] = &[
    "- [ ] ",
    "- [x] ",
    "- [~] ",
    "- [-] ",
    "  - [ ]* ",
    "* [X] ",
    "1. ",
    "2) ",
    "  ",
    "    ",
    "\t",
    "1.1 ",
    "2.3. ",
    "T001 ",
    "T014 [P] [US1] ",
    "TXXX ",
    "(P) ",
    "# Implementation Plan",
    "## Phase 1: Setup",
    "## Fase 2",
    "### Task 3: ",
    "### Step 2 — ",
    "## 1. Overview",
    "## Dependencies & Execution Order",
    "## Open questions",
    "## Verification",
    "Should it be cached?",
    "~~Which database?~~ ",
    "#### Acceptance Criteria",
    "Acceptance criteria:",
    "_Requirements: 1.1, 2.3_",
    "**Validates: Requirements 4.1-4.3**",
    "_Depends: 1.2, 3_",
    "Depends on: Task 1, Create the schema",
    "(depends on T012, T013)",
    "T014 depends on T012",
    "T004 blocks T005-T008",
    "Effort: Small",
    "_Verify: cargo test -p auth_",
    "Verify: `npm test`",
    "**Verify:** ",
    "[Spec §2.1]",
    "FR-015",
    "Checkpoint - ensure tests pass",
    "Create the schema",
    "```",
    "```rust",
    "> ",
    "| a | b |",
    "|---|---|",
    "---",
    "**",
    "_",
    "`",
    "<div>",
    "[link](http://x)",
    "タスク1: スキーマ",
    "任务 2：接口",
    "依存: 2.1",
    "Tarefa 3 - Criar API",
    "\u{E000}",
    "é",
    "\r",
];

fn markdownish() -> impl Strategy<Value = String> {
    support::markdownish(FRAGMENTS)
}

fn status() -> impl Strategy<Value = PlanTaskStatus> {
    prop_oneof![
        Just(PlanTaskStatus::Pending),
        Just(PlanTaskStatus::InProgress),
        Just(PlanTaskStatus::Completed),
    ]
}

/// Parses, checks the invariants every plan must hold, and returns the plan.
fn parse_checked(md: &str) -> spectask_domain::ParsedPlan {
    let plan = parse_plan(md);
    let keys: std::collections::HashSet<&str> = plan.tasks.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys.len(), plan.tasks.len(), "keys are unique");
    for (i, t) in plan.tasks.iter().enumerate() {
        assert_eq!(t.index, i);
        assert!(t.line >= 1);
        if let Some(p) = &t.parent {
            let parent = plan.task(p).expect("parent exists");
            assert!(parent.index < i, "parents come first");
        }
        for d in &t.depends_on {
            assert!(keys.contains(d.as_str()), "dependency {d} exists");
        }
    }
    let json = serde_json::to_string(&plan).expect("serialises");
    let back: spectask_domain::ParsedPlan = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, plan);
    plan
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_unicode_never_panics_and_is_deterministic(md in "\\PC{0,400}") {
        let a = parse_checked(&md);
        prop_assert_eq!(&a, &parse_plan(&md));
        prop_assert!(!a.tasks.is_empty() || md.trim().is_empty());
    }

    #[test]
    fn markdownish_noise_never_panics_and_is_deterministic(md in markdownish()) {
        let a = parse_checked(&md);
        prop_assert_eq!(a, parse_plan(&md));
    }

    #[test]
    fn no_updates_render_the_identity(md in markdownish()) {
        let none: [(&str, PlanTaskStatus); 0] = [];
        prop_assert_eq!(render_progress(&md, none), md);
    }

    #[test]
    fn updates_show_up_after_reparsing(
        md in markdownish(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), status()), 0..8),
    ) {
        let plan = parse_plan(&md);
        let boxed: Vec<&str> = plan
            .tasks
            .iter()
            .filter(|t| t.status != PlanTaskStatus::NoCheckbox)
            .map(|t| t.key.as_str())
            .collect();
        prop_assume!(!boxed.is_empty());
        let updates: Vec<(&str, PlanTaskStatus)> =
            picks.iter().map(|(i, s)| (*i.get(&boxed), *s)).collect();
        let out = render_progress(&md, updates.iter().copied());
        prop_assert_eq!(out.len(), md.len());
        let again = parse_plan(&out);
        prop_assert_eq!(again.tasks.len(), plan.tasks.len());
        for (before, after) in plan.tasks.iter().zip(&again.tasks) {
            prop_assert_eq!(&before.key, &after.key);
            let expected = updates
                .iter()
                .rev()
                .find(|(k, _)| *k == before.key)
                .map_or(before.status, |(_, s)| *s);
            prop_assert_eq!(after.status, expected, "task {}", before.key);
        }
    }
}

/// A command as plans write them: lowercase words, flags, paths.
fn command() -> impl Strategy<Value = String> {
    let word = "[a-z0-9][a-z0-9./=-]{0,8}";
    (
        "[a-z][a-z0-9]{0,8}",
        prop::collection::vec(prop_oneof![word, "-{1,2}[a-z]{1,6}"], 0..5),
    )
        .prop_map(|(program, args)| {
            let mut out = program;
            for a in args {
                out.push(' ');
                out.push_str(&a);
            }
            out
        })
}

/// How a plan writes one `Verify:` line under a task.
fn verify_line(form: u8, command: &str) -> String {
    match form % 4 {
        0 => format!("  - _Verify: {command}_"),
        1 => format!("  - Verify: `{command}`"),
        2 => format!("  - **Verify:** {command}"),
        _ => format!("  - _Verify: `{command}`_"),
    }
}

/// A Kiro plan whose tasks carry `Verify:` lines among detail bullets, with the commands each
/// task should end up with.
fn plan_with_checks() -> impl Strategy<Value = (String, Vec<Vec<String>>)> {
    let task = (
        "[a-z]{1,8}( [a-z]{1,8}){0,3}",
        prop::collection::vec("[a-z]{1,8}( [a-z]{1,8}){0,4}", 0..3),
        prop::collection::vec((any::<u8>(), command()), 0..4),
        any::<bool>(),
    );
    prop::collection::vec(task, 1..8).prop_map(|tasks| {
        let mut md = String::from("# Implementation Plan\n\n");
        let mut expected = Vec::new();
        for (i, (title, details, checks, on_title)) in tasks.into_iter().enumerate() {
            let mut checks = checks.into_iter();
            let mut commands = Vec::new();
            md.push_str(&format!("- [ ] {}. {title}", i + 1));
            if on_title && let Some((_, c)) = checks.next() {
                md.push_str(&format!(" _Verify: {c}_"));
                commands.push(c);
            }
            md.push('\n');
            // Each line with the command it carries, if any.
            let mut lines: Vec<(String, Option<String>)> =
                details.iter().map(|d| (format!("  - {d}"), None)).collect();
            for (form, c) in checks {
                // The verify lines sit between and after the detail bullets.
                let at = usize::from(form) % (lines.len() + 1);
                lines.insert(at, (verify_line(form, &c), Some(c)));
            }
            for (l, c) in lines {
                md.push_str(&l);
                md.push('\n');
                commands.extend(c);
            }
            md.push('\n');
            let mut unique = Vec::new();
            for c in commands {
                if !unique.contains(&c) {
                    unique.push(c);
                }
            }
            expected.push(unique);
        }
        (md, expected)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn verify_lines_become_checks_and_never_leak_into_descriptions(
        (md, expected) in plan_with_checks()
    ) {
        let plan = parse_checked(&md);
        prop_assert_eq!(plan.tasks.len(), expected.len(), "{}", md);
        for (task, commands) in plan.tasks.iter().zip(&expected) {
            prop_assert_eq!(&task.checks, commands, "task {} of\n{}", task.key, md);
            let description = task.description.as_deref().unwrap_or("");
            prop_assert!(!description.contains("Verify"), "task {}: {}", task.key, description);
            prop_assert!(!task.title.contains("Verify"), "task {}: {}", task.key, task.title);
        }
    }
}

/// Inputs built to hurt: each must parse in well under a second even in a debug build.
#[test]
fn pathological_inputs_finish_quickly() {
    let cases: Vec<(&str, String)> = vec![
        ("nested quotes", "> ".repeat(50_000) + "- [ ] 1. deep"),
        (
            "nested lists",
            (0..1_000)
                .map(|i| format!("{}- [ ] {i}. t\n", "  ".repeat(i)))
                .collect(),
        ),
        (
            "nested ordered",
            (0..1_000)
                .map(|i| format!("{}1. t\n", "   ".repeat(i)))
                .collect(),
        ),
        ("brackets", "[".repeat(100_000)),
        ("emphasis", "*_".repeat(50_000)),
        ("backticks", "`".repeat(100_000)),
        ("huge line", format!("- [ ] 1. {}", "word ".repeat(200_000))),
        (
            "huge title line",
            format!("## Task 1: {}", "x".repeat(500_000)),
        ),
        (
            "many refs",
            format!("- [ ] 1. a\n  - Depends on: {}", "Task 1, ".repeat(20_000)),
        ),
        (
            "long range",
            "- [ ] T001 a\n- [ ] T999999 b\n  - Depends on: T001-T999999\n".to_owned(),
        ),
        ("many dots", format!("- [ ] {} a", "1.".repeat(50_000))),
        (
            "many title refs",
            (0..1_500)
                .map(|i| format!("- [ ] {i}. Title {i}\n  - Depends on: Title {}\n", i + 1))
                .collect(),
        ),
        (
            "nul and controls",
            "\0\u{1}\u{7f}- [ ] \u{2028}1.\u{0} x\n".repeat(1_000),
        ),
    ];
    for (name, md) in cases {
        let start = Instant::now();
        let plan = parse_plan(&md);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "{name} took {took:?}");
        let _ = render_progress(
            &md,
            plan.tasks
                .iter()
                .map(|t| (t.key.as_str(), PlanTaskStatus::Completed)),
        );
    }
}

#[test]
fn dependency_explosions_are_refused_not_built() {
    // Two ordered phases of 600 independent tasks: every task of the second waits for every
    // task of the first, 360,000 edges, over the cap.
    let mut md = String::from("## Phase 1: A\n");
    for i in 1..=600 {
        md.push_str(&format!("- [ ] {i}. a\n"));
    }
    md.push_str("## Phase 2: B\n");
    for i in 601..=1200 {
        md.push_str(&format!("- [ ] {i}. b\n"));
    }
    let plan = parse_plan(&md);
    assert_eq!(plan.tasks.len(), 1200);
    let kinds: Vec<_> = plan.errors.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [spectask_domain::PlanErrorKind::TooManyDependencies]);
    let edges: usize = plan.tasks.iter().map(|t| t.depends_on.len()).sum();
    assert!(edges <= 250_000);
    // Prose statements multiply too: `T001-T200 blocks T201-T400` is 40,000 edges a line.
    let mut md: String = (1..=400).map(|i| format!("- [ ] T{i:03} t\n")).collect();
    md.push_str("\n## Dependencies\n\n");
    for _ in 0..10 {
        md.push_str("- T001-T200 blocks T201-T400\n");
    }
    let plan = parse_plan(&md);
    let kinds: Vec<_> = plan.errors.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [spectask_domain::PlanErrorKind::TooManyDependencies]);
}

#[test]
fn long_titles_are_cut_and_kept_whole_in_the_description() {
    let title = "word ".repeat(100);
    let plan = parse_plan(&format!("- [ ] 1. {title}\n"));
    let t = &plan.tasks[0];
    assert_eq!(
        t.title.chars().count(),
        spectask_domain::limits::MAX_NAME_CHARS
    );
    assert!(t.title.ends_with('…'));
    assert_eq!(t.description.as_deref(), Some(title.trim()));
}
