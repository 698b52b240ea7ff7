//! The planning phase and its approval gate: start planning, comment on the specs, approve or
//! request changes, read any revision and diff two, and see the task's sessions and turns.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use spectask_domain::{
    Session, SpecComment, SpecDocument, SpecRevision, SpecTask, SpecTaskImplementationTask, Turn,
};
use spectask_store::NewComment;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lookup::{existing_task, task_id};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Actor, ApiJson};
use crate::state::AppState;

/// Longest comment or quoted text, in bytes.
const MAX_COMMENT_BYTES: usize = 16 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_planning))
        .routes(routes!(approve_specs))
        .routes(routes!(list_comments, add_comment))
        .routes(routes!(get_revision))
        .routes(routes!(diff_revisions))
        .routes(routes!(list_task_sessions))
        .routes(routes!(list_task_turns))
        .routes(routes!(list_implementation_tasks))
}

/// Starts planning a task in `backlog`, or retries one in `spec_failed`.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/start-planning", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id")),
    responses(
        (status = 202, description = "Planning queued; the task is in `spec_generation`", body = SpecTask),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not in `backlog`/`spec_failed`, archived, or no planner configured", body = ErrorBody),
        (status = 422, description = "The task names an unknown planner profile", body = ErrorBody),
    )
)]
async fn start_planning(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
) -> Result<(StatusCode, Json<SpecTask>), ApiError> {
    let task = state.engine.start_planning(&task_id(&id)?, &actor).await?;
    Ok((StatusCode::ACCEPTED, Json(task)))
}

/// Body of `POST /spec-tasks/{id}/approve-specs` (the seed's endpoint).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveSpecsRequest {
    /// `true` approves the newest revision; `false` requests changes.
    approved: bool,
    /// With `approved: false`, the general comment sent to the planner with the open comments.
    comments: Option<String>,
    /// Who approves; the acting user when absent.
    #[schema(pattern = r"\S", max_length = 255)]
    approved_by: Option<String>,
    /// The revision the reviewer read and decides on. When given and it is not the latest
    /// revision, the decision is refused with 409 `stale_revision` (naming the latest in
    /// `latest_revision`) and nothing changes.
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    #[serde(default, deserialize_with = "integral")]
    revision: Option<i64>,
}

/// Approves the specs (`spec_review → spec_approved`, implementation tasks created from the plan)
/// or requests changes (`spec_review → spec_revision`, a revision turn in the same session).
#[utoipa::path(
    post, path = "/spec-tasks/{id}/approve-specs", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id")),
    request_body = ApproveSpecsRequest,
    responses(
        (status = 200, body = SpecTask),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not in `spec_review` (or a concurrent decision won: `invalid_transition`), or `revision` is not the latest (`stale_revision`, with `latest_revision`)", body = ErrorBody),
        (status = 422, description = "The plan has unknown references or cycles (`plan_errors`), or a bad `revision`, `comments` or `approved_by`", body = ErrorBody),
    )
)]
async fn approve_specs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<ApproveSpecsRequest>,
) -> Result<Json<SpecTask>, ApiError> {
    let id = task_id(&id)?;
    if let Some(comments) = &req.comments
        && comments.len() > MAX_COMMENT_BYTES
    {
        return Err(ApiError::Validation(format!(
            "comments must be at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let revision = match req.revision {
        None => None,
        Some(n) => Some(i32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
            ApiError::Validation("revision must be a revision number (1 or more)".into())
        })?),
    };
    let approved_by = match &req.approved_by {
        Some(name) if name.trim().is_empty() || name.trim().chars().count() > 255 => {
            return Err(ApiError::Validation(
                "approved_by must be 1 to 255 characters".into(),
            ));
        }
        Some(name) => name.trim().to_owned(),
        None => actor.clone(),
    };
    let task = if req.approved {
        state
            .engine
            .approve_specs(&id, revision, &approved_by, &actor)
            .await?
    } else {
        state
            .engine
            .request_spec_changes(&id, revision, req.comments.as_deref(), &actor)
            .await?
    };
    Ok(Json(task))
}

/// A JSON number without a fractional part: `3`, or `3.0`, which JSON Schema also calls an
/// integer (so a client that writes every number as a float is not refused).
fn integral<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(integer) = number.as_i64() {
        return Ok(Some(integer));
    }
    number
        .as_f64()
        .filter(|float| float.fract() == 0.0 && float.abs() <= 1e15)
        .map(|float| Some(float as i64))
        .ok_or_else(|| D::Error::custom(format!("expected an integer, not {number}")))
}

