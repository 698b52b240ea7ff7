//! Overlap detection between a task's running threads. While an implementation turn runs, the
//! files its agent edits (tool calls of kind `edit`, `delete` or `move`, by their locations) are
//! recorded for its work session, relative to the session's root (its worktree, or the task's
//! project); at the end of a turn in worktree isolation the worktree's git status is recorded too
//! ([`Engine::track_worktree_changes`]). A file another running session of the task touched
//! already is an overlap (a `work_session.overlap` event, shown on both sessions). The task's
//! overlap policy decides what follows: `warn` logs it; `serialize` interrupts the later
//! session's turn, which goes back to the queue and waits until the earlier session ends, then
//! resumes with a note ([`Engine::overlap_resume_note`]).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use spectask_domain::{
    FileOverlap, OverlapPolicy, SpecTask, SpecTaskWorkSession, ToolCallEntry, WorkSessionId,
    overlap_resume_note, workspace_choice,
};
use spectask_store::{StoreError, TurnClaim};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Engine, EngineError};

/// Tool-call kinds that change the files at their locations.
const EDITING_KINDS: &[&str] = &["edit", "delete", "move"];

/// The paths a tool call changes, as the agent reported them (usually absolute).
pub(crate) fn edited_paths(call: &ToolCallEntry) -> impl Iterator<Item = &str> {
    let edits = EDITING_KINDS.contains(&call.kind.as_str());
    call.locations
        .iter()
        .filter(move |_| edits)
        .map(|location| location.path.as_str())
}

/// `path` relative to `root`, with `.` and `..` resolved lexically; `None` when it is outside
/// the root (or, without a root, absolute). A relative path is taken as relative to the root.
pub(crate) fn relative_to_root(path: &str, root: Option<&Path>) -> Option<String> {
    let path = Path::new(path);
    let rest = if path.is_absolute() {
        path.strip_prefix(normalize(root?)?).ok()?.to_path_buf()
    } else {
        path.to_path_buf()
    };
    let relative = normalize(&rest)?;
    if relative.is_absolute() || relative.as_os_str().is_empty() {
        return None;
    }
    Some(relative.to_string_lossy().into_owned())
}

/// `path` with `.` dropped and `..` applied; `None` if a `..` climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

/// The policy that applies to `task`: its `workspace_config.overlap_policy`, else `default`.
pub(crate) fn overlap_policy(task: &SpecTask, default: OverlapPolicy) -> OverlapPolicy {
    workspace_choice(task.workspace_config.as_ref())
        .ok()
        .and_then(|choice| choice.overlap_policy)
        .unwrap_or(default)
}

/// The files a running turn edits, handed to [`FileTracker::run`] without waiting on it.
pub(crate) struct TrackedPaths {
    sender: mpsc::UnboundedSender<String>,
    /// Paths already sent this turn: the channel holds each distinct path at most once.
    sent: HashSet<String>,
}

impl TrackedPaths {
    /// Notes the paths `call` edits (never blocks: the tracker records them on its own time).
    pub(crate) fn note(&mut self, call: &ToolCallEntry) {
        for path in edited_paths(call) {
            if self.sent.insert(path.to_owned()) {
                // A closed tracker (it stopped after interrupting the turn) needs nothing more.
                let _ = self.sender.send(path.to_owned());
            }
        }
    }
}

/// Records the files one implementation turn edits, batched once per flush interval, and applies
/// the task's overlap policy to the overlaps they make.
pub(crate) struct FileTracker {
    engine: Engine,
    claim: TurnClaim,
    ws: WorkSessionId,
    root: Option<PathBuf>,
    policy: OverlapPolicy,
    /// The turn's own token: cancelling it interrupts the turn (released to the queue).
    cancel: CancellationToken,
    recorded: HashSet<String>,
}

