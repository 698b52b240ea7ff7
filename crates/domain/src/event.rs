//! The append-only event log: every state change writes one event in the same transaction, and the
//! live stream replays it by id.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::SpecTaskId;

string_enum! {
    /// What happened.
    pub enum EventKind as "event kind" {
        SpecTaskCreated = "spec_task.created",
        SpecTaskUpdated = "spec_task.updated",
        SpecTaskStatusChanged = "spec_task.status_changed",
        SpecTaskArchived = "spec_task.archived",
        SpecTaskUnarchived = "spec_task.unarchived",
        SpecTaskDeleted = "spec_task.deleted",
        SessionCreated = "session.created",
        SessionAgentThreadBound = "session.agent_thread_bound",
        InteractionCreated = "interaction.created",
        InteractionUpdated = "interaction.updated",
        RevisionCreated = "revision.created",
        WorkSessionCreated = "work_session.created",
        WorkSessionStatusChanged = "work_session.status_changed",
        ZedThreadCreated = "zed_thread.created",
        ZedThreadStatusChanged = "zed_thread.status_changed",
        ImplementationTaskCreated = "implementation_task.created",
        ImplementationTaskStatusChanged = "implementation_task.status_changed",
        CommentCreated = "comment.created",
        CommentsResolved = "comment.resolved",
        TurnQueued = "turn.queued",
        TurnStatusChanged = "turn.status_changed",
        SpecsApproved = "spec_task.specs_approved",
        PlanningFailed = "spec_task.planning_failed",
        ImplementationFailed = "spec_task.implementation_failed",
        WorkspaceProjectionFailed = "workspace.projection_failed",
        PermissionRequested = "permission.requested",
        PermissionAnswered = "permission.answered",
        PermissionTimedOut = "permission.timed_out",
        /// An agent reported progress on one of its tasks over MCP (with its note).
        AgentProgressReported = "agent.progress_reported",
        /// An agent declared its work session done over MCP (with its summary).
        AgentCompletionDeclared = "agent.completion_declared",
        /// An agent gave up its work session over MCP (with its reason).
        AgentGaveUp = "agent.gave_up",
        /// The task branch was created from the repository's HEAD on entering implementation.
        TaskBranchCreated = "spec_task.branch_created",
        /// A work session's worktree was created (its branch, path and start commit).
        WorktreeCreated = "work_session.worktree_created",
        /// A work session's changes were committed on its branch, or it changed nothing.
        WorkSessionCommitted = "work_session.committed",
        /// A work session's branch was merged into the task branch.
        WorkSessionMerged = "work_session.merged",
        /// A work session's branch conflicts with the task branch (the files in the payload).
        MergeConflict = "work_session.merge_conflict",
        /// Two running work sessions of one task touched the same file.
        WorkSessionOverlap = "work_session.overlap",
        /// Overlap policy `serialize`: a work session's turn was interrupted and waits for the
        /// earlier session that touched the same file to end.
        WorkSessionWaiting = "work_session.waiting",
        /// A task's worktrees (and session branches) were removed.
        WorktreesRemoved = "spec_task.worktrees_removed",
        /// The task branch was merged into the branch the task started from, at approval.
        TaskBranchMerged = "spec_task.branch_merged",
        /// A check ran after a work session's turn (its run in the payload).
        CheckCompleted = "check.completed",
        /// The reviewer gave a verdict on one acceptance criterion (issue 18).
        VerdictReported = "review.verdict",
    }
}

/// An event to append; the store assigns its id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub spec_task_id: Option<SpecTaskId>,
    pub kind: EventKind,
    /// The id of the entity that changed.
    pub entity_id: String,
    /// Who caused it (a user name, `system`, an agent).
    pub actor: String,
    pub payload: serde_json::Value,
}

/// A committed event. Ids increase in commit order, so `id > last_seen` never skips one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: i64,
    pub spec_task_id: Option<SpecTaskId>,
    pub kind: EventKind,
    pub entity_id: String,
    pub actor: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}
