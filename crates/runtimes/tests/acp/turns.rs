//! Turns against the scripted agent: streaming, file access, permissions, cancellation, the
//! environment the agent gets, authentication and misconfiguration.

use std::path::Path;

use serde_json::json;
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime, PermissionPolicy};
use spectask_runtimes::agent::{AgentError, AgentEvent, AgentRuntime, StopReason};
use spectask_test_doubles::ids::{instance_id, thread_id, work_session};
use tokio::sync::mpsc;

use crate::support::{Fixture, LONG, chunks, request, require_agent, started, tool_calls, turn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_streams_thoughts_and_chunks_in_order_and_ends() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"steps": [
        {"kind": "thought", "text": "thinking"},
        {"kind": "chunks", "count": 3},
        {"kind": "flood", "updates": 2000}
    ]});
    let runtime = fixture.runtime(&script);
    let thread = started(&runtime, &fixture, "i1").await;

    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_1", "hello")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    assert_eq!(events[0], AgentEvent::Thought("thinking".to_owned()));
    let mut expected: Vec<String> = (1..=3).map(|i| format!("chunk {i}/3\n")).collect();
    expected.extend((1..=2000).map(|i| format!("{i}\n")));
    assert_eq!(chunks(&events), expected, "every chunk, in order");

    // A running instance is reused: the thread stays loaded (a restart would unload it).
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_2", "again")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    let pids: std::collections::BTreeSet<u64> =
        fixture.requests().iter().map(|(_, _, pid)| *pid).collect();
    assert_eq!(pids.len(), 1, "one agent process");

    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    assert!(matches!(
        runtime
            .run_turn(&request("i1", &thread, "turn_3", "x"), mpsc::channel(1).0)
            .await,
        Err(AgentError::UnknownInstance(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_access_is_confined_to_the_workspace() {
    let fixture = Fixture::new(require_agent!());
    let outside = fixture.root().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, fixture.workspace().join("escape")).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
    let script = json!({"steps": [
        {"kind": "write_file", "path": "out/a.txt", "content": "hello\n"},
        {"kind": "write_file", "path": outside.join("b.txt"), "content": "nope"},
        {"kind": "write_file", "path": "escape/c.txt", "content": "nope"},
        {"kind": "write_file", "path": "../outside/d.txt", "content": "nope"},
        {"kind": "read_file", "path": "out/a.txt"},
        {"kind": "read_file", "path": outside.join("secret.txt")}
    ]});
    let runtime = fixture.runtime(&script);
    let thread = started(&runtime, &fixture, "i1").await;

    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_1", "write")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    assert_eq!(
        std::fs::read_to_string(fixture.workspace().join("out/a.txt")).unwrap(),
        "hello\n"
    );
    for name in ["b.txt", "c.txt", "d.txt"] {
        assert!(!outside.join(name).exists(), "{name} was written outside");
    }
    assert_eq!(
        chunks(&events),
        vec!["hello\n".to_owned()],
        "only the inside read"
    );
    let finals: Vec<String> = tool_calls(&events)
        .into_iter()
        .filter(|(_, status)| status == "completed" || status == "failed")
        .map(|(_, status)| status)
        .collect();
    assert_eq!(
        finals,
        [
            "completed",
            "failed",
            "failed",
            "failed",
            "completed",
            "failed"
        ]
    );
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_requests_follow_the_profile_policy() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"steps": [
        {"kind": "request_permission", "title": "Run tests"},
        {"kind": "chunks", "count": 1}
    ]});
    let policies = [
        (
            "allow",
            PermissionPolicy::AllowWorkspaceEdits,
            "chunk 1/1\n",
        ),
        (
            "deny",
            PermissionPolicy::Deny,
            "permission refused: Run tests\n",
        ),
        (
            "ask",
            PermissionPolicy::Ask,
            "permission refused: Run tests\n",
        ),
    ];
    let runtime = AcpRuntime::new(
        policies
            .iter()
            .map(|(name, policy, _)| fixture.profile(name, &script).with_policy(*policy))
            .collect(),
        None,
        fixture.shim(),
    );
    for (name, _, expected) in policies {
        let instance = format!("i-{name}");
        runtime
            .ensure_instance(&fixture.spec(&instance, Some(name)))
            .await
            .unwrap();
        let thread = runtime
            .create_thread(&instance_id(&instance), &work_session("stws_1"), None)
            .await
            .unwrap()
            .into_string();
        let (result, events) = turn(&runtime, &request(&instance, &thread, "t", "go")).await;
        assert_eq!(result, Ok(StopReason::EndTurn), "{name}");
        assert_eq!(chunks(&events), vec![expected.to_owned()], "{name}");
        runtime
            .shutdown_instance(&instance_id(&instance))
            .await
            .unwrap();
    }
    // Only the option kinds decide: an allow policy offered no allow option grants nothing.
    let only_reject = json!({"steps": [
        {"kind": "request_permission", "title": "Edit", "options": [{"id": "no", "kind": "reject_once"}]},
        {"kind": "chunks", "count": 1}
    ]});
    let runtime = AcpRuntime::new(
        vec![fixture.profile("r", &only_reject)],
        Some("r".into()),
        fixture.shim(),
    );
    let thread = started(&runtime, &fixture, "i-r").await;
    let (_, events) = turn(&runtime, &request("i-r", &thread, "t", "go")).await;
    assert_eq!(
        chunks(&events),
        vec!["permission refused: Edit\n".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_hanging_turn_with_cancelled() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({
        "steps": [{"kind": "chunks", "count": 2}],
        "rules": [{"prompt_contains": "hang", "steps": [{"kind": "chunks", "count": 1}, {"kind": "hang"}]}]
    });
    let runtime = std::sync::Arc::new(fixture.runtime(&script));
    let thread = started(&runtime, &fixture, "i1").await;
    let (tx, mut rx) = mpsc::channel(8);
    let running = {
        let runtime = runtime.clone();
        let request = request("i1", &thread, "turn_1", "hang");
        tokio::spawn(async move { runtime.run_turn(&request, tx).await })
    };
    let first = tokio::time::timeout(LONG, rx.recv()).await.unwrap();
    assert_eq!(
        first,
        Some(AgentEvent::MessageChunk("chunk 1/1\n".to_owned()))
    );
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    let result = tokio::time::timeout(LONG, running).await.unwrap().unwrap();
    assert_eq!(result, Ok(StopReason::Cancelled));
    // The thread is idle again and takes the next turn.
    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_2", "next")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    assert_eq!(chunks(&events).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_gets_only_the_allow_listed_environment_in_its_workspace() {
    let fixture = Fixture::new(require_agent!());
    // Cargo sets this for the test process; it must not reach the agent.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let dump = fixture.root().join("state/env.txt");
    let script = json!({"steps": [{"kind": "chunks", "count": 1}]});
    let mut profile = fixture.profile("sh", &script);
    profile.command = "/bin/sh".to_owned();
    profile.args = vec![
        "-c".to_owned(),
        r#"env > "$ENV_DUMP"; pwd >> "$ENV_DUMP"; exec "$AGENT_BIN""#.to_owned(),
    ];
    let profile = profile
        .with_env("ENV_DUMP", dump.to_str().unwrap())
        .with_env("AGENT_BIN", fixture.agent.to_str().unwrap());
    let runtime = AcpRuntime::new(vec![profile], Some("sh".into()), fixture.shim());
    let thread = started(&runtime, &fixture, "i1").await;
    let (result, _) = turn(&runtime, &request("i1", &thread, "t", "hi")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));

    let text = std::fs::read_to_string(&dump).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let cwd = lines.pop().unwrap();
    assert_eq!(Path::new(cwd), fixture.workspace());
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    // `PWD`, `SHLVL` and `_` are the shell's own.
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "ENV_DUMP",
        "AGENT_BIN",
        "PWD",
        "SHLVL",
        "_",
        "SPECTASK_TEST_AGENT_SCRIPT",
        "SPECTASK_TEST_AGENT_STATE",
        "SPECTASK_TEST_AGENT_LOG",
        // spectask's own: the run marker its shim gives every process of the agent's tree.
        "SPECTASK_AGENT_RUN",
        // The sandbox's private temp directory.
        "TMPDIR",
        "TMP",
        "TEMP",
    ];
    for name in &names {
        assert!(allowed.contains(name), "the agent inherited {name}");
    }
    assert!(
        names.contains(&"TMPDIR"),
        "the sandbox gives the agent a private temp directory"
    );
    let sandbox = runtime.sandbox_status(&instance_id("i1")).unwrap();
    assert!(sandbox.active, "{sandbox:?}");
    assert!(!names.contains(&"IS_SANDBOX"));
    assert!(!names.contains(&"CARGO_MANIFEST_DIR"));
    assert!(names.contains(&"PATH"));
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_is_reported_before_anything_starts() {
    let fixture = Fixture::new(require_agent!());
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &json!({}))],
        None,
        fixture.shim(),
    );
    assert!(matches!(
        runtime.ensure_instance(&fixture.spec("i1", None)).await,
        Err(AgentError::Config(_))
    ));
    assert!(matches!(
        runtime
            .ensure_instance(&fixture.spec("i1", Some("other")))
            .await,
        Err(AgentError::Config(_))
    ));
    let mut spec = fixture.spec("i1", Some("test"));
    spec.workspace = Some(fixture.root().join("missing"));
    assert!(matches!(
        runtime.ensure_instance(&spec).await,
        Err(AgentError::Config(_))
    ));
    let broken = AcpProfile::new("broken", "/nonexistent/agent", Vec::<String>::new());
    let runtime = AcpRuntime::new(vec![broken], Some("broken".into()), fixture.shim());
    assert!(
        runtime
            .ensure_instance(&fixture.spec("i1", None))
            .await
            .is_err()
    );
    assert!(matches!(
        runtime
            .create_thread(&instance_id("i1"), &work_session("stws_1"), None)
            .await,
        Err(AgentError::UnknownInstance(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_is_sent_only_when_configured_and_must_be_offered_and_succeed() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({
        "auth": {"methods": ["api-key", "oauth"], "require_env": "TEST_AGENT_TOKEN"},
        "steps": [{"kind": "chunks", "count": 1}]
    });
    let authenticates = |fixture: &Fixture| {
        fixture
            .requests()
            .iter()
            .filter(|(m, _, _)| m == "authenticate")
            .count()
    };
    let profiles = vec![
        fixture.profile("plain", &script),
        fixture
            .profile("keyed", &script)
            .with_env("TEST_AGENT_TOKEN", "secret")
            .with_authenticate("api-key"),
        fixture
            .profile("keyless", &script)
            .with_authenticate("api-key"),
        fixture
            .profile("unknown", &script)
            .with_env("TEST_AGENT_TOKEN", "secret")
            .with_authenticate("password"),
    ];
    let runtime = AcpRuntime::new(profiles, None, fixture.shim());

    runtime
        .ensure_instance(&fixture.spec("i-plain", Some("plain")))
        .await
        .unwrap();
    assert_eq!(
        authenticates(&fixture),
        0,
        "nothing sent without `authenticate`"
    );

    runtime
        .ensure_instance(&fixture.spec("i-keyed", Some("keyed")))
        .await
        .unwrap();
    assert_eq!(authenticates(&fixture), 1);
    let thread = runtime
        .create_thread(&instance_id("i-keyed"), &work_session("stws_1"), None)
        .await
        .unwrap()
        .into_string();
    let (result, _) = turn(&runtime, &request("i-keyed", &thread, "turn_1", "hi")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));

    let refused = runtime
        .ensure_instance(&fixture.spec("i-keyless", Some("keyless")))
        .await;
    match refused {
        Err(AgentError::Failed(message)) => {
            assert!(
                message.contains("`TEST_AGENT_TOKEN` is not set"),
                "{message}"
            );
            assert!(message.contains("api-key"), "{message}");
        }
        other => panic!("expected the agent's refusal, got {other:?}"),
    }
    assert_eq!(authenticates(&fixture), 2);
    assert!(matches!(
        runtime
            .create_thread(&instance_id("i-keyless"), &work_session("stws_1"), None)
            .await,
        Err(AgentError::UnknownInstance(_))
    ));

    let unknown = runtime
        .ensure_instance(&fixture.spec("i-unknown", Some("unknown")))
        .await;
    match unknown {
        Err(AgentError::Config(message)) => {
            assert!(message.contains("`password`"), "{message}");
            assert!(message.contains("api-key, oauth"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(
        authenticates(&fixture),
        2,
        "an unoffered method is never sent"
    );
    runtime
        .shutdown_instance(&instance_id("i-plain"))
        .await
        .unwrap();
    runtime
        .shutdown_instance(&instance_id("i-keyed"))
        .await
        .unwrap();
}
