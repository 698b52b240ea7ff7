//! Acceptance criteria of a requirements document (`SpecTask.requirements_spec`), with the ids
//! plans use to trace tasks to them, and the trace between criteria and plan tasks.
//!
//! Ids, by style of document:
//! - Kiro: `### Requirement 1` (`## Requirement 2: Title`) with a numbered list under
//!   `#### Acceptance Criteria`: item *n* of requirement *r* is `r.n` (`1.1`, `1.2`), the ids
//!   Kiro plans name in `_Requirements: 1.1, 2.3_`. The item's rendered number counts, so a list
//!   written `1.` on every line still gives `1.1`, `1.2`, `1.3`.
//! - spec-kit: `- **FR-001**: System MUST ...` (also without bold, `NFR-002`, `SC-001`) is its id
//!   as written, prefix upper-cased. The acceptance scenarios (`1. **Given** ..., **When** ...,
//!   **Then** ...`) of `### User Story 2 - Title (Priority: P1)` are `US2.1`, `US2.2`: the
//!   story as spec-kit plans label it (`[US2]`), then the scenario's number. Any heading
//!   `User Story 2` numbers its criteria so; plans that write `2.1` for them still cover them
//!   (see [`covers`]).
//! - Explicitly numbered: a list item or line starting with an id (`- 1.1 WHEN ...`,
//!   `**1.2** The system shall ...`, `AC-1: ...`, `R1.2 ...`) is that id as written.
//! - EARS statements (`WHEN`/`WHILE`/`IF ... THEN`/`WHERE`, `shall` in any case) in a list under
//!   a numbered requirement heading (`### 2.1 Login`, `### Requirement 3`) are `<req>.<n>` like
//!   Kiro's.
//!
//! Ids are unique: the first wins and later copies are reported in
//! [`CriteriaParse::duplicates`]. Nothing inside code blocks counts. Pure and total: any text
//! parses, at worst to no criteria.

mod ids;
mod trace;
mod walk;

use serde::{Deserialize, Serialize};

pub use trace::{TraceWarning, TraceWarningKind, covers, trace_warnings};

/// One acceptance criterion of the requirements document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Criterion {
    /// The id plans reference it by (`1.2`, `FR-001`, `US1.3`, `AC-4`), unique in the document.
    pub id: String,
    /// The requirement or user story it belongs to (`1`, `US1`, `2.1`), when the document says:
    /// a task naming it covers the criterion.
    pub requirement: Option<String>,
    /// The criterion on one line, without its id and without Markdown emphasis.
    pub text: String,
    /// 1-based source line of the criterion.
    pub line: usize,
}

/// The criteria of a requirements document and what was wrong with their ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CriteriaParse {
    /// In document order, each id once.
    pub criteria: Vec<Criterion>,
    /// Later criteria that repeat an earlier id, in document order; references to the id mean
    /// the first one.
    pub duplicates: Vec<Criterion>,
}

impl CriteriaParse {
    /// The criterion with this id, if any.
    pub fn criterion(&self, id: &str) -> Option<&Criterion> {
        self.criteria.iter().find(|c| c.id == id)
    }
}

