//! The ACP runtime against a real ACP agent process: the scripted `spectask-acp-test-agent`
//! binary (crate `crates/acp-test-agent`), found next to this test executable. Its script, state
//! directory and request log are passed through the profile's environment, which also shows that
//! profile variables reach the agent through the allow-list.
//!
//! When the binary has not been built into this target directory (`cargo test -p
//! spectask-runtimes` alone does not build other packages' binaries; `cargo test --workspace`
//! does), each scenario prints `SKIPPED (no test agent)` and passes, rather than being ignored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use spectask_runtimes::agent::acp::{
    AcpProfile, AcpRuntime, PermissionPolicy, SupervisionSettings,
};
use spectask_runtimes::agent::sandbox::SandboxSettings;
use spectask_runtimes::agent::shim::AgentShim;
use spectask_runtimes::agent::{
    AgentError, AgentEvent, AgentRuntime, AgentToolServer, InstanceSpec, McpEndpoint, StopReason,
    TurnRequest,
};
use spectask_test_doubles::ids::{
    instance_id, planning_session, thread_id, work_session, work_session_id,
};
use tokio::sync::mpsc;

const LONG: Duration = Duration::from_secs(30);

/// A binary built into this target directory: `<target>/<profile>/<name>`, the test executable
/// being `<target>/<profile>/deps/acp-<hash>`.
fn target_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join(name);
    path.is_file().then_some(path)
}

/// The test agent and the `spectask` binary (every agent runs under its `agent-shim`).
fn agent_binaries() -> Option<Binaries> {
    Some(Binaries {
        agent: target_binary("spectask-acp-test-agent")?,
        shim: target_binary("spectask")?,
    })
}

#[derive(Debug, Clone)]
struct Binaries {
    agent: PathBuf,
    shim: PathBuf,
}

macro_rules! require_agent {
    () => {
        match agent_binaries() {
            Some(binaries) => binaries,
            None => {
                eprintln!(
                    "SKIPPED (no test agent): build `spectask-acp-test-agent` and `spectask` into this target directory"
                );
                return;
            }
        }
    };
}

/// A temporary directory holding a workspace, the agent's state, its request log and the shims'
/// run directory.
struct Fixture {
    dir: tempfile::TempDir,
    agent: PathBuf,
    shim: PathBuf,
}

