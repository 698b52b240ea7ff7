//! Instance supervision: noticing that an agent process died or stopped answering, reporting the
//! loss to the engine, and pacing restarts.
//!
//! Liveness: ACP has no ping, so a watchdog task per instance sends a request for an extension
//! method no agent implements (`_spectask/ping`). Any answer, `method not found` included, proves
//! the agent's message loop is alive; no answer within the probe timeout declares the instance
//! hung. So does a `session/cancel` whose prompt never ends. A hung instance is terminated (stdin
//! closed, then its process group), so every turn in flight ends with `Disconnected`.
//!
//! Losses (exit or hang, never an intentional shutdown) are queued for
//! [`AgentRuntime::take_lost_instances`](crate::agent::AgentRuntime::take_lost_instances). They
//! only speed up what recovery does anyway: a restarted instance resumes each thread with
//! `session/load` on its next use.
//!
//! Restarts back off per instance: every failed start, and every loss of an instance that had
//! not yet stayed up for `stable_after`, doubles the delay before the next start (from
//! `restart_backoff_initial` up to `restart_backoff_max`); an instance that stayed up that long
//! starts the count again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agent_client_protocol::{
    UntypedMessage, is_connection_terminated, is_incoming_transport_closed,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::process::TERMINATE_GRACE;
use super::{CLOSE_GRACE, Instance};
use crate::agent::InstanceLoss;

/// The liveness probe's method: an ACP extension method (leading underscore) that no agent
/// implements, so the answer is normally `method not found`.
pub(crate) const PROBE_METHOD: &str = "_spectask/ping";

/// How long a hung agent gets between SIGTERM and SIGKILL: it is not answering, so it is not
/// going to shut down cleanly either, and its restart waits for it to be gone.
const HUNG_GRACE: Duration = Duration::from_millis(500);

/// The shortest probe interval honoured, so a zero setting cannot make the watchdog spin.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// How an ACP runtime watches and restarts its agent processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisionSettings {
    /// How often a running instance is probed.
    pub probe_interval: Duration,
    /// How long a probe may go unanswered before the instance is declared hung.
    pub probe_timeout: Duration,
    /// How long a cancelled turn may take to end before the instance is declared hung.
    pub cancel_timeout: Duration,
    /// The delay before the first restart after a failure; doubled per consecutive failure.
    pub restart_backoff_initial: Duration,
    /// The longest delay between restarts.
    pub restart_backoff_max: Duration,
    /// An instance that stayed up this long is healthy again: its failure count restarts.
    pub stable_after: Duration,
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(10),
            cancel_timeout: Duration::from_secs(10),
            restart_backoff_initial: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
        }
    }
}

impl SupervisionSettings {
    /// The delay before a start that follows `failures` consecutive failures.
    pub fn backoff(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
        self.restart_backoff_initial
            .saturating_mul(factor)
            .min(self.restart_backoff_max)
    }
}

/// The restart history of one instance.
#[derive(Debug, Clone, Copy)]
struct Restarts {
    /// Consecutive failures (failed starts, or losses before `stable_after`).
    failures: u32,
    /// No start before this.
    not_before: Instant,
}

