//! Instance leases: which replica process owns a SpecTask's agent instance. Several replicas
//! share one database; only the owner of a task's unexpired lease claims its turns
//! ([`Store::claim_next_turn`] takes the lease in the claiming transaction), so at no moment do
//! two replicas run an agent for one task. The owner renews its leases on every worker tick
//! ([`Store::heartbeat_replica`]); a dead owner's leases expire and the next claim of another
//! replica takes the instance over. A replica takes new instances only while it holds fewer than
//! its `max_active_instances`, and says it is alive in `replicas`, so the cluster's capacity is
//! the sum over the live ones.

use std::time::Duration;

use chrono::{DateTime, Utc};
use spectask_domain::SpecTaskId;

use crate::Store;
use crate::backend::Dialect;
use crate::db::{Tx, query, query_as, query_scalar, value_rows};
use crate::error::{StoreError, StoreResult};
use crate::ids::now;

/// How a worker's claims are bound to instance leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLeasing {
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Instances this replica holds at most.
    pub max_active: usize,
}

fn expiry(from: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    from + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30))
}

/// `column > param` on timestamps, in the dialect's terms.
pub(crate) fn later(dialect: Dialect, column: &str, param: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("{column} > {param}"),
        Dialect::Sqlite => format!("julianday({column}) > julianday({param})"),
    }
}

/// The claim condition on turn alias `q` (owner `$owner`, now `$now`, capacity `$max`): the
/// task's lease is the owner's, or nobody holds it and the owner has room for one more.
pub(crate) fn claimable(dialect: Dialect, owner: &str, now: &str, max: &str) -> String {
    let live_l = later(dialect, "l.lease_expires_at", now);
    let live_m = later(dialect, "m.lease_expires_at", now);
    format!(
        " AND (EXISTS (SELECT 1 FROM instance_leases l WHERE l.spec_task_id = q.spec_task_id \
             AND l.owner = {owner} AND {live_l}) \
           OR (NOT EXISTS (SELECT 1 FROM instance_leases l WHERE l.spec_task_id = q.spec_task_id \
             AND {live_l}) \
             AND (SELECT COUNT(*) FROM instance_leases m WHERE m.owner = {owner} AND {live_m}) < {max}))"
    )
}

/// Takes or renews `task`'s lease for `owner` inside the claiming transaction. `Conflict` when
/// another owner holds it unexpired (another replica took it between the claim's read and
/// here): the caller rolls the claim back.
pub(crate) async fn take_lease(
    tx: &mut Tx,
    task: &str,
    owner: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let expired = match tx.dialect() {
        Dialect::Postgres => "instance_leases.lease_expires_at <= excluded.acquired_at",
        Dialect::Sqlite => {
            "julianday(instance_leases.lease_expires_at) <= julianday(excluded.acquired_at)"
        }
    };
    let taken = query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO instance_leases (spec_task_id, owner, lease_expires_at, acquired_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (spec_task_id) DO UPDATE SET owner = excluded.owner, \
           lease_expires_at = excluded.lease_expires_at, \
           acquired_at = CASE WHEN instance_leases.owner = excluded.owner \
             THEN instance_leases.acquired_at ELSE excluded.acquired_at END \
         WHERE instance_leases.owner = excluded.owner OR {expired}"
    )))
    .bind(task)
    .bind(owner)
    .bind(expiry(now, lease))
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if taken == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "the instance of `{task}` is another replica's"
        )))
    }
}

impl Store {
    /// One worker tick's bookkeeping: says this replica is alive and takes `max_active`
    /// instances, renews every lease it holds, and returns the tasks whose instance it owns.
    pub async fn heartbeat_replica(
        &self,
        owner: &str,
        leasing: InstanceLeasing,
    ) -> StoreResult<Vec<SpecTaskId>> {
        let now = now();
        let expires = expiry(now, leasing.lease);
        let max = i64::try_from(leasing.max_active).unwrap_or(i64::MAX);
        let held: Vec<String> = self
            .write(async |tx| {
                query(
                    "INSERT INTO replicas (owner, max_active_instances, heartbeat_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (owner) DO UPDATE SET max_active_instances = excluded.max_active_instances, \
                       heartbeat_at = excluded.heartbeat_at",
                )
                .bind(owner)
                .bind(max)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // Processes that died without a graceful stop leave their row: forget them a
                // day later (they no longer count as soon as their heartbeat is stale).
                let stale = match tx.dialect() {
                    Dialect::Postgres => "heartbeat_at < $1",
                    Dialect::Sqlite => "julianday(heartbeat_at) < julianday($1)",
                };
                query(sqlx::AssertSqlSafe(format!("DELETE FROM replicas WHERE {stale}")))
                    .bind(now - chrono::Duration::days(1))
                    .execute(&mut *tx)
                    .await?;
                // Only unexpired leases are renewed: one that lapsed may be another's already.
                let live = later(tx.dialect(), "lease_expires_at", "$3");
                let held: Vec<String> = query_scalar(sqlx::AssertSqlSafe(format!(
                    "UPDATE instance_leases SET lease_expires_at = $1 \
                     WHERE owner = $2 AND {live} RETURNING spec_task_id"
                )))
                .bind(expires)
                .bind(owner)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                Ok(held)
            })
            .await?;
        held.iter()
            .map(|id| SpecTaskId::parse(id).map_err(|e| StoreError::corrupt("instance_leases", e)))
            .collect()
    }

