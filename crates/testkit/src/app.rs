//! A real spectask server per test.

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::Value;
use spectask_server::{ApiSettings, Server};
use spectask_store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::TestDatabase;

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
        crate::init_test_logging();
        let store = db.store().await;
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), store.clone(), settings)
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

    /// Sends raw bytes (for malformed bodies).
    pub async fn send_raw(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Response {
        let request = self
            .client
            .request(method, self.url(path))
            .header("content-type", "application/json");
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
