//! Fixture tests for the plan parser: one realistic plan per format (Kiro, cc-sdd, spec-kit,
//! heading plans, plain numbered lists, Japanese, Chinese, Portuguese, a flat checklist, prose,
//! and a broken plan), each asserting the full task list, not counts.

// Helpers outside #[test] fns are not covered by clippy's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use spectask_domain::{ParsedPlan, PlanErrorKind, PlanFormat, PlanTaskStatus, parse_plan};

fn fixture(name: &str) -> ParsedPlan {
    let path = format!("{}/tests/fixtures/plans/{name}", env!("CARGO_MANIFEST_DIR"));
    let md = std::fs::read_to_string(&path).unwrap();
    parse_plan(&md)
}

/// The fields every fixture asserts for every task, in a diff-friendly shape.
#[derive(Debug, PartialEq)]
struct Row {
    key: String,
    title: String,
    parent: Option<String>,
    phase: Option<usize>,
    status: PlanTaskStatus,
    depends_on: Vec<String>,
    requirement_refs: Vec<String>,
    /// `P` parallel, `O` optional, `C` checkpoint, `G` generated key.
    flags: String,
}

#[allow(clippy::too_many_arguments)]
fn row(
    key: &str,
    title: &str,
    parent: Option<&str>,
    phase: Option<usize>,
    status: &str,
    depends_on: &[&str],
    requirement_refs: &[&str],
    flags: &str,
) -> Row {
    Row {
        key: key.to_owned(),
        title: title.to_owned(),
        parent: parent.map(str::to_owned),
        phase,
        status: status.parse().unwrap(),
        depends_on: depends_on.iter().map(|s| s.to_string()).collect(),
        requirement_refs: requirement_refs.iter().map(|s| s.to_string()).collect(),
        flags: flags.to_owned(),
    }
}

fn rows(plan: &ParsedPlan) -> Vec<Row> {
    plan.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            assert_eq!(t.index, i);
            let mut flags = String::new();
            for (on, c) in [
                (t.parallel, 'P'),
                (t.optional, 'O'),
                (t.checkpoint, 'C'),
                (t.key_generated, 'G'),
            ] {
                if on {
                    flags.push(c);
                }
            }
            Row {
                key: t.key.clone(),
                title: t.title.clone(),
                parent: t.parent.clone(),
                phase: t
                    .phase
                    .as_ref()
                    .map(|ph| plan.phases.iter().position(|p| &p.title == ph).unwrap()),
                status: t.status,
                depends_on: t.depends_on.clone(),
                requirement_refs: t.requirement_refs.clone(),
                flags,
            }
        })
        .collect()
}

fn phase_titles(plan: &ParsedPlan) -> Vec<&str> {
    plan.phases.iter().map(|p| p.title.as_str()).collect()
}

fn description<'p>(plan: &'p ParsedPlan, key: &str) -> Option<&'p str> {
    plan.task(key).unwrap().description.as_deref()
}

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
fn japanese_kiro_plan() {
    let plan = fixture("japanese.md");
    assert_eq!(plan.title.as_deref(), Some("実装計画"));
    assert_eq!(plan.format, PlanFormat::Kiro);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let expected = vec![
        row(
            "1",
            "プロジェクト構成のセットアップ",
            None,
            None,
            "pending",
            &[],
            &["1.1"],
            "",
        ),
        row(
            "2",
            "データモデルの実装",
            None,
            None,
            "pending",
            &[],
            &[],
            "",
        ),
        row(
            "2.1",
            "ユーザーモデルを作成する",
            Some("2"),
            None,
            "completed",
            &[],
            &["2.1", "2.2"],
            "",
        ),
        row(
            "2.2",
            "リポジトリを実装する",
            Some("2"),
            None,
            "pending",
            &["2.1"],
            &[],
            "",
        ),
        row(
            "3",
            "チェックポイント - すべてのテストが通ることを確認する",
            None,
            None,
            "pending",
            &["1", "2"],
            &[],
            "C",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(
        description(&plan, "2.1"),
        Some("- バリデーションを実装する")
    );
}

#[test]
fn chinese_heading_plan() {
    let plan = fixture("chinese.md");
    assert_eq!(plan.format, PlanFormat::Headings);
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let expected = vec![
        row("1", "创建导出表", None, None, "none", &[], &[], ""),
        row(
            "2",
            "实现导出接口",
            None,
            None,
            "none",
            &["1"],
            &["3.1", "3.2"],
            "",
        ),
        row("3", "前端导出按钮", None, None, "none", &["2"], &[], ""),
    ];
    assert_eq!(rows(&plan), expected);
    let first = plan.task("1").unwrap();
    assert_eq!(
        first.acceptance_criteria,
        ["迁移可以在 SQLite 上执行", "回滚会删除该表"]
    );
    assert_eq!(
        first.description.as_deref(),
        Some("新增 `exports` 表，保存导出任务的状态。")
    );
    assert_eq!(
        plan.task("3").unwrap().estimated_effort.as_deref(),
        Some("半天")
    );
}

#[test]
fn portuguese_plan_with_phases() {
    let plan = fixture("portuguese.md");
    assert_eq!(plan.format, PlanFormat::Kiro);
    assert_eq!(
        phase_titles(&plan),
        ["Fase 1: Infraestrutura", "Fase 2: Funcionalidades"]
    );
    assert!(plan.errors.is_empty(), "{:?}", plan.errors);
    let expected = vec![
        row(
            "1",
            "Configurar o provedor de e-mail",
            None,
            Some(0),
            "completed",
            &[],
            &["1.1"],
            "",
        ),
        row(
            "2",
            "Criar a fila de envio",
            None,
            Some(0),
            "pending",
            &[],
            &["1.2"],
            "",
        ),
        row(
            "3",
            "Enviar e-mail de boas-vindas",
            None,
            Some(1),
            "pending",
            &["2"],
            &[],
            "",
        ),
        row(
            "4",
            "Enviar resumo semanal",
            None,
            Some(1),
            "in_progress",
            &["1", "2"],
            &[],
            "",
        ),
    ];
    assert_eq!(rows(&plan), expected);
    assert_eq!(
        plan.task("4").unwrap().acceptance_criteria,
        [
            "O resumo chega às segundas-feiras",
            "O usuário pode cancelar a inscrição"
        ]
    );
    assert_eq!(description(&plan, "4"), None);
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
