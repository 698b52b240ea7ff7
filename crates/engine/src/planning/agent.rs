//! Planning over ACP: a planning turn run by an agent profile (the task's `spec_agent`) as an ACP
//! session in the task's workspace. The agent reads the code and writes `requirements.md`,
//! `design.md` and `tasks.md` into the spec directory through the client's file interface; when
//! it ends its turn the three files are read back and checked exactly as the LLM planner's reply.
//!
//! One agent process per task: the task's instance (`zed_instance_id`) is set when planning first
//! needs it and reused by implementation. One ACP session per planning session, recorded on the
//! session: revisions, corrections and re-runs after a crash resume it (`session/load` in a
//! restarted agent), never silently opening another: one that cannot be resumed fails the
//! planning, and only a human's retry opens a new one. A lost agent (`Disconnected`) hands the turn
//! back to the queue, so it runs again within the turn-attempt budget.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spectask_domain::agent_prompts::{SpecFiles, agent_corrective_prompt};
use spectask_domain::prompts::INTERRUPTED_NOTE;
use spectask_domain::{SpecOutputError, SpecTask, SpecTaskId, split_spec_files};
use spectask_runtimes::agent::{AgentError, AgentEvent, InstanceSpec, StopReason, TurnRequest};
use spectask_store::{StoreError, TurnClaim};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::planning::output::write_output;
use crate::{Engine, EngineError, projection};

/// The absolute paths of a task's three spec files.
#[derive(Debug, Clone)]
pub(crate) struct SpecPaths {
    requirements: String,
    design: String,
    tasks: String,
}

impl SpecPaths {
    pub(crate) fn new(project_path: &str, id: &SpecTaskId) -> Self {
        let dir = projection::spec_dir(Path::new(project_path), id);
        let path = |file: &str| dir.join(file).display().to_string();
        Self {
            requirements: path("requirements.md"),
            design: path("design.md"),
            tasks: path("tasks.md"),
        }
    }

    pub(crate) fn files(&self) -> SpecFiles<'_> {
        SpecFiles {
            requirements: &self.requirements,
            design: &self.design,
            tasks: &self.tasks,
        }
    }

    /// Reads the three documents, or says which could not be read.
    async fn read(&self) -> Result<[String; 3], SpecOutputError> {
        let mut texts: [String; 3] = Default::default();
        let mut problems = Vec::new();
        for (text, path) in texts
            .iter_mut()
            .zip([&self.requirements, &self.design, &self.tasks])
        {
            match tokio::fs::read_to_string(path).await {
                Ok(read) => *text = read,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    problems.push(format!("`{path}` was not written"));
                }
                Err(err) => problems.push(format!("`{path}` cannot be read: {err}")),
            }
        }
        if problems.is_empty() {
            Ok(texts)
        } else {
            Err(SpecOutputError { problems })
        }
    }
}

/// How the agent's turn ended, before it is recorded.
enum RunEnd {
    Finished(Result<StopReason, AgentError>),
    TimedOut(Duration),
    Interrupted,
}

