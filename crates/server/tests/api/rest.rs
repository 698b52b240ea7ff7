//! The HTTP API end to end: the real server on a random port, over a fresh SQLite file and (when
//! `SPECTASK_TEST_DATABASE_URL` is set) a fresh PostgreSQL database. Every test runs on both.

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use spectask_domain::{SessionRole, SpecTaskId};
use spectask_engine::PlannerRegistry;
use spectask_server::ApiSettings;
use spectask_testkit::{TestApp, TestOptions, backend_tests, fast_planner};

const MISSING_TASK: &str = "spt_01arz3ndektsv4rrffq69g5fav";

/// Everything observable about the task collection: asserting it is equal before and after a
/// refused request proves the request changed nothing.
async fn snapshot(app: &TestApp) -> (Value, Value) {
    let tasks = app
        .get("/api/v1/spec-tasks?archived=all&limit=200")
        .await
        .body;
    let events = app.store.last_event_id().await.unwrap();
    (tasks, json!(events))
}

/// Reads SSE messages until `count` arrive or `timeout` passes.
async fn read_sse(
    response: reqwest::Response,
    count: usize,
    timeout: Duration,
) -> Vec<(i64, String, Value)> {
    let mut out = Vec::new();
    let mut buffer = String::new();
    let mut stream = response.bytes_stream();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < count {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            _ => break,
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, None, None);
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            if let (Some(id), Some(kind), Some(data)) = (id, kind, data) {
                out.push((id, kind, data));
            }
        }
    }
    out
}

