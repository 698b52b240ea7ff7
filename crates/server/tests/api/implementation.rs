//! Multi-session implementation end to end through the HTTP API: a planner on a fake OpenAI
//! server writes the plan, a human approves, and the scripted agent runtime hosts the threads.
//! Every test runs on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_engine::{EngineSettings, PlannerRegistry};
use spectask_testkit::{
    Behaviour, Dispatch, FakeOpenAi, Rule, Script, ScriptedRuntime, TestApp, TestDatabase,
    TestOptions, backend_tests, fast_engine, fast_planner,
};

use crate::support::{
    app_with_runtime, approved_task_from, is_named, wait_for_session_named, work_sessions,
};

/// A planning reply whose plan has the given tasks: `(key, title, depends_on)`.
fn reply_with(title: &str, tasks: &[(&str, &str, &[&str])]) -> String {
    let mut plan = String::new();
    for (key, task_title, deps) in tasks {
        plan.push_str(&format!(
            "- [ ] {key}. {task_title}\n  - Build {task_title}.\n  - _Requirements: 1.1_\n"
        ));
        if !deps.is_empty() {
            plan.push_str(&format!("  - Depends on: {}\n", deps.join(", ")));
        }
    }
    format!(
        "# Requirements: {title}\n\n1.1 WHEN used THE SYSTEM SHALL work.\n\n## Open Questions\n\n- None.\n\n\
         # Design: {title}\n\nComponents.\n\n# Implementation Plan: {title}\n\n{plan}"
    )
}

struct Harness {
    app: TestApp,
    runtime: ScriptedRuntime,
    _fake: FakeOpenAi,
}

async fn harness(
    db: TestDatabase,
    reply: &str,
    script: Script,
    tweak: impl FnOnce(&mut EngineSettings),
) -> Harness {
    let runtime = ScriptedRuntime::new(script);
    let mut engine = fast_engine();
    tweak(&mut engine);
    let (app, fake) = app_with_runtime(db, Arc::new(runtime.clone()), engine, reply).await;
    Harness {
        app,
        runtime,
        _fake: fake,
    }
}

async fn wait_for(app: &TestApp, id: &str, status: &str) -> Value {
    app.wait_for_task_status(id, status).await
}

fn named<'a>(sessions: &'a [Value], prefix: &str) -> &'a Value {
    sessions
        .iter()
        .find(|s| is_named(s, prefix))
        .unwrap_or_else(|| panic!("no session {prefix}"))
}

async fn wait_for_session_status(app: &TestApp, id: &str, prefix: &str, status: &str) -> Value {
    wait_for_session_named(app, id, prefix, Some(status)).await
}

fn quick() -> Behaviour {
    Behaviour::Succeed {
        chunks: 3,
        chunk_delay_ms: 10,
    }
}

/// A one-task plan (`{name} work`) whose first turn behaves as `behaviour`, under a 400 ms
/// silence limit, run to review: the first turn failed for the silence and its follow-up
/// completed in the same thread. Returns the runtime's dispatches for the caller's own checks.
async fn first_turn_times_out_and_is_retried(
    db: TestDatabase,
    behaviour: Behaviour,
    name: &str,
) -> Vec<Dispatch> {
    let script = Script {
        default: quick(),
        rules: vec![Rule {
            prompt_contains: "Task 1:".into(),
            behaviour,
            times: Some(1),
        }],
    };
    let work = format!("{name} work");
    let h = harness(db, &reply_with(name, &[("1", &work, &[])]), script, |s| {
        s.turn_timeout = Duration::from_millis(400)
    })
    .await;
    let prompt = format!("do {}", work.to_lowercase());
    let id = approved_task_from(&h.app, json!({ "prompt": prompt })).await;
    wait_for(&h.app, &id, "implementation_review").await;
    let ws = &work_sessions(&h.app, &id).await[0];
    let detail = h
        .app
        .get(&format!(
            "/api/v1/work-sessions/{}",
            ws["id"].as_str().unwrap()
        ))
        .await
        .body;
    let turns = detail["turns"].as_array().unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|t| (t["kind"].clone(), t["status"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!("implementation"), json!("failed")),
            (json!("follow_up"), json!("completed"))
        ]
    );
    assert!(
        turns[0]["error"]
            .as_str()
            .unwrap()
            .contains("no agent activity"),
        "{}",
        turns[0]
    );
    let dispatches = h.runtime.dispatches();
    assert_eq!(
        dispatches[0].thread_id, dispatches[1].thread_id,
        "the retry uses the same thread"
    );
    dispatches
}

