//! One turn on an agent thread, shared by implementation (a work session's thread) and planning
//! over ACP (the planning session's thread): the prompt to send (with a note on a re-run, whose
//! earlier output is cleared, naming what the earlier attempts did through spectask's tools), the agent's events streamed into the interaction, a silence
//! watchdog, the files it edits tracked for overlaps (`overlap.rs`, which may stop the turn to
//! wait for another thread), and a cancel sent to the agent when the turn is stopped from our
//! side. What the end means is the caller's business.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spectask_domain::prompts::interrupted_note;
use spectask_domain::{AgentThreadId, InstanceId, Interaction, Session, SpecTaskId};
use spectask_runtimes::agent::{AgentError, AgentEvent, AgentRuntime, StopReason, TurnRequest};
use spectask_store::TurnClaim;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::overlap::TrackedPaths;
use crate::planning::output::write_output;
use crate::{Engine, EngineError};

/// How long the agent gets to honour a cancel before the turn is abandoned.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// How a turn's run ended, before it is recorded.
pub(crate) enum RunEnd {
    Finished(Result<StopReason, AgentError>),
    TimedOut(Duration),
    /// The worker is shutting down or lost its claim.
    Interrupted,
}

/// Where a turn runs.
pub(crate) struct AgentThread<'a> {
    pub(crate) runtime: &'a dyn AgentRuntime,
    pub(crate) instance_id: &'a InstanceId,
    pub(crate) thread_id: &'a AgentThreadId,
}

/// A fresh id for a task's instance, offered to the store, which keeps the first one bound to
/// the task: the only place spectask makes instance ids.
pub(crate) fn new_instance_id() -> InstanceId {
    InstanceId::from_ulid(ulid::Ulid::new())
}

/// The instance id stored on task `task` (`zed_instance_id`), as the runtime takes it.
pub(crate) fn stored_instance_id(
    task: &SpecTaskId,
    stored: &str,
) -> Result<InstanceId, EngineError> {
    InstanceId::parse(stored).map_err(|err| {
        EngineError::Conflict(format!(
            "spec task {task} has an unusable instance id: {err}"
        ))
    })
}

impl Engine {
    /// The prompt for the claimed turn: its interaction's prompt, prefixed with a note when this
    /// is a re-run (listing the tool calls its earlier attempts made, read from the store), whose
    /// partial output from the earlier attempt is cleared first.
    pub(crate) async fn agent_turn_prompt(
        &self,
        claim: &TurnClaim,
        session: &Session,
    ) -> Result<String, EngineError> {
        let current = claimed_interaction(claim, session)?;
        if !current.response_message.is_empty() || current.entry_count > 0 {
            // A re-run after a crash or a lost lease: the earlier attempt's output is void.
            self.inner.store.reset_turn_output(claim).await?;
        }
        // A turn that waited for another thread's overlapping work says so first.
        let overlap = self.overlap_resume_note(claim).await?.unwrap_or_default();
        if claim.turn.attempts <= 1 {
            return Ok(format!("{overlap}{}", current.prompt_message));
        }
        // What the earlier attempts did through spectask's tools is in the store (their events),
        // whatever the agent remembers: say it, so the agent does not do it again.
        let earlier = match &claim.turn.work_session_id {
            Some(ws) => {
                self.inner
                    .store
                    .earlier_tool_calls(&claim.turn.id, ws)
                    .await?
            }
            None => Default::default(),
        };
        Ok(format!(
            "{overlap}{}{}",
            interrupted_note(&earlier),
            current.prompt_message
        ))
    }

