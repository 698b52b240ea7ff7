//! Retries: a failed turn is retried on the same thread, with a note, while the work session's
//! retry budget lasts; the failure after that fails the session and the task.

use spectask_domain::{SpecTaskStatus, TurnKind, TurnStatus, WorkSessionStatus, ZedThreadStatus};

use crate::support::*;

step_tests! {
    async fn a_failing_turn_is_retried_up_to_the_budget_then_the_session_fails(db) {
        let h = Harness::new(db, Script::always(fail("compiler exploded")), settings(|s| s.max_turn_retries = 2)).await;
        let id = h.approved_task(&[("1", "Schema", &[])]).await;

        // The first turn and two retries, one per step: each failure queues the next attempt.
        assert_eq!(h.step().await, ticked(1, 1, 1, 1));
        for retry in 1..=2 {
            let ws = h.session(&id, "1").await;
            assert_eq!(ws.status, WorkSessionStatus::Active, "retry {retry} is queued");
            assert!(ws.error.as_deref().unwrap().contains("compiler exploded"), "{:?}", ws.error);
            let turns = h.turns(&ws.id).await;
            assert_eq!(turns.len(), retry + 1);
            assert!(turns[..retry].iter().all(|t| t.status == TurnStatus::Failed), "{turns:#?}");
            let next = turns.last().unwrap();
            assert_eq!((next.status, next.kind), (TurnStatus::Queued, TurnKind::FollowUp));
            assert_eq!(h.task(&id).await.status, SpecTaskStatus::Implementation);

            assert_eq!(h.step().await, ticked(0, 0, 0, 1));
            let prompt = h.runtime.dispatches().last().unwrap().prompt.clone();
            assert!(prompt.contains(&format!("This is retry {retry}.")), "{prompt}");
            assert!(prompt.contains("(1. Schema)"), "{prompt}");
            // Only the retry of the brief carries the brief again (the agent may never have
            // seen it); a retry of a follow-up does not.
            let carries_brief = prompt.contains("Your assignment, as first given:") && prompt.contains("Task 1: Schema");
            assert_eq!(carries_brief, retry == 1, "{prompt}");
        }

        // The budget is spent: the third failure fails the session, its thread and the task.
        let ws = h.session(&id, "1").await;
        assert_eq!(ws.status, WorkSessionStatus::Failed);
        let turns = h.turns(&ws.id).await;
        assert_eq!(turns.len(), 3);
        assert!(turns.iter().all(|t| t.status == TurnStatus::Failed), "{turns:#?}");
        assert_eq!(h.thread(&ws.id).await.status, ZedThreadStatus::Failed);
        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationFailed);
        assert!(task.error.as_deref().unwrap().contains("compiler exploded"), "{:?}", task.error);

        // Every attempt ran on the one thread the first turn opened.
        let dispatches = h.runtime.dispatches();
        assert_eq!(dispatches.len(), 3);
        assert_eq!(h.runtime.threads().len(), 1);
        assert!(dispatches.iter().all(|d| d.thread_id == dispatches[0].thread_id));
        assert_eq!(h.step().await, idle());
    }

    async fn a_retry_that_succeeds_completes_the_session(db) {
        let script = Script { default: succeed(), rules: vec![rule("Task 1: Schema", Behaviour::Refuse, Some(1))] };
        let h = Harness::new(db, script, settings(|s| s.max_turn_retries = 1)).await;
        let id = h.approved_task(&[("1", "Schema", &[])]).await;

        // A refusal is a failed turn like any other.
        assert_eq!(h.step().await, ticked(1, 1, 1, 1));
        let ws = h.session(&id, "1").await;
        assert!(ws.error.as_deref().unwrap().contains("refusal"), "{:?}", ws.error);

        assert_eq!(h.step().await, ticked(0, 0, 0, 1));
        let ws = h.session(&id, "1").await;
        assert_eq!(ws.status, WorkSessionStatus::Completed);
        assert_eq!(ws.error, None, "a completed session carries no error");
        let statuses: Vec<_> = h.turns(&ws.id).await.iter().map(|t| t.status).collect();
        assert_eq!(statuses, [TurnStatus::Failed, TurnStatus::Completed]);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
    }

    async fn with_no_retry_budget_the_first_failure_is_final(db) {
        let h = Harness::new(db, Script::always(fail("no")), settings(|s| s.max_turn_retries = 0)).await;
        let id = h.approved_task(&[("1", "Schema", &[])]).await;
        assert_eq!(h.step().await, ticked(1, 1, 1, 1));
        assert_eq!(h.session(&id, "1").await.status, WorkSessionStatus::Failed);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationFailed);
        assert_eq!(h.step().await, idle());
    }
}
