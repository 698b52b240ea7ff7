//! One attempt: send the request, then read either the event stream or the whole JSON body into a
//! [`Reply`], forwarding content deltas as they arrive. Each phase has its own timeout; the caller
//! bounds the attempt as a whole and decides whether to retry.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::reply::Reply;
use super::sse::SseDecoder;
use super::{LlmConfig, LlmError, LlmEvent, retry, wire};

/// A non-streamed reply larger than this is refused rather than buffered.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Enough of an error body to find its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Why an attempt failed, and how long the server asked us to wait before the next one.
#[derive(Debug)]
pub(crate) struct AttemptFailure {
    pub error: LlmError,
    pub retry_after: Option<Duration>,
}

impl From<LlmError> for AttemptFailure {
    fn from(error: LlmError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

/// Where deltas go. A closed receiver only means nobody is watching: the completion goes on.
#[derive(Debug)]
pub(crate) struct DeltaSink {
    tx: mpsc::Sender<LlmEvent>,
    closed: bool,
    /// Whether the current attempt delivered a delta (so a retry must send `Reset`).
    pub delivered: bool,
}

impl DeltaSink {
    pub fn new(tx: mpsc::Sender<LlmEvent>) -> Self {
        Self {
            tx,
            closed: false,
            delivered: false,
        }
    }

    pub async fn send(&mut self, event: LlmEvent) {
        if self.closed {
            return;
        }
        if self.tx.send(event).await.is_err() {
            tracing::debug!("the completion's event receiver is gone; deltas are no longer sent");
            self.closed = true;
        }
    }

    async fn delta(&mut self, text: String) {
        self.send(LlmEvent::Delta(text)).await;
        self.delivered |= !self.closed;
    }
}

/// Runs one attempt to completion (or failure), filling `reply`.
pub(crate) async fn run(
    request: reqwest::RequestBuilder,
    config: &LlmConfig,
    sink: &mut DeltaSink,
    reply: &mut Reply,
) -> Result<(), AttemptFailure> {
    let response = match timeout(config.first_byte_timeout, request.send()).await {
        Err(_) => {
            return Err(LlmError::Timeout {
                phase: "first byte",
                after: config.first_byte_timeout,
            }
            .into());
        }
        Ok(Err(e)) => return Err(from_reqwest(&e, config).into()),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        let retry_after = retry::retry_after(response.headers(), SystemTime::now());
        // A body that cannot be read still leaves the status to report.
        let body = read_body(response, config.idle_timeout, MAX_ERROR_BODY_BYTES)
            .await
            .map(|(body, _)| body)
            .unwrap_or_default();
        return Err(AttemptFailure {
            error: LlmError::Status {
                status: status.as_u16(),
                message: wire::status_message(&body, status.canonical_reason()),
            },
            retry_after,
        });
    }
    // A server that ignores `stream: true` answers with one JSON body; take it as such.
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if config.stream && !is_json {
        read_stream(response, config, sink, reply).await?;
    } else {
        read_whole(response, config, sink, reply).await?;
    }
    Ok(())
}

async fn read_whole(
    response: reqwest::Response,
    config: &LlmConfig,
    sink: &mut DeltaSink,
    reply: &mut Reply,
) -> Result<(), LlmError> {
    let (body, cut) = read_body(response, config.idle_timeout, MAX_BODY_BYTES).await?;
    if cut {
        return Err(LlmError::InvalidResponse(format!(
            "the reply is larger than {} MiB",
            MAX_BODY_BYTES / (1024 * 1024)
        )));
    }
    *reply = Reply::from_response(&body)?;
    if !reply.content.is_empty() {
        sink.delta(reply.content.clone()).await;
    }
    Ok(())
}

async fn read_stream(
    response: reqwest::Response,
    config: &LlmConfig,
    sink: &mut DeltaSink,
    reply: &mut Reply,
) -> Result<(), LlmError> {
    let mut body = response.bytes_stream();
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    let mut saw_event = false;
    // The start of the body, to show when it turns out not to be an event stream.
    let mut head = Vec::new();
    loop {
        let chunk = match timeout(config.idle_timeout, body.next()).await {
            Err(_) => {
                return Err(LlmError::Timeout {
                    phase: "idle",
                    after: config.idle_timeout,
                });
            }
            Ok(Some(Err(e))) => return Err(from_reqwest(&e, config)),
            Ok(Some(Ok(bytes))) => Some(bytes),
            Ok(None) => None,
        };
        match &chunk {
            Some(bytes) => {
                if head.len() < 200 {
                    head.extend(bytes.iter().take(200 - head.len()));
                }
                decoder.push(bytes, &mut events).map_err(|_| {
                    LlmError::InvalidResponse(format!(
                        "a stream line is longer than {} MiB",
                        super::sse::MAX_LINE_BYTES / (1024 * 1024)
                    ))
                })?;
            }
            None => decoder.finish(&mut events),
        }
        for event in events.drain(..) {
            saw_event = true;
            if let Some(delta) = reply.apply_event(&event)? {
                sink.delta(delta).await;
            }
            if reply.done {
                // Stop at `[DONE]` rather than wait for a keep-alive connection to close.
                return Ok(());
            }
        }
        if chunk.is_none() {
            break;
        }
    }
    if reply.finish_reason.is_some() {
        // Some servers end the body after the last choice without sending `[DONE]`.
        return Ok(());
    }
    if !saw_event && !head.is_empty() {
        return Err(LlmError::InvalidResponse(format!(
            "the reply is not an event stream: {}",
            wire::truncate(&String::from_utf8_lossy(&head), 200)
        )));
    }
    Err(LlmError::Transport(
        "the stream ended before the reply was complete".to_owned(),
    ))
}

/// The body, up to `limit` bytes, within one `idle` timeout; `true` when it was cut at the limit.
async fn read_body(
    response: reqwest::Response,
    idle: Duration,
    limit: usize,
) -> Result<(Vec<u8>, bool), LlmError> {
    let read = async {
        let mut body = response.bytes_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| LlmError::Transport(error_chain(&e)))?;
            if buf.len() + chunk.len() > limit {
                buf.extend_from_slice(&chunk[..limit - buf.len()]);
                return Ok((buf, true));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((buf, false))
    };
    timeout(idle, read).await.map_err(|_| LlmError::Timeout {
        phase: "idle",
        after: idle,
    })?
}

fn from_reqwest(e: &reqwest::Error, config: &LlmConfig) -> LlmError {
    if e.is_connect() && e.is_timeout() {
        LlmError::Timeout {
            phase: "connect",
            after: config.connect_timeout,
        }
    } else if e.is_builder() {
        LlmError::Config(error_chain(e))
    } else {
        LlmError::Transport(error_chain(e))
    }
}

/// The error and its sources on one line ("error sending request …: tcp connect error:
/// Connection refused"), since the top-level message alone rarely says what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