/// Body of `POST /spec-tasks/{id}/comments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCommentRequest {
    /// `requirements`, `design` or `plan`.
    #[schema(value_type = SpecDocument)]
    document: String,
    /// The passage the comment is about; must appear in the document.
    quoted_text: Option<String>,
    /// 1-based line of the document.
    #[schema(minimum = 1, maximum = 10_000_000)]
    #[serde(default, deserialize_with = "integral")]
    line: Option<i64>,
    #[schema(pattern = r"\S")]
    comment: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentList {
    comments: Vec<SpecComment>,
}

/// The task's review comments, oldest first, with their `resolved` state.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/comments", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = CommentList), (status = 404, body = ErrorBody))
)]
async fn list_comments(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CommentList>, ApiError> {
    let id = existing_task(&state, &id).await?;
    Ok(Json(CommentList {
        comments: state.store.list_comments(&id).await?,
    }))
}

/// Comments on one of the documents under review. Open comments go to the planner with the next
/// request for changes.
#[utoipa::path(
    post, path = "/spec-tasks/{id}/comments", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id")),
    request_body = AddCommentRequest,
    responses(
        (status = 201, body = SpecComment),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The task is not in `spec_review`", body = ErrorBody),
        (status = 422, description = "Bad document, empty comment, line out of range, quote not in the document", body = ErrorBody),
    )
)]
async fn add_comment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Actor(actor): Actor,
    ApiJson(req): ApiJson<AddCommentRequest>,
) -> Result<(StatusCode, Json<SpecComment>), ApiError> {
    let id = task_id(&id)?;
    let document: SpecDocument = req.document.parse()?;
    if req.comment.trim().is_empty() {
        return Err(ApiError::Validation("comment must not be empty".into()));
    }
    if req.comment.len() > MAX_COMMENT_BYTES
        || req
            .quoted_text
            .as_ref()
            .is_some_and(|q| q.len() > MAX_COMMENT_BYTES)
    {
        return Err(ApiError::Validation(format!(
            "comment and quoted_text must be at most {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let task = state.store.get_spec_task(&id).await?;
    let text = match document {
        SpecDocument::Requirements => task.requirements_spec.as_deref(),
        SpecDocument::Design => task.technical_design.as_deref(),
        SpecDocument::Plan => task.implementation_plan.as_deref(),
    }
    .unwrap_or_default();
    let line = match req.line {
        None => None,
        Some(line) => {
            let lines = text.lines().count().max(1) as i64;
            if !(1..=lines).contains(&line) {
                return Err(ApiError::Validation(format!(
                    "line must be between 1 and {lines} for the {}",
                    document.title()
                )));
            }
            Some(line as i32)
        }
    };
    let quoted_text = req.quoted_text.filter(|q| !q.trim().is_empty());
    if let Some(quote) = &quoted_text
        && !text.contains(quote.as_str())
    {
        return Err(ApiError::QuoteNotFound(format!(
            "the quoted text does not appear in the {}",
            document.title()
        )));
    }
    let comment = state
        .store
        .add_comment(
            &id,
            &NewComment {
                document,
                quoted_text,
                line,
                comment: req.comment,
                created_by: actor,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(comment)))
}

/// One revision with its three documents.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/revisions/{n}", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id"), ("n" = i32, Path, description = "Revision number (1 = first draft)")),
    responses((status = 200, body = SpecRevision), (status = 404, body = ErrorBody))
)]
async fn get_revision(
    State(state): State<AppState>,
    Path((id, n)): Path<(String, String)>,
) -> Result<Json<SpecRevision>, ApiError> {
    let id = task_id(&id)?;
    let n = revision_number(&id, &n)?;
    Ok(Json(state.store.get_revision(&id, n).await?))
}

pub(crate) fn revision_number(
    id: &spectask_domain::SpecTaskId,
    raw: &str,
) -> Result<i32, ApiError> {
    raw.parse::<i32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::NotFound {
            entity: "revision",
            id: format!("{id}#{raw}"),
        })
}

/// Unified diffs of each document between two revisions.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionDiff {
    from: i32,
    to: i32,
    /// Unified diff of `requirements.md`; empty when unchanged.
    requirements: String,
    /// Unified diff of `design.md`; empty when unchanged.
    design: String,
    /// Unified diff of `tasks.md`; empty when unchanged.
    plan: String,
}

