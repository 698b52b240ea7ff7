//! Checks after a work session's turn (issue 18): the commands its plan tasks name
//! (`_Verify:` lines) and the task's project check (`workspace_config.check`) run in the
//! session's workspace (its worktree, or the project), through the agent runtime so they run in
//! the agent's sandbox, one after another, each under the check time limit. Every run is
//! recorded. All passing (or none to run) lets the turn complete; a failure sends the agent a
//! follow-up turn with the output while the session has check rounds left (failing rounds in a
//! row: a passing round starts the budget again), and fails the session (its dependants
//! blocked) after the last.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use spectask_domain::check::{checks_failed_prompt, checks_failed_reason, project_checks};
use spectask_domain::{CheckRun, CheckStatus, SpecTask, WorkSessionId};
use spectask_runtimes::agent::{CheckCommand, InstanceSpec};
use spectask_store::{NewCheckRun, TurnClaim};
use tokio_util::sync::CancellationToken;

use super::orchestrator::Assignment;
use crate::{Engine, EngineError};

/// Where a work session's checks run: for the instance of `spec` (its sandbox), in `cwd` (the
/// session's worktree; `None`: the project).
pub(crate) struct Workplace<'a> {
    pub(crate) spec: &'a InstanceSpec,
    pub(crate) cwd: Option<&'a Path>,
}

/// What the checks decided about the turn.
pub(crate) enum Verdict {
    /// Every check passed, or there was none: the turn may complete.
    Passed,
    /// A follow-up was queued, or the session failed: the turn is dealt with.
    Handled,
    /// Cancelled while checks ran (shutdown, or the claim lost).
    Interrupted,
}

impl Engine {
    /// Runs the checks of work session `ws` after the claimed turn, which wrote `written`.
    pub(crate) async fn verify_turn(
        &self,
        claim: &TurnClaim,
        task: &SpecTask,
        ws: &WorkSessionId,
        place: Workplace<'_>,
        written: &str,
        cancel: &CancellationToken,
    ) -> Result<Verdict, EngineError> {
        let store = &self.inner.store;
        let settings = &self.inner.settings;
        let Some(runtime) = self.inner.runtime.as_ref() else {
            return Ok(Verdict::Passed);
        };
        let tasks = store.list_implementation_tasks(&task.id).await?;
        let assignment = Assignment::of(&tasks, ws);
        let mut commands: Vec<(Option<String>, String)> = assignment
            .checks()
            .map(|(key, command)| (Some(key.to_owned()), command.to_owned()))
            .collect();
        let mut runs = Vec::new();
        match project_checks(task.workspace_config.as_ref()) {
            Ok(project) => commands.extend(project.into_iter().map(|c| (None, c))),
            Err(why) => runs.push(not_run(None, "workspace_config.check", &why)),
        }
        if commands.is_empty() && runs.is_empty() {
            return Ok(Verdict::Passed);
        }
        let workdir: Option<PathBuf> = place
            .cwd
            .map(Path::to_path_buf)
            .or_else(|| task.project_path.as_ref().map(PathBuf::from));
        for (key, command) in commands {
            let Some(workdir) = workdir.clone() else {
                runs.push(not_run(
                    key,
                    &command,
                    "the task has no workspace to run it in",
                ));
                continue;
            };
            let check = CheckCommand {
                command: command.clone(),
                cwd: workdir,
                timeout: settings.check_timeout,
            };
            tracing::info!(task_key = key.as_deref(), %command, "running a check");
            let output = tokio::select! {
                output = runtime.run_check(place.spec, &check) => output,
                _ = cancel.cancelled() => return Ok(Verdict::Interrupted),
            };
            runs.push(match output {
                Ok(output) => NewCheckRun {
                    task_key: key,
                    command,
                    status: if output.passed() {
                        CheckStatus::Passed
                    } else if output.timed_out {
                        CheckStatus::TimedOut
                    } else {
                        CheckStatus::Failed
                    },
                    exit_code: output.exit_code,
                    output_tail: output.output_tail,
                    output_bytes: i64::try_from(output.output_bytes).unwrap_or(i64::MAX),
                    duration_ms: i64::try_from(output.duration.as_millis()).unwrap_or(i64::MAX),
                    sandboxed: output.sandboxed,
                },
                Err(err) => not_run(key, &command, &err.to_string()),
            });
        }
        let recorded = store.record_check_runs(claim, &runs).await?;
        let failures: Vec<&CheckRun> = recorded
            .iter()
            .filter(|run| run.status != CheckStatus::Passed)
            .collect();
        let round = recorded.first().map_or(1, |run| run.round);
        tracing::info!(
            round,
            checks = recorded.len(),
            failed = failures.len(),
            "checks ran"
        );
        if failures.is_empty() {
            return Ok(Verdict::Passed);
        }
        // The budget is for failing rounds in a row: a round that passed (before a human's
        // follow-up or a request for changes reopened the session) starts it again.
        let earlier = store.check_runs_of_task(&task.id).await?;
        let failing = failing_streak(earlier.iter().filter(|run| &run.work_session_id == ws));
        if failing < settings.max_check_rounds {
            let prompt = checks_failed_prompt(&failures, failing, settings.max_check_rounds);
            let next = store
                .follow_up_failed_checks(claim, written, &prompt)
                .await?;
            tracing::warn!(round, failing, next_turn = %next, "checks failed; the agent gets a follow-up turn");
            self.wake();
        } else {
            let reason = checks_failed_reason(&failures, failing);
            self.fail_for_good(claim, ws, written, &reason).await?;
        }
        Ok(Verdict::Handled)
    }
}

