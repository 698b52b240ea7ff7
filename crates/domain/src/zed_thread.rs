//! The mapping of a work session to its thread inside the task's Zed instance. Fields and JSON
//! names are the seed's `SpecTaskZedThread`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::{SpecTaskId, SpecTaskZedThreadId, WorkSessionId};

string_enum! {
    /// A thread's status; changed only through [`crate::transitions::ZedThreadEvent`].
    pub enum ZedThreadStatus as "zed thread status" {
        Pending = "pending",
        Active = "active",
        Disconnected = "disconnected",
        Completed = "completed",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpecTaskZedThread {
    pub id: SpecTaskZedThreadId,
    pub work_session_id: WorkSessionId,
    pub spec_task_id: SpecTaskId,
    /// The runtime's own thread id (an ACP `sessionId`, a Zed `acp_thread_id`). Never cleared.
    pub zed_thread_id: String,
    pub thread_config: Option<serde_json::Value>,
    pub status: ZedThreadStatus,
    pub last_activity_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}