impl Engine {
    pub(crate) async fn execute_agent_planning(
        &self,
        claim: &TurnClaim,
        task: &SpecTask,
        agent: &str,
        cancel: &CancellationToken,
        lost: &AtomicBool,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let settings = &self.inner.settings;
        let Some(runtime) = self.inner.runtime.clone() else {
            store.release_turn(claim).await?;
            return Ok(());
        };
        let Some(project) = task.project_path.as_deref() else {
            let reason = format!(
                "planning with the agent profile `{agent}` needs the task's project_path (the agent works in the checkout)"
            );
            store.fail_planning_turn(claim, "", &reason).await?;
            return Ok(());
        };
        let paths = SpecPaths::new(project, &task.id);
        let candidate = format!("zin_{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
        let instance_id = store.bind_planning_instance(claim, &candidate).await?;
        let spec = InstanceSpec {
            instance_id: instance_id.clone(),
            spec_task_id: task.id.to_string(),
            workspace: Some(project.into()),
            agent: Some(agent.to_owned()),
            config: task
                .workspace_config
                .clone()
                .unwrap_or(serde_json::Value::Null),
        };
        if let Err(err) = runtime.ensure_instance(&spec).await {
            let reason = format!("the planning agent `{agent}` could not start: {err}");
            return self.agent_planning_failed(claim, "", &err, &reason).await;
        }
        let session = store.get_session(&claim.turn.session_id).await?;
        let thread_id = match session.agent_thread_id.clone() {
            Some(thread) => {
                match runtime
                    .resume_thread(&instance_id, session.id.as_str(), &thread)
                    .await
                {
                    Ok(()) => {}
                    Err(err @ AgentError::UnknownThread(_)) => {
                        // Never a new session behind the reviewer's back: planning fails and says
                        // so; a retry (start-planning) then opens a new one.
                        let reason = format!(
                            "the planning agent's ACP session {thread} could not be resumed ({err}); \
                             start planning again to continue in a new session"
                        );
                        store
                            .fail_planning_forgetting_thread(claim, &reason)
                            .await?;
                        tracing::warn!(spec_task_id = %task.id, %reason, "planning failed");
                        return Ok(());
                    }
                    Err(err) => {
                        let reason = format!(
                            "the planning agent's ACP session {thread} could not be resumed: {err}"
                        );
                        return self.agent_planning_failed(claim, "", &err, &reason).await;
                    }
                }
                thread
            }
            None => match runtime
                .create_thread(&instance_id, session.id.as_str())
                .await
            {
                Ok(thread) => {
                    store.record_planning_thread(claim, &thread).await?;
                    thread
                }
                Err(err) => {
                    let reason = format!("the planning agent could not open a session: {err}");
                    return self.agent_planning_failed(claim, "", &err, &reason).await;
                }
            },
        };
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
            // A re-run: the earlier partial output is void.
            store.reset_turn_output(claim).await?;
        }
        tracing::info!(turn_id = %claim.turn.id, spec_task_id = %task.id, %agent, thread = %thread_id, kind = %claim.turn.kind, attempt = claim.turn.attempts, "planning turn running on an agent");

        let (agent_events, agent_received) = mpsc::channel::<AgentEvent>(1024);
        let (output, output_received) = mpsc::channel::<AgentEvent>(1024);
        let writer = tokio::spawn(write_output(
            store.clone(),
            claim.clone(),
            output_received,
            settings.flush_interval,
        ));
        let last_activity = Arc::new(Mutex::new(Instant::now()));
        let forwarder = tokio::spawn(forward(agent_received, output, last_activity.clone()));
        let request = TurnRequest {
            instance_id: instance_id.clone(),
            thread_id: thread_id.clone(),
            turn_id: claim.turn.id.to_string(),
            prompt,
        };
        let run = runtime.run_turn(&request, agent_events);
        tokio::pin!(run);
        let end = tokio::select! {
            result = &mut run => RunEnd::Finished(result),
            idle = silence(settings.turn_timeout, &last_activity) => RunEnd::TimedOut(idle),
            _ = cancel.cancelled() => RunEnd::Interrupted,
        };
        if !matches!(end, RunEnd::Finished(_)) {
            // Leave the agent's session idle rather than abandoned mid-turn.
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
            if tokio::time::timeout(Duration::from_secs(5), &mut run)
                .await
                .is_err()
            {
                tracing::warn!(thread = %thread_id, "the cancelled planning turn did not end; abandoning it");
            }
        }
        if forwarder.await.is_err() {
            tracing::warn!(turn_id = %claim.turn.id, "event forwarder panicked");
        }
        let written = writer
            .await
            .map_err(|err| EngineError::Conflict(format!("output writer failed: {err}")))??;

        match end {
            RunEnd::Interrupted => {
                if lost.load(Ordering::SeqCst) {
                    return Err(StoreError::ClaimLost(claim.turn.id.to_string()).into());
                }
                store.release_turn(claim).await?;
                tracing::info!(turn_id = %claim.turn.id, "planning turn released for shutdown");
                Ok(())
            }
            RunEnd::Finished(Ok(StopReason::EndTurn)) => {
                let checked = match paths.read().await {
                    Ok([requirements, design, tasks]) => {
                        split_spec_files(&requirements, &design, &tasks)
                    }
                    Err(unread) => Err(unread),
                };
                self.settle_planning_output(
                    claim,
                    task,
                    checked,
                    &written,
                    |problems| agent_corrective_prompt(problems, paths.files()),
                    "the agent's documents",
                )
                .await
            }
            RunEnd::Finished(Ok(reason)) => {
                let reason = format!(
                    "the planning agent `{agent}` stopped with `{}`",
                    reason.as_str()
                );
                store.fail_planning_turn(claim, &written, &reason).await?;
                tracing::warn!(spec_task_id = %task.id, %reason, "planning failed");
                Ok(())
            }
            RunEnd::Finished(Err(err)) => {
                let reason = format!("the planning agent `{agent}` failed: {err}");
                self.agent_planning_failed(claim, &written, &err, &reason)
                    .await
            }
            RunEnd::TimedOut(idle) => {
                let reason = format!(
                    "no activity from the planning agent `{agent}` for {}s; the turn was cancelled",
                    idle.as_secs()
                );
                store.fail_planning_turn(claim, &written, &reason).await?;
                tracing::warn!(spec_task_id = %task.id, %reason, "planning failed");
                Ok(())
            }
        }
    }

    /// A lost agent hands the turn back to the queue (the next claim restarts the agent and
    /// resumes the same ACP session; each claim counts against the turn-attempt budget); any
    /// other failure fails the planning.
    async fn agent_planning_failed(
        &self,
        claim: &TurnClaim,
        written: &str,
        err: &AgentError,
        reason: &str,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        if matches!(err, AgentError::Disconnected(_)) {
            store.release_turn(claim).await?;
            tracing::warn!(turn_id = %claim.turn.id, attempt = claim.turn.attempts, %reason, "planning agent lost; the turn will run again");
            self.wake();
            return Ok(());
        }
        store.fail_planning_turn(claim, written, reason).await?;
        tracing::warn!(spec_task_id = %claim.turn.spec_task_id, %reason, "planning failed");
        Ok(())
    }
}

/// Passes the agent's events on to the interaction writer (reply text and entries), noting the
/// time of every event for the silence watchdog.
async fn forward(
    mut received: mpsc::Receiver<AgentEvent>,
    output: mpsc::Sender<AgentEvent>,
    last_activity: Arc<Mutex<Instant>>,
) {
    while let Some(event) = received.recv().await {
        if let Ok(mut last) = last_activity.lock() {
            *last = Instant::now();
        }
        if output.send(event).await.is_err() {
            break;
        }
    }
}

/// Resolves once the agent has been silent for `timeout`, with the silence measured.
async fn silence(timeout: Duration, last_activity: &Mutex<Instant>) -> Duration {
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
}