impl FileTracker {
    async fn run(mut self, mut paths: mpsc::UnboundedReceiver<String>) {
        let every = self.engine.inner.settings.flush_interval;
        while let Some(first) = paths.recv().await {
            let mut batch = vec![first];
            let deadline = Instant::now() + every;
            let ended = loop {
                tokio::select! {
                    next = paths.recv() => match next {
                        Some(path) => batch.push(path),
                        None => break true,
                    },
                    _ = tokio::time::sleep_until(deadline) => break false,
                }
            };
            // Once the agent's stream has ended the turn is over: nothing left to interrupt.
            if self.record(batch, !ended).await || ended {
                return;
            }
        }
    }

    /// Records `paths`; returns true when the turn was interrupted to wait (tracking stops).
    async fn record(&mut self, paths: Vec<String>, may_interrupt: bool) -> bool {
        let fresh: Vec<String> = paths
            .iter()
            .filter_map(|path| relative_to_root(path, self.root.as_deref()))
            .filter(|path| self.recorded.insert(path.clone()))
            .collect();
        if fresh.is_empty() {
            return false;
        }
        let engine = &self.engine;
        let overlaps = match engine
            .inner
            .store
            .record_touched_files(&self.ws, &fresh, &engine.inner.owner)
            .await
        {
            Ok(overlaps) => overlaps,
            Err(err) => {
                // Only overlap detection is lost; the turn goes on.
                tracing::warn!(%err, "could not record the files the agent edited");
                return false;
            }
        };
        warn_overlaps(&self.ws, &overlaps);
        if self.policy != OverlapPolicy::Serialize || !may_interrupt {
            return false;
        }
        for overlap in &overlaps {
            match engine
                .inner
                .store
                .wait_for_overlap(
                    &self.claim,
                    &overlap.other_work_session_id,
                    &overlap.path,
                    &engine.inner.owner,
                )
                .await
            {
                Ok(true) => {
                    tracing::info!(
                        path = %overlap.path,
                        waiting_for = %overlap.other_work_session_id,
                        "overlap policy serialize: interrupting the turn until the other session ends"
                    );
                    self.cancel.cancel();
                    return true;
                }
                Ok(false) => {}
                Err(StoreError::ClaimLost(_)) => return true,
                Err(err) => {
                    tracing::warn!(%err, "could not make the work session wait; it goes on");
                    return false;
                }
            }
        }
        false
    }
}

fn warn_overlaps(ws: &WorkSessionId, overlaps: &[FileOverlap]) {
    for overlap in overlaps {
        tracing::warn!(
            work_session_id = %ws,
            path = %overlap.path,
            other_work_session_id = %overlap.other_work_session_id,
            "two running work sessions touched the same file"
        );
    }
}

impl Engine {
    /// Starts tracking the files the claimed implementation turn edits (nothing for a planning
    /// turn): returns where to note its tool calls and the tracker's task, which ends once the
    /// returned [`TrackedPaths`] is dropped and the last paths are recorded.
    pub(crate) async fn track_turn_files(
        &self,
        claim: &TurnClaim,
        cancel: &CancellationToken,
    ) -> Result<Option<(TrackedPaths, JoinHandle<()>)>, EngineError> {
        let Some(ws) = claim.turn.work_session_id.clone() else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let task = store.get_spec_task(&claim.turn.spec_task_id).await?;
        let session = store.get_work_session(&ws).await?;
        let root = session
            .worktree_path
            .as_deref()
            .or(task.project_path.as_deref())
            .map(PathBuf::from);
        let (sender, paths) = mpsc::unbounded_channel();
        let tracker = FileTracker {
            engine: self.clone(),
            claim: claim.clone(),
            ws,
            root,
            policy: overlap_policy(&task, self.inner.settings.default_overlap_policy),
            cancel: cancel.clone(),
            recorded: HashSet::new(),
        };
        let handle = tokio::spawn(tracker.run(paths).in_current_span());
        Ok(Some((
            TrackedPaths {
                sender,
                sent: HashSet::new(),
            },
            handle,
        )))
    }

