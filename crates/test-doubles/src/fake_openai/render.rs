//! Turning a scripted [`FakeReply`] into an HTTP response: event streams with their timing, whole
//! JSON completions, statuses, hangs and dropped connections. The reply kind follows the script,
//! but its mode follows the request: a streamed script answers a non-streaming request as one
//! JSON body (and vice versa), so one script serves both modes.

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::FakeReply;

/// What the request asked for.
#[derive(Debug)]
pub(super) struct Ask {
    pub stream: bool,
    pub include_usage: bool,
    pub model: String,
}

/// How an event stream ends after its content deltas.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Finish,
    Hang,
    Drop,
}

type Frame = Result<Bytes, io::Error>;

pub(super) async fn respond(
    reply: FakeReply,
    ask: &Ask,
    shutdown: watch::Receiver<()>,
) -> Response {
    match reply {
        FakeReply::Status {
            status,
            retry_after,
            body,
        } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (code, axum::Json(body)).into_response();
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
        FakeReply::Complete { content } if ask.stream => {
            stream(ask, vec![content], Duration::ZERO, Ending::Finish, shutdown)
        }
        FakeReply::Complete { content } => completion(ask, &content),
        FakeReply::Stream { chunks, delay } if ask.stream => {
            stream(ask, chunks, delay, Ending::Finish, shutdown)
        }
        FakeReply::Stream { chunks, .. } => completion(ask, &chunks.concat()),
        FakeReply::StreamThenHang { chunks } if ask.stream => {
            stream(ask, chunks, Duration::ZERO, Ending::Hang, shutdown)
        }
        FakeReply::StreamThenDrop { chunks } if ask.stream => {
            stream(ask, chunks, Duration::ZERO, Ending::Drop, shutdown)
        }
        FakeReply::StreamThenDrop { chunks } => {
            // Half a JSON body, then the connection breaks.
            let whole = completion_body(ask, &chunks.concat()).to_string();
            let half = whole.as_bytes()[..whole.len() / 2].to_vec();
            let head = futures::stream::once(async move { Frame::Ok(Bytes::from(half)) });
            let drop = futures::stream::once(async {
                // A pause first, so hyper flushes the half body before the abort (see `stream`).
                tokio::time::sleep(Duration::from_millis(50)).await;
                Frame::Err(dropped())
            });
            json_response(Body::from_stream(head.chain(drop)))
        }
        FakeReply::Hang | FakeReply::StreamThenHang { .. } => {
            wait_for_shutdown(shutdown).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        FakeReply::RawSse(raw) => sse_response(Body::from(raw)),
        FakeReply::RawSseChunks { chunks, delay } => paced(chunks, delay, shutdown),
    }
}

/// Raw body pieces, each sent after `delay` so they leave as separate writes.
fn paced(chunks: Vec<Vec<u8>>, delay: Duration, mut shutdown: watch::Receiver<()>) -> Response {
    let (tx, mut rx) = mpsc::channel::<Frame>(1);
    tokio::spawn(async move {
        for chunk in chunks {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
    });
    let frames = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    sse_response(Body::from_stream(frames))
}

fn completion(ask: &Ask, content: &str) -> Response {
    json_response(Body::from(completion_body(ask, content).to_string()))
}

fn completion_body(ask: &Ask, content: &str) -> Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": ask.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": usage(1),
    })
}

/// An event stream fed by a task, so `delay`, hangs and drops happen while the client reads.
fn stream(
    ask: &Ask,
    chunks: Vec<String>,
    delay: Duration,
    ending: Ending,
    mut shutdown: watch::Receiver<()>,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<Frame>(16);
    let model = ask.model.clone();
    let include_usage = ask.include_usage;
    tokio::spawn(async move {
        let frame = |delta: Value, finish: Value| -> Frame {
            let chunk = json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            });
            Ok(Bytes::from(format!("data: {chunk}\n\n")))
        };
        // Like OpenAI: the first delta carries only the role.
        if tx
            .send(frame(json!({"role": "assistant"}), Value::Null))
            .await
            .is_err()
        {
            return;
        }
        let count = chunks.len();
        for chunk in chunks {
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
            }
            if tx
                .send(frame(json!({"content": chunk}), Value::Null))
                .await
                .is_err()
            {
                return;
            }
        }
        match ending {
            Ending::Finish => {
                let mut tail = vec![frame(json!({}), json!("stop"))];
                if include_usage {
                    let usage = json!({
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [],
                        "usage": usage(count),
                    });
                    tail.push(Ok(Bytes::from(format!("data: {usage}\n\n"))));
                }
                tail.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
                for frame in tail {
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                }
            }
            Ending::Hang => {
                tokio::select! {
                    () = wait_for_shutdown(shutdown) => {}
                    () = tx.closed() => {}
                }
            }
            Ending::Drop => {
                // Let hyper flush the deltas first: it writes buffered frames when the body
                // pauses, and an error frame aborts the connection, discarding unflushed ones.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(Err(dropped())).await;
            }
        }
    });
    let frames = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    sse_response(Body::from_stream(frames))
}

fn usage(completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": 10,
        "completion_tokens": completion_tokens,
        "total_tokens": 10 + completion_tokens,
    })
}

fn sse_response(body: Body) -> Response {
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json_response(body: Body) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

fn dropped() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "fake: connection dropped")
}

/// Resolves when the fake is dropped (its shutdown sender goes away).
async fn wait_for_shutdown(mut shutdown: watch::Receiver<()>) {
    while shutdown.changed().await.is_ok() {}
}
