//! The transition tables: one per state machine, each the single source of truth for which status
//! changes exist. The store applies a transition as a compare-and-set
//! (`UPDATE … SET status = target WHERE id = ? AND status IN allowed_from`), so an event that is not
//! in the table for the current status can never be written, and a lost race is detected.
//!
//! Each event has exactly one target status; that keeps the compare-and-set a single statement.

use serde::Serialize;

use crate::implementation_task::ImplementationTaskStatus;
use crate::spec_task::SpecTaskStatus;
use crate::turn::TurnStatus;
use crate::work_session::WorkSessionStatus;
use crate::zed_thread::ZedThreadStatus;

/// An event that the table does not allow from the current status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error(
    "cannot {event} a {entity} in status `{current}`; `{event}` is allowed from: {}",
    allowed_from.join(", ")
)]
pub struct TransitionError {
    /// The entity kind, e.g. `spec task`.
    pub entity: &'static str,
    /// The event's name, e.g. `approve_specs`.
    pub event: &'static str,
    /// The status the entity is in.
    pub current: &'static str,
    /// The statuses from which the event is allowed.
    pub allowed_from: Vec<&'static str>,
}

macro_rules! transition_table {
    (
        $(#[$meta:meta])*
        pub enum $event:ident on $status:ident as $entity:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $name:literal : [$($from:ident),+ $(,)?] => $to:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $event {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $event {
            /// Every event, in table order.
            pub const ALL: &'static [$event] = &[$($event::$variant),+];

            /// The event's name, used in events and error messages.
            pub const fn as_str(self) -> &'static str {
                match self { $($event::$variant => $name),+ }
            }

            /// The statuses from which this event is allowed.
            pub const fn allowed_from(self) -> &'static [$status] {
                match self { $($event::$variant => &[$($status::$from),+]),+ }
            }

            /// The status this event leads to.
            pub const fn target(self) -> $status {
                match self { $($event::$variant => $status::$to),+ }
            }

            /// The status after this event, or why the event is not allowed now.
            pub fn apply(self, current: $status) -> Result<$status, TransitionError> {
                if self.allowed_from().contains(&current) {
                    Ok(self.target())
                } else {
                    Err(self.refused(current))
                }
            }

            /// The error for this event refused in `current`.
            pub fn refused(self, current: $status) -> TransitionError {
                TransitionError {
                    entity: $entity,
                    event: self.as_str(),
                    current: current.as_str(),
                    allowed_from: self.allowed_from().iter().map(|s| s.as_str()).collect(),
                }
            }
        }

        impl ::std::fmt::Display for $event {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

transition_table! {
    /// What can happen to a SpecTask.
    pub enum SpecTaskEvent on SpecTaskStatus as "spec task" {
        /// Planning begins (explicitly or by auto-start).
        StartPlanning = "start_planning": [Backlog] => SpecGeneration,
        /// Documents written elsewhere (a Kiro or spec-kit folder) were imported as revision 1:
        /// the task skips planning. Only the import's own transaction applies it, to the task it
        /// has just created.
        ImportSpecs = "import_specs": [Backlog] => SpecReview,
        /// The planner produced valid documents (first draft or a revision).
        SpecsGenerated = "specs_generated": [SpecGeneration, SpecRevision] => SpecReview,
        /// The planner failed for good.
        PlanningFailed = "planning_failed": [SpecGeneration, SpecRevision] => SpecFailed,
        /// A reviewer asked for changes.
        RequestSpecChanges = "request_spec_changes": [SpecReview] => SpecRevision,
        /// A reviewer approved the specs.
        ApproveSpecs = "approve_specs": [SpecReview] => SpecApproved,
        /// A failed planning run is tried again.
        RetryPlanning = "retry_planning": [SpecFailed] => SpecGeneration,
        /// The approved plan waits for an implementation slot.
        QueueImplementation = "queue_implementation": [SpecApproved] => ImplementationQueued,
        /// The instance, work sessions and threads exist; agents are working.
        StartImplementation = "start_implementation": [ImplementationQueued] => Implementation,
        /// Every implementation work session completed.
        ImplementationFinished = "implementation_finished": [Implementation] => ImplementationReview,
        /// A reviewer asked for changes to the implementation.
        RequestImplementationChanges = "request_implementation_changes": [ImplementationReview] => Implementation,
        /// Implementation failed for good (retries exhausted, instance unrecoverable).
        ImplementationFailed = "implementation_failed": [ImplementationQueued, Implementation] => ImplementationFailed,
        /// A failed implementation is queued again.
        RetryImplementation = "retry_implementation": [ImplementationFailed] => ImplementationQueued,
        /// A reviewer accepted the implementation.
        ApproveImplementation = "approve_implementation": [ImplementationReview] => Done,
    }
}

transition_table! {
    /// What can happen to a work session.
    pub enum WorkSessionEvent on WorkSessionStatus as "work session" {
        /// Dispatched: its thread received its first turn.
        Activate = "activate": [Pending] => Active,
        /// Its work is done.
        Complete = "complete": [Active] => Completed,
        /// Its work failed for good.
        Fail = "fail": [Pending, Active] => Failed,
        /// A task it depends on failed.
        Block = "block": [Pending] => Blocked,
        /// The failed dependency was retried.
        Unblock = "unblock": [Blocked] => Pending,
        /// Stopped by a human or by the task's end.
        Cancel = "cancel": [Pending, Active, Blocked] => Cancelled,
        /// A failed session is tried again.
        Retry = "retry": [Failed] => Pending,
        /// A reviewer asked for changes after it completed.
        Reopen = "reopen": [Completed] => Active,
        /// Its branch could not be merged into the task branch and the follow-up turns did not
        /// resolve the conflict: a human resolves it in the session's worktree.
        MergeBlock = "merge_block": [Active] => Blocked,
        /// A human resolved the merge conflict and asked to go on.
        Resolve = "resolve": [Blocked] => Active,
    }
}

transition_table! {
    /// What can happen to a Zed thread.
    pub enum ZedThreadEvent on ZedThreadStatus as "zed thread" {
        /// The runtime created the thread.
        Start = "start": [Pending] => Active,
        /// The instance hosting it went away.
        Disconnect = "disconnect": [Active] => Disconnected,
        /// The same thread was resumed after a restart.
        Reconnect = "reconnect": [Disconnected] => Active,
        /// Its work session completed.
        Complete = "complete": [Active] => Completed,
        /// It failed for good.
        Fail = "fail": [Pending, Active, Disconnected] => Failed,
        /// New work was sent to a finished thread (review changes, a retry).
        Reopen = "reopen": [Completed, Failed] => Active,
    }
}

transition_table! {
    /// What can happen to an implementation task.
    pub enum ImplementationTaskEvent on ImplementationTaskStatus as "implementation task" {
        /// A work session was created for it.
        Assign = "assign": [Pending] => Assigned,
        /// Its work session started on it.
        Start = "start": [Assigned] => InProgress,
        /// It is done.
        Complete = "complete": [Assigned, InProgress] => Completed,
        /// A task it depends on failed.
        Block = "block": [Assigned] => Blocked,
        /// The failed dependency was retried.
        Unblock = "unblock": [Blocked] => Assigned,
        /// It failed.
        Fail = "fail": [Assigned, InProgress] => Failed,
        /// A failed task is tried again.
        Retry = "retry": [Failed] => Assigned,
        /// A reviewer asked for changes after it completed.
        Reopen = "reopen": [Completed] => InProgress,
    }
}

transition_table! {
    /// What can happen to a turn.
    pub enum TurnEvent on TurnStatus as "turn" {
        /// A worker took it under a lease.
        Claim = "claim": [Queued] => Running,
        /// The agent answered and the answer was recorded.
        Complete = "complete": [Running] => Completed,
        /// It failed for good.
        Fail = "fail": [Queued, Running] => Failed,
        /// Its worker's lease expired (a crash, a restart): it runs again.
        Requeue = "requeue": [Running] => Queued,
        /// Nobody needs its answer any more.
        Cancel = "cancel": [Queued, Running] => Cancelled,
    }
}

#[cfg(test)]
mod tests;
