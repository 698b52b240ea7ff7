//! The trace between a requirements document's acceptance criteria and a plan's tasks: which
//! reference covers which criterion ([`covers`]), and where the trace has gaps
//! ([`trace_warnings`]).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::Criterion;
use crate::enums::string_enum;
use crate::plan::PlanTask;

string_enum! {
    /// What a gap in the trace is.
    pub enum TraceWarningKind as "trace warning kind" {
        /// No task names the criterion, its requirement, or a requirement it sits under.
        UncoveredCriterion = "uncovered_criterion",
        /// A task names an id that is no criterion and no requirement of the document.
        UnknownReference = "unknown_reference",
    }
}

/// A gap between the requirements and the plan. Advice for the reviewer, not an error: a plan
/// with warnings can still be approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceWarning {
    pub kind: TraceWarningKind,
    /// The uncovered criterion's id.
    pub criterion_id: Option<String>,
    /// The key of the task holding the unknown reference.
    pub task_key: Option<String>,
    /// The unknown reference as the task wrote it.
    pub reference: Option<String>,
    /// One sentence for people.
    pub message: String,
}

/// Whether a task's requirement reference covers a criterion: the reference is the criterion's
/// id, its requirement's id, or a dotted prefix of its id (a task naming requirement `1` covers
/// `1.1` and `1.2.3`; `US1` covers `US1.2`). A user story's criteria also answer to plain
/// numbers (`1.2` for `US1.2`, `1` for `US1`): Kiro-style documents headed `User Story 1` are
/// numbered that way by their plans, while spec-kit plans say `US1`. Ids compare without ASCII
/// case, a leading `§` and a trailing full stop.
pub fn covers(reference: &str, criterion: &Criterion) -> bool {
    let reference = normalise(reference);
    !reference.is_empty() && covering_names(criterion).contains(&reference)
}

/// The gaps in the trace: criteria no task covers (in document order), then references that
/// cover no criterion (in task order, each once per task). Nothing when the document has no
/// recognisable criteria: there is nothing to trace against, and every reference would be
/// reported.
pub fn trace_warnings(criteria: &[Criterion], tasks: &[PlanTask]) -> Vec<TraceWarning> {
    if criteria.is_empty() {
        return Vec::new();
    }
    // The relation of `covers`, through sets so a large spec and plan stay linear.
    let named: HashSet<String> = tasks
        .iter()
        .flat_map(|t| &t.requirement_refs)
        .map(|r| normalise(r))
        .filter(|r| !r.is_empty())
        .collect();
    let mut known: HashSet<String> = HashSet::new();
    let mut warnings = Vec::new();
    for c in criteria {
        let names = covering_names(c);
        if !names.iter().any(|n| named.contains(n)) {
            warnings.push(TraceWarning {
                kind: TraceWarningKind::UncoveredCriterion,
                criterion_id: Some(c.id.clone()),
                task_key: None,
                reference: None,
                message: format!(
                    "acceptance criterion {} (line {} of the requirements) is covered by no task: \
                     no task names it or its requirement",
                    c.id, c.line
                ),
            });
        }
        known.extend(names);
    }
    for t in tasks {
        let mut reported = HashSet::new();
        for reference in &t.requirement_refs {
            let n = normalise(reference);
            if n.is_empty() || known.contains(&n) || !reported.insert(n) {
                continue;
            }
            warnings.push(TraceWarning {
                kind: TraceWarningKind::UnknownReference,
                criterion_id: None,
                task_key: Some(t.key.clone()),
                reference: Some(reference.clone()),
                message: format!(
                    "task {} names {reference}, which is no acceptance criterion or requirement \
                     of the requirements document",
                    t.key
                ),
            });
        }
    }
    warnings
}

/// Every normalised reference that covers the criterion: its id and the id's dotted prefixes,
/// its requirement, and the plain-number aliases of a user story's ids.
fn covering_names(criterion: &Criterion) -> Vec<String> {
    let id = normalise(&criterion.id);
    let requirement = criterion.requirement.as_deref().map(normalise);
    let mut names: Vec<String> = Vec::new();
    for name in [Some(id.as_str()), story_alias(&id)].into_iter().flatten() {
        names.extend(dotted_prefixes(name).map(str::to_owned));
    }
    if let Some(req) = &requirement {
        names.push(req.clone());
        names.extend(story_alias(req).map(str::to_owned));
    }
    names
}