impl Fixture {
    fn new(binaries: Binaries) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        Self {
            dir,
            agent: binaries.agent,
            shim: binaries.shim,
        }
    }

    /// The supervisor every agent of these tests runs under.
    fn shim(&self) -> AgentShim {
        AgentShim {
            program: self.shim.clone(),
            run_dir: self.run_dir(),
        }
    }

    fn run_dir(&self) -> PathBuf {
        self.root().join("run")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    fn workspace(&self) -> PathBuf {
        self.root().join("ws")
    }

    /// In the state directory, which the sandbox leaves writable.
    fn log_path(&self) -> PathBuf {
        self.root().join("state/requests.jsonl")
    }

    fn profile(&self, name: &str, script: &Value) -> AcpProfile {
        AcpProfile::new(name, self.agent.to_str().unwrap(), Vec::<String>::new())
            .with_env("SPECTASK_TEST_AGENT_SCRIPT", script.to_string())
            .with_env(
                "SPECTASK_TEST_AGENT_STATE",
                self.root().join("state").to_str().unwrap(),
            )
            .with_env("SPECTASK_TEST_AGENT_LOG", self.log_path().to_str().unwrap())
            .with_sandbox(SandboxSettings::default().with_state(
                [self.root().join("state").to_str().unwrap()],
                Vec::<String>::new(),
            ))
    }

    fn spec(&self, instance: &str, agent: Option<&str>) -> InstanceSpec {
        InstanceSpec {
            instance_id: instance_id(instance),
            spec_task_id: "spt_test".to_owned(),
            workspace: Some(self.workspace()),
            agent: agent.map(str::to_owned),
            config: Value::Null,
        }
    }

    /// `(method, ts_ms)` of every request the agent logged.
    fn request_times(&self) -> Vec<(String, u64)> {
        let Ok(text) = std::fs::read_to_string(self.log_path()) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap();
                (
                    value["method"].as_str().unwrap().to_owned(),
                    value["ts_ms"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// `(method, session_id, pid)` of every request the agent logged.
    fn requests(&self) -> Vec<(String, Option<String>, u64)> {
        let Ok(text) = std::fs::read_to_string(self.log_path()) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap();
                (
                    value["method"].as_str().unwrap().to_owned(),
                    value["session_id"].as_str().map(str::to_owned),
                    value["pid"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

fn request(instance: &str, thread: &str, turn_id: &str, prompt: &str) -> TurnRequest {
    TurnRequest {
        instance_id: instance_id(instance),
        thread_id: thread_id(thread),
        turn_id: turn_id.to_owned(),
        prompt: prompt.to_owned(),
    }
}

/// Runs a turn to its end, collecting its events through a small channel (so the runtime meets
/// backpressure).
async fn turn(
    runtime: &AcpRuntime,
    request: &TurnRequest,
) -> (Result<StopReason, AgentError>, Vec<AgentEvent>) {
    let (tx, mut rx) = mpsc::channel(8);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    });
    let result = tokio::time::timeout(LONG, runtime.run_turn(request, tx))
        .await
        .expect("the turn ended");
    (result, collector.await.unwrap())
}

fn chunks(events: &[AgentEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::MessageChunk(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn tool_calls(events: &[AgentEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::ToolCall(call) => Some((call.title.clone(), call.status.clone())),
            _ => None,
        })
        .collect()
}

async fn started(runtime: &AcpRuntime, fixture: &Fixture, instance: &str) -> String {
    tokio::time::timeout(LONG, runtime.ensure_instance(&fixture.spec(instance, None)))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(
        LONG,
        runtime.create_thread(&instance_id(instance), &work_session("stws_1")),
    )
    .await
    .unwrap()
    .unwrap()
    .into_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_streams_thoughts_and_chunks_in_order_and_ends() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"steps": [
        {"kind": "thought", "text": "thinking"},
        {"kind": "chunks", "count": 3},
        {"kind": "flood", "updates": 2000}
    ]});
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &script)],
        Some("test".into()),
        fixture.shim(),
    );
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
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &script)],
        Some("test".into()),
        fixture.shim(),
    );
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
            .create_thread(&instance_id(&instance), &work_session("stws_1"))
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
    let runtime = std::sync::Arc::new(AcpRuntime::new(
        vec![fixture.profile("test", &script)],
        Some("test".into()),
        fixture.shim(),
    ));
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
async fn a_crash_mid_turn_disconnects_and_a_restart_loads_the_same_session() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [{"prompt_contains": "crash", "times": 1,
                   "steps": [{"kind": "chunks", "count": 2}, {"kind": "crash", "exit_code": 3}]}]
    });
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &script)],
        Some("test".into()),
        fixture.shim(),
    );
    let thread = started(&runtime, &fixture, "i1").await;
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_1", "hello")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));

    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_2", "crash now")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    assert_eq!(
        chunks(&events),
        vec!["chunk 1/2\n".to_owned(), "chunk 2/2\n".to_owned()],
        "what the agent sent before dying is delivered"
    );
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_3", "hello")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );

    // Restart: the thread must be resumed before use, and resuming loads the same session.
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_4", "hello")).await;
    assert_eq!(result, Err(AgentError::UnknownThread(thread.clone())));
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("ws1"),
            &thread_id(&thread),
        )
        .await
        .unwrap();
    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_5", "crash again")).await;
    assert_eq!(result, Ok(StopReason::EndTurn), "the crash rule fired once");
    assert_eq!(chunks(&events), vec!["chunk 1/1\n".to_owned()]);

    let requests = fixture.requests();
    let news: Vec<_> = requests
        .iter()
        .filter(|(m, _, _)| m == "session/new")
        .collect();
    let loads: Vec<_> = requests
        .iter()
        .filter(|(m, _, _)| m == "session/load")
        .collect();
    assert_eq!(news.len(), 1, "never a second session");
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].1.as_deref(), Some(thread.as_str()));
    assert_ne!(news[0].2, loads[0].2, "loaded by the restarted process");
    // A thread this agent never had cannot be resumed.
    assert!(matches!(
        runtime
            .resume_thread(
                &instance_id("i1"),
                &work_session("ws1"),
                &thread_id("no-such-session")
            )
            .await,
        Err(AgentError::UnknownThread(_))
    ));
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_load_session_a_restarted_instance_cannot_resume() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"load_session": false, "steps": [{"kind": "chunks", "count": 1}]});
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &script)],
        Some("test".into()),
        fixture.shim(),
    );
    let thread = started(&runtime, &fixture, "i1").await;
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("ws1"),
            &thread_id(&thread),
        )
        .await
        .unwrap();
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    assert_eq!(
        runtime
            .resume_thread(
                &instance_id("i1"),
                &work_session("ws1"),
                &thread_id(&thread)
            )
            .await,
        Err(AgentError::UnknownThread(thread.clone()))
    );
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
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
            .create_thread(&instance_id("i1"), &work_session("stws_1"))
            .await,
        Err(AgentError::UnknownInstance(_))
    ));
}

