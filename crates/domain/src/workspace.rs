//! Where a SpecTask's agents write, and what the git layer records about it: the isolation mode
//! (a worktree per work session on its own branch, or today's shared checkout), the overlap
//! policy, the task's `workspace_config` keys that choose them, a session's commits, and the
//! texts spectask writes into git (commit messages) and into agents' prompts (merge conflicts).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enums::string_enum;
use crate::ids::{SpecTaskId, TurnId, WorkSessionId};

string_enum! {
    /// How a task's work sessions share the project: each in its own git worktree on its own
    /// branch (merged into the task branch in dependency order), or all in the project's own
    /// directory (the only mode for a directory that is not a git repository).
    pub enum WorkspaceIsolation as "isolation" {
        Worktree = "worktree",
        Shared = "shared",
    }
}

string_enum! {
    /// What happens when two running work sessions of one task touch the same file: a warning
    /// (an `overlap` event shown on both), or the later one waits for the earlier to complete.
    pub enum OverlapPolicy as "overlap policy" {
        Warn = "warn",
        Serialize = "serialize",
    }
}

string_enum! {
    /// What `approve-implementation` does with the task branch: leave it for a pull request,
    /// fast-forward the branch the task started from, or merge it there with a merge commit.
    pub enum ApprovalMerge as "merge" {
        None = "none",
        FastForward = "fast_forward",
        MergeCommit = "merge_commit",
    }
}

/// The `workspace_config` keys spectask reads. Unknown keys are kept for the agent runtime.
pub const ISOLATION_KEY: &str = "isolation";
pub const OVERLAP_POLICY_KEY: &str = "overlap_policy";

/// A task's workspace choices, read from its `workspace_config` (absent keys: the server's
/// defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkspaceChoice {
    pub isolation: Option<WorkspaceIsolation>,
    pub overlap_policy: Option<OverlapPolicy>,
}

/// Reads the keys spectask understands from a task's `workspace_config`; a key with a value
/// that is not one of its enum's strings is an error naming the key and the allowed values.
pub fn workspace_choice(config: Option<&serde_json::Value>) -> Result<WorkspaceChoice, String> {
    let Some(config) = config else {
        return Ok(WorkspaceChoice::default());
    };
    fn read<T: std::str::FromStr>(
        config: &serde_json::Value,
        key: &str,
        names: Vec<&'static str>,
    ) -> Result<Option<T>, String> {
        match config.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(text)) => text.parse().map(Some).map_err(|_| {
                format!(
                    "workspace_config.{key} must be one of: {}",
                    names.join(", ")
                )
            }),
            Some(_) => Err(format!(
                "workspace_config.{key} must be a string, one of: {}",
                names.join(", ")
            )),
        }
    }
    Ok(WorkspaceChoice {
        isolation: read(config, ISOLATION_KEY, WorkspaceIsolation::names())?,
        overlap_policy: read(config, OVERLAP_POLICY_KEY, OverlapPolicy::names())?,
    })
}

/// One commit a work session made on its branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionCommit {
    /// The full commit id.
    pub id: String,
    /// The first line of its message.
    pub summary: String,
    pub author: String,
    pub committed_at: DateTime<Utc>,
}

/// A file another running work session of the same task touched too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileOverlap {
    /// The path, relative to the repository (or project) root.
    pub path: String,
    /// The other work session that touched it.
    pub other_work_session_id: WorkSessionId,
}

/// Why a work session's turn was interrupted under the `serialize` overlap policy: it touched
/// `path`, which the earlier running session `other_work_session_id` had touched; the interrupted
/// turn `turn_id` waits (`SpecTaskWorkSession::waiting_for`) until that session ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverlapWait {
    pub other_work_session_id: WorkSessionId,
    pub path: String,
    pub turn_id: TurnId,
}

/// The note a turn interrupted by an overlap starts with when it resumes: `other` (the earlier
/// session's name) was editing `path` and has finished.
pub fn overlap_resume_note(other: &str, path: &str) -> String {
    format!(
        "(spectask: another thread ({other}) was editing {path}; it has finished and its work is \
         merged into the task branch; check the file before continuing. Your turn was paused \
         while it ran; continue the prompt below.)\n\n"
    )
}