backend_tests! {
    async fn create_from_prompt_applies_defaults(db) {
        let app = TestApp::spawn(db).await;
        let response = app.post("/api/v1/spec-tasks/from-prompt", &json!({
            "prompt": "Add a dark mode toggle to the settings page, persisted per user, \
                       and make every page honour it"
        })).await;
        assert_eq!(response.status, StatusCode::CREATED);
        let task = response.body;
        assert!(task["id"].as_str().unwrap().starts_with("spt_"));
        assert_eq!(task["status"], "backlog");
        assert_eq!(task["type"], "feature");
        assert_eq!(task["priority"], "medium");
        assert_eq!(task["archived"], false);
        assert_eq!(task["created_by"], "local");
        assert_eq!(task["spec_revision_count"], 0);
        let name = task["name"].as_str().unwrap();
        assert!(name.starts_with("Add a dark mode toggle") && name.ends_with('…'), "{name}");
        // Every seed field is present, null or not.
        for field in ["id", "name", "description", "type", "priority", "status", "original_prompt",
            "requirements_spec", "technical_design", "implementation_plan", "spec_agent",
            "implementation_agent", "spec_session_id", "implementation_session_id", "spec_approved_by",
            "spec_approved_at", "spec_revision_count", "zed_instance_id", "project_path",
            "workspace_config", "isolation", "branch_name", "base_branch", "base_commit", "head_commit",
            "created_by", "created_at", "updated_at", "started_at", "completed_at"] {
            assert!(task.get(field).is_some(), "missing {field}");
        }
        let fetched = app.get(&format!("/api/v1/spec-tasks/{}", task["id"].as_str().unwrap())).await;
        assert_eq!(fetched.status, StatusCode::OK);
        // The one task also says where its acceptance criteria stand (none yet: no specs).
        let mut fetched = fetched.body;
        let coverage = fetched.as_object_mut().unwrap().remove("coverage").unwrap();
        assert_eq!(coverage["criteria"], 0, "{coverage}");
        assert_eq!(fetched, task);
    }

    async fn create_from_prompt_with_every_field(db) {
        let project = tempfile::tempdir().unwrap();
        let link_parent = tempfile::tempdir().unwrap();
        let link = link_parent.path().join("project-link");
        std::os::unix::fs::symlink(project.path(), &link).unwrap();
        // A named planner profile the task can select; auto_start is off, so it is never called.
        let planners = PlannerRegistry::new(None, [fast_planner("planner-large", "http://127.0.0.1:9/v1")]);
        let app = TestApp::spawn_with_options(db, TestOptions { planners, ..TestOptions::default() }).await;
        let response = app.client
            .post(app.url("/api/v1/spec-tasks/from-prompt"))
            .header("x-spectask-user", "alice")
            .json(&json!({
                "prompt": "Fix the login bug", "name": "  Login bug  ", "type": "bug", "priority": "critical",
                "project_path": link.to_str().unwrap(), "spec_agent": "planner-large",
                "implementation_agent": "claude-code", "workspace_config": {"branch": "main"}, "auto_start": false
            }))
            .send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let task: Value = response.json().await.unwrap();
        assert_eq!(task["name"], "Login bug");
        assert_eq!(task["type"], "bug");
        assert_eq!(task["priority"], "critical");
        assert_eq!(task["created_by"], "alice");
        assert_eq!(task["spec_agent"], "planner-large");
        assert_eq!(task["implementation_agent"], "claude-code");
        assert_eq!(task["workspace_config"], json!({"branch": "main"}));
        // The symlink is resolved to the canonical directory.
        let canonical = std::fs::canonicalize(project.path()).unwrap();
        assert_eq!(task["project_path"], canonical.to_str().unwrap());
    }

    async fn bad_create_requests_get_the_right_error_and_change_nothing(db) {
        let project = tempfile::tempdir().unwrap();
        let file = project.path().join("file.txt");
        std::fs::write(&file, "x").unwrap();
        let app = TestApp::spawn(db).await;
        app.create_task("existing").await;
        let before = snapshot(&app).await;
        let path = "/api/v1/spec-tasks/from-prompt";
        let huge_prompt = "p".repeat(256 * 1024 + 1);
        let cases: Vec<(Value, StatusCode, &str)> = vec![
            (json!({}), StatusCode::BAD_REQUEST, "invalid_body"),
            (json!({"prompt": 5}), StatusCode::BAD_REQUEST, "invalid_body"),
            (json!({"prompt": "x", "bogus": 1}), StatusCode::BAD_REQUEST, "invalid_body"),
            (json!(["prompt"]), StatusCode::BAD_REQUEST, "invalid_body"),
            (json!({"prompt": "   "}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"prompt": huge_prompt}), StatusCode::PAYLOAD_TOO_LARGE, "prompt_too_large"),
            (json!({"prompt": "x", "type": "epic"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            (json!({"prompt": "x", "priority": "urgent"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            (json!({"prompt": "x", "name": ""}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"prompt": "x", "name": "n".repeat(256)}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"prompt": "x", "spec_agent": "rm -rf /"}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"prompt": "x", "workspace_config": [1]}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"prompt": "x", "workspace_config": {"isolation": "docker"}}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"prompt": "x", "workspace_config": {"overlap_policy": 1}}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            // Worktree isolation needs a git repository; this directory is not one.
            (json!({"prompt": "x", "project_path": project.path().to_str().unwrap(), "workspace_config": {"isolation": "worktree"}}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"prompt": "x", "workspace_config": {"isolation": "worktree"}}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"prompt": "x", "project_path": "relative/dir"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_project_path"),
            (json!({"prompt": "x", "project_path": "/definitely/not/here"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_project_path"),
            (json!({"prompt": "x", "project_path": file.to_str().unwrap()}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_project_path"),
        ];
        for (body, status, code) in cases {
            let response = app.post(path, &body).await;
            assert_eq!((response.status, response.error_code()), (status, code), "{}", &body.to_string()[..body.to_string().len().min(80)]);
            assert!(response.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        for (raw, code) in [(&b"{\"prompt\": "[..], "malformed_json"), (b"not json", "malformed_json"), (b"", "malformed_json")] {
            let response = app.send_raw(Method::POST, path, raw.to_vec()).await;
            assert_eq!((response.status, response.error_code()), (StatusCode::BAD_REQUEST, code));
        }
        let oversized = format!("{{\"prompt\": \"{}\"}}", "a".repeat(1024 * 1024));
        let response = app.send_raw(Method::POST, path, oversized.into_bytes()).await;
        assert_eq!((response.status, response.error_code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
        assert_eq!(snapshot(&app).await, before, "a rejected request changed something");
    }

    async fn workspace_root_confines_project_paths(db) {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("repo");
        std::fs::create_dir(&inside).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let escape = root.path().join("escape");
        std::os::unix::fs::symlink(outside.path(), &escape).unwrap();
        let settings = ApiSettings { workspace_root: Some(std::fs::canonicalize(root.path()).unwrap()), ..ApiSettings::default() };
        let app = TestApp::spawn_with(db, settings).await;
        let path = "/api/v1/spec-tasks/from-prompt";
        let ok = app.post(path, &json!({"prompt": "x", "project_path": inside.to_str().unwrap()})).await;
        assert_eq!(ok.status, StatusCode::CREATED);
        for bad in [outside.path().to_str().unwrap().to_owned(), escape.to_str().unwrap().to_owned(), format!("{}/repo/../..", root.path().display())] {
            let response = app.post(path, &json!({"prompt": "x", "project_path": bad})).await;
            assert_eq!((response.status, response.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_project_path"), "{bad}");
        }
    }

    async fn list_filters_pages_and_validates(db) {
        let app = TestApp::spawn(db).await;
        let mut ids = Vec::new();
        for (prompt, ty, priority) in [("Fix crash on save", "bug", "high"), ("Dark mode", "feature", "low"),
                                       ("Refactor the SAVE path", "refactor", "high"), ("Docs for save", "docs", "low")] {
            let r = app.post("/api/v1/spec-tasks/from-prompt", &json!({"prompt": prompt, "type": ty, "priority": priority})).await;
            ids.push(r.body["id"].as_str().unwrap().to_owned());
        }
        let ids_of = |body: &Value| body["spec_tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        let all = app.get("/api/v1/spec-tasks").await;
        assert_eq!(all.body["total"], 4);
        assert_eq!(ids_of(&all.body), ids.iter().rev().cloned().collect::<Vec<_>>(), "newest first");
        let high = app.get("/api/v1/spec-tasks?priority=high").await;
        assert_eq!(ids_of(&high.body), [ids[2].clone(), ids[0].clone()]);
        let bug = app.get("/api/v1/spec-tasks?type=bug&status=backlog").await;
        assert_eq!(ids_of(&bug.body), [ids[0].clone()]);
        let q = app.get("/api/v1/spec-tasks?q=save&priority=low").await;
        assert_eq!(ids_of(&q.body), [ids[3].clone()]);
        let q_case = app.get("/api/v1/spec-tasks?q=SAVE").await;
        assert_eq!(q_case.body["total"], 3);
        let page = app.get("/api/v1/spec-tasks?limit=2&offset=1").await;
        assert_eq!(ids_of(&page.body), [ids[2].clone(), ids[1].clone()]);
        assert_eq!((page.body["total"].clone(), page.body["limit"].clone(), page.body["offset"].clone()), (json!(4), json!(2), json!(1)));
        let none = app.get("/api/v1/spec-tasks?status=done").await;
        assert_eq!((none.body["total"].clone(), none.body["spec_tasks"].clone()), (json!(0), json!([])));
        // Archived tasks are hidden unless asked for.
        app.post(&format!("/api/v1/spec-tasks/{}/archive", ids[1]), &json!({})).await;
        assert_eq!(app.get("/api/v1/spec-tasks").await.body["total"], 3);
        assert_eq!(ids_of(&app.get("/api/v1/spec-tasks?archived=true").await.body), [ids[1].clone()]);
        assert_eq!(app.get("/api/v1/spec-tasks?archived=all").await.body["total"], 4);

        for (query, status, code) in [
            ("status=nope", StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            ("type=epic", StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            ("priority=p0", StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            ("limit=0", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ("limit=201", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ("offset=-1", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ("archived=maybe", StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ("limit=ten", StatusCode::BAD_REQUEST, "invalid_query"),
            ("staus=backlog", StatusCode::BAD_REQUEST, "invalid_query"),
        ] {
            let response = app.get(&format!("/api/v1/spec-tasks?{query}")).await;
            assert_eq!((response.status, response.error_code()), (status, code), "{query}");
        }
    }

    async fn get_unknown_or_malformed_ids_is_404(db) {
        let app = TestApp::spawn(db).await;
        for path in [format!("/api/v1/spec-tasks/{MISSING_TASK}"), "/api/v1/spec-tasks/not-an-id".into(),
                     format!("/api/v1/spec-tasks/{MISSING_TASK}/specs"), format!("/api/v1/spec-tasks/{MISSING_TASK}/revisions"),
                     format!("/api/v1/spec-tasks/{MISSING_TASK}/events"), "/api/v1/sessions/ses_01arz3ndektsv4rrffq69g5fav".into(),
                     "/api/v1/sessions/spt_01arz3ndektsv4rrffq69g5fav".into()] {
            let response = app.get(&path).await;
            assert_eq!((response.status, response.error_code()), (StatusCode::NOT_FOUND, "not_found"), "{path}");
        }
        for (method, path) in [(Method::DELETE, format!("/api/v1/spec-tasks/{MISSING_TASK}")),
                               (Method::POST, format!("/api/v1/spec-tasks/{MISSING_TASK}/archive")),
                               (Method::PATCH, format!("/api/v1/spec-tasks/{MISSING_TASK}"))] {
            let response = app.send_raw(method.clone(), &path, b"{\"name\":\"x\"}".to_vec()).await;
            assert_eq!((response.status, response.error_code()), (StatusCode::NOT_FOUND, "not_found"), "{method} {path}");
        }
        let unknown_route = app.get("/api/v1/nothing-here").await;
        assert_eq!((unknown_route.status, unknown_route.error_code()), (StatusCode::NOT_FOUND, "route_not_found"));
        let wrong_method = app.send_raw(Method::PUT, "/api/v1/spec-tasks", b"{}".to_vec()).await;
        assert_eq!((wrong_method.status, wrong_method.error_code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    }

    async fn patch_edits_only_the_four_fields(db) {
        let app = TestApp::spawn(db).await;
        let task = app.create_task("Original prompt").await;
        let path = format!("/api/v1/spec-tasks/{}", task["id"].as_str().unwrap());
        let response = app.patch(&path, &json!({"name": "Renamed", "priority": "high", "type": "refactor", "description": "More detail"})).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!((response.body["name"].clone(), response.body["priority"].clone(), response.body["type"].clone(), response.body["description"].clone()),
                   (json!("Renamed"), json!("high"), json!("refactor"), json!("More detail")));
        assert_eq!(response.body["original_prompt"], "Original prompt");
        assert_eq!(response.body["status"], "backlog");
        assert_ne!(response.body["updated_at"], task["updated_at"]);
        let partial = app.patch(&path, &json!({"priority": "low"})).await;
        assert_eq!((partial.body["name"].clone(), partial.body["priority"].clone()), (json!("Renamed"), json!("low")));

        let before = snapshot(&app).await;
        for (body, status, code) in [
            (json!({"status": "done"}), StatusCode::UNPROCESSABLE_ENTITY, "read_only_field"),
            (json!({"name": "x", "spec_approved_by": "me"}), StatusCode::UNPROCESSABLE_ENTITY, "read_only_field"),
            (json!({"colour": "red"}), StatusCode::BAD_REQUEST, "unknown_field"),
            (json!({"name": 7}), StatusCode::BAD_REQUEST, "invalid_body"),
            (json!("name"), StatusCode::BAD_REQUEST, "invalid_body"),
            (json!({"priority": "whenever"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            (json!({"type": "epic"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            (json!({"name": "   "}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ] {
            let response = app.patch(&path, &body).await;
            assert_eq!((response.status, response.error_code()), (status, code), "{body}");
        }
        let response = app.send_raw(Method::PATCH, &path, b"{\"name\":".to_vec()).await;
        assert_eq!((response.status, response.error_code()), (StatusCode::BAD_REQUEST, "malformed_json"));
        assert_eq!(snapshot(&app).await, before);

        // Archived tasks refuse edits with 409 and stay as they were.
        app.post(&format!("{path}/archive"), &json!({})).await;
        let refused = app.patch(&path, &json!({"name": "Again"})).await;
        assert_eq!((refused.status, refused.error_code()), (StatusCode::CONFLICT, "conflict"));
        assert_eq!(app.get(&path).await.body["name"], "Renamed");
    }

    async fn archive_unarchive_and_conflicts(db) {
        let app = TestApp::spawn(db).await;
        let task = app.create_task("to archive").await;
        let path = format!("/api/v1/spec-tasks/{}", task["id"].as_str().unwrap());
        let archived = app.post(&format!("{path}/archive"), &json!({})).await;
        assert_eq!((archived.status, archived.body["archived"].clone()), (StatusCode::OK, json!(true)));
        let again = app.post(&format!("{path}/archive"), &json!({})).await;
        assert_eq!((again.status, again.error_code()), (StatusCode::CONFLICT, "conflict"));
        let restored = app.post(&format!("{path}/unarchive"), &json!({})).await;
        assert_eq!((restored.status, restored.body["archived"].clone()), (StatusCode::OK, json!(false)));
        let not_archived = app.post(&format!("{path}/unarchive"), &json!({})).await;
        assert_eq!((not_archived.status, not_archived.error_code()), (StatusCode::CONFLICT, "conflict"));
    }

    async fn fifty_concurrent_archive_requests_exactly_one_wins(db) {
        let app = TestApp::spawn(db).await;
        let task = app.create_task("race").await;
        let url = app.url(&format!("/api/v1/spec-tasks/{}/archive", task["id"].as_str().unwrap()));
        let requests = (0..50).map(|_| app.client.post(&url).send());
        let statuses: Vec<StatusCode> = join_all(requests).await.into_iter().map(|r| r.unwrap().status()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 49, "{statuses:?}");
        let events = app.get(&format!("/api/v1/spec-tasks/{}/events", task["id"].as_str().unwrap())).await;
        let kinds: Vec<_> = events.body["events"].as_array().unwrap().iter().map(|e| e["kind"].clone()).collect();
        assert_eq!(kinds, [json!("spec_task.created"), json!("spec_task.archived")]);
    }

    async fn delete_cascades_and_is_404_afterwards(db) {
        let app = TestApp::spawn(db).await;
        let task = app.create_task("to delete").await;
        let id = SpecTaskId::parse(task["id"].as_str().unwrap()).unwrap();
        let session = app.store.create_session(&id, SessionRole::Planning, "planning", "t").await.unwrap();
        app.store.append_interaction(&session.id, "write the spec", "t").await.unwrap();
        let other = app.create_task("keep me").await;
        let path = format!("/api/v1/spec-tasks/{id}");
        let deleted = app.delete(&path).await;
        assert_eq!((deleted.status, deleted.body.clone()), (StatusCode::NO_CONTENT, Value::Null));
        assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get(&format!("/api/v1/sessions/{}", session.id)).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete(&path).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{}", other["id"].as_str().unwrap())).await.status, StatusCode::OK);
    }

    async fn sessions_are_served_with_their_interactions(db) {
        let app = TestApp::spawn(db).await;
        let task = app.create_task("with a session").await;
        let id = SpecTaskId::parse(task["id"].as_str().unwrap()).unwrap();
        let session = app.store.create_session(&id, SessionRole::Planning, "planning", "t").await.unwrap();
        for prompt in ["first", "second"] {
            app.store.append_interaction(&session.id, prompt, "t").await.unwrap();
        }
        let response = app.get(&format!("/api/v1/sessions/{}", session.id)).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body["spec_task_id"], id.as_str());
        assert_eq!(response.body["role"], "planning");
        let interactions = response.body["interactions"].as_array().unwrap();
        assert_eq!(interactions.iter().map(|i| (i["seq"].clone(), i["prompt_message"].clone(), i["state"].clone())).collect::<Vec<_>>(),
                   [(json!(0), json!("first"), json!("waiting")), (json!(1), json!("second"), json!("waiting"))]);
    }

    async fn specs_revisions_and_events_views(db) {
        let app = TestApp::spawn(db).await;
        let task = app.create_task("spec me").await;
        let id = SpecTaskId::parse(task["id"].as_str().unwrap()).unwrap();
        let specs = app.get(&format!("/api/v1/spec-tasks/{id}/specs")).await;
        assert_eq!(specs.status, StatusCode::OK);
        assert_eq!((specs.body["revision"].clone(), specs.body["requirements_spec"].clone()), (Value::Null, Value::Null));
        for n in 1..=2 {
            app.store.add_revision(&id, &spectask_store::NewRevision {
                requirements_spec: format!("# Requirements: v{n}"), technical_design: "# Design: d".into(),
                implementation_plan: "# Implementation Plan: p".into(), feedback: (n == 2).then(|| "tighten".to_owned()), interaction_id: None,
            }, "planner").await.unwrap();
        }
        let specs = app.get(&format!("/api/v1/spec-tasks/{id}/specs")).await;
        assert_eq!((specs.body["revision"].clone(), specs.body["requirements_spec"].clone(), specs.body["status"].clone()),
                   (json!(2), json!("# Requirements: v2"), json!("backlog")));
        let revisions = app.get(&format!("/api/v1/spec-tasks/{id}/revisions")).await;
        let listed: Vec<_> = revisions.body["revisions"].as_array().unwrap().iter().map(|r| (r["revision"].clone(), r["feedback"].clone())).collect();
        assert_eq!(listed, [(json!(1), Value::Null), (json!(2), json!("tighten"))]);

        app.patch(&format!("/api/v1/spec-tasks/{id}"), &json!({"name": "renamed"})).await;
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events")).await;
        let kinds: Vec<_> = events.body["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kinds, ["spec_task.created", "revision.created", "revision.created", "spec_task.updated"]);
        let first_two = app.get(&format!("/api/v1/spec-tasks/{id}/events?limit=2")).await;
        let next = first_two.body["next_after"].as_i64().unwrap();
        let rest = app.get(&format!("/api/v1/spec-tasks/{id}/events?after={next}")).await;
        assert_eq!(rest.body["events"].as_array().unwrap().len(), 2);
        let bad = app.get(&format!("/api/v1/spec-tasks/{id}/events?limit=0")).await;
        assert_eq!((bad.status, bad.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    }

    async fn event_stream_replays_goes_live_and_resumes(db) {
        let app = TestApp::spawn(db).await;
        let first = app.create_task("one").await;
        app.create_task("two").await;
        // Replay from the start, then stay live.
        let response = app.client.get(app.url("/api/v1/events/stream?after=0")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let creator = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            app.create_task("three").await
        };
        let (events, _) = tokio::join!(read_sse(response, 3, Duration::from_secs(10)), creator);
        assert_eq!(events.iter().map(|e| e.2["payload"]["name"].clone()).collect::<Vec<_>>(), [json!("one"), json!("two"), json!("three")]);
        assert!(events.iter().all(|e| e.1 == "spec_task.created"));
        // Resume after the second event: the third comes next, nothing is skipped or repeated.
        let resumed = app.client.get(app.url("/api/v1/events/stream")).header("Last-Event-ID", events[1].0.to_string()).send().await.unwrap();
        let after = read_sse(resumed, 1, Duration::from_secs(10)).await;
        assert_eq!(after[0].0, events[2].0);
        // Filtered to one task.
        let id = first["id"].as_str().unwrap();
        let filtered = app.client.get(app.url(&format!("/api/v1/events/stream?spec_task_id={id}&after=0"))).send().await.unwrap();
        let patcher = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            app.create_task("unrelated").await;
            app.patch(&format!("/api/v1/spec-tasks/{id}"), &json!({"priority": "high"})).await
        };
        let (mine, _) = tokio::join!(read_sse(filtered, 2, Duration::from_secs(10)), patcher);
        assert_eq!(mine.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(), ["spec_task.created", "spec_task.updated"]);
        assert!(mine.iter().all(|e| e.2["spec_task_id"] == id));
        // Bad parameters.
        let missing = app.get(&format!("/api/v1/events/stream?spec_task_id={MISSING_TASK}")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let bad = app.client.get(app.url("/api/v1/events/stream")).header("Last-Event-ID", "yesterday").send().await.unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    }

    async fn health_and_openapi(db) {
        let kind = db.kind();
        let app = TestApp::spawn(db).await;
        let health = app.get("/healthz").await;
        assert_eq!((health.status, health.body["status"].clone(), health.body["database"].clone()), (StatusCode::OK, json!("ok"), json!(kind)));
        let doc = app.get("/api/v1/openapi.json").await;
        assert_eq!(doc.status, StatusCode::OK);
        let paths = doc.body["paths"].as_object().unwrap();
        for (path, method) in [
            ("/api/v1/spec-tasks/from-prompt", "post"), ("/api/v1/spec-tasks", "get"), ("/api/v1/spec-tasks/{id}", "get"),
            ("/api/v1/spec-tasks/{id}", "patch"), ("/api/v1/spec-tasks/{id}", "delete"), ("/api/v1/spec-tasks/{id}/archive", "post"),
            ("/api/v1/spec-tasks/{id}/unarchive", "post"), ("/api/v1/spec-tasks/{id}/specs", "get"),
            ("/api/v1/spec-tasks/{id}/revisions", "get"), ("/api/v1/spec-tasks/{id}/events", "get"),
            ("/api/v1/sessions/{id}", "get"), ("/api/v1/events/stream", "get"), ("/healthz", "get"), ("/api/v1/openapi.json", "get"), ("/api/v1/plans/parse", "post"),
        ] {
            assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} undocumented");
        }
        let schemas = doc.body["components"]["schemas"].as_object().unwrap();
        for schema in ["SpecTask", "ErrorBody", "Session", "Interaction", "Event", "SpecTaskList", "ParsedPlan", "PlanTask", "PlanError"] {
            assert!(schemas.contains_key(schema), "schema {schema} missing");
        }
        let spec_task_props = schemas["SpecTask"]["properties"].as_object().unwrap();
        assert!(spec_task_props.contains_key("type") && spec_task_props.contains_key("workspace_config"));
        // The zed-instance view says whether the agent runs in the OS sandbox, with a closed mode enum.
        assert!(schemas["ZedInstance"]["properties"].get("sandbox").is_some(), "{}", schemas["ZedInstance"]);
        assert_eq!(schemas["SandboxModeName"]["enum"], json!(["required", "best_effort", "off"]));
        assert_eq!(schemas["InstanceSandbox"]["required"], json!(["active", "mode", "detail"]));
    }

    async fn plans_parse_returns_the_task_graph(db) {
        let app = TestApp::spawn(db).await;
        let plan = "# Implementation Plan: Auth\n\n\
- [ ] 1. Create the schema\n  - Add users table\n  - _Requirements: 1.1_\n\
- [x] 2. Build the API\n  - Depends on: 1\n  - _Requirements: 2.1, 2.2_\n";
        let response = app.send_typed(Method::POST, "/api/v1/plans/parse", "text/markdown", plan.as_bytes().to_vec()).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        let tasks = response.body["tasks"].as_array().unwrap();
        let summary: Vec<_> = tasks.iter().map(|t| (t["key"].clone(), t["title"].clone(), t["status"].clone(), t["depends_on"].clone(), t["requirement_refs"].clone())).collect();
        assert_eq!(summary, [
            (json!("1"), json!("Create the schema"), json!("pending"), json!([]), json!(["1.1"])),
            (json!("2"), json!("Build the API"), json!("completed"), json!(["1"]), json!(["2.1", "2.2"])),
        ]);
        assert_eq!(response.body["errors"], json!([]));

        let broken = "- [ ] 1. A\n  - Depends on: 2\n- [ ] 2. B\n  - Depends on: 1\n- [ ] 3. C\n  - Depends on: 9\n";
        let response = app.send_typed(Method::POST, "/api/v1/plans/parse", "text/markdown", broken.as_bytes().to_vec()).await;
        assert_eq!(response.status, StatusCode::OK);
        let kinds: Vec<_> = response.body["errors"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
        assert!(kinds.iter().any(|k| k.contains("cycle")) && kinds.iter().any(|k| k.contains("unknown")), "{kinds:?}");

        let empty = app.send_typed(Method::POST, "/api/v1/plans/parse", "text/markdown", b"  \n".to_vec()).await;
        assert_eq!((empty.status, empty.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
        let binary = app.send_typed(Method::POST, "/api/v1/plans/parse", "text/markdown", vec![0xff, 0xfe, 0x00]).await;
        assert_eq!((binary.status, binary.error_code()), (StatusCode::BAD_REQUEST, "invalid_body"));
        let huge = app.send_typed(Method::POST, "/api/v1/plans/parse", "text/markdown", vec![b'a'; 1024 * 1024 + 1]).await;
        assert_eq!((huge.status, huge.error_code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
    }

    async fn commits_by_another_replica_reach_the_stream(db) {
        // PostgreSQL wakes streams through LISTEN/NOTIFY, so the poll is made too slow to matter;
        // SQLite replicas on one file rely on the poll.
        let poll = if db.kind() == "postgres" { Duration::from_secs(60) } else { Duration::from_millis(200) };
        let other_replica = db.store().await;
        let app = TestApp::spawn_with(db, ApiSettings { stream_poll_interval: poll, ..ApiSettings::default() }).await;
        let response = app.client.get(app.url("/api/v1/events/stream")).send().await.unwrap();
        let writer = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut new = spectask_domain::NewSpecTask {
                name: "from replica b".into(), name_derived: false, description: String::new(), task_type: spectask_domain::TaskType::Feature,
                priority: spectask_domain::Priority::Low, original_prompt: "p".into(), spec_agent: None,
                implementation_agent: None, project_path: None, workspace_config: None, created_by: "b".into(),
            };
            new.description = "elsewhere".into();
            other_replica.create_spec_task(&new).await.unwrap()
        };
        let (events, created) = tokio::join!(read_sse(response, 1, Duration::from_secs(10)), writer);
        assert_eq!(events.len(), 1, "the other replica's commit never reached the stream");
        assert_eq!(events[0].2["spec_task_id"], created.id.as_str());
    }
}
