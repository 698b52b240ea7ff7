//! The live event stream of one task as the CLI reads it: `GET /api/v1/events/stream?spec_task_id=`
//! parsed as Server-Sent Events (`eventsource-stream` over reqwest's byte stream). A dropped
//! connection, or a server that restarts, is reconnected with a growing back-off and resumed with
//! `Last-Event-ID`, so no committed event is missed or repeated.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Method;
use serde_json::Value;

use crate::client::{CliError, CliResult, Client};
use crate::task::basics::encode;

/// How long the stream may stay unreachable before following gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

type Messages = BoxStream<'static, Result<eventsource_stream::Event, String>>;

/// What [`EventStream::next`] yields.
#[derive(Debug)]
pub enum Next {
    /// One committed event (`{id, spec_task_id, kind, entity_id, actor, payload, created_at}`).
    Event(Value),
    /// The connection dropped; reconnecting (the reason).
    Lost(String),
    /// Connected again after a loss, resuming after the last event read.
    Resumed,
}

/// One task's events, resumable.
pub struct EventStream {
    client: Client,
    task_id: String,
    last_id: Option<i64>,
    messages: Option<Messages>,
    lost_since: Option<Instant>,
}

impl EventStream {
    /// Connects now: every event committed from this moment on is delivered (read the task's
    /// state after this returns, and nothing falls between the read and the stream).
    pub async fn connect(client: &Client, task_id: &str) -> CliResult<Self> {
        let mut stream = Self {
            client: client.clone(),
            task_id: task_id.to_owned(),
            last_id: None,
            messages: None,
            lost_since: None,
        };
        stream.messages = Some(stream.open().await?);
        Ok(stream)
    }

    /// The next event, or a note that the connection was lost or resumed. Fails only when the
    /// server stays unreachable for [`GIVE_UP_AFTER`] or refuses the stream.
    pub async fn next(&mut self) -> CliResult<Next> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let Some(messages) = self.messages.as_mut() else {
                match self.open().await {
                    Ok(messages) => {
                        self.messages = Some(messages);
                        self.lost_since = None;
                        return Ok(Next::Resumed);
                    }
                    Err(err @ CliError::Refused { status, .. })
                        if status != 502 && status != 503 =>
                    {
                        return Err(err);
                    }
                    Err(err) => {
                        let since = *self.lost_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > GIVE_UP_AFTER {
                            return Err(err);
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            };
            let reason = match messages.next().await {
                Some(Ok(message)) => {
                    if let Ok(id) = message.id.trim().parse::<i64>() {
                        self.last_id = Some(id);
                    }
                    match serde_json::from_str::<Value>(&message.data) {
                        Ok(event) => return Ok(Next::Event(event)),
                        // Not an event (a comment or an unknown message): skip it.
                        Err(_) => continue,
                    }
                }
                Some(Err(err)) => err,
                None => "the server closed the stream".to_owned(),
            };
            self.messages = None;
            self.lost_since.get_or_insert_with(Instant::now);
            return Ok(Next::Lost(reason));
        }
    }

    /// Drops the connection (a request beside the stream found the server gone): the next call
    /// reconnects and says [`Next::Resumed`].
    pub fn reconnect(&mut self) {
        self.messages = None;
        self.lost_since.get_or_insert_with(Instant::now);
    }

    /// Opens the stream after the last event read (or from now).
    fn open(&self) -> impl std::future::Future<Output = CliResult<Messages>> + Send + 'static {
        // Owned copies: the future does not borrow the stream, which is not `Sync`, so it can
        // be awaited from tasks that must be `Send` (`spectask acp`'s turns).
        open(self.client.clone(), self.task_id.clone(), self.last_id)
    }
}

/// Opens task `task_id`'s stream after `last_id` (or from now).
async fn open(client: Client, task_id: String, last_id: Option<i64>) -> CliResult<Messages> {
    let mut request = client
        .request(
            Method::GET,
            &format!("/events/stream?spec_task_id={}", encode(&task_id)),
        )
        .header("accept", "text/event-stream");
    if let Some(id) = last_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.map_err(|err| {
        CliError::Other(anyhow::anyhow!(
            "cannot reach the spectask server at {}: {err}",
            client.base()
        ))
    })?;
    if !response.status().is_success() {
        // Let the client turn the refusal into its error with the server's code.
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        return Err(CliError::Refused {
            status: status.as_u16(),
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("http_error")
                .to_owned(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("the event stream was refused")
                .to_owned(),
            body,
        });
    }
    Ok(response
        .bytes_stream()
        .eventsource()
        .map(|item| item.map_err(|err| err.to_string()))
        .boxed())
}
