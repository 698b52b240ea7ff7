//! Supervision of ACP agent instances through the whole server: an agent that freezes mid-turn
//! is found by the liveness probe, killed and restarted, and the interrupted turn runs once more
//! on the same thread (`session/load`); a crash shows every thread of the instance as
//! `disconnected` over the API until the restarted instance resumes it. Runs on SQLite and
//! PostgreSQL, with our scripted test agent as a real ACP process.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use spectask_engine::EngineSettings;
use spectask_runtimes::agent::acp::{AcpRuntime, SupervisionSettings};
use spectask_runtimes::agent::{
    AgentError, AgentEvent, AgentResult, AgentRuntime, AgentThreadId, AgentToolServer, InstanceId,
    InstanceLoss, InstanceSpec, StopReason, ThreadOwner, TurnRequest,
};
use spectask_testkit::{FakeOpenAi, TestApp, backend_tests, fast_engine, test_agent_profile};
use tokio::sync::{mpsc, watch};

use crate::support::{
    acp_runtime, app_with_runtime, approved_task, log_in, requests, wait_for_threads, with_method,
};

fn plan(tasks: &[&str]) -> String {
    let items: String = tasks
        .iter()
        .enumerate()
        .map(|(i, title)| format!("- [ ] {}. {title}\n", i + 1))
        .collect();
    format!(
        "# Requirements: Supervision\n\n1.1 WHEN the agent fails THE SYSTEM SHALL recover.\n\n## Open Questions\n\n- None.\n\n\
         # Design: Supervision\n\nRestart it.\n\n# Implementation Plan: Supervision\n\n{items}"
    )
}

/// Frequent probes, but a probe or a cancel may take seconds to be answered: an agent slowed by a
/// loaded machine is not taken for a hung one (which would be killed and restarted once more than
/// the tests expect). A frozen agent is still found within seconds.
fn supervision(restart_backoff_initial: Duration) -> SupervisionSettings {
    SupervisionSettings {
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_secs(5),
        cancel_timeout: Duration::from_secs(5),
        restart_backoff_initial,
        restart_backoff_max: Duration::from_secs(5),
        stable_after: Duration::from_secs(60),
    }
}

/// The ACP runtime, except that a turn ending with `Disconnected` is held until `release` turns
/// true: its runner has not noticed the loss yet, so only the supervisor's report can mark its
/// thread disconnected.
#[derive(Debug)]
struct HeldDisconnects {
    inner: AcpRuntime,
    release: watch::Receiver<bool>,
}

#[async_trait]
impl AgentRuntime for HeldDisconnects {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn knows_agent(&self, agent: &str) -> bool {
        self.inner.knows_agent(agent)
    }
    async fn ensure_instance(&self, spec: &InstanceSpec) -> AgentResult<()> {
        self.inner.ensure_instance(spec).await
    }
    async fn create_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        cwd: Option<&Path>,
    ) -> AgentResult<AgentThreadId> {
        self.inner.create_thread(instance_id, owner, cwd).await
    }
    async fn resume_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        thread_id: &AgentThreadId,
        cwd: Option<&Path>,
    ) -> AgentResult<()> {
        self.inner
            .resume_thread(instance_id, owner, thread_id, cwd)
            .await
    }
    fn attach_tool_server(&self, tools: Arc<dyn AgentToolServer>) {
        self.inner.attach_tool_server(tools);
    }
    async fn run_turn(
        &self,
        request: &TurnRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> AgentResult<StopReason> {
        let result = self.inner.run_turn(request, events).await;
        if matches!(result, Err(AgentError::Disconnected(_))) {
            let _ = self.release.clone().wait_for(|released| *released).await;
        }
        result
    }
    async fn cancel_turn(
        &self,
        instance_id: &InstanceId,
        thread_id: &AgentThreadId,
    ) -> AgentResult<()> {
        self.inner.cancel_turn(instance_id, thread_id).await
    }
    async fn shutdown_instance(&self, instance_id: &InstanceId) -> AgentResult<()> {
        self.inner.shutdown_instance(instance_id).await
    }
    fn take_lost_instances(&self) -> Vec<InstanceLoss> {
        self.inner.take_lost_instances()
    }
    fn thread_is_live(&self, instance_id: &InstanceId, thread_id: &AgentThreadId) -> bool {
        self.inner.thread_is_live(instance_id, thread_id)
    }
}

/// A server whose ACP runtime runs the test agent with `script`, keeping its state and request
/// log ([`log_in`]) in `state`, and the fake planner server it plans with (kept alive by the
/// caller).
async fn app_with_agent(
    db: spectask_testkit::TestDatabase,
    script: &Value,
    state: &Path,
    settings: SupervisionSettings,
    engine: EngineSettings,
    hold_disconnects: Option<watch::Receiver<bool>>,
    plan: &str,
) -> Option<(TestApp, FakeOpenAi)> {
    let profile = test_agent_profile("test-agent", script, state)?
        .with_env("SPECTASK_TEST_AGENT_LOG", log_in(state).to_str().unwrap());
    let runtime = acp_runtime(profile, state).with_supervision(settings);
    let runtime: Arc<dyn AgentRuntime> = match hold_disconnects {
        Some(release) => Arc::new(HeldDisconnects {
            inner: runtime,
            release,
        }),
        None => Arc::new(runtime),
    };
    Some(app_with_runtime(db, runtime, engine, plan).await)
}