/// Whether `pid` is still a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            // The state follows the parenthesised command name.
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

async fn gone(pid: u32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_drop_terminate_the_whole_process_group() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"steps": [{"kind": "chunks", "count": 1}]});
    let mut profile = fixture.profile("sh", &script);
    profile.command = "/bin/sh".to_owned();
    // A launcher that leaves a grandchild behind, as `npx` does.
    profile.args = vec![
        "-c".to_owned(),
        r#"sleep 300 & echo $! >> "$PIDS"; exec "$AGENT_BIN""#.to_owned(),
    ];
    let pids = fixture.root().join("state/pids.txt");
    let profile = profile
        .with_env("PIDS", pids.to_str().unwrap())
        .with_env("AGENT_BIN", fixture.agent.to_str().unwrap());
    let read_pids = || -> Vec<u32> {
        std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|line| line.trim().parse().unwrap())
            .collect()
    };

    let runtime = AcpRuntime::new(vec![profile], Some("sh".into()), fixture.shim());
    started(&runtime, &fixture, "i1").await;
    let agent_pid = fixture.requests()[0].2 as u32;
    let sleeper = read_pids()[0];
    assert!(alive(agent_pid) && alive(sleeper));
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    assert!(gone(agent_pid).await, "the agent outlived shutdown");
    assert!(gone(sleeper).await, "the agent's child outlived shutdown");

    started(&runtime, &fixture, "i2").await;
    let sleeper = read_pids()[1];
    assert!(alive(sleeper));
    drop(runtime);
    assert!(
        gone(sleeper).await,
        "the agent's child outlived the runtime"
    );
}

/// A tool server that hands out numbered tokens and remembers whom for.
#[derive(Debug, Default)]
struct StubTools {
    issued: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl AgentToolServer for StubTools {
    async fn endpoints_for_thread(
        &self,
        instance_id: &spectask_runtimes::agent::InstanceId,
        work_session_id: &spectask_domain::WorkSessionId,
    ) -> spectask_runtimes::agent::AgentResult<Vec<McpEndpoint>> {
        let mut issued = self.issued.lock().unwrap();
        issued.push((instance_id.to_string(), work_session_id.to_string()));
        Ok(vec![McpEndpoint {
            name: "spectask".to_owned(),
            url: "http://127.0.0.1:9/mcp".to_owned(),
            headers: vec![(
                "Authorization".to_owned(),
                format!("Bearer token-{}", issued.len()),
            )],
        }])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_session_threads_get_the_tool_servers_mcp_server_on_new_and_load() {
    let fixture = Fixture::new(require_agent!());
    let tools = std::sync::Arc::new(StubTools::default());
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &json!({"steps": []}))],
        Some("test".into()),
        fixture.shim(),
    )
    .with_tool_server(tools.clone());
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    let thread = runtime
        .create_thread(&instance_id("i1"), &work_session("stws_a"))
        .await
        .unwrap()
        .into_string();
    runtime
        .create_thread(&instance_id("i1"), &planning_session("ses_planning"))
        .await
        .unwrap();
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("stws_a"),
            &thread_id(&thread),
        )
        .await
        .unwrap();
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();

    let logged: Vec<(String, Value)> = std::fs::read_to_string(fixture.log_path())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|r| r["method"] == "session/new" || r["method"] == "session/load")
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["mcp_servers"].clone(),
            )
        })
        .collect();
    let ours = json!(["spectask http://127.0.0.1:9/mcp [Authorization]"]);
    assert_eq!(
        logged,
        vec![
            ("session/new".to_owned(), ours.clone()),
            ("session/new".to_owned(), Value::Null),
            ("session/load".to_owned(), ours),
        ],
        "work-session threads get the server (with its header), planning threads none"
    );
    assert_eq!(
        *tools.issued.lock().unwrap(),
        vec![
            (
                instance_id("i1").to_string(),
                work_session_id("stws_a").to_string()
            ),
            (
                instance_id("i1").to_string(),
                work_session_id("stws_a").to_string()
            )
        ],
        "a fresh token for every set-up of a work session's thread"
    );
}