/// What a work session's commit says: the task key and title on the first line, its requirement
/// ids, and trailers naming the work session and the SpecTask (so `git log` leads back to them).
pub fn session_commit_message(
    title: &str,
    task_key: Option<&str>,
    requirement_refs: &[String],
    work_session: &WorkSessionId,
    spec_task: &SpecTaskId,
) -> String {
    let title = title.lines().next().unwrap_or_default().trim();
    let mut message = match task_key {
        Some(key) => format!("{key} {title}"),
        None => title.to_owned(),
    };
    if message.trim().is_empty() {
        message = format!("Work session {work_session}");
    }
    message.push_str("\n\n");
    if !requirement_refs.is_empty() {
        message.push_str(&format!(
            "Requirements: {}\n\n",
            requirement_refs.join(", ")
        ));
    }
    message.push_str(&format!(
        "Spectask-Work-Session: {work_session}\nSpectask-Task: {spec_task}\n"
    ));
    message
}

/// The follow-up prompt of a work session whose branch conflicts with the task branch: spectask
/// has already merged the task branch into the session's worktree, leaving conflict markers.
pub fn merge_conflict_note(task_branch: &str, files: &[String], attempt: i32) -> String {
    let list = files
        .iter()
        .map(|f| format!("- {f}"))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "Your work could not be merged into the task branch `{task_branch}`: other work sessions \
         changed the same lines. spectask has merged the task branch into your working directory \
         (rebase onto the task branch), and these files now contain conflict markers \
         (`<<<<<<<`, `=======`, `>>>>>>>`):\n{list}\n\nResolve every conflict so that both your \
         change and theirs are kept and the project still works, remove all the markers, and end \
         your turn. Do not run git commands that commit, reset or abort: spectask commits your \
         resolution. (Attempt {attempt}.)\n"
    )
}

/// The follow-up prompt after a human resolved a blocked merge in the session's worktree.
pub const MERGE_RESOLVED_NOTE: &str = "A human resolved the merge conflict in your working \
directory. Check that the project still works with both sides' changes, fix what is needed, and \
end your turn; spectask commits and merges the result.\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_choice_reads_known_keys_and_refuses_bad_values() {
        let config =
            serde_json::json!({"isolation": "shared", "overlap_policy": "serialize", "x": 1});
        let choice = workspace_choice(Some(&config)).unwrap();
        assert_eq!(choice.isolation, Some(WorkspaceIsolation::Shared));
        assert_eq!(choice.overlap_policy, Some(OverlapPolicy::Serialize));
        assert_eq!(workspace_choice(None).unwrap(), WorkspaceChoice::default());
        let bad = serde_json::json!({"isolation": "docker"});
        let err = workspace_choice(Some(&bad)).unwrap_err();
        assert!(err.contains("workspace_config.isolation") && err.contains("worktree, shared"));
        let not_text = serde_json::json!({"overlap_policy": 3});
        assert!(workspace_choice(Some(&not_text)).is_err());
    }

    #[test]
    fn the_resume_note_names_the_other_thread_and_the_file() {
        let note = overlap_resume_note("1. Schema", "src/lib.rs");
        assert!(
            note.contains("another thread (1. Schema) was editing src/lib.rs; it has finished")
        );
        assert!(note.contains("check the file before continuing"));
    }

    #[test]
    fn commit_message_names_task_requirements_and_session() {
        let ws = WorkSessionId::from_ulid(ulid::Ulid::from_parts(1_700_000_000_000, 1));
        let task = SpecTaskId::from_ulid(ulid::Ulid::from_parts(1_700_000_000_000, 2));
        let message = session_commit_message(
            "Add the login form\nmore",
            Some("2.1"),
            &["1.1".into(), "1.2".into()],
            &ws,
            &task,
        );
        assert!(message.starts_with("2.1 Add the login form\n\nRequirements: 1.1, 1.2\n\n"));
        assert!(message.contains(&format!("Spectask-Work-Session: {ws}\n")));
        assert!(message.ends_with(&format!("Spectask-Task: {task}\n")));
        let bare = session_commit_message("", None, &[], &ws, &task);
        assert!(bare.starts_with(&format!("Work session {ws}\n\nSpectask-Work-Session")));
    }
}
