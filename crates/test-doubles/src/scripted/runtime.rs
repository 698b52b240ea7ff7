//! The scripted runtime as an [`AgentRuntime`]: instances and threads come and go as a real
//! agent host's would (a turn needs an ensured instance and a created or resumed thread); turns
//! are played by `turn`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use spectask_runtimes::agent::{
    AgentError, AgentEvent, AgentResult, AgentRuntime, AgentThreadId, InstanceId, InstanceSpec,
    StopReason, ThreadOwner, TurnRequest,
};
use tokio::sync::mpsc;

use super::log::LogLine;
use super::turn::{Interrupt, TurnCtx, TurnGuard, outcome_of};
use super::{Instance, ScriptedRuntime};
use crate::lock;

#[async_trait]
impl AgentRuntime for ScriptedRuntime {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    async fn ensure_instance(&self, spec: &InstanceSpec) -> AgentResult<()> {
        {
            let mut state = lock(&self.shared.state);
            let instance = state
                .instances
                .entry(spec.instance_id.to_string())
                .or_default();
            instance.up = true;
            instance.workspace.clone_from(&spec.workspace);
            instance.extra_roots.clone_from(&spec.extra_roots);
        }
        self.log(&LogLine::new("ensure_instance", spec.instance_id.as_str()));
        Ok(())
    }

    async fn create_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        cwd: Option<&Path>,
    ) -> AgentResult<AgentThreadId> {
        let (instance_id, work_session_id) = (instance_id.as_str(), owner.as_str());
        let created = {
            let mut state = lock(&self.shared.state);
            let number = state.next_thread;
            match state.instances.get_mut(instance_id) {
                Some(instance) if instance.up => match working_dir(instance, cwd, None) {
                    Ok(working_dir) => {
                        let thread_id = format!("{}-{number}", self.shared.id_prefix);
                        instance.loaded.insert(thread_id.clone());
                        state.next_thread += 1;
                        state.threads.push((
                            instance_id.to_owned(),
                            thread_id.clone(),
                            work_session_id.to_owned(),
                        ));
                        if let Some(working_dir) = working_dir {
                            state.thread_cwds.insert(thread_id.clone(), working_dir);
                        }
                        Ok(thread_id)
                    }
                    Err(err) => Err(err),
                },
                _ => Err(AgentError::UnknownInstance(instance_id.to_owned())),
            }
        };
        self.log(&LogLine {
            thread_id: created.as_deref().ok(),
            work_session_id: Some(work_session_id),
            cwd,
            outcome: created.as_ref().err().map(refusal),
            ..LogLine::new("create_thread", instance_id)
        });
        created.map(AgentThreadId::new)
    }

    async fn resume_thread(
        &self,
        instance_id: &InstanceId,
        owner: &ThreadOwner,
        thread_id: &AgentThreadId,
        cwd: Option<&Path>,
    ) -> AgentResult<()> {
        let (instance_id, work_session_id, thread_id) =
            (instance_id.as_str(), owner.as_str(), thread_id.as_str());
        // Any id is accepted, including ones another process created: that is what resuming
        // after a restart means. Only the instance must be up.
        let resumed = {
            let mut guard = lock(&self.shared.state);
            let state = &mut *guard;
            match state.instances.get_mut(instance_id) {
                Some(instance) if instance.up => {
                    match working_dir(instance, cwd, state.thread_cwds.get(thread_id)) {
                        Ok(working_dir) => {
                            instance.loaded.insert(thread_id.to_owned());
                            if let Some(working_dir) = working_dir {
                                state.thread_cwds.insert(thread_id.to_owned(), working_dir);
                            }
                            Ok(())
                        }
                        Err(err) => Err(err),
                    }
                }
                _ => Err(AgentError::UnknownInstance(instance_id.to_owned())),
            }
        };
        self.log(&LogLine {
            thread_id: Some(thread_id),
            work_session_id: Some(work_session_id),
            cwd,
            outcome: resumed.as_ref().err().map(refusal),
            ..LogLine::new("resume_thread", instance_id)
        });
        resumed
    }

    async fn run_turn(
        &self,
        request: &TurnRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> AgentResult<StopReason> {
        let started = self.start_turn(request);
        self.log(&LogLine {
            thread_id: Some(request.thread_id.as_str()),
            turn_id: Some(&request.turn_id),
            ..LogLine::new("turn_started", request.instance_id.as_str())
        });
        let started = match started {
            Ok(started) => started,
            Err((index, error)) => {
                self.end_turn(index, None, &outcome_of(&Err(error.clone())));
                return Err(error);
            }
        };
        let mut guard = TurnGuard {
            runtime: self,
            index: started.index,
            key: started.key,
            outcome: None,
        };
        let mut ctx = TurnCtx {
            events: &events,
            interrupt: started.interrupt,
            gates: self.shared.gates.subscribe(),
        };
        let result = match self.play(started.behaviour, request, &mut ctx).await {
            Ok(result) => result,
            Err(interrupt) => interrupt.into_result(),
        };
        guard.outcome = Some(outcome_of(&result));
        drop(guard);
        result
    }

    async fn cancel_turn(
        &self,
        instance_id: &InstanceId,
        thread_id: &AgentThreadId,
    ) -> AgentResult<()> {
        let (instance_id, thread_id) = (instance_id.as_str(), thread_id.as_str());
        let cancelled = {
            let state = lock(&self.shared.state);
            state
                .running
                .values()
                .find(|r| r.instance_id == instance_id && r.thread_id == thread_id)
                .map(|running| {
                    running.interrupt.send_if_modified(|current| {
                        // A disconnect that already happened wins over a later cancel.
                        if current.is_none() {
                            *current = Some(Interrupt::Cancel);
                            true
                        } else {
                            false
                        }
                    });
                    running.turn_id.clone()
                })
        };
        self.log(&LogLine {
            thread_id: Some(thread_id),
            turn_id: cancelled.as_deref(),
            ..LogLine::new("cancel_turn", instance_id)
        });
        Ok(())
    }

    async fn shutdown_instance(&self, instance_id: &InstanceId) -> AgentResult<()> {
        let instance_id = instance_id.as_str();
        {
            let mut state = lock(&self.shared.state);
            state.instances.remove(instance_id);
            for running in state.running.values() {
                if running.instance_id == instance_id {
                    running
                        .interrupt
                        .send_replace(Some(Interrupt::Disconnect("instance shut down".into())));
                }
            }
        }
        self.log(&LogLine::new("shutdown_instance", instance_id));
        Ok(())
    }
}

/// The directory a thread of `instance` works in: `requested`, else `previous`, else the
/// instance's workspace. A requested one must be the workspace or lie in it or in an extra root
/// (compared as given), as a real runtime demands.
fn working_dir(
    instance: &Instance,
    requested: Option<&Path>,
    previous: Option<&PathBuf>,
) -> AgentResult<Option<PathBuf>> {
    let Some(requested) = requested else {
        return Ok(previous.cloned().or_else(|| instance.workspace.clone()));
    };
    let mut roots = instance.workspace.iter().chain(&instance.extra_roots);
    if roots.any(|root| requested.starts_with(root)) {
        Ok(Some(requested.to_path_buf()))
    } else {
        Err(AgentError::Config(format!(
            "thread working directory {} is outside the workspace and the task's roots",
            requested.display()
        )))
    }
}

/// The dispatch log's outcome of a refused thread call.
fn refusal(error: &AgentError) -> &'static str {
    match error {
        AgentError::UnknownInstance(_) => "unknown_instance",
        _ => "config",
    }
}
