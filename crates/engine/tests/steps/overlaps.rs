//! Overlaps: two running threads of one task edit the same file (shared isolation: both in the
//! task's project). Under `warn` both sessions show the overlap and one `work_session.overlap`
//! event records it; under `serialize` the later thread's turn is interrupted and waits (its
//! queue reason says for whom) until the earlier one completes, then resumes with a note and
//! completes. The scripted turns hold at gates the test opens, so which thread edits first is
//! the test's choice, not a race.

use spectask_domain::{EventKind, SpecTaskStatus, TurnStatus, WorkSessionStatus};
use spectask_testkit::wait_until;
use tokio::task::JoinSet;

use crate::support::*;

/// Edits `paths` (after gate `before`, when given), then holds until gate `after` opens.
fn edit(paths: &[&str], before: Option<&str>, after: &str) -> Behaviour {
    Behaviour::EditFiles {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        before: before.map(str::to_owned),
        after: Some(after.to_owned()),
        then: None,
    }
}

const TWO_INDEPENDENT: &[PlanTask<'static>] = &[("1", "Schema", &[]), ("2", "Endpoints", &[])];

/// Waits until work session `key` has recorded `n` touched files; returns them.
async fn touched(
    h: &Harness,
    id: &spectask_domain::SpecTaskId,
    key: &str,
    n: usize,
) -> Vec<String> {
    let ws = h.session(id, key).await.id;
    wait_until(&format!("{key} to record {n} touched files"), || async {
        let files = h.store.touched_files(&ws).await.unwrap();
        if files.len() >= n {
            Ok(files)
        } else {
            Err(format!("{files:?}"))
        }
    })
    .await
}

step_tests! {
    async fn under_warn_both_running_threads_show_the_overlap(db) {
        let project = tempfile::tempdir().unwrap();
        let root = project.path().to_str().unwrap().to_owned();
        let lib = format!("{root}/src/lib.rs");
        let schema = format!("{root}/src/schema.rs");
        let script = Script {
            default: succeed(),
            rules: vec![
                rule("Task 1: Schema", edit(&[&lib, &schema], None, "1-done"), Some(1)),
                // The second thread also edits a file outside the project: not tracked.
                rule("Task 2: Endpoints", edit(&["/elsewhere/x.rs", &lib], Some("1-edited"), "2-done"), Some(1)),
            ],
        };
        let h = Harness::new(db, script, settings(|s| s.max_parallel_threads = 2)).await;
        let id = h.approved_task_in(TWO_INDEPENDENT, Some(&root), None).await;

        let mut running = JoinSet::new();
        assert_eq!(h.tick_into(&mut running).await, ticked(1, 1, 2, 2));
        assert_eq!(touched(&h, &id, "1", 2).await, ["src/lib.rs", "src/schema.rs"]);
        h.runtime.open_gate("1-edited");
        assert_eq!(touched(&h, &id, "2", 1).await, ["src/lib.rs"]);

        let (one, two) = (h.session(&id, "1").await, h.session(&id, "2").await);
        assert_eq!(one.overlaps.len(), 1, "{:?}", one.overlaps);
        assert_eq!((one.overlaps[0].path.as_str(), &one.overlaps[0].other_work_session_id), ("src/lib.rs", &two.id));
        assert_eq!(two.overlaps.len(), 1, "{:?}", two.overlaps);
        assert_eq!((two.overlaps[0].path.as_str(), &two.overlaps[0].other_work_session_id), ("src/lib.rs", &one.id));
        let events = h.events(&id, EventKind::WorkSessionOverlap).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].entity_id, two.id.as_str(), "the later thread's touch made it");
        assert_eq!(events[0].payload["other_work_session_id"], one.id.as_str());
        // A warning only: both go on.
        assert_eq!((two.waiting_for.clone(), h.queue_reason(&id, &two.id).await), (None, None));
        assert!(h.events(&id, EventKind::WorkSessionWaiting).await.is_empty());

        h.runtime.open_gate("1-done");
        h.runtime.open_gate("2-done");
        while let Some(ended) = running.join_next().await {
            ended.unwrap();
        }
        for key in ["1", "2"] {
            assert_eq!(h.session(&id, key).await.status, WorkSessionStatus::Completed);
        }
        let outcomes: Vec<_> = h.runtime.dispatches().into_iter().map(|d| d.outcome).collect();
        assert_eq!(outcomes, [Some("end_turn".to_owned()), Some("end_turn".to_owned())]);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
        // Overlaps are shown while both could still edit; both are done now.
        assert!(h.session(&id, "2").await.overlaps.is_empty());
    }

    async fn under_serialize_the_later_thread_waits_for_the_earlier_then_resumes(db) {
        let project = tempfile::tempdir().unwrap();
        let root = project.path().to_str().unwrap().to_owned();
        let lib = format!("{root}/src/lib.rs");
        let script = Script {
            default: succeed(),
            rules: vec![
                // The resumed turn of the second thread, which starts with the note.
                rule("another thread (1. Schema) was editing src/lib.rs", succeed(), Some(1)),
                rule("Task 1: Schema", edit(&[&lib], None, "1-done"), Some(1)),
                // Its gate never opens: only the interruption ends this turn.
                rule("Task 2: Endpoints", edit(&[&lib], Some("1-edited"), "never"), Some(1)),
            ],
        };
        let h = Harness::new(db, script, settings(|s| s.max_parallel_threads = 2)).await;
        let config = serde_json::json!({ "overlap_policy": "serialize" });
        let id = h.approved_task_in(TWO_INDEPENDENT, Some(&root), Some(config)).await;

        let mut running = JoinSet::new();
        assert_eq!(h.tick_into(&mut running).await, ticked(1, 1, 2, 2));
        touched(&h, &id, "1", 1).await;
        h.runtime.open_gate("1-edited");
        let (one, two) = (h.session(&id, "1").await, h.session(&id, "2").await);

        // The second thread's turn is interrupted and back in the queue, waiting for the first.
        let turn = wait_until("the second thread's turn to be back in the queue", || async {
            let turns = h.turns(&two.id).await;
            match turns.as_slice() {
                [turn] if turn.status == TurnStatus::Queued => Ok(turn.clone()),
                other => Err(format!("{:?}", other.iter().map(|t| t.status).collect::<Vec<_>>())),
            }
        })
        .await;
        assert_eq!(turn.attempts, 0, "an overlap wait is not an interruption that counts");
        assert!(turn.error.is_none());
        let waiting = h.session(&id, "2").await;
        assert_eq!(waiting.status, WorkSessionStatus::Active);
        assert_eq!(waiting.waiting_for.as_ref(), Some(&one.id));
        assert_eq!(waiting.overlaps.len(), 1);
        assert_eq!(h.session(&id, "1").await.overlaps.len(), 1, "shown on both");
        assert_eq!(
            h.queue_reason(&id, &two.id).await.as_deref(),
            Some("waiting for 1. Schema (overlap on src/lib.rs)")
        );
        assert_eq!(h.events(&id, EventKind::WorkSessionOverlap).await.len(), 1);
        let waits = h.events(&id, EventKind::WorkSessionWaiting).await;
        assert_eq!(waits.len(), 1, "{waits:#?}");
        assert_eq!(waits[0].payload["waiting_for"], one.id.as_str());
        // Its turn is not claimed while the first thread runs.
        assert_eq!(h.step().await, idle());

        // The first thread completes; the wait is over.
        h.runtime.open_gate("1-done");
        while let Some(ended) = running.join_next().await {
            ended.unwrap();
        }
        assert_eq!(h.session(&id, "1").await.status, WorkSessionStatus::Completed);
        let resumable = h.session(&id, "2").await;
        assert_eq!(resumable.waiting_for, None);
        assert_eq!(h.queue_reason(&id, &two.id).await, None);

        // The second thread resumes on its turn, told why it waited, and completes.
        assert_eq!(h.step().await, ticked(0, 0, 0, 1));
        let dispatches = h.runtime.dispatches();
        assert_eq!(dispatches.len(), 3, "{dispatches:#?}");
        let interrupted = dispatches.iter().find(|d| d.turn_id == turn.id.as_str()).unwrap();
        assert_eq!(interrupted.outcome.as_deref(), Some("cancelled"));
        let resumed = dispatches.last().unwrap();
        assert_eq!(resumed.turn_id, turn.id.as_str(), "the same turn runs again");
        assert!(
            resumed.prompt.starts_with(
                "(spectask: another thread (1. Schema) was editing src/lib.rs; it has finished and \
                 its work is merged into the task branch; check the file before continuing."
            ),
            "{}",
            resumed.prompt
        );
        assert!(resumed.prompt.contains("Task 2: Endpoints"), "{}", resumed.prompt);
        let turns = h.turns(&two.id).await;
        assert_eq!((turns.len(), turns[0].status, turns[0].attempts), (1, TurnStatus::Completed, 1));
        assert_eq!(h.session(&id, "2").await.status, WorkSessionStatus::Completed);
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
    }

    async fn serialize_comes_from_the_engine_default_when_the_task_names_no_policy(db) {
        let project = tempfile::tempdir().unwrap();
        let root = project.path().to_str().unwrap().to_owned();
        let lib = format!("{root}/src/lib.rs");
        let script = Script {
            default: succeed(),
            rules: vec![
                rule("another thread", succeed(), Some(1)),
                rule("Task 1: Schema", edit(&[&lib], None, "1-done"), Some(1)),
                rule("Task 2: Endpoints", edit(&[&lib], Some("1-edited"), "never"), Some(1)),
            ],
        };
        let h = Harness::new(db, script, settings(|s| {
            s.max_parallel_threads = 2;
            s.default_overlap_policy = spectask_domain::OverlapPolicy::Serialize;
        })).await;
        let id = h.approved_task_in(TWO_INDEPENDENT, Some(&root), None).await;

        let mut running = JoinSet::new();
        assert_eq!(h.tick_into(&mut running).await, ticked(1, 1, 2, 2));
        touched(&h, &id, "1", 1).await;
        h.runtime.open_gate("1-edited");
        let one = h.session(&id, "1").await;
        let waiting_for = wait_until("the second thread to wait", || async {
            h.session(&id, "2").await.waiting_for.ok_or("not waiting")
        })
        .await;
        assert_eq!(waiting_for, one.id);
        h.runtime.open_gate("1-done");
        while let Some(ended) = running.join_next().await {
            ended.unwrap();
        }
        assert_eq!(h.step().await, ticked(0, 0, 0, 1));
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
    }

    async fn a_thread_never_waits_for_one_that_waits_itself(db) {
        // The second thread waits for the first (src/lib.rs); the first then edits src/api.rs,
        // which the waiting second thread touched before: reported, but the first is not made to
        // wait (two sessions waiting for each other would never run again).
        let project = tempfile::tempdir().unwrap();
        let root = project.path().to_str().unwrap().to_owned();
        let (lib, api) = (format!("{root}/src/lib.rs"), format!("{root}/src/api.rs"));
        let mut first = edit(&[&lib], None, "1-more");
        if let Behaviour::EditFiles { then, .. } = &mut first {
            *then = Some(Box::new(edit(&[&api], None, "1-done")));
        }
        let script = Script {
            default: succeed(),
            rules: vec![
                rule("another thread", succeed(), Some(1)),
                rule("Task 1: Schema", first, Some(1)),
                rule("Task 2: Endpoints", edit(&[&api, &lib], Some("1-edited"), "never"), Some(1)),
            ],
        };
        let config = serde_json::json!({ "overlap_policy": "serialize" });
        let h = Harness::new(db, script, settings(|s| s.max_parallel_threads = 2)).await;
        let id = h.approved_task_in(TWO_INDEPENDENT, Some(&root), Some(config)).await;

        let mut running = JoinSet::new();
        assert_eq!(h.tick_into(&mut running).await, ticked(1, 1, 2, 2));
        touched(&h, &id, "1", 1).await;
        h.runtime.open_gate("1-edited");
        wait_until("the second thread to wait", || async {
            h.session(&id, "2").await.waiting_for.ok_or("not waiting")
        })
        .await;
        assert_eq!(touched(&h, &id, "2", 2).await, ["src/api.rs", "src/lib.rs"]);
        h.runtime.open_gate("1-more");
        touched(&h, &id, "1", 2).await;
        assert_eq!(h.events(&id, EventKind::WorkSessionOverlap).await.len(), 2);
        assert_eq!(h.session(&id, "1").await.waiting_for, None, "the first never waits");
        h.runtime.open_gate("1-done");
        while let Some(ended) = running.join_next().await {
            ended.unwrap();
        }
        assert_eq!(h.session(&id, "1").await.status, WorkSessionStatus::Completed);
        assert_eq!(h.step().await, ticked(0, 0, 0, 1));
        assert_eq!(h.task(&id).await.status, SpecTaskStatus::ImplementationReview);
        assert_eq!(h.events(&id, EventKind::WorkSessionWaiting).await.len(), 1);
    }
}
