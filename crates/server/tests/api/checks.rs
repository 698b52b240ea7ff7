//! Checks and the traceability matrix end to end (issue 18): a SpecTask whose plan names checks
//! (`_Verify:` lines), implemented by our test agent as a real process under the ACP runtime,
//! the checks run by spectask in the agent's sandbox after each turn. Task 1's check fails at
//! first (the agent has not written the file); the follow-up turn carries the failing output, the
//! agent writes the file, the check passes and the session completes. Task 2's check never
//! passes: after its rounds the session fails with the check's output as the reason, and task 3,
//! which depends on it, is blocked. The matrix over HTTP then shows every criterion with its
//! tasks, sessions, latest check runs and coverage, and the gaps as warnings. SQLite and
//! PostgreSQL. Then the independent review: a task naming a `review_agent` gets, once in
//! implementation review, a reviewer of that profile in its own process, whose verdicts over MCP
//! join the matrix.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use spectask_testkit::{backend_tests, fast_engine, test_agent_profile};

use crate::support::{
    acp_runtime, app_with_runtime, approved_task, log_in, requests, wait_for_session_named,
    with_method,
};

const SPEC: &str = "# Requirements: Greeting\n\n\
### Requirement 1: The greeting file\n\n\
#### Acceptance Criteria\n\n\
1. WHEN the project is set up THE SYSTEM SHALL have a greeting.txt\n\
2. WHEN greeting.txt exists THE SYSTEM SHALL keep it\n\n\
### Requirement 2: The build\n\n\
#### Acceptance Criteria\n\n\
1. WHEN the build runs THE SYSTEM SHALL pass\n\n\
### Requirement 3: Documentation\n\n\
#### Acceptance Criteria\n\n\
1. WHEN a user reads the README THE SYSTEM SHALL explain the greeting\n\n\
## Open Questions\n\n- None.\n\n\
# Design: Greeting\n\nOne file.\n\n\
# Implementation Plan: Greeting\n\n\
- [ ] 1. Write the greeting\n  - _Requirements: 1.1, 1.2_\n  - _Verify: test -f greeting.txt_\n\
- [ ] 2. Fix the build\n  - _Requirements: 2.1_\n  - Verify: `echo the build is broken >&2; exit 7`\n\
- [ ] 3. Ship it\n  - Depends on: 2\n  - _Requirements: 9.9_\n";

/// Turns do nothing but talk, except the follow-up about task 1's failed check, which writes the
/// file the check looks for.
fn script() -> Value {
    json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [
            {"prompt_contains": "task 1's check", "steps": [
                {"kind": "write_file", "path": "greeting.txt", "content": "hello\n"},
                {"kind": "chunks", "count": 1},
            ]},
        ],
    })
}

fn criterion<'a>(matrix: &'a Value, id: &str) -> &'a Value {
    matrix["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no criterion {id} in {matrix:#}"))
}

const REVIEWED_SPEC: &str = "# Requirements: Greeting\n\n\
### Requirement 1: The greeting file\n\n\
#### Acceptance Criteria\n\n\
1. WHEN the project is set up THE SYSTEM SHALL have a greeting.txt\n\
2. WHEN a user reads greeting.txt THE SYSTEM SHALL greet them by name\n\n\
## Open Questions\n\n- None.\n\n\
# Design: Greeting\n\nOne file.\n\n\
# Implementation Plan: Greeting\n\n\
- [ ] 1. Write the greeting\n  - _Requirements: 1.1, 1.2_\n";

fn verdict(criterion: &str, verdict: &str, reason: &str) -> Value {
    json!({"kind": "call_mcp_tool", "server": "spectask", "tool": "report_criterion_verdict",
           "arguments": {"criterion_id": criterion, "verdict": verdict, "reason": reason}})
}

