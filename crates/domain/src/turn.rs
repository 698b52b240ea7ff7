//! A turn: one prompt sent to an agent, durable from the moment it is decided. A turn is claimed
//! by exactly one worker under an expiring lease; a worker that dies loses the lease and the turn
//! is queued again, with the same interaction and session, never a new one.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::{InteractionId, SessionId, SpecTaskId, TurnId, WorkSessionId};

string_enum! {
    /// Why the turn exists.
    pub enum TurnKind as "turn kind" {
        /// The first planning prompt of a task.
        Planning = "planning",
        /// A reviewer asked for changes.
        Revision = "revision",
        /// The previous reply broke the output contract; one corrective attempt.
        Correction = "correction",
        /// A work session's first turn: the spec context and its task.
        Implementation = "implementation",
        /// Any later prompt to a work session's thread: a retry note, a human message, review
        /// changes.
        FollowUp = "follow_up",
    }
}

string_enum! {
    /// Where a turn is; changed only through [`crate::transitions::TurnEvent`].
    pub enum TurnStatus as "turn status" {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Turn {
    pub id: TurnId,
    pub spec_task_id: SpecTaskId,
    pub session_id: SessionId,
    /// The interaction whose response this turn writes.
    pub interaction_id: InteractionId,
    /// The work session whose thread runs it (implementation turns).
    pub work_session_id: Option<WorkSessionId>,
    pub kind: TurnKind,
    pub status: TurnStatus,
    /// How many times it was claimed (a claim lost to a crash counts).
    pub attempts: i32,
    /// Worker-specific data the turn needs when it runs (e.g. the comments a revision answers).
    pub payload: serde_json::Value,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}
