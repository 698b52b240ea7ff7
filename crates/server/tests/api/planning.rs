//! The planning phase end to end: the real server, a real planner client and a loopback fake
//! OpenAI server scripted per test, on SQLite and PostgreSQL.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_domain::SpecTaskId;
use spectask_engine::{PlannerProfile, PlannerRegistry};
use spectask_testkit::{FakeOpenAi, FakeReply, TestApp, TestOptions, backend_tests, fast_llm};

/// A reply that satisfies the output contract, with `tasks` plan tasks (task n depends on n-1).
pub(crate) fn spec_reply(title: &str, tasks: usize) -> String {
    let mut plan = String::new();
    for n in 1..=tasks {
        plan.push_str(&format!(
            "- [ ] {n}. {title} step {n}\n  - Do part {n}.\n  - _Requirements: 1.{n}_\n"
        ));
        if n > 1 {
            plan.push_str(&format!("  - Depends on: {}\n", n - 1));
        }
    }
    let criteria: String = (1..=tasks)
        .map(|n| format!("{n}. WHEN step {n} runs THE SYSTEM SHALL work.\n"))
        .collect();
    format!(
        "Here you go.\n\n# Requirements: {title}\n\n## Requirement 1\n\n**User Story:** As a user, I want {title}.\n\n\
         ### Acceptance Criteria\n\n{criteria}\n## Open Questions\n\n- None.\n\n\
         # Design: {title}\n\n## Overview\n\nA small change.\n\n# Implementation Plan: {title}\n\n{plan}"
    )
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    app.wait_for_task_status(id, status).await
}

