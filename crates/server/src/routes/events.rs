//! `/events/stream`: every committed event as Server-Sent Events, resumable.
//!
//! The events table is the source of truth: the stream always re-reads it from its cursor, so a
//! missed wake-up costs latency, never an event. Wake-ups come from the store's commit nudges
//! (this process) and a short poll (commits by other replicas).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use spectask_domain::SpecTaskId;
use spectask_store::EventQuery;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lookup::existing_task;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream_events))
}

/// Query of `GET /events/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only this task's events.
    spec_task_id: Option<String>,
    #[param(minimum = 0)]
    /// Start after this event id (`0` replays the whole history). Without it (and without a
    /// `Last-Event-ID` header) the stream starts with the next event committed.
    after: Option<i64>,
}

const BATCH: i64 = 500;

/// One message of the stream as an SSE parser reads it: `id`, `event` (the event's kind) and
/// `data` (the event as JSON).
struct SseMessage;

impl utoipa::PartialSchema for SseMessage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$"))
                    .description(Some("The event id; send it back as `Last-Event-ID`")),
            )
            .required("id")
            .property("event", utoipa::openapi::Ref::from_schema_name("EventKind"))
            .required("event")
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("The event as JSON (an `Event`)")),
            )
            .required("data")
            .into()
    }
}

impl utoipa::ToSchema for SseMessage {}

/// Live events. Each SSE message has `id:` (the event id), `event:` (its kind) and `data:` (the
/// event as JSON). Reconnect with `Last-Event-ID` to resume without a gap.
#[utoipa::path(
    get, path = "/events/stream", tag = "events",
    params(StreamQuery, ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0, description = "Resume after this event id")),
    responses(
        (status = 200, description = "text/event-stream of events", content_type = "text/event-stream", body = SseMessage),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    )
)]
async fn stream_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let spec_task_id: Option<SpecTaskId> = match &query.spec_task_id {
        Some(raw) => Some(existing_task(&state, raw).await?),
        None => None,
    };
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    ApiError::InvalidQuery("Last-Event-ID must be a non-negative event id".into())
                })?,
        ),
        None => None,
    };
    if query.after.is_some_and(|a| a < 0) {
        return Err(ApiError::InvalidQuery("after must not be negative".into()));
    }
    let start = match last_event_id.or(query.after) {
        Some(cursor) => cursor,
        None => state.store.last_event_id().await?,
    };
    // Subscribe before the first read so no commit between the read and the wait is missed.
    let mut commits = state.store.subscribe_commits();
    let store = state.store.clone();
    let shutdown = state.shutdown.clone();
    let poll = state.settings.stream_poll_interval;

    let stream = async_stream::stream! {
        let mut cursor = start;
        loop {
            let query = EventQuery { spec_task_id: spec_task_id.clone(), after: cursor, limit: BATCH };
            let full_batch = match store.list_events(&query).await {
                Ok(events) => {
                    let n = events.len();
                    for event in events {
                        cursor = event.id;
                        let message = SseEvent::default()
                            .id(event.id.to_string())
                            .event(event.kind.as_str())
                            .json_data(&event);
                        match message {
                            Ok(message) => yield Ok(message),
                            Err(err) => tracing::error!(%err, event_id = event.id, "event not serialisable"),
                        }
                    }
                    n as i64 == BATCH
                }
                Err(err) => {
                    tracing::warn!(%err, "event stream read failed; retrying");
                    false
                }
            };
            if full_batch {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                received = commits.recv() => {
                    if let Err(RecvError::Closed) = received {
                        break;
                    }
                }
                _ = tokio::time::sleep(poll) => {}
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
