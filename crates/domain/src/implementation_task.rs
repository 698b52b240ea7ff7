//! One task of the approved implementation plan, as tracked during implementation.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::{ImplementationTaskId, SpecTaskId, WorkSessionId};

string_enum! {
    /// An implementation task's status; changed only through
    /// [`crate::transitions::ImplementationTaskEvent`].
    pub enum ImplementationTaskStatus as "implementation task status" {
        Pending = "pending",
        Assigned = "assigned",
        InProgress = "in_progress",
        Completed = "completed",
        Blocked = "blocked",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpecTaskImplementationTask {
    pub id: ImplementationTaskId,
    pub spec_task_id: SpecTaskId,
    /// The plan's own key for the task (`1`, `2.3`, `T014`).
    pub key: String,
    pub title: String,
    pub description: Option<String>,
    pub acceptance_criteria: Option<String>,
    pub estimated_effort: Option<String>,
    pub priority: i32,
    /// 0-based position in the plan.
    pub index: i32,
    pub phase: Option<String>,
    /// Key of the parent task for sub-tasks.
    pub parent_key: Option<String>,
    pub requirement_refs: Vec<String>,
    /// Check commands the plan names for the task (`_Verify:` lines), run after its work
    /// session's turns.
    pub checks: Vec<String>,
    /// Keys of the tasks that must complete first.
    pub dependencies: Vec<String>,
    pub status: ImplementationTaskStatus,
    pub assigned_work_session_id: Option<WorkSessionId>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}
