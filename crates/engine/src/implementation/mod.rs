//! The implementation phase: the seed's `SpecTaskWorkSessionManager` and `ZedInstanceManager`
//! (creating work sessions, instances, threads and spawned sessions), the orchestrator pass that
//! moves approved tasks into implementation and dispatches work sessions as dependencies and
//! limits allow ([`orchestrator`]), and the runner of implementation turns ([`runner`]).

mod checks;
pub mod graph;
mod instances;
pub mod orchestrator;
pub mod runner;

use std::collections::BTreeMap;

use spectask_domain::prompts::review_changes_prompt;
use spectask_domain::{
    ApprovalMerge, ImplementationTaskStatus, SpecTask, SpecTaskEvent, SpecTaskId,
    SpecTaskImplementationTask, SpecTaskStatus, SpecTaskWorkSession, SpecTaskZedThread, Turn,
    TurnId, WorkSessionId, WorkSessionPhase, WorkSessionStatus,
};
use spectask_store::WorkSessionPlan;

use self::graph::SessionGraph;
use crate::agent_turn::{new_instance_id, stored_instance_id};
use crate::{Engine, EngineError};

/// A work session as listed: with its thread, its family and why it waits.
#[derive(Debug, Clone)]
pub struct WorkSessionView {
    pub work_session: SpecTaskWorkSession,
    pub zed_thread: Option<SpecTaskZedThread>,
    pub child_work_session_ids: Vec<WorkSessionId>,
    /// Why a pending (or blocked) session is not running yet, or why an active one's turn waits
    /// (overlap policy `serialize`).
    pub queue_reason: Option<String>,
}

/// Progress of a task's implementation against its plan.
#[derive(Debug, Clone)]
pub struct Progress {
    pub tasks: Vec<SpecTaskImplementationTask>,
    /// Where the requirements' acceptance criteria stand (the traceability matrix's summary).
    pub coverage: spectask_domain::traceability::CoverageSummary,
    pub completed: usize,
    pub total: usize,
    /// `completed / total`, 0 when the plan is empty.
    pub overall: f64,
    pub active_work_sessions: Vec<WorkSessionId>,
}

/// The instance of a task as the runtime boundary sees it, derived from its threads.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub zed_instance_id: Option<String>,
    pub status: &'static str,
    pub thread_count: usize,
    pub active_threads: usize,
    pub project_path: Option<String>,
    pub last_activity_at: Option<chrono::DateTime<chrono::Utc>>,
    pub runtime: Option<&'static str>,
    /// Whether the running instance's agent is sandboxed; `None` when it is not running here.
    pub sandbox: Option<SandboxView>,
}

/// The OS sandbox of a running instance's agent, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxView {
    pub active: bool,
    /// `required`, `best_effort` or `off`.
    pub mode: &'static str,
    pub detail: String,
}

/// The work session plans for a task: one per top-level implementation task, its sub-tasks
/// folded into its description.
pub(crate) fn plans_for(tasks: &[SpecTaskImplementationTask]) -> Vec<WorkSessionPlan> {
    let tops: Vec<&SpecTaskImplementationTask> =
        tasks.iter().filter(|t| t.parent_key.is_none()).collect();
    let mut descendants: BTreeMap<&str, Vec<&SpecTaskImplementationTask>> = BTreeMap::new();
    for task in tasks.iter().filter(|t| t.parent_key.is_some()) {
        let mut top = task;
        for _ in 0..=tasks.len() {
            match top
                .parent_key
                .as_deref()
                .and_then(|p| tasks.iter().find(|t| t.key == p))
            {
                Some(parent) => top = parent,
                None => break,
            }
        }
        descendants.entry(top.key.as_str()).or_default().push(task);
    }
    tops.iter()
        .map(|top| {
            let subtasks = descendants
                .get(top.key.as_str())
                .cloned()
                .unwrap_or_default();
            let mut description = top.description.clone().unwrap_or_default();
            if !subtasks.is_empty() {
                description.push_str("\n\nSub-tasks:\n");
                for sub in &subtasks {
                    description.push_str(&format!("- {}. {}\n", sub.key, sub.title));
                }
            }
            let mut ids = vec![top.id.clone()];
            ids.extend(subtasks.iter().map(|t| t.id.clone()));
            WorkSessionPlan {
                name: format!("{}. {}", top.key, top.title),
                description: description.trim().to_owned(),
                task_title: top.title.clone(),
                task_description: top.description.clone().unwrap_or_default(),
                task_index: top.index,
                implementation_task_ids: ids,
            }
        })
        .collect()
}

