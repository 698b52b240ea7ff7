//! The Helix session: one conversation with an agent, made of interactions (a prompt and its
//! streamed response).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::{InteractionId, SessionId, SpecTaskId};

string_enum! {
    /// What a session is for.
    pub enum SessionRole as "session role" {
        Planning = "planning",
        Implementation = "implementation",
        /// The reviewer's conversation after implementation.
        Review = "review",
    }
}

string_enum! {
    /// Where one prompt/response exchange is.
    pub enum InteractionState as "interaction state" {
        Waiting = "waiting",
        Complete = "complete",
        Error = "error",
        Interrupted = "interrupted",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    pub id: SessionId,
    pub spec_task_id: SpecTaskId,
    pub role: SessionRole,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The agent's own id of the ACP session hosting this conversation, when a planning session
    /// runs on an agent profile; every turn of the session resumes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_thread_id: Option<String>,
    /// In order; empty when listed without them.
    pub interactions: Vec<Interaction>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interaction {
    pub id: InteractionId,
    pub session_id: SessionId,
    /// 0-based position in the session.
    pub seq: i32,
    pub prompt_message: String,
    pub response_message: String,
    pub state: InteractionState,
    pub error: Option<String>,
    /// How many structured entries the response has (`GET …/entries` lists them).
    pub entry_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}
