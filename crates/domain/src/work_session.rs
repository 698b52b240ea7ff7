//! A work session: one unit of implementation work, with exactly one Helix session and one Zed
//! thread. Fields and JSON names are the seed's `SpecTaskWorkSession`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::{SessionId, SpecTaskId, WorkSessionId};
use crate::workspace::{FileOverlap, OverlapWait, SessionCommit};

string_enum! {
    /// Which phase of the task a work session belongs to.
    pub enum WorkSessionPhase as "phase" {
        Planning = "planning",
        Implementation = "implementation",
        /// The independent review after implementation (issue 18): a reviewer agent's thread
        /// that answers a verdict per acceptance criterion.
        Review = "review",
    }
}

string_enum! {
    /// A work session's status; changed only through [`crate::transitions::WorkSessionEvent`].
    pub enum WorkSessionStatus as "work session status" {
        Pending = "pending",
        Active = "active",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        Blocked = "blocked",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpecTaskWorkSession {
    pub id: WorkSessionId,
    pub spec_task_id: SpecTaskId,
    pub helix_session_id: SessionId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phase: WorkSessionPhase,
    pub status: WorkSessionStatus,
    pub implementation_task_title: Option<String>,
    pub implementation_task_description: Option<String>,
    pub implementation_task_index: Option<i32>,
    pub parent_work_session_id: Option<WorkSessionId>,
    pub spawned_by_session_id: Option<WorkSessionId>,
    pub agent_config: Option<serde_json::Value>,
    pub environment_config: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The summary the agent gave with MCP `complete_work_session`.
    pub agent_summary: Option<String>,
    /// The reason the agent gave with MCP `fail_work_session`: when its turn ends the session
    /// fails for good with it.
    pub agent_gave_up: Option<String>,
    /// Its own branch, in `worktree` isolation.
    pub branch_name: Option<String>,
    /// Its worktree, while it exists (removed once its commits are merged).
    pub worktree_path: Option<String>,
    /// The task-branch commit its branch started from.
    pub base_commit: Option<String>,
    /// Its branch's tip as last merged into the task branch.
    pub head_commit: Option<String>,
    /// The commits it made, oldest first (recorded when they are merged).
    pub commits: Vec<SessionCommit>,
    /// Conflict follow-up turns used since its last successful merge.
    pub merge_attempts: i32,
    /// Files whose merge conflict blocks it (`status` `blocked`), for a human to resolve in its
    /// worktree.
    pub conflict_files: Vec<String>,
    /// Files another running work session of the task touched too.
    pub overlaps: Vec<FileOverlap>,
    /// The earlier running session it waits for (overlap policy `serialize`): its turns are not
    /// claimed until that one ends (completed, failed or cancelled), which clears this.
    pub waiting_for: Option<WorkSessionId>,
    /// Its last overlap wait (kept after the wait ends, for the resumed turn's note).
    pub overlap_wait: Option<OverlapWait>,
    /// The agent instance its thread runs in when not the task's own (`zed_instance_id`): a
    /// review session's reviewer runs in an instance of its own profile.
    pub instance_id: Option<String>,
}

impl SpecTaskWorkSession {
    /// The seed's rule: only an active implementation session may spawn others.
    pub fn can_spawn_sessions(&self) -> bool {
        self.status == WorkSessionStatus::Active && self.phase == WorkSessionPhase::Implementation
    }
}
