//! Path segments to ids, and ids to rows that must exist. A malformed id names nothing, so it is
//! a 404 like an unknown one; a listing under a task or work session answers 404 when its owner is
//! absent rather than an empty list.

use spectask_domain::{PermissionRequestId, SpecTaskId, WorkSessionId};

use super::validate;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn task_id(raw: &str) -> Result<SpecTaskId, ApiError> {
    validate::id("spec task", raw, SpecTaskId::parse)
}

pub(crate) fn work_session_id(raw: &str) -> Result<WorkSessionId, ApiError> {
    validate::id("work session", raw, WorkSessionId::parse)
}

pub(crate) fn permission_request_id(raw: &str) -> Result<PermissionRequestId, ApiError> {
    validate::id("permission request", raw, PermissionRequestId::parse)
}

/// The id of an existing task.
pub(crate) async fn existing_task(state: &AppState, raw: &str) -> Result<SpecTaskId, ApiError> {
    let id = task_id(raw)?;
    state.store.get_spec_task(&id).await?;
    Ok(id)
}

/// The id of an existing work session.
pub(crate) async fn existing_work_session(
    state: &AppState,
    raw: &str,
) -> Result<WorkSessionId, ApiError> {
    let id = work_session_id(raw)?;
    state.store.get_work_session(&id).await?;
    Ok(id)
}
