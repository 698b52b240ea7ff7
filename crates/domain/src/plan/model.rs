//! The parsed plan's data model: what [`super::parse_plan`] returns, what
//! `POST /api/v1/plans/parse` serialises, and the errors approval refuses a plan for.

use serde::{Deserialize, Serialize};

use crate::enums::string_enum;

string_enum! {
    /// A task's state as its checkbox shows it.
    pub enum PlanTaskStatus as "plan task status" {
        /// `[ ]`
        Pending = "pending",
        /// `[~]`, `[-]` (Kiro) or `[/]`.
        InProgress = "in_progress",
        /// `[x]` or `[X]`.
        Completed = "completed",
        /// The task has no checkbox (heading and numbered-list plans); progress lives elsewhere.
        NoCheckbox = "none",
    }
}

string_enum! {
    /// Which convention the plan mostly follows. It decides the implicit ordering rules (only
    /// spec-kit chains the non-`[P]` tasks of a phase) and the characters progress writes.
    pub enum PlanFormat as "plan format" {
        /// Kiro `tasks.md`: `- [ ] 1. Title` with `- [ ] 1.1 Sub-task`.
        Kiro = "kiro",
        /// GitHub spec-kit `tasks.md`: `- [ ] T001 [P] [US1] ...` under `## Phase N:`.
        SpecKit = "spec_kit",
        /// `## Task 1: Title` / `### 2. Title` / `### Step 3 — Title` sections.
        Headings = "headings",
        /// A plain ordered list, `1. Create the schema`.
        Numbered = "numbered",
        /// Checkboxes without ids (the origin system's flat list); keys are generated.
        Checklist = "checklist",
        /// Nothing recognisable: the whole plan is one task.
        Unstructured = "unstructured",
    }
}

string_enum! {
    /// What is wrong with a plan. Any error makes the plan unfit for approval.
    pub enum PlanErrorKind as "plan error kind" {
        /// A dependency names a task (or phase) the plan does not have.
        UnknownReference = "unknown_reference",
        /// Tasks depend on each other in a loop (a task depending on itself included).
        DependencyCycle = "dependency_cycle",
        /// Two tasks were written with the same key, so references to it are ambiguous.
        DuplicateKey = "duplicate_key",
        /// The plan is empty or blank.
        EmptyPlan = "empty_plan",
        /// The plan implies more dependencies than the parser keeps (a hostile or absurd plan).
        TooManyDependencies = "too_many_dependencies",
    }
}

/// An implementation plan broken into tasks. Always produced, even for a broken plan, so the UI
/// can show what was understood next to [`ParsedPlan::errors`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParsedPlan {
    /// The first level-1 heading, if it is not itself a task.
    pub title: Option<String>,
    pub format: PlanFormat,
    /// Section headings that group tasks, in document order.
    pub phases: Vec<PlanPhase>,
    /// Every task in document order; `tasks[i].index == i`.
    pub tasks: Vec<PlanTask>,
    /// Prose outside tasks and phases (overview, strategy, dependency notes), kept verbatim for
    /// the agents' prompts.
    pub context: Vec<PlanSection>,
    /// Everything that makes the plan unfit for approval. Empty for a good plan.
    pub errors: Vec<PlanError>,
}

impl ParsedPlan {
    /// The task with this key, if any.
    pub fn task(&self, key: &str) -> Option<&PlanTask> {
        self.tasks.iter().find(|t| t.key == key)
    }

    /// True when nothing stands in the way of approving the plan.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// One task of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanTask {
    /// The key as written (`1`, `2.3`, `T014`; `Task 3` and `Step 3` become `3`), or a generated
    /// one (`1`, `2.1`, ...) when the plan gives none.
    pub key: String,
    /// True when the plan did not write the key.
    pub key_generated: bool,
    /// 0-based position in document order.
    pub index: usize,
    /// 1-based source line of the task's heading or list item.
    pub line: usize,
    /// The title without checkbox, key, markers or trailing metadata.
    pub title: String,
    /// The task's detail lines as Markdown (code blocks intact), without extracted metadata.
    pub description: Option<String>,
    pub acceptance_criteria: Vec<String>,
    /// Requirement ids the task traces to (`1.2`, `FR-015`, `US1`, `§2.1`).
    pub requirement_refs: Vec<String>,
    /// Commands that check the task, from its `_Verify: <command>_` lines, in order, as written
    /// (to be run from the repository root). Absent from plans stored before checks existed,
    /// hence the default.
    #[serde(default)]
    pub checks: Vec<String>,
    /// Keys of the tasks that must complete before this one starts.
    pub depends_on: Vec<String>,
    /// Marked safe to run alongside its phase-mates (spec-kit `[P]`, cc-sdd `(P)`).
    pub parallel: bool,
    /// Marked optional (Kiro `- [ ]* 2.3`).
    pub optional: bool,
    /// A checkpoint task: a barrier after every earlier task and before every later one.
    pub checkpoint: bool,
    /// Title of the phase the task belongs to.
    pub phase: Option<String>,
    /// Key of the parent task; sub-tasks run in their top-level ancestor's thread.
    pub parent: Option<String>,
    pub status: PlanTaskStatus,
    pub estimated_effort: Option<String>,
}

/// A heading that groups tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanPhase {
    /// 0-based position among phases.
    pub index: usize,
    pub title: String,
    /// 1-based source line of the heading.
    pub line: usize,
    /// True for numbered phases (`## Phase 2: ...`): their tasks wait for the previous ordered
    /// phase to finish.
    pub ordered: bool,
    /// Prose under the heading that belongs to no task (purpose, checkpoint notes).
    pub description: Option<String>,
}

/// A section of prose that holds no task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanSection {
    /// `None` for the text before the first heading.
    pub heading: Option<String>,
    /// 1-based source line where the section starts.
    pub line: usize,
    pub body: String,
}

/// A reason to refuse the plan, with what a person needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{message}")]
pub struct PlanError {
    pub kind: PlanErrorKind,
    /// One sentence for people.
    pub message: String,
    /// The offending task keys: the task holding an unknown reference, the members of a cycle,
    /// the duplicated key.
    pub keys: Vec<String>,
    /// 1-based source lines where the offence is written, in document order.
    pub lines: Vec<usize>,
    /// The reference as written, for unknown references.
    pub reference: Option<String>,
}