backend_tests! {
    async fn a_failing_check_earns_a_follow_up_and_a_check_that_keeps_failing_fails_the_session(db) {
        let project = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let log = log_in(state.path());
        let Some(profile) = test_agent_profile("test-agent", &script(), state.path()) else { return };
        let profile = profile.with_env("SPECTASK_TEST_AGENT_LOG", log.to_str().unwrap());
        let runtime = Arc::new(acp_runtime(profile, state.path()));
        let mut engine = fast_engine();
        engine.turn_timeout = Duration::from_secs(60);
        engine.max_check_rounds = 2;
        let (app, _planner) = app_with_runtime(db, runtime, engine, SPEC).await;
        let id = approved_task(&app, "write a greeting", project.path()).await;

        let one = wait_for_session_named(&app, &id, "1.", Some("completed")).await;
        let two = wait_for_session_named(&app, &id, "2.", Some("failed")).await;
        let three = wait_for_session_named(&app, &id, "3.", Some("blocked")).await;
        assert_eq!(std::fs::read_to_string(project.path().join("greeting.txt")).unwrap(), "hello\n");

        // Task 2 failed for good, its reason the check's ending and output.
        let reason = two["error"].as_str().unwrap_or_default();
        assert!(reason.contains("checks still failing after 2 rounds"), "{reason}");
        assert!(reason.contains("exited with 7") && reason.contains("the build is broken"), "{reason}");

        // The agent got one follow-up per failed round but the last, with the failing output.
        let prompts: Vec<String> = with_method(&requests(&log), "session/prompt")
            .iter()
            .map(|r| r["prompt"].as_str().unwrap_or_default().to_owned())
            .collect();
        let follow_ups: Vec<&String> = prompts.iter().filter(|p| p.contains("check round 1 of 2")).collect();
        assert_eq!(follow_ups.len(), 2, "{prompts:#?}");
        assert!(follow_ups.iter().any(|p| p.contains("test -f greeting.txt") && p.contains("exited with 1")));
        assert!(follow_ups.iter().any(|p| p.contains("the build is broken")));

        // Every run is an event, with its round.
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events?limit=1000")).await.body;
        let mut runs: Vec<(String, i64, String)> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "check.completed")
            .map(|e| {
                let p = &e["payload"];
                (p["task_key"].as_str().unwrap().to_owned(), p["round"].as_i64().unwrap(), p["status"].as_str().unwrap().to_owned())
            })
            .collect();
        runs.sort();
        assert_eq!(runs, vec![
            ("1".to_owned(), 1, "failed".to_owned()),
            ("1".to_owned(), 2, "passed".to_owned()),
            ("2".to_owned(), 1, "failed".to_owned()),
            ("2".to_owned(), 2, "failed".to_owned()),
        ]);

        // The matrix.
        let matrix = app.get(&format!("/api/v1/spec-tasks/{id}/trace")).await;
        assert_eq!(matrix.status, reqwest::StatusCode::OK, "{}", matrix.body);
        let matrix = matrix.body;
        let ids: Vec<&str> = matrix["criteria"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["1.1", "1.2", "2.1", "3.1"]);
        for met in ["1.1", "1.2"] {
            let c = criterion(&matrix, met);
            assert_eq!(c["coverage"], "met_by_checks", "{c:#}");
            let task = &c["tasks"][0];
            assert_eq!(task["key"], "1");
            assert_eq!(task["work_session_id"], one["id"]);
            assert_eq!(task["work_session_status"], "completed");
            assert_eq!(task["checks"], json!(["test -f greeting.txt"]));
            assert_eq!(task["check_runs"][0]["round"], 2);
            assert_eq!(task["check_runs"][0]["status"], "passed");
        }
        let failing = criterion(&matrix, "2.1");
        assert_eq!(failing["coverage"], "failing");
        let run = &failing["tasks"][0]["check_runs"][0];
        assert_eq!((run["status"].as_str(), run["exit_code"].as_i64(), run["round"].as_i64()), (Some("failed"), Some(7), Some(2)));
        assert!(run["output_tail"].as_str().unwrap().contains("the build is broken"));
        assert_eq!(failing["tasks"][0]["work_session_id"], two["id"]);
        assert_eq!(criterion(&matrix, "3.1")["coverage"], "uncovered");
        // No reviewer was named: no review session, no verdicts.
        assert!(matrix["criteria"].as_array().unwrap().iter().all(|c| c["verdict"].is_null()));
        assert_eq!(matrix["untraced_tasks"], json!(["3"]));
        let warnings: Vec<(&str, Option<&str>)> = matrix["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["kind"].as_str().unwrap(), w["criterion_id"].as_str().or(w["reference"].as_str())))
            .collect();
        assert!(warnings.contains(&("uncovered_criterion", Some("3.1"))), "{warnings:?}");
        assert!(warnings.contains(&("unknown_reference", Some("9.9"))), "{warnings:?}");
        assert_eq!(matrix["coverage"], json!({
            "criteria": 4, "met_by_checks": 2, "met_by_review": 0, "failing": 1, "pending": 0, "not_checked": 0, "uncovered": 1,
        }));

        // The same summary in progress and in the task.
        let progress = app.get(&format!("/api/v1/spec-tasks/{id}/progress")).await.body;
        assert_eq!(progress["coverage"], matrix["coverage"]);
        let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
        assert_eq!(task["coverage"], matrix["coverage"]);
        assert_eq!(three["status"], "blocked");
    }

    async fn a_reviewer_of_another_profile_gives_a_verdict_per_criterion_in_its_own_process(db) {
        // A repository, so the work is committed on a task branch the reviewer gets the diff of.
        let project = spectask_testkit::TestRepo::new();
        let worktrees = tempfile::tempdir().unwrap();
        let coder_state = tempfile::tempdir().unwrap();
        let reviewer_state = tempfile::tempdir().unwrap();
        let coder_log = log_in(coder_state.path());
        let reviewer_log = log_in(reviewer_state.path());
        let coder_script = json!({"steps": [
            {"kind": "write_file", "path": "greeting.txt", "content": "hello\n"},
            {"kind": "chunks", "count": 1},
        ]});
        // The reviewer answers every criterion (one twice: the later verdict counts) and tries
        // one the requirements do not have.
        let reviewer_script = json!({"steps": [
            verdict("1.1", "unclear", "not looked yet"),
            verdict("1.1", "met", "greeting.txt exists and says hello"),
            verdict("1.2", "not_met", "the greeting names nobody"),
            verdict("9.9", "met", "made up"),
            {"kind": "chunks", "count": 1},
        ]});
        let Some(coder) = test_agent_profile("coder", &coder_script, coder_state.path()) else { return };
        let Some(reviewer) = test_agent_profile("reviewer", &reviewer_script, reviewer_state.path()) else { return };
        let coder = coder.with_env("SPECTASK_TEST_AGENT_LOG", coder_log.to_str().unwrap());
        let reviewer = reviewer.with_env("SPECTASK_TEST_AGENT_LOG", reviewer_log.to_str().unwrap());
        let runtime = Arc::new(spectask_runtimes::agent::acp::AcpRuntime::new(
            vec![coder, reviewer],
            Some("coder".to_owned()),
            spectask_testkit::agent_shim(&coder_state.path().join("run")),
        ));
        let mut engine = fast_engine();
        engine.turn_timeout = Duration::from_secs(60);
        engine.git.worktrees_dir = Some(worktrees.path().to_path_buf());
        let (app, _planner) = app_with_runtime(db, runtime, engine, REVIEWED_SPEC).await;

        // A reviewer that is no profile is refused at creation, changing nothing.
        let refused = app.post("/api/v1/spec-tasks/from-prompt", &json!({
            "prompt": "write a greeting", "project_path": project.path().to_str().unwrap(),
            "workspace_config": {"review_agent": "nobody"},
        })).await;
        assert_eq!(refused.status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("nobody"), "{}", refused.body);

        let id = crate::support::approved_task_from(&app, json!({
            "prompt": "write a greeting", "project_path": project.path().to_str().unwrap(),
            "workspace_config": {"review_agent": "reviewer"},
        })).await;
        app.wait_for_task_status(&id, "implementation_review").await;
        let review = app
            .wait_until("the review session to complete", |app| {
                let id = id.clone();
                async move {
                    let sessions = crate::support::work_sessions(app, &id).await;
                    let review = sessions.iter().find(|s| s["phase"] == "review").cloned();
                    match review {
                        Some(s) if s["status"] == "completed" => Ok(s),
                        _ => Err(Value::Array(sessions)),
                    }
                }
            })
            .await;
        assert_eq!(review["name"], "Review by reviewer");
        // The task stays in review; the reviewer ran in a process of its own profile.
        assert_eq!(app.get(&format!("/api/v1/spec-tasks/{id}")).await.body["status"], "implementation_review");
        let coder_pids: std::collections::BTreeSet<u64> = requests(&coder_log).iter().map(|r| r["pid"].as_u64().unwrap()).collect();
        let reviewer_prompts = with_method(&requests(&reviewer_log), "session/prompt").iter().map(|r| (r["pid"].as_u64().unwrap(), r["prompt"].as_str().unwrap_or_default().to_owned())).collect::<Vec<_>>();
        assert_eq!(reviewer_prompts.len(), 1, "{reviewer_prompts:?}");
        assert!(!coder_pids.contains(&reviewer_prompts[0].0), "the reviewer had its own process");
        let prompt = &reviewer_prompts[0].1;
        let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
        let branch = task["branch_name"].as_str().unwrap().to_owned();
        for needle in ["report_criterion_verdict", "`1.1`: WHEN the project is set up", "`1.2`:", "task 1 (completed)",
                       &format!("task branch `{branch}`"), "- `greeting.txt` (+1 -0)", "+hello"] {
            assert!(prompt.contains(needle), "the review prompt lacks {needle}: {prompt}");
        }

        // The verdicts join the matrix: the latest per criterion; the made-up one was refused.
        let matrix = app.get(&format!("/api/v1/spec-tasks/{id}/trace")).await.body;
        let met = criterion(&matrix, "1.1");
        assert_eq!(met["coverage"], "met_by_review", "{met:#}");
        // The work it traces to: the session's files and its commit on the task branch.
        assert_eq!(met["tasks"][0]["files"], json!(["greeting.txt"]), "{met:#}");
        assert_eq!(met["tasks"][0]["commits"].as_array().unwrap().len(), 1, "{met:#}");
        assert_eq!(met["verdict"]["verdict"], "met");
        assert_eq!(met["verdict"]["reviewer"], "reviewer");
        assert_eq!(met["verdict"]["reason"], "greeting.txt exists and says hello");
        assert_eq!(met["verdict"]["work_session_id"], review["id"]);
        let not_met = criterion(&matrix, "1.2");
        assert_eq!(not_met["coverage"], "not_checked");
        assert_eq!(not_met["verdict"]["verdict"], "not_met");
        assert_eq!(matrix["coverage"]["met_by_review"], 1);
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events?limit=1000")).await.body;
        let verdicts: Vec<&str> = events["events"].as_array().unwrap().iter()
            .filter(|e| e["kind"] == "review.verdict")
            .map(|e| e["payload"]["criterion_id"].as_str().unwrap())
            .collect();
        assert_eq!(verdicts, ["1.1", "1.1", "1.2"]);

        // Changes requested and made: the new round of implementation is reviewed again.
        let sent = app.post(&format!("/api/v1/spec-tasks/{id}/request-changes"), &json!({"comment": "greet by name"})).await;
        assert_eq!(sent.status, reqwest::StatusCode::OK, "{}", sent.body);
        app.wait_until("a second review to complete", |app| {
            let id = id.clone();
            async move {
                let sessions = crate::support::work_sessions(app, &id).await;
                let done = sessions.iter().filter(|s| s["phase"] == "review" && s["status"] == "completed").count();
                if done == 2 { Ok(()) } else { Err(Value::Array(sessions)) }
            }
        })
        .await;
        assert_eq!(with_method(&requests(&reviewer_log), "session/prompt").len(), 2);
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events?limit=1000")).await.body;
        let verdicts = events["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "review.verdict").count();
        assert_eq!(verdicts, 6);
    }
}