fn unified(old: &str, new: &str, name: &str, from: i32, to: i32) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("a/{name} (revision {from})"),
            &format!("b/{name} (revision {to})"),
        )
        .to_string()
}

/// What changed between revision `a` and revision `b`.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/revisions/{a}/diff/{b}", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id"), ("a" = i32, Path, description = "Older revision"), ("b" = i32, Path, description = "Newer revision")),
    responses((status = 200, body = RevisionDiff), (status = 404, body = ErrorBody))
)]
async fn diff_revisions(
    State(state): State<AppState>,
    Path((id, a, b)): Path<(String, String, String)>,
) -> Result<Json<RevisionDiff>, ApiError> {
    let id = task_id(&id)?;
    let (from, to) = (revision_number(&id, &a)?, revision_number(&id, &b)?);
    let old = state.store.get_revision(&id, from).await?;
    let new = state.store.get_revision(&id, to).await?;
    Ok(Json(RevisionDiff {
        from,
        to,
        requirements: unified(
            &old.requirements_spec,
            &new.requirements_spec,
            "requirements.md",
            from,
            to,
        ),
        design: unified(
            &old.technical_design,
            &new.technical_design,
            "design.md",
            from,
            to,
        ),
        plan: unified(
            &old.implementation_plan,
            &new.implementation_plan,
            "tasks.md",
            from,
            to,
        ),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// Without interactions; read one with `GET /sessions/{id}`.
    sessions: Vec<Session>,
}

/// The task's sessions (its one planning session, then implementation sessions).
#[utoipa::path(
    get, path = "/spec-tasks/{id}/sessions", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = SessionList), (status = 404, body = ErrorBody))
)]
async fn list_task_sessions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionList>, ApiError> {
    let id = existing_task(&state, &id).await?;
    Ok(Json(SessionList {
        sessions: state.store.list_sessions(&id).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TurnList {
    turns: Vec<Turn>,
}

/// Every prompt sent to an agent for this task, with its state and attempts.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/turns", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = TurnList), (status = 404, body = ErrorBody))
)]
async fn list_task_turns(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TurnList>, ApiError> {
    let id = existing_task(&state, &id).await?;
    Ok(Json(TurnList {
        turns: state.store.list_turns(&id).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImplementationTaskList {
    implementation_tasks: Vec<SpecTaskImplementationTask>,
}

/// The approved plan's tasks in plan order, with their status and dependencies.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/implementation-tasks", tag = "planning",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = ImplementationTaskList), (status = 404, body = ErrorBody))
)]
async fn list_implementation_tasks(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ImplementationTaskList>, ApiError> {
    let id = existing_task(&state, &id).await?;
    Ok(Json(ImplementationTaskList {
        implementation_tasks: state.store.list_implementation_tasks(&id).await?,
    }))
}
