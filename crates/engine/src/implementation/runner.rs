//! Runs one implementation turn on its work session's thread: brings up the instance, creates the
//! thread (first turn) or resumes it (never a new one for an existing session), streams the
//! agent's output into the interaction, watches for silence, and ends the turn with one store
//! transaction: completed (after its checks pass, `checks.rs`), retried with a note, or
//! failed with its dependants blocked. A thread whose MCP token died is set up again first, so
//! its agent gets a fresh one. A review session's turns run the same way in the reviewer's own
//! instance, with no worktree, no checks and no merge.

use std::sync::atomic::{AtomicBool, Ordering};

use spectask_domain::plan::{PlanTaskStatus, render_progress};
use spectask_domain::prompts::retry_note;
use spectask_domain::{
    AgentThreadId, SpecTask, ThreadOwner, TurnKind, TurnStatus, WorkSessionId, WorkSessionPhase,
    WorkSessionStatus, ZedThreadEvent, ZedThreadStatus,
};
use spectask_runtimes::agent::{AgentError, InstanceSpec, StopReason};
use spectask_store::{AgentTokenState, StoreError, TurnClaim};
use tokio_util::sync::CancellationToken;

use super::checks::{Verdict, Workplace};
use super::graph::SessionGraph;
use crate::agent_turn::{AgentThread, RunEnd, claimed_interaction, stored_instance_id};
use crate::workspace::{GitSettlement, agent_extra_root};
use crate::{Engine, EngineError, projection};

