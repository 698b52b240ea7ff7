//! Runs one implementation turn on its work session's thread: brings up the instance, creates the
//! thread (first turn) or resumes it (never a new one for an existing session), streams the
//! agent's output into the interaction, watches for silence, and ends the turn with one store
//! transaction: completed, retried with a note, or failed with its dependants blocked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spectask_domain::plan::{PlanTaskStatus, render_progress};
use spectask_domain::prompts::{INTERRUPTED_NOTE, retry_note};
use spectask_domain::{SpecTask, TurnStatus, WorkSessionId, ZedThreadEvent, ZedThreadStatus};
use spectask_runtimes::agent::{AgentError, AgentEvent, InstanceSpec, StopReason, TurnRequest};
use spectask_store::{StoreError, TurnClaim};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::graph::SessionGraph;
use crate::planning::output::write_output;
use crate::{Engine, EngineError, projection};

/// How a turn's run ended, before it is recorded.
enum RunEnd {
    Finished(Result<StopReason, AgentError>),
    TimedOut(Duration),
    Interrupted,
}

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
        if let Some(reason) = store.get_work_session(&ws_id).await?.agent_gave_up {
            // A turn of a session whose agent gave up (re-run after a shutdown, or a queued
            // follow-up) never reaches the agent again.
            let reason = format!("the agent gave up: {reason}");
            return self.fail_for_good(claim, &ws_id, "", &reason).await;
        }
        let Some(instance_id) = task.zed_instance_id.clone() else {
            return Err(EngineError::Conflict(format!(
                "spec task {} has no instance",
                task.id
            )));
        };
        let spec = InstanceSpec {
            instance_id: instance_id.clone(),
            spec_task_id: task.id.to_string(),
            workspace: task.project_path.as_ref().map(Into::into),
            agent: task.implementation_agent.clone(),
            config: task
                .workspace_config
                .clone()
                .unwrap_or(serde_json::Value::Null),
        };
        if let Err(err) = runtime.ensure_instance(&spec).await {
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
                if let Err(err) = runtime
                    .resume_thread(&instance_id, ws_id.as_str(), &thread.zed_thread_id)
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
                if thread.status == ZedThreadStatus::Disconnected {
                    store
                        .transition_zed_thread(
                            &thread.id,
                            ZedThreadEvent::Reconnect,
                            &self.inner.owner,
                        )
                        .await?;
                }
                thread.zed_thread_id
            }
            None => {
                let thread_id = match runtime.create_thread(&instance_id, ws_id.as_str()).await {
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
                    .record_thread(&ws_id, &thread_id, &self.inner.owner)
                    .await?;
                thread_id
            }
        };

        let session = store.get_session(&claim.turn.session_id).await?;
        let Some(current) = session
            .interactions
            .iter()
            .find(|i| i.id == claim.turn.interaction_id)
        else {
            return Err(EngineError::Conflict(format!(
                "turn {} has no interaction",
                claim.turn.id
            )));
        };
        let mut prompt = current.prompt_message.clone();
        if claim.turn.attempts > 1 {
            prompt = format!("{INTERRUPTED_NOTE}{prompt}");
        }
        if !current.response_message.is_empty() || current.entry_count > 0 {
            // A re-run after a crash or a lost lease: the earlier attempt's output is void.
            store.reset_turn_output(claim).await?;
        }
        tracing::info!(turn_id = %claim.turn.id, work_session_id = %ws_id, thread = %thread_id, attempt = claim.turn.attempts, "implementation turn running");

        let (agent_events, mut agent_received) = mpsc::channel::<AgentEvent>(1024);
        let (output, output_received) = mpsc::channel::<AgentEvent>(1024);
        let writer = tokio::spawn(write_output(
            store.clone(),
            claim.clone(),
            output_received,
            settings.flush_interval,
        ));
        let last_activity = Arc::new(Mutex::new(Instant::now()));
        // Every event is activity for the watchdog, whatever it records.
        let forwarder = {
            let last_activity = last_activity.clone();
            tokio::spawn(async move {
                while let Some(event) = agent_received.recv().await {
                    if let Ok(mut last) = last_activity.lock() {
                        *last = Instant::now();
                    }
                    if output.send(event).await.is_err() {
                        break;
                    }
                }
            })
        };
        let request = TurnRequest {
            instance_id: instance_id.clone(),
            thread_id: thread_id.clone(),
            turn_id: claim.turn.id.to_string(),
            prompt,
        };
        let timeout = settings.turn_timeout;
        let watchdog = async {
            let step = (timeout / 4).clamp(Duration::from_millis(20), Duration::from_secs(5));
            loop {
                tokio::time::sleep(step).await;
                let idle = last_activity
                    .lock()
                    .map(|last| last.elapsed())
                    .unwrap_or_default();
                if idle >= timeout {
                    return idle;
                }
            }
        };
        let run = runtime.run_turn(&request, agent_events);
        tokio::pin!(run);
        let end = tokio::select! {
            result = &mut run => RunEnd::Finished(result),
            idle = watchdog => RunEnd::TimedOut(idle),
            _ = cancel.cancelled() => RunEnd::Interrupted,
        };
        if !matches!(end, RunEnd::Finished(_)) {
            // Ask the agent to stop and give the turn a moment to end on its own terms, so the
            // agent's side of the thread is left idle rather than abandoned mid-turn.
            match tokio::time::timeout(
                Duration::from_secs(5),
                runtime.cancel_turn(&instance_id, &thread_id),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(%err, thread = %thread_id, "cancel_turn failed"),
                Err(_) => tracing::warn!(thread = %thread_id, "cancel_turn did not answer"),
            }
            match tokio::time::timeout(Duration::from_secs(5), &mut run).await {
                Ok(result) => tracing::debug!(?result, thread = %thread_id, "cancelled turn ended"),
                Err(_) => {
                    tracing::warn!(thread = %thread_id, "the cancelled turn did not end; abandoning it")
                }
            }
        }
        if forwarder.await.is_err() {
            tracing::warn!(turn_id = %claim.turn.id, "event forwarder panicked");
        }
        let written = writer
            .await
            .map_err(|err| EngineError::Conflict(format!("output writer failed: {err}")))??;

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
                tracing::info!(turn_id = %claim.turn.id, "implementation turn released for shutdown");
                Ok(())
            }
            RunEnd::Finished(Ok(StopReason::EndTurn)) => {
                let progress = store.complete_implementation_turn(claim, &written).await?;
                tracing::info!(turn_id = %claim.turn.id, work_session_id = %ws_id, finished = progress.finished, "implementation turn completed");
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
                if matches!(err, AgentError::Disconnected(_))
                    && let Some(thread) = store.thread_of_work_session(&ws_id).await?
                    && thread.status == ZedThreadStatus::Active
                {
                    store
                        .transition_zed_thread(
                            &thread.id,
                            ZedThreadEvent::Disconnect,
                            &self.inner.owner,
                        )
                        .await?;
                }
                self.turn_failed(claim, &ws_id, &written, &err.to_string())
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
        let store = &self.inner.store;
        let failed_before = store
            .turns_of_work_session(ws)
            .await?
            .iter()
            .filter(|t| t.status == TurnStatus::Failed)
            .count() as i32;
        if failed_before < self.inner.settings.max_turn_retries {
            let assignment = store
                .get_work_session(ws)
                .await?
                .name
                .unwrap_or_else(|| ws.to_string());
            let turn = store
                .retry_implementation_turn(
                    claim,
                    written,
                    reason,
                    &retry_note(&assignment, reason, failed_before + 1),
                )
                .await?;
            tracing::warn!(work_session_id = %ws, %reason, retry = failed_before + 1, next_turn = %turn, "implementation turn failed; retrying");
            self.wake();
            return Ok(());
        }
        self.fail_for_good(claim, ws, written, reason).await
    }

    async fn fail_for_good(
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
        let task = store
            .fail_work_session(claim, written, reason, &dependants)
            .await?;
        tracing::warn!(spec_task_id = %task.id, work_session_id = %ws, %reason, blocked = dependants.len(), "work session failed");
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
