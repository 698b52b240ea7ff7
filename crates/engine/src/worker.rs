//! The background worker. Each tick runs the orchestrator pass (queue approved tasks, start
//! implementation, dispatch ready work sessions), requeues turns whose lease expired, marks the
//! threads of agent instances the runtime lost as disconnected, then claims queued turns under a
//! lease: planning turns run against the task's planner (this module) or, when its `spec_agent`
//! names an agent profile, as an ACP session ([`crate::planning::agent`]); implementation turns
//! run against the agent runtime ([`crate::implementation::runner`]).
//!
//! A planning turn runs with the session's conversation, streams the reply into the interaction,
//! and ends with one of three store transactions (new revision, corrective turn, failure).
//!
//! Crash safety: everything the worker knows is in the turn row. If the process dies, the lease
//! expires, the turn is queued again and the next claim re-runs it in the same session, on the
//! same interaction (its partial output is cleared first). On a graceful shutdown the claim is
//! released at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use spectask_domain::prompts::{PLANNING_SYSTEM_PROMPT, corrective_prompt};
use spectask_domain::{EventKind, NewEvent, SpecTask, TurnKind, split_spec_reply};
use spectask_runtimes::llm::ChatMessage;
use spectask_store::{StoreError, TurnClaim};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::planning::output::write_output;
use crate::planning::route::PlanningRoute;
use crate::{Engine, EngineError, projection};

const PLANNING_KINDS: &[TurnKind] = &[TurnKind::Planning, TurnKind::Revision, TurnKind::Correction];
const IMPLEMENTATION_KINDS: &[TurnKind] = &[TurnKind::Implementation, TurnKind::FollowUp];
/// Most claims one tick has in flight at once.
const MAX_CLAIMS_IN_FLIGHT: usize = 32;

/// What one pass of the worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    pub requeued: usize,
    pub started: usize,
    pub orchestrated: crate::implementation::orchestrator::OrchestratorOutcome,
}

impl Engine {
    /// Runs the worker until `shutdown` is cancelled, then releases the turns it holds.
    pub async fn run_worker(self, shutdown: CancellationToken) {
        let mut running = JoinSet::new();
        self.reconcile_predecessor().await;
        tracing::info!(owner = %self.inner.owner, "worker started");
        loop {
            match self.tick(&mut running, &shutdown).await {
                Ok(outcome)
                    if outcome.requeued > 0
                        || outcome.started > 0
                        || outcome.orchestrated.dispatched > 0 =>
                {
                    tracing::debug!(?outcome, "worker tick");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "worker tick failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.settings.poll_interval) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        while running.join_next().await.is_some() {}
        // Another replica may take this one's instances over at once.
        if let Err(err) = self.inner.store.release_replica(&self.inner.owner).await {
            tracing::warn!(%err, "could not release the instance leases; they expire on their own");
        }
        tracing::info!("worker stopped");
    }

    /// Runs the worktree reaper if it has not run for `REAP_INTERVAL` (at once on the first
    /// tick, which cleans up after a crash).
    async fn reap_worktrees_now_and_then(&self) {
        const REAP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
        {
            let Ok(mut last) = self.inner.last_reap.lock() else {
                return;
            };
            if last.is_some_and(|at| at.elapsed() < REAP_INTERVAL) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        match self.reap_worktrees().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "worktree reaper removed stale worktrees"),
            Err(err) => tracing::warn!(%err, "worktree reaper failed; retrying later"),
        }
    }

    /// Makes the next tick run the worktree reaper (a task ended here).
    pub(crate) fn reap_soon(&self) {
        if let Ok(mut last) = self.inner.last_reap.lock() {
            *last = None;
        }
        self.wake();
    }

    /// Start-up reconcile: the previous process on this data directory is dead (the lock says
    /// so), so its running turns are requeued at once and its MCP tokens revoked. Turns of any
    /// other owner, a live sibling with the same replica name included, are left to their leases.
    async fn reconcile_predecessor(&self) {
        let Some(dead) = self.inner.settings.predecessor_owner.as_deref() else {
            return;
        };
        let store = &self.inner.store;
        match store
            .requeue_turns_of_dead_owner(dead, &self.inner.owner)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                turns = n,
                predecessor = %dead,
                "requeued turns left running by the previous process on this data directory"
            ),
            Err(err) => {
                tracing::warn!(%err, "could not reconcile turns left running; their leases will expire")
            }
        }
        // Its instances are free at once too, instead of when their leases expire.
        if let Err(err) = store.release_replica(dead).await {
            tracing::warn!(%err, "could not release the previous process's instance leases; they expire on their own");
        }
        if let Err(err) = store.revoke_agent_tokens_minted_by(dead).await {
            tracing::warn!(%err, "could not revoke the previous process's MCP tokens; they expire with their TTL");
        }
    }

