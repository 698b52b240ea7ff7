//! Specs imported from Kiro and spec-kit folders (`POST /spec-tasks/import`): a task straight in
//! `spec_review` with the files' documents as revision 1, checked like a planner's output
//! (`plan_invalid` with the parser's errors, sizes, the project path), approved like any other;
//! and `GET /spec-tasks/{id}/export`, the approved documents with progress in the checkboxes.
//! The documents are the CLI's fixtures (`crates/cli/tests/fixtures/`).

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spectask_domain::{ImplementationTaskEvent, ImplementationTaskId};
use spectask_testkit::{TestApp, backend_tests};

const IMPORT: &str = "/api/v1/spec-tasks/import";

/// The three files of a fixture folder, in the order requirements, design, plan.
fn fixture(layout: &str) -> (PathBuf, [String; 3]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/fixtures");
    let (dir, files) = match layout {
        "kiro" => (
            root.join("kiro/.kiro/specs/bookmark-sync"),
            ["requirements.md", "design.md", "tasks.md"],
        ),
        _ => (
            root.join("speckit/specs/002-bookmark-sync"),
            ["spec.md", "plan.md", "tasks.md"],
        ),
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let docs = [read(files[0]), read(files[1]), read(files[2])];
    (dir, docs)
}

fn body(layout: &str, project: &std::path::Path) -> Value {
    let (dir, [requirements, design, plan]) = fixture(layout);
    json!({
        "format": layout, "source": dir.to_str().unwrap(), "project_path": project.to_str().unwrap(),
        "requirements_spec": requirements, "technical_design": design, "implementation_plan": plan,
    })
}

async fn task_count(app: &TestApp) -> i64 {
    app.get("/api/v1/spec-tasks?archived=all").await.body["total"]
        .as_i64()
        .unwrap()
}

backend_tests! {
    async fn a_kiro_folder_becomes_a_task_in_spec_review_and_is_approved(db) {
        let app = TestApp::spawn(db).await;
        let project = tempfile::tempdir().unwrap();
        let request = body("kiro", project.path());
        let created = app.post(IMPORT, &request).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let task = &created.body;
        let id = task["id"].as_str().unwrap();
        assert_eq!(task["status"], "spec_review");
        assert_eq!(task["name"], "bookmark-sync");
        assert_eq!(task["import_format"], "kiro");
        assert_eq!(task["import_source"], request["source"]);
        assert_eq!(task["spec_session_id"], Value::Null, "nothing was planned");
        // The documents are stored exactly as the files hold them, headings included.
        let specs = app.get(&format!("/api/v1/spec-tasks/{id}/specs")).await.body;
        assert_eq!(specs["revision"], 1);
        for field in ["requirements_spec", "technical_design", "implementation_plan"] {
            assert_eq!(specs[field], request[field], "{field}");
        }
        assert!(specs["requirements_spec"].as_str().unwrap().starts_with("# Requirements Document\n"));
        let revisions = app.get(&format!("/api/v1/spec-tasks/{id}/revisions")).await.body;
        assert_eq!(revisions["revisions"].as_array().unwrap().len(), 1);
        // Created, moved by the table's `import_specs`, revision 1: each with its event.
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events")).await.body;
        let kinds: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["spec_task.created", "spec_task.status_changed", "revision.created"]);
        assert_eq!(events["events"][0]["payload"]["imported"]["format"], "kiro");
        assert_eq!(events["events"][0]["payload"]["imported"]["source"], request["source"]);
        assert_eq!(events["events"][1]["payload"]["event"], "import_specs");
        // Written into the workspace like a planner's revision.
        let tasks_md = project.path().join(".spectask/specs").join(id).join("tasks.md");
        assert_eq!(std::fs::read_to_string(tasks_md).unwrap(), request["implementation_plan"].as_str().unwrap());
        // Nothing can revise it (no planning session), and the refusal changes nothing.
        let revise = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": false, "revision": 1, "comments": "More."})).await;
        assert_eq!((revise.status, revise.error_code()), (StatusCode::CONFLICT, "conflict"), "{}", revise.body);
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}")).await.body["status"], "spec_review");
        // Approving it parses the plan into implementation tasks.
        let approved = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": true, "revision": 1})).await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
        let tasks = app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        let tasks = tasks["implementation_tasks"].as_array().unwrap();
        let keys: Vec<&str> = tasks.iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["1", "2", "2.1", "2.2", "2.3", "3", "3.1", "3.2", "4", "4.1", "4.2", "4.3", "5"]);
        let register = tasks.iter().find(|t| t["key"] == "2.1").unwrap();
        assert_eq!(register["parent_key"], "2");
        assert_eq!(register["requirement_refs"], json!(["2.1", "2.2"]));
    }

    async fn a_speckit_folder_keeps_its_phases_parallel_markers_and_dependencies(db) {
        let app = TestApp::spawn(db).await;
        let project = tempfile::tempdir().unwrap();
        let request = body("speckit", project.path());
        let mut named = request.clone();
        for (key, value) in [("name", "Bookmark sync"), ("priority", "high"), ("type", "feature")] {
            named[key] = json!(value);
        }
        let created = app.post(IMPORT, &named).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().unwrap();
        assert_eq!((created.body["name"].as_str(), created.body["priority"].as_str()), (Some("Bookmark sync"), Some("high")));
        assert_eq!(created.body["import_format"], "speckit");
        let approved = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": true})).await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
        let tasks = app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        let tasks = tasks["implementation_tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 13);
        let t007 = tasks.iter().find(|t| t["key"] == "T007").unwrap();
        assert_eq!(t007["dependencies"], json!(["T004", "T005"]));
        assert!(t007["phase"].as_str().unwrap().starts_with("Phase 3: User Story 1"));
        assert_eq!(t007["requirement_refs"], json!(["US1"]));
    }

    async fn an_unparseable_plan_is_refused_with_the_parsers_errors(db) {
        let app = TestApp::spawn(db).await;
        let project = tempfile::tempdir().unwrap();
        let request = body("kiro", project.path());
        let mut prose = request.clone();
        prose["implementation_plan"] = json!("# Implementation Plan\n\nWe will build it in a week.\n");
        let refused = app.post(IMPORT, &prose).await;
        assert_eq!((refused.status, refused.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "plan_invalid"));
        assert_eq!(refused.body["error"]["plan_errors"][0]["kind"], "empty_plan");
        let mut cycle = request.clone();
        cycle["implementation_plan"] = json!("- [ ] 1. A\n  - Depends on: 2\n- [ ] 2. B\n  - Depends on: 1\n");
        let refused = app.post(IMPORT, &cycle).await;
        assert_eq!((refused.status, refused.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "plan_invalid"));
        assert_eq!(refused.body["error"]["plan_errors"][0]["kind"], "dependency_cycle");
        let mut unknown = request.clone();
        unknown["implementation_plan"] = json!("- [ ] 1. A\n  - Depends on: 9\n");
        let refused = app.post(IMPORT, &unknown).await;
        assert_eq!(refused.body["error"]["plan_errors"][0]["kind"], "unknown_reference", "{}", refused.body);
        assert_eq!(task_count(&app).await, 0, "a refused import created a task");
    }

    async fn sizes_fields_and_project_paths_are_checked_before_anything_is_written(db) {
        let app = TestApp::spawn(db).await;
        let project = tempfile::tempdir().unwrap();
        let request = body("kiro", project.path());
        let with = |key: &str, value: Value| {
            let mut changed = request.clone();
            changed[key] = value;
            changed
        };
        let big = "x".repeat(256 * 1024 + 1);
        let cases = [
            (with("technical_design", json!(big)), StatusCode::PAYLOAD_TOO_LARGE, "document_too_large"),
            (with("requirements_spec", json!(" \n")), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (with("source", json!("  ")), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (with("format", json!("openspec")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            (with("priority", json!("urgent")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            (with("implementation_agent", json!("rm -rf /")), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (with("project_path", json!("relative/dir")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_project_path"),
            (with("project_path", json!("/definitely/not/here")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_project_path"),
            (with("spec_agent", json!("default")), StatusCode::BAD_REQUEST, "invalid_body"),
        ];
        for (body, status, code) in cases {
            let response = app.post(IMPORT, &body).await;
            assert_eq!((response.status, response.error_code()), (status, code), "{}", response.body);
        }
        let oversized = format!("{{\"format\": \"kiro\", \"source\": \"{}\"}}", "a".repeat(1024 * 1024));
        let response = app.send_raw(Method::POST, IMPORT, oversized.into_bytes()).await;
        assert_eq!((response.status, response.error_code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
        assert_eq!(task_count(&app).await, 0, "a refused import created a task");
        assert!(!project.path().join(".spectask").exists());
    }

    async fn export_hands_back_the_approved_documents_with_progress(db) {
        let app = TestApp::spawn(db).await;
        let project = tempfile::tempdir().unwrap();
        let request = body("kiro", project.path());
        let id = app.post(IMPORT, &request).await.body["id"].as_str().unwrap().to_owned();
        let export = format!("/api/v1/spec-tasks/{id}/export");
        let before = app.get(&export).await;
        assert_eq!(before.status, StatusCode::OK, "{}", before.body);
        assert_eq!((before.body["revision"].as_i64(), before.body["approved"].as_bool()), (Some(1), Some(false)));
        assert_eq!(before.body["import_format"], "kiro");
        for field in ["requirements_spec", "technical_design", "implementation_plan"] {
            assert_eq!(before.body[field], request[field], "{field}");
        }
        app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": true})).await;
        // Without an agent runtime the task waits in the queue; nothing else moves its tasks.
        app.wait_for_task_status(&id, "implementation_queued").await;
        let tasks = app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        let task_id = |key: &str| {
            let task = tasks["implementation_tasks"].as_array().unwrap().iter().find(|t| t["key"] == key).unwrap();
            ImplementationTaskId::parse(task["id"].as_str().unwrap()).unwrap()
        };
        for (key, events) in [("1", &[ImplementationTaskEvent::Assign, ImplementationTaskEvent::Complete][..]),
                              ("2.1", &[ImplementationTaskEvent::Assign, ImplementationTaskEvent::Start][..])] {
            for event in events {
                app.store.transition_implementation_task(&task_id(key), *event, "tester").await.unwrap();
            }
        }
        let after = app.get(&export).await.body;
        assert_eq!(after["approved"], true);
        let plan = after["implementation_plan"].as_str().unwrap();
        assert!(plan.contains("- [x] 1. Set up the sync service"), "{plan}");
        assert!(plan.contains("- [-] 2.1 Write the last-writer-wins register"), "{plan}");
        assert!(plan.contains("- [ ] 2.2 Merge operations"), "{plan}");
        // Only the checkboxes changed.
        let original = request["implementation_plan"].as_str().unwrap();
        assert_eq!(plan.len(), original.len());
        assert_eq!(plan.replace("[x]", "[ ]").replace("[-]", "[ ]"), original);
        let missing = app.get("/api/v1/spec-tasks/spt_01HZZZZZZZZZZZZZZZZZZZZZZZ/export").await;
        assert_eq!((missing.status, missing.error_code()), (StatusCode::NOT_FOUND, "not_found"));
        let backlog = app.post("/api/v1/spec-tasks/from-prompt", &json!({"prompt": "later", "auto_start": false})).await;
        let none = app.get(&format!("/api/v1/spec-tasks/{}/export", backlog.body["id"].as_str().unwrap())).await;
        assert_eq!((none.status, none.error_code()), (StatusCode::CONFLICT, "conflict"));
    }
}