async fn create(app: &TestApp, body: Value) -> Value {
    let response = app.post("/api/v1/spec-tasks/from-prompt", &body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

fn last_user_message(request: &Value) -> String {
    let messages = request["messages"].as_array().unwrap();
    messages.iter().rev().find(|m| m["role"] == "user").unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn app_with_planner(
    db: spectask_testkit::TestDatabase,
    fake: &FakeOpenAi,
    tweak: impl FnOnce(&mut spectask_runtimes::llm::LlmConfig),
) -> TestApp {
    let mut config = fast_llm(&fake.base_url());
    tweak(&mut config);
    let planner = PlannerProfile::new("default", config, None).unwrap();
    TestApp::spawn_with_options(
        db,
        TestOptions {
            planners: PlannerRegistry::new(Some(planner), []),
            ..TestOptions::default()
        },
    )
    .await
}

backend_tests! {
    async fn plan_review_revise_approve(db) {
        let fake = FakeOpenAi::start().await;
        let project = tempfile::tempdir().unwrap();
        fake.push_text_reply(&spec_reply("Dark mode", 3));
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;

        let task = create(&app, json!({"prompt": "Add dark mode to the settings page", "project_path": project.path().to_str().unwrap()})).await;
        assert_eq!(task["status"], "spec_generation", "auto_start is the default");
        let id = task["id"].as_str().unwrap().to_owned();
        let session_id = task["spec_session_id"].as_str().unwrap().to_owned();

        let reviewed = wait_for_status(&app, &id, "spec_review").await;
        assert_eq!(reviewed["name"], "Dark mode", "the name comes from the requirements title");
        assert!(reviewed["requirements_spec"].as_str().unwrap().starts_with("# Requirements: Dark mode"));
        assert_eq!(reviewed["spec_session_id"], session_id.as_str());
        let specs = app.get(&format!("/api/v1/spec-tasks/{id}/specs")).await.body;
        assert_eq!(specs["revision"], 1);
        // The workspace projection.
        let dir = std::fs::canonicalize(project.path()).unwrap().join(".spectask/specs").join(&id);
        // The copy is written right after the commit that made the revision visible.
        let tasks_md = dir.join("tasks.md");
        let tasks_md = &tasks_md;
        spectask_testkit::wait_until("the specs to be written to the workspace", || async move {
            tasks_md.exists().then_some(())
        })
        .await;
        assert_eq!(std::fs::read_to_string(dir.join("design.md")).unwrap().trim_end(), reviewed["technical_design"].as_str().unwrap());
        assert!(std::fs::read_to_string(dir.join("tasks.md")).unwrap().contains("- [ ] 3. Dark mode step 3"));
        // The request: the contract in the system prompt, the user's words in the prompt, the key.
        let first = &fake.requests()[0];
        assert_eq!(first.authorization.as_deref(), Some("Bearer test-key"));
        assert!(first.body["messages"][0]["content"].as_str().unwrap().contains("# Implementation Plan: <short title>"));
        assert!(last_user_message(&first.body).contains("Add dark mode to the settings page"));

        // Two anchored comments, then request changes with a general comment.
        let c1 = app.post(&format!("/api/v1/spec-tasks/{id}/comments"), &json!({
            "document": "requirements", "quoted_text": "WHEN step 2 runs", "comment": "Say what happens on failure."
        })).await;
        assert_eq!(c1.status, StatusCode::CREATED, "{}", c1.body);
        let c2 = app.post(&format!("/api/v1/spec-tasks/{id}/comments"), &json!({
            "document": "plan", "line": 4, "comment": "Split step 2 into API and UI."
        })).await;
        assert_eq!(c2.status, StatusCode::CREATED, "{}", c2.body);
        assert_eq!(c2.body["revision"], 1);
        fake.push_text_reply(&spec_reply("Dark mode v2", 4));
        let changes = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": false, "comments": "Nice start; tighten it."})).await;
        assert_eq!(changes.status, StatusCode::OK, "{}", changes.body);
        assert_eq!(changes.body["spec_revision_count"], 1);
        assert!(["spec_revision", "spec_review"].contains(&changes.body["status"].as_str().unwrap()));

        let revised = wait_for_status(&app, &id, "spec_review").await;
        assert!(revised["requirements_spec"].as_str().unwrap().starts_with("# Requirements: Dark mode v2"));
        let requests = fake.wait_for_requests(2, Duration::from_secs(5)).await;
        let revision_prompt = last_user_message(&requests[1].body);
        assert!(revision_prompt.contains("Say what happens on failure."), "{revision_prompt}");
        assert!(revision_prompt.contains("> WHEN step 2 runs"), "{revision_prompt}");
        assert!(revision_prompt.contains("Split step 2 into API and UI."), "{revision_prompt}");
        assert!(revision_prompt.contains("line 4"), "{revision_prompt}");
        assert!(revision_prompt.contains("Nice start; tighten it."), "{revision_prompt}");
        // Same conversation: the first prompt and the first answer are in the history.
        let messages = requests[1].body["messages"].as_array().unwrap();
        assert!(messages.iter().any(|m| m["role"] == "assistant" && m["content"].as_str().unwrap().contains("# Requirements: Dark mode\n")));
        let sessions = app.get(&format!("/api/v1/spec-tasks/{id}/sessions")).await.body;
        assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1, "exactly one planning session");
        let session = app.get(&format!("/api/v1/sessions/{session_id}")).await.body;
        assert_eq!(session["interactions"].as_array().unwrap().len(), 2);
        let comments = app.get(&format!("/api/v1/spec-tasks/{id}/comments")).await.body;
        for comment in comments["comments"].as_array().unwrap() {
            assert_eq!((comment["resolved"].clone(), comment["resolved_in_revision"].clone()), (json!(true), json!(2)));
        }
        let revision = app.get(&format!("/api/v1/spec-tasks/{id}/revisions/2")).await.body;
        assert_eq!(revision["feedback"], "Nice start; tighten it.");
        let diff = app.get(&format!("/api/v1/spec-tasks/{id}/revisions/1/diff/2")).await.body;
        assert!(diff["plan"].as_str().unwrap().contains("+- [ ] 4. Dark mode v2 step 4"), "{diff}");
        assert!(diff["requirements"].as_str().unwrap().starts_with("--- a/requirements.md (revision 1)"));

        // Approve: tasks from the plan, stamped approval.
        let approved = app.client.post(app.url(&format!("/api/v1/spec-tasks/{id}/approve-specs")))
            .header("x-spectask-user", "carol").json(&json!({"approved": true})).send().await.unwrap();
        assert_eq!(approved.status(), StatusCode::OK);
        let approved: Value = approved.json().await.unwrap();
        assert_eq!((approved["status"].clone(), approved["spec_approved_by"].clone(), approved["spec_approved_revision"].clone()),
                   (json!("spec_approved"), json!("carol"), json!(2)));
        assert!(approved["spec_approved_at"].is_string());
        let tasks = app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        let tasks: Vec<_> = tasks["implementation_tasks"].as_array().unwrap().iter()
            .map(|t| (t["key"].clone(), t["title"].clone(), t["dependencies"].clone(), t["requirement_refs"].clone(), t["status"].clone()))
            .collect();
        assert_eq!(tasks, (1..=4).map(|n| (
            json!(n.to_string()), json!(format!("Dark mode v2 step {n}")),
            if n == 1 { json!([]) } else { json!([(n - 1).to_string()]) }, json!([format!("1.{n}")]), json!("pending"),
        )).collect::<Vec<_>>());
        // Comments are closed after approval.
        let late = app.post(&format!("/api/v1/spec-tasks/{id}/comments"), &json!({"document": "design", "comment": "late"})).await;
        assert_eq!((late.status, late.error_code()), (StatusCode::CONFLICT, "conflict"));
    }

    async fn streamed_chunks_are_visible_before_the_turn_ends(db) {
        let fake = FakeOpenAi::start().await;
        let reply = spec_reply("Streaming", 2);
        let mid = reply.len() / 2;
        let cut = (mid..reply.len()).find(|i| reply.is_char_boundary(*i)).unwrap();
        fake.push(FakeReply::Stream { chunks: vec![reply[..cut].to_owned(), reply[cut..].to_owned()], delay: Duration::from_millis(700) });
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
        let task = create(&app, json!({"prompt": "stream it"})).await;
        let id = task["id"].as_str().unwrap();
        let session = task["spec_session_id"].as_str().unwrap();
        // Watch the live stream too.
        let stream = app.client.get(app.url(&format!("/api/v1/events/stream?spec_task_id={id}&after=0"))).send().await.unwrap();
        let partial = app.wait_until("output to appear", |app| async move {
            let body = app.get(&format!("/api/v1/sessions/{session}")).await.body;
            let text = body["interactions"][0]["response_message"].as_str().unwrap().to_owned();
            (!text.is_empty()).then_some(text)
        })
        .await;
        let status = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body["status"].clone();
        assert_eq!(status, "spec_generation", "output is visible while the turn runs");
        assert_eq!(partial, reply[..cut]);
        wait_for_status(&app, id, "spec_review").await;
        let final_text = app.get(&format!("/api/v1/sessions/{session}")).await.body["interactions"][0]["response_message"].clone();
        assert_eq!(final_text, reply.as_str());
        // The deltas went out on the event stream as `interaction.updated`.
        let mut body = String::new();
        let mut bytes = stream.bytes_stream();
        use futures::StreamExt;
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_millis(500), bytes.next()).await {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(body.contains("event: interaction.updated"), "{body}");
        assert!(body.contains("\"delta\""));
    }

    async fn rate_limit_is_retried_after_the_servers_delay(db) {
        let fake = FakeOpenAi::start().await;
        fake.push(FakeReply::Status { status: 429, retry_after: Some("1".into()), body: json!({"error": {"message": "slow down"}}) });
        fake.push_text_reply(&spec_reply("Retried", 1));
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
        let task = create(&app, json!({"prompt": "retry me"})).await;
        wait_for_status(&app, task["id"].as_str().unwrap(), "spec_review").await;
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        let waited = requests[1].received_at.duration_since(requests[0].received_at);
        assert!(waited >= Duration::from_millis(950), "Retry-After ignored: {waited:?}");
    }

    async fn server_errors_are_bounded_then_the_task_fails_with_the_reason(db) {
        let fake = FakeOpenAi::start().await;
        for _ in 0..5 {
            fake.push(FakeReply::Status { status: 500, retry_after: None, body: json!({"error": {"message": "upstream exploded"}}) });
        }
        let app = app_with_planner(db, &fake, |c| c.max_attempts = 5).await;
        let task = create(&app, json!({"prompt": "fail me"})).await;
        let id = task["id"].as_str().unwrap();
        let failed = wait_for_status(&app, id, "spec_failed").await;
        let error = failed["error"].as_str().unwrap();
        assert!(error.contains("500") && error.contains("upstream exploded") && error.contains('5'), "{error}");
        assert_eq!(fake.requests().len(), 5, "bounded: exactly max_attempts requests");
        let session = app.get(&format!("/api/v1/sessions/{}", failed["spec_session_id"].as_str().unwrap())).await.body;
        assert_eq!(session["interactions"][0]["state"], "error");
        assert_eq!(session["interactions"][0]["error"], error);
        // A failed task can be retried in the same session.
        fake.push_text_reply(&spec_reply("Second try", 1));
        let retried = app.post(&format!("/api/v1/spec-tasks/{id}/start-planning"), &json!({})).await;
        assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
        assert_eq!(retried.body["error"], Value::Null);
        let done = wait_for_status(&app, id, "spec_review").await;
        assert_eq!(done["spec_session_id"], failed["spec_session_id"]);
    }

    async fn malformed_output_gets_one_correction_then_fails(db) {
        let fake = FakeOpenAi::start().await;
        let broken = "# Requirements: Half\n\nOnly requirements, no design or plan.\n";
        fake.push_text_reply(broken);
        fake.push_text_reply(broken);
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
        let task = create(&app, json!({"prompt": "confuse the planner"})).await;
        let failed = wait_for_status(&app, task["id"].as_str().unwrap(), "spec_failed").await;
        assert!(failed["error"].as_str().unwrap().contains("twice"), "{failed}");
        let requests = fake.requests();
        assert_eq!(requests.len(), 2, "exactly one corrective turn");
        let correction = last_user_message(&requests[1].body);
        assert!(correction.contains("does not follow the required format") && correction.contains("# Design: <title>"), "{correction}");
        let session = app.get(&format!("/api/v1/sessions/{}", failed["spec_session_id"].as_str().unwrap())).await.body;
        let states: Vec<_> = session["interactions"].as_array().unwrap().iter().map(|i| i["state"].clone()).collect();
        assert_eq!(states, [json!("complete"), json!("error")]);
    }

    async fn a_corrected_reply_is_accepted(db) {
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(&spec_reply("Broken", 2).replace("Depends on: 1", "Depends on: 9"));
        fake.push_text_reply(&spec_reply("Fixed", 2));
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
        let task = create(&app, json!({"prompt": "almost right"})).await;
        let reviewed = wait_for_status(&app, task["id"].as_str().unwrap(), "spec_review").await;
        assert_eq!(reviewed["name"], "Fixed");
        let correction = last_user_message(&fake.requests()[1].body);
        assert!(correction.contains("implementation plan:") && correction.contains('9'), "{correction}");
    }

    async fn a_hung_planner_times_out(db) {
        let fake = FakeOpenAi::start().await;
        fake.push(FakeReply::Hang);
        fake.push(FakeReply::Hang);
        let app = app_with_planner(db, &fake, |c| {
            c.first_byte_timeout = Duration::from_millis(300);
            c.max_attempts = 2;
        }).await;
        let task = create(&app, json!({"prompt": "wait forever"})).await;
        let failed = wait_for_status(&app, task["id"].as_str().unwrap(), "spec_failed").await;
        let error = failed["error"].as_str().unwrap();
        assert!(error.contains("did not start answering within 300ms") && error.contains("2 attempts"), "{error}");
        assert_eq!(fake.requests().len(), 2);
    }

    async fn concurrent_starts_make_exactly_one_session(db) {
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(&spec_reply("Once", 1));
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
        let task = create(&app, json!({"prompt": "start me once", "auto_start": false})).await;
        assert_eq!(task["status"], "backlog");
        let id = task["id"].as_str().unwrap();
        let url = app.url(&format!("/api/v1/spec-tasks/{id}/start-planning"));
        let statuses: Vec<_> = join_all((0..20).map(|_| app.client.post(&url).send())).await.into_iter().map(|r| r.unwrap().status()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 19, "{statuses:?}");
        wait_for_status(&app, id, "spec_review").await;
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}/sessions")).await.body["sessions"].as_array().unwrap().len(), 1);
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}/turns")).await.body["turns"].as_array().unwrap().len(), 1);
        assert_eq!(fake.requests().len(), 1);
    }

    async fn concurrent_approvals_exactly_one_wins(db) {
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(&spec_reply("Approve once", 2));
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
        let task = create(&app, json!({"prompt": "approve me"})).await;
        let id = task["id"].as_str().unwrap();
        wait_for_status(&app, id, "spec_review").await;
        let url = app.url(&format!("/api/v1/spec-tasks/{id}/approve-specs"));
        let statuses: Vec<_> = join_all((0..20).map(|_| app.client.post(&url).json(&json!({"approved": true})).send()))
            .await.into_iter().map(|r| r.unwrap().status()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 19, "{statuses:?}");
        let tasks = app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        assert_eq!(tasks["implementation_tasks"].as_array().unwrap().len(), 2, "tasks created once");
        let refused = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": false})).await;
        assert_eq!((refused.status, refused.error_code()), (StatusCode::CONFLICT, "invalid_transition"));
        // The orchestrator may already have queued it for implementation.
        let current = refused.body["error"]["current_status"].as_str().unwrap();
        assert!(["spec_approved", "implementation_queued"].contains(&current), "{current}");
        assert_eq!(refused.body["error"]["allowed_from"], json!(["spec_review"]));
    }

    async fn a_plan_with_errors_is_refused_with_422(db) {
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(&spec_reply("Good", 2));
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
        let task = create(&app, json!({"prompt": "then break it"})).await;
        let id = task["id"].as_str().unwrap();
        wait_for_status(&app, id, "spec_review").await;
        // A revision whose plan has a cycle and an unknown reference (written directly: the
        // planner's own output is validated before it can reach review).
        let broken_plan = "# Implementation Plan: x\n\n- [ ] 1. A\n  - Depends on: 2\n- [ ] 2. B\n  - Depends on: 1\n- [ ] 3. C\n  - Depends on: 7\n";
        app.store.add_revision(&SpecTaskId::parse(id).unwrap(), &spectask_store::NewRevision {
            requirements_spec: "# Requirements: x\n\ntext".into(), technical_design: "# Design: x\n\ntext".into(),
            implementation_plan: broken_plan.into(), feedback: None, interaction_id: None,
        }, "tester").await.unwrap();
        let refused = app.post(&format!("/api/v1/spec-tasks/{id}/approve-specs"), &json!({"approved": true})).await;
        assert_eq!((refused.status, refused.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "plan_invalid"));
        let errors = refused.body["error"]["plan_errors"].as_array().unwrap();
        let kinds: Vec<_> = errors.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"dependency_cycle") && kinds.contains(&"unknown_reference"), "{kinds:?}");
        assert!(errors.iter().all(|e| !e["keys"].as_array().unwrap().is_empty() && !e["lines"].as_array().unwrap().is_empty()));
        let after = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
        assert_eq!(after["status"], "spec_review", "status unchanged");
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body["implementation_tasks"], json!([]));
    }

    async fn comment_validation(db) {
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(&spec_reply("Comments", 1));
        let app = TestApp::spawn_with_planner(db, &fake.base_url()).await;
        let task = create(&app, json!({"prompt": "comment on me", "auto_start": false})).await;
        let id = task["id"].as_str().unwrap();
        let path = format!("/api/v1/spec-tasks/{id}/comments");
        let early = app.post(&path, &json!({"document": "design", "comment": "too early"})).await;
        assert_eq!((early.status, early.error_code()), (StatusCode::CONFLICT, "conflict"));
        app.post(&format!("/api/v1/spec-tasks/{id}/start-planning"), &json!({})).await;
        wait_for_status(&app, id, "spec_review").await;
        for (body, status, code) in [
            (json!({"document": "readme", "comment": "x"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            (json!({"document": "design", "comment": "  "}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"document": "design", "comment": "x", "line": 0}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"document": "design", "comment": "x", "line": 10_000}), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            (json!({"document": "design", "comment": "x", "quoted_text": "not in the design"}), StatusCode::UNPROCESSABLE_ENTITY, "quote_not_found"),
            (json!({"document": "design"}), StatusCode::BAD_REQUEST, "invalid_body"),
        ] {
            let response = app.post(&path, &body).await;
            assert_eq!((response.status, response.error_code()), (status, code), "{body}");
        }
        assert_eq!(app.get(&path).await.body["comments"], json!([]));
    }

    async fn without_a_planner_tasks_wait_in_backlog(db) {
        let app = TestApp::spawn(db).await;
        let task = create(&app, json!({"prompt": "no planner here"})).await;
        assert_eq!(task["status"], "backlog");
        let before = app.get("/api/v1/spec-tasks").await.body["total"].clone();
        let explicit = app.post("/api/v1/spec-tasks/from-prompt", &json!({"prompt": "x", "auto_start": true})).await;
        assert_eq!((explicit.status, explicit.error_code()), (StatusCode::CONFLICT, "planner_not_configured"));
        let unknown = app.post("/api/v1/spec-tasks/from-prompt", &json!({"prompt": "x", "spec_agent": "nobody"})).await;
        assert_eq!((unknown.status, unknown.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_planner"));
        assert_eq!(app.get("/api/v1/spec-tasks").await.body["total"], before, "refusals created nothing");
        let start = app.post(&format!("/api/v1/spec-tasks/{}/start-planning", task["id"].as_str().unwrap()), &json!({})).await;
        assert_eq!((start.status, start.error_code()), (StatusCode::CONFLICT, "planner_not_configured"));
    }

    async fn a_non_streaming_planner_works_too(db) {
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(&spec_reply("One shot", 2));
        let app = app_with_planner(db, &fake, |c| c.stream = false).await;
        let task = create(&app, json!({"prompt": "answer in one piece"})).await;
        let reviewed = wait_for_status(&app, task["id"].as_str().unwrap(), "spec_review").await;
        assert_eq!(reviewed["name"], "One shot");
        assert_eq!(fake.requests()[0].body["stream"], json!(false));
    }
}
