//! Group commit: concurrent writes share commits, each answered only once its commit is durable;
//! a failing or abandoned write rolls back alone and stalls nobody.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::join_all;
use spectask_domain::*;
use spectask_store::*;
use spectask_testkit::backend_tests;

use crate::support::*;

/// Polls a future at most `polls` times; still pending then, it is dropped (as a request whose
/// client hung up), and the result is `None`.
struct DroppedAfter<F> {
    inner: Option<Pin<Box<F>>>,
    polls: usize,
}

fn dropped_after<F: Future>(polls: usize, inner: F) -> DroppedAfter<F> {
    DroppedAfter {
        inner: Some(Box::pin(inner)),
        polls,
    }
}

impl<F: Future> Future for DroppedAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.as_mut().poll(cx) {
            Poll::Ready(value) => Poll::Ready(Some(value)),
            Poll::Pending => {
                self.polls -= 1;
                if self.polls == 0 {
                    self.inner = None;
                    return Poll::Ready(None);
                }
                Poll::Pending
            }
        }
    }
}

/// Every task in the store and every task a `spec_task.created` event names.
async fn tasks_and_created_events(store: &Store) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut tasks = BTreeSet::new();
    loop {
        let page = store
            .list_spec_tasks(&SpecTaskFilter {
                limit: 100,
                offset: tasks.len() as i64,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.items.is_empty() {
            break;
        }
        tasks.extend(page.items.iter().map(|t| t.id.to_string()));
    }
    let events = store
        .list_events(&EventQuery {
            spec_task_id: None,
            after: 0,
            limit: 10_000,
        })
        .await
        .unwrap();
    let created = events
        .iter()
        .filter(|e| e.kind == EventKind::SpecTaskCreated)
        .filter_map(|e| e.spec_task_id.as_ref().map(|id| id.to_string()))
        .collect();
    (tasks, created)
}

backend_tests! {
    async fn concurrent_writes_share_commits_and_are_answered_once_durable(db) {
        let store = db.store().await;
        let before = store.write_stats();
        let creates = (0..200).map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create_spec_task(&new_task(&format!("grouped {i}"))).await })
        });
        let created: Vec<SpecTask> = join_all(creates).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
        // Answered means committed: each task reads back at once through the read connections.
        for task in &created {
            assert_eq!(store.get_spec_task(&task.id).await.unwrap().id, task.id);
        }
        let (tasks, events) = tasks_and_created_events(&store).await;
        assert_eq!(tasks.len(), 200);
        assert_eq!(tasks, events, "each task committed with its event");
        let after = store.write_stats();
        assert_eq!(after.writes - before.writes, 200);
        assert!(
            after.commits - before.commits < 200,
            "200 concurrent writes took {} commits: none was grouped",
            after.commits - before.commits
        );
    }

    async fn a_failing_write_rolls_back_alone_and_its_group_commits(db) {
        let store = db.store().await;
        let backlog = store.create_spec_task(&new_task("stays in backlog")).await.unwrap();
        let mut creates = Vec::new();
        let mut refused = Vec::new();
        for i in 0..50 {
            let store_for_create = store.clone();
            creates.push(tokio::spawn(async move {
                store_for_create.create_spec_task(&new_task(&format!("beside a failure {i}"))).await
            }));
            let store_for_refused = store.clone();
            let id = backlog.id.clone();
            // Approving a task in the backlog is refused inside its transaction.
            refused.push(tokio::spawn(async move {
                store_for_refused.transition_spec_task(&id, SpecTaskEvent::ApproveSpecs, "racer").await
            }));
        }
        for create in join_all(creates).await {
            create.unwrap().unwrap();
        }
        for attempt in join_all(refused).await {
            assert!(matches!(attempt.unwrap(), Err(StoreError::Transition(_))));
        }
        let (tasks, events) = tasks_and_created_events(&store).await;
        assert_eq!(tasks.len(), 51);
        assert_eq!(tasks, events);
        let backlog_events = store
            .list_events(&EventQuery { spec_task_id: Some(backlog.id.clone()), after: 0, limit: 100 })
            .await
            .unwrap();
        assert_eq!(backlog_events.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::SpecTaskCreated]);
        assert_eq!(store.get_spec_task(&backlog.id).await.unwrap().status, SpecTaskStatus::Backlog);
    }

    async fn a_write_dropped_at_any_point_is_all_or_nothing_and_stalls_nobody(db) {
        let store = db.store().await;
        let mut answered = BTreeSet::new();
        for polls in 1..=40 {
            let beside = (0..4).map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.create_spec_task(&new_task(&format!("beside {polls}.{i}"))).await })
            });
            let dropped_task = new_task(&format!("dropped after {polls} polls"));
            let dropped = dropped_after(polls, store.create_spec_task(&dropped_task));
            let (beside, dropped) = tokio::join!(join_all(beside), dropped);
            for task in beside {
                answered.insert(task.unwrap().unwrap().id.to_string());
            }
            if let Some(result) = dropped {
                answered.insert(result.unwrap().id.to_string());
            }
            // Whatever the dropped write left behind, the next write goes through (bounded, so a
            // stalled writer fails here instead of hanging the suite).
            let after = new_task("after");
            let next = tokio::time::timeout(Duration::from_secs(60), store.create_spec_task(&after)).await;
            answered.insert(next.expect("a write after a dropped one stalled").unwrap().id.to_string());
        }
        let (tasks, events) = tasks_and_created_events(&store).await;
        let unpaired: Vec<_> = tasks.symmetric_difference(&events).collect();
        assert!(unpaired.is_empty(), "a dropped write is stored with its event or not at all: {unpaired:?}");
        assert!(answered.is_subset(&tasks), "every answered write is stored");
    }
}
