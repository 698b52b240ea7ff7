//! Review comments on the planning documents.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
pub use crate::ids::SpecCommentId;
use crate::ids::SpecTaskId;

string_enum! {
    /// Which planning document a comment is anchored to.
    pub enum SpecDocument as "document" {
        Requirements = "requirements",
        Design = "design",
        Plan = "plan",
    }
}

impl SpecDocument {
    /// How the document is named in prompts.
    pub fn title(self) -> &'static str {
        match self {
            SpecDocument::Requirements => "requirements",
            SpecDocument::Design => "design",
            SpecDocument::Plan => "implementation plan",
        }
    }
}

/// A reviewer's comment. Open (`resolved == false`) until a revision that answers it is produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpecComment {
    pub id: SpecCommentId,
    pub spec_task_id: SpecTaskId,
    pub document: SpecDocument,
    /// The text the comment is about, as quoted from the document.
    pub quoted_text: Option<String>,
    /// 1-based line of the document the comment is about.
    pub line: Option<i32>,
    pub comment: String,
    /// The revision the comment was made on.
    pub revision: i32,
    pub resolved: bool,
    /// The revision produced in answer to it.
    pub resolved_in_revision: Option<i32>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}
