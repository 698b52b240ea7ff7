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
  - _Verify: cargo test -p api endpoints_
Sub-tasks are indented (`- [ ] 2.1 ...`) and run in their parent's thread. Every task states \
`_Requirements: ..._` and, when it needs other tasks finished first, `Depends on: <keys>`. \
When a command can check a task's result (a test command run from the repository root), the task \
states it on a `_Verify: <command>_` line, one line per command. Tasks \
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
    out.push_str(&review_points(comments, general));
    out
}

/// The reviewer's general comment and open comments, each anchored to its document, as they are
/// quoted in a revision prompt.
pub fn review_points(comments: &[SpecComment], general: Option<&str>) -> String {
    let mut out = String::new();
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

/// What a work session's first turn tells its agent.
#[derive(Debug, Clone, Copy)]
pub struct ImplementationBrief<'a> {
    pub task_name: &'a str,
    pub requirements: &'a str,
    pub design: &'a str,
    pub plan: &'a str,
    /// The work session's own assignment.
    pub session_name: &'a str,
    /// `(key, title)` of the session's top-level task, when it comes from the plan.
    pub task: Option<(&'a str, &'a str)>,
    pub task_description: Option<&'a str>,
    /// `(key, title)` of its sub-tasks, done in this same thread.
    pub subtasks: &'a [(&'a str, &'a str)],
    pub acceptance_criteria: Option<&'a str>,
    pub requirement_refs: &'a [String],
    /// The check commands spectask runs after each of the session's turns (its tasks' and the
    /// project's).
    pub checks: &'a [String],
    /// For a spawned session: the session that spawned it, and why.
    pub spawned_from: Option<&'a str>,
}

/// The first prompt of an implementation thread: the spec for context, its own task in detail,
/// and the rule to stay within it.
pub fn implementation_prompt(brief: ImplementationBrief<'_>) -> String {
    let mut out = format!(
        "You are one of several coding agents implementing the approved spec for \"{}\" in parallel, \
         each in its own thread of the same workspace.\n\n",
        brief.task_name
    );
    out.push_str("## Your assignment\n\n");
    match brief.task {
        Some((key, title)) => out.push_str(&format!("Task {key}: {title}\n")),
        None => out.push_str(&format!("{}\n", brief.session_name)),
    }
    if let Some(parent) = brief.spawned_from {
        out.push_str(&format!(
            "(Spawned during implementation by work session {parent}.)\n"
        ));
    }
    if let Some(description) = brief
        .task_description
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        out.push_str(&format!("\n{description}\n"));
    }
    if !brief.subtasks.is_empty() {
        out.push_str("\nSub-tasks, in this thread:\n");
        for (key, title) in brief.subtasks {
            out.push_str(&format!("- {key}. {title}\n"));
        }
    }
    if let Some(criteria) = brief
        .acceptance_criteria
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        out.push_str(&format!("\nAcceptance criteria:\n{criteria}\n"));
    }
    if !brief.requirement_refs.is_empty() {
        out.push_str(&format!(
            "\nRequirements it implements: {}\n",
            brief.requirement_refs.join(", ")
        ));
    }
    if !brief.checks.is_empty() {
        out.push_str(
            "\nWhen you end your turn, spectask runs these checks from the working directory; \
             your work counts as done only when all of them pass (a failing one comes back to you \
             with its output):\n",
        );
        for check in brief.checks {
            out.push_str(&format!("- `{check}`\n"));
        }
    }
    out.push_str(
        "\nStay within your assignment: other tasks of the plan are being done by other agents at \
         the same time, in the same workspace. Do not edit what belongs to them; if your task needs a \
         change elsewhere, make the smallest one and say so. When your assignment is complete, end \
         your turn with a short summary of what you changed and how you verified it.\n\n",
    );
    push_spec(
        &mut out,
        [brief.requirements, brief.design, brief.plan],
        "The whole plan, for orientation",
    );
    out
}

/// Appends the three spec documents under `## Requirements`, `## Design` and `## {plan_heading}`.
pub(crate) fn push_spec(
    out: &mut String,
    [requirements, design, plan]: [&str; 3],
    plan_heading: &str,
) {
    out.push_str("## Requirements\n\n");
    out.push_str(requirements.trim());
    out.push_str("\n\n## Design\n\n");
    out.push_str(design.trim());
    out.push_str(&format!("\n\n## {plan_heading}\n\n"));
    out.push_str(plan.trim());
    out.push('\n');
}

/// The follow-up sent after a failed implementation turn.
pub fn retry_note(assignment: &str, reason: &str, attempt: i32) -> String {
    format!(
        "The previous attempt at your assignment ({assignment}) did not finish ({reason}). This is \
         retry {attempt}. Check the state of the workspace, then continue your assignment from where \
         it stands and end your turn when it is complete.\n"
    )
}

/// Prefix for a prompt re-sent because its earlier attempt was interrupted (spectask or the agent
/// restarted while the agent was working on it).
pub const INTERRUPTED_NOTE: &str = "(spectask: your earlier attempt at the prompt below was interrupted (a restart of \
spectask or of the agent). Check the workspace for what you already did, then continue.)\n\n";

/// What an agent already did through spectask's MCP tools during the earlier, interrupted
/// attempts at a turn, read from the store (its events) when the turn is re-run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EarlierToolCalls {
    /// Work sessions it spawned: `(id, name)`, in order.
    pub spawned: Vec<(String, String)>,
    /// Progress it reported: `(task key, status)`, in order.
    pub reported: Vec<(String, String)>,
    /// The summary it declared its work complete with.
    pub completion: Option<String>,
    /// The reason it gave up with.
    pub gave_up: Option<String>,
}

