//! What the server's tests share: a server whose tasks are implemented by an agent runtime and
//! planned by a fake OpenAI server, task set-ups, the test agent's request log, and the waits for
//! task, work-session, thread and permission states (one-liners over `TestApp::wait_until`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use reqwest::StatusCode;
use serde_json::{Value, json};
use spectask_engine::{EngineSettings, PermissionDesk, PlannerRegistry};
use spectask_runtimes::agent::acp::{AcpProfile, AcpRuntime};
use spectask_runtimes::agent::{AgentRuntime, PermissionAsk, PermissionBroker};
use spectask_testkit::{FakeOpenAi, TestApp, TestDatabase, TestOptions, fast_planner};

/// An ACP runtime whose only profile, `profile`, is its default, its agents running under the
/// test shim that records into `state/run`.
pub fn acp_runtime(profile: AcpProfile, state: &Path) -> AcpRuntime {
    let name = profile.name.clone();
    AcpRuntime::new(
        vec![profile],
        Some(name),
        spectask_testkit::agent_shim(&state.join("run")),
    )
}

/// A server implementing with `runtime` under `engine`, planning with a fake OpenAI server whose
/// first reply is `plan`. The fake comes back too: the caller keeps it alive (and may queue more
/// replies).
pub async fn app_with_runtime(
    db: TestDatabase,
    runtime: Arc<dyn AgentRuntime>,
    engine: EngineSettings,
    plan: &str,
) -> (TestApp, FakeOpenAi) {
    let fake = FakeOpenAi::start().await;
    fake.push_text_reply(plan);
    let options = TestOptions {
        planners: PlannerRegistry::new(Some(fast_planner("default", &fake.base_url())), []),
        engine,
        runtime: Some(runtime),
        ..TestOptions::default()
    };
    (TestApp::spawn_with_options(db, options).await, fake)
}

/// Creates a task from `prompt` in `workspace`, waits for its specs and approves them; returns
/// its id.
pub async fn approved_task(app: &TestApp, prompt: &str, workspace: &Path) -> String {
    approved_task_from(
        app,
        json!({"prompt": prompt, "project_path": workspace.to_str().unwrap()}),
    )
    .await
}

/// Creates a task from the request `body`, waits for its specs and approves them; returns its id.
pub async fn approved_task_from(app: &TestApp, body: Value) -> String {
    let task = app.post("/api/v1/spec-tasks/from-prompt", &body).await;
    assert_eq!(task.status, StatusCode::CREATED, "{}", task.body);
    let id = task.body["id"].as_str().unwrap().to_owned();
    app.wait_for_task_status(&id, "spec_review").await;
    let approved = app
        .post(
            &format!("/api/v1/spec-tasks/{id}/approve-specs"),
            &json!({"approved": true}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    id
}

/// Where the test agent logs its requests (`SPECTASK_TEST_AGENT_LOG`) in its state directory.
pub fn log_in(state: &Path) -> PathBuf {
    state.join("requests.jsonl")
}

/// The requests the test agent logged in `log`, one JSON object each (none before the first).
pub fn requests(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The requests of one ACP `method`.
pub fn with_method<'a>(requests: &'a [Value], method: &str) -> Vec<&'a Value> {
    requests.iter().filter(|r| r["method"] == method).collect()
}

/// The task's work sessions.
pub async fn work_sessions(app: &TestApp, task: &str) -> Vec<Value> {
    app.get(&format!("/api/v1/spec-tasks/{task}/work-sessions"))
        .await
        .body["work_sessions"]
        .as_array()
        .unwrap()
        .clone()
}

/// Whether a work session's name starts with `prefix` (its task key, `"2."`).
pub fn is_named(session: &Value, prefix: &str) -> bool {
    session["name"]
        .as_str()
        .is_some_and(|name| name.starts_with(prefix))
}

/// Waits for the task's work session whose name starts with `prefix`, in `status` when one is
/// given; returns it as listed.
pub async fn wait_for_session_named(
    app: &TestApp,
    task: &str,
    prefix: &str,
    status: Option<&str>,
) -> Value {
    let what = format!("work session {prefix} of {task} in {status:?}");
    app.wait_until(&what, |app| async move {
        let sessions = work_sessions(app, task).await;
        let found = sessions
            .iter()
            .find(|s| is_named(s, prefix) && status.is_none_or(|status| s["status"] == status));
        found.cloned().ok_or(Value::Array(sessions))
    })
    .await
}

/// Waits for work session `ws` to be in `status`; returns its detail.
pub async fn wait_for_session(app: &TestApp, ws: &str, status: &str) -> Value {
    let path = format!("/api/v1/work-sessions/{ws}");
    wait_for_body(app, &path, &format!("to be {status}"), |detail| {
        detail["work_session"]["status"] == status
    })
    .await
}

/// Waits until `done` holds for the body `path` answers; returns that body.
pub async fn wait_for_body(
    app: &TestApp,
    path: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let done = &done;
    app.wait_until(&format!("{path} {what}"), |app| async move {
        let body = app.get(path).await.body;
        if done(&body) { Ok(body) } else { Err(body) }
    })
    .await
}

/// Waits until `done` holds for the task's threads; returns them.
pub async fn wait_for_threads(
    app: &TestApp,
    task: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = format!("/api/v1/spec-tasks/{task}/zed-threads");
    let threads = wait_for_body(app, &path, what, |body| {
        body["zed_threads"].as_array().is_some_and(|t| done(t))
    })
    .await;
    threads["zed_threads"].as_array().unwrap().clone()
}

/// Waits for a pending permission request of work session `ws`; returns it.
pub async fn wait_for_pending_permission(app: &TestApp, ws: &str) -> Value {
    let path = format!("/api/v1/work-sessions/{ws}/permission-requests");
    let listed = wait_for_body(app, &path, "to list a pending request", |body| {
        pending(body).is_some()
    })
    .await;
    pending(&listed).unwrap().clone()
}

fn pending(listed: &Value) -> Option<&Value> {
    listed["permission_requests"]
        .as_array()?
        .iter()
        .find(|r| r["status"] == "pending")
}

/// The permission desk on the server's own store, bound once the server exists (asks before that
/// grant nothing). A desk on a store of its own would be a second SQLite writer on the file,
/// whose inserts a loaded machine can time out: the request would then never be recorded.
#[derive(Debug, Default)]
pub struct LateDesk(OnceLock<PermissionDesk>);

impl LateDesk {
    /// Binds the desk, giving humans `timeout` to answer.
    pub fn bind(&self, app: &TestApp, timeout: std::time::Duration) {
        self.0
            .set(PermissionDesk::new(app.store.clone(), timeout))
            .unwrap();
    }
}

#[async_trait::async_trait]
impl PermissionBroker for LateDesk {
    async fn ask(&self, ask: PermissionAsk) -> Option<String> {
        self.0.get()?.ask(ask).await
    }
}
