//! The implementation-plan parser (issue 3): any real-world `tasks.md` (Kiro, spec-kit, heading
//! plans, plain numbered lists, in any language) into ordered tasks with parents, phases,
//! requirement references and a dependency graph; and progress written back into the Markdown.
//!
//! Pure functions: no I/O. Markdown structure comes from pulldown-cmark (with source offsets);
//! only the text of one heading, item or line is matched by hand.
//!
//! Pipeline: [`blocks`] builds an outline of the document, [`rules`] takes the document-wide
//! decisions (with [`side`] telling checklists beside the plan, such as open questions, from
//! it), [`extract`] recognises tasks in it (with [`head`] reading each task's first line),
//! [`assemble`] settles keys and parents, [`deps`] resolves and completes dependencies and finds
//! cycles, [`progress`] rewrites checkboxes.

mod assemble;
mod blocks;
mod deps;
mod extract;
mod head;
mod model;
mod progress;
mod refs;
mod rules;
mod side;
mod text;
mod words;

pub use model::{
    ParsedPlan, PlanError, PlanErrorKind, PlanFormat, PlanPhase, PlanSection, PlanTask,
    PlanTaskStatus,
};
pub use progress::{
    RenderedProgress, SkipReason, SkippedUpdate, render_progress, render_progress_report,
};

/// Parses an implementation plan. Never fails and never panics: a plan with problems still comes
/// back whole, with [`ParsedPlan::errors`] saying what stops it from being approved; a plan with
/// no recognisable task is one task holding the whole text.
pub fn parse_plan(markdown: &str) -> ParsedPlan {
    assemble::analyse(markdown).plan
}
