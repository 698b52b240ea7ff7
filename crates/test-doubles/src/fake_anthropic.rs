//! `FakeAnthropic`: a loopback stand-in for the Anthropic Messages API, so a real third-party
//! agent (Claude Code through `claude-agent-acp`) can run whole turns offline with the model's
//! side scripted per test.
//!
//! Requests are split in two. A *model turn* is a `POST /v1/messages` that offers tools: the
//! agent's main loop, which consumes the next scripted [`AnthropicReply`]. Everything else the
//! agent sends on the side (title generation, quota probes, `count_tokens`, `HEAD /`
//! connectivity checks, unknown endpoints) gets a harmless answer and does not touch the script,
//! so a test scripts only the conversation it cares about. Every request is recorded, with its
//! path and body, so a test can read the `tool_result` blocks the agent sent back.
//!
//! Conversations run side by side (several work sessions of one agent at once) can each have a
//! script of their own: [`FakeAnthropic::push_for`] routes a reply to the model turns whose
//! messages contain a marker, such as the `Task 2:` line of a work session's assignment, which
//! every later request of that conversation repeats. Turns no route matches use the shared script.
//!
//! A reply can wait behind the fake's gate ([`AnthropicReply::AfterGate`], opened by
//! [`FakeAnthropic::open_gate`]): the request is recorded at once but answered only when the test
//! has looked at what the agent's previous tool calls did, so a test can observe the middle of a
//! turn.
//!
//! A model turn with an empty script is answered with a short text and `end_turn` (and a warning
//! in the log) rather than an error: the Anthropic SDK retries errors for minutes, which would
//! turn a missing reply into a hang instead of a failed assertion.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::lock;
use crate::loopback::{Loopback, shutdown_signal};

/// What the fake model answers to one model turn.
#[derive(Debug, Clone, PartialEq)]
pub enum AnthropicReply {
    /// Text in a few deltas, then `stop_reason: "end_turn"`.
    Text(String),
    /// Optional text, then one `tool_use` block whose input arrives as `input_json_delta`s, then
    /// `stop_reason: "tool_use"`: the agent runs the tool and sends the result in its next request.
    ToolUse {
        text: Option<String>,
        name: String,
        input: Value,
    },
    /// `message_start` and some text, then silence with the stream open, until the client goes
    /// away or the fake is dropped: a model that is still thinking, for cancel tests.
    Hang { text: String },
    /// The inner reply, sent only once [`FakeAnthropic::open_gate`] has been called: the turn is
    /// held mid-way (the request is recorded at once) while the test inspects it.
    AfterGate(Box<AnthropicReply>),
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicRequest {
    pub method: String,
    /// Path and query, e.g. `/v1/messages?beta=true`.
    pub uri: String,
    /// The JSON body (`Null` when there was none; a string when it was not JSON).
    pub body: Value,
    /// Whether it was a model turn (a `POST /v1/messages` offering tools).
    pub model_turn: bool,
}

/// The fake server; stops when dropped.
#[derive(Debug)]
pub struct FakeAnthropic {
    shared: Arc<Shared>,
    /// Dropping it ends hanging replies.
    server: Loopback,
}

#[derive(Debug)]
struct Shared {
    script: Mutex<VecDeque<AnthropicReply>>,
    /// Per-conversation scripts: `(marker, replies)`, tried in the order they were first pushed.
    routes: Mutex<Vec<(String, VecDeque<AnthropicReply>)>>,
    /// Hanging replies whose client closed the stream (an agent that aborted the request).
    hangs_closed: AtomicUsize,
    requests: Mutex<Vec<AnthropicRequest>>,
    /// The number of model turns received, for `wait_for_model_turns`.
    model_turns: watch::Sender<usize>,
    /// Makes message and tool-use ids unique within the fake.
    next_id: AtomicU64,
    /// `true` once the gate is open: replies behind it go out.
    gate: watch::Sender<bool>,
    shutdown: watch::Receiver<()>,
}

impl FakeAnthropic {
    /// Binds 127.0.0.1 on a free port and serves in the background.
    ///
    /// # Panics
    /// When no loopback port can be bound: a test cannot go on without its server.
    pub async fn start() -> Self {
        let (shutdown, stopping) = shutdown_signal();
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            routes: Mutex::new(Vec::new()),
            hangs_closed: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            model_turns: watch::Sender::new(0),
            next_id: AtomicU64::new(1),
            gate: watch::Sender::new(false),
            shutdown: stopping,
        });
        // One handler for every path: the agent probes endpoints we do not know in advance.
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = Loopback::start("fake Anthropic server", app, shutdown).await;
        Self { shared, server }
    }

    /// `http://127.0.0.1:PORT`, to use as `ANTHROPIC_BASE_URL` (the SDK appends `/v1/messages`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Appends a reply to the script; model turns consume replies in order.
    pub fn push(&self, reply: AnthropicReply) {
        lock(&self.shared.script).push_back(reply);
    }

    /// Appends a reply to the script of the conversation whose model turns mention `marker`
    /// (anywhere in their `messages`); those turns consume it before the shared script.
    pub fn push_for(&self, marker: &str, reply: AnthropicReply) {
        let mut routes = lock(&self.shared.routes);
        match routes.iter_mut().find(|(known, _)| known == marker) {
            Some((_, replies)) => replies.push_back(reply),
            None => routes.push((marker.to_owned(), VecDeque::from([reply]))),
        }
    }

    /// Scripted replies not consumed yet, routed ones included.
    pub fn pending_replies(&self) -> usize {
        let routed: usize = lock(&self.shared.routes)
            .iter()
            .map(|(_, replies)| replies.len())
            .sum();
        lock(&self.shared.script).len() + routed
    }

    /// Lets every reply behind the gate ([`AnthropicReply::AfterGate`]) go out, now and later.
    pub fn open_gate(&self) {
        self.shared.gate.send_replace(true);
    }

    /// How many hanging replies ended because the client closed the stream.
    pub fn hangs_closed_by_client(&self) -> usize {
        self.shared.hangs_closed.load(Ordering::SeqCst)
    }

    /// Every request received so far, side requests included, in arrival order.
    pub fn requests(&self) -> Vec<AnthropicRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The bodies of the model turns received so far, in arrival order.
    pub fn model_turns(&self) -> Vec<Value> {
        lock(&self.shared.requests)
            .iter()
            .filter(|request| request.model_turn)
            .map(|request| request.body.clone())
            .collect()
    }

    /// The bodies of the model turns whose messages mention `marker`, in arrival order.
    pub fn model_turns_mentioning(&self, marker: &str) -> Vec<Value> {
        self.model_turns()
            .into_iter()
            .filter(|body| mentions(body, marker))
            .collect()
    }

    /// Waits until `n` model turns arrived or `timeout` passed, then returns their bodies.
    pub async fn wait_for_model_turns(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let mut seen = self.shared.model_turns.subscribe();
        // On timeout the caller sees fewer turns than it asked for, and asserts on that.
        let _ = tokio::time::timeout(timeout, seen.wait_for(|count| *count >= n)).await;
        self.model_turns()
    }

    /// Waits until `n` model turns mentioning `marker` arrived or `timeout` passed, then returns
    /// those turns' bodies.
    pub async fn wait_for_model_turns_mentioning(
        &self,
        marker: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let mut seen = self.shared.model_turns.subscribe();
        let enough = async {
            while self.model_turns_mentioning(marker).len() < n {
                if seen.changed().await.is_err() {
                    return;
                }
            }
        };
        // On timeout the caller sees fewer turns than it asked for, and asserts on that.
        let _ = tokio::time::timeout(timeout, enough).await;
        self.model_turns_mentioning(marker)
    }
}

