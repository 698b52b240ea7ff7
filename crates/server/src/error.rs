//! The API's one error type: every failure becomes `{"error":{"code","message",…}}` with a stable
//! snake_case code and the right status, decided in one `match`. Internal detail is logged, never
//! returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use spectask_domain::{ParseEnumError, TransitionError};
use spectask_store::StoreError;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{entity} `{id}` not found")]
    NotFound { entity: &'static str, id: String },
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    ForbiddenHost(String),
    #[error("{0}")]
    CrossOrigin(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    UnknownField(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("prompt is {size} bytes; the limit is {limit} bytes")]
    PromptTooLarge { size: usize, limit: usize },
    /// An imported document is over its limit.
    #[error("{field} is {size} bytes; the limit is {limit} bytes")]
    DocumentTooLarge {
        field: &'static str,
        size: usize,
        limit: usize,
    },
    #[error(transparent)]
    InvalidEnumValue(#[from] ParseEnumError),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidProjectPath(String),
    #[error("{0}")]
    ReadOnlyField(String),
    #[error(transparent)]
    InvalidTransition(#[from] TransitionError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Duplicate(String),
    #[error("{0}")]
    PlannerNotConfigured(String),
    #[error("{0}")]
    UnknownPlanner(String),
    #[error("{0}")]
    UnknownAgent(String),
    #[error("{message}")]
    PlanInvalid {
        message: String,
        errors: Vec<spectask_domain::PlanError>,
    },
    #[error("{0}")]
    QuoteNotFound(String),
    /// A review decision named a revision that is not the latest.
    #[error("{message}")]
    StaleRevision { message: String, latest: i32 },
    /// The task or work session has no git branch.
    #[error("{0}")]
    NoBranch(String),
    /// The task's project is not a git repository (any more).
    #[error("{0}")]
    NotARepository(String),
    /// The task branch has no base branch to merge into.
    #[error("{0}")]
    NoBaseBranch(String),
    /// The user's work tree has uncommitted changes the approval merge would run over.
    #[error("{0}")]
    DirtyWorktree(String),
    /// A fast-forward approval merge is not possible.
    #[error("{0}")]
    NotFastForward(String),
    /// The approval merge would conflict; nothing changed.
    #[error("{message}")]
    MergeConflict { message: String, files: Vec<String> },
    /// The detail (the database's own words) is logged, never sent.
    #[error("the service is unavailable; try again")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; clients branch on it.
    pub code: &'static str,
    /// For humans; may change.
    pub message: String,
    /// For `invalid_transition`: the status the entity is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<&'static str>,
    /// For `invalid_transition`: the statuses the refused action is allowed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_from: Option<Vec<&'static str>>,
    /// For `plan_invalid`: every problem, with the offending task keys and plan lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_errors: Option<Vec<spectask_domain::PlanError>>,
    /// For `merge_conflict`: the files the merge would conflict in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_files: Option<Vec<String>>,
    /// For `stale_revision`: the latest revision, the one to review instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<i32>,
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            RouteNotFound(_) => (StatusCode::NOT_FOUND, "route_not_found"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ForbiddenHost(_) => (StatusCode::FORBIDDEN, "forbidden_host"),
            CrossOrigin(_) => (StatusCode::FORBIDDEN, "cross_origin"),
            UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            UnknownField(_) => (StatusCode::BAD_REQUEST, "unknown_field"),
            PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            PromptTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "prompt_too_large"),
            DocumentTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "document_too_large"),
            InvalidEnumValue(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_enum_value"),
            Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            InvalidProjectPath(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_project_path"),
            ReadOnlyField(_) => (StatusCode::UNPROCESSABLE_ENTITY, "read_only_field"),
            InvalidTransition(_) => (StatusCode::CONFLICT, "invalid_transition"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Duplicate(_) => (StatusCode::CONFLICT, "duplicate"),
            PlannerNotConfigured(_) => (StatusCode::CONFLICT, "planner_not_configured"),
            UnknownPlanner(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_planner"),
            UnknownAgent(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_agent"),
            PlanInvalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "plan_invalid"),
            QuoteNotFound(_) => (StatusCode::UNPROCESSABLE_ENTITY, "quote_not_found"),
            StaleRevision { .. } => (StatusCode::CONFLICT, "stale_revision"),
            NoBranch(_) => (StatusCode::CONFLICT, "no_branch"),
            NotARepository(_) => (StatusCode::CONFLICT, "not_a_repository"),
            NoBaseBranch(_) => (StatusCode::CONFLICT, "no_base_branch"),
            DirtyWorktree(_) => (StatusCode::CONFLICT, "dirty_worktree"),
            NotFastForward(_) => (StatusCode::CONFLICT, "not_fast_forward"),
            MergeConflict { .. } => (StatusCode::CONFLICT, "merge_conflict"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (_, code) = self.status_and_code();
        let (current_status, allowed_from) = match self {
            ApiError::InvalidTransition(t) => (Some(t.current), Some(t.allowed_from.clone())),
            _ => (None, None),
        };
        let plan_errors = match self {
            ApiError::PlanInvalid { errors, .. } => Some(errors.clone()),
            _ => None,
        };
        let conflict_files = match self {
            ApiError::MergeConflict { files, .. } => Some(files.clone()),
            _ => None,
        };
        let latest_revision = match self {
            ApiError::StaleRevision { latest, .. } => Some(*latest),
            _ => None,
        };
        ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
                current_status,
                allowed_from,
                plan_errors,
                conflict_files,
                latest_revision,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        // The client gets a reference to quote, the log gets the detail under it.
        let reference = match &self {
            ApiError::Internal(detail) => {
                let reference = ulid::Ulid::new();
                tracing::error!(%reference, %detail, "internal error");
                Some(reference)
            }
            ApiError::Unavailable(detail) => {
                let reference = ulid::Ulid::new();
                tracing::warn!(%reference, %detail, "unavailable");
                Some(reference)
            }
            _ => {
                tracing::debug!(error = %self, "request refused");
                None
            }
        };
        let mut body = self.body();
        if let Some(reference) = reference {
            body.error.message = format!(
                "{} (reference {reference}: the server's log has the detail)",
                body.error.message
            );
        }
        (status, axum::Json(body)).into_response()
    }
}

impl From<spectask_engine::EngineError> for ApiError {
    fn from(err: spectask_engine::EngineError) -> Self {
        use spectask_engine::EngineError;
        match err {
            EngineError::Store(store) => store.into(),
            EngineError::Transition(t) => ApiError::InvalidTransition(t),
            EngineError::PlannerNotConfigured => ApiError::PlannerNotConfigured(err.to_string()),
            EngineError::UnknownPlanner { .. } => ApiError::UnknownPlanner(err.to_string()),
            EngineError::PlanInvalid { ref errors } => ApiError::PlanInvalid {
                message: err.to_string(),
                errors: errors.clone(),
            },
            EngineError::Conflict(message) => ApiError::Conflict(message),
            EngineError::ReviewGit(refusal) => refusal.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<spectask_engine::review_git::ReviewGitError> for ApiError {
    fn from(err: spectask_engine::review_git::ReviewGitError) -> Self {
        use spectask_engine::review_git::ReviewGitError;
        match err {
            ReviewGitError::NoBranch(message) => ApiError::NoBranch(message),
            ReviewGitError::NotARepository(message) => ApiError::NotARepository(message),
            ReviewGitError::NoBaseBranch(message) => ApiError::NoBaseBranch(message),
            ReviewGitError::DirtyWorktree(message) => ApiError::DirtyWorktree(message),
            ReviewGitError::NotFastForward(message) => ApiError::NotFastForward(message),
            ReviewGitError::BaseBranchUnavailable(message) => ApiError::Conflict(message),
            ReviewGitError::MergeConflict { ref files, .. } => ApiError::MergeConflict {
                files: files.clone(),
                message: err.to_string(),
            },
            ReviewGitError::Git(git) => ApiError::Internal(git.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { entity, id } => ApiError::NotFound { entity, id },
            StoreError::Transition(t) => ApiError::InvalidTransition(t),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Duplicate(m) => ApiError::Duplicate(m),
            StoreError::StaleRevision { latest, .. } => ApiError::StaleRevision {
                message: err.to_string(),
                latest,
            },
            other if other.is_unavailable() => ApiError::Unavailable(other.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use spectask_domain::{SpecTaskEvent, SpecTaskStatus};

    use super::*;

    #[tokio::test]
    async fn internal_detail_is_logged_not_sent() {
        for err in [
            ApiError::Unavailable("pool timed out: password authentication failed".into()),
            ApiError::Internal("relation \"spec_tasks\" does not exist".into()),
        ] {
            let response = err.into_response();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                !message.contains("password") && !message.contains("relation"),
                "{message}"
            );
            assert!(message.contains("(reference "), "{message}");
        }
    }

    #[test]
    fn a_forbidden_transition_is_a_409_naming_current_and_allowed_statuses() {
        let refusal = SpecTaskEvent::ApproveSpecs.refused(SpecTaskStatus::Done);
        let err = ApiError::from(StoreError::Transition(refusal));
        assert_eq!(
            err.status_and_code(),
            (StatusCode::CONFLICT, "invalid_transition")
        );
        let body = serde_json::to_value(err.body()).unwrap();
        assert_eq!(body["error"]["current_status"], "done");
        assert_eq!(
            body["error"]["allowed_from"],
            serde_json::json!(["spec_review"])
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`done`")
        );
    }

    #[test]
    fn internal_detail_is_not_returned() {
        let err = ApiError::Internal("password authentication failed for user x".into());
        let body = serde_json::to_value(err.body()).unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(body["error"]["message"], "internal error");
    }
}
