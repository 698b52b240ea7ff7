//! The independent review after implementation (issue 18): when a task's `workspace_config`
//! names a `review_agent`, a reviewer of that agent profile (ideally another vendor than the
//! implementer) gets the spec, the changes and the check results once the task reaches
//! `implementation_review`, and answers a verdict per acceptance criterion through the MCP tool
//! `report_criterion_verdict`. Its verdicts join the traceability matrix.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::criteria::Criterion;
use crate::enums::string_enum;
use crate::ids::{SpecTaskId, VerdictId, WorkSessionId};
use crate::prompts::push_spec;
use crate::traceability::CriterionTrace;

/// The `workspace_config` key naming the reviewer's agent profile.
pub const REVIEW_AGENT_KEY: &str = "review_agent";

/// Longest reason a verdict may give, in bytes.
pub const MAX_VERDICT_REASON_BYTES: usize = 8 * 1024;

string_enum! {
    /// What the reviewer says about one criterion.
    pub enum ReviewVerdict as "verdict" {
        Met = "met",
        NotMet = "not_met",
        Unclear = "unclear",
    }
}

/// A reviewer's verdict on one criterion; a later one on the same criterion replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CriterionVerdict {
    pub id: VerdictId,
    pub spec_task_id: SpecTaskId,
    /// The review session that gave it.
    pub work_session_id: WorkSessionId,
    pub criterion_id: String,
    pub verdict: ReviewVerdict,
    pub reason: String,
    /// The reviewer's agent profile.
    pub reviewer: String,
    pub created_at: DateTime<Utc>,
}

/// The reviewer profile a task's `workspace_config` names, if any; an error names what is wrong.
pub fn review_agent(config: Option<&serde_json::Value>) -> Result<Option<String>, String> {
    match config.and_then(|config| config.get(REVIEW_AGENT_KEY)) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(name)) if !name.trim().is_empty() && name.len() <= 255 => {
            Ok(Some(name.clone()))
        }
        Some(_) => Err(format!(
            "workspace_config.{REVIEW_AGENT_KEY} must be the name of an agent profile (1 to 255 characters)"
        )),
    }
}

/// What the reviewer's prompt is made of.
#[derive(Debug, Clone, Copy)]
pub struct ReviewBrief<'a> {
    pub task_name: &'a str,
    pub requirements: &'a str,
    pub design: &'a str,
    pub plan: &'a str,
    /// The matrix's rows: each criterion with its tasks and their latest check runs.
    pub criteria: &'a [CriterionTrace],
    /// Where the changes are and how to read them.
    pub changes: &'a str,
}

/// The reviewer's first prompt: the spec, where the changes are, every criterion with the check
/// results traced to it, and the tool to answer with.
pub fn review_prompt(brief: ReviewBrief<'_>) -> String {
    let mut out = format!(
        "You are the independent reviewer of the implementation of \"{}\". Other agents wrote \
         the code; your job is to judge, for every acceptance criterion below, whether the \
         implementation meets it. Read the changes and the code, run read-only commands if you \
         need to (tests included), but do not edit files.\n\n\
         For each criterion call the MCP tool `report_criterion_verdict` of the `spectask` server \
         once, with `criterion_id`, `verdict` (`met`, `not_met` or `unclear`) and a short \
         `reason` naming the evidence (a file and line, a test, a command's output). Passing \
         checks are evidence, not proof. When every criterion has a verdict, end your turn with a \
         one-paragraph summary.\n\n",
        brief.task_name
    );
    out.push_str("## The changes\n\n");
    out.push_str(brief.changes.trim());
    out.push_str("\n\n## Acceptance criteria\n\n");
    for criterion in brief.criteria {
        out.push_str(&format!("- `{}`: {}\n", criterion.id, criterion.text));
        if criterion.tasks.is_empty() {
            out.push_str("  - no plan task names it\n");
        }
        for task in &criterion.tasks {
            out.push_str(&format!(
                "  - task {} ({}): {}\n",
                task.key,
                task.status.as_str(),
                task.title
            ));
            for run in &task.check_runs {
                out.push_str(&format!(
                    "    - check `{}`: {} (round {})\n",
                    run.command,
                    run.status.as_str(),
                    run.round
                ));
            }
        }
    }
    out.push('\n');
    push_spec(
        &mut out,
        [brief.requirements, brief.design, brief.plan],
        "Implementation plan",
    );
    out
}

/// Whether `id` names one of `criteria` (the tool refuses verdicts on anything else).
pub fn is_criterion(criteria: &[Criterion], id: &str) -> bool {
    criteria.iter().any(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_review_agent_is_an_optional_profile_name() {
        assert_eq!(review_agent(None), Ok(None));
        assert_eq!(review_agent(Some(&json!({"check": "x"}))), Ok(None));
        assert_eq!(
            review_agent(Some(&json!({"review_agent": "codex"}))),
            Ok(Some("codex".to_owned()))
        );
        for bad in [
            json!({"review_agent": ""}),
            json!({"review_agent": 1}),
            json!({"review_agent": "x".repeat(256)}),
        ] {
            assert!(
                review_agent(Some(&bad))
                    .unwrap_err()
                    .contains("review_agent")
            );
        }
    }

    #[test]
    fn the_prompt_lists_every_criterion_with_its_checks_and_the_tool() {
        let criteria = [CriterionTrace {
            id: "1.1".into(),
            requirement: Some("1".into()),
            text: "WHEN x THE SYSTEM SHALL y".into(),
            coverage: crate::traceability::CriterionCoverage::Uncovered,
            verdict: None,
            tasks: vec![],
        }];
        let prompt = review_prompt(ReviewBrief {
            task_name: "Greeting",
            requirements: "# Requirements\n\nR",
            design: "D",
            plan: "P",
            criteria: &criteria,
            changes: "Run `git diff a b`.",
        });
        for needle in [
            "report_criterion_verdict",
            "`1.1`: WHEN x THE SYSTEM SHALL y",
            "no plan task names it",
            "Run `git diff a b`.",
            "# Requirements",
        ] {
            assert!(prompt.contains(needle), "missing {needle}");
        }
    }
}
