//! Instance leases for several replicas on one database: only the owner of a task's lease claims
//! its turns, a replica takes new instances only under its share, an expired lease is taken
//! over, idle leases are given up, and the cluster's capacity is the live replicas' sum.

use std::time::Duration;

use spectask_domain::*;
use spectask_store::*;
use spectask_testkit::backend_tests;

use crate::support::*;

const TURN_LEASE: Duration = Duration::from_secs(600);

fn leasing(lease: Duration, max_active: usize) -> Option<InstanceLeasing> {
    Some(InstanceLeasing { lease, max_active })
}

backend_tests! {
    async fn only_the_lease_owner_claims_a_tasks_turns_and_an_expired_lease_is_taken_over(db) {
        let store = db.store().await;
        let mut tasks = Vec::new();
        for prompt in ["task a", "task b"] {
            let task = store.create_spec_task(&new_task(prompt)).await.unwrap();
            store.start_planning(&task.id, SpecTaskEvent::StartPlanning, "plan it", "tester").await.unwrap();
            tasks.push(task.id);
        }
        let kinds = [TurnKind::Planning];
        let long = Duration::from_secs(600);

        // r1 takes the first task's instance; at its share of one it takes no second.
        let first = store.claim_next_turn(&kinds, "r1/1", TURN_LEASE, leasing(long, 1)).await.unwrap().unwrap();
        let a = first.turn.spec_task_id.clone();
        assert_eq!(store.instance_lease(&a).await.unwrap().unwrap().0, "r1/1");
        assert!(store.claim_next_turn(&kinds, "r1/1", TURN_LEASE, leasing(long, 1)).await.unwrap().is_none());
        // r2 takes the other one.
        let second = store.claim_next_turn(&kinds, "r2/1", TURN_LEASE, leasing(long, 5)).await.unwrap().unwrap();
        let b = second.turn.spec_task_id.clone();
        assert_ne!(a, b);
        assert_eq!(store.instance_lease(&b).await.unwrap().unwrap().0, "r2/1");

        // A's turn back in the queue is still r1's: r2 has room but not the lease.
        store.release_turn(&first).await.unwrap();
        assert!(store.claim_next_turn(&kinds, "r2/1", TURN_LEASE, leasing(long, 5)).await.unwrap().is_none());
        let again = store.claim_next_turn(&kinds, "r1/1", TURN_LEASE, leasing(long, 1)).await.unwrap().unwrap();
        assert_eq!(again.turn.spec_task_id, a);
        assert_eq!(store.heartbeat_replica("r1/1", InstanceLeasing { lease: long, max_active: 1 }).await.unwrap(), vec![a.clone()]);

        // r1 stops renewing (a short lease it does not renew): once it expires, r2 takes A over.
        store.release_turn(&again).await.unwrap();
        store.heartbeat_replica("r1/1", InstanceLeasing { lease: Duration::from_millis(1), max_active: 1 }).await.unwrap();
        let taken = spectask_testkit::wait_until("r2 to take the expired instance over", || {
            let store = store.clone();
            async move { store.claim_next_turn(&kinds, "r2/1", TURN_LEASE, leasing(long, 5)).await.unwrap() }
        })
        .await;
        assert_eq!(taken.turn.spec_task_id, a);
        assert_eq!(store.instance_lease(&a).await.unwrap().unwrap().0, "r2/1");
        assert!(store.heartbeat_replica("r1/1", InstanceLeasing { lease: long, max_active: 1 }).await.unwrap().is_empty(),
            "the old owner renews nothing it lost");

        // Leases of tasks with work stay; with none (and no agent here) they are given up.
        assert_eq!(store.release_idle_instance_leases("r2/1", &[]).await.unwrap(), 0);
        store.release_turn(&taken).await.unwrap();
        store.release_turn(&second).await.unwrap();
        assert_eq!(store.release_idle_instance_leases("r2/1", &[]).await.unwrap(), 0, "queued turns are work");
        assert_eq!(tasks.len(), 2);
    }

    async fn the_clusters_capacity_is_the_live_replicas_sum_and_a_stop_releases_at_once(db) {
        let store = db.store().await;
        let fresh = Duration::from_secs(60);
        assert_eq!(store.cluster_instance_capacity(fresh).await.unwrap(), None);
        store.heartbeat_replica("r1/1", InstanceLeasing { lease: fresh, max_active: 3 }).await.unwrap();
        store.heartbeat_replica("r2/1", InstanceLeasing { lease: fresh, max_active: 5 }).await.unwrap();
        assert_eq!(store.cluster_instance_capacity(fresh).await.unwrap(), Some(8));

        let task = store.create_spec_task(&new_task("leased")).await.unwrap();
        store.start_planning(&task.id, SpecTaskEvent::StartPlanning, "plan it", "tester").await.unwrap();
        let claim = store
            .claim_next_turn(&[TurnKind::Planning], "r1/1", TURN_LEASE, leasing(fresh, 3))
            .await
            .unwrap()
            .unwrap();
        store.release_turn(&claim).await.unwrap();
        // r1 stops gracefully: its lease and its share go at once, and r2 takes the task.
        store.release_replica("r1/1").await.unwrap();
        assert_eq!(store.cluster_instance_capacity(fresh).await.unwrap(), Some(5));
        assert_eq!(store.instance_lease(&task.id).await.unwrap(), None);
        let taken = store
            .claim_next_turn(&[TurnKind::Planning], "r2/1", TURN_LEASE, leasing(fresh, 5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(taken.turn.spec_task_id, task.id);
    }
}
