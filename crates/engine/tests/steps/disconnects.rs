//! Disconnects: a turn that ends with `Disconnected` marks its thread disconnected and is
//! re-dispatched once on the same thread (resumed, never a new one), even with no retry budget;
//! a second disconnect is a failure like any other.

use spectask_domain::{SpecTaskStatus, TurnKind, TurnStatus, WorkSessionStatus, ZedThreadStatus};

use crate::support::*;

step_tests! {
    async fn a_disconnected_turn_is_redispatched_once_on_the_same_thread(db) {
        let script = Script { default: succeed(), rules: vec![rule("Task 1: Schema", Behaviour::Disconnect { after_chunks: 1 }, Some(1))] };
        let h = Harness::new(db, script, settings(|s| s.max_turn_retries = 0)).await;
        let id = h.approved_task(&[("1", "Schema", &[])]).await;

        assert_eq!(h.step().await, ticked(1, 1, 1, 1));
        let ws = h.session(&id, "1").await;
        let thread = h.thread(&ws.id).await;
        assert_eq!(thread.status, ZedThreadStatus::Disconnected);
        assert_eq!(ws.status, WorkSessionStatus::Active);
        assert!(ws.error.as_deref().unwrap().contains("disconnect"), "{:?}", ws.error);
        let turns = h.turns(&ws.id).await;
        assert_eq!(turns.len(), 2, "{turns:#?}");
        assert_eq!(turns[0].status, TurnStatus::Failed);
        assert_eq!((turns[1].status, turns[1].kind), (TurnStatus::Queued, TurnKind::FollowUp));

        // The re-dispatch resumes the thread, which is active again until the turn completes it.
        assert_eq!(h.step().await, ticked(0, 0, 0, 1));
        let ws = h.session(&id, "1").await;
        assert_eq!(ws.status, WorkSessionStatus::Completed);
        let resumed = h.thread(&ws.id).await;
        assert_eq!((resumed.id.clone(), resumed.zed_thread_id.clone()), (thread.id, thread.zed_thread_id.clone()));
        assert_eq!(resumed.status, ZedThreadStatus::Completed);
        let dispatches = h.runtime.dispatches();
        assert_eq!(dispatches.len(), 2);
        assert!(dispatches.iter().all(|d| d.thread_id == thread.zed_thread_id), "{dispatches:#?}");
        assert!(dispatches[0].outcome.as_deref().unwrap().starts_with("disconnected"), "{dispatches:#?}");
        assert_eq!(dispatches[1].outcome.as_deref(), Some("end_turn"));
        assert_eq!(h.runtime.threads().len(), 1, "no second thread was opened");
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
    }

    async fn a_second_disconnect_without_retry_budget_fails_the_session(db) {
        let script = Script::always(Behaviour::Disconnect { after_chunks: 0 });
        let h = Harness::new(db, script, settings(|s| s.max_turn_retries = 0)).await;
        let id = h.approved_task(&[("1", "Schema", &[]), ("2", "Endpoints", &["1"])]).await;

        assert_eq!(h.step().await, ticked(1, 1, 1, 1));
        assert_eq!(h.session(&id, "1").await.status, WorkSessionStatus::Active);
        assert_eq!(h.step().await, ticked(0, 0, 0, 1));

        let ws = h.session(&id, "1").await;
        assert_eq!(ws.status, WorkSessionStatus::Failed);
        let statuses: Vec<_> = h.turns(&ws.id).await.iter().map(|t| t.status).collect();
        assert_eq!(statuses, [TurnStatus::Failed, TurnStatus::Failed]);
        assert_eq!(h.thread(&ws.id).await.status, ZedThreadStatus::Failed);
        assert_eq!(h.session(&id, "2").await.status, WorkSessionStatus::Blocked);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationFailed);
        assert_eq!(h.runtime.dispatches().len(), 2);
        assert_eq!(h.step().await, idle());
    }

    async fn the_retry_budget_still_applies_after_a_disconnect(db) {
        // With a budget of two, a disconnect is one of the two retries, not an extra one.
        let script = Script { default: fail("still broken"), rules: vec![rule("Task 1: Schema", Behaviour::Disconnect { after_chunks: 0 }, Some(1))] };
        let h = Harness::new(db, script, settings(|s| s.max_turn_retries = 2)).await;
        let id = h.approved_task(&[("1", "Schema", &[])]).await;

        assert_eq!(h.step().await, ticked(1, 1, 1, 1));
        assert_eq!(h.step().await, ticked(0, 0, 0, 1));
        assert_eq!(h.session(&id, "1").await.status, WorkSessionStatus::Active);
        assert_eq!(h.step().await, ticked(0, 0, 0, 1));
        let ws = h.session(&id, "1").await;
        assert_eq!(ws.status, WorkSessionStatus::Failed);
        assert_eq!(h.turns(&ws.id).await.len(), 3);
        assert_eq!(h.step().await, idle());
    }
}
