//! The orchestrator pass, run on every worker tick (and at once when something relevant
//! happens): approved tasks are queued, queued tasks start implementation while fewer than
//! `max_active_instances` are implementing, and pending work sessions whose dependencies are
//! complete are dispatched while their instance runs fewer than `max_parallel_threads` threads.
//! Every step is a guarded store transaction, so two replicas running the pass at once cannot
//! start a task twice or exceed a limit; within a pass, steps of different tasks run side by
//! side (their writes share commits).

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};

use spectask_domain::check::project_checks;
use spectask_domain::prompts::{ImplementationBrief, implementation_prompt};
use spectask_domain::{
    SpecTask, SpecTaskEvent, SpecTaskId, SpecTaskImplementationTask, SpecTaskStatus,
    SpecTaskWorkSession, WorkSessionId, WorkSessionStatus,
};
use spectask_store::{DispatchOutcome, StoreError};

use super::graph::SessionGraph;
use crate::{Engine, EngineError};

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrchestratorOutcome {
    pub queued: usize,
    pub started: usize,
    pub dispatched: usize,
}

/// The plan tasks assigned to a work session: its top-level task, its sub-tasks, and the
/// requirement ids they implement (sorted, each once).
pub(crate) struct Assignment<'a> {
    pub(crate) top: Option<&'a SpecTaskImplementationTask>,
    pub(crate) subtasks: Vec<&'a SpecTaskImplementationTask>,
    pub(crate) requirement_refs: Vec<String>,
}

impl<'a> Assignment<'a> {
    /// The check commands its plan tasks name, each with its task's key: the top-level task's,
    /// then its sub-tasks', in plan order.
    pub(crate) fn checks(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.top
            .into_iter()
            .chain(self.subtasks.iter().copied())
            .flat_map(|t| t.checks.iter().map(|c| (t.key.as_str(), c.as_str())))
    }