/// Supervision fast enough for tests.
fn quick_supervision() -> SupervisionSettings {
    SupervisionSettings {
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(500),
        cancel_timeout: Duration::from_millis(500),
        restart_backoff_initial: Duration::from_millis(100),
        restart_backoff_max: Duration::from_millis(400),
        stable_after: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_is_probed_killed_restarted_and_its_session_loaded_again() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({
        "steps": [{"kind": "chunks", "count": 1}],
        "rules": [{"prompt_contains": "freeze", "times": 1,
                   "steps": [{"kind": "chunks", "count": 1}, {"kind": "freeze"}]}]
    });
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &script)],
        Some("test".into()),
        fixture.shim(),
    )
    .with_supervision(quick_supervision());
    let thread = started(&runtime, &fixture, "i1").await;
    // Several probe intervals of a healthy, idle agent: probes are answered, nothing is lost.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(runtime.take_lost_instances(), vec![]);
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_1", "hello")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    let first_pid = fixture.requests()[0].2 as u32;

    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_2", "freeze now")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    assert_eq!(chunks(&events), vec!["chunk 1/1\n".to_owned()]);
    assert!(gone(first_pid).await, "the frozen agent was not killed");
    let losses = runtime.take_lost_instances();
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].instance_id, instance_id("i1"));
    assert!(losses[0].reason.contains("stopped answering"), "{losses:?}");
    assert!(!runtime.thread_is_live(&instance_id("i1"), &thread_id(&thread)));

    runtime
        .ensure_instance(&fixture.spec("i1", None))
        .await
        .unwrap();
    runtime
        .resume_thread(
            &instance_id("i1"),
            &work_session("stws_1"),
            &thread_id(&thread),
        )
        .await
        .unwrap();
    assert!(runtime.thread_is_live(&instance_id("i1"), &thread_id(&thread)));
    let (result, events) = turn(&runtime, &request("i1", &thread, "turn_3", "freeze again")).await;
    assert_eq!(
        result,
        Ok(StopReason::EndTurn),
        "the freeze rule fired once"
    );
    assert_eq!(chunks(&events), vec!["chunk 1/1\n".to_owned()]);
    let requests = fixture.requests();
    let loads: Vec<_> = requests
        .iter()
        .filter(|(m, _, _)| m == "session/load")
        .collect();
    assert_eq!(loads.len(), 1);
    assert_eq!(
        loads[0].1.as_deref(),
        Some(thread.as_str()),
        "the same session"
    );
    assert_ne!(
        loads[0].2,
        u64::from(first_pid),
        "loaded by the new process"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|(m, _, _)| m == "session/new")
            .count(),
        1,
        "never a second session"
    );
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    assert_eq!(
        runtime.take_lost_instances(),
        vec![],
        "a shutdown is not a loss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_the_agent_never_answers_declares_it_hung() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"steps": [{"kind": "chunks", "count": 1}, {"kind": "freeze"}]});
    let settings = SupervisionSettings {
        // Only the unanswered cancel can notice the freeze.
        probe_interval: Duration::from_secs(600),
        ..quick_supervision()
    };
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &script)],
        Some("test".into()),
        fixture.shim(),
    )
    .with_supervision(settings);
    let thread = started(&runtime, &fixture, "i1").await;
    let (tx, mut rx) = mpsc::channel(8);
    let go = request("i1", &thread, "turn_1", "go");
    let run = runtime.run_turn(&go, tx);
    tokio::pin!(run);
    tokio::select! {
        event = rx.recv() => assert_eq!(event, Some(AgentEvent::MessageChunk("chunk 1/1\n".to_owned()))),
        result = &mut run => panic!("the turn ended early: {result:?}"),
    }
    // Give the agent time to stop itself after the chunk.
    tokio::time::sleep(Duration::from_millis(300)).await;
    runtime
        .cancel_turn(&instance_id("i1"), &thread_id(&thread))
        .await
        .unwrap();
    let result = tokio::time::timeout(LONG, run)
        .await
        .expect("the turn ended");
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    let losses = runtime.take_lost_instances();
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert!(losses[0].reason.contains("cancelled prompt"), "{losses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_back_off_exponentially_up_to_a_cap() {
    let fixture = Fixture::new(require_agent!());
    let script = json!({"crash_on_start": 6, "steps": [{"kind": "chunks", "count": 1}]});
    let runtime = AcpRuntime::new(
        vec![fixture.profile("test", &script)],
        Some("test".into()),
        fixture.shim(),
    )
    .with_supervision(quick_supervision());
    let spec = fixture.spec("i1", None);
    for attempt in 1..=6 {
        let result = tokio::time::timeout(LONG, runtime.ensure_instance(&spec))
            .await
            .unwrap();
        assert!(result.is_err(), "start {attempt} should have crashed");
    }
    tokio::time::timeout(LONG, runtime.ensure_instance(&spec))
        .await
        .unwrap()
        .unwrap();
    let thread = runtime
        .create_thread(&instance_id("i1"), &work_session("stws_1"))
        .await
        .unwrap()
        .into_string();
    let (result, _) = turn(&runtime, &request("i1", &thread, "turn_1", "hello")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));

    let starts: Vec<u64> = fixture
        .request_times()
        .into_iter()
        .filter(|(method, _)| method == "initialize")
        .map(|(_, ts)| ts)
        .collect();
    assert_eq!(starts.len(), 7);
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 100 ms doubling, capped at 400 ms: 100, 200, 400, 400, 400, 400 at least.
    for (gap, least) in gaps.iter().zip([100, 200, 400, 400, 400, 400]) {
        assert!(*gap >= least, "gaps {gaps:?}");
    }
    // Uncapped, the last delay would be 3.2 s.
    assert!(gaps[5] < 3000, "the delay is not capped: {gaps:?}");
    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
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
        .create_thread(&instance_id("i-keyed"), &work_session("stws_1"))
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
            .create_thread(&instance_id("i-keyless"), &work_session("stws_1"))
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