/// What the runtime's supervision shares between its instances and their watchdogs.
#[derive(Debug, Default)]
pub(crate) struct Supervisor {
    pub(crate) settings: SupervisionSettings,
    losses: Mutex<Vec<InstanceLoss>>,
    restarts: Mutex<HashMap<String, Restarts>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single push, drain or map operation: still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Supervisor {
    pub(crate) fn new(settings: SupervisionSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    pub(crate) fn take_losses(&self) -> Vec<InstanceLoss> {
        std::mem::take(&mut *locked(&self.losses))
    }

    fn failed(&self, instance_id: &str, reset: bool) {
        let mut restarts = locked(&self.restarts);
        let entry = restarts.entry(instance_id.to_owned()).or_insert(Restarts {
            failures: 0,
            not_before: Instant::now(),
        });
        if reset {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.not_before = Instant::now() + self.settings.backoff(entry.failures);
    }

    /// Forgets the restart history of an instance shut down on purpose.
    pub(crate) fn forget(&self, instance_id: &str) {
        locked(&self.restarts).remove(instance_id);
    }

    /// A start of `instance_id` failed.
    pub(crate) fn start_failed(&self, instance_id: &str) {
        self.failed(instance_id, false);
    }

    /// Waits out the backoff before (re)starting `instance_id`. Called under the instance's slot
    /// lock, so concurrent dispatches wait once, together, and never spin.
    pub(crate) async fn before_start(&self, instance_id: &str) {
        let Some(restarts) = locked(&self.restarts).get(instance_id).copied() else {
            return;
        };
        let delay = restarts
            .not_before
            .saturating_duration_since(Instant::now());
        tracing::warn!(
            %instance_id,
            attempt = restarts.failures + 1,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "restarting agent instance"
        );
        tokio::time::sleep(delay).await;
    }

    /// Records that `instance` went away on its own, once (an intentional shutdown, or an earlier
    /// report, makes this a no-op), and queues the report. Returns whether this call recorded it.
    pub(crate) fn lost(&self, instance: &Instance, reason: String) -> bool {
        if !instance.supervision.end() {
            return false;
        }
        let uptime = instance.supervision.started_at.elapsed();
        self.failed(instance.id.as_str(), uptime >= self.settings.stable_after);
        tracing::warn!(instance_id = %instance.id, %reason, uptime_ms = u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX), "agent instance lost");
        locked(&self.losses).push(InstanceLoss {
            instance_id: instance.id.clone(),
            reason,
        });
        true
    }

    /// Declares `instance` hung: terminates it (stdin first, then the process group) and reports
    /// the loss, so the turns in flight end with `Disconnected`.
    pub(crate) async fn hung(&self, instance: &Instance, reason: String) {
        // Recorded first, so closing the connection below is not reported as another cause.
        if !self.lost(instance, format!("the agent stopped answering ({reason})")) {
            return;
        }
        tracing::error!(instance_id = %instance.id, "terminating the unresponsive agent instance");
        instance.connection.close(CLOSE_GRACE).await;
        instance.process.terminate(HUNG_GRACE).await;
    }
}

/// Per-instance supervision state.
#[derive(Debug)]
pub(crate) struct InstanceSupervision {
    started_at: Instant,
    /// Set once: by an intentional shutdown, or by the first report of a loss.
    ended: AtomicBool,
    /// The prompts in flight, by session: each flag turns true when the prompt is answered.
    prompts: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// When the instance was last used (a dispatch, a thread set up, a prompt sent or ended).
    last_active: Mutex<Instant>,
}

impl Default for InstanceSupervision {
    fn default() -> Self {
        Self {
            started_at: Instant::now(),
            ended: AtomicBool::new(false),
            prompts: Mutex::new(HashMap::new()),
            last_active: Mutex::new(Instant::now()),
        }
    }
}

impl InstanceSupervision {
    /// Marks the instance ended; true for the first caller only.
    pub(crate) fn end(&self) -> bool {
        !self.ended.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Records a use of the instance: its idle time starts again.
    pub(crate) fn touch(&self) {
        *locked(&self.last_active) = Instant::now();
    }

    /// How long the instance has had no prompt in flight and no use; `None` while a prompt is in
    /// flight (a turn waiting for a human's permission answer included).
    fn idle_for(&self) -> Option<Duration> {
        if !locked(&self.prompts).is_empty() {
            return None;
        }
        Some(locked(&self.last_active).elapsed())
    }

    /// Tracks a prompt sent on `session_id` until the guard is dropped.
    pub(crate) fn prompt_sent<'a>(&'a self, session_id: &'a str) -> PromptGuard<'a> {
        self.touch();
        let (answered, _) = watch::channel(false);
        locked(&self.prompts).insert(session_id.to_owned(), answered.clone());
        PromptGuard {
            supervision: self,
            session_id,
            answered,
        }
    }

    /// Whether the prompt now in flight on `session_id` gets answered (`None`: none in flight).
    fn prompt_answer(&self, session_id: &str) -> Option<watch::Receiver<bool>> {
        locked(&self.prompts)
            .get(session_id)
            .map(watch::Sender::subscribe)
    }
}

/// A prompt in flight; dropping it without [`PromptGuard::answered`] means it was abandoned.
pub(crate) struct PromptGuard<'a> {
    supervision: &'a InstanceSupervision,
    session_id: &'a str,
    answered: watch::Sender<bool>,
}

impl PromptGuard<'_> {
    pub(crate) fn answered(&self) {
        self.answered.send_replace(true);
    }
}

impl Drop for PromptGuard<'_> {
    fn drop(&mut self) {
        self.supervision.touch();
        let mut prompts = locked(&self.supervision.prompts);
        if prompts
            .get(self.session_id)
            .is_some_and(|sender| sender.same_channel(&self.answered))
        {
            prompts.remove(self.session_id);
        }
    }
}

/// What a liveness probe found.
enum Probe {
    Alive,
    Gone,
    Silent,
}

