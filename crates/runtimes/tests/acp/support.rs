//! Shared set-up for the ACP runtime tests: the built binaries, a fixture directory per test,
//! profiles for the scripted test agent, and turns run to their end.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime, SupervisionSettings};
use spectask_runtimes::agent::sandbox::SandboxSettings;
use spectask_runtimes::agent::shim::AgentShim;
use spectask_runtimes::agent::{
    AgentError, AgentEvent, AgentRuntime, InstanceSpec, StopReason, TurnRequest,
};
use spectask_test_doubles::ids::{instance_id, work_session};
use spectask_test_doubles::process_tree::process_state;
use spectask_test_doubles::turns::{collect_turn, turn_request};

pub const LONG: Duration = Duration::from_secs(30);

/// A binary built into this target directory: `<target>/<profile>/<name>`, the test executable
/// being `<target>/<profile>/deps/acp-<hash>`.
fn target_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join(name);
    path.is_file().then_some(path)
}

/// The test agent and the `spectask` binary (every agent runs under its `agent-shim`).
pub fn agent_binaries() -> Option<Binaries> {
    Some(Binaries {
        agent: target_binary("spectask-acp-test-agent")?,
        shim: target_binary("spectask")?,
    })
}

#[derive(Debug, Clone)]
pub struct Binaries {
    pub agent: PathBuf,
    pub shim: PathBuf,
}

macro_rules! require_agent {
    () => {
        match $crate::support::agent_binaries() {
            Some(binaries) => binaries,
            None => {
                spectask_test_doubles::skip(
                    spectask_test_doubles::Tier::Agent,
                    "build `spectask-acp-test-agent` and `spectask` into this target directory",
                );
                return;
            }
        }
    };
}
pub(crate) use require_agent;

/// A temporary directory holding a workspace, the agent's state, its request log and the shims'
/// run directory.
pub struct Fixture {
    dir: tempfile::TempDir,
    pub agent: PathBuf,
    pub shim: PathBuf,
}

impl Fixture {
    pub fn new(binaries: Binaries) -> Self {
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
    pub fn shim(&self) -> AgentShim {
        AgentShim {
            program: self.shim.clone(),
            run_dir: self.run_dir(),
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root().join("run")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    pub fn workspace(&self) -> PathBuf {
        self.root().join("ws")
    }

    /// In the state directory, which the sandbox leaves writable.
    pub fn log_path(&self) -> PathBuf {
        self.root().join("state/requests.jsonl")
    }

    pub fn profile(&self, name: &str, script: &Value) -> AcpProfile {
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

    /// A runtime whose one profile, `test` and the default, runs the test agent with `script`.
    pub fn runtime(&self, script: &Value) -> AcpRuntime {
        AcpRuntime::new(
            vec![self.profile("test", script)],
            Some("test".into()),
            self.shim(),
        )
    }

    pub fn spec(&self, instance: &str, agent: Option<&str>) -> InstanceSpec {
        InstanceSpec {
            instance_id: instance_id(instance),
            spec_task_id: "spt_test".to_owned(),
            workspace: Some(self.workspace()),
            agent: agent.map(str::to_owned),
            config: Value::Null,
            extra_roots: Vec::new(),
        }
    }

    /// Every request the agent logged, oldest first (none before the log exists).
    pub fn logged(&self) -> Vec<Value> {
        let Ok(text) = std::fs::read_to_string(self.log_path()) else {
            return Vec::new();
        };
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `(method, ts_ms)` of every request the agent logged.
    pub fn request_times(&self) -> Vec<(String, u64)> {
        self.logged()
            .iter()
            .map(|value| {
                (
                    value["method"].as_str().unwrap().to_owned(),
                    value["ts_ms"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// `(method, session_id, pid)` of every request the agent logged.
    pub fn requests(&self) -> Vec<(String, Option<String>, u64)> {
        self.logged()
            .iter()
            .map(|value| {
                (
                    value["method"].as_str().unwrap().to_owned(),
                    value["session_id"].as_str().map(str::to_owned),
                    value["pid"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// The request for turn `turn_id` on instance `instance`, thread `thread`.
pub fn request(instance: &str, thread: &str, turn_id: &str, prompt: &str) -> TurnRequest {
    turn_request(instance, thread, turn_id, prompt)
}

/// Runs a turn to its end, collecting its events through a small channel (so the runtime meets
/// backpressure).
pub async fn turn(
    runtime: &AcpRuntime,
    request: &TurnRequest,
) -> (Result<StopReason, AgentError>, Vec<AgentEvent>) {
    collect_turn(runtime, request, 8, LONG).await
}

pub fn chunks(events: &[AgentEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::MessageChunk(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

pub fn tool_calls(events: &[AgentEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::ToolCall(call) => Some((call.title.clone(), call.status.clone())),
            _ => None,
        })
        .collect()
}

pub async fn started(runtime: &AcpRuntime, fixture: &Fixture, instance: &str) -> String {
    tokio::time::timeout(LONG, runtime.ensure_instance(&fixture.spec(instance, None)))
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(
        LONG,
        runtime.create_thread(&instance_id(instance), &work_session("stws_1"), None),
    )
    .await
    .unwrap()
    .unwrap()
    .into_string()
}

/// Supervision fast enough for tests.
pub fn quick_supervision() -> SupervisionSettings {
    SupervisionSettings {
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(500),
        cancel_timeout: Duration::from_millis(500),
        restart_backoff_initial: Duration::from_millis(100),
        restart_backoff_max: Duration::from_millis(400),
        stable_after: Duration::from_secs(30),
    }
}

/// Whether `pid` is still a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    process_state(pid).is_some()
}

/// Waits (5 s at most) until `pid` is no longer live; fails the test naming `what` otherwise.
pub async fn wait_gone(pid: u32, what: &str) {
    spectask_test_doubles::wait_until_within(what, Duration::from_secs(5), || async {
        (!alive(pid)).then_some(())
    })
    .await;
}