impl EarlierToolCalls {
    pub fn is_empty(&self) -> bool {
        self.spawned.is_empty()
            && self.reported.is_empty()
            && self.completion.is_none()
            && self.gave_up.is_none()
    }
}

/// The note prefixed to a re-run prompt: [`INTERRUPTED_NOTE`], extended with what the earlier
/// attempts already did through spectask's tools, so the agent does not do it again (a repeat
/// would change nothing, but costs a turn's worth of work).
pub fn interrupted_note(earlier: &EarlierToolCalls) -> String {
    if earlier.is_empty() {
        return INTERRUPTED_NOTE.to_owned();
    }
    let mut done = Vec::new();
    for (id, name) in &earlier.spawned {
        done.push(format!("- spawned the work session \"{name}\" ({id})"));
    }
    for (key, status) in &earlier.reported {
        done.push(format!("- reported task {key} as {status}"));
    }
    if let Some(summary) = &earlier.completion {
        done.push(format!(
            "- declared this work session complete: \"{}\"",
            summary.trim()
        ));
    }
    if let Some(reason) = &earlier.gave_up {
        done.push(format!(
            "- gave up this work session: \"{}\"",
            reason.trim()
        ));
    }
    format!(
        "(spectask: your earlier attempt at the prompt below was interrupted (a restart of \
spectask or of the agent). Check the workspace for what you already did, then continue. Through \
spectask's tools your earlier attempt already:\n{}\nThese are recorded; do not do them again.)\n\n",
        done.join("\n")
    )
}

/// The follow-up carrying a reviewer's requested changes.
pub fn review_changes_prompt(comment: &str) -> String {
    format!(
        "A reviewer looked at the implementation and asked for changes:\n\n{}\n\nMake them within your \
         assignment, then end your turn with a summary.\n",
        comment.trim()
    )
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
    fn implementation_prompt_carries_the_spec_and_the_assignment() {
        let refs = vec!["1.1".to_owned(), "2.3".to_owned()];
        let prompt = implementation_prompt(ImplementationBrief {
            task_name: "Auth",
            requirements: "# Requirements: Auth\n\nR",
            design: "# Design: Auth\n\nD",
            plan: "# Implementation Plan: Auth\n\n- [ ] 1. Schema\n- [ ] 2. API",
            session_name: "API",
            task: Some(("2", "API")),
            task_description: Some("Endpoints for login."),
            subtasks: &[("2.1", "Login"), ("2.2", "Logout")],
            acceptance_criteria: Some("- WHEN a user logs in THE SYSTEM SHALL set a cookie"),
            requirement_refs: &refs,
            checks: &["cargo test -p auth".to_owned()],
            spawned_from: None,
        });
        for needle in [
            "Task 2: API",
            "spectask runs these checks",
            "- `cargo test -p auth`",
            "- 2.1. Login",
            "Requirements it implements: 1.1, 2.3",
            "Stay within your assignment",
            "# Requirements: Auth",
            "# Design: Auth",
            "- [ ] 1. Schema",
            "SHALL set a cookie",
        ] {
            assert!(prompt.contains(needle), "missing {needle}");
        }
        assert!(
            retry_note("2. API", "the agent failed", 2)
                .contains("(2. API) did not finish (the agent failed). This is retry 2")
        );
        assert!(review_changes_prompt("  rename it ").contains("\n\nrename it\n\n"));
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

    #[test]
    fn the_plan_example_parses_into_what_it_shows() {
        let start = PLANNING_SYSTEM_PROMPT.find("- [ ] 1. Create").unwrap();
        let end = PLANNING_SYSTEM_PROMPT
            .find("Sub-tasks are indented")
            .unwrap();
        let plan = crate::plan::parse_plan(&PLANNING_SYSTEM_PROMPT[start..end]);
        assert!(plan.is_valid(), "{:?}", plan.errors);
        let second = plan.task("2").unwrap();
        assert_eq!(second.depends_on, ["1"]);
        assert_eq!(second.requirement_refs, ["2.1"]);
        assert_eq!(second.checks, ["cargo test -p api endpoints"]);
        assert_eq!(second.description, None);
        assert!(
            PLANNING_SYSTEM_PROMPT.contains("`_Verify: <command>_` line, one line per command")
        );
    }

    #[test]
    fn the_interrupted_note_lists_what_the_earlier_attempt_did() {
        assert_eq!(
            interrupted_note(&EarlierToolCalls::default()),
            INTERRUPTED_NOTE
        );
        let note = interrupted_note(&EarlierToolCalls {
            spawned: vec![("stws_1".into(), "Security audit".into())],
            reported: vec![("1.1".into(), "completed".into())],
            completion: Some("all done ".into()),
            gave_up: None,
        });
        assert!(
            note.starts_with("(spectask: your earlier attempt"),
            "{note}"
        );
        assert!(
            note.contains("- spawned the work session \"Security audit\" (stws_1)\n"),
            "{note}"
        );
        assert!(
            note.contains("- reported task 1.1 as completed\n"),
            "{note}"
        );
        assert!(
            note.contains("- declared this work session complete: \"all done\"\n"),
            "{note}"
        );
        assert!(note.ends_with("do not do them again.)\n\n"), "{note}");
    }
}
