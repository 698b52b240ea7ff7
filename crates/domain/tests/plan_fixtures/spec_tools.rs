//! Checkbox task lists of the spec tools: Kiro, its cc-sdd dialect, and spec-kit.

use spectask_domain::PlanFormat;

use crate::support::{description, fixture, phase_titles, row, rows};

#[test]
fn kiro_tasks() {
    let plan = fixture("kiro.md");
    assert_eq!(plan.title.as_deref(), Some("Implementation Plan"));
    assert_eq!(plan.format, PlanFormat::Kiro);
    assert!(plan.phases.is_empty());
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let expected = vec![
        row(
            "1",
            "Set up project structure and core interfaces",
            None,
            None,
            "completed",
            &[],
            &["1.1"],
            "",
        ),
        row(
            "2",
            "Implement data models and validation",
            None,
            None,
            "pending",
            &[],
            &[],
            "",
        ),
        row(
            "2.1",
            "Create core data model interfaces and types",
            Some("2"),
            None,
            "completed",
            &[],
            &["2.1", "3.3", "1.2"],
            "",
        ),
        row(
            "2.2",
            "Implement User model with validation",
            Some("2"),
            None,
            "in_progress",
            &[],
            &["1.2"],
            "",
        ),
        row(
            "2.3",
            "Write property test for User validation",
            Some("2"),
            None,
            "pending",
            &[],
            &["1.2", "1.3"],
            "O",
        ),
        row(
            "3",
            "Create storage mechanism",
            None,
            None,
            "pending",
            &[],
            &[],
            "",
        ),
        row(
            "3.1",
            "Implement database connection utilities",
            Some("3"),
            None,
            "pending",
            &[],
            &["2.1"],
            "",
        ),
        row(
            "3.2",
            "Implement repository pattern for data access",
            Some("3"),
            None,
            "pending",
            &[],
            &["4.1", "4.2", "4.3"],
            "",
        ),
        row(
            "4",
            "Checkpoint - Ensure all tests pass, ask the user if questions arise.",
            None,
            None,
            "pending",
            &["1", "2", "3"],
            &[],
            "C",
        ),
        row(
            "5",
            "Wire up the REST API",
            None,
            None,
            "pending",
            &["4"],
            &["5.1", "5.2"],
            "",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(
        description(&plan, "1"),
        Some(
            "- Create directory structure for models, services, repositories and API components\n\
             - Define interfaces that establish system boundaries"
        )
    );
    assert_eq!(description(&plan, "2"), None);
    // The property line stays; the `Validates:` line became requirement refs.
    assert_eq!(
        description(&plan, "2.3"),
        Some("- **Property 1: Round trip of user records**")
    );
    // A code block nested in a detail bullet comes out intact, dedented with its bullet.
    assert_eq!(
        description(&plan, "3.1"),
        Some(
            "- Write connection management code\n\n```ts\nexport function connect(url: string): Pool {\n  return new Pool({ connectionString: url });\n}\n```"
        )
    );
    assert_eq!(plan.task("5").unwrap().line, 38);
}

#[test]
fn kiro_cc_sdd_dialect() {
    let plan = fixture("kiro_ccsdd.md");
    assert_eq!(plan.format, PlanFormat::Kiro);
    assert_eq!(
        phase_titles(&plan),
        ["Phase 1: Foundation", "Phase 2: Features"]
    );
    assert!(plan.phases.iter().all(|p| p.ordered));
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    // Unindented sub-tasks find their parent by numbering; `_Depends:_` wins over order; the
    // first task of phase 2 waits for phase 1.
    let expected = vec![
        row(
            "1",
            "Configure the workspace",
            None,
            Some(0),
            "pending",
            &[],
            &[],
            "",
        ),
        row(
            "1.1",
            "Add the lint configuration",
            Some("1"),
            Some(0),
            "pending",
            &[],
            &["1.1"],
            "",
        ),
        row(
            "1.2",
            "Add the formatter configuration",
            Some("1"),
            Some(0),
            "pending",
            &[],
            &["1.2"],
            "P",
        ),
        row(
            "2",
            "Build the importer",
            None,
            Some(1),
            "pending",
            &["1"],
            &[],
            "P",
        ),
        row(
            "2.1",
            "Parse CSV rows",
            Some("2"),
            Some(1),
            "pending",
            &["1.1"],
            &["2.1"],
            "",
        ),
        row(
            "2.2",
            "Store the rows",
            Some("2"),
            Some(1),
            "pending",
            &["2.1", "1.2"],
            &[],
            "",
        ),
        row(
            "3",
            "Build the exporter",
            None,
            Some(1),
            "pending",
            &["2"],
            &[],
            "",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(description(&plan, "1.1"), Some("- _Boundary: tooling_"));
}

#[test]
fn spec_kit_tasks() {
    let plan = fixture("speckit.md");
    assert_eq!(plan.title.as_deref(), Some("Tasks: Photo Albums"));
    assert_eq!(plan.format, PlanFormat::SpecKit);
    assert_eq!(
        phase_titles(&plan),
        [
            "Phase 1: Setup (Shared Infrastructure)",
            "Phase 2: Foundational (Blocking Prerequisites)",
            "Phase 3: User Story 1 - Organise photos into albums (Priority: P1) 🎯 MVP",
            "Phase 4: User Story 2 - Browse tiles (Priority: P2)",
            "Phase 5: Polish & Cross-Cutting Concerns",
        ]
    );
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    // Non-[P] tasks chain within a phase, [P] tasks only wait for the previous phase, each
    // phase waits for the previous phase's last tasks, "(depends on ...)", "Depends on" bullets
    // and the dependency section's "T013 depends on T012" win; the TXXX placeholder gets a key.
    let expected = vec![
        row(
            "T001",
            "Create project structure per implementation plan",
            None,
            Some(0),
            "completed",
            &[],
            &[],
            "",
        ),
        row(
            "T002",
            "Initialize a Vite project with the `vanilla` template",
            None,
            Some(0),
            "completed",
            &["T001"],
            &[],
            "",
        ),
        row(
            "T003",
            "Configure linting and formatting tools in `.eslintrc.json`",
            None,
            Some(0),
            "pending",
            &[],
            &[],
            "P",
        ),
        row(
            "T004",
            "Setup SQLite schema in src/db/schema.sql (FR-001)",
            None,
            Some(1),
            "pending",
            &["T002", "T003"],
            &["FR-001"],
            "",
        ),
        row(
            "T005",
            "Implement the photo metadata reader in src/lib/exif.js",
            None,
            Some(1),
            "pending",
            &["T002", "T003"],
            &[],
            "P",
        ),
        row(
            "T006",
            "Configure error handling and logging infrastructure",
            None,
            Some(1),
            "pending",
            &["T002", "T003"],
            &[],
            "P",
        ),
        row(
            "T007",
            "Contract test for POST /albums in tests/contract/test_albums.js",
            None,
            Some(2),
            "pending",
            &["T004", "T005", "T006"],
            &["US1"],
            "P",
        ),
        row(
            "T008",
            "Integration test for album creation in tests/integration/test_albums.js",
            None,
            Some(2),
            "pending",
            &["T004", "T005", "T006"],
            &["US1"],
            "P",
        ),
        row(
            "T009",
            "Create Album model in src/models/album.js",
            None,
            Some(2),
            "pending",
            &["T004", "T005", "T006"],
            &["US1"],
            "",
        ),
        row(
            "T010",
            "Implement AlbumService in src/services/album_service.js covering create, rename and delete",
            None,
            Some(2),
            "pending",
            &["T009", "T005"],
            &["US1", "FR-003"],
            "",
        ),
        row(
            "T011",
            "Implement drag-and-drop between albums in src/ui/drag.js",
            None,
            Some(2),
            "pending",
            &["T010"],
            &["US1"],
            "",
        ),
        row(
            "T012",
            "Render photo tiles in src/ui/tiles.js (SC-002)",
            None,
            Some(3),
            "pending",
            &["T007", "T008", "T011"],
            &["US2", "SC-002"],
            "P",
        ),
        row(
            "T013",
            "Add lazy loading of thumbnails in src/ui/tiles.js",
            None,
            Some(3),
            "pending",
            &["T012"],
            &["US2"],
            "",
        ),
        row(
            "T014",
            "Documentation updates in docs/",
            None,
            Some(4),
            "pending",
            &["T013"],
            &[],
            "P",
        ),
        row(
            "15",
            "Additional unit tests (if requested) in tests/unit/",
            None,
            Some(4),
            "pending",
            &["T013"],
            &[],
            "PG",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(
        description(&plan, "T010"),
        Some("- Validate album names are unique per date (FR-003)")
    );
    assert_eq!(
        plan.phases[1].description.as_deref(),
        Some(
            "**Purpose**: Core infrastructure that MUST be complete before ANY user story can be implemented\n\n\
             **Checkpoint**: Foundation ready - user story implementation can now begin"
        )
    );
    let headings: Vec<_> = plan.context.iter().map(|c| c.heading.as_deref()).collect();
    assert_eq!(
        headings,
        [
            None,
            Some("Format: `[ID] [P?] [Story] Description`"),
            Some("Dependencies & Execution Order"),
            Some("Implementation Strategy"),
        ]
    );
    assert!(plan.context[2].body.contains("T013 depends on T012"));
}

#[test]
fn kiro_verify_lines() {
    let plan = fixture("kiro_verify.md");
    assert_eq!(plan.format, PlanFormat::Kiro);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let checks: Vec<(&str, Vec<&str>)> = plan
        .tasks
        .iter()
        .map(|t| {
            (
                t.key.as_str(),
                t.checks.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        vec![
            ("1", vec!["cargo test -p auth session_store"]),
            ("2", vec![]),
            (
                "2.1",
                vec!["cargo test -p auth login", "npm test -- e2e/login.spec.ts"]
            ),
            (
                "2.2",
                vec![
                    "cargo test -p auth logout",
                    "cargo clippy -p auth -- -D warnings"
                ]
            ),
            ("3", vec![]),
        ]
    );
    assert_eq!(plan.task("2.2").unwrap().title, "Logout endpoint");
    assert_eq!(
        description(&plan, "1"),
        Some("- Create `src/session/store.rs` with an in-memory and a Redis backend")
    );
    assert_eq!(
        description(&plan, "2.1"),
        Some("- POST `/login` sets the session cookie")
    );
    assert_eq!(
        description(&plan, "2.2"),
        Some("- POST `/logout` clears it")
    );
    // Prose after `Verify:` is no command: it stays in the description.
    assert_eq!(
        description(&plan, "3"),
        Some(
            "- Add a section to `docs/config.md`\n\
             - Verify: Reviewers can follow the section without asking questions"
        )
    );
    assert_eq!(plan.task("3").unwrap().requirement_refs, ["3.1"]);
}
