//! Permission requests an agent made under the `ask` policy, kept until a human answers them or
//! they time out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::enums::string_enum;
use crate::ids::{PermissionRequestId, SpecTaskId, WorkSessionId};

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
    pub work_session_id: WorkSessionId,
    /// The thread (ACP session) that asked.
    pub zed_thread_id: String,
    pub tool_call_id: String,
    pub title: String,
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