    /// Gives up `owner`'s leases on tasks with no queued or running turn whose agent does not
    /// run here (its instance is not among `running_instances`): another replica may take them
    /// when they have work again. Returns how many.
    pub async fn release_idle_instance_leases(
        &self,
        owner: &str,
        running_instances: &[String],
    ) -> StoreResult<u64> {
        let here = if running_instances.is_empty() {
            String::new()
        } else {
            format!(
                " AND NOT EXISTS (SELECT 1 FROM spec_tasks s WHERE s.id = instance_leases.spec_task_id \
                   AND s.zed_instance_id IN {})",
                value_rows(1, running_instances.len(), 1)
            )
        };
        let sql = format!(
            "DELETE FROM instance_leases WHERE owner = $1 \
             AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.spec_task_id = instance_leases.spec_task_id \
               AND t.status IN ('queued', 'running')){here}"
        );
        self.write(async |tx| {
            let mut statement = query(sqlx::AssertSqlSafe(sql)).bind(owner);
            for id in running_instances {
                statement = statement.bind(id.as_str());
            }
            Ok(statement.execute(&mut *tx).await?.rows_affected())
        })
        .await
    }

    /// Of `instance_ids` (agents running here), those whose task's lease another owner holds
    /// unexpired: this replica lost them and must stop their agents.
    pub async fn foreign_instances(
        &self,
        owner: &str,
        instance_ids: &[String],
    ) -> StoreResult<Vec<String>> {
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        let live = later(self.backend.dialect(), "l.lease_expires_at", "$2");
        let sql = format!(
            "SELECT s.zed_instance_id FROM spec_tasks s JOIN instance_leases l ON l.spec_task_id = s.id \
             WHERE l.owner <> $1 AND {live} AND s.zed_instance_id IN {}",
            value_rows(1, instance_ids.len(), 2)
        );
        let mut statement = query_scalar::<String>(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(now());
        for id in instance_ids {
            statement = statement.bind(id.as_str());
        }
        statement.fetch_all(self.backend.reader()).await
    }

    /// A graceful stop: `owner`'s leases and its replica row go at once, so another replica can
    /// take its instances over without waiting for them to expire.
    pub async fn release_replica(&self, owner: &str) -> StoreResult<()> {
        self.write(async |tx| {
            query("DELETE FROM instance_leases WHERE owner = $1")
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            query("DELETE FROM replicas WHERE owner = $1")
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
        .await
    }

    /// The instances the replicas heard from within `fresh` take in all; `None` when none is.
    pub async fn cluster_instance_capacity(&self, fresh: Duration) -> StoreResult<Option<usize>> {
        let since =
            now() - chrono::Duration::from_std(fresh).unwrap_or(chrono::Duration::seconds(30));
        let live = later(self.backend.dialect(), "heartbeat_at", "$1");
        let total: Option<i64> = query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT SUM(max_active_instances) FROM replicas WHERE {live}"
        )))
        .bind(since)
        .fetch_one(self.backend.reader())
        .await?;
        Ok(total.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
    }

    /// Who holds `task`'s instance lease and until when (expired ones included).
    pub async fn instance_lease(
        &self,
        task: &SpecTaskId,
    ) -> StoreResult<Option<(String, DateTime<Utc>)>> {
        query_as("SELECT owner, lease_expires_at FROM instance_leases WHERE spec_task_id = $1")
            .bind(task.as_str())
            .fetch_optional(self.backend.reader())
            .await
    }
}