/// Whether a request body's `messages` contain `marker`.
fn mentions(body: &Value, marker: &str) -> bool {
    body.get("messages")
        .is_some_and(|messages| messages.to_string().contains(marker))
}

/// The next reply for a model turn: its conversation's own script first, then the shared one.
fn next_reply(shared: &Shared, body: &Value) -> Option<AnthropicReply> {
    let routed = lock(&shared.routes)
        .iter_mut()
        .filter(|(marker, replies)| !replies.is_empty() && mentions(body, marker))
        .find_map(|(_, replies)| replies.pop_front());
    routed.or_else(|| lock(&shared.script).pop_front())
}

/// The `tool_result` blocks in the last user message of a model turn's body: what the agent
/// reports back after running the tools the previous reply asked for.
pub fn tool_results(body: &Value) -> Vec<Value> {
    let Some(last_user) = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
    else {
        return Vec::new();
    };
    last_user
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let is_messages = method == Method::POST && path == "/v1/messages";
    let model_turn = is_messages
        && body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|tools| !tools.is_empty());
    tracing::debug!(%method, %uri, model_turn, body = %truncated(&body), "fake Anthropic request");
    lock(&shared.requests).push(AnthropicRequest {
        method: method.to_string(),
        uri: uri.to_string(),
        body: body.clone(),
        model_turn,
    });
    if model_turn {
        shared.model_turns.send_modify(|count| *count += 1);
    }

    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_owned();
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    if method == Method::POST && path == "/v1/messages/count_tokens" {
        return axum::Json(json!({"input_tokens": 10})).into_response();
    }
    if !is_messages {
        if method != Method::HEAD && path != "/" {
            tracing::info!(%method, %uri, "fake Anthropic: unknown endpoint, answered 200 {{}}");
        }
        return axum::Json(json!({})).into_response();
    }
    let reply = if model_turn {
        next_reply(&shared, &body).unwrap_or_else(|| {
            tracing::warn!("fake Anthropic: model turn with no scripted reply; ending the turn");
            AnthropicReply::Text("(fake model: no scripted reply)".to_owned())
        })
    } else {
        // Side requests (titles, quota probes): short text, whatever the agent makes of it.
        AnthropicReply::Text("ok".to_owned())
    };
    if matches!(reply, AnthropicReply::AfterGate(_)) {
        let mut gate = shared.gate.subscribe();
        // An error means the fake is being dropped; the reply then goes to nobody.
        let _ = gate.wait_for(|open| *open).await;
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    if stream {
        stream_reply(reply, &model, id, Arc::clone(&shared))
    } else {
        whole_reply(reply, &model, id)
    }
}

