//! The planning output contract: one Markdown reply with exactly three top-level sections, in
//! order, each opened by its H1 line — `# Requirements: <title>`, `# Design: <title>`,
//! `# Implementation Plan: <title>`. This module splits a reply at those lines (an H1 inside a
//! fenced code block, a quote or a list does not count; text before the first is ignored) and
//! checks that the result can be reviewed and, later, implemented.
//!
//! Documents written elsewhere (a Kiro or spec-kit folder) are checked by [`check_imported_specs`]
//! instead: they keep their own headings (`# Requirements Document`, `# Feature Specification: …`),
//! so only what makes them reviewable and implementable is required, exactly as for a planner:
//! three documents with content, and a plan that parses into tasks without errors.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

use crate::limits::MAX_SPEC_DOCUMENT_BYTES;
use crate::plan::{ParsedPlan, PlanError, PlanErrorKind, PlanFormat, parse_plan};

/// The three documents of a valid reply.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecDocuments {
    /// The title from the `# Requirements:` line, if it has one.
    pub title: Option<String>,
    pub requirements_spec: String,
    pub technical_design: String,
    pub implementation_plan: String,
    pub plan: ParsedPlan,
}

/// Why a reply breaks the contract: each problem is one sentence the planner can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the planning output is invalid: {}", problems.join("; "))]
pub struct SpecOutputError {
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Requirements,
    Design,
    Plan,
}

impl Section {
    const ALL: [Section; 3] = [Section::Requirements, Section::Design, Section::Plan];

    fn keyword(self) -> &'static str {
        match self {
            Section::Requirements => "requirements",
            Section::Design => "design",
            Section::Plan => "implementation plan",
        }
    }

    fn contract_line(self) -> &'static str {
        match self {
            Section::Requirements => "# Requirements: <title>",
            Section::Design => "# Design: <title>",
            Section::Plan => "# Implementation Plan: <title>",
        }
    }

    /// Recognises a heading's text, returning the title after the keyword.
    fn recognise(text: &str) -> Option<(Section, String)> {
        let trimmed = text.trim();
        let lower = trimmed.to_lowercase();
        for section in Section::ALL {
            let keyword = section.keyword();
            if let Some(rest) = lower.strip_prefix(keyword) {
                let rest_original = &trimmed[trimmed.len() - rest.len()..];
                let mut chars = rest_original.chars();
                match chars.next() {
                    None => return Some((section, String::new())),
                    Some(c) if matches!(c, ':' | '-' | '–' | '—' | '|') || c.is_whitespace() => {
                        let title = rest_original
                            .trim_start_matches(|c: char| {
                                matches!(c, ':' | '-' | '–' | '—' | '|') || c.is_whitespace()
                            })
                            .trim()
                            .to_owned();
                        return Some((section, title));
                    }
                    Some(_) => {}
                }
            }
        }
        None
    }
}

/// A recognised top-level H1: where its line starts and what it opens.
struct Opening {
    section: Section,
    title: String,
    offset: usize,
}

fn top_level_h1s(reply: &str) -> Vec<Opening> {
    let mut openings = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<(usize, String)> = None;
    for (event, range) in Parser::new(reply).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading {
                level: HeadingLevel::H1,
                ..
            }) if depth == 0 => {
                current = Some((range.start, String::new()));
            }
            Event::End(TagEnd::Heading(HeadingLevel::H1)) => {
                if let Some((offset, text)) = current.take()
                    && let Some((section, title)) = Section::recognise(&text)
                {
                    openings.push(Opening {
                        section,
                        title,
                        offset,
                    });
                }
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some((_, buffer)) = current.as_mut() {
                    buffer.push_str(&text);
                }
            }
            Event::Start(
                Tag::BlockQuote(_) | Tag::List(_) | Tag::Item | Tag::FootnoteDefinition(_),
            ) => depth += 1,
            Event::End(
                TagEnd::BlockQuote(_) | TagEnd::List(_) | TagEnd::Item | TagEnd::FootnoteDefinition,
            ) => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    openings
}

