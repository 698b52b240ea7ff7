//! The texts sent to the planning agent. Pure functions of the task and the review, so the exact
//! prompt for any situation can be unit-tested and shown to users.

use crate::comment::SpecComment;
use crate::spec_output::SpecOutputError;

/// The output contract, stated to the planner in the words [`crate::spec_output`] relies on.
pub const PLANNING_SYSTEM_PROMPT: &str = "\
You are the planning agent of spectask, a spec-driven coding system. From a change request you \
write three Kiro-style documents that a human reviews before any code is written, and that coding \
agents then implement in parallel, one thread per top-level task.

Reply with ONE Markdown document made of exactly three top-level sections, in this order, each \
starting with its H1 line exactly as shown:

# Requirements: <short title>
User stories (\"As a <role>, I want <goal>, so that <benefit>\"), each followed by numbered \
acceptance criteria in EARS form, numbered <story>.<n> (1.1, 1.2, 2.1, ...): \
\"WHEN <trigger> THE SYSTEM SHALL <response>\" (also IF/WHILE/WHERE forms). End this section with \
a `## Open Questions` subsection (write \"- None.\" when there are none).

# Design: <short title>
Overview, architecture, components and interfaces, data models, error handling, testing \
strategy. Be concrete about files, modules and APIs.

# Implementation Plan: <short title>
Checkbox tasks with numeric keys, e.g.:
- [ ] 1. Create the database schema
  - What to do, in a few bullets
  - _Requirements: 1.1, 1.2_
- [ ] 2. Build the API endpoints
  - Depends on: 1
  - _Requirements: 2.1_
Sub-tasks are indented (`- [ ] 2.1 ...`) and run in their parent's thread. Every task states \
`_Requirements: ..._` and, when it needs other tasks finished first, `Depends on: <keys>`. Tasks \
without dependencies run in parallel, so split the work into independent top-level tasks where \
you can and never reference a task that does not exist or form a cycle.

Rules: no other H1 headings outside code blocks; nothing after the plan; do not ask questions \
instead of answering (put them under Open Questions).";

/// Facts about the task that go into the first planning prompt.
#[derive(Debug, Clone, Copy)]
pub struct PlanningRequest<'a> {
    pub name: &'a str,
    pub task_type: &'a str,
    pub priority: &'a str,
    /// The request in the user's words (the description, which starts as the prompt).
    pub request: &'a str,
    pub project_path: Option<&'a str>,
}

/// The first prompt of a planning session.
pub fn initial_prompt(request: PlanningRequest<'_>) -> String {
    let mut out = format!(
        "Write the requirements, design and implementation plan for this {} (priority {}).\n\n",
        request.task_type, request.priority
    );
    out.push_str(&format!("Task: {}\n\n", request.name));
    if let Some(path) = request.project_path {
        out.push_str(&format!("Project checkout: {path}\n\n"));
    }
    out.push_str("Request:\n\n");
    out.push_str(request.request.trim());
    out.push('\n');
    out
}

/// The follow-up that asks the planner to fix a reply that broke the contract.
pub fn corrective_prompt(error: &SpecOutputError) -> String {
    let mut out = String::from(
        "Your reply cannot be used because it does not follow the required format:\n\n",
    );
    for problem in &error.problems {
        out.push_str(&format!("- {problem}\n"));
    }
    out.push_str(
        "\nReply again with the complete documents: exactly three H1 sections, `# Requirements: \
         <title>`, `# Design: <title>` and `# Implementation Plan: <title>`, in that order.\n",
    );
    out
}

/// The revision request: the reviewer's open comments, anchored to their documents, and the
/// general comment.
pub fn revision_prompt(comments: &[SpecComment], general: Option<&str>, revision: i32) -> String {
    let mut out = format!(
        "A reviewer requested changes to revision {revision} of the documents. Address every point \
         below, keep what was not criticised, and reply with the complete revised documents in \
         the same three-section format.\n\n"
    );
    if let Some(general) = general.map(str::trim).filter(|g| !g.is_empty()) {
        out.push_str("General comment:\n\n");
        out.push_str(general);
        out.push_str("\n\n");
    }
    if !comments.is_empty() {
        out.push_str("Comments:\n\n");
        for (i, comment) in comments.iter().enumerate() {
            out.push_str(&format!("{}. On the {}", i + 1, comment.document.title()));
            if let Some(line) = comment.line {
                out.push_str(&format!(", line {line}"));
            }
            out.push_str(":\n");
            if let Some(quoted) = comment
                .quoted_text
                .as_deref()
                .filter(|q| !q.trim().is_empty())
            {
                for line in quoted.lines() {
                    out.push_str(&format!("   > {line}\n"));
                }
            }
            for line in comment.comment.trim().lines() {
                out.push_str(&format!("   {line}\n"));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::comment::{SpecCommentId, SpecDocument};
    use crate::ids::SpecTaskId;

    fn comment(
        document: SpecDocument,
        quoted: Option<&str>,
        line: Option<i32>,
        text: &str,
    ) -> SpecComment {
        SpecComment {
            id: SpecCommentId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            spec_task_id: SpecTaskId::from_ulid(ulid::Ulid::from_parts(1, 2)),
            document,
            quoted_text: quoted.map(str::to_owned),
            line,
            comment: text.to_owned(),
            revision: 1,
            resolved: false,
            resolved_in_revision: None,
            created_by: "alice".into(),
            created_at: Utc.timestamp_opt(0, 0).unwrap(),
            resolved_at: None,
        }
    }

    #[test]
    fn revision_prompt_carries_every_comment_and_the_general_one() {
        let prompt = revision_prompt(
            &[
                comment(
                    SpecDocument::Requirements,
                    Some("WHEN the toggle is on"),
                    Some(12),
                    "Also cover the system theme.",
                ),
                comment(SpecDocument::Plan, None, None, "Split task 2 in two."),
            ],
            Some("Good start."),
            1,
        );
        assert!(prompt.contains("revision 1"));
        assert!(prompt.contains("General comment:\n\nGood start."));
        assert!(prompt.contains("1. On the requirements, line 12:\n   > WHEN the toggle is on\n   Also cover the system theme."));
        assert!(prompt.contains("2. On the implementation plan:\n   Split task 2 in two."));
    }

    #[test]
    fn initial_and_corrective_prompts() {
        let prompt = initial_prompt(PlanningRequest {
            name: "Dark mode",
            task_type: "feature",
            priority: "high",
            request: "  Add dark mode\n",
            project_path: Some("/src/app"),
        });
        assert!(
            prompt.contains("Task: Dark mode")
                && prompt.contains("Project checkout: /src/app")
                && prompt.ends_with("Add dark mode\n")
        );
        let fix = corrective_prompt(&SpecOutputError {
            problems: vec!["the `# Design: <title>` section is missing".into()],
        });
        assert!(fix.contains("- the `# Design: <title>` section is missing"));
        assert!(PLANNING_SYSTEM_PROMPT.contains("# Implementation Plan: <short title>"));
    }
}