    /// Worktree isolation: records the files the session's worktree has changed (its git status)
    /// as touched, at the end of a turn; returns the overlaps this made (each one an `overlap`
    /// event, logged as a warning). Tool calls miss what an agent changes through a shell; git
    /// does not. Nothing to do for a session without a worktree (shared isolation: one tree for
    /// all sessions, so git status cannot say which session changed a file).
    pub async fn track_worktree_changes(
        &self,
        task: &SpecTask,
        ws: &SpecTaskWorkSession,
    ) -> Result<Vec<FileOverlap>, EngineError> {
        let (Some(path), Some(project)) = (ws.worktree_path.clone(), task.project_path.clone())
        else {
            return Ok(Vec::new());
        };
        // Opened from the repository's records, never through the worktree's own `.git` file.
        let changed = tokio::task::spawn_blocking(move || {
            crate::workspace::open_repository(Path::new(&project))?
                .worktree(Path::new(&path))?
                .changed_files()
        })
        .await
        .map_err(|err| EngineError::Conflict(format!("git status failed: {err}")))?
        .map_err(|err| {
            EngineError::Conflict(format!("git status of the work session's worktree: {err}"))
        })?;
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let overlaps = self
            .inner
            .store
            .record_touched_files(&ws.id, &changed, &self.inner.owner)
            .await?;
        warn_overlaps(&ws.id, &overlaps);
        Ok(overlaps)
    }

    /// The note a turn starts with when it resumes after an overlap wait: only the turn that was
    /// interrupted, and only once the wait is over.
    pub(crate) async fn overlap_resume_note(
        &self,
        claim: &TurnClaim,
    ) -> Result<Option<String>, EngineError> {
        let Some(ws) = &claim.turn.work_session_id else {
            return Ok(None);
        };
        let store = &self.inner.store;
        let session = store.get_work_session(ws).await?;
        let Some(wait) = session.overlap_wait.filter(|w| w.turn_id == claim.turn.id) else {
            return Ok(None);
        };
        if session.waiting_for.is_some() {
            return Ok(None);
        }
        let other = store.get_work_session(&wait.other_work_session_id).await?;
        let name = other
            .name
            .unwrap_or_else(|| wait.other_work_session_id.to_string());
        Ok(Some(overlap_resume_note(&name, &wait.path)))
    }
}

#[cfg(test)]
mod tests {
    use spectask_domain::ToolCallLocation;

    use super::*;

    #[test]
    fn paths_are_made_relative_to_the_root_and_outside_ones_ignored() {
        let root = Some(Path::new("/data/project"));
        let rel = |p| relative_to_root(p, root);
        assert_eq!(
            rel("/data/project/src/lib.rs").as_deref(),
            Some("src/lib.rs")
        );
        assert_eq!(
            rel("/data/project/./src/../README.md").as_deref(),
            Some("README.md")
        );
        assert_eq!(rel("src/main.rs").as_deref(), Some("src/main.rs"));
        assert_eq!(rel("/data/other/src/lib.rs"), None);
        assert_eq!(rel("/data/project-2/x"), None);
        assert_eq!(rel("/data/project/../secret"), None);
        assert_eq!(rel("../outside"), None);
        assert_eq!(rel("/data/project"), None);
        assert_eq!(relative_to_root("/abs/path", None), None);
        assert_eq!(
            relative_to_root("rel/path", None).as_deref(),
            Some("rel/path")
        );
    }

    #[test]
    fn only_editing_calls_count() {
        let mut call = ToolCallEntry::unknown("c1");
        call.locations.push(ToolCallLocation {
            path: "/p/a.rs".into(),
            line: None,
        });
        assert_eq!(edited_paths(&call).count(), 0, "kind other");
        for kind in ["read", "execute", "search"] {
            call.kind = kind.into();
            assert_eq!(edited_paths(&call).count(), 0, "{kind}");
        }
        for kind in ["edit", "delete", "move"] {
            call.kind = kind.into();
            assert_eq!(
                edited_paths(&call).collect::<Vec<_>>(),
                ["/p/a.rs"],
                "{kind}"
            );
        }
    }
}