    /// Requeues expired claims, then claims and starts as many queued turns as there are free
    /// slots.
    pub async fn tick(
        &self,
        running: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> Result<TickOutcome, EngineError> {
        let store = &self.inner.store;
        self.renew_instance_leases().await?;
        let requeued = store.requeue_expired_turns().await?;
        if let Err(err) = self.disconnect_lost_instances().await {
            // Only the `disconnected` marks are lost: recovery resumes the threads regardless.
            tracing::warn!(%err, "could not mark the threads of lost agent instances");
        }
        if let Err(err) = self.stop_ended_instances().await {
            tracing::warn!(%err, "could not stop the agents of ended tasks; retrying next tick");
        }
        self.reap_worktrees_now_and_then().await;
        let orchestrated = self.orchestrate().await?;
        let mut started = 0;
        let lanes = [
            (PLANNING_KINDS, &self.inner.permits),
            (IMPLEMENTATION_KINDS, &self.inner.implementation_permits),
        ];
        for (kinds, permits) in lanes {
            if kinds == IMPLEMENTATION_KINDS && self.inner.runtime.is_none() {
                continue;
            }
            // Both lanes respect and take instance leases; only implementation is bounded by
            // this replica's share, so planning never waits for implementation slots.
            let mut leasing = self.instance_leasing();
            if kinds == PLANNING_KINDS {
                leasing.max_active = usize::MAX;
            }
            // Claims go out in rounds of claims in flight together (their writes share a
            // commit): one at first, so an idle tick costs one claim, then twice as many after
            // each round that found a turn for every claim.
            let mut round = 1;
            while !shutdown.is_cancelled() {
                let permits: Vec<OwnedSemaphorePermit> = (0..round)
                    .map_while(|_| permits.clone().try_acquire_owned().ok())
                    .collect();
                if permits.is_empty() {
                    break;
                }
                let wanted = permits.len();
                let claims = futures::future::join_all(permits.iter().map(|_| {
                    store.claim_next_turn(
                        kinds,
                        &self.inner.owner,
                        self.inner.settings.turn_lease,
                        Some(leasing),
                    )
                }))
                .await;
                let mut claimed = 0;
                let mut failure = None;
                // A permit left over (its claim found nothing) is dropped, which returns it.
                for (claim, permit) in claims.into_iter().zip(permits) {
                    match claim {
                        Ok(Some(claim)) => {
                            claimed += 1;
                            let engine = self.clone();
                            let cancel = shutdown.child_token();
                            running
                                .spawn(async move { engine.run_turn(claim, permit, cancel).await });
                        }
                        Ok(None) => {}
                        Err(err) => failure = Some(err),
                    }
                }
                started += claimed;
                if let Some(err) = failure {
                    return Err(err.into());
                }
                if claimed < wanted {
                    break;
                }
                round = (round * 2).min(MAX_CLAIMS_IN_FLIGHT);
            }
        }
        Ok(TickOutcome {
            requeued,
            started,
            orchestrated,
        })
    }

    /// Runs one claimed turn to its end. Its span carries the turn's ids, so every log line of
    /// the turn (and of the tasks it spawns) names them without repeating them.
    #[tracing::instrument(name = "turn", skip_all, fields(
        turn_id = %claim.turn.id,
        spec_task_id = %claim.turn.spec_task_id,
        work_session_id = claim.turn.work_session_id.as_ref().map(|ws| ws.as_str()),
        kind = %claim.turn.kind,
        attempt = claim.turn.attempts,
    ))]
    async fn run_turn(
        self,
        claim: TurnClaim,
        _permit: OwnedSemaphorePermit,
        cancel: CancellationToken,
    ) {
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(
            self.clone()
                .heartbeat(claim.clone(), cancel.clone(), lost.clone())
                .in_current_span(),
        );
        let result = if IMPLEMENTATION_KINDS.contains(&claim.turn.kind) {
            self.execute_implementation(&claim, &cancel, &lost).await
        } else {
            self.execute(&claim, &cancel, &lost).await
        };
        heartbeat.abort();
        match result {
            Ok(()) => {}
            Err(EngineError::Store(StoreError::ClaimLost(_))) => {
                tracing::warn!(
                    "lost the claim on the turn (cancelled, or another worker owns it now)"
                );
            }
            Err(err) => {
                tracing::error!(%err, "turn could not be finished; its lease will expire and it will run again")
            }
        }
        self.wake();
    }

    /// Extends the lease while the turn runs; cancels the turn if the claim is lost.
    async fn heartbeat(self, claim: TurnClaim, cancel: CancellationToken, lost: Arc<AtomicBool>) {
        let lease = self.inner.settings.turn_lease;
        let every = lease / 3;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match self.inner.store.heartbeat_turn(&claim, lease).await {
                Ok(()) => {}
                Err(StoreError::ClaimLost(_)) => {
                    lost.store(true, Ordering::SeqCst);
                    cancel.cancel();
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, "heartbeat failed; will retry")
                }
            }
        }
    }

    async fn execute(
        &self,
        claim: &TurnClaim,
        cancel: &CancellationToken,
        lost: &AtomicBool,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let settings = &self.inner.settings;
        if claim.turn.attempts > settings.max_turn_attempts {
            let reason = format!(
                "planning was interrupted {} times (server restarts or lost workers); giving up",
                claim.turn.attempts - 1
            );
            store.fail_planning_turn(claim, "", &reason).await?;
            return Ok(());
        }
        let task = store.get_spec_task(&claim.turn.spec_task_id).await?;
        let planner = match self.planning_route(task.spec_agent.as_deref()) {
            Ok(PlanningRoute::Llm(planner)) => planner.clone(),
            Ok(PlanningRoute::Agent(agent)) => {
                let agent = agent.to_owned();
                return self
                    .execute_agent_planning(claim, &task, &agent, cancel, lost)
                    .await;
            }
            Err(err) => {
                store
                    .fail_planning_turn(claim, "", &err.to_string())
                    .await?;
                return Ok(());
            }
        };
        let session = store.get_session(&claim.turn.session_id).await?;
        let current = crate::agent_turn::claimed_interaction(claim, &session)?;
        let mut system = PLANNING_SYSTEM_PROMPT.to_owned();
        if let Some(extra) = planner
            .system_prompt_extra
            .as_deref()
            .filter(|e| !e.trim().is_empty())
        {
            system.push_str("\n\nAdditional instructions:\n");
            system.push_str(extra);
        }
        let mut messages = vec![ChatMessage::system(system)];
        for earlier in session.interactions.iter().filter(|i| i.seq < current.seq) {
            messages.push(ChatMessage::user(earlier.prompt_message.clone()));
            if !earlier.response_message.is_empty() {
                messages.push(ChatMessage::assistant(earlier.response_message.clone()));
            }
        }
        messages.push(ChatMessage::user(current.prompt_message.clone()));
        if !current.response_message.is_empty() || current.entry_count > 0 {
            // A re-run after a crash: the earlier partial reply is void.
            store.reset_turn_output(claim).await?;
        }
        tracing::info!(planner = %planner.name, "planning turn running");

        let (events, received) = mpsc::channel(256);
        let writer = tokio::spawn(
            write_output(
                store.clone(),
                claim.clone(),
                received,
                settings.flush_interval,
            )
            .in_current_span(),
        );
        let completion = tokio::select! {
            result = planner.client.complete(&messages, events) => Some(result),
            _ = cancel.cancelled() => None,
        };
        let written = writer
            .await
            .map_err(|err| EngineError::Conflict(format!("output writer failed: {err}")))??;

        let Some(completion) = completion else {
            if lost.load(Ordering::SeqCst) {
                return Err(StoreError::ClaimLost(claim.turn.id.to_string()).into());
            }
            // Shutting down: hand the turn back so the next start re-runs it at once.
            store.release_turn(claim).await?;
            tracing::info!("planning turn released for shutdown");
            return Ok(());
        };
        match completion {
            Ok(completion) => {
                self.settle_planning_output(
                    claim,
                    &task,
                    split_spec_reply(&completion.content),
                    &completion.content,
                    corrective_prompt,
                    "the planner's reply",
                )
                .await?;
            }
            Err(err) => {
                let reason = format!("planner `{}` failed: {err}", planner.name);
                store.fail_planning_turn(claim, &written, &reason).await?;
                tracing::warn!(%reason, "planning failed");
            }
        }
        Ok(())
    }

    /// Writes the revision into the task's checkout, if it has one; failures are recorded.
    pub(crate) async fn project(&self, task: &SpecTask, revision: &spectask_domain::SpecRevision) {
        let Some(project) = task.project_path.as_deref() else {
            return;
        };
        if let Err(err) = projection::write_specs(std::path::Path::new(project), revision).await {
            tracing::warn!(spec_task_id = %task.id, %err, "could not write the specs into the workspace");
            let event = NewEvent {
                spec_task_id: Some(task.id.clone()),
                kind: EventKind::WorkspaceProjectionFailed,
                entity_id: task.id.to_string(),
                actor: self.inner.owner.clone(),
                payload: serde_json::json!({ "revision": revision.revision, "error": err.to_string() }),
            };
            if let Err(err) = self.inner.store.record_event(&event).await {
                tracing::warn!(%err, "could not record the projection failure");
            }
        }
    }
}