/// A command the agent runs in the background that leaves three sleepers behind: one in a session
/// of its own (`setsid`), one immune to hangups (`nohup`), one plain, all orphaned at once (the
/// shell exits), the way an agent's Bash commands leave processes.
const ESCAPEES: &str = "setsid sleep 600 >/dev/null 2>&1 & nohup sleep 600 >/dev/null 2>&1 & sleep 600 >/dev/null 2>&1 &";

/// The variable that tags every process of one test's agent tree (descendants inherit it).
const TREE_VAR: &str = "SPECTASK_TEST_TREE";

/// Live processes whose environment holds `TREE_VAR=marker`, with their command names.
fn tree(marker: &str) -> Vec<(u32, String)> {
    let entry = format!("{TREE_VAR}={marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|item| item == entry.as_bytes())
            })
        })
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, comm.trim().to_owned())
        })
        .collect()
}

/// Waits (polling, 30 s at most) until `done` holds for the tree tagged `marker`.
async fn wait_for_tree(marker: &str, what: &str, done: impl Fn(&[(u32, String)]) -> bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let processes = tree(marker);
        if done(&processes) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}; the tree is {processes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sleepers(processes: &[(u32, String)]) -> usize {
    processes.iter().filter(|(_, comm)| comm == "sleep").count()
}

/// The test agent with `steps`, its tree tagged with a marker unique to the fixture.
fn tree_profile(fixture: &Fixture, steps: &Value) -> (AcpProfile, String) {
    let marker = fixture.root().to_string_lossy().into_owned();
    let profile = fixture
        .profile("test", &json!({ "steps": steps }))
        .with_env(TREE_VAR, &marker);
    (profile, marker)
}

/// Starts an instance whose first turn leaves the escapees running, and waits until they run.
async fn tree_with_escapees(fixture: &Fixture, then: Value) -> (AcpRuntime, String, String) {
    let steps = json!([
        {"kind": "run_command", "command": ESCAPEES, "ask_permission": false, "background": true},
        {"kind": "chunks", "count": 1},
        then,
    ]);
    let (profile, marker) = tree_profile(fixture, &steps);
    let runtime = AcpRuntime::new(vec![profile], Some("test".into()), fixture.shim());
    let thread = started(&runtime, fixture, "i1").await;
    (runtime, thread, marker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_shutdown_leaves_no_process_of_the_agents_tree() {
    let fixture = Fixture::new(require_agent!());
    let (runtime, thread, marker) = tree_with_escapees(&fixture, json!({"kind": "stop"})).await;
    let (result, _) = turn(&runtime, &request("i1", &thread, "t", "go")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    wait_for_tree(&marker, "the escapees never ran", |tree| {
        sleepers(tree) == 3
    })
    .await;

    runtime.shutdown_instance(&instance_id("i1")).await.unwrap();
    wait_for_tree(
        &marker,
        "processes of the agent's tree outlived its shutdown",
        <[_]>::is_empty,
    )
    .await;
    let records: Vec<_> = std::fs::read_dir(fixture.run_dir()).unwrap().collect();
    assert!(records.is_empty(), "the shim left its record: {records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_tree_goes_when_the_agent_exits() {
    let fixture = Fixture::new(require_agent!());
    let (runtime, thread, marker) =
        tree_with_escapees(&fixture, json!({"kind": "crash", "exit_code": 3})).await;
    let (result, _) = turn(&runtime, &request("i1", &thread, "t", "go")).await;
    assert!(
        matches!(result, Err(AgentError::Disconnected(_))),
        "{result:?}"
    );
    wait_for_tree(
        &marker,
        "processes of the agent's tree outlived the agent",
        <[_]>::is_empty,
    )
    .await;
    assert_eq!(runtime.take_lost_instances().len(), 1);
}

/// The shim run by hand, as the server runs it: it exits as its agent did (code or signal), and
/// removes its record.
#[test]
fn the_shim_exits_with_its_agents_status() {
    let Some(binaries) = agent_binaries() else {
        eprintln!("SKIPPED (no agent shim): build `spectask` into this target directory");
        return;
    };
    let fixture = Fixture::new(binaries);
    let run = |script: &str| {
        let plan = json!({
            "instance_id": "i1",
            "server_pid": std::process::id(),
            "run_dir": fixture.run_dir(),
            "grace_ms": 2000,
        });
        std::process::Command::new(&fixture.shim)
            .args([
                "agent-shim",
                "--plan",
                &plan.to_string(),
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .status()
            .unwrap()
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(run("exit 3").code(), Some(3));
    assert_eq!(run("kill -TERM $$").signal(), Some(15));
    assert_eq!(std::fs::read_dir(fixture.run_dir()).unwrap().count(), 0);
    let bad = std::process::Command::new(&fixture.shim)
        .args(["agent-shim", "--plan", "{}", "--", "/bin/true"])
        .status()
        .unwrap();
    assert_eq!(bad.code(), Some(2), "an unusable plan is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_kills_what_a_killed_shim_left_behind() {
    let fixture = Fixture::new(require_agent!());
    let (runtime, thread, marker) = tree_with_escapees(&fixture, json!({"kind": "stop"})).await;
    let (result, _) = turn(&runtime, &request("i1", &thread, "t", "go")).await;
    assert_eq!(result, Ok(StopReason::EndTurn));
    wait_for_tree(&marker, "the escapees never ran", |tree| {
        sleepers(tree) == 3
    })
    .await;

    // The one thing the shim cannot survive to clean up after.
    let records: Vec<PathBuf> = std::fs::read_dir(fixture.run_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let record: Value = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    let shim = record["shim_pid"].as_i64().unwrap();
    assert!(tree(&marker).iter().any(|(pid, _)| i64::from(*pid) == shim));
    std::process::Command::new("kill")
        .args(["-KILL", &shim.to_string()])
        .status()
        .unwrap();
    wait_for_tree(&marker, "the agent outlived its killed shim", |tree| {
        tree.iter().all(|(_, comm)| comm == "sleep")
    })
    .await;
    assert_eq!(
        sleepers(&tree(&marker)),
        3,
        "nothing else killed the escapees"
    );

    let report = spectask_runtimes::agent::shim::reap(&fixture.run_dir()).unwrap();
    assert_eq!(report.records, 1);
    assert!(report.killed >= 3, "{report:?}");
    wait_for_tree(
        &marker,
        "the reaper left processes of the tree",
        <[_]>::is_empty,
    )
    .await;
    assert_eq!(std::fs::read_dir(fixture.run_dir()).unwrap().count(), 0);
    drop(runtime);
}
