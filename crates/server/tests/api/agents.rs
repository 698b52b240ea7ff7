//! `/agents`: the profiles the server can run with their programs as found on the server, the
//! default agent and the planners; the check of a profile, which runs our test agent's
//! `initialize` handshake under the shim and stops it with its whole tree. Runs on SQLite and
//! PostgreSQL.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime, PermissionPolicy};
use spectask_testkit::{TREE_VAR, agent_tree, backend_tests, fast_engine, test_agent_profile};

use crate::support::{app_with_runtime, log_in, requests, with_method};

/// A program no test machine has.
const MISSING: &str = "spectask-no-such-agent-program";

/// The profile named `name` in a listing.
fn agent<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|agent| agent["name"] == name)
        .unwrap_or_else(|| panic!("no agent {name} in {list}"))
}

/// A runtime with the test agent (the default, running `script`, tagged with `marker`), a
/// profile whose program is missing, and the built-in codex preset.
fn runtime(script: &Value, state: &std::path::Path, marker: &str) -> Option<AcpRuntime> {
    let profile = test_agent_profile("test-agent", script, state)?
        .with_env("SPECTASK_TEST_AGENT_LOG", log_in(state).to_str().unwrap())
        .with_env("SECRET_TOKEN", "do-not-show-me")
        .with_env(TREE_VAR, marker)
        .with_policy(PermissionPolicy::Ask);
    let missing = AcpProfile::new("missing", MISSING, ["--acp"]);
    Some(AcpRuntime::new(
        vec![
            profile,
            missing,
            spectask_runtimes::agent::acp::profiles::codex_acp(),
        ],
        Some("test-agent".to_owned()),
        spectask_testkit::agent_shim(&state.join("run")),
    ))
}

backend_tests! {
    async fn the_listing_shows_each_profile_with_its_program_and_the_default(db) {
        let state = tempfile::tempdir().unwrap();
        let Some(runtime) = runtime(&json!({}), state.path(), "listing") else { return };
        let (app, _planner) = app_with_runtime(db, Arc::new(runtime), fast_engine(), "").await;

        let list = app.get("/api/v1/agents").await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.body);
        let list = list.body;
        assert_eq!((&list["default_agent"], &list["default_agent_source"]), (&json!("test-agent"), &json!("configured")));
        let test_agent = agent(&list, "test-agent");
        let binary = spectask_testkit::acp_test_agent_binary().unwrap();
        assert_eq!(test_agent["command"], json!(binary.to_str().unwrap()));
        assert_eq!(
            (&test_agent["source"], &test_agent["available"], &test_agent["path"], &test_agent["default"]),
            (&json!("configured"), &json!(true), &json!(binary.to_str().unwrap()), &json!(true))
        );
        assert_eq!((&test_agent["permission_policy"], &test_agent["sandbox"]), (&json!("ask"), &json!("best_effort")));
        let missing = agent(&list, "missing");
        assert_eq!(
            (&missing["available"], &missing["path"], &missing["args"], &missing["default"]),
            (&json!(false), &Value::Null, &json!(["--acp"]), &json!(false))
        );
        let codex = agent(&list, "codex-acp");
        assert_eq!((&codex["source"], &codex["command"]), (&json!("preset"), &json!("codex-acp")));
        // The planners: the test server's default planner, no named profiles.
        assert_eq!((&list["planners"], &list["default_planner"]), (&json!([]), &json!({"model": "fake-planner"})));
        // No profile's environment is shown.
        let text = list.to_string();
        assert!(!text.contains("do-not-show-me") && !text.contains("SECRET_TOKEN"), "{text}");
    }

    async fn a_check_runs_the_handshake_and_leaves_no_process(db) {
        let state = tempfile::tempdir().unwrap();
        let script = json!({"auth": {"methods": ["api-key"]}});
        let Some(runtime) = runtime(&script, state.path(), "check-ok") else { return };
        let (app, _planner) = app_with_runtime(db, Arc::new(runtime), fast_engine(), "").await;

        let check = app.post("/api/v1/agents/test-agent/check", &json!({})).await;
        assert_eq!(check.status, StatusCode::OK, "{}", check.body);
        let check = check.body;
        assert_eq!((&check["name"], &check["ok"], &check["error"]), (&json!("test-agent"), &json!(true), &Value::Null), "{check}");
        assert_eq!(check["protocol_version"], json!(1));
        assert_eq!(check["agent_info"]["name"], json!("spectask-acp-test-agent"));
        assert_eq!(check["capabilities"]["mcp"], json!({"http": true, "sse": false}));
        assert_eq!(check["auth_methods"], json!([{"id": "api-key", "name": "api-key", "description": null}]));
        assert!(check["duration_ms"].is_u64(), "{check}");

        // One agent process answered `initialize` and nothing else, and it is gone with its tree.
        let requests = requests(&log_in(state.path()));
        assert_eq!(with_method(&requests, "initialize").len(), 1, "{requests:?}");
        assert!(with_method(&requests, "session/new").is_empty(), "{requests:?}");
        assert_eq!(agent_tree("check-ok"), Vec::new());
    }

    async fn a_failed_check_is_a_negative_result_and_an_unknown_agent_is_not_found(db) {
        let state = tempfile::tempdir().unwrap();
        let Some(runtime) = runtime(&json!({"crash_on_start": 1}), state.path(), "check-bad") else { return };
        let (app, _planner) = app_with_runtime(db, Arc::new(runtime), fast_engine(), "").await;

        let missing = app.post("/api/v1/agents/missing/check", &json!({})).await;
        assert_eq!(missing.status, StatusCode::OK, "{}", missing.body);
        assert_eq!((&missing.body["ok"], &missing.body["protocol_version"], &missing.body["capabilities"]), (&json!(false), &Value::Null, &Value::Null));
        let error = missing.body["error"].as_str().unwrap();
        assert!(error.contains(MISSING) && error.contains("not found"), "{error}");

        // An agent that exits before it answers.
        let crashed = app.post("/api/v1/agents/test-agent/check", &json!({})).await;
        assert_eq!(crashed.status, StatusCode::OK, "{}", crashed.body);
        assert_eq!(crashed.body["ok"], json!(false), "{}", crashed.body);
        assert!(crashed.body["error"].as_str().is_some_and(|e| e.contains("exited during the handshake")), "{}", crashed.body);
        assert_eq!(agent_tree("check-bad"), Vec::new());
        // The next start answers (the script crashes only the first).
        let passed = app.post("/api/v1/agents/test-agent/check", &json!({})).await;
        assert_eq!(passed.body["ok"], json!(true), "{}", passed.body);

        let unknown = app.post("/api/v1/agents/nobody/check", &json!({})).await;
        assert_eq!((unknown.status, unknown.error_code()), (StatusCode::NOT_FOUND, "not_found"));
    }
}