/// Splits and validates a planning reply.
pub fn split_spec_reply(reply: &str) -> Result<SpecDocuments, SpecOutputError> {
    let openings = top_level_h1s(reply);
    let mut problems = Vec::new();
    for section in Section::ALL {
        match openings.iter().filter(|o| o.section == section).count() {
            0 => problems.push(format!(
                "the `{}` section is missing",
                section.contract_line()
            )),
            1 => {}
            n => problems.push(format!(
                "there are {n} `{}` sections; write exactly one",
                section.contract_line()
            )),
        }
    }
    if !problems.is_empty() {
        return Err(SpecOutputError { problems });
    }
    let order: Vec<Section> = openings.iter().map(|o| o.section).collect();
    if order != Section::ALL {
        return Err(SpecOutputError {
            problems: vec![
                "the sections are out of order; write Requirements, then Design, then Implementation Plan".into(),
            ],
        });
    }
    let body = |i: usize| -> &str {
        let end = openings.get(i + 1).map_or(reply.len(), |o| o.offset);
        reply[openings[i].offset..end].trim()
    };
    let (requirements, design, plan_text) = (body(0), body(1), body(2));
    for (i, text) in [requirements, design, plan_text].iter().enumerate() {
        // The heading alone is not a document.
        if text.lines().skip(1).all(|l| l.trim().is_empty()) {
            problems.push(format!(
                "the `{}` section is empty",
                Section::ALL[i].contract_line()
            ));
        }
    }
    let plan = parse_plan(plan_text);
    if plan.tasks.is_empty() || plan.format == PlanFormat::Unstructured {
        problems.push(
            "the implementation plan has no tasks; write checkbox tasks like `- [ ] 1. Title` with \
             `_Requirements: …_` and `Depends on: …` lines"
                .into(),
        );
    }
    for error in &plan.errors {
        let lines = error
            .lines
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        problems.push(format!(
            "implementation plan: {} (plan lines {lines})",
            error.message
        ));
    }
    if !problems.is_empty() {
        return Err(SpecOutputError { problems });
    }
    let title = Some(openings[0].title.clone()).filter(|t| !t.is_empty());
    Ok(SpecDocuments {
        title,
        requirements_spec: requirements.to_owned(),
        technical_design: design.to_owned(),
        implementation_plan: plan_text.to_owned(),
        plan,
    })
}

/// Validates the three documents an agent wrote as separate files (requirements, design, plan):
/// they are joined in order and checked by [`split_spec_reply`], so a file-based plan meets
/// exactly the contract of a single reply.
pub fn split_spec_files(
    requirements: &str,
    design: &str,
    plan: &str,
) -> Result<SpecDocuments, SpecOutputError> {
    let joined = format!(
        "{}\n\n{}\n\n{}\n",
        requirements.trim(),
        design.trim(),
        plan.trim()
    );
    split_spec_reply(&joined)
}

/// Why imported documents cannot become a revision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportedSpecsError {
    /// A document is blank (`field` names it).
    #[error("{field} is empty")]
    Blank { field: &'static str },
    /// A document is over [`MAX_SPEC_DOCUMENT_BYTES`].
    #[error("{field} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        field: &'static str,
        size: usize,
        limit: usize,
    },
    /// The plan does not parse into tasks, or its tasks have errors: the parser's own errors
    /// (a plan with no task is one `empty_plan` error).
    #[error("the implementation plan cannot be approved: {}", errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    Plan { errors: Vec<PlanError> },
}

