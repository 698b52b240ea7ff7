//! A numbered snapshot of the three planning documents. Every planning output is kept.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{InteractionId, SpecTaskId};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpecRevision {
    pub spec_task_id: SpecTaskId,
    /// 1 for the first draft, then +1 per revision.
    pub revision: i32,
    pub requirements_spec: String,
    pub technical_design: String,
    pub implementation_plan: String,
    /// The review feedback this revision answers, if any.
    pub feedback: Option<String>,
    /// The planning interaction that produced it.
    pub interaction_id: Option<InteractionId>,
    pub created_at: DateTime<Utc>,
}