/// Reads the acceptance criteria of a requirements document. Never fails and never panics.
pub fn parse_criteria(markdown: &str) -> CriteriaParse {
    walk::walk(&crate::plan::blocks::Doc::parse(markdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(md: &str) -> Vec<String> {
        parse_criteria(md)
            .criteria
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    #[test]
    fn kiro_requirements_number_their_criteria() {
        let md = "# Requirements\n\n## Requirements\n\n### Requirement 1\n\n\
                  **User Story:** As a user, I want to log in.\n\n\
                  #### Acceptance Criteria\n\n\
                  1. WHEN the user submits valid credentials THEN the system SHALL sign them in\n\
                  2. WHEN the password is wrong THE SYSTEM SHALL show an error\n\n\
                  ### Requirement 2: Logout\n\n#### Acceptance Criteria\n\n\
                  1. WHEN the user logs out THEN the system SHALL clear the session\n";
        let parsed = parse_criteria(md);
        assert_eq!(
            parsed.criteria,
            vec![
                Criterion {
                    id: "1.1".into(),
                    requirement: Some("1".into()),
                    text: "WHEN the user submits valid credentials THEN the system SHALL sign \
                           them in"
                        .into(),
                    line: 11,
                },
                Criterion {
                    id: "1.2".into(),
                    requirement: Some("1".into()),
                    text: "WHEN the password is wrong THE SYSTEM SHALL show an error".into(),
                    line: 12,
                },
                Criterion {
                    id: "2.1".into(),
                    requirement: Some("2".into()),
                    text: "WHEN the user logs out THEN the system SHALL clear the session".into(),
                    line: 18,
                },
            ]
        );
        assert!(parsed.duplicates.is_empty());
    }

    #[test]
    fn lazy_numbering_counts_rendered_numbers() {
        let md = "### Requirement 4\n\n#### Acceptance Criteria\n\n1. a\n1. b\n1. c\n";
        assert_eq!(ids(md), ["4.1", "4.2", "4.3"]);
        let md = "### Requirement 4\n\n#### Acceptance Criteria\n\n- a\n- b\n\n3. c\n";
        assert_eq!(ids(md), ["4.1", "4.2", "4.3"]);
    }

    #[test]
    fn code_blocks_are_ignored() {
        let md = "### Requirement 1\n\n```md\n#### Acceptance Criteria\n1. WHEN x THEN y SHALL z\n\
                  - **FR-001**: System MUST\n```\n\n- FR-002: System MUST export data\n";
        assert_eq!(ids(md), ["FR-002"]);
    }

    #[test]
    fn explicit_ids_in_items_and_lines() {
        let md = "## Saving\n\n\
                  - 1.1 WHEN the user clicks save THE SYSTEM SHALL persist the draft\n\
                  - AC-1: Drafts survive a restart\n\n\
                  **1.2** The system shall keep ten versions\n\
                  and drop the oldest.\n\
                  R3.1 The system shall warn before overwriting\n\n\
                  - 1.3 Overview\n";
        let parsed = parse_criteria(md);
        let got: Vec<(&str, Option<&str>, &str)> = parsed
            .criteria
            .iter()
            .map(|c| (c.id.as_str(), c.requirement.as_deref(), c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "1.1",
                    Some("1"),
                    "WHEN the user clicks save THE SYSTEM SHALL persist the draft"
                ),
                ("AC-1", None, "Drafts survive a restart"),
                (
                    "1.2",
                    Some("1"),
                    "The system shall keep ten versions and drop the oldest."
                ),
                (
                    "R3.1",
                    Some("R3"),
                    "The system shall warn before overwriting"
                ),
            ]
        );
    }

    #[test]
    fn user_stories_are_not_criteria() {
        let md = "**US1**: As a user, I want A.\n\n1.1 WHEN a THE SYSTEM SHALL b\n\n\
                  - R2: As an admin, I want B.\n- R2.1 The system shall c\n";
        assert_eq!(ids(md), ["1.1", "R2.1"]);
    }

    #[test]
    fn numbered_requirement_headings_number_ears_statements() {
        let md = "## 2. Functional requirements\n\n### 2.1 Login\n\n\
                  1. The system shall lock an account after five failures.\n\
                  2. Accounts are stored in the database.\n\
                  3. WHEN a locked user logs in THE SYSTEM SHALL say why\n\n\
                  - 2.5 seconds after a failure the system shall allow a retry\n";
        assert_eq!(ids(md), ["2.1.1", "2.1.3", "2.1.4"]);
    }

    #[test]
    fn duplicates_keep_the_first() {
        let md = "- FR-001: System MUST a\n- FR-002: System MUST b\n- fr-001: System MUST c\n";
        let parsed = parse_criteria(md);
        assert_eq!(
            parsed.criteria.iter().map(|c| &c.id).collect::<Vec<_>>(),
            ["FR-001", "FR-002"]
        );
        assert_eq!(parsed.duplicates.len(), 1);
        assert_eq!(parsed.duplicates[0].id, "FR-001");
        assert_eq!(parsed.duplicates[0].text, "System MUST c");
        assert_eq!(parsed.duplicates[0].line, 3);
        assert_eq!(
            parsed.criterion("FR-001").map(|c| c.text.as_str()),
            Some("System MUST a")
        );
    }

    #[test]
    fn nothing_to_read() {
        assert_eq!(parse_criteria(""), CriteriaParse::default());
        assert_eq!(
            parse_criteria("Just prose.\n\n- a bullet\n"),
            CriteriaParse::default()
        );
    }
}
