//! The traceability matrix of a SpecTask: every acceptance criterion of its requirements with
//! the plan tasks that name it, their work sessions, the files and commits those made, the
//! latest runs of their checks, the reviewer's verdict, and what that adds up to (the
//! criterion's coverage). Pure: the server reads the parts from the store and the git layer and
//! this puts them together.
//!
//! A criterion is *met by checks* when every task naming it has run its checks (its own
//! `_Verify:` commands and the project check) in its work session's latest check round and all
//! passed; *failing* when one of those latest runs failed; *pending* while a task with checks has
//! not run them yet; *not checked* when no task naming it has a check; *uncovered* when no task
//! names it. A reviewer's `met` verdict (`review.rs`) makes a criterion that is not met by checks
//! *met by review*; its verdict is shown whatever the coverage.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::{CheckRun, CheckStatus};
use crate::criteria::{Criterion, TraceWarning, covers};
use crate::enums::string_enum;
use crate::ids::{CheckRunId, WorkSessionId};
use crate::implementation_task::{ImplementationTaskStatus, SpecTaskImplementationTask};
use crate::review::{CriterionVerdict, ReviewVerdict};
use crate::work_session::{SpecTaskWorkSession, WorkSessionStatus};

string_enum! {
    /// Where a criterion stands.
    pub enum CriterionCoverage as "criterion coverage" {
        /// Every task naming it ran its checks, and all passed.
        MetByChecks = "met_by_checks",
        /// Not met by checks, but the reviewer's verdict is `met`.
        MetByReview = "met_by_review",
        /// A latest check run of a task naming it failed.
        Failing = "failing",
        /// A task naming it has checks that have not run yet.
        Pending = "pending",
        /// Tasks name it, but none has a check.
        NotChecked = "not_checked",
        /// No task names it.
        Uncovered = "uncovered",
    }
}

/// The parts of a task the matrix is made of.
#[derive(Debug, Clone, Copy)]
pub struct TraceInput<'a> {
    pub criteria: &'a [Criterion],
    pub tasks: &'a [SpecTaskImplementationTask],
    /// The task's work sessions, with their commits.
    pub sessions: &'a [SpecTaskWorkSession],
    pub check_runs: &'a [CheckRun],
    /// The task's project check commands (`workspace_config.check`), run in every session.
    pub project_checks: &'a [String],
    /// Gaps between the criteria and the plan (`criteria::trace_warnings`).
    pub warnings: &'a [TraceWarning],
    /// The reviewer's verdicts, oldest first (the latest per criterion counts).
    pub verdicts: &'a [CriterionVerdict],
    /// The files each work session touched (its agent's edits), in the order first seen.
    pub touched_files: &'a BTreeMap<WorkSessionId, Vec<String>>,
}

/// The matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceMatrix {
    /// In document order.
    pub criteria: Vec<CriterionTrace>,
    /// Keys of plan tasks that name no criterion of the document.
    pub untraced_tasks: Vec<String>,
    pub warnings: Vec<TraceWarning>,
    pub coverage: CoverageSummary,
}

/// One criterion and everything traced to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CriterionTrace {
    pub id: String,
    pub requirement: Option<String>,
    pub text: String,
    pub coverage: CriterionCoverage,
    /// The reviewer's latest verdict on it, if a review ran.
    pub verdict: Option<TracedVerdict>,
    /// The plan tasks naming it, in plan order.
    pub tasks: Vec<TaskTrace>,
}

/// A reviewer's verdict, briefly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TracedVerdict {
    pub verdict: ReviewVerdict,
    pub reason: String,
    pub reviewer: String,
    pub work_session_id: WorkSessionId,
}

/// A plan task as the matrix shows it under a criterion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskTrace {
    pub key: String,
    pub title: String,
    pub status: ImplementationTaskStatus,
    pub work_session_id: Option<WorkSessionId>,
    pub work_session_status: Option<WorkSessionStatus>,
    /// Commits its work session made (worktree isolation), oldest first.
    pub commits: Vec<TracedCommit>,
    /// Files its work session's agent edited, in the order first seen.
    pub files: Vec<String>,
    /// The check commands that apply to it: its own, then the project's.
    pub checks: Vec<String>,
    /// Its work session's latest check round: the runs of its own checks and the project's.
    pub check_runs: Vec<TracedCheckRun>,
}

/// A commit, briefly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TracedCommit {
    pub id: String,
    pub summary: String,
}

/// A check run, briefly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TracedCheckRun {
    pub id: CheckRunId,
    /// `None` for the project check.
    pub task_key: Option<String>,
    pub command: String,
    pub status: CheckStatus,
    pub exit_code: Option<i32>,
    pub round: i32,
    pub duration_ms: i64,
    pub output_tail: String,
}