/// Engine settings whose silence watchdog leaves the supervisor's probe to find a frozen agent.
fn engine() -> EngineSettings {
    EngineSettings {
        turn_timeout: Duration::from_secs(60),
        ..fast_engine()
    }
}

backend_tests! {
    async fn a_turn_frozen_by_the_agent_runs_once_more_on_the_same_thread_after_a_restart(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let log = log_in(state.path());
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [{"prompt_contains": "Task 1:", "times": 1,
                       "steps": [{"kind": "chunks", "count": 1}, {"kind": "freeze"}]}],
        });
        // No retry budget: the re-dispatch of an interrupted turn does not depend on it.
        let engine = EngineSettings { max_turn_retries: 0, ..engine() };
        let Some((app, _planner)) = app_with_agent(db, &script, state.path(), supervision(Duration::from_millis(100)), engine, None, &plan(&["Freeze once"])).await else {
            return;
        };
        let id = approved_task(&app, "survive the agent", workspace.path()).await;
        app.wait_for_task_status(&id, "implementation_review").await;

        let sessions = app.get(&format!("/api/v1/spec-tasks/{id}/work-sessions")).await.body;
        let ws = &sessions["work_sessions"][0];
        assert_eq!(ws["status"], "completed");
        let detail = app.get(&format!("/api/v1/work-sessions/{}", ws["id"].as_str().unwrap())).await.body;
        let interactions = detail["helix_session"]["interactions"].as_array().unwrap();
        assert_eq!(interactions.len(), 2, "one re-dispatch: {interactions:?}");
        assert_eq!(interactions[0]["response_message"], "chunk 1/1\n", "output before the freeze is kept");
        let retry = interactions[1]["prompt_message"].as_str().unwrap();
        assert!(retry.contains("did not finish") && retry.contains("disconnected"), "the re-dispatch carries a note: {retry}");
        assert_eq!(interactions[1]["response_message"], "chunk 1/1\n");

        let threads = wait_for_threads(&app, &id, "completed", |t| t.len() == 1 && t[0]["status"] == "completed").await;
        let thread_id = threads[0]["zed_thread_id"].as_str().unwrap();
        let requests = requests(&log);
        assert_eq!(with_method(&requests, "session/new").len(), 1, "never a second thread");
        let loads = with_method(&requests, "session/load");
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0]["session_id"], thread_id, "the same thread is loaded");
        let prompts = with_method(&requests, "session/prompt");
        assert_eq!(prompts.len(), 2);
        assert!(prompts.iter().all(|p| p["session_id"] == thread_id));
        assert_ne!(prompts[0]["pid"], prompts[1]["pid"], "the frozen process was replaced");
    }

    async fn threads_of_a_crashed_instance_are_disconnected_until_resumed(db) {
        let workspace = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let log = log_in(state.path());
        // Task 2 crashes the agent once, while task 1 is still streaming; task 1 streams for a
        // while on every attempt (its retry note names its assignment, "Stream"), so its thread
        // is seen active again on the restarted agent.
        let script = json!({
            "steps": [{"kind": "chunks", "count": 1}],
            "rules": [
                {"prompt_contains": "Task 2:", "times": 1, "steps": [
                    {"kind": "chunks", "count": 20, "delay_ms": 100}, {"kind": "crash", "exit_code": 9}]},
                {"prompt_contains": "Stream", "steps": [{"kind": "chunks", "count": 40, "delay_ms": 100}]},
            ],
        });
        // The turns on the crashed agent are held before they report `Disconnected`: only the
        // engine's handling of the supervisor's loss report can mark their threads.
        let (release, held) = watch::channel(false);
        let Some((app, _planner)) = app_with_agent(db, &script, state.path(), supervision(Duration::from_millis(100)), engine(), Some(held), &plan(&["Stream", "Crash"])).await else {
            return;
        };
        let id = approved_task(&app, "survive the agent", workspace.path()).await;
        let first = wait_for_threads(&app, &id, "active", |t| t.len() == 2 && t.iter().all(|t| t["status"] == "active")).await;
        let thread_ids: BTreeSet<String> = first.iter().map(|t| t["zed_thread_id"].as_str().unwrap().to_owned()).collect();

        wait_for_threads(&app, &id, "disconnected", |t| t.iter().all(|t| t["status"] == "disconnected")).await;
        release.send_replace(true);
        // Task 1's re-dispatch streams for seconds on the restarted instance: its thread is back.
        wait_for_threads(&app, &id, "active again", |t| t.iter().any(|t| t["status"] == "active")).await;
        app.wait_for_task_status(&id, "implementation_review").await;

        let last = wait_for_threads(&app, &id, "completed", |t| t.iter().all(|t| t["status"] == "completed")).await;
        let last_ids: BTreeSet<String> = last.iter().map(|t| t["zed_thread_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(last_ids, thread_ids, "the same threads, resumed");
        let requests = requests(&log);
        assert_eq!(with_method(&requests, "session/new").len(), 2);
        let loaded: BTreeSet<String> = with_method(&requests, "session/load").iter().map(|r| r["session_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(loaded, thread_ids, "both threads were loaded by the restarted agent");
        let pids: BTreeSet<u64> = requests.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
        assert_eq!(pids.len(), 2, "one restart");

        // The store recorded each thread's disconnect and reconnect as events.
        let events = app.get(&format!("/api/v1/spec-tasks/{id}/events")).await.body;
        let text = events.to_string();
        assert!(text.contains("disconnect") && text.contains("reconnect"), "{text}");
    }
}