    /// Runs `prompt` on `thread` to its end, writing the agent's output into the claimed turn's
    /// interaction as it arrives; returns how the turn ended and the reply text written.
    pub(crate) async fn drive_agent_turn(
        &self,
        thread: AgentThread<'_>,
        claim: &TurnClaim,
        prompt: String,
        cancel: &CancellationToken,
    ) -> Result<(RunEnd, String), EngineError> {
        let settings = &self.inner.settings;
        let (agent_events, agent_received) = mpsc::channel::<AgentEvent>(1024);
        let (output, output_received) = mpsc::channel::<AgentEvent>(1024);
        let writer = tokio::spawn(
            write_output(
                self.inner.store.clone(),
                claim.clone(),
                output_received,
                settings.flush_interval,
            )
            .in_current_span(),
        );
        // The files an implementation turn edits are tracked for overlaps beside the stream.
        let (tracked, tracker) = self.track_turn_files(claim, cancel).await?.unzip();
        let last_activity = Arc::new(Mutex::new(Instant::now()));
        let forwarder = tokio::spawn(
            forward(agent_received, output, last_activity.clone(), tracked).in_current_span(),
        );
        let request = TurnRequest {
            instance_id: thread.instance_id.clone(),
            thread_id: thread.thread_id.clone(),
            turn_id: claim.turn.id.to_string(),
            prompt,
        };
        // Boxed rather than pinned in place, so that an abandoned run can be dropped below.
        let mut run = Box::pin(thread.runtime.run_turn(&request, agent_events));
        let end = tokio::select! {
            result = &mut run => RunEnd::Finished(result),
            idle = silence(settings.turn_timeout, &last_activity) => RunEnd::TimedOut(idle),
            _ = cancel.cancelled() => RunEnd::Interrupted,
        };
        if !matches!(end, RunEnd::Finished(_)) {
            // Ask the agent to stop and give the turn a moment to end on its own terms, so the
            // agent's side of the thread is left idle rather than abandoned mid-turn.
            let thread_id = thread.thread_id;
            match tokio::time::timeout(
                CANCEL_GRACE,
                thread.runtime.cancel_turn(thread.instance_id, thread_id),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(%err, thread = %thread_id, "cancel_turn failed"),
                Err(_) => tracing::warn!(thread = %thread_id, "cancel_turn did not answer"),
            }
            match tokio::time::timeout(CANCEL_GRACE, &mut run).await {
                Ok(result) => tracing::debug!(?result, thread = %thread_id, "cancelled turn ended"),
                Err(_) => {
                    tracing::warn!(thread = %thread_id, "the cancelled turn did not end; abandoning it")
                }
            }
        }
        // The turn's event sender lives in `run` until it is dropped, and the forwarder (and after
        // it the writer and the tracker) ends only once every sender is gone: a run abandoned
        // above but kept alive here would keep them, and this turn, waiting forever.
        drop(run);
        if forwarder.await.is_err() {
            tracing::warn!("event forwarder panicked");
        }
        if let Some(tracker) = tracker
            && tracker.await.is_err()
        {
            tracing::warn!("file tracker panicked");
        }
        let written = writer
            .await
            .map_err(|err| EngineError::Conflict(format!("output writer failed: {err}")))??;
        Ok((end, written))
    }
}

/// The interaction the claimed turn answers, from its session.
pub(crate) fn claimed_interaction<'s>(
    claim: &TurnClaim,
    session: &'s Session,
) -> Result<&'s Interaction, EngineError> {
    session
        .interactions
        .iter()
        .find(|i| i.id == claim.turn.interaction_id)
        .ok_or_else(|| EngineError::Conflict(format!("turn {} has no interaction", claim.turn.id)))
}

/// Passes the agent's events on to the interaction writer (reply text and entries), noting the
/// time of every event for the silence watchdog (every event is activity, whatever it records)
/// and the files edited by its tool calls for overlap tracking.
async fn forward(
    mut received: mpsc::Receiver<AgentEvent>,
    output: mpsc::Sender<AgentEvent>,
    last_activity: Arc<Mutex<Instant>>,
    mut tracked: Option<TrackedPaths>,
) {
    while let Some(event) = received.recv().await {
        if let Ok(mut last) = last_activity.lock() {
            *last = Instant::now();
        }
        if let (Some(tracked), AgentEvent::ToolCall(call)) = (tracked.as_mut(), &event) {
            tracked.note(call);
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
