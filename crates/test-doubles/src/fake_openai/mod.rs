//! `FakeOpenAi`: a loopback chat-completions server scripted per test, so the client's streaming,
//! retries and timeouts are exercised over real HTTP.
//!
//! Each request consumes the next scripted [`FakeReply`]; an empty script answers 500 so a test
//! that forgot a reply fails loudly. Every request is recorded with its body and arrival time.

mod render;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::lock;
use crate::loopback::{Loopback, shutdown_signal};

/// What the fake answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeReply {
    /// An event stream: a role-only delta, then one content delta per chunk with `delay` before
    /// each, then `finish_reason: "stop"`, usage (when asked for) and `[DONE]`.
    Stream {
        chunks: Vec<String>,
        delay: Duration,
    },
    /// One JSON response.
    Complete { content: String },
    /// A status with an optional `Retry-After` and a JSON body, e.g. 429 with
    /// `{"error":{"message":"rate limited"}}`.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Value,
    },
    /// Accepts the request and never answers (until the fake is dropped).
    Hang,
    /// Some deltas, then silence with the connection open.
    StreamThenHang { chunks: Vec<String> },
    /// Some deltas, then the connection closes without `[DONE]`.
    StreamThenDrop { chunks: Vec<String> },
    /// These exact bytes as the body of a `text/event-stream` response.
    RawSse(String),
    /// These byte pieces as a `text/event-stream` body, each flushed on its own after `delay`, so
    /// the client receives them split exactly there (e.g. inside a UTF-8 character).
    RawSseChunks {
        chunks: Vec<Vec<u8>>,
        delay: Duration,
    },
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The JSON body (a JSON string holding the raw text when it was not JSON).
    pub body: Value,
    pub authorization: Option<String>,
    pub received_at: Instant,
}

/// The scripted server. It runs on the tokio runtime that called [`FakeOpenAi::start`] and stops
/// when dropped: the listener closes and every hung reply ends.
#[derive(Debug)]
pub struct FakeOpenAi {
    shared: Arc<Shared>,
    /// Dropping it wakes every reply that hangs until shutdown.
    server: Loopback,
}

#[derive(Debug)]
struct Shared {
    script: Mutex<VecDeque<FakeReply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// The number of requests recorded, for `wait_for_requests`.
    seen: watch::Sender<usize>,
    shutdown: watch::Receiver<()>,
}

impl FakeOpenAi {
    /// Binds 127.0.0.1 on a free port and serves in the background.
    ///
    /// # Panics
    /// When no loopback port can be bound: a test cannot go on without its server.
    pub async fn start() -> Self {
        let (shutdown, stopping) = shutdown_signal();
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            seen: watch::Sender::new(0),
            shutdown: stopping,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let server = Loopback::start("fake OpenAI server", app, shutdown).await;
        Self { shared, server }
    }

    /// `http://127.0.0.1:PORT/v1`, to use as `LlmConfig::base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr())
    }

    /// Appends a reply to the script; replies are consumed in order, one per request.
    pub fn push(&self, reply: FakeReply) {
        lock(&self.shared.script).push_back(reply);
    }

    /// Scripts a streamed reply of `content` in about 16 chunks (split between characters).
    pub fn push_text_reply(&self, content: &str) {
        self.push(FakeReply::Stream {
            chunks: split_text(content, 16),
            delay: Duration::ZERO,
        });
    }

    /// Scripted replies not consumed yet.
    pub fn pending_replies(&self) -> usize {
        lock(&self.shared.script).len()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until `n` requests arrived or `timeout` passed, then returns those that arrived.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let mut seen = self.shared.seen.subscribe();
        // On timeout the caller sees fewer requests than it asked for, and asserts on that.
        let _ = tokio::time::timeout(timeout, seen.wait_for(|count| *count >= n)).await;
        self.requests()
    }
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let ask = render::Ask {
        stream: body.get("stream").and_then(Value::as_bool) == Some(true),
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("fake-model")
            .to_owned(),
    };
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&shared.requests).push(RecordedRequest {
        body,
        authorization,
        received_at: Instant::now(),
    });
    shared.seen.send_modify(|count| *count += 1);
    let reply = lock(&shared.script).pop_front();
    match reply {
        Some(reply) => render::respond(reply, &ask, shared.shutdown.clone()).await,
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"message": "fake: no scripted reply"}})),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"message": "fake: only POST /v1/chat/completions exists"}})),
    )
        .into_response()
}

/// `content` in about `parts` pieces, each cut between characters.
fn split_text(content: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = content.chars().collect();
    let size = chars.len().div_ceil(parts.max(1)).max(1);
    chars
        .chunks(size)
        .map(|piece| piece.iter().collect())
        .collect()
}
