//! What the implementation changed, as paged git diffs: the whole task branch against where it
//! started, and one work session's own commits.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use spectask_engine::review_git::BranchDiff;
use spectask_git::{Diff, DiffPage};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::routes::lookup::{task_id, work_session_id};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(task_diff))
        .routes(routes!(work_session_diff))
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;
/// Past any real diff's file count; stated so that the document bounds every parameter.
const MAX_OFFSET: i64 = 1_000_000_000;
const DEFAULT_MAX_PATCH_BYTES: i64 = 64 * 1024;
const MAX_MAX_PATCH_BYTES: i64 = 1024 * 1024;

/// Which files of a diff to return, and how much of each.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// Index of the first file (files are sorted by path); default 0.
    #[param(minimum = 0, maximum = 1_000_000_000)]
    offset: Option<i64>,
    /// Files per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Whether to include each file's unified diff (default true); counts and paths come either
    /// way.
    patches: Option<bool>,
    /// A longer patch is cut at a line end and flagged `patch_truncated`; 1 to 1048576 (default
    /// 65536).
    #[param(minimum = 1, maximum = 1_048_576)]
    max_patch_bytes: Option<i64>,
}

impl DiffQuery {
    fn page(&self) -> Result<DiffPage, ApiError> {
        let offset = bounded("offset", self.offset, 0, 0, MAX_OFFSET)?;
        let limit = bounded("limit", self.limit, DEFAULT_LIMIT, 1, MAX_LIMIT)?;
        let max_patch_bytes = bounded(
            "max_patch_bytes",
            self.max_patch_bytes,
            DEFAULT_MAX_PATCH_BYTES,
            1,
            MAX_MAX_PATCH_BYTES,
        )?;
        Ok(DiffPage {
            offset,
            limit,
            max_patch_bytes,
            with_patches: self.patches.unwrap_or(true),
        })
    }
}

/// `value` (or `default`) within `min..=max`, else a 400 naming the parameter.
fn bounded(
    name: &str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<usize, ApiError> {
    let value = value.unwrap_or(default);
    if !(min..=max).contains(&value) {
        return Err(ApiError::InvalidQuery(format!(
            "{name} must be between {min} and {max}"
        )));
    }
    usize::try_from(value)
        .map_err(|_| ApiError::InvalidQuery(format!("{name} must be between {min} and {max}")))
}

/// A page of a branch's diff.
#[derive(Debug, Serialize, ToSchema)]
pub struct BranchDiffPage {
    /// The branch the new side was read from.
    branch_name: String,
    #[serde(flatten)]
    diff: Diff,
}

impl From<BranchDiff> for BranchDiffPage {
    fn from(value: BranchDiff) -> Self {
        BranchDiffPage {
            branch_name: value.branch_name,
            diff: value.diff,
        }
    }
}

/// The task branch's changes: its tip (read live from git) against the commit it started from,
/// paged by file, with totals over all files.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/diff", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id"), DiffQuery),
    responses(
        (status = 200, body = BranchDiffPage),
        (status = 400, description = "Unknown, malformed or out-of-range parameter", body = ErrorBody),
        (status = 404, description = "Unknown task", body = ErrorBody),
        (status = 409, description = "`no_branch`: the task has no branch (shared isolation, or implementation not started); `not_a_repository`: the project is not a git repository any more", body = ErrorBody),
    )
)]
async fn task_diff(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Json<BranchDiffPage>, ApiError> {
    let page = query.page()?;
    let id = task_id(&id)?;
    Ok(Json(state.engine.task_diff(&id, page).await?.into()))
}

/// One work session's own changes: from where its branch left the task branch to its tip (its
/// branch while it exists, else the tip last merged), paged by file.
#[utoipa::path(
    get, path = "/work-sessions/{sid}/diff", tag = "implementation",
    params(("sid" = String, Path, description = "Work session id"), DiffQuery),
    responses(
        (status = 200, body = BranchDiffPage),
        (status = 400, description = "Unknown, malformed or out-of-range parameter", body = ErrorBody),
        (status = 404, description = "Unknown work session", body = ErrorBody),
        (status = 409, description = "`no_branch`: the work session has no branch; `not_a_repository`: the project is not a git repository any more", body = ErrorBody),
    )
)]
async fn work_session_diff(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Json<BranchDiffPage>, ApiError> {
    let page = query.page()?;
    let id = work_session_id(&sid)?;
    Ok(Json(state.engine.session_diff(&id, page).await?.into()))
}
