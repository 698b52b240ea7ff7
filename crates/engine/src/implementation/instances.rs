//! Instance losses reported by the agent runtime (a process that exited, an agent declared hung):
//! every thread of the instance recorded `active` becomes `disconnected`, not only the ones whose
//! turns noticed. Recovery does not depend on this: the next dispatch restarts the instance and
//! resumes each thread (`session/load`), which makes it `active` again. Also here: stopping the
//! agents of tasks that ended (deleted, archived, done, failed), as the database says.

use spectask_domain::AgentThreadId;
use spectask_store::InstanceLeasing;

use crate::{Engine, EngineError};

impl Engine {
    /// Marks the active threads of every instance the runtime lost since the last call as
    /// disconnected, except threads the runtime already has back (resumed by a restarted
    /// instance in the meantime). Returns how many threads changed.
    pub async fn disconnect_lost_instances(&self) -> Result<usize, EngineError> {
        let Some(runtime) = self.inner.runtime.as_ref() else {
            return Ok(0);
        };
        let store = &self.inner.store;
        let mut changed = 0;
        for loss in runtime.take_lost_instances() {
            let threads: Vec<_> = store
                .active_threads_of_instance(loss.instance_id.as_str())
                .await?
                .into_iter()
                .filter(|thread| {
                    let thread_id = AgentThreadId::new(thread.zed_thread_id.as_str());
                    !runtime.thread_is_live(&loss.instance_id, &thread_id)
                })
                .map(|thread| thread.id)
                .collect();
            let disconnected = store
                .disconnect_threads(&threads, &self.inner.owner)
                .await?;
            tracing::warn!(instance_id = %loss.instance_id, reason = %loss.reason, threads = disconnected.len(), "agent instance lost; its active threads are disconnected");
            changed += disconnected.len();
        }
        Ok(changed)
    }

    /// Shuts down the runtime's instances whose task has ended (deleted, archived, done or
    /// failed), as the database says: a deletion through any replica stops the agent here too.
    /// Returns how many were stopped.
    pub async fn stop_ended_instances(&self) -> Result<usize, EngineError> {
        let Some(runtime) = self.inner.runtime.as_ref() else {
            return Ok(0);
        };
        let running = runtime.running_instances();
        if running.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = running.iter().map(ToString::to_string).collect();
        let ended_ids = self.inner.store.ended_instances(&ids).await?;
        // The store answers with the ids it was given; the runtime takes them typed.
        let ended: Vec<_> = running
            .iter()
            .filter(|instance_id| ended_ids.iter().any(|id| id == instance_id.as_str()))
            .collect();
        for instance_id in &ended {
            tracing::info!(%instance_id, "the instance's task has ended; stopping its agent");
            if let Err(err) = runtime.shutdown_instance(instance_id).await {
                tracing::warn!(%instance_id, %err, "could not stop the agent of an ended task");
            }
        }
        Ok(ended.len())
    }

    /// How this replica's claims are bound to instance leases.
    pub(crate) fn instance_leasing(&self) -> InstanceLeasing {
        InstanceLeasing {
            lease: self.inner.settings.instance_lease,
            max_active: self.inner.settings.max_active_instances,
        }
    }

    /// Each tick: renews this replica's instance leases (and says it is alive), stops the agents
    /// of instances another replica took over (this one stalled past its lease), and gives up
    /// the leases of tasks with no work and no agent here.
    pub(crate) async fn renew_instance_leases(&self) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let owner = &self.inner.owner;
        store
            .heartbeat_replica(owner, self.instance_leasing())
            .await?;
        let mut running: Vec<String> = Vec::new();
        if let Some(runtime) = self.inner.runtime.as_ref() {
            let instances = runtime.running_instances();
            running = instances.iter().map(ToString::to_string).collect();
            let lost = store.foreign_instances(owner, &running).await?;
            for instance_id in instances
                .iter()
                .filter(|id| lost.iter().any(|lost| lost == id.as_str()))
            {
                tracing::warn!(%instance_id, "another replica owns this instance now; stopping its agent here");
                if let Err(err) = runtime.shutdown_instance(instance_id).await {
                    tracing::warn!(%instance_id, %err, "could not stop the agent of a lost instance");
                }
            }
        }
        store.release_idle_instance_leases(owner, &running).await?;
        Ok(())
    }
}