/// `1.2` for the user-story id `US1.2`.
fn story_alias(id: &str) -> Option<&str> {
    id.strip_prefix("US")
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// An id as compared: trimmed, without a section sign or trailing full stop, upper-cased.
fn normalise(id: &str) -> String {
    let t = id.trim();
    let t = t.strip_prefix('§').unwrap_or(t).trim();
    t.trim_end_matches('.').to_ascii_uppercase()
}

/// `1.2.3`, `1.2`, `1`: the id and every prefix of it cut at a dot.
fn dotted_prefixes(id: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(id), |s| s.rsplit_once('.').map(|(head, _)| head))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse_plan;

    fn criterion(id: &str, requirement: Option<&str>) -> Criterion {
        Criterion {
            id: id.to_owned(),
            requirement: requirement.map(str::to_owned),
            text: format!("criterion {id}"),
            line: 1,
        }
    }

    #[test]
    fn references_cover_ids_requirements_and_dotted_prefixes() {
        let c = criterion("1.2", Some("1"));
        for yes in ["1.2", "1", " 1.2 ", "§1.2", "1.2."] {
            assert!(covers(yes, &c), "{yes}");
        }
        for no in ["1.20", "10", "2", "1.2.1", "", "§"] {
            assert!(!covers(no, &c), "{no}");
        }
        let story = criterion("US1.3", Some("US1"));
        assert!(covers("US1", &story) && covers("us1.3", &story));
        assert!(covers("1", &story) && covers("1.3", &story));
        assert!(!covers("US13", &story) && !covers("US", &story) && !covers("13", &story));
        let fr = criterion("FR-001", None);
        assert!(covers("FR-001", &fr) && covers("fr-001", &fr));
        assert!(!covers("FR-0011", &fr) && !covers("FR-01", &fr));
        // A criterion under a requirement it does not extend (`AC-4` under `Requirement 3`).
        let ac = criterion("AC-4", Some("3"));
        assert!(covers("3", &ac) && covers("AC-4", &ac) && !covers("AC", &ac));
        let deep = criterion("2.3.1", Some("2.3"));
        assert!(covers("2", &deep) && covers("2.3", &deep));
    }

    #[test]
    fn warnings_name_uncovered_criteria_and_unknown_references() {
        let criteria = [
            criterion("1.1", Some("1")),
            criterion("1.2", Some("1")),
            criterion("2.1", Some("2")),
            criterion("2.2", Some("2")),
            criterion("3.1", Some("3")),
            criterion("FR-001", None),
            criterion("US1.1", Some("US1")),
        ];
        let plan = parse_plan(
            "- [ ] 1. Login\n  - _Requirements: 1, 2.1, 9.9_\n\
             - [ ] 2. Export\n  - _Requirements: FR-001, 9.9, 9.9, login flow_\n\
             - [ ] T003 [US1] Browse\n\
             - [ ] 4. Notes\n",
        );
        let warnings = trace_warnings(&criteria, &plan.tasks);
        // (kind, criterion, task, reference)
        type Row<'w> = (
            TraceWarningKind,
            Option<&'w str>,
            Option<&'w str>,
            Option<&'w str>,
        );
        let got: Vec<Row<'_>> = warnings
            .iter()
            .map(|w| {
                (
                    w.kind,
                    w.criterion_id.as_deref(),
                    w.task_key.as_deref(),
                    w.reference.as_deref(),
                )
            })
            .collect();
        use TraceWarningKind::{UncoveredCriterion, UnknownReference};
        assert_eq!(
            got,
            vec![
                (UncoveredCriterion, Some("2.2"), None, None),
                (UncoveredCriterion, Some("3.1"), None, None),
                (UnknownReference, None, Some("1"), Some("9.9")),
                (UnknownReference, None, Some("2"), Some("9.9")),
                (UnknownReference, None, Some("2"), Some("login flow")),
            ]
        );
        assert_eq!(
            warnings[0].message,
            "acceptance criterion 2.2 (line 1 of the requirements) is covered by no task: no task \
             names it or its requirement"
        );
        assert_eq!(
            warnings[2].message,
            "task 1 names 9.9, which is no acceptance criterion or requirement of the requirements \
             document"
        );
        // The sets agree with `covers`.
        for c in &criteria {
            let by_covers = plan
                .tasks
                .iter()
                .any(|t| t.requirement_refs.iter().any(|r| covers(r, c)));
            let warned = warnings
                .iter()
                .any(|w| w.criterion_id.as_deref() == Some(&c.id));
            assert_eq!(by_covers, !warned, "{}", c.id);
        }
        let json = serde_json::to_value(&warnings[0]).unwrap();
        assert_eq!(json["kind"], "uncovered_criterion");
    }

    #[test]
    fn no_criteria_no_warnings() {
        let plan = parse_plan("- [ ] 1. Login\n  - _Requirements: 1.1_\n");
        assert!(trace_warnings(&[], &plan.tasks).is_empty());
    }
}