impl Engine {
    pub(crate) async fn execute_implementation(
        &self,
        claim: &TurnClaim,
        cancel: &CancellationToken,
        lost: &AtomicBool,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let settings = &self.inner.settings;
        let Some(runtime) = self.inner.runtime.clone() else {
            store.release_turn(claim).await?;
            return Ok(());
        };
        let ws_id = claim.turn.work_session_id.clone().ok_or_else(|| {
            EngineError::Conflict(format!("turn {} belongs to no work session", claim.turn.id))
        })?;
        let task = store.get_spec_task(&claim.turn.spec_task_id).await?;
        if claim.turn.attempts > settings.max_turn_attempts {
            let reason = format!(
                "the turn was interrupted {} times (restarts or lost workers)",
                claim.turn.attempts - 1
            );
            return self.fail_for_good(claim, &ws_id, "", &reason).await;
        }
        let ws = store.get_work_session(&ws_id).await?;
        if let Some(reason) = ws.agent_gave_up {
            // A turn of a session whose agent gave up (re-run after a shutdown, or a queued
            // follow-up) never reaches the agent again.
            let reason = format!("the agent gave up: {reason}");
            return self.fail_for_good(claim, &ws_id, "", &reason).await;
        }
        // A review session's reviewer reads the project and the task branch; it gets no worktree,
        // runs no checks and merges nothing.
        let review = ws.phase == WorkSessionPhase::Review;
        // Worktree isolation: the session's worktree, made before the agent starts so its
        // sandbox is planned with it (a task started before isolation existed decides it now).
        let placed = match self.prepare_isolation(&task).await {
            Ok(task) if review => Ok((task, None)),
            Ok(task) => self
                .session_place(&task, &ws)
                .await
                .map(|place| (task, place)),
            Err(err) => Err(err),
        };
        let (task, place) = match placed {
            Ok(placed) => placed,
            Err(err @ EngineError::Store(_)) => return Err(err),
            Err(err) => {
                return self
                    .turn_failed(
                        claim,
                        &ws_id,
                        "",
                        &format!("the work session's worktree could not be prepared: {err}"),
                    )
                    .await;
            }
        };
        // Resuming after an overlap wait: the earlier session's work comes into the worktree.
        if let Some(place) = &place
            && ws.waiting_for.is_none()
            && ws
                .overlap_wait
                .as_ref()
                .is_some_and(|wait| wait.turn_id == claim.turn.id)
        {
            match self.catch_up_worktree(&task, &ws, place).await {
                Ok(files) if !files.is_empty() => {
                    tracing::info!(
                        ?files,
                        "the task branch merged into the worktree with conflicts left for the agent"
                    );
                }
                Ok(_) => {}
                Err(err @ EngineError::Store(_)) => return Err(err),
                Err(err) => {
                    return self
                        .turn_failed(
                            claim,
                            &ws_id,
                            "",
                            &format!(
                                "the task branch could not be merged into the worktree: {err}"
                            ),
                        )
                        .await;
                }
            }
        }
        let cwd = place.as_ref().map(|place| place.cwd.as_path());
        // The reviewer runs in an instance of its own profile; everyone else in the task's.
        let Some(stored_instance) = ws
            .instance_id
            .as_deref()
            .or(task.zed_instance_id.as_deref())
        else {
            return Err(EngineError::Conflict(format!(
                "spec task {} has no instance",
                task.id
            )));
        };
        let instance_id = stored_instance_id(&task.id, stored_instance)?;
        let agent = if review {
            ws.agent_config
                .as_ref()
                .and_then(|config| config.get("agent"))
                .and_then(|agent| agent.as_str())
                .map(str::to_owned)
        } else {
            task.implementation_agent.clone()
        };
        let owner = ThreadOwner::WorkSession(ws_id.clone());
        let spec = InstanceSpec {
            instance_id: instance_id.clone(),
            spec_task_id: task.id.to_string(),
            workspace: task.project_path.as_ref().map(Into::into),
            agent,
            config: task
                .workspace_config
                .clone()
                .unwrap_or(serde_json::Value::Null),
            extra_roots: agent_extra_root(settings.git.worktrees_dir.as_deref(), &task)
                .into_iter()
                .collect(),
        };
        // A restart may wait out its backoff (up to a minute): shutdown must not wait for it.
        let ensured = tokio::select! {
            result = runtime.ensure_instance(&spec) => result,
            _ = cancel.cancelled() => {
                if lost.load(Ordering::SeqCst) {
                    return Err(StoreError::ClaimLost(claim.turn.id.to_string()).into());
                }
                store.release_turn(claim).await?;
                return Ok(());
            }
        };
        if let Err(err) = ensured {
            return self
                .turn_failed(
                    claim,
                    &ws_id,
                    "",
                    &format!("the agent instance could not start: {err}"),
                )
                .await;
        }
        let thread_id = match store.thread_of_work_session(&ws_id).await? {
            Some(thread) => {
                let thread_id = AgentThreadId::new(thread.zed_thread_id.as_str());
                if let Err(err) = runtime
                    .resume_thread(&instance_id, &owner, &thread_id, cwd)
                    .await
                {
                    return self
                        .turn_failed(
                            claim,
                            &ws_id,
                            "",
                            &format!(
                                "thread {} could not be resumed: {err}",
                                thread.zed_thread_id
                            ),
                        )
                        .await;
                }
                // Re-read: the instance's loss may have been recorded since the read above.
                let status = match store.thread_of_work_session(&ws_id).await? {
                    Some(current) => current.status,
                    None => thread.status,
                };
                if status == ZedThreadStatus::Disconnected {
                    store
                        .transition_zed_thread(
                            &thread.id,
                            ZedThreadEvent::Reconnect,
                            &self.inner.owner,
                        )
                        .await?;
                }
                thread_id
            }
            None => {
                let thread_id = match runtime.create_thread(&instance_id, &owner, cwd).await {
                    Ok(id) => id,
                    Err(err) => {
                        return self
                            .turn_failed(
                                claim,
                                &ws_id,
                                "",
                                &format!("the agent could not open a thread: {err}"),
                            )
                            .await;
                    }
                };
                store
                    .record_thread(&ws_id, thread_id.as_str(), &self.inner.owner)
                    .await?;
                thread_id
            }
        };

        if store.agent_token_state(&ws_id).await? == AgentTokenState::Dead {
            // The thread's MCP token died (the session was retried or reopened, or the token
            // expired): set the thread up again so the agent gets a fresh one.
            if let Err(err) = runtime
                .refresh_thread(&instance_id, &owner, &thread_id, cwd)
                .await
            {
                return self
                    .turn_failed(
                        claim,
                        &ws_id,
                        "",
                        &format!("thread {thread_id} could not be set up again: {err}"),
                    )
                    .await;
            }
        }

        let session = store.get_session(&claim.turn.session_id).await?;
        let prompt = self.agent_turn_prompt(claim, &session).await?;
        tracing::info!(thread = %thread_id, "implementation turn running");

        let thread = AgentThread {
            runtime: runtime.as_ref(),
            instance_id: &instance_id,
            thread_id: &thread_id,
        };
        let (end, written) = self.drive_agent_turn(thread, claim, prompt, cancel).await?;

        if !matches!(end, RunEnd::Interrupted)
            && let Some(reason) = store.get_work_session(&ws_id).await?.agent_gave_up
        {
            // The agent gave up over MCP: whatever the turn's end, no retry.
            return self
                .fail_for_good(
                    claim,
                    &ws_id,
                    &written,
                    &format!("the agent gave up: {reason}"),
                )
                .await;
        }

        match end {
            RunEnd::Interrupted => {
                if lost.load(Ordering::SeqCst) {
                    // Cancelled by a human (the turn was cancelled in the store) or taken over.
                    return Err(StoreError::ClaimLost(claim.turn.id.to_string()).into());
                }
                store.release_turn(claim).await?;
                tracing::info!("implementation turn released for shutdown");
                Ok(())
            }
            RunEnd::Finished(Ok(StopReason::EndTurn)) if review => {
                let progress = store
                    .complete_implementation_turn(claim, &written, None)
                    .await?;
                tracing::info!(finished = progress.finished, "review turn completed");
                self.wake();
                Ok(())
            }
            RunEnd::Finished(Ok(StopReason::EndTurn)) => {
                // The session's checks first: only passing ones let the turn complete.
                match self
                    .verify_turn(
                        claim,
                        &task,
                        &ws_id,
                        Workplace { spec: &spec, cwd },
                        &written,
                        cancel,
                    )
                    .await?
                {
                    Verdict::Passed => {}
                    Verdict::Handled => return Ok(()),
                    Verdict::Interrupted => {
                        if lost.load(Ordering::SeqCst) {
                            return Err(StoreError::ClaimLost(claim.turn.id.to_string()).into());
                        }
                        store.release_turn(claim).await?;
                        tracing::info!(
                            "implementation turn released for shutdown during its checks"
                        );
                        return Ok(());
                    }
                }
                // Worktree isolation: commit and merge first; the turn completes with the merge.
                let ws = store.get_work_session(&ws_id).await?;
                let merge = match self.settle_git(claim, &task, &ws, &written).await {
                    Ok(GitSettlement::Shared) => None,
                    Ok(GitSettlement::Merged(merge)) => Some(merge),
                    Ok(GitSettlement::Handled) => return Ok(()),
                    Err(err @ EngineError::Store(_)) => return Err(err),
                    Err(err) => {
                        return self
                            .turn_failed(
                                claim,
                                &ws_id,
                                &written,
                                &format!("its work could not be committed and merged: {err}"),
                            )
                            .await;
                    }
                };
                let progress = store
                    .complete_implementation_turn(claim, &written, merge.as_ref())
                    .await?;
                if merge.is_some()
                    && let Some(project) = task.project_path.as_deref()
                    && store.get_work_session(&ws_id).await?.status == WorkSessionStatus::Completed
                    && let Err(err) = self
                        .remove_session_worktree(project, &task.id, &ws_id)
                        .await
                {
                    // The reaper removes it later.
                    tracing::warn!(%err, "could not remove the merged worktree");
                }
                tracing::info!(
                    finished = progress.finished,
                    "implementation turn completed"
                );
                self.project_progress(&task, &progress.completed_keys).await;
                self.wake();
                Ok(())
            }
            RunEnd::Finished(Ok(reason)) => {
                self.turn_failed(
                    claim,
                    &ws_id,
                    &written,
                    &format!("the agent stopped with `{}`", reason.as_str()),
                )
                .await
            }
            RunEnd::Finished(Err(err)) => {
                // Tolerant of the worker having disconnected it first, from the runtime's report
                // of the same loss.
                if matches!(err, AgentError::Disconnected(_))
                    && let Some(thread) = store.thread_of_work_session(&ws_id).await?
                {
                    store
                        .disconnect_threads(&[thread.id], &self.inner.owner)
                        .await?;
                }
                // An interrupted turn is always re-dispatched once, even with no retry budget.
                let retries = if matches!(err, AgentError::Disconnected(_)) {
                    settings.max_turn_retries.max(1)
                } else {
                    settings.max_turn_retries
                };
                self.retry_or_fail(claim, &ws_id, &written, &err.to_string(), retries)
                    .await
            }
            RunEnd::TimedOut(idle) => {
                self.turn_failed(
                    claim,
                    &ws_id,
                    &written,
                    &format!(
                        "no agent activity for {}s; the turn was cancelled",
                        idle.as_secs()
                    ),
                )
                .await
            }
        }
    }

