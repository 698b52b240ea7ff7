//! A real spectask server per test.

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::Value;
use spectask_engine::{Engine, EngineSettings, PlannerProfile, PlannerRegistry};
use spectask_runtimes::llm::LlmConfig;
use spectask_server::{ApiSettings, Server};
use spectask_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Observation, TestDatabase, wait_until};

/// How to configure a test server.
#[derive(Debug)]
pub struct TestOptions {
    pub api: ApiSettings,
    pub planners: PlannerRegistry,
    pub engine: EngineSettings,
    /// The agent runtime for implementation threads (usually a `ScriptedRuntime`).
    pub runtime: Option<std::sync::Arc<dyn spectask_runtimes::agent::AgentRuntime>>,
}

impl Default for TestOptions {
    /// No planner; a worker that polls often and leases briefly, so tests do not wait.
    fn default() -> Self {
        Self {
            api: ApiSettings::default(),
            planners: PlannerRegistry::default(),
            engine: fast_engine(),
            runtime: None,
        }
    }
}

/// Engine settings for tests: quick polls, short leases, small batches.
pub fn fast_engine() -> EngineSettings {
    EngineSettings {
        turn_lease: std::time::Duration::from_secs(2),
        poll_interval: std::time::Duration::from_millis(50),
        max_concurrent_turns: 4,
        max_turn_attempts: 10,
        replica_id: format!("test-{}", ulid::Ulid::new()),
        flush_interval: std::time::Duration::from_millis(20),
        max_parallel_threads: 4,
        max_active_instances: 8,
        turn_timeout: std::time::Duration::from_secs(5),
        max_turn_retries: 2,
        ..EngineSettings::default()
    }
}

/// An LLM configuration for a fake server: short timeouts and backoffs.
pub fn fast_llm(base_url: &str) -> LlmConfig {
    LlmConfig {
        base_url: base_url.to_owned(),
        model: "fake-planner".to_owned(),
        api_key: Some("test-key".to_owned()),
        stream: true,
        connect_timeout: std::time::Duration::from_secs(2),
        first_byte_timeout: std::time::Duration::from_secs(2),
        idle_timeout: std::time::Duration::from_secs(2),
        total_timeout: std::time::Duration::from_secs(10),
        max_attempts: 3,
        initial_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(100),
        max_retry_after: std::time::Duration::from_secs(2),
        temperature: None,
        max_tokens: None,
    }
}

/// A planner profile on a fake server with [`fast_llm`] settings.
pub fn fast_planner(name: &str, base_url: &str) -> PlannerProfile {
    PlannerProfile::new(name, fast_llm(base_url), None).expect("planner profile")
}

/// A response's status and parsed JSON body (`Value::Null` for an empty body).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Value,
}

impl Response {
    /// The `error.code` of an error body.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

/// The server under test, its store (for setting up state no endpoint creates yet) and a client.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    db: Option<TestDatabase>,
}

impl TestApp {
    pub async fn spawn(db: TestDatabase) -> Self {
        Self::spawn_with(db, ApiSettings::default()).await
    }

    pub async fn spawn_with(db: TestDatabase, settings: ApiSettings) -> Self {
        Self::spawn_with_options(
            db,
            TestOptions {
                api: settings,
                ..TestOptions::default()
            },
        )
        .await
    }

    /// A server with a default planner answering from `base_url` (a fake OpenAI server).
    pub async fn spawn_with_planner(db: TestDatabase, base_url: &str) -> Self {
        let options = TestOptions {
            planners: PlannerRegistry::new(Some(fast_planner("default", base_url)), []),
            ..TestOptions::default()
        };
        Self::spawn_with_options(db, options).await
    }

    pub async fn spawn_with_options(db: TestDatabase, options: TestOptions) -> Self {
        crate::init_test_logging();
        let store = db.store().await;
        let engine = match options.runtime {
            Some(runtime) => {
                Engine::with_runtime(store.clone(), options.planners, runtime, options.engine)
            }
            None => Engine::new(store.clone(), options.planners, options.engine),
        };
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), engine, options.api)
            .await
            .expect("bind test server");
        let addr = server.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = rx.await;
                })
                .await
                .expect("server run");
        });
        TestApp {
            addr,
            base_url: format!("http://{addr}"),
            client: reqwest::Client::new(),
            store,
            shutdown: Some(tx),
            handle: Some(handle),
            db: Some(db),
        }
    }

    /// The database this server runs on.
    pub fn db(&self) -> &TestDatabase {
        self.db.as_ref().expect("database present until stop")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    async fn read(response: reqwest::Response) -> Response {
        let status = response.status();
        let bytes = response.bytes().await.expect("read body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "non-JSON body ({status}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Response { status, body }
    }

    pub async fn get(&self, path: &str) -> Response {
        Self::read(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    /// Polls `check` (see [`wait_until`]) against this server until it finds what it waits for.
    pub async fn wait_until<'a, O, F, Fut>(&'a self, what: &str, mut check: F) -> O::Value
    where
        O: Observation,
        F: FnMut(&'a TestApp) -> Fut,
        Fut: Future<Output = O>,
    {
        wait_until(what, || check(self)).await
    }

    /// Waits until the SpecTask reaches `status` and returns it.
    pub async fn wait_for_task_status(&self, id: &str, status: &str) -> Value {
        self.wait_until(&format!("task {id} to reach {status}"), |app| async move {
            let task = app.get(&format!("/api/v1/spec-tasks/{id}")).await.body;
            if task["status"] == status {
                Ok(task)
            } else {
                Err(task)
            }
        })
        .await
    }

    pub async fn delete(&self, path: &str) -> Response {
        Self::read(
            self.client
                .delete(self.url(path))
                .send()
                .await
                .expect("DELETE"),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        Self::read(
            self.client
                .post(self.url(path))
                .json(body)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        Self::read(
            self.client
                .patch(self.url(path))
                .json(body)
                .send()
                .await
                .expect("PATCH"),
        )
        .await
    }

    /// Sends raw bytes as JSON (for malformed bodies).
    pub async fn send_raw(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Response {
        self.send_typed(method, path, "application/json", body)
            .await
    }

    /// Sends raw bytes with the given `Content-Type` (the plan parser takes `text/markdown`; the
    /// rest of the API refuses anything but JSON).
    pub async fn send_typed(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        let request = self
            .client
            .request(method, self.url(path))
            .header("content-type", content_type);
        Self::read(request.body(body).send().await.expect("raw request")).await
    }

    /// Creates a task from `prompt` and returns its JSON.
    pub async fn create_task(&self, prompt: &str) -> Value {
        let response = self
            .post(
                "/api/v1/spec-tasks/from-prompt",
                &serde_json::json!({ "prompt": prompt }),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        response.body
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> TestDatabase {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task");
        }
        self.store.close().await;
        self.db.take().expect("database present until stop")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
