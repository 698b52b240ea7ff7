//! What the git layer records: a task's isolation and branch (set once on entering
//! implementation), a work session's worktree and branch, the commits it made, and the files
//! running sessions touch (overlap detection). The git operations themselves happen in the
//! engine; this module only stores their results, each write one transaction with its event,
//! and the waits of the `serialize` overlap policy (a session waiting for another to end).

use chrono::{DateTime, Utc};
use serde_json::json;
use spectask_domain::{
    ApprovalMerge, EventKind, FileOverlap, NewEvent, SessionCommit, SpecTask, SpecTaskId,
    SpecTaskWorkSession, WorkSessionId, WorkspaceIsolation,
};

use crate::db::{Tx, query, query_as};
use crate::error::{StoreError, StoreResult};
use crate::events::append_event;
use crate::ids::now;
use crate::turns::verify_claim;
use crate::{Store, TurnClaim};

/// The task branch made on entering implementation (worktree isolation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskBranch {
    pub branch_name: String,
    /// The branch HEAD was on (`None` when detached).
    pub base_branch: Option<String>,
    pub base_commit: String,
}

/// A work session's worktree, as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWorktree {
    pub branch_name: String,
    pub worktree_path: String,
    pub base_commit: String,
}

#[derive(sqlx::FromRow)]
struct CommitRow {
    work_session_id: String,
    commit_id: String,
    summary: String,
    author: String,
    committed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OverlapRow {
    work_session_id: String,
    path: String,
    other: String,
}

impl Store {
    /// Records how the task's work sessions share the project, once: a second call (another
    /// replica, a restart) changes nothing and returns the task as first recorded.
    pub async fn record_isolation(
        &self,
        task: &SpecTaskId,
        isolation: WorkspaceIsolation,
        branch: Option<&TaskBranch>,
        actor: &str,
    ) -> StoreResult<SpecTask> {
        let now = now();
        self.write(async |tx| {
            let updated = query(
                "UPDATE spec_tasks SET isolation = $1, branch_name = $2, base_branch = $3, \
                 base_commit = $4, head_commit = $4, updated_at = $5 \
                 WHERE id = $6 AND isolation IS NULL",
            )
            .bind(isolation.as_str())
            .bind(branch.map(|b| b.branch_name.clone()))
            .bind(branch.and_then(|b| b.base_branch.clone()))
            .bind(branch.map(|b| b.base_commit.clone()))
            .bind(now)
            .bind(task.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 1
                && let Some(branch) = branch
            {
                task_event(
                    &mut *tx,
                    task,
                    EventKind::TaskBranchCreated,
                    task.to_string(),
                    actor,
                    json!({
                        "branch_name": branch.branch_name,
                        "base_branch": branch.base_branch,
                        "base_commit": branch.base_commit,
                    }),
                    now,
                )
                .await?;
            }
            Ok(())
        })
        .await?;
        self.get_spec_task(task).await
    }

    /// Records that the task branch was merged where the task started from, at approval
    /// (`mode`: `fast_forward` or `merge_commit`; `outcome`: what git did; `head`: the branch's
    /// new tip), as a `spec_task.branch_merged` event.
    pub async fn record_branch_merged(
        &self,
        task: &SpecTaskId,
        into: &str,
        mode: ApprovalMerge,
        outcome: &str,
        head: &str,
        actor: &str,
    ) -> StoreResult<()> {
        let now = now();
        self.write(async |tx| {
            task_event(
                &mut *tx,
                task,
                EventKind::TaskBranchMerged,
                task.to_string(),
                actor,
                json!({
                    "into": into,
                    "mode": mode.as_str(),
                    "outcome": outcome,
                    "head": head,
                }),
                now,
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Records a work session's (new or re-created) worktree.
    pub async fn record_worktree(
        &self,
        ws: &WorkSessionId,
        worktree: &SessionWorktree,
        actor: &str,
    ) -> StoreResult<()> {
        let now = now();
        self.write(async |tx| {
            let task = task_of(&mut *tx, ws).await?;
            query(
                "UPDATE spec_task_work_sessions SET branch_name = $1, worktree_path = $2, \
                 base_commit = $3 WHERE id = $4",
            )
            .bind(worktree.branch_name.as_str())
            .bind(worktree.worktree_path.as_str())
            .bind(worktree.base_commit.as_str())
            .bind(ws.as_str())
            .execute(&mut *tx)
            .await?;
            task_event(
                &mut *tx,
                &task,
                EventKind::WorktreeCreated,
                ws.to_string(),
                actor,
                json!({
                    "branch_name": worktree.branch_name,
                    "worktree_path": worktree.worktree_path,
                    "base_commit": worktree.base_commit,
                }),
                now,
            )
            .await?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The work session's worktree was removed (its commits are merged, or its task ended).
    pub async fn clear_worktree(&self, ws: &WorkSessionId) -> StoreResult<()> {
        self.write(async |tx| {
            query("UPDATE spec_task_work_sessions SET worktree_path = NULL WHERE id = $1")
                .bind(ws.as_str())
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await
    }

    /// Records that a task's worktrees and session branches were removed (it ended).
    pub async fn record_worktrees_removed(
        &self,
        task: &SpecTaskId,
        worktrees: usize,
        actor: &str,
    ) -> StoreResult<()> {
        let now = now();
        self.write(async |tx| {
            task_event(
                &mut *tx,
                task,
                EventKind::WorktreesRemoved,
                task.to_string(),
                actor,
                json!({ "worktrees": worktrees }),
                now,
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Records what a finished turn committed (`commit`: `None` when it changed nothing), as an
    /// event on the work session.
    pub async fn record_session_commit(
        &self,
        ws: &WorkSessionId,
        commit: Option<&str>,
        actor: &str,
    ) -> StoreResult<()> {
        let now = now();
        self.write(async |tx| {
            let task = task_of(&mut *tx, ws).await?;
            task_event(
                &mut *tx,
                &task,
                EventKind::WorkSessionCommitted,
                ws.to_string(),
                actor,
                match commit {
                    Some(id) => json!({ "commit": id }),
                    None => json!({ "commit": null, "note": "no changes to commit" }),
                },
                now,
            )
            .await?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Records files a work session's agent touched; returns the overlaps this created: files
    /// another active work session of the same task touched too (each one an `overlap` event).
    pub async fn record_touched_files(
        &self,
        ws: &WorkSessionId,
        paths: &[String],
        actor: &str,
    ) -> StoreResult<Vec<FileOverlap>> {
        let now = now();
        self.write(async |tx| {
            let task = task_of(&mut *tx, ws).await?;
            let mut overlaps = Vec::new();
            for path in paths {
                let inserted = query(
                    "INSERT INTO work_session_files (work_session_id, spec_task_id, path, first_seen_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(ws.as_str())
                .bind(task.as_str())
                .bind(path.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    continue;
                }
                let others: Vec<String> = crate::db::query_scalar(
                    "SELECT f.work_session_id FROM work_session_files f \
                     JOIN spec_task_work_sessions w ON w.id = f.work_session_id \
                     WHERE f.spec_task_id = $1 AND f.path = $2 AND f.work_session_id <> $3 \
                     AND w.status = 'active' ORDER BY f.first_seen_at, f.work_session_id",
                )
                .bind(task.as_str())
                .bind(path.as_str())
                .bind(ws.as_str())
                .fetch_all(&mut *tx)
                .await?;
                for other in others {
                    let other = WorkSessionId::parse(&other)
                        .map_err(|e| StoreError::corrupt("work_session_files", e))?;
                    task_event(&mut *tx, &task, EventKind::WorkSessionOverlap, ws.to_string(), actor, json!({
                            "path": path,
                            "work_session_id": ws,
                            "other_work_session_id": other,
                        }), now).await?;
                    overlaps.push(FileOverlap {
                        path: path.clone(),
                        other_work_session_id: other,
                    });
                }
            }
            Ok(overlaps)
        })
        .await
    }

    /// Overlap policy `serialize`: the claimed turn's work session touched `path`, which the
    /// earlier running session `other` touched too, so it waits for `other` to end. In one
    /// transaction, and only while the claim holds: records the wait (`waiting_for`, and the
    /// overlap kept for the resumed turn's note), gives the turn back its attempt (the worker
    /// releases it to the queue next; an overlap wait is not an interruption that counts), and
    /// appends `work_session.waiting`. Returns false, changing nothing, when `other` no longer
    /// runs or waits itself (two sessions never wait for each other), or this one already waits.
    pub async fn wait_for_overlap(
        &self,
        claim: &TurnClaim,
        other: &WorkSessionId,
        path: &str,
        actor: &str,
    ) -> StoreResult<bool> {
        let ws = claim.turn.work_session_id.as_ref().ok_or_else(|| {
            StoreError::Conflict(format!("turn {} has no work session", claim.turn.id))
        })?;
        let now = now();
        self.write(async |tx| {
            verify_claim(&mut *tx, claim).await?;
            let updated = query(
                "UPDATE spec_task_work_sessions SET waiting_for = $1, overlap_wait_with = $1, \
                 overlap_wait_path = $2, overlap_wait_turn = $3 \
                 WHERE id = $4 AND status = 'active' AND waiting_for IS NULL \
                 AND EXISTS (SELECT 1 FROM spec_task_work_sessions o WHERE o.id = $1 \
                   AND o.status = 'active' AND o.waiting_for IS NULL \
                   AND o.spec_task_id = spec_task_work_sessions.spec_task_id)",
            )
            .bind(other.as_str())
            .bind(path)
            .bind(claim.turn.id.as_str())
            .bind(ws.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Ok(false);
            }
            query("UPDATE turns SET attempts = attempts - 1 WHERE id = $1 AND attempts > 0")
                .bind(claim.turn.id.as_str())
                .execute(&mut *tx)
                .await?;
            let event = NewEvent {
                spec_task_id: Some(claim.turn.spec_task_id.clone()),
                kind: EventKind::WorkSessionWaiting,
                entity_id: ws.to_string(),
                actor: actor.to_owned(),
                payload: json!({
                    "waiting_for": other,
                    "path": path,
                    "turn_id": claim.turn.id,
                }),
            };
            append_event(&mut *tx, &event, now).await?;
            Ok(true)
        })
        .await
    }

    /// The files each work session of task `task` touched, in the order first seen.
    pub async fn touched_files_of_task(
        &self,
        task: &SpecTaskId,
    ) -> StoreResult<std::collections::BTreeMap<WorkSessionId, Vec<String>>> {
        let rows: Vec<(String, String)> = crate::db::query_as(
            "SELECT work_session_id, path FROM work_session_files WHERE spec_task_id = $1 \
             ORDER BY work_session_id, first_seen_at, path",
        )
        .bind(task.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        let mut files: std::collections::BTreeMap<WorkSessionId, Vec<String>> =
            std::collections::BTreeMap::new();
        for (ws, path) in rows {
            let ws = WorkSessionId::parse(&ws)
                .map_err(|e| StoreError::corrupt("work_session_files", e))?;
            files.entry(ws).or_default().push(path);
        }
        Ok(files)
    }

    /// The files a work session touched, in the order first seen.
    pub async fn touched_files(&self, ws: &WorkSessionId) -> StoreResult<Vec<String>> {
        crate::db::query_scalar(
            "SELECT path FROM work_session_files WHERE work_session_id = $1 ORDER BY first_seen_at, path",
        )
        .bind(ws.as_str())
        .fetch_all(self.backend.reader())
        .await
    }

    /// Fills the commits and overlaps of work sessions of one task (the rows carry neither).
    pub(crate) async fn hydrate_work_sessions(
        &self,
        task: &SpecTaskId,
        sessions: &mut [SpecTaskWorkSession],
    ) -> StoreResult<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let commits: Vec<CommitRow> = query_as(
            "SELECT c.work_session_id, c.commit_id, c.summary, c.author, c.committed_at \
             FROM work_session_commits c JOIN spec_task_work_sessions w ON w.id = c.work_session_id \
             WHERE w.spec_task_id = $1 ORDER BY c.work_session_id, c.seq",
        )
        .bind(task.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        // Overlaps are shown while both sessions could still be editing (neither closed).
        let overlaps: Vec<OverlapRow> = query_as(
            "SELECT a.work_session_id, a.path, b.work_session_id AS other \
             FROM work_session_files a JOIN work_session_files b \
               ON b.spec_task_id = a.spec_task_id AND b.path = a.path AND b.work_session_id <> a.work_session_id \
             JOIN spec_task_work_sessions wa ON wa.id = a.work_session_id \
             JOIN spec_task_work_sessions wb ON wb.id = b.work_session_id \
             WHERE a.spec_task_id = $1 AND wa.status IN ('active', 'blocked') \
               AND wb.status IN ('active', 'blocked') \
             ORDER BY a.work_session_id, a.path, b.work_session_id",
        )
        .bind(task.as_str())
        .fetch_all(self.backend.reader())
        .await?;
        for session in sessions.iter_mut() {
            let id = session.id.as_str();
            session.commits = commits
                .iter()
                .filter(|c| c.work_session_id == id)
                .map(|c| SessionCommit {
                    id: c.commit_id.clone(),
                    summary: c.summary.clone(),
                    author: c.author.clone(),
                    committed_at: c.committed_at,
                })
                .collect();
            session.overlaps = overlaps
                .iter()
                .filter(|o| o.work_session_id == id)
                .map(|o| {
                    Ok(FileOverlap {
                        path: o.path.clone(),
                        other_work_session_id: WorkSessionId::parse(&o.other)
                            .map_err(|e| StoreError::corrupt("work_session_files", e))?,
                    })
                })
                .collect::<StoreResult<_>>()?;
        }
        Ok(())
    }
}

/// Appends an event of `task` about `entity` inside `tx`.
async fn task_event(
    tx: &mut Tx,
    task: &SpecTaskId,
    kind: EventKind,
    entity: String,
    actor: &str,
    payload: serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let event = NewEvent {
        spec_task_id: Some(task.clone()),
        kind,
        entity_id: entity,
        actor: actor.to_owned(),
        payload,
    };
    append_event(tx, &event, now).await?;
    Ok(())
}

/// The task a work session belongs to.
pub(crate) async fn task_of(tx: &mut Tx, ws: &WorkSessionId) -> StoreResult<SpecTaskId> {
    let task: Option<String> =
        crate::db::query_scalar("SELECT spec_task_id FROM spec_task_work_sessions WHERE id = $1")
            .bind(ws.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    let task = task.ok_or_else(|| StoreError::NotFound {
        entity: "work session",
        id: ws.to_string(),
    })?;
    SpecTaskId::parse(&task).map_err(|e| StoreError::corrupt("spec_task_work_sessions", e))
}

/// Inserts a merged session's commits (a repeat of a commit already recorded changes nothing)
/// and records its merged tip, and the task branch's new tip, inside `tx`.
pub(crate) async fn record_merge(
    tx: &mut Tx,
    ws: &WorkSessionId,
    task: &SpecTaskId,
    merge: &SessionMerge,
    actor: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // `seq` is INTEGER: PostgreSQL's MAX of it is an INT4, which does not decode as i64.
    let mut seq: i32 = crate::db::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) FROM work_session_commits WHERE work_session_id = $1",
    )
    .bind(ws.as_str())
    .fetch_one(&mut *tx)
    .await?;
    for commit in &merge.commits {
        seq += 1;
        query(
            "INSERT INTO work_session_commits (work_session_id, commit_id, seq, summary, author, committed_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(ws.as_str())
        .bind(commit.id.as_str())
        .bind(seq)
        .bind(commit.summary.as_str())
        .bind(commit.author.as_str())
        .bind(commit.committed_at)
        .execute(&mut *tx)
        .await?;
    }
    query(
        "UPDATE spec_task_work_sessions SET head_commit = $1, merge_attempts = 0, conflict_files = NULL \
         WHERE id = $2",
    )
    .bind(merge.session_head.as_str())
    .bind(ws.as_str())
    .execute(&mut *tx)
    .await?;
    query("UPDATE spec_tasks SET head_commit = $1 WHERE id = $2")
        .bind(merge.task_head.as_str())
        .bind(task.as_str())
        .execute(&mut *tx)
        .await?;
    task_event(
        &mut *tx,
        task,
        EventKind::WorkSessionMerged,
        ws.to_string(),
        actor,
        json!({
            "session_head": merge.session_head,
            "task_head": merge.task_head,
            "how": merge.how,
            "commits": merge.commits.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        }),
        now,
    )
    .await?;
    Ok(())
}

/// A work session's branch merged into the task branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMerge {
    /// The session branch's tip that was merged.
    pub session_head: String,
    /// The task branch's tip after the merge.
    pub task_head: String,
    /// `already_merged`, `fast_forward` or `merged`.
    pub how: &'static str,
    /// Its commits not yet recorded (oldest first); recorded ones are skipped.
    pub commits: Vec<SessionCommit>,
}