async fn probe(instance: &Instance, timeout: Duration) -> Probe {
    let request = match UntypedMessage::new(PROBE_METHOD, serde_json::json!({})) {
        Ok(request) => request,
        // Cannot happen for a literal JSON object; a probe that cannot be built proves nothing.
        Err(_) => return Probe::Alive,
    };
    let answer = instance.connection.cx.send_request(request).block_task();
    match tokio::time::timeout(timeout, answer).await {
        Err(_) => Probe::Silent,
        Ok(Err(err)) if is_incoming_transport_closed(&err) || is_connection_terminated(&err) => {
            Probe::Gone
        }
        // An error answer (normally `method not found`) is an answer.
        Ok(_) => Probe::Alive,
    }
}

/// Watches `instance` until it ends: reports its process exiting or its connection closing,
/// probes it every `probe_interval`, and shuts it down once it has been idle for `idle_timeout`.
pub(crate) fn spawn_watchdog(
    supervisor: Arc<Supervisor>,
    instance: &Arc<Instance>,
    idle_timeout: Option<Duration>,
) {
    let instance = Arc::downgrade(instance);
    tokio::spawn(async move {
        let settings = supervisor.settings;
        // The idle check runs at least this often, so a short idle timeout is honoured even with
        // a long probe interval.
        let tick = idle_timeout.map_or(settings.probe_interval, |idle| {
            settings.probe_interval.min(idle / 2)
        });
        let mut next_probe = Instant::now() + settings.probe_interval;
        loop {
            let Some(instance) = instance.upgrade() else {
                return;
            };
            if instance.supervision.is_ended() {
                return;
            }
            tokio::select! {
                status = instance.process.wait_exit() => {
                    supervisor.lost(&instance, format!("the agent process exited ({status})"));
                    return;
                }
                () = instance.connection.wait_closed() => {
                    let reason = instance
                        .connection
                        .failure()
                        .unwrap_or_else(|| "the agent closed the connection".to_owned());
                    if supervisor.lost(&instance, reason) {
                        instance.process.terminate(TERMINATE_GRACE).await;
                    }
                    return;
                }
                () = tokio::time::sleep(tick.max(MIN_PROBE_INTERVAL)) => {}
            }
            if instance.supervision.is_ended() {
                return;
            }
            if let (Some(limit), Some(idle)) = (idle_timeout, instance.supervision.idle_for())
                && idle >= limit
            {
                tracing::info!(instance_id = %instance.id, idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX), "agent instance idle; shutting it down (its next dispatch restarts it)");
                // Intentional: `shutdown` ends the supervision first, so this is no loss.
                instance.shutdown().await;
                return;
            }
            if Instant::now() < next_probe {
                continue;
            }
            next_probe = Instant::now() + settings.probe_interval;
            match probe(&instance, settings.probe_timeout).await {
                Probe::Alive => {}
                // Not read because turns are behind: the answer is in the pipe, unread.
                Probe::Silent if instance.connection.reading_paused() => {}
                Probe::Gone => {
                    supervisor.lost(&instance, "the agent connection broke".to_owned());
                    instance.process.terminate(TERMINATE_GRACE).await;
                    return;
                }
                Probe::Silent => {
                    let reason = format!(
                        "no answer to a liveness probe within {}ms",
                        settings.probe_timeout.as_millis()
                    );
                    supervisor.hung(&instance, reason).await;
                    return;
                }
            }
        }
    });
}

/// After a `session/cancel`: the prompt on `session_id` must end within `cancel_timeout`, or the
/// instance is declared hung (an agent that ignores cancels would keep the thread busy forever).
pub(crate) fn expect_cancel_answer(
    supervisor: Arc<Supervisor>,
    instance: &Arc<Instance>,
    session_id: &str,
) {
    let Some(mut answer) = instance.supervision.prompt_answer(session_id) else {
        return;
    };
    let instance = instance.clone();
    let session_id = session_id.to_owned();
    tokio::spawn(async move {
        let timeout = supervisor.settings.cancel_timeout;
        let answered = matches!(
            tokio::time::timeout(timeout, answer.wait_for(|answered| *answered)).await,
            Ok(Ok(_))
        );
        // Dropped unanswered: the turn was abandoned, or the agent died (then it is not alive).
        if !answered && instance.is_alive() {
            let reason = format!("the cancelled prompt on session {session_id} never ended");
            supervisor.hung(&instance, reason).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_delay_up_to_the_cap() {
        let settings = SupervisionSettings::default();
        let delays: Vec<u64> = (0..9).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(settings.backoff(u32::MAX), Duration::from_secs(60));
    }
}
