//! The threads of one agent instance, as a whole: the ones to mark when the instance is lost.
//! An instance is found through the tasks whose `zed_instance_id` names it.

use spectask_domain::{SpecTaskZedThread, SpecTaskZedThreadId, ZedThreadEvent};

use crate::Store;
use crate::db::query_as;
use crate::error::StoreResult;
use crate::ids::now;
use crate::rows::{ZED_THREAD_COLUMNS, ZedThreadRow};
use crate::transition::try_apply_event;

impl Store {
    /// The `active` threads of the tasks hosted by instance `instance_id`, oldest first.
    pub async fn active_threads_of_instance(
        &self,
        instance_id: &str,
    ) -> StoreResult<Vec<SpecTaskZedThread>> {
        let rows: Vec<ZedThreadRow> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ZED_THREAD_COLUMNS} FROM spec_task_zed_threads WHERE status = 'active' \
             AND spec_task_id IN (SELECT id FROM spec_tasks WHERE zed_instance_id = $1) \
             ORDER BY id"
        )))
        .bind(instance_id)
        .fetch_all(self.backend.reader())
        .await?;
        rows.into_iter().map(SpecTaskZedThread::try_from).collect()
    }

    /// Marks `threads` disconnected in one transaction, each through the thread table's guarded
    /// `disconnect` with its event; a thread that is no longer `active` is left alone. Returns the
    /// threads changed.
    pub async fn disconnect_threads(
        &self,
        threads: &[SpecTaskZedThreadId],
        actor: &str,
    ) -> StoreResult<Vec<SpecTaskZedThreadId>> {
        let now = now();
        self.write(async |tx| {
            let mut changed = Vec::new();
            for thread in threads {
                if try_apply_event(
                    &mut *tx,
                    thread.as_str(),
                    ZedThreadEvent::Disconnect,
                    actor,
                    now,
                )
                .await?
                {
                    changed.push(thread.clone());
                }
            }
            Ok(changed)
        })
        .await
    }
}