impl Engine {
    /// The seed's `CreateImplementationSessions`: queues an approved task and creates its
    /// instance id and work sessions. Idempotent: on a task already in implementation it returns
    /// the existing sessions and creates nothing.
    pub async fn create_implementation_sessions(
        &self,
        id: &SpecTaskId,
        actor: &str,
    ) -> Result<Vec<SpecTaskWorkSession>, EngineError> {
        let store = &self.inner.store;
        let task = store.get_spec_task(id).await?;
        match task.status {
            SpecTaskStatus::SpecApproved => {
                match store
                    .transition_spec_task(id, SpecTaskEvent::QueueImplementation, actor)
                    .await
                {
                    // The orchestrator may have queued it a moment ago: either way it is queued.
                    Ok(_) | Err(spectask_store::StoreError::Transition(_)) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            SpecTaskStatus::ImplementationQueued => {}
            SpecTaskStatus::Implementation
            | SpecTaskStatus::ImplementationReview
            | SpecTaskStatus::ImplementationFailed
            | SpecTaskStatus::Done => {
                return Ok(store.list_work_sessions(id).await?);
            }
            other => return Err(SpecTaskEvent::QueueImplementation.refused(other).into()),
        }
        let task = store.get_spec_task(id).await?;
        let sessions = match self.start_implementation(&task, actor).await {
            Ok(sessions) => sessions,
            // Started concurrently by the orchestrator: return what it created.
            Err(
                EngineError::Store(spectask_store::StoreError::Transition(_))
                | EngineError::Transition(_),
            ) if store.get_spec_task(id).await?.status != SpecTaskStatus::ImplementationQueued => {
                store.list_work_sessions(id).await?
            }
            Err(err) => return Err(err),
        };
        self.wake();
        Ok(sessions)
    }

    /// `implementation_queued → implementation` for one task (the orchestrator and the endpoint
    /// share it).
    pub(crate) async fn start_implementation(
        &self,
        task: &SpecTask,
        actor: &str,
    ) -> Result<Vec<SpecTaskWorkSession>, EngineError> {
        let store = &self.inner.store;
        let implementation_tasks = store.list_implementation_tasks(&task.id).await?;
        let plans = plans_for(&implementation_tasks);
        let instance_id = match &task.zed_instance_id {
            Some(stored) => stored_instance_id(&task.id, stored)?,
            None => new_instance_id(),
        };
        let sessions = store
            .start_implementation(&task.id, instance_id.as_str(), &plans, actor)
            .await?;
        tracing::info!(spec_task_id = %task.id, instance = %instance_id, work_sessions = sessions.len(), "implementation started");
        Ok(sessions)
    }

    /// The seed's `SpawnWorkSession`: a new work session from an active implementation session,
    /// as a human asks for it over the REST API. Not bounded by the agents' spawn caps (a human
    /// decides); a name the parent already spawned is a `Duplicate` (one session per parent and
    /// name, as for agents).
    pub async fn spawn_work_session(
        &self,
        task: &SpecTaskId,
        parent: &WorkSessionId,
        name: &str,
        description: &str,
        actor: &str,
    ) -> Result<SpecTaskWorkSession, EngineError> {
        let spawned = self
            .spawn(task, parent, name, description, actor, None)
            .await?;
        if !spawned.created {
            return Err(spectask_store::StoreError::Duplicate(format!(
                "work session `{parent}` already spawned `{name}` ({})",
                spawned.work_session.id
            ))
            .into());
        }
        Ok(spawned.work_session)
    }

    /// An agent's spawn (over MCP): bounded by the configured caps, and idempotent per parent and
    /// name, so an agent that repeats a spawn (a re-run turn) gets the session it already
    /// spawned (`created: false`).
    pub async fn spawn_work_session_for_agent(
        &self,
        task: &SpecTaskId,
        parent: &WorkSessionId,
        name: &str,
        description: &str,
        actor: &str,
    ) -> Result<spectask_store::Spawned, EngineError> {
        let settings = &self.inner.settings;
        let caps = spectask_store::SpawnCaps {
            max_per_task: settings.max_spawned_sessions,
            max_depth: settings.max_spawn_depth,
        };
        self.spawn(task, parent, name, description, actor, Some(caps))
            .await
    }

    async fn spawn(
        &self,
        task: &SpecTaskId,
        parent: &WorkSessionId,
        name: &str,
        description: &str,
        actor: &str,
        caps: Option<spectask_store::SpawnCaps>,
    ) -> Result<spectask_store::Spawned, EngineError> {
        let parent_session = self.inner.store.get_work_session(parent).await?;
        if &parent_session.spec_task_id != task {
            return Err(spectask_store::StoreError::NotFound {
                entity: "work session",
                id: parent.to_string(),
            }
            .into());
        }
        let spawned = self
            .inner
            .store
            .spawn_work_session(parent, name, description, actor, caps)
            .await?;
        if spawned.created {
            tracing::info!(spec_task_id = %task, parent = %parent, work_session_id = %spawned.work_session.id, "work session spawned");
            self.wake();
        } else {
            tracing::info!(spec_task_id = %task, parent = %parent, work_session_id = %spawned.work_session.id, "repeated spawn: the session exists already");
        }
        Ok(spawned)
    }

    /// Cancels a work session (and its running turn).
    pub async fn cancel_work_session(
        &self,
        ws: &WorkSessionId,
        actor: &str,
    ) -> Result<SpecTaskWorkSession, EngineError> {
        let cancelled = self.inner.store.cancel_work_session(ws, actor).await?;
        self.wake();
        Ok(cancelled)
    }

    /// Retries a failed work session (its dependants are unblocked), or one blocked on a merge
    /// conflict a human resolved in its worktree (a follow-up turn, then commit and merge).
    pub async fn retry_work_session(
        &self,
        ws: &WorkSessionId,
        actor: &str,
    ) -> Result<SpecTaskWorkSession, EngineError> {
        let store = &self.inner.store;
        let session = store.get_work_session(ws).await?;
        if session.status == WorkSessionStatus::Blocked && !session.conflict_files.is_empty() {
            // Blocked on a merge conflict a human has resolved in the worktree: go on there.
            store
                .resolve_merge_block(ws, spectask_domain::workspace::MERGE_RESOLVED_NOTE, actor)
                .await?;
            self.wake();
            return Ok(store.get_work_session(ws).await?);
        }
        if session.status != WorkSessionStatus::Failed {
            return Err(spectask_domain::WorkSessionEvent::Retry
                .refused(session.status)
                .into());
        }
        let tasks = store
            .list_implementation_tasks(&session.spec_task_id)
            .await?;
        let dependants = SessionGraph::new(&tasks).dependants(ws);
        let retried = store.retry_work_session(ws, &dependants, actor).await?;
        self.wake();
        Ok(retried)
    }

    /// A human message to one thread, queued as a turn.
    pub async fn message_work_session(
        &self,
        ws: &WorkSessionId,
        text: &str,
        actor: &str,
    ) -> Result<TurnId, EngineError> {
        let turn = self.inner.store.queue_follow_up(ws, text, actor).await?;
        self.wake();
        Ok(turn)
    }

    /// `implementation_review → done`, after merging the task branch into its base branch when
    /// `merge` asks for it (see [`crate::review_git`]). The status is checked before the merge so
    /// a task not in review changes nothing; a merge that happened stays even if the transition
    /// then loses a race (a concurrent change of status): git and the database cannot share a
    /// transaction, and the merge is recorded by its own `spec_task.branch_merged` event.
    pub async fn approve_implementation(
        &self,
        id: &SpecTaskId,
        merge: ApprovalMerge,
        actor: &str,
    ) -> Result<SpecTask, EngineError> {
        let current = self.inner.store.get_spec_task(id).await?;
        SpecTaskEvent::ApproveImplementation.apply(current.status)?;
        self.merge_at_approval(&current, merge, actor).await?;
        let task = self
            .inner
            .store
            .transition_spec_task(id, SpecTaskEvent::ApproveImplementation, actor)
            .await?;
        // Its worktrees and session branches go with the next tick.
        self.reap_soon();
        if let (Some(runtime), Some(stored)) = (&self.inner.runtime, &task.zed_instance_id) {
            match stored_instance_id(&task.id, stored) {
                Ok(instance) => {
                    if let Err(err) = runtime.shutdown_instance(&instance).await {
                        tracing::warn!(%err, %instance, "could not shut the instance down");
                    }
                }
                Err(err) => tracing::warn!(%err, "could not shut the instance down"),
            }
        }
        Ok(task)
    }

    /// `implementation_review → implementation` with the comment sent to the given work sessions
    /// (all completed implementation sessions when none are named).
    pub async fn request_implementation_changes(
        &self,
        id: &SpecTaskId,
        comment: &str,
        sessions: &[WorkSessionId],
        actor: &str,
    ) -> Result<SpecTask, EngineError> {
        let store = &self.inner.store;
        let targets: Vec<WorkSessionId> = if sessions.is_empty() {
            store
                .list_work_sessions(id)
                .await?
                .into_iter()
                .filter(|s| {
                    s.phase == WorkSessionPhase::Implementation
                        && s.status == WorkSessionStatus::Completed
                })
                .map(|s| s.id)
                .collect()
        } else {
            sessions.to_vec()
        };
        let task = store
            .request_implementation_changes(id, &targets, &review_changes_prompt(comment), actor)
            .await?;
        self.wake();
        Ok(task)
    }

    /// The task's work sessions with their threads, children and queue reasons.
    pub async fn work_session_views(
        &self,
        id: &SpecTaskId,
    ) -> Result<Vec<WorkSessionView>, EngineError> {
        let store = &self.inner.store;
        let task = store.get_spec_task(id).await?;
        let sessions = store.list_work_sessions(id).await?;
        let threads = store.list_zed_threads(id).await?;
        let tasks = store.list_implementation_tasks(id).await?;
        let graph = SessionGraph::new(&tasks);
        let by_id: BTreeMap<WorkSessionId, &SpecTaskWorkSession> =
            sessions.iter().map(|s| (s.id.clone(), s)).collect();
        let running = sessions
            .iter()
            .filter(|s| {
                s.phase == WorkSessionPhase::Implementation && s.status == WorkSessionStatus::Active
            })
            .count();
        let max = self.inner.settings.max_parallel_threads;
        Ok(sessions
            .iter()
            .map(|session| {
                let queue_reason = match session.status {
                    WorkSessionStatus::Pending => {
                        Some(self.queue_reason(&task, session, &graph, &by_id, running, max))
                    }
                    WorkSessionStatus::Blocked => Some(format!(
                        "blocked: a task it depends on failed ({})",
                        graph.waits_for_keys(&session.id).join(", ")
                    )),
                    WorkSessionStatus::Active => overlap_wait_reason(session, &by_id),
                    _ => None,
                };
                WorkSessionView {
                    work_session: session.clone(),
                    zed_thread: threads
                        .iter()
                        .find(|t| t.work_session_id == session.id)
                        .cloned(),
                    child_work_session_ids: sessions
                        .iter()
                        .filter(|c| c.parent_work_session_id.as_ref() == Some(&session.id))
                        .map(|c| c.id.clone())
                        .collect(),
                    queue_reason,
                }
            })
            .collect())
    }

    fn queue_reason(
        &self,
        task: &SpecTask,
        session: &SpecTaskWorkSession,
        graph: &SessionGraph,
        by_id: &BTreeMap<WorkSessionId, &SpecTaskWorkSession>,
        running: usize,
        max: usize,
    ) -> String {
        if self.inner.runtime.is_none() {
            return "no agent runtime is configured on this server".to_owned();
        }
        if !matches!(
            task.status,
            SpecTaskStatus::Implementation | SpecTaskStatus::ImplementationFailed
        ) {
            return format!("the task is in `{}`", task.status);
        }
        let unmet = graph.unmet(&session.id, by_id);
        if !unmet.is_empty() {
            let names: Vec<String> = unmet
                .iter()
                .map(|id| {
                    by_id
                        .get(id)
                        .and_then(|s| s.name.clone())
                        .unwrap_or_else(|| id.to_string())
                })
                .collect();
            return format!("waiting for: {}", names.join("; "));
        }
        if running >= max {
            return format!("waiting for a free thread ({running} of {max} running)");
        }
        "ready; dispatching".to_owned()
    }

    /// The task's progress against its plan.
    pub async fn progress(&self, id: &SpecTaskId) -> Result<Progress, EngineError> {
        let store = &self.inner.store;
        let task = store.get_spec_task(id).await?;
        let tasks = store.list_implementation_tasks(id).await?;
        let completed = tasks
            .iter()
            .filter(|t| t.status == ImplementationTaskStatus::Completed)
            .count();
        let total = tasks.len();
        let active = store
            .list_work_sessions(id)
            .await?
            .into_iter()
            .filter(|s| s.status == WorkSessionStatus::Active)
            .map(|s| s.id)
            .collect();
        let coverage = self.coverage_of(&task).await?;
        Ok(Progress {
            coverage,
            overall: if total == 0 {
                0.0
            } else {
                completed as f64 / total as f64
            },
            tasks,
            completed,
            total,
            active_work_sessions: active,
        })
    }

    /// The task's instance, derived from its threads.
    pub async fn instance_view(&self, id: &SpecTaskId) -> Result<InstanceView, EngineError> {
        let store = &self.inner.store;
        let task = store.get_spec_task(id).await?;
        let threads = store.list_zed_threads(id).await?;
        use spectask_domain::ZedThreadStatus as T;
        let active = threads.iter().filter(|t| t.status == T::Active).count();
        let status = if task.zed_instance_id.is_none() {
            "none"
        } else if active > 0 {
            "running"
        } else if threads.iter().any(|t| t.status == T::Disconnected) {
            "disconnected"
        } else if task.status == SpecTaskStatus::Done {
            "stopped"
        } else if threads.is_empty() {
            "starting"
        } else {
            "idle"
        };
        Ok(InstanceView {
            zed_instance_id: task.zed_instance_id.clone(),
            status,
            thread_count: threads.len(),
            active_threads: active,
            project_path: task.project_path.clone(),
            last_activity_at: threads.iter().filter_map(|t| t.last_activity_at).max(),
            runtime: self.inner.runtime.as_ref().map(|r| r.kind()),
            sandbox: match (&self.inner.runtime, &task.zed_instance_id) {
                (Some(runtime), Some(stored)) => stored_instance_id(&task.id, stored)
                    .ok()
                    .and_then(|instance| runtime.sandbox_status(&instance))
                    .map(|status| SandboxView {
                        active: status.active,
                        mode: status.mode.as_str(),
                        detail: status.detail,
                    }),
                _ => None,
            },
        })
    }

    /// A work session's turns, oldest first.
    pub async fn work_session_turns(&self, ws: &WorkSessionId) -> Result<Vec<Turn>, EngineError> {
        Ok(self.inner.store.turns_of_work_session(ws).await?)
    }
}

/// Why an active session's turn waits: another running session touched a file it edited first
/// (overlap policy `serialize`), until that session ends.
fn overlap_wait_reason(
    session: &SpecTaskWorkSession,
    by_id: &BTreeMap<WorkSessionId, &SpecTaskWorkSession>,
) -> Option<String> {
    let other_id = session.waiting_for.as_ref()?;
    let other = by_id.get(other_id)?;
    if matches!(
        other.status,
        WorkSessionStatus::Completed | WorkSessionStatus::Failed | WorkSessionStatus::Cancelled
    ) {
        return None;
    }
    let name = other.name.clone().unwrap_or_else(|| other_id.to_string());
    let path = session
        .overlap_wait
        .as_ref()
        .map_or("a file", |wait| wait.path.as_str());
    Some(format!("waiting for {name} (overlap on {path})"))
}