backend_tests! {
    async fn simple_task_one_thread_to_done(db) {
        let project = tempfile::tempdir().unwrap();
        let h = harness(db, &reply_with("Profile page", &[("1", "Add the profile page", &[])]), Script::always(quick()), |_| {}).await;
        let id = approved_task_from(&h.app, json!({"prompt": "Add a user profile page", "project_path": project.path().to_str().unwrap()})).await;
        let task = wait_for(&h.app, &id, "implementation_review").await;
        assert!(task["started_at"].is_string());
        let sessions = work_sessions(&h.app, &id).await;
        assert_eq!(sessions.len(), 1);
        let ws = &sessions[0];
        assert_eq!((ws["status"].clone(), ws["phase"].clone(), ws["implementation_task_index"].clone()), (json!("completed"), json!("implementation"), json!(0)));
        assert_eq!(ws["zed_thread"]["status"], "completed");
        let dispatches = h.runtime.dispatches();
        assert_eq!(dispatches.len(), 1);
        assert_eq!(ws["zed_thread"]["zed_thread_id"], dispatches[0].thread_id.as_str());
        // The first turn carries the spec context and the assignment.
        for needle in ["Task 1: Add the profile page", "## Requirements", "# Design: Profile page", "## The whole plan", "Stay within your assignment"] {
            assert!(dispatches[0].prompt.contains(needle), "prompt lacks {needle}");
        }
        let detail = h.app.get(&format!("/api/v1/work-sessions/{}", ws["id"].as_str().unwrap())).await.body;
        assert_eq!(detail["helix_session"]["role"], "implementation");
        assert!(detail["helix_session"]["interactions"][0]["response_message"].as_str().unwrap().contains("chunk 3/3"));
        assert_eq!(detail["turns"].as_array().unwrap().len(), 1);
        assert_eq!(detail["implementation_tasks"][0]["status"], "completed");
        let progress = h.app.get(&format!("/api/v1/spec-tasks/{id}/progress")).await.body;
        assert_eq!((progress["overall_progress"].clone(), progress["completed_tasks"].clone()), (json!(1.0), json!(1)));
        let instance = h.app.get(&format!("/api/v1/spec-tasks/{id}/zed-instance")).await.body;
        assert_eq!((instance["thread_count"].clone(), instance["runtime"].clone()), (json!(1), json!("scripted")));
        assert!(instance["zed_instance_id"].as_str().unwrap().starts_with("zin_"));
        // The workspace tasks.md shows the progress (rewritten after the turn's commit, so it may
        // trail the status read above).
        let tasks_md = std::fs::canonicalize(project.path()).unwrap().join(".spectask/specs").join(&id).join("tasks.md");
        spectask_testkit::wait_until("tasks.md to show task 1 done", || {
            let tasks_md = tasks_md.clone();
            async move {
                let text = std::fs::read_to_string(&tasks_md).unwrap_or_default();
                text.contains("- [x] 1. Add the profile page").then_some(())
            }
        })
        .await;
        let done = h.app.post(&format!("/api/v1/spec-tasks/{id}/approve-implementation"), &json!({})).await;
        assert_eq!((done.status, done.body["status"].clone()), (StatusCode::OK, json!("done")));
        assert!(done.body["completed_at"].is_string());
    }

    async fn complex_task_parallel_within_limits_in_dependency_order(db) {
        let plan = reply_with("Auth", &[
            ("1", "Database schema migration", &[]),
            ("2", "Backend API endpoints", &[]),
            ("3", "Frontend login components", &[]),
            ("4", "Integration tests", &["1", "2", "3"]),
        ]);
        let script = Script {
            default: Behaviour::Succeed { chunks: 3, chunk_delay_ms: 60 },
            rules: vec![Rule { prompt_contains: "Task 2: Backend".into(), behaviour: Behaviour::Succeed { chunks: 15, chunk_delay_ms: 80 }, times: None }],
        };
        let h = harness(db, &plan, script, |s| s.max_parallel_threads = 2).await;
        let id = approved_task_from(&h.app, json!({"prompt": "Implement authentication"})).await;
        let backend = wait_for_session_status(&h.app, &id, "2.", "active").await;
        let spawned = h.app.post(
            &format!("/api/v1/spec-tasks/{id}/work-sessions/{}/spawn", backend["id"].as_str().unwrap()),
            &json!({"name": "Security audit", "description": "Audit the new endpoints for injection and auth bypass."}),
        ).await;
        assert_eq!(spawned.status, StatusCode::CREATED, "{}", spawned.body);
        assert_eq!(spawned.body["work_session"]["parent_work_session_id"], backend["id"]);
        assert_eq!(spawned.body["work_session"]["spawned_by_session_id"], backend["id"]);
        assert_ne!(spawned.body["helix_session"]["id"], Value::Null);
        wait_for(&h.app, &id, "implementation_review").await;

        let sessions = work_sessions(&h.app, &id).await;
        assert_eq!(sessions.len(), 5);
        assert!(sessions.iter().all(|s| s["status"] == "completed"), "{sessions:?}");
        let helix: std::collections::BTreeSet<_> = sessions.iter().map(|s| s["helix_session_id"].as_str().unwrap()).collect();
        assert_eq!(helix.len(), 5, "one Helix session per work session");
        let threads: std::collections::BTreeSet<_> = sessions.iter().map(|s| s["zed_thread"]["zed_thread_id"].as_str().unwrap()).collect();
        assert_eq!(threads.len(), 5, "one thread per work session");
        let instance = h.app.get(&format!("/api/v1/spec-tasks/{id}/zed-instance")).await.body;
        let instance_id = instance["zed_instance_id"].as_str().unwrap();
        assert!(h.runtime.max_concurrent_turns(instance_id) <= 2, "the thread limit was exceeded");
        assert_eq!(h.runtime.max_concurrent_turns(instance_id), 2, "threads ran in parallel");
        // Integration tests start only after the three tasks it depends on ended.
        let dispatches = h.runtime.dispatches();
        assert_eq!(dispatches.len(), 5);
        let by_task = |needle: &str| dispatches.iter().find(|d| d.prompt.contains(needle)).unwrap_or_else(|| panic!("{needle}"));
        let integration = by_task("Task 4: Integration tests");
        for dependency in ["Task 1: Database", "Task 2: Backend", "Task 3: Frontend"] {
            assert!(integration.started_at_ms >= by_task(dependency).ended_at_ms.unwrap(), "{dependency} had not ended");
        }
        assert!(by_task("Security audit").prompt.contains("Spawned during implementation"));
        let parent = sessions.iter().find(|s| s["id"] == backend["id"]).unwrap();
        assert_eq!(parent["child_work_session_ids"], json!([spawned.body["work_session"]["id"].clone()]));
        let progress = h.app.get(&format!("/api/v1/spec-tasks/{id}/progress")).await.body;
        assert_eq!((progress["completed_tasks"].clone(), progress["total_tasks"].clone()), (json!(4), json!(4)));
    }

    async fn interactive_task_three_spawns_linked_to_their_parent(db) {
        let script = Script { default: quick(), rules: vec![Rule { prompt_contains: "Task 1: Analyse".into(), behaviour: Behaviour::Succeed { chunks: 25, chunk_delay_ms: 80 }, times: None }] };
        let h = harness(db, &reply_with("Performance", &[("1", "Analyse the slow paths", &[])]), script, |_| {}).await;
        let id = approved_task_from(&h.app, json!({"prompt": "Make it fast"})).await;
        let parent = wait_for_session_status(&h.app, &id, "1.", "active").await;
        let parent_id = parent["id"].as_str().unwrap();
        let mut children = Vec::new();
        for name in ["Database query optimization", "Frontend bundle optimization", "Cache implementation"] {
            let spawned = h.app.post(&format!("/api/v1/spec-tasks/{id}/work-sessions/{parent_id}/spawn"), &json!({"name": name, "description": format!("{name}.")})).await;
            assert_eq!(spawned.status, StatusCode::CREATED, "{}", spawned.body);
            children.push(spawned.body["work_session"]["id"].clone());
        }
        wait_for(&h.app, &id, "implementation_review").await;
        let sessions = work_sessions(&h.app, &id).await;
        assert_eq!(sessions.len(), 4);
        let parent = sessions.iter().find(|s| s["id"] == parent_id).unwrap();
        assert_eq!(parent["child_work_session_ids"], json!(children));
        for child in &children {
            let child = sessions.iter().find(|s| &s["id"] == child).unwrap();
            assert_eq!((child["parent_work_session_id"].as_str(), child["status"].as_str()), (Some(parent_id), Some("completed")));
        }
        // Spawning from a finished session is refused.
        let late = h.app.post(&format!("/api/v1/spec-tasks/{id}/work-sessions/{parent_id}/spawn"), &json!({"name": "Late", "description": "x"})).await;
        assert_eq!((late.status, late.error_code()), (StatusCode::CONFLICT, "conflict"));
    }

    async fn a_hanging_turn_times_out_and_is_retried(db) {
        let dispatches = first_turn_times_out_and_is_retried(db, Behaviour::Hang, "Flaky").await;
        assert_eq!(dispatches[0].outcome.as_deref(), Some("cancelled"), "the hung turn was cancelled in the agent");
        assert!(dispatches[1].prompt.contains("retry 1"));
    }

    async fn a_timed_out_turn_whose_agent_ignores_the_cancel_is_abandoned_and_retried(db) {
        // The agent never answers the prompt, cancel or not: the turn is abandoned after the
        // cancel's grace and recorded as failed. It used to wait forever for the abandoned run's
        // events to end, its lease kept alive by its heartbeat, so the task never moved again.
        let dispatches = first_turn_times_out_and_is_retried(db, Behaviour::IgnoreCancel, "Deaf").await;
        assert_eq!(dispatches[0].outcome.as_deref(), Some("dropped"), "the deaf turn was abandoned");
    }

    async fn a_failing_thread_blocks_only_its_dependants_and_can_be_retried(db) {
        let plan = reply_with("Mixed", &[("1", "Broken base", &[]), ("2", "Needs the base", &["1"]), ("3", "Independent work", &[])]);
        let script = Script { default: quick(), rules: vec![Rule { prompt_contains: "Task 1: Broken base".into(), behaviour: Behaviour::Fail { message: "compiler exploded".into(), after_chunks: 1 }, times: None }] };
        let h = harness(db, &plan, script, |s| s.max_turn_retries = 1).await;
        let id = approved_task_from(&h.app, json!({"prompt": "mixed fortunes"})).await;
        let failed = wait_for(&h.app, &id, "implementation_failed").await;
        assert!(failed["error"].as_str().unwrap().contains("compiler exploded"), "{failed}");
        wait_for_session_status(&h.app, &id, "3.", "completed").await;
        let sessions = work_sessions(&h.app, &id).await;
        let (base, dependant) = (named(&sessions, "1."), named(&sessions, "2."));
        assert_eq!(base["status"], "failed");
        assert!(base["error"].as_str().unwrap().contains("compiler exploded"));
        assert_eq!(dependant["status"], "blocked");
        assert!(dependant["queue_reason"].as_str().unwrap().contains("blocked"));
        assert_eq!(h.runtime.dispatches().iter().filter(|d| d.prompt.contains("Task 2:")).count(), 0, "the dependant never ran");
        let detail = h.app.get(&format!("/api/v1/work-sessions/{}", base["id"].as_str().unwrap())).await.body;
        assert_eq!(detail["turns"].as_array().unwrap().len(), 2, "one retry, then failure");
        let tasks = h.app.get(&format!("/api/v1/spec-tasks/{id}/implementation-tasks")).await.body;
        let statuses: Vec<_> = tasks["implementation_tasks"].as_array().unwrap().iter().map(|t| t["status"].clone()).collect();
        assert_eq!(statuses, [json!("failed"), json!("blocked"), json!("completed")]);

        // Fix the agent and retry: the base and then its dependant complete.
        h.runtime.set_script(Script::always(quick()));
        let retried = h.app.post(&format!("/api/v1/work-sessions/{}/retry", base["id"].as_str().unwrap()), &json!({})).await;
        assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
        let task = wait_for(&h.app, &id, "implementation_review").await;
        assert_eq!(task["error"], Value::Null);
        assert!(work_sessions(&h.app, &id).await.iter().all(|s| s["status"] == "completed"));
        let again = h.app.post(&format!("/api/v1/work-sessions/{}/retry", base["id"].as_str().unwrap()), &json!({})).await;
        assert_eq!((again.status, again.error_code()), (StatusCode::CONFLICT, "invalid_transition"));
    }

    async fn messages_cancel_review_changes_and_queue_reasons(db) {
        let plan = reply_with("Review", &[("1", "Slow part", &[]), ("2", "Waits for the slow part", &["1"]), ("3", "Cancelled part", &[])]);
        let script = Script { default: quick(), rules: vec![
            Rule { prompt_contains: "Task 1: Slow".into(), behaviour: Behaviour::Succeed { chunks: 10, chunk_delay_ms: 60 }, times: Some(1) },
            Rule { prompt_contains: "Task 3: Cancelled".into(), behaviour: Behaviour::Hang, times: None },
        ] };
        let h = harness(db, &plan, script, |_| {}).await;
        let id = approved_task_from(&h.app, json!({"prompt": "review me"})).await;
        let slow = wait_for_session_status(&h.app, &id, "1.", "active").await;
        let waiting = named(&work_sessions(&h.app, &id).await, "2.").clone();
        assert_eq!(waiting["status"], "pending");
        assert!(waiting["queue_reason"].as_str().unwrap().starts_with("waiting for: 1. Slow part"), "{waiting}");
        // A human follow-up is queued behind the running turn on the same thread.
        let message = h.app.post(&format!("/api/v1/work-sessions/{}/message", slow["id"].as_str().unwrap()), &json!({"text": "Also add logging."})).await;
        assert_eq!(message.status, StatusCode::ACCEPTED, "{}", message.body);
        let empty = h.app.post(&format!("/api/v1/work-sessions/{}/message", slow["id"].as_str().unwrap()), &json!({"text": " "})).await;
        assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
        // Cancel the hanging one.
        let hanging = wait_for_session_status(&h.app, &id, "3.", "active").await;
        // Active means its turn is queued; wait until the agent is actually running it.
        let runtime = &h.runtime;
        spectask_testkit::wait_until("the hanging turn to reach the agent", || async move {
            runtime.dispatches().iter().any(|d| d.prompt.contains("Task 3: Cancelled")).then_some(())
        })
        .await;
        let cancelled = h.app.post(&format!("/api/v1/work-sessions/{}/cancel", hanging["id"].as_str().unwrap()), &json!({})).await;
        assert_eq!((cancelled.status, cancelled.body["status"].clone()), (StatusCode::OK, json!("cancelled")));
        wait_for(&h.app, &id, "implementation_review").await;
        let dispatches = h.runtime.dispatches();
        let slow_turns: Vec<_> = dispatches.iter().filter(|d| d.thread_id == dispatches.iter().find(|d| d.prompt.contains("Task 1: Slow")).unwrap().thread_id).collect();
        assert_eq!(slow_turns.len(), 2, "the message ran as a second turn on the same thread");
        assert!(slow_turns[1].prompt.contains("Also add logging."));
        assert!(slow_turns[1].started_at_ms >= slow_turns[0].ended_at_ms.unwrap(), "one turn at a time per thread");
        let hung = dispatches.iter().find(|d| d.prompt.contains("Task 3: Cancelled")).unwrap();
        assert_eq!(hung.outcome.as_deref(), Some("cancelled"));

        // Review: request changes on one session, then approve.
        let changes = h.app.post(&format!("/api/v1/spec-tasks/{id}/request-changes"), &json!({"comment": "Rename the endpoint.", "work_session_ids": [slow["id"].clone()]})).await;
        assert_eq!((changes.status, changes.body["status"].clone()), (StatusCode::OK, json!("implementation")));
        wait_for(&h.app, &id, "implementation_review").await;
        let last = h.runtime.dispatches().last().unwrap().clone();
        assert!(last.prompt.contains("Rename the endpoint."));
        assert_eq!(last.thread_id, slow_turns[0].thread_id);
        let done = h.app.post(&format!("/api/v1/spec-tasks/{id}/approve-implementation"), &json!({})).await;
        assert_eq!(done.body["status"], "done");
        let refused = h.app.post(&format!("/api/v1/spec-tasks/{id}/request-changes"), &json!({"comment": "too late"})).await;
        assert_eq!((refused.status, refused.error_code()), (StatusCode::CONFLICT, "invalid_transition"));
    }

    async fn implementation_sessions_endpoint_is_idempotent(db) {
        let h = harness(db, &reply_with("Idem", &[("1", "One", &[]), ("2", "Two", &[])]), Script::always(Behaviour::Hang), |_| {}).await;
        let id = approved_task_from(&h.app, json!({"prompt": "idempotent"})).await;
        let first = h.app.post(&format!("/api/v1/spec-tasks/{id}/implementation-sessions"), &json!({})).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        let second = h.app.post(&format!("/api/v1/spec-tasks/{id}/implementation-sessions"), &json!({})).await;
        let ids = |r: &spectask_testkit::Response| r.body["work_sessions"].as_array().unwrap().iter().map(|s| s["id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&second));
        assert_eq!(ids(&first).len(), 2);
        let filtered = h.app.get(&format!("/api/v1/spec-tasks/{id}/work-sessions?status=completed")).await;
        assert_eq!(filtered.body["total"], 0);
        let bad = h.app.get(&format!("/api/v1/spec-tasks/{id}/work-sessions?status=sleeping")).await;
        assert_eq!((bad.status, bad.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"));
        let threads = h.app.get(&format!("/api/v1/spec-tasks/{id}/zed-threads")).await;
        assert_eq!(threads.status, StatusCode::OK);
    }

    async fn a_disconnected_instance_resumes_the_same_thread(db) {
        let script = Script { default: quick(), rules: vec![Rule { prompt_contains: "Task 1:".into(), behaviour: Behaviour::Disconnect { after_chunks: 2 }, times: Some(1) }] };
        let h = harness(db, &reply_with("Disconnect", &[("1", "Survive a disconnect", &[])]), script, |_| {}).await;
        let id = approved_task_from(&h.app, json!({"prompt": "disconnect me"})).await;
        wait_for(&h.app, &id, "implementation_review").await;
        let dispatches = h.runtime.dispatches();
        assert_eq!(dispatches.len(), 2);
        assert!(dispatches[0].outcome.as_deref().unwrap().starts_with("disconnected"));
        assert_eq!(dispatches[0].thread_id, dispatches[1].thread_id, "resumed, not replaced");
        assert_eq!(h.runtime.threads().len(), 1, "no second thread was created");
        let threads = h.app.get(&format!("/api/v1/spec-tasks/{id}/zed-threads")).await.body;
        assert_eq!(threads["zed_threads"][0]["status"], "completed");
        let events = h.app.get(&format!("/api/v1/spec-tasks/{id}/events?limit=1000")).await.body;
        let thread_moves: Vec<_> = events["events"].as_array().unwrap().iter()
            .filter(|e| e["kind"] == "zed_thread.status_changed")
            .map(|e| e["payload"]["to"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(thread_moves, ["active", "disconnected", "active", "completed"]);
    }

    async fn active_instances_are_limited(db) {
        let fake = FakeOpenAi::start().await;
        fake.push_text_reply(&reply_with("First", &[("1", "First task work", &[])]));
        fake.push_text_reply(&reply_with("Second", &[("1", "Second task work", &[])]));
        // The first task's work is slow enough that the second is approved while it runs.
        let runtime = ScriptedRuntime::new(Script {
            default: quick(),
            rules: vec![Rule { prompt_contains: "First task work".into(), behaviour: Behaviour::Succeed { chunks: 25, chunk_delay_ms: 80 }, times: None }],
        });
        let mut engine = fast_engine();
        engine.max_active_instances = 1;
        let options = TestOptions {
            planners: PlannerRegistry::new(Some(fast_planner("default", &fake.base_url())), []),
            engine,
            runtime: Some(Arc::new(runtime.clone())),
            ..TestOptions::default()
        };
        let app = TestApp::spawn_with_options(db, options).await;
        let first = approved_task_from(&app, json!({"prompt": "first"})).await;
        wait_for(&app, &first, "implementation").await;
        let second = approved_task_from(&app, json!({"prompt": "second"})).await;
        wait_for(&app, &second, "implementation_queued").await;
        wait_for(&app, &first, "implementation_review").await;
        wait_for(&app, &second, "implementation_review").await;
        let dispatches = runtime.dispatches();
        assert_eq!(dispatches.len(), 2);
        assert!(dispatches[1].started_at_ms >= dispatches[0].ended_at_ms.unwrap(), "the second instance waited for the first");
    }
}