    /// A failed turn: retried with a note while the session's retry budget lasts, then the
    /// session fails for good.
    async fn turn_failed(
        &self,
        claim: &TurnClaim,
        ws: &WorkSessionId,
        written: &str,
        reason: &str,
    ) -> Result<(), EngineError> {
        self.retry_or_fail(
            claim,
            ws,
            written,
            reason,
            self.inner.settings.max_turn_retries,
        )
        .await
    }

    /// Retries the failed turn with a note if the session has failed fewer than `retries` turns,
    /// otherwise fails the session for good.
    async fn retry_or_fail(
        &self,
        claim: &TurnClaim,
        ws: &WorkSessionId,
        written: &str,
        reason: &str,
        retries: i32,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let failed_before = store
            .turns_of_work_session(ws)
            .await?
            .iter()
            .filter(|t| t.status == TurnStatus::Failed)
            .count() as i32;
        if failed_before < retries {
            let assignment = store
                .get_work_session(ws)
                .await?
                .name
                .unwrap_or_else(|| ws.to_string());
            let mut prompt = retry_note(&assignment, reason, failed_before + 1);
            if claim.turn.kind == TurnKind::Implementation {
                // The brief itself failed, possibly before the agent saw it (its worktree or
                // thread could not be set up): the retry carries it again.
                let session = store.get_session(&claim.turn.session_id).await?;
                let brief = &claimed_interaction(claim, &session)?.prompt_message;
                prompt = format!("{prompt}\nYour assignment, as first given:\n\n{brief}");
            }
            let turn = store
                .retry_implementation_turn(claim, written, reason, &prompt)
                .await?;
            tracing::warn!(%reason, retry = failed_before + 1, next_turn = %turn, "implementation turn failed; retrying");
            self.wake();
            return Ok(());
        }
        self.fail_for_good(claim, ws, written, reason).await
    }

