//! The engine's one error type.

use spectask_domain::{PlanError, TransitionError};
use spectask_store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// No planner is configured for tasks that name none.
    #[error(
        "no planner is configured: start the server with --llm-model (and --llm-base-url, \
         --llm-api-key) or name a planner profile from spectask.toml in the task's spec_agent"
    )]
    PlannerNotConfigured,
    /// The task names a planner profile the configuration does not have.
    #[error("unknown planner profile `{name}`; configured profiles: {known}")]
    UnknownPlanner { name: String, known: String },
    /// The plan has errors that make it unfit for implementation.
    #[error("the implementation plan cannot be approved: {}", errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    PlanInvalid { errors: Vec<PlanError> },
    /// The task is not in a state where the request makes sense.
    #[error("{0}")]
    Conflict(String),
    /// A git step failed (the repository, a worktree, a merge).
    #[error("git: {0}")]
    Git(#[from] spectask_git::GitError),
    /// A review request about the task's git branch cannot be served (or git failed).
    #[error(transparent)]
    ReviewGit(#[from] crate::review_git::ReviewGitError),
}