/// The reply as one JSON message (a hang becomes a plain text reply: nothing non-streaming hangs
/// in the scripts that use it).
fn whole_reply(reply: AnthropicReply, model: &str, id: u64) -> Response {
    let (content, stop_reason) = match reply {
        AnthropicReply::Text(text) | AnthropicReply::Hang { text } => {
            (vec![json!({"type": "text", "text": text})], "end_turn")
        }
        // The gate is open by now (`handle` waited for it).
        AnthropicReply::AfterGate(inner) => return whole_reply(*inner, model, id),
        AnthropicReply::ToolUse { text, name, input } => {
            let mut content: Vec<Value> = text
                .map(|text| json!({"type": "text", "text": text}))
                .into_iter()
                .collect();
            content.push(json!({
                "type": "tool_use", "id": format!("toolu_fake_{id}"), "name": name, "input": input,
            }));
            (content, "tool_use")
        }
    };
    axum::Json(json!({
        "id": format!("msg_fake_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage(5),
    }))
    .into_response()
}

fn usage(output_tokens: u64) -> Value {
    json!({
        "input_tokens": 10,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

/// One server-sent event.
fn event(data: &Value) -> Bytes {
    let name = data.get("type").and_then(Value::as_str).unwrap_or("ping");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The events of a text block at `index`, its text in a few deltas.
fn text_block(index: usize, text: &str) -> Vec<Bytes> {
    let mut events = vec![event(&json!({
        "type": "content_block_start", "index": index,
        "content_block": {"type": "text", "text": ""},
    }))];
    for piece in split(text, 4) {
        events.push(event(&json!({
            "type": "content_block_delta", "index": index,
            "delta": {"type": "text_delta", "text": piece},
        })));
    }
    events.push(event(
        &json!({"type": "content_block_stop", "index": index}),
    ));
    events
}

/// The reply as an event stream, fed by a task so a hang keeps the connection open.
fn stream_reply(reply: AnthropicReply, model: &str, id: u64, shared: Arc<Shared>) -> Response {
    let mut shutdown = shared.shutdown.clone();
    let mut events = vec![event(&json!({
        "type": "message_start",
        "message": {
            "id": format!("msg_fake_{id}"), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(1),
        },
    }))];
    let (stop_reason, hang) = match reply {
        // The gate is open by now (`handle` waited for it).
        AnthropicReply::AfterGate(inner) => return stream_reply(*inner, model, id, shared),
        AnthropicReply::Text(text) => {
            events.extend(text_block(0, &text));
            (Some("end_turn"), false)
        }
        AnthropicReply::ToolUse { text, name, input } => {
            let mut index = 0;
            if let Some(text) = text {
                events.extend(text_block(index, &text));
                index += 1;
            }
            events.push(event(&json!({
                "type": "content_block_start", "index": index,
                "content_block": {
                    "type": "tool_use", "id": format!("toolu_fake_{id}"), "name": name, "input": {},
                },
            })));
            for piece in split(&input.to_string(), 3) {
                events.push(event(&json!({
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                })));
            }
            events.push(event(
                &json!({"type": "content_block_stop", "index": index}),
            ));
            (Some("tool_use"), false)
        }
        AnthropicReply::Hang { text } => {
            events.push(event(&json!({
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""},
            })));
            events.push(event(&json!({
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text},
            })));
            (None, true)
        }
    };
    if let Some(stop_reason) = stop_reason {
        events.push(event(&json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": 5},
        })));
        events.push(event(&json!({"type": "message_stop"})));
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        for frame in events {
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
        }
        if hang {
            // Pings keep the SDK's idle timers quiet while the stream stays open.
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {
                        if tx.send(Ok(event(&json!({"type": "ping"})))).await.is_err() {
                            shared.hangs_closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    () = tx.closed() => {
                        shared.hangs_closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    changed = shutdown.changed() => if changed.is_err() { return },
                }
            }
        }
    });
    let frames = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

/// `text` in about `parts` pieces, each cut between characters.
fn split(text: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(parts.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// A body for the log, cut short: Claude Code's requests carry a long system prompt and tools.
fn truncated(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(2000) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}
