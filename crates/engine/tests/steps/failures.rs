//! Failures: a work session that fails for good blocks every session waiting for it, directly or
//! through others; independent sessions go on; the SpecTask becomes `implementation_failed` with
//! the reason. Retrying the failed session unblocks its dependants and the task runs to review.

use spectask_domain::{
    ImplementationTaskStatus, SpecTaskStatus, WorkSessionStatus, ZedThreadStatus,
};

use crate::support::*;

step_tests! {
    async fn a_failed_session_blocks_its_dependants_and_fails_the_task(db) {
        let script = Script { default: succeed(), rules: vec![rule("Task 1: Schema", fail("the schema broke"), None)] };
        let h = Harness::new(db, script, settings(|s| {
            s.max_parallel_threads = 4;
            s.max_turn_retries = 0;
        })).await;
        let id = h.approved_task(&[
            ("1", "Schema", &[]),
            ("2", "Endpoints", &["1"]),
            ("3", "Docs", &[]),
            ("4", "Release", &["2"]),
        ]).await;

        assert_eq!(h.step().await, ticked(1, 1, 2, 2));
        let status = |ws: &spectask_domain::SpecTaskWorkSession| ws.status;
        assert_eq!(status(&h.session(&id, "1").await), WorkSessionStatus::Failed);
        assert_eq!(status(&h.session(&id, "3").await), WorkSessionStatus::Completed, "independent work goes on");
        let (two, four) = (h.session(&id, "2").await, h.session(&id, "4").await);
        assert_eq!((two.status, four.status), (WorkSessionStatus::Blocked, WorkSessionStatus::Blocked), "blocked directly and through 2");
        assert!(h.turns(&two.id).await.is_empty() && h.turns(&four.id).await.is_empty());
        let reason = h.queue_reason(&id, &two.id).await.unwrap();
        assert_eq!(reason, "blocked: a task it depends on failed (1)");
        let reason = h.queue_reason(&id, &four.id).await.unwrap();
        assert_eq!(reason, "blocked: a task it depends on failed (2)");

        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationFailed);
        assert!(task.error.as_deref().unwrap().contains("the schema broke"), "{:?}", task.error);
        let plan: Vec<_> = h.engine.progress(&id).await.unwrap().tasks.into_iter().map(|t| (t.key, t.status)).collect();
        assert_eq!(plan, [
            ("1".to_owned(), ImplementationTaskStatus::Failed),
            ("2".to_owned(), ImplementationTaskStatus::Blocked),
            ("3".to_owned(), ImplementationTaskStatus::Completed),
            ("4".to_owned(), ImplementationTaskStatus::Blocked),
        ]);
        // Nothing is left to dispatch.
        assert_eq!(h.step().await, idle());
        assert_eq!(h.runtime.dispatches().len(), 2);

        // A human retries the failed session: the dependants wait again, the task is queued, and
        // the chain runs in dependency order, one step each.
        h.runtime.set_script(Script::always(succeed()));
        let one = h.session(&id, "1").await;
        assert_eq!(h.engine.retry_work_session(&one.id, "human").await.unwrap().status, WorkSessionStatus::Pending);
        assert_eq!(h.session(&id, "2").await.status, WorkSessionStatus::Pending);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationQueued);

        assert_eq!(h.step().await, ticked(0, 1, 1, 1));
        let one = h.session(&id, "1").await;
        assert_eq!(one.status, WorkSessionStatus::Completed);
        assert_eq!(h.thread(&one.id).await.status, ZedThreadStatus::Completed, "its thread was reopened");
        assert_eq!(h.session(&id, "2").await.status, WorkSessionStatus::Pending);
        assert_eq!(h.step().await, ticked(0, 0, 1, 1));
        assert_eq!(h.session(&id, "4").await.status, WorkSessionStatus::Pending);
        assert_eq!(h.step().await, ticked(0, 0, 1, 1));
        let task = h.task(&id).await;
        assert_eq!(task.status, SpecTaskStatus::ImplementationReview);
        assert_eq!(task.error, None);
        assert_eq!(h.runtime.threads().len(), 4, "the retried session kept its thread");
        assert_eq!(h.step().await, idle());
    }

    async fn a_failure_in_a_task_without_dependants_still_fails_the_task(db) {
        let script = Script { default: succeed(), rules: vec![rule("Task 2: Docs", fail("typo"), None)] };
        let h = Harness::new(db, script, settings(|s| {
            s.max_parallel_threads = 2;
            s.max_turn_retries = 0;
        })).await;
        let id = h.approved_task(&[("1", "Schema", &[]), ("2", "Docs", &[])]).await;
        assert_eq!(h.step().await, ticked(1, 1, 2, 2));
        assert_eq!(h.session(&id, "1").await.status, WorkSessionStatus::Completed);
        assert_eq!(h.session(&id, "2").await.status, WorkSessionStatus::Failed);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationFailed);
        assert_eq!(h.step().await, idle());
    }
}
