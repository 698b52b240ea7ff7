//! The SpecTask: the unit a user creates from a prompt, reviews and approves.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::{SessionId, SpecTaskId};
use crate::workspace::WorkspaceIsolation;

string_enum! {
    /// Where a SpecTask is in its life. Changed only through [`crate::transitions::SpecTaskEvent`].
    pub enum SpecTaskStatus as "status" {
        Backlog = "backlog",
        SpecGeneration = "spec_generation",
        SpecReview = "spec_review",
        SpecRevision = "spec_revision",
        SpecApproved = "spec_approved",
        ImplementationQueued = "implementation_queued",
        Implementation = "implementation",
        ImplementationReview = "implementation_review",
        Done = "done",
        SpecFailed = "spec_failed",
        ImplementationFailed = "implementation_failed",
    }
}

string_enum! {
    /// What kind of change the task asks for.
    pub enum TaskType as "type" {
        Feature = "feature",
        Bug = "bug",
        Refactor = "refactor",
        Chore = "chore",
        Docs = "docs",
        Test = "test",
    }
}

string_enum! {
    /// How urgent the task is.
    pub enum Priority as "priority" {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

string_enum! {
    /// The folder layouts of other spec tools that specs are imported from and exported to.
    pub enum SpecLayout as "spec layout" {
        /// Kiro's `.kiro/specs/<name>/`: `requirements.md`, `design.md`, `tasks.md`.
        Kiro = "kiro",
        /// spec-kit's `specs/NNN-name/`: `spec.md`, `plan.md`, `tasks.md`.
        Speckit = "speckit",
    }
}

impl SpecLayout {
    /// The file names of the requirements, the design and the plan, in that order.
    pub const fn files(self) -> [&'static str; 3] {
        match self {
            SpecLayout::Kiro => ["requirements.md", "design.md", "tasks.md"],
            SpecLayout::Speckit => ["spec.md", "plan.md", "tasks.md"],
        }
    }
}

/// A SpecTask as stored and as served. JSON field names are the seed's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpecTask {
    pub id: SpecTaskId,
    pub name: String,
    /// True while the name is derived (from the prompt, then from the requirements title); a name
    /// the user gave or edited is never replaced.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub name_derived: bool,
    pub description: String,
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(rename = "type"))]
    pub task_type: TaskType,
    pub priority: Priority,
    pub status: SpecTaskStatus,
    /// Archived tasks are hidden from the default listing and refuse edits.
    pub archived: bool,
    /// The request exactly as the user wrote it; never changed.
    pub original_prompt: String,
    pub requirements_spec: Option<String>,
    pub technical_design: Option<String>,
    pub implementation_plan: Option<String>,
    /// Named planner profile; `None` means the server's default.
    pub spec_agent: Option<String>,
    /// Named implementation agent profile; `None` means the server's default.
    pub implementation_agent: Option<String>,
    /// The one planning session; set once by a guarded update and never cleared.
    pub spec_session_id: Option<SessionId>,
    pub implementation_session_id: Option<SessionId>,
    pub spec_approved_by: Option<String>,
    pub spec_approved_at: Option<DateTime<Utc>>,
    /// The revision number that was approved.
    pub spec_approved_revision: Option<i32>,
    pub spec_revision_count: i32,
    /// Why the task is in `spec_failed` or `implementation_failed`; cleared when it is retried.
    pub error: Option<String>,
    pub zed_instance_id: Option<String>,
    /// Canonical absolute path of the project checkout.
    pub project_path: Option<String>,
    pub workspace_config: Option<serde_json::Value>,
    /// How its work sessions share the project, decided on entering implementation (`None`
    /// before).
    pub isolation: Option<WorkspaceIsolation>,
    /// The task branch (`spectask/<slug>-<id suffix>`), in `worktree` isolation.
    pub branch_name: Option<String>,
    /// The branch the repository's HEAD was on when the task branch was made (where an approval
    /// merge goes); `None` for a detached HEAD.
    pub base_branch: Option<String>,
    /// The commit the task branch started from.
    pub base_commit: Option<String>,
    /// The task branch's tip as of the last merge into it.
    pub head_commit: Option<String>,
    /// For a task whose specs were imported instead of planned: the layout they came in.
    pub import_format: Option<SpecLayout>,
    /// For an imported task: where the specs came from (a path or a label, as the importer gave
    /// it).
    pub import_source: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Everything needed to create a SpecTask, already validated by the caller's edge.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSpecTask {
    pub name: String,
    /// The name was derived from the prompt, not given by the user.
    pub name_derived: bool,
    pub description: String,
    pub task_type: TaskType,
    pub priority: Priority,
    pub original_prompt: String,
    pub spec_agent: Option<String>,
    pub implementation_agent: Option<String>,
    pub project_path: Option<String>,
    pub workspace_config: Option<serde_json::Value>,
    pub created_by: String,
}

/// The display name given to a task created without one: the prompt's first line-ish, whitespace
/// collapsed, cut at [`crate::limits::DERIVED_NAME_CHARS`] characters (never inside a character)
/// with an ellipsis when cut.
pub fn name_from_prompt(prompt: &str) -> String {
    let collapsed = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    let max = crate::limits::DERIVED_NAME_CHARS;
    if collapsed.chars().count() <= max {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(max).collect();
    // Prefer to end on a word boundary when one is reasonably close.
    if let Some(space) = cut.rfind(' ')
        && cut[..space].chars().count() > max / 2
    {
        cut.truncate(space);
    }
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_spellings_round_trip_through_serde_and_from_str() {
        for s in SpecTaskStatus::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<SpecTaskStatus>(&json).unwrap(), *s);
            assert_eq!(s.as_str().parse::<SpecTaskStatus>().unwrap(), *s);
        }
        for t in TaskType::ALL {
            assert_eq!(t.as_str().parse::<TaskType>().unwrap(), *t);
        }
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>().unwrap(), *p);
        }
        let err = "urgent".parse::<Priority>().unwrap_err();
        assert_eq!(err.kind, "priority");
        assert_eq!(err.expected, "low, medium, high, critical");
    }

    #[test]
    fn derived_names_are_collapsed_and_cut_on_char_boundaries() {
        assert_eq!(name_from_prompt("  Add\n\tdark   mode "), "Add dark mode");
        let long = "word ".repeat(40);
        let name = name_from_prompt(&long);
        assert!(name.ends_with('…'));
        assert!(name.chars().count() <= crate::limits::DERIVED_NAME_CHARS + 1);
        let cjk = "日本語のプロンプト".repeat(20);
        let name = name_from_prompt(&cjk);
        assert_eq!(name.chars().count(), crate::limits::DERIVED_NAME_CHARS + 1);
    }
}
