//! Dependency order: a work session is dispatched only once every session it depends on has
//! completed; independent sessions are dispatched in the same tick, up to the thread limit.

use spectask_domain::{SpecTaskStatus, WorkSessionStatus};
use tokio::task::JoinSet;

use crate::support::*;

step_tests! {
    async fn a_dependant_waits_for_its_dependency_and_independent_tasks_dispatch_together(db) {
        let h = Harness::new(db, Script::always(succeed()), settings(|s| s.max_parallel_threads = 4)).await;
        let id = h.approved_task(&[
            ("1", "Schema", &[]),
            ("2", "Endpoints", &["1"]),
            ("3", "Docs", &[]),
        ]).await;
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::SpecApproved);

        // Step 1: the task is queued and started, and the two independent sessions go out
        // together; the dependant waits.
        assert_eq!(h.step().await, ticked(1, 1, 2, 2));
        let (one, two, three) = (h.session(&id, "1").await, h.session(&id, "2").await, h.session(&id, "3").await);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::Implementation);
        assert_eq!(one.status, WorkSessionStatus::Completed);
        assert_eq!(three.status, WorkSessionStatus::Completed);
        assert_eq!(two.status, WorkSessionStatus::Pending);
        assert!(h.turns(&two.id).await.is_empty(), "the dependant got no turn");
        let dispatched: Vec<String> = h.runtime.dispatches().into_iter().map(|d| d.prompt).collect();
        assert_eq!(dispatched.len(), 2);
        assert!(dispatched.iter().any(|p| p.contains("Task 1: Schema")), "{dispatched:#?}");
        assert!(dispatched.iter().any(|p| p.contains("Task 3: Docs")), "{dispatched:#?}");

        // Step 2: its dependency complete, the dependant goes out and the task is finished.
        assert_eq!(h.step().await, ticked(0, 0, 1, 1));
        assert_eq!(h.session(&id, "2").await.status, WorkSessionStatus::Completed);
        let dispatches = h.runtime.dispatches();
        assert_eq!(dispatches.len(), 3);
        assert!(dispatches[2].prompt.contains("Task 2: Endpoints"), "{}", dispatches[2].prompt);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
        assert_eq!(h.step().await, idle());
    }

    async fn a_dependant_waits_while_its_dependency_runs(db) {
        // The dependency's turn hangs in a `JoinSet` of its own, never waited for (it is dropped
        // with the test): a free thread is not enough for the dependant, however many ticks pass.
        let script = Script { default: succeed(), rules: vec![rule("Task 1: Schema", Behaviour::Hang, Some(1))] };
        let h = Harness::new(db, script, settings(|s| s.max_parallel_threads = 2)).await;
        let id = h.approved_task(&[("1", "Schema", &[]), ("2", "Endpoints", &["1"])]).await;
        let mut hung = JoinSet::new();

        assert_eq!(h.tick_into(&mut hung).await, ticked(1, 1, 1, 1));
        assert_eq!(h.session(&id, "1").await.status, WorkSessionStatus::Active);
        for _ in 0..3 {
            assert_eq!(h.step().await, idle());
            let two = h.session(&id, "2").await;
            assert_eq!(two.status, WorkSessionStatus::Pending);
            let reason = h.queue_reason(&id, &two.id).await.unwrap();
            assert_eq!(reason, "waiting for: 1. Schema");
        }
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::Implementation);
    }

    async fn the_thread_limit_spreads_independent_tasks_over_ticks(db) {
        let h = Harness::new(db, Script::always(succeed()), settings(|s| s.max_parallel_threads = 2)).await;
        let id = h.approved_task(&[("1", "A", &[]), ("2", "B", &[]), ("3", "C", &[])]).await;

        // Two threads at most: plan order decides who goes first.
        assert_eq!(h.step().await, ticked(1, 1, 2, 2));
        assert_eq!(h.session(&id, "1").await.status, WorkSessionStatus::Completed);
        assert_eq!(h.session(&id, "2").await.status, WorkSessionStatus::Completed);
        let three = h.session(&id, "3").await;
        assert_eq!(three.status, WorkSessionStatus::Pending);
        assert_eq!(h.runtime.dispatches().len(), 2);

        assert_eq!(h.step().await, ticked(0, 0, 1, 1));
        assert_eq!(h.session(&id, "3").await.status, WorkSessionStatus::Completed);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
        assert_eq!(h.steps_until_idle(0).await, 0);
    }
}