/// How many criteria stand where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageSummary {
    pub criteria: usize,
    pub met_by_checks: usize,
    pub met_by_review: usize,
    pub failing: usize,
    pub pending: usize,
    pub not_checked: usize,
    pub uncovered: usize,
}

impl CoverageSummary {
    fn count(&mut self, coverage: CriterionCoverage) {
        self.criteria += 1;
        match coverage {
            CriterionCoverage::MetByChecks => self.met_by_checks += 1,
            CriterionCoverage::MetByReview => self.met_by_review += 1,
            CriterionCoverage::Failing => self.failing += 1,
            CriterionCoverage::Pending => self.pending += 1,
            CriterionCoverage::NotChecked => self.not_checked += 1,
            CriterionCoverage::Uncovered => self.uncovered += 1,
        }
    }
}

/// Builds the matrix.
pub fn trace_matrix(input: TraceInput<'_>) -> TraceMatrix {
    let sessions: BTreeMap<&WorkSessionId, &SpecTaskWorkSession> =
        input.sessions.iter().map(|s| (&s.id, s)).collect();
    // Each session's latest round of runs.
    let mut latest: BTreeMap<&WorkSessionId, Vec<&CheckRun>> = BTreeMap::new();
    for run in input.check_runs {
        let runs = latest.entry(&run.work_session_id).or_default();
        match runs.first().map(|r| r.round) {
            Some(round) if round > run.round => {}
            Some(round) if round < run.round => *runs = vec![run],
            _ => runs.push(run),
        }
    }
    let task_trace = |task: &SpecTaskImplementationTask| {
        let session = task
            .assigned_work_session_id
            .as_ref()
            .and_then(|id| sessions.get(id).copied());
        let check_runs = task
            .assigned_work_session_id
            .as_ref()
            .and_then(|id| latest.get(id))
            .map(|runs| {
                runs.iter()
                    .filter(|r| r.task_key.is_none() || r.task_key.as_deref() == Some(&task.key))
                    .map(|r| TracedCheckRun {
                        id: r.id.clone(),
                        task_key: r.task_key.clone(),
                        command: r.command.clone(),
                        status: r.status,
                        exit_code: r.exit_code,
                        round: r.round,
                        duration_ms: r.duration_ms,
                        output_tail: r.output_tail.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        TaskTrace {
            key: task.key.clone(),
            title: task.title.clone(),
            status: task.status,
            work_session_id: task.assigned_work_session_id.clone(),
            work_session_status: session.map(|s| s.status),
            commits: session
                .map(|s| {
                    s.commits
                        .iter()
                        .map(|c| TracedCommit {
                            id: c.id.clone(),
                            summary: c.summary.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            files: task
                .assigned_work_session_id
                .as_ref()
                .and_then(|id| input.touched_files.get(id))
                .cloned()
                .unwrap_or_default(),
            checks: task
                .checks
                .iter()
                .chain(input.project_checks)
                .cloned()
                .collect(),
            check_runs,
        }
    };
    let mut coverage = CoverageSummary::default();
    let criteria: Vec<CriterionTrace> = input
        .criteria
        .iter()
        .map(|criterion| {
            let tasks: Vec<TaskTrace> = input
                .tasks
                .iter()
                .filter(|t| t.requirement_refs.iter().any(|r| covers(r, criterion)))
                .map(task_trace)
                .collect();
            let verdict = input
                .verdicts
                .iter()
                .rev()
                .find(|v| v.criterion_id == criterion.id)
                .map(|v| TracedVerdict {
                    verdict: v.verdict,
                    reason: v.reason.clone(),
                    reviewer: v.reviewer.clone(),
                    work_session_id: v.work_session_id.clone(),
                });
            let mut state = criterion_coverage(&tasks);
            if state != CriterionCoverage::MetByChecks
                && verdict
                    .as_ref()
                    .is_some_and(|v| v.verdict == ReviewVerdict::Met)
            {
                state = CriterionCoverage::MetByReview;
            }
            coverage.count(state);
            CriterionTrace {
                id: criterion.id.clone(),
                requirement: criterion.requirement.clone(),
                text: criterion.text.clone(),
                coverage: state,
                verdict,
                tasks,
            }
        })
        .collect();
    let untraced_tasks = input
        .tasks
        .iter()
        .filter(|t| {
            !t.requirement_refs
                .iter()
                .any(|r| input.criteria.iter().any(|c| covers(r, c)))
        })
        .map(|t| t.key.clone())
        .collect();
    TraceMatrix {
        criteria,
        untraced_tasks,
        warnings: input.warnings.to_vec(),
        coverage,
    }
}

fn criterion_coverage(tasks: &[TaskTrace]) -> CriterionCoverage {
    if tasks.is_empty() {
        return CriterionCoverage::Uncovered;
    }
    let checked: Vec<&TaskTrace> = tasks.iter().filter(|t| !t.checks.is_empty()).collect();
    if checked.is_empty() {
        return CriterionCoverage::NotChecked;
    }
    let runs = || checked.iter().flat_map(|t| &t.check_runs);
    if runs().any(|r| r.status != CheckStatus::Passed) {
        CriterionCoverage::Failing
    } else if checked.iter().any(|t| t.check_runs.is_empty()) {
        CriterionCoverage::Pending
    } else {
        CriterionCoverage::MetByChecks
    }
}

#[cfg(test)]
mod tests {
    /// A distinct ULID per call (the domain's `ulid` has no clock).
    fn fresh() -> ulid::Ulid {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        ulid::Ulid::from_parts(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed), 7)
    }

    use chrono::Utc;

    use super::*;
    use crate::ids::{ImplementationTaskId, SessionId, SpecTaskId, TurnId};
    use crate::work_session::WorkSessionPhase;
    use crate::workspace::SessionCommit;

    fn criterion(id: &str, requirement: &str) -> Criterion {
        Criterion {
            id: id.into(),
            requirement: Some(requirement.into()),
            text: format!("criterion {id}"),
            line: 1,
        }
    }

    fn session(task: &SpecTaskId, status: WorkSessionStatus) -> SpecTaskWorkSession {
        SpecTaskWorkSession {
            id: WorkSessionId::from_ulid(fresh()),
            spec_task_id: task.clone(),
            helix_session_id: SessionId::from_ulid(fresh()),
            name: None,
            description: None,
            phase: WorkSessionPhase::Implementation,
            status,
            implementation_task_title: None,
            implementation_task_description: None,
            implementation_task_index: None,
            parent_work_session_id: None,
            spawned_by_session_id: None,
            agent_config: None,
            environment_config: None,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
            error: None,
            agent_summary: None,
            agent_gave_up: None,
            branch_name: None,
            worktree_path: None,
            base_commit: None,
            head_commit: None,
            commits: vec![],
            merge_attempts: 0,
            conflict_files: vec![],
            overlaps: vec![],
            waiting_for: None,
            overlap_wait: None,
            instance_id: None,
        }
    }

    fn task(
        spec: &SpecTaskId,
        key: &str,
        refs: &[&str],
        checks: &[&str],
        ws: Option<&WorkSessionId>,
    ) -> SpecTaskImplementationTask {
        SpecTaskImplementationTask {
            id: ImplementationTaskId::from_ulid(fresh()),
            spec_task_id: spec.clone(),
            key: key.into(),
            title: format!("task {key}"),
            description: None,
            acceptance_criteria: None,
            estimated_effort: None,
            priority: 0,
            index: 0,
            phase: None,
            parent_key: None,
            requirement_refs: refs.iter().map(|r| r.to_string()).collect(),
            checks: checks.iter().map(|c| c.to_string()).collect(),
            dependencies: vec![],
            status: ImplementationTaskStatus::InProgress,
            assigned_work_session_id: ws.cloned(),
            created_at: Utc::now(),
            completed_at: None,
        }
    }

    fn run(
        spec: &SpecTaskId,
        ws: &WorkSessionId,
        key: Option<&str>,
        status: CheckStatus,
        round: i32,
    ) -> CheckRun {
        CheckRun {
            id: CheckRunId::from_ulid(fresh()),
            spec_task_id: spec.clone(),
            work_session_id: ws.clone(),
            turn_id: TurnId::from_ulid(fresh()),
            task_key: key.map(str::to_owned),
            command: "check".into(),
            status,
            exit_code: Some(if status == CheckStatus::Passed { 0 } else { 1 }),
            output_tail: String::new(),
            output_bytes: 0,
            duration_ms: 1,
            sandboxed: false,
            round,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn each_criterion_gets_its_tasks_sessions_commits_latest_checks_and_coverage() {
        let spec = SpecTaskId::from_ulid(fresh());
        let mut s1 = session(&spec, WorkSessionStatus::Completed);
        s1.commits = vec![SessionCommit {
            id: "abc123".into(),
            summary: "Task 1".into(),
            author: "spectask".into(),
            committed_at: Utc::now(),
        }];
        let s2 = session(&spec, WorkSessionStatus::Failed);
        let s3 = session(&spec, WorkSessionStatus::Active);
        let criteria = [
            criterion("1.1", "1"),
            criterion("1.2", "1"),
            criterion("2.1", "2"),
            criterion("3.1", "3"),
            criterion("4.1", "4"),
        ];
        let tasks = [
            // 1.1: met (its failing first round is superseded by round 2).
            task(&spec, "1", &["1.1"], &["test -f a"], Some(&s1.id)),
            // 1.2 and 2.1: failing.
            task(&spec, "2", &["1.2", "2.1"], &["false"], Some(&s2.id)),
            // 3.1: named, no checks.
            task(&spec, "3", &["3.1"], &[], Some(&s3.id)),
            // Names nothing the document has.
            task(&spec, "4", &["9.9"], &[], None),
        ];
        let runs = [
            run(&spec, &s1.id, Some("1"), CheckStatus::Failed, 1),
            run(&spec, &s1.id, Some("1"), CheckStatus::Passed, 2),
            run(&spec, &s2.id, Some("2"), CheckStatus::Failed, 1),
            run(&spec, &s2.id, Some("2"), CheckStatus::Failed, 2),
        ];
        // The reviewer: 1.2 not met (it stays failing), 3.1 met (no check: met by review).
        let verdict = |criterion: &str, verdict: ReviewVerdict| CriterionVerdict {
            id: crate::ids::VerdictId::from_ulid(fresh()),
            spec_task_id: spec.clone(),
            work_session_id: s3.id.clone(),
            criterion_id: criterion.into(),
            verdict,
            reason: format!("{criterion} looked at"),
            reviewer: "other-vendor".into(),
            created_at: Utc::now(),
        };
        let verdicts = [
            verdict("3.1", ReviewVerdict::NotMet),
            verdict("1.2", ReviewVerdict::NotMet),
            verdict("3.1", ReviewVerdict::Met),
        ];
        let matrix = trace_matrix(TraceInput {
            criteria: &criteria,
            tasks: &tasks,
            sessions: &[s1.clone(), s2.clone(), s3.clone()],
            check_runs: &runs,
            project_checks: &[],
            warnings: &[],
            verdicts: &verdicts,
            touched_files: &BTreeMap::from([(s1.id.clone(), vec!["a.txt".to_owned()])]),
        });
        let coverage: Vec<(&str, CriterionCoverage)> = matrix
            .criteria
            .iter()
            .map(|c| (c.id.as_str(), c.coverage))
            .collect();
        assert_eq!(
            coverage,
            vec![
                ("1.1", CriterionCoverage::MetByChecks),
                ("1.2", CriterionCoverage::Failing),
                ("2.1", CriterionCoverage::Failing),
                ("3.1", CriterionCoverage::MetByReview),
                ("4.1", CriterionCoverage::Uncovered),
            ]
        );
        let first = &matrix.criteria[0].tasks[0];
        assert_eq!(first.work_session_id.as_ref(), Some(&s1.id));
        assert_eq!(
            first.work_session_status,
            Some(WorkSessionStatus::Completed)
        );
        assert_eq!(first.commits[0].id, "abc123");
        assert_eq!(first.files, vec!["a.txt"]);
        assert_eq!(first.check_runs.len(), 1, "only the latest round");
        assert_eq!(first.check_runs[0].round, 2);
        assert_eq!(matrix.untraced_tasks, vec!["4"]);
        let latest = matrix.criteria[3].verdict.as_ref().unwrap();
        assert_eq!(
            (latest.verdict, latest.reviewer.as_str()),
            (ReviewVerdict::Met, "other-vendor")
        );
        assert_eq!(
            matrix.criteria[1].verdict.as_ref().unwrap().verdict,
            ReviewVerdict::NotMet
        );
        assert!(matrix.criteria[0].verdict.is_none());
        assert_eq!(
            matrix.coverage,
            CoverageSummary {
                criteria: 5,
                met_by_checks: 1,
                met_by_review: 1,
                failing: 2,
                pending: 0,
                not_checked: 0,
                uncovered: 1,
            }
        );
    }

    #[test]
    fn the_project_check_counts_for_every_task_and_pending_until_it_ran() {
        let spec = SpecTaskId::from_ulid(fresh());
        let s1 = session(&spec, WorkSessionStatus::Active);
        let criteria = [criterion("1.1", "1")];
        let tasks = [task(&spec, "1", &["1"], &[], Some(&s1.id))];
        let project = ["cargo test".to_owned()];
        let input = TraceInput {
            criteria: &criteria,
            tasks: &tasks,
            sessions: std::slice::from_ref(&s1),
            check_runs: &[],
            project_checks: &project,
            warnings: &[],
            verdicts: &[],
            touched_files: &BTreeMap::new(),
        };
        assert_eq!(
            trace_matrix(input).criteria[0].coverage,
            CriterionCoverage::Pending
        );
        let runs = [run(&spec, &s1.id, None, CheckStatus::Passed, 1)];
        let matrix = trace_matrix(TraceInput {
            check_runs: &runs,
            ..input
        });
        assert_eq!(matrix.criteria[0].coverage, CriterionCoverage::MetByChecks);
        assert_eq!(matrix.criteria[0].tasks[0].checks, vec!["cargo test"]);
    }
}