/// Checks three documents written elsewhere as a planner's output is checked: each has content
/// (and at most [`MAX_SPEC_DOCUMENT_BYTES`]), and the plan parses into structured tasks with no
/// error. Returns the parsed plan. The documents' headings are theirs: no H1 line is required.
pub fn check_imported_specs(
    requirements: &str,
    design: &str,
    plan: &str,
) -> Result<ParsedPlan, ImportedSpecsError> {
    let documents = [
        ("requirements_spec", requirements),
        ("technical_design", design),
        ("implementation_plan", plan),
    ];
    for (field, text) in documents {
        if text.len() > MAX_SPEC_DOCUMENT_BYTES {
            return Err(ImportedSpecsError::TooLarge {
                field,
                size: text.len(),
                limit: MAX_SPEC_DOCUMENT_BYTES,
            });
        }
    }
    for (field, text) in documents {
        if text.trim().is_empty() {
            return Err(ImportedSpecsError::Blank { field });
        }
    }
    let parsed = parse_plan(plan);
    if parsed.tasks.is_empty() || parsed.format == PlanFormat::Unstructured {
        return Err(ImportedSpecsError::Plan {
            errors: vec![PlanError {
                kind: PlanErrorKind::EmptyPlan,
                message: "the implementation plan has no tasks; write checkbox tasks like \
                          `- [ ] 1. Title` (Kiro) or `- [ ] T001 Title` (spec-kit)"
                    .into(),
                keys: Vec::new(),
                lines: Vec::new(),
                reference: None,
            }],
        });
    }
    if !parsed.errors.is_empty() {
        return Err(ImportedSpecsError::Plan {
            errors: parsed.errors,
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Sure! Here are the documents.\n\n\
# Requirements: Dark mode\n\n## User stories\n\n1. As a user I want dark mode.\n\n\
### Acceptance criteria\n\n1.1 WHEN the toggle is on THE SYSTEM SHALL use dark colours.\n\n## Open Questions\n\n- None.\n\n\
# Design: Dark mode\n\nA theme context.\n\n```markdown\n# Requirements: not a section\n```\n\n\
# Implementation Plan: Dark mode\n\n- [ ] 1. Add the theme context\n  - _Requirements: 1.1_\n\
- [ ] 2. Add the toggle\n  - Depends on: 1\n  - _Requirements: 1.1_\n";

    #[test]
    fn splits_a_good_reply_at_the_three_h1_lines() {
        let docs = split_spec_reply(GOOD).unwrap();
        assert_eq!(docs.title.as_deref(), Some("Dark mode"));
        assert!(
            docs.requirements_spec
                .starts_with("# Requirements: Dark mode")
        );
        assert!(docs.requirements_spec.ends_with("- None."));
        assert!(docs.technical_design.starts_with("# Design: Dark mode"));
        // The H1 inside the fenced block stays inside the design.
        assert!(
            docs.technical_design
                .contains("# Requirements: not a section")
        );
        assert!(
            docs.implementation_plan
                .starts_with("# Implementation Plan: Dark mode")
        );
        assert_eq!(docs.plan.tasks.len(), 2);
        assert_eq!(docs.plan.tasks[1].depends_on, ["1"]);
    }

    #[test]
    fn reports_missing_duplicate_and_misordered_sections() {
        let err = split_spec_reply("# Requirements: x\n\ntext\n").unwrap_err();
        assert_eq!(err.problems.len(), 2);
        assert!(err.problems[0].contains("# Design"));
        let twice = format!("{GOOD}\n# Design: again\n\nmore\n");
        assert!(split_spec_reply(&twice).unwrap_err().problems[0].contains("2 `# Design"));
        let swapped = "# Design: d\n\nx\n\n# Requirements: r\n\ny\n\n# Implementation Plan: p\n\n- [ ] 1. A\n";
        assert!(split_spec_reply(swapped).unwrap_err().problems[0].contains("out of order"));
    }

    #[test]
    fn quoted_or_listed_h1s_do_not_count() {
        let quoted =
            "> # Requirements: r\n\n# Design: d\n\nx\n\n# Implementation Plan: p\n\n- [ ] 1. A\n";
        assert!(split_spec_reply(quoted).unwrap_err().problems[0].contains("# Requirements"));
    }

    #[test]
    fn rejects_plans_without_tasks_or_with_broken_references() {
        let no_tasks = GOOD.replace("- [ ] 1. Add the theme context\n  - _Requirements: 1.1_\n- [ ] 2. Add the toggle\n  - Depends on: 1\n  - _Requirements: 1.1_\n", "We will do it.\n");
        assert!(
            split_spec_reply(&no_tasks)
                .unwrap_err()
                .problems
                .iter()
                .any(|p| p.contains("no tasks"))
        );
        let unknown = GOOD.replace("Depends on: 1", "Depends on: 7");
        let err = split_spec_reply(&unknown).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with("implementation plan:") && p.contains("plan lines")),
            "{err}"
        );
        let empty =
            "# Requirements: r\n\n# Design: d\n\nx\n\n# Implementation Plan: p\n\n- [ ] 1. A\n";
        assert!(
            split_spec_reply(empty).unwrap_err().problems[0]
                .contains("Requirements: <title>` section is empty")
        );
    }

    #[test]
    fn three_files_are_validated_as_one_reply() {
        let docs = split_spec_reply(GOOD).unwrap();
        let from_files = split_spec_files(
            &docs.requirements_spec,
            &docs.technical_design,
            &docs.implementation_plan,
        )
        .unwrap();
        assert_eq!(from_files.requirements_spec, docs.requirements_spec);
        assert_eq!(from_files.implementation_plan, docs.implementation_plan);
        let swapped = split_spec_files(
            &docs.technical_design,
            &docs.requirements_spec,
            &docs.implementation_plan,
        );
        assert!(swapped.unwrap_err().problems[0].contains("out of order"));
        let no_tasks = split_spec_files(
            &docs.requirements_spec,
            &docs.technical_design,
            "# Implementation Plan: x\n\nWe will do it.\n",
        );
        assert!(
            no_tasks
                .unwrap_err()
                .problems
                .iter()
                .any(|p| p.contains("no tasks"))
        );
    }

    #[test]
    fn tolerates_separator_variants_and_case() {
        let reply = GOOD
            .replace("# Requirements: Dark mode", "# REQUIREMENTS — Dark mode")
            .replace("# Design: Dark mode", "# Design")
            .replace(
                "# Implementation Plan: Dark mode",
                "# implementation plan - Dark mode",
            );
        let docs = split_spec_reply(&reply).unwrap();
        assert_eq!(docs.title.as_deref(), Some("Dark mode"));
        assert!(
            split_spec_reply(&GOOD.replace("# Design: Dark mode", "# Designer notes")).is_err()
        );
    }

    #[test]
    fn imported_documents_keep_their_headings_and_need_a_parsable_plan() {
        let requirements = "# Requirements Document\n\n## Introduction\n\nDark mode.\n";
        let design = "# Design Document\n\nA theme context.\n";
        let plan = "# Implementation Plan\n\n- [ ] 1. Add the theme\n  - _Requirements: 1.1_\n";
        let parsed = check_imported_specs(requirements, design, plan).unwrap();
        assert_eq!(parsed.tasks.len(), 1);
        assert_eq!(
            check_imported_specs(" \n", design, plan),
            Err(ImportedSpecsError::Blank {
                field: "requirements_spec"
            })
        );
        let Err(ImportedSpecsError::Plan { errors }) =
            check_imported_specs(requirements, design, "We will do it.\n")
        else {
            panic!("a plan without tasks is refused");
        };
        assert_eq!(errors[0].kind, PlanErrorKind::EmptyPlan);
        let cycle = "- [ ] 1. A\n  - Depends on: 2\n- [ ] 2. B\n  - Depends on: 1\n";
        let Err(ImportedSpecsError::Plan { errors }) =
            check_imported_specs(requirements, design, cycle)
        else {
            panic!("a cycle is refused");
        };
        assert_eq!(errors[0].kind, PlanErrorKind::DependencyCycle);
        let big = "x".repeat(MAX_SPEC_DOCUMENT_BYTES + 1);
        assert!(matches!(
            check_imported_specs(requirements, &big, plan),
            Err(ImportedSpecsError::TooLarge {
                field: "technical_design",
                ..
            })
        ));
    }

    mod properties {
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(input in "\\PC{0,400}") {
                let _ = super::split_spec_reply(&input);
            }

            #[test]
            fn never_panics_on_section_shaped_noise(parts in proptest::collection::vec(prop_oneof![
                Just("# Requirements: t\n".to_owned()), Just("# Design: t\n".to_owned()),
                Just("# Implementation Plan: t\n".to_owned()), Just("```\n".to_owned()),
                Just("- [ ] 1. A\n".to_owned()), Just("  - Depends on: 2\n".to_owned()),
                "\\PC{0,20}\n",
            ], 0..30)) {
                let _ = super::split_spec_reply(&parts.concat());
            }
        }
    }
}