/// How many of a session's latest check rounds in a row had a failure (`runs` are its runs).
fn failing_streak<'a>(runs: impl Iterator<Item = &'a CheckRun>) -> i32 {
    let mut failed_by_round: BTreeMap<i32, bool> = BTreeMap::new();
    for run in runs {
        *failed_by_round.entry(run.round).or_default() |= run.status != CheckStatus::Passed;
    }
    let streak = failed_by_round
        .values()
        .rev()
        .take_while(|failed| **failed)
        .count();
    i32::try_from(streak).unwrap_or(i32::MAX)
}

/// A check that could not run (no workspace, no shell, a bad `workspace_config.check`).
fn not_run(key: Option<String>, command: &str, why: &str) -> NewCheckRun {
    NewCheckRun {
        task_key: key,
        command: command.to_owned(),
        status: CheckStatus::Error,
        exit_code: None,
        output_tail: why.to_owned(),
        output_bytes: 0,
        duration_ms: 0,
        sandboxed: false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use spectask_domain::{CheckRunId, SpecTaskId, TurnId};

    use super::*;

    fn run(round: i32, status: CheckStatus) -> CheckRun {
        CheckRun {
            id: CheckRunId::from_ulid(ulid::Ulid::new()),
            spec_task_id: SpecTaskId::from_ulid(ulid::Ulid::new()),
            work_session_id: WorkSessionId::from_ulid(ulid::Ulid::new()),
            turn_id: TurnId::from_ulid(ulid::Ulid::new()),
            task_key: None,
            command: "c".into(),
            status,
            exit_code: None,
            output_tail: String::new(),
            output_bytes: 0,
            duration_ms: 0,
            sandboxed: false,
            round,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn only_failing_rounds_in_a_row_count() {
        use CheckStatus::{Failed, Passed};
        let streak = |runs: &[(i32, CheckStatus)]| {
            let runs: Vec<CheckRun> = runs.iter().map(|(r, s)| run(*r, *s)).collect();
            failing_streak(runs.iter())
        };
        assert_eq!(streak(&[]), 0);
        assert_eq!(streak(&[(1, Failed)]), 1);
        assert_eq!(streak(&[(1, Failed), (2, Passed), (2, Failed)]), 2);
        assert_eq!(streak(&[(1, Failed), (2, Passed), (3, Failed)]), 1);
        assert_eq!(streak(&[(1, Failed), (2, Failed), (3, Passed)]), 0);
    }
}
