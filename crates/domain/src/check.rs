//! Checks: commands that verify a work session's result, run by spectask when the session's turn
//! ends (a plan task's `_Verify:` lines, and the task's project check from `workspace_config`).
//! A failing check sends the agent back to work with the output; a session completes only with
//! every check passing. Each run is recorded ([`CheckRun`]) and traced to the task's criteria.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::{CheckRunId, SpecTaskId, TurnId, WorkSessionId};

/// The `workspace_config` key naming the project check: one command or a list of commands, run
/// after every work session's turn besides its tasks' own checks.
pub const PROJECT_CHECK_KEY: &str = "check";

/// Longest check command accepted (a plan line or a `workspace_config` entry).
pub const MAX_CHECK_COMMAND_BYTES: usize = 4096;

string_enum! {
    /// How a check run ended.
    pub enum CheckStatus as "check status" {
        /// Exit code 0 within the time limit.
        Passed = "passed",
        /// A non-zero exit (or killed by a signal).
        Failed = "failed",
        /// Stopped by the time limit.
        TimedOut = "timed_out",
        /// It could not run at all (no workspace, the shell could not start).
        Error = "error",
    }
}

/// One run of one check command, after one turn of one work session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckRun {
    pub id: CheckRunId,
    pub spec_task_id: SpecTaskId,
    pub work_session_id: WorkSessionId,
    /// The turn whose end the check verified.
    pub turn_id: TurnId,
    /// The plan task that named the check; `None` for the project check.
    pub task_key: Option<String>,
    pub command: String,
    pub status: CheckStatus,
    pub exit_code: Option<i32>,
    /// The end of the check's output (stdout and stderr as they came).
    pub output_tail: String,
    /// Bytes of output in all.
    pub output_bytes: i64,
    pub duration_ms: i64,
    /// Whether it ran inside the agent's OS sandbox.
    pub sandboxed: bool,
    /// The work session's check round: 1 after its first turn, 2 after the first follow-up...
    pub round: i32,
    pub created_at: DateTime<Utc>,
}

/// The project check commands a task's `workspace_config` names (`"check": "cargo test"` or
/// `"check": ["cargo fmt --check", "cargo test"]`); an error names what is wrong.
pub fn project_checks(config: Option<&serde_json::Value>) -> Result<Vec<String>, String> {
    let value = match config.and_then(|config| config.get(PROJECT_CHECK_KEY)) {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(value) => value,
    };
    let commands: Vec<String> = match value {
        serde_json::Value::String(command) => vec![command.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                format!(
                    "workspace_config.{PROJECT_CHECK_KEY} must be a command or a list of commands"
                )
            })?,
        _ => {
            return Err(format!(
                "workspace_config.{PROJECT_CHECK_KEY} must be a command or a list of commands"
            ));
        }
    };
    for command in &commands {
        validate_check_command(command)
            .map_err(|why| format!("workspace_config.{PROJECT_CHECK_KEY}: {why}"))?;
    }
    Ok(commands)
}

/// A check command must say something, on one line, within [`MAX_CHECK_COMMAND_BYTES`].
pub fn validate_check_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("a check command is empty".to_owned());
    }
    if command.len() > MAX_CHECK_COMMAND_BYTES {
        return Err(format!(
            "a check command is longer than {MAX_CHECK_COMMAND_BYTES} bytes"
        ));
    }
    if command.contains(['\n', '\r', '\0']) {
        return Err("a check command must be one line".to_owned());
    }
    Ok(())
}

/// How a failed check reads in a prompt or a failure reason: the command, how it ended, and the
/// tail of its output (at most `max_output` bytes of it, from the end).
pub fn describe_failure(run: &CheckRun, max_output: usize) -> String {
    let ending = match (run.status, run.exit_code) {
        (CheckStatus::TimedOut, _) => format!("timed out after {} ms", run.duration_ms),
        (CheckStatus::Error, _) => "could not run".to_owned(),
        (_, Some(code)) => format!("exited with {code}"),
        (_, None) => "was killed by a signal".to_owned(),
    };
    let owner = match &run.task_key {
        Some(key) => format!("task {key}'s check"),
        None => "the project check".to_owned(),
    };
    let mut output = run.output_tail.trim_end();
    if output.len() > max_output {
        let mut cut = output.len() - max_output;
        while !output.is_char_boundary(cut) {
            cut += 1;
        }
        output = &output[cut..];
    }
    format!("{owner} `{}` {ending}:\n```\n{output}\n```", run.command)
}

/// The follow-up prompt after failed checks: the failures, and what to do.
pub fn checks_failed_prompt(failures: &[&CheckRun], round: i32, max_rounds: i32) -> String {
    let mut prompt = format!(
        "spectask ran the checks of your assignment after your turn, and {} of them failed \
         (check round {round} of {max_rounds}). Fix the cause, then end your turn; the checks run \
         again.\n",
        failures.len()
    );
    for run in failures {
        prompt.push('\n');
        prompt.push_str(&describe_failure(run, 3000));
        prompt.push('\n');
    }
    prompt
}

/// The reason a work session fails when its checks still fail after the last round.
pub fn checks_failed_reason(failures: &[&CheckRun], rounds: i32) -> String {
    let mut reason = format!("checks still failing after {rounds} rounds: ");
    let described: Vec<String> = failures
        .iter()
        .map(|run| describe_failure(run, 1500))
        .collect();
    reason.push_str(&described.join("\n"));
    reason
}

#[cfg(test)]
mod tests {
    /// A distinct ULID per call (the domain's `ulid` has no clock).
    fn fresh() -> ulid::Ulid {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        ulid::Ulid::from_parts(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed), 7)
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn project_checks_read_one_command_or_a_list() {
        assert!(project_checks(None).unwrap().is_empty());
        assert!(
            project_checks(Some(&json!({"isolation": "shared"})))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            project_checks(Some(&json!({"check": "cargo test"}))).unwrap(),
            vec!["cargo test"]
        );
        assert_eq!(
            project_checks(Some(&json!({"check": ["a", "b"]}))).unwrap(),
            vec!["a", "b"]
        );
        for bad in [
            json!({"check": 3}),
            json!({"check": ["a", 1]}),
            json!({"check": ""}),
            json!({"check": "a\nb"}),
        ] {
            let err = project_checks(Some(&bad)).unwrap_err();
            assert!(err.starts_with("workspace_config.check"), "{err}");
        }
    }

    #[test]
    fn a_failure_names_the_task_the_command_the_ending_and_the_output_tail() {
        let run = CheckRun {
            id: CheckRunId::from_ulid(fresh()),
            spec_task_id: SpecTaskId::from_ulid(fresh()),
            work_session_id: WorkSessionId::from_ulid(fresh()),
            turn_id: TurnId::from_ulid(fresh()),
            task_key: Some("2".into()),
            command: "cargo test".into(),
            status: CheckStatus::Failed,
            exit_code: Some(101),
            output_tail: format!("{}\nassertion failed: é\n", "x".repeat(5000)),
            output_bytes: 6000,
            duration_ms: 12,
            sandboxed: true,
            round: 1,
            created_at: Utc::now(),
        };
        let text = describe_failure(&run, 100);
        assert!(text.starts_with("task 2's check `cargo test` exited with 101:"));
        assert!(text.contains("assertion failed: é"));
        assert!(text.len() < 200);
        let prompt = checks_failed_prompt(&[&run], 1, 3);
        assert!(prompt.contains("check round 1 of 3") && prompt.contains("assertion failed"));
        assert!(
            checks_failed_reason(&[&run], 3).starts_with("checks still failing after 3 rounds")
        );
    }
}
