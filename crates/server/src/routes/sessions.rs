//! `/sessions/{id}`: a Helix session with its interactions, and the structured entries of one
//! interaction.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use spectask_domain::entry::{DEFAULT_ENTRY_PAGE, MAX_ENTRY_PAGE};
use spectask_domain::{InteractionEntry, InteractionId, Session, SessionId};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::validate;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_session))
        .routes(routes!(list_entries))
}

/// A session with its interactions in order.
#[utoipa::path(
    get, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id (`ses_…`)")),
    responses((status = 200, body = Session), (status = 404, body = ErrorBody))
)]
async fn get_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let id = validate::id("session", &id, SessionId::parse)?;
    Ok(Json(state.store.get_session(&id).await?))
}

/// Query of `GET /sessions/{id}/interactions/{interaction_id}/entries`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    #[param(minimum = 0)]
    /// Only entries with a larger seq (a cursor: the last seq already read).
    after_seq: Option<i64>,
    /// Page size, 1 to 5000 (default 500).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<i64>,
}

/// A page of an interaction's entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryPage {
    /// In seq order.
    entries: Vec<InteractionEntry>,
    /// The seq to pass as `after_seq` for the next page; absent when this page is empty.
    next_after_seq: Option<i32>,
}

/// An interaction's structured entries (message text, thoughts, tool calls, plans, usage) in
/// order. A tool call appears once per change with its whole state: the latest entry per
/// `tool_call_id` is its current state.
#[utoipa::path(
    get, path = "/sessions/{id}/interactions/{interaction_id}/entries", tag = "sessions",
    params(
        ("id" = String, Path, description = "Session id (`ses_…`)"),
        ("interaction_id" = String, Path, description = "Interaction id (`int_…`)"),
        EntriesQuery,
    ),
    responses(
        (status = 200, body = EntryPage),
        (status = 400, description = "Unknown, malformed or out-of-range parameter", body = ErrorBody),
        (status = 404, description = "Unknown session, or an interaction not in it", body = ErrorBody),
    )
)]
async fn list_entries(
    State(state): State<AppState>,
    Path((id, interaction_id)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<EntriesQuery>,
) -> Result<Json<EntryPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_ENTRY_PAGE);
    if !(1..=MAX_ENTRY_PAGE).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_ENTRY_PAGE}"
        )));
    }
    if query.after_seq.is_some_and(|seq| seq < 0) {
        return Err(ApiError::InvalidQuery(
            "after_seq must not be negative".into(),
        ));
    }
    let session = validate::id("session", &id, SessionId::parse)?;
    let interaction = validate::id("interaction", &interaction_id, InteractionId::parse)?;
    let entries = state
        .store
        .list_interaction_entries(&session, &interaction, query.after_seq, limit)
        .await?;
    let next_after_seq = entries.last().map(|entry| entry.seq);
    Ok(Json(EntryPage {
        entries,
        next_after_seq,
    }))
}