    pub(crate) fn of(tasks: &'a [SpecTaskImplementationTask], ws: &WorkSessionId) -> Self {
        let assigned = || {
            tasks
                .iter()
                .filter(move |t| t.assigned_work_session_id.as_ref() == Some(ws))
        };
        Assignment {
            top: assigned().find(|t| t.parent_key.is_none()),
            subtasks: assigned().filter(|t| t.parent_key.is_some()).collect(),
            requirement_refs: assigned()
                .flat_map(|t| t.requirement_refs.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        }
    }
}

/// The brief of a work session's first turn.
fn first_prompt(
    task: &SpecTask,
    session: &SpecTaskWorkSession,
    tasks: &[SpecTaskImplementationTask],
) -> String {
    let assignment = Assignment::of(tasks, &session.id);
    let checks: Vec<String> = assignment
        .checks()
        .map(|(_, command)| command.to_owned())
        .chain(project_checks(task.workspace_config.as_ref()).unwrap_or_default())
        .collect();
    let Assignment {
        top,
        subtasks,
        requirement_refs: refs,
    } = assignment;
    let subtasks: Vec<(&str, &str)> = subtasks
        .iter()
        .map(|t| (t.key.as_str(), t.title.as_str()))
        .collect();
    let spawned_from = session
        .spawned_by_session_id
        .as_ref()
        .map(|p| p.to_string());
    let name = session.name.clone().unwrap_or_default();
    implementation_prompt(ImplementationBrief {
        task_name: &task.name,
        requirements: task.requirements_spec.as_deref().unwrap_or_default(),
        design: task.technical_design.as_deref().unwrap_or_default(),
        plan: task.implementation_plan.as_deref().unwrap_or_default(),
        session_name: &name,
        task: top.map(|t| (t.key.as_str(), t.title.as_str())),
        task_description: top
            .and_then(|t| t.description.as_deref())
            .or(session.description.as_deref()),
        subtasks: &subtasks,
        acceptance_criteria: top.and_then(|t| t.acceptance_criteria.as_deref()),
        requirement_refs: &refs,
        checks: &checks,
        spawned_from: spawned_from.as_deref(),
    })
}

/// How many of one pass's steps run at once. Every step is a write, and writes queue for the
/// one writer: steps in flight together share its group commits, where steps one after another
/// each wait for a commit (and, under streaming load, for the output write ahead of it).
const STEPS_IN_FLIGHT: usize = 32;

/// The first error of a batch of steps, after every step has finished.
fn first_error<T>(results: Vec<Result<T, EngineError>>) -> Result<Vec<T>, EngineError> {
    results.into_iter().collect()
}

impl Engine {
    pub(crate) async fn orchestrate(&self) -> Result<OrchestratorOutcome, EngineError> {
        let store = &self.inner.store;
        let settings = &self.inner.settings;
        let actor = self.inner.owner.as_str();
        let mut outcome = OrchestratorOutcome::default();

        let approved = store
            .spec_task_ids_in_status(SpecTaskStatus::SpecApproved)
            .await?;
        let queued = stream::iter(approved)
            .map(|id| async move {
                match store
                    .transition_spec_task(&id, SpecTaskEvent::QueueImplementation, actor)
                    .await
                {
                    Ok(_) => Ok(1),
                    Err(StoreError::Transition(_)) => Ok(0), // another replica or request got there first
                    Err(err) => Err(EngineError::from(err)),
                }
            })
            .buffer_unordered(STEPS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        outcome.queued = first_error(queued)?.into_iter().sum();
        if self.inner.runtime.is_none() {
            return Ok(outcome);
        }

        let implementing = store
            .spec_task_ids_in_status(SpecTaskStatus::Implementation)
            .await?
            .len();
        // The cluster's capacity: every live replica's share (this one's alone when it is the
        // only one, or when none has said it is alive yet).
        let capacity = store
            .cluster_instance_capacity(settings.instance_lease)
            .await?
            .unwrap_or(0)
            .max(settings.max_active_instances);
        // Oldest first, as many as there is room for; one that cannot start now leaves its room
        // to the next pass.
        let room = capacity.saturating_sub(implementing);
        let to_start: Vec<SpecTaskId> = store
            .spec_task_ids_in_status(SpecTaskStatus::ImplementationQueued)
            .await?
            .into_iter()
            .take(room)
            .collect();
        let started = stream::iter(to_start)
            .map(|id| self.start_queued(id, actor))
            .buffer_unordered(STEPS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        outcome.started = first_error(started)?.into_iter().sum();

        let pending = store
            .work_sessions_in_status(WorkSessionStatus::Pending)
            .await?;
        let mut by_task: BTreeMap<SpecTaskId, Vec<WorkSessionId>> = BTreeMap::new();
        for session in &pending {
            by_task
                .entry(session.spec_task_id.clone())
                .or_default()
                .push(session.id.clone());
        }
        // Tasks dispatch side by side; within a task one after another, in plan order, so its
        // thread limit is met by the first sessions.
        let dispatched = stream::iter(by_task)
            .map(|(task_id, candidates)| self.dispatch_ready(task_id, candidates, actor))
            .buffer_unordered(STEPS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        outcome.dispatched = first_error(dispatched)?.into_iter().sum();
        self.start_reviews(actor).await?;
        Ok(outcome)
    }

    /// Starts implementing one queued task; 1 when it started, 0 when it could not start now.
    async fn start_queued(&self, id: SpecTaskId, actor: &str) -> Result<usize, EngineError> {
        let task = self.inner.store.get_spec_task(&id).await?;
        // The task branch is made from HEAD as it is now, on entering implementation.
        let task = match self.prepare_isolation(&task).await {
            Ok(task) => task,
            Err(err @ EngineError::Store(_)) => return Err(err),
            Err(err) => {
                tracing::warn!(spec_task_id = %id, %err, "could not prepare the task's git isolation; retrying");
                return Ok(0);
            }
        };
        match self.start_implementation(&task, actor).await {
            Ok(_) => Ok(1),
            Err(EngineError::Store(StoreError::Transition(_)))
            | Err(EngineError::Transition(_)) => Ok(0),
            Err(err) => Err(err),
        }
    }

    /// Dispatches a task's pending work sessions whose dependencies are complete, while its
    /// instance has room for another thread. Returns how many were dispatched.
    async fn dispatch_ready(
        &self,
        task_id: SpecTaskId,
        candidates: Vec<WorkSessionId>,
        actor: &str,
    ) -> Result<usize, EngineError> {
        let store = &self.inner.store;
        let task = store.get_spec_task(&task_id).await?;
        if !matches!(
            task.status,
            SpecTaskStatus::Implementation | SpecTaskStatus::ImplementationFailed
        ) {
            return Ok(0);
        }
        let tasks = store.list_implementation_tasks(&task_id).await?;
        let sessions = store.list_work_sessions(&task_id).await?;
        let graph = SessionGraph::new(&tasks);
        let by_id: BTreeMap<WorkSessionId, &SpecTaskWorkSession> =
            sessions.iter().map(|s| (s.id.clone(), s)).collect();
        let mut ordered: Vec<&SpecTaskWorkSession> = candidates
            .iter()
            .filter_map(|id| by_id.get(id).copied())
            .collect();
        // Plan order first, spawned sessions (no index) in creation order after.
        ordered.sort_by_key(|s| {
            (
                s.implementation_task_index.unwrap_or(i32::MAX),
                s.id.clone(),
            )
        });
        let mut dispatched = 0;
        for session in ordered {
            if !graph.unmet(&session.id, &by_id).is_empty() {
                continue;
            }
            let prompt = first_prompt(&task, session, &tasks);
            match store
                .dispatch_work_session(
                    &session.id,
                    &prompt,
                    self.inner.settings.max_parallel_threads as i64,
                    actor,
                )
                .await?
            {
                DispatchOutcome::Dispatched(turn) => {
                    tracing::info!(spec_task_id = %task_id, work_session_id = %session.id, turn_id = %turn, "work session dispatched");
                    dispatched += 1;
                }
                DispatchOutcome::AtCapacity { .. } => break,
                DispatchOutcome::NotDispatchable(why) => {
                    tracing::debug!(work_session_id = %session.id, %why, "not dispatched");
                }
            }
        }
        Ok(dispatched)
    }
}
