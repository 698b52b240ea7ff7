//! Spawns: a work session spawned from an active one is picked up by the next tick and dispatched
//! under the thread limit; agents' spawns are bounded by the per-task cap and the depth cap and
//! are idempotent per parent and name, a human's are bounded by neither.
//!
//! A session spawns while its turn runs, so the spawning sessions' turns hang here: their ticks
//! put them in a `JoinSet` of their own that the test never waits for (it is dropped, and the
//! hung turns with it, when the test ends).

use spectask_domain::{SpecTaskStatus, WorkSessionStatus};
use spectask_engine::EngineError;
use spectask_store::StoreError;
use tokio::task::JoinSet;

use crate::support::*;

/// The message of a refused spawn.
fn refusal(result: Result<spectask_store::Spawned, EngineError>) -> String {
    match result {
        Err(EngineError::Store(StoreError::Conflict(message))) => message,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

step_tests! {
    async fn spawned_sessions_are_dispatched_within_the_caps(db) {
        let script = Script {
            default: succeed(),
            rules: vec![
                rule("Task 1: Lead", Behaviour::Hang, Some(1)),
                rule("hold the thread", Behaviour::Hang, Some(1)),
            ],
        };
        let h = Harness::new(db, script, settings(|s| {
            s.max_parallel_threads = 3;
            s.max_spawned_sessions = 2;
            s.max_spawn_depth = 1;
        })).await;
        let id = h.approved_task(&[("1", "Lead", &[])]).await;
        let mut hung = JoinSet::new();

        // The plan's one session runs (and hangs): it may spawn.
        assert_eq!(h.tick_into(&mut hung).await, ticked(1, 1, 1, 1));
        let lead = h.session(&id, "1").await;
        assert_eq!(lead.status, WorkSessionStatus::Active);
        let spawned = h.engine.spawn_work_session_for_agent(&id, &lead.id, "A", "Review, and hold the thread.", "agent").await.unwrap();
        assert!(spawned.created);
        let a = spawned.work_session;
        assert_eq!((a.status, a.spawned_by_session_id.as_ref()), (WorkSessionStatus::Pending, Some(&lead.id)));
        let again = h.engine.spawn_work_session_for_agent(&id, &lead.id, "A", "anything", "agent").await.unwrap();
        assert_eq!((again.created, again.work_session.id), (false, a.id.clone()), "a repeated spawn is the same session");

        // The next tick picks the spawned session up (it hangs too, so it stays active).
        assert_eq!(h.tick_into(&mut hung).await, ticked(0, 0, 1, 1));
        assert_eq!(h.session(&id, "A").await.status, WorkSessionStatus::Active);
        assert_eq!(h.turns(&a.id).await.len(), 1);

        // Depth 1: a spawned session may not spawn.
        let deep = refusal(h.engine.spawn_work_session_for_agent(&id, &a.id, "A.1", "deeper", "agent").await);
        assert!(deep.contains("spawn depth cap"), "{deep}");
        // Two spawns per task: the third is refused; a human's spawn is not counted against them.
        let b = h.engine.spawn_work_session_for_agent(&id, &lead.id, "B", "Write the docs.", "agent").await.unwrap();
        assert!(b.created);
        let capped = refusal(h.engine.spawn_work_session_for_agent(&id, &lead.id, "C", "one too many", "agent").await);
        assert!(capped.contains("spawn cap reached"), "{capped}");
        let d = h.engine.spawn_work_session(&id, &lead.id, "D", "Asked for by a human.", "human").await.unwrap();
        assert_eq!(d.status, WorkSessionStatus::Pending);

        // Three threads at most: the lead and A hold two, so B goes out and D waits.
        assert_eq!(h.step().await, ticked(0, 0, 1, 1));
        assert_eq!(h.session(&id, "B").await.status, WorkSessionStatus::Completed);
        assert_eq!(h.session(&id, "D").await.status, WorkSessionStatus::Pending);
        let b_prompt = h.runtime.dispatches().into_iter().find(|d| d.prompt.contains("Write the docs.")).expect("B was dispatched").prompt;
        assert!(b_prompt.contains(&format!("Spawned during implementation by work session {}", lead.id)), "{b_prompt}");

        // B's thread is free again: D goes out next.
        assert_eq!(h.step().await, ticked(0, 0, 1, 1));
        assert_eq!(h.session(&id, "D").await.status, WorkSessionStatus::Completed);
        assert_eq!(h.step().await, idle());
        // The lead and A still run, so the task is not finished.
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::Implementation);
        assert_eq!(h.store.list_work_sessions(&id).await.unwrap().len(), 4);
    }

    async fn only_an_active_session_spawns(db) {
        let h = Harness::new(db, Script::always(succeed()), settings(|_| {})).await;
        let id = h.approved_task(&[("1", "Lead", &[]), ("2", "Follower", &["1"])]).await;
        assert_eq!(h.step().await, ticked(1, 1, 1, 1));
        for (key, status) in [("1", "completed"), ("2", "pending")] {
            let ws = h.session(&id, key).await;
            let refused = refusal(h.engine.spawn_work_session_for_agent(&id, &ws.id, "X", "x", "agent").await);
            assert!(refused.contains(&format!("`{status}`")), "{refused}");
        }
        assert_eq!(h.step().await, ticked(0, 0, 1, 1));
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
    }
}
