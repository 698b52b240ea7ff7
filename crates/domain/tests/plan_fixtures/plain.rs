//! Plans without a spec tool's format: heading plans, numbered lists, flat checklists, prose, and
//! a broken plan.

use spectask_domain::{PlanErrorKind, PlanFormat, parse_plan};

use crate::support::{description, fixture, row, rows};

#[test]
fn heading_plan() {
    let plan = fixture("headings.md");
    assert_eq!(plan.format, PlanFormat::Headings);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    // `Task 1:`, `Step 3 —` and `4.` headings; references by key, `Task N` and title.
    let expected = vec![
        row("1", "Schema for limits", None, None, "none", &[], &[], ""),
        row(
            "2",
            "Limiter middleware",
            None,
            None,
            "none",
            &["1"],
            &["2.1", "2.2"],
            "",
        ),
        row("3", "Configuration", None, None, "none", &["2"], &[], ""),
        row(
            "4",
            "Documentation",
            None,
            None,
            "none",
            &["2", "3"],
            &[],
            "",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    let schema = plan.task("1").unwrap();
    assert_eq!(
        schema.description.as_deref(),
        Some(
            "Create the `rate_limits` table.\n\n```sql\nCREATE TABLE rate_limits (\n  key TEXT PRIMARY KEY,\n  tokens INTEGER NOT NULL\n);\n```"
        )
    );
    assert_eq!(schema.estimated_effort.as_deref(), Some("Small"));
    assert_eq!(
        schema.acceptance_criteria,
        [
            "The migration applies on SQLite and PostgreSQL",
            "Rolling back drops the table"
        ]
    );
    // Prose mentioning "description" and "criteria" is kept, unlike the origin's parser.
    let limiter = plan.task("2").unwrap();
    assert_eq!(
        limiter.description.as_deref(),
        Some(
            "Implement the middleware in `src/limit.rs`. It must describe its criteria for\n\
             rejecting a request in the logs.\n\n\
             | Header | Meaning |\n| --- | --- |\n| `X-RateLimit-Remaining` | tokens left |"
        )
    );
    assert_eq!(
        limiter.acceptance_criteria,
        [
            "A client over its budget gets 429",
            "The `Retry-After` header is set"
        ]
    );
    assert_eq!(
        plan.task("4").unwrap().estimated_effort.as_deref(),
        Some("1h")
    );
    assert_eq!(plan.context.len(), 1);
    assert_eq!(plan.context[0].heading.as_deref(), Some("Overview"));
}

#[test]
fn heading_plan_with_sub_tasks() {
    let plan = fixture("headings_nested.md");
    assert_eq!(plan.format, PlanFormat::Headings);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    // `## 1. Overview` is a section; `### 1.1` under `## Task 1` is a sub-task; locally
    // numbered checkboxes under `## Task 2` become 2.1 and 2.2.
    let expected = vec![
        row("1", "Index", None, None, "none", &[], &[], ""),
        row(
            "1.1",
            "Create the FTS table",
            Some("1"),
            None,
            "none",
            &[],
            &[],
            "",
        ),
        row(
            "1.2",
            "Backfill existing notes",
            Some("1"),
            None,
            "none",
            &["1.1"],
            &[],
            "",
        ),
        row("2", "Query API", None, None, "none", &[], &[], ""),
        row(
            "2.1",
            "Add the `/search` handler",
            Some("2"),
            None,
            "completed",
            &[],
            &[],
            "",
        ),
        row(
            "2.2",
            "Rank results by recency",
            Some("2"),
            None,
            "pending",
            &["2.1"],
            &[],
            "",
        ),
        row("3", "UI", None, None, "none", &["2", "1"], &[], ""),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(description(&plan, "1.1"), Some("Use SQLite FTS5."));
    assert_eq!(plan.context[0].heading.as_deref(), Some("1. Overview"));
}

#[test]
fn plain_numbered_list() {
    let plan = fixture("numbered.md");
    assert_eq!(plan.title.as_deref(), Some("Plan: dark mode"));
    assert_eq!(plan.format, PlanFormat::Numbered);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    // Only the list under "Steps"; the one under "Risks" is context.
    let expected = vec![
        row("1", "Add a theme context", None, None, "none", &[], &[], ""),
        row(
            "2",
            "Add a toggle to the settings page",
            None,
            None,
            "none",
            &[],
            &[],
            "",
        ),
        row(
            "3",
            "Persist the preference in local storage",
            None,
            None,
            "none",
            &[],
            &[],
            "",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(
        description(&plan, "1"),
        Some("- create `ThemeContext` in `src/theme.tsx`\n- default to the system preference")
    );
    assert_eq!(
        description(&plan, "3"),
        Some("```ts\nlocalStorage.setItem(\"theme\", theme);\n```")
    );
    let risks = plan
        .context
        .iter()
        .find(|c| c.heading.as_deref() == Some("Risks"));
    assert_eq!(risks.unwrap().body, "1. Flash of the wrong theme on load");
}

#[test]
fn flat_checklist_gets_generated_keys() {
    let plan = fixture("checklist.md");
    assert_eq!(plan.format, PlanFormat::Checklist);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let expected = vec![
        row(
            "1",
            "Add the `archived` column to the projects table",
            None,
            None,
            "completed",
            &[],
            &[],
            "G",
        ),
        row(
            "2",
            "Hide archived projects from the sidebar",
            None,
            None,
            "in_progress",
            &[],
            &[],
            "G",
        ),
        row(
            "2.1",
            "Filter in the query",
            Some("2"),
            None,
            "pending",
            &[],
            &[],
            "G",
        ),
        row(
            "2.2",
            "Update the sidebar snapshot test",
            Some("2"),
            None,
            "completed",
            &[],
            &[],
            "G",
        ),
        row(
            "3",
            "Add an \"Archive\" button to the project menu",
            None,
            None,
            "pending",
            &[],
            &[],
            "G",
        ),
    ];
    assert_eq!(rows(&plan), expected);
}

#[test]
fn prose_becomes_one_task() {
    let md = std::fs::read_to_string(format!(
        "{}/tests/fixtures/plans/prose.md",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let plan = parse_plan(&md);
    assert_eq!(plan.format, PlanFormat::Unstructured);
    assert!(plan.errors.is_empty());
    let expected = vec![row(
        "1",
        "We should make the login page faster",
        None,
        None,
        "none",
        &[],
        &[],
        "G",
    )];
    assert_eq!(rows(&plan), expected);
    assert_eq!(description(&plan, "1"), Some(md.trim()));
}

#[test]
fn broken_plan_reports_every_problem() {
    let plan = fixture("broken.md");
    let expected = vec![
        row(
            "1",
            "Create the schema",
            None,
            None,
            "pending",
            &["3"],
            &[],
            "",
        ),
        row("2", "Build the API", None, None, "pending", &[], &[], ""),
        row("3", "Seed the data", None, None, "pending", &["1"], &[], ""),
        row("2~2", "Write the docs", None, None, "pending", &[], &[], ""),
        row(
            "4",
            "Self-referencing task",
            None,
            None,
            "pending",
            &["4"],
            &[],
            "",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    let errors: Vec<_> = plan
        .errors
        .iter()
        .map(|e| (e.kind, e.keys.clone(), e.lines.clone(), e.reference.clone()))
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        errors,
        vec![
            (PlanErrorKind::DuplicateKey, s(&["2"]), vec![5, 9], None),
            (
                PlanErrorKind::UnknownReference,
                s(&["2"]),
                vec![6],
                Some("9".to_owned())
            ),
            (
                PlanErrorKind::UnknownReference,
                s(&["2"]),
                vec![6],
                Some("Deploy the frontend".to_owned())
            ),
            (
                PlanErrorKind::DependencyCycle,
                s(&["1", "3"]),
                vec![3, 7],
                None
            ),
            (PlanErrorKind::DependencyCycle, s(&["4"]), vec![10], None),
        ]
    );
    assert!(!plan.is_valid());
    // The errors serialise with snake_case kinds for the 422 body.
    let json = serde_json::to_value(&plan.errors[3]).unwrap();
    assert_eq!(json["kind"], "dependency_cycle");
    assert_eq!(json["keys"], serde_json::json!(["1", "3"]));
    assert_eq!(json["lines"], serde_json::json!([3, 7]));
}
