//! Permission requests an agent made under the `ask` policy, kept until a human answers them or
//! they time out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::enums::string_enum;
use crate::ids::{PermissionRequestId, SessionId, SpecTaskId, WorkSessionId};

string_enum! {
    /// Where a permission request is. Only `pending` requests can be answered or expire.
    pub enum PermissionRequestStatus as "permission request status" {
        Pending = "pending",
        Answered = "answered",
        TimedOut = "timed_out",
    }
}

/// One answer the agent offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PermissionOption {
    pub option_id: String,
    pub name: String,
    /// `allow_once`, `allow_always`, `reject_once` or `reject_always`.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PermissionRequest {
    pub id: PermissionRequestId,
    pub spec_task_id: SpecTaskId,
    /// The session that asked: the planning session, or a work session's Helix session.
    pub session_id: SessionId,
    /// The work session that asked; `null` for the planning session.
    pub work_session_id: Option<WorkSessionId>,
    /// The thread (ACP session) that asked.
    pub zed_thread_id: String,
    pub tool_call_id: String,
    pub title: String,
    /// The tool call's kind as the agent gave it (`edit`, `execute`, `fetch`, `other`…).
    pub tool_kind: Option<String>,
    /// The command a shell tool call would run.
    pub command: Option<String>,
    /// The tool call's raw input (a JSON value; a cut string when it was large).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub raw_input: Option<serde_json::Value>,
    /// The paths the tool call names.
    pub locations: Vec<String>,
    pub options: Vec<PermissionOption>,
    pub status: PermissionRequestStatus,
    /// The chosen option, once answered.
    pub choice: Option<String>,
    pub answered_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    /// When an unanswered request is given up (the agent is told `cancelled`).
    pub expires_at: DateTime<Utc>,
}
