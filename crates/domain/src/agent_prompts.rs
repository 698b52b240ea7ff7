//! The prompts of planning run by a coding agent (an ACP agent profile named by a task's
//! `spec_agent`). Unlike the LLM planner, which answers with one reply, the agent works in the
//! project checkout: it explores the code, then writes the three documents as files into the
//! task's spec directory. The format rules are the LLM planner's; only the delivery differs.

use crate::comment::SpecComment;
use crate::prompts::{PlanningRequest, review_points};
use crate::spec_output::SpecOutputError;

/// Where the agent writes the three documents: absolute paths inside the spec directory.
#[derive(Debug, Clone, Copy)]
pub struct SpecFiles<'a> {
    pub requirements: &'a str,
    pub design: &'a str,
    pub tasks: &'a str,
}

impl SpecFiles<'_> {
    fn listing(&self) -> String {
        format!(
            "- {} (the requirements)\n- {} (the design)\n- {} (the implementation plan)\n",
            self.requirements, self.design, self.tasks
        )
    }
}

/// The document format, stated in the words [`crate::spec_output`] checks.
const FILE_FORMAT: &str = "\
Each file holds one complete document that starts with its H1 line exactly as shown; use no other \
H1 heading outside code blocks.

requirements.md starts with `# Requirements: <short title>`. User stories (\"As a <role>, I want \
<goal>, so that <benefit>\"), each followed by numbered acceptance criteria in EARS form, \
numbered <story>.<n> (1.1, 1.2, 2.1, ...): \"WHEN <trigger> THE SYSTEM SHALL <response>\" (also \
IF/WHILE/WHERE forms). End it with a `## Open Questions` subsection (write \"- None.\" when there \
are none).

design.md starts with `# Design: <short title>`. Overview, architecture, components and \
interfaces, data models, error handling, testing strategy. Be concrete about the files, modules \
and APIs of this codebase.

tasks.md starts with `# Implementation Plan: <short title>`. Checkbox tasks with numeric keys, \
e.g.:
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
without dependencies run in parallel (one coding agent each), so split the work into independent \
top-level tasks where you can and never reference a task that does not exist or form a cycle.
";

/// The first prompt of a planning session run by an agent.
pub fn agent_planning_prompt(request: PlanningRequest<'_>, files: SpecFiles<'_>) -> String {
    let mut out = format!(
        "You are the planning agent of spectask, a spec-driven coding system. Plan this {} \
         (priority {}) for the project checkout you are working in",
        request.task_type, request.priority
    );
    if let Some(path) = request.project_path {
        out.push_str(&format!(" ({path})"));
    }
    out.push_str(
        ". A human reviews your documents before any code is written; coding agents then implement \
         them in parallel, one thread per top-level task.\n\n\
         First explore the workspace: read the code the request touches, so that the documents fit \
         the code as it is. Do not change any project file. Then write these three files with your \
         file-writing tool, each one complete:\n\n",
    );
    out.push_str(&files.listing());
    out.push('\n');
    out.push_str(FILE_FORMAT);
    out.push_str(
        "\nWhen the three files are written, end your turn with a short summary for the reviewer; \
         the files are checked against these rules when your turn ends. Put questions under Open \
         Questions instead of asking them.\n\n",
    );
    out.push_str(&format!("Task: {}\n\nRequest:\n\n", request.name));
    out.push_str(request.request.trim());
    out.push('\n');
    out
}

/// The follow-up asking the agent to fix files that broke the contract (or were not written).
pub fn agent_corrective_prompt(error: &SpecOutputError, files: SpecFiles<'_>) -> String {
    let mut out = String::from(
        "The documents you wrote cannot be used because they do not follow the required format:\n\n",
    );
    for problem in &error.problems {
        out.push_str(&format!("- {problem}\n"));
    }
    out.push_str("\nFix them by rewriting the files, each one complete:\n\n");
    out.push_str(&files.listing());
    out.push_str(
        "\nrequirements.md starts with `# Requirements: <title>`, design.md with `# Design: \
         <title>`, tasks.md with `# Implementation Plan: <title>` followed by checkbox tasks \
         (`- [ ] 1. Title`). Then end your turn.\n",
    );
    out
}

/// The revision request for an agent: the reviewer's points, and the files to revise in place.
pub fn agent_revision_prompt(
    comments: &[SpecComment],
    general: Option<&str>,
    revision: i32,
    files: SpecFiles<'_>,
) -> String {
    let mut out = format!(
        "A reviewer requested changes to revision {revision} of the documents. Address every point \
         below and keep what was not criticised. The current documents are in these files; revise \
         them in place, each one complete and in the same format, then end your turn with a short \
         summary of what you changed:\n\n"
    );
    out.push_str(&files.listing());
    out.push('\n');
    out.push_str(&review_points(comments, general));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::PLANNING_SYSTEM_PROMPT;

    const FILES: SpecFiles<'static> = SpecFiles {
        requirements: "/src/app/.spectask/specs/spt_1/requirements.md",
        design: "/src/app/.spectask/specs/spt_1/design.md",
        tasks: "/src/app/.spectask/specs/spt_1/tasks.md",
    };

    #[test]
    fn the_planning_prompt_names_the_files_and_the_format() {
        let prompt = agent_planning_prompt(
            PlanningRequest {
                name: "Dark mode",
                task_type: "feature",
                priority: "high",
                request: "  Add dark mode\n",
                project_path: Some("/src/app"),
            },
            FILES,
        );
        for needle in [
            "Plan this feature (priority high) for the project checkout you are working in (/src/app)",
            "First explore the workspace",
            "- /src/app/.spectask/specs/spt_1/requirements.md (the requirements)",
            "- /src/app/.spectask/specs/spt_1/tasks.md (the implementation plan)",
            "`# Implementation Plan: <short title>`",
            "Task: Dark mode",
        ] {
            assert!(prompt.contains(needle), "missing {needle}");
        }
        assert!(prompt.ends_with("Add dark mode\n"));
    }

    #[test]
    fn the_format_rules_are_the_llm_planners() {
        // The plan example and its rules are shared word for word with the LLM planner.
        let start = PLANNING_SYSTEM_PROMPT.find("- [ ] 1. Create").unwrap();
        let end = PLANNING_SYSTEM_PROMPT
            .find("run in their parent's thread.")
            .unwrap();
        let example = &PLANNING_SYSTEM_PROMPT[start..end];
        assert!(FILE_FORMAT.contains(example), "{example}");
        assert!(FILE_FORMAT.contains("never reference a task that does not exist or form a cycle"));
        assert!(FILE_FORMAT.contains("\"WHEN <trigger> THE SYSTEM SHALL <response>\""));
        assert!(FILE_FORMAT.contains(
            "When a command can check a task's result (a test command run from the repository \
             root), the task states it on a `_Verify: <command>_` line, one line per command."
        ));
    }

    #[test]
    fn corrective_and_revision_prompts_point_at_the_files() {
        let fix = agent_corrective_prompt(
            &SpecOutputError {
                problems: vec!["the `# Design: <title>` section is missing".into()],
            },
            FILES,
        );
        assert!(fix.contains("- the `# Design: <title>` section is missing"));
        assert!(fix.contains("- /src/app/.spectask/specs/spt_1/design.md (the design)"));
        let revise = agent_revision_prompt(&[], Some("Split task 2."), 3, FILES);
        assert!(revise.contains("revision 3"));
        assert!(revise.contains("revise them in place"));
        assert!(revise.contains("General comment:\n\nSplit task 2."));
        assert!(revise.contains("/src/app/.spectask/specs/spt_1/tasks.md"));
    }
}