    pub(super) async fn fail_for_good(
        &self,
        claim: &TurnClaim,
        ws: &WorkSessionId,
        written: &str,
        reason: &str,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let tasks = store
            .list_implementation_tasks(&claim.turn.spec_task_id)
            .await?;
        let dependants = SessionGraph::new(&tasks).dependants(ws);
        store
            .fail_work_session(claim, written, reason, &dependants)
            .await?;
        tracing::warn!(%reason, blocked = dependants.len(), "work session failed");
        self.wake();
        Ok(())
    }

    /// Re-renders the workspace `tasks.md` of task `id` from its implementation tasks now (after
    /// an agent reported progress).
    pub async fn project_task_progress(
        &self,
        id: &spectask_domain::SpecTaskId,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let task = store.get_spec_task(id).await?;
        let completed: Vec<String> = store
            .list_implementation_tasks(id)
            .await?
            .into_iter()
            .filter(|t| t.status == spectask_domain::ImplementationTaskStatus::Completed)
            .map(|t| t.key)
            .collect();
        self.project_progress(&task, &completed).await;
        Ok(())
    }

    /// Rewrites the checkboxes of the workspace `tasks.md` to match the implementation tasks.
    async fn project_progress(&self, task: &SpecTask, completed: &[String]) {
        let (Some(project), Some(plan)) = (
            task.project_path.as_deref(),
            task.implementation_plan.as_deref(),
        ) else {
            return;
        };
        let rendered = render_progress(
            plan,
            completed
                .iter()
                .map(|k| (k.as_str(), PlanTaskStatus::Completed)),
        );
        let path = projection::spec_dir(std::path::Path::new(project), &task.id).join("tasks.md");
        if let Err(err) = projection::write_file(&path, &rendered).await {
            tracing::warn!(spec_task_id = %task.id, %err, "could not update tasks.md in the workspace");
        }
    }
}
