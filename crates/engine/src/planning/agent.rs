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

use spectask_domain::agent_prompts::{SpecFiles, agent_corrective_prompt};
use spectask_domain::{
    AgentThreadId, SpecOutputError, SpecTask, SpecTaskId, ThreadOwner, split_spec_files,
};
use spectask_runtimes::agent::{AgentError, InstanceSpec, StopReason};
use spectask_store::{StoreError, TurnClaim};
use tokio_util::sync::CancellationToken;

use crate::agent_turn::{AgentThread, RunEnd, new_instance_id, stored_instance_id};
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
        let candidate = new_instance_id();
        let bound = store
            .bind_planning_instance(claim, candidate.as_str())
            .await?;
        let instance_id = stored_instance_id(&task.id, &bound)?;
        let spec = InstanceSpec {
            instance_id: instance_id.clone(),
            spec_task_id: task.id.to_string(),
            workspace: Some(project.into()),
            agent: Some(agent.to_owned()),
            config: task
                .workspace_config
                .clone()
                .unwrap_or(serde_json::Value::Null),
            extra_roots: Vec::new(),
        };
        if let Err(err) = runtime.ensure_instance(&spec).await {
            let reason = format!("the planning agent `{agent}` could not start: {err}");
            return self.agent_planning_failed(claim, "", &err, &reason).await;
        }
        let session = store.get_session(&claim.turn.session_id).await?;
        let owner = ThreadOwner::PlanningSession(session.id.clone());
        let thread_id = match session.agent_thread_id.clone().map(AgentThreadId::new) {
            Some(thread) => {
                match runtime
                    .resume_thread(&instance_id, &owner, &thread, None)
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
                        tracing::warn!(%reason, "planning failed");
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
            None => match runtime.create_thread(&instance_id, &owner, None).await {
                Ok(thread) => {
                    store.record_planning_thread(claim, thread.as_str()).await?;
                    thread
                }
                Err(err) => {
                    let reason = format!("the planning agent could not open a session: {err}");
                    return self.agent_planning_failed(claim, "", &err, &reason).await;
                }
            },
        };
        let prompt = self.agent_turn_prompt(claim, &session).await?;
        tracing::info!(%agent, thread = %thread_id, "planning turn running on an agent");

        let thread = AgentThread {
            runtime: runtime.as_ref(),
            instance_id: &instance_id,
            thread_id: &thread_id,
        };
        let (end, written) = self.drive_agent_turn(thread, claim, prompt, cancel).await?;

        match end {
            RunEnd::Interrupted => {
                if lost.load(Ordering::SeqCst) {
                    return Err(StoreError::ClaimLost(claim.turn.id.to_string()).into());
                }
                store.release_turn(claim).await?;
                tracing::info!("planning turn released for shutdown");
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
                tracing::warn!(%reason, "planning failed");
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
                tracing::warn!(%reason, "planning failed");
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
            tracing::warn!(%reason, "planning agent lost; the turn will run again");
            self.wake();
            return Ok(());
        }
        store.fail_planning_turn(claim, written, reason).await?;
        tracing::warn!(%reason, "planning failed");
        Ok(())
    }
}
