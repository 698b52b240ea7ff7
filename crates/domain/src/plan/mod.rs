//! The implementation-plan parser (issue 3): any real-world `tasks.md` (Kiro, spec-kit, heading
//! plans, plain numbered lists, in any language) into ordered tasks with parents, phases,
//! requirement references, checks (`_Verify: <command>_`) and a dependency graph; and progress
//! written back into the Markdown.
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
// Shared with `crate::criteria`, which reads requirements documents with the same outline.
pub(crate) mod blocks;
mod deps;
mod extract;
mod head;
mod model;
mod progress;
mod refs;
mod rules;
mod side;
pub(crate) mod text;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_lines_become_checks_and_leave_the_description() {
        let plan = parse_plan(
            "- [ ] 1. Login endpoint _Verify: cargo test -p auth login_\n\
             \x20 - Add the handler\n\
             \x20 - _Requirements: 1.1_\n\
             \x20 - Verify: `npm test`\n\
             \x20 - _Verify: cargo test -p auth login_\n\
             \x20 - Verify: Tests pass and the page loads\n\
             - [ ] 2. Logout\n\
             \x20 - Verify:\n\
             \x20   - `cargo test -p auth logout`\n\
             \x20   - `make e2e`\n\
             \n\
             ## Task 3: Docs\n\
             \n\
             Write them.\n\
             \n\
             _Verify: mdbook build docs_\n",
        );
        let checks: Vec<(&str, Vec<&str>)> = plan
            .tasks
            .iter()
            .map(|t| {
                (
                    t.key.as_str(),
                    t.checks.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            checks,
            vec![
                ("1", vec!["cargo test -p auth login", "npm test"]),
                ("2", vec!["cargo test -p auth logout", "make e2e"]),
                ("3", vec!["mdbook build docs"]),
            ]
        );
        let first = &plan.tasks[0];
        assert_eq!(first.title, "Login endpoint");
        assert_eq!(first.requirement_refs, ["1.1"]);
        assert_eq!(
            first.description.as_deref(),
            Some("- Add the handler\n- Verify: Tests pass and the page loads")
        );
        assert_eq!(plan.tasks[1].description, None);
        assert_eq!(plan.tasks[2].description.as_deref(), Some("Write them."));
    }

    #[test]
    fn plans_stored_without_checks_still_deserialise() {
        let plan = parse_plan("- [ ] 1. Schema\n");
        let mut json = serde_json::to_value(&plan).unwrap();
        if let Some(task) = json["tasks"][0].as_object_mut() {
            task.remove("checks");
        }
        let back: ParsedPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
    }
}
