//! Exhaustive checks of every (status, event) pair against an independently written list of the
//! allowed transitions, plus structural properties of each machine.

use std::collections::{BTreeSet, HashSet, VecDeque};

use super::*;

/// Checks `apply` on every pair: allowed exactly for the listed triples, refused (with a complete
/// error) for every other pair.
fn check_exhaustively<S, E>(
    statuses: &[S],
    events: &[E],
    expected: &[(S, E, S)],
    apply: impl Fn(E, S) -> Result<S, TransitionError>,
    as_str: impl Fn(S) -> &'static str,
) where
    S: Copy + PartialEq + std::fmt::Debug,
    E: Copy + PartialEq + std::fmt::Debug,
{
    let mut allowed_count = 0;
    for &status in statuses {
        for &event in events {
            let want = expected
                .iter()
                .find(|(from, ev, _)| *from == status && *ev == event)
                .map(|(_, _, to)| *to);
            match (apply(event, status), want) {
                (Ok(got), Some(to)) => {
                    assert_eq!(got, to, "{event:?} from {status:?}");
                    allowed_count += 1;
                }
                (Err(err), None) => {
                    assert_eq!(err.current, as_str(status));
                    assert!(!err.allowed_from.is_empty());
                    assert!(!err.allowed_from.contains(&as_str(status)));
                }
                (got, want) => panic!("{event:?} from {status:?}: got {got:?}, want {want:?}"),
            }
        }
    }
    assert_eq!(
        allowed_count,
        expected.len(),
        "expected list has duplicates"
    );
}

/// Every status must be reachable from `initial`.
fn check_reachable<S: Copy + Eq + std::hash::Hash + std::fmt::Debug>(
    initial: S,
    statuses: &[S],
    edges: &[(S, S)],
) {
    let mut seen = HashSet::from([initial]);
    let mut queue = VecDeque::from([initial]);
    while let Some(s) = queue.pop_front() {
        for &(from, to) in edges {
            if from == s && seen.insert(to) {
                queue.push_back(to);
            }
        }
    }
    for s in statuses {
        assert!(seen.contains(s), "{s:?} is unreachable");
    }
}

#[test]
fn spec_task_table_is_exactly_the_lifecycle() {
    use SpecTaskEvent as E;
    use SpecTaskStatus as S;
    let expected = [
        (S::Backlog, E::StartPlanning, S::SpecGeneration),
        (S::Backlog, E::ImportSpecs, S::SpecReview),
        (S::SpecGeneration, E::SpecsGenerated, S::SpecReview),
        (S::SpecRevision, E::SpecsGenerated, S::SpecReview),
        (S::SpecGeneration, E::PlanningFailed, S::SpecFailed),
        (S::SpecRevision, E::PlanningFailed, S::SpecFailed),
        (S::SpecReview, E::RequestSpecChanges, S::SpecRevision),
        (S::SpecReview, E::ApproveSpecs, S::SpecApproved),
        (S::SpecFailed, E::RetryPlanning, S::SpecGeneration),
        (
            S::SpecApproved,
            E::QueueImplementation,
            S::ImplementationQueued,
        ),
        (
            S::ImplementationQueued,
            E::StartImplementation,
            S::Implementation,
        ),
        (
            S::Implementation,
            E::ImplementationFinished,
            S::ImplementationReview,
        ),
        (
            S::ImplementationReview,
            E::RequestImplementationChanges,
            S::Implementation,
        ),
        (
            S::ImplementationQueued,
            E::ImplementationFailed,
            S::ImplementationFailed,
        ),
        (
            S::Implementation,
            E::ImplementationFailed,
            S::ImplementationFailed,
        ),
        (
            S::ImplementationFailed,
            E::RetryImplementation,
            S::ImplementationQueued,
        ),
        (S::ImplementationReview, E::ApproveImplementation, S::Done),
    ];
    check_exhaustively(S::ALL, E::ALL, &expected, E::apply, S::as_str);
    let edges: Vec<_> = expected.iter().map(|(f, _, t)| (*f, *t)).collect();
    check_reachable(S::Backlog, S::ALL, &edges);
    // `done` is terminal: nothing leaves it.
    assert!(E::ALL.iter().all(|e| e.apply(S::Done).is_err()));
}

#[test]
fn work_session_table_is_exactly_the_lifecycle() {
    use WorkSessionEvent as E;
    use WorkSessionStatus as S;
    let expected = [
        (S::Pending, E::Activate, S::Active),
        (S::Active, E::Complete, S::Completed),
        (S::Pending, E::Fail, S::Failed),
        (S::Active, E::Fail, S::Failed),
        (S::Pending, E::Block, S::Blocked),
        (S::Blocked, E::Unblock, S::Pending),
        (S::Pending, E::Cancel, S::Cancelled),
        (S::Active, E::Cancel, S::Cancelled),
        (S::Blocked, E::Cancel, S::Cancelled),
        (S::Failed, E::Retry, S::Pending),
        (S::Completed, E::Reopen, S::Active),
        (S::Active, E::MergeBlock, S::Blocked),
        (S::Blocked, E::Resolve, S::Active),
    ];
    check_exhaustively(S::ALL, E::ALL, &expected, E::apply, S::as_str);
    let edges: Vec<_> = expected.iter().map(|(f, _, t)| (*f, *t)).collect();
    check_reachable(S::Pending, S::ALL, &edges);
    assert!(E::ALL.iter().all(|e| e.apply(S::Cancelled).is_err()));
}

#[test]
fn zed_thread_table_is_exactly_the_lifecycle() {
    use ZedThreadEvent as E;
    use ZedThreadStatus as S;
    let expected = [
        (S::Pending, E::Start, S::Active),
        (S::Active, E::Disconnect, S::Disconnected),
        (S::Disconnected, E::Reconnect, S::Active),
        (S::Active, E::Complete, S::Completed),
        (S::Pending, E::Fail, S::Failed),
        (S::Active, E::Fail, S::Failed),
        (S::Disconnected, E::Fail, S::Failed),
        (S::Completed, E::Reopen, S::Active),
        (S::Failed, E::Reopen, S::Active),
    ];
    check_exhaustively(S::ALL, E::ALL, &expected, E::apply, S::as_str);
    let edges: Vec<_> = expected.iter().map(|(f, _, t)| (*f, *t)).collect();
    check_reachable(S::Pending, S::ALL, &edges);
}

#[test]
fn implementation_task_table_is_exactly_the_lifecycle() {
    use ImplementationTaskEvent as E;
    use ImplementationTaskStatus as S;
    let expected = [
        (S::Pending, E::Assign, S::Assigned),
        (S::Assigned, E::Start, S::InProgress),
        (S::Assigned, E::Complete, S::Completed),
        (S::InProgress, E::Complete, S::Completed),
        (S::Assigned, E::Block, S::Blocked),
        (S::Blocked, E::Unblock, S::Assigned),
        (S::Assigned, E::Fail, S::Failed),
        (S::InProgress, E::Fail, S::Failed),
        (S::Failed, E::Retry, S::Assigned),
        (S::Completed, E::Reopen, S::InProgress),
    ];
    check_exhaustively(S::ALL, E::ALL, &expected, E::apply, S::as_str);
    let edges: Vec<_> = expected.iter().map(|(f, _, t)| (*f, *t)).collect();
    check_reachable(S::Pending, S::ALL, &edges);
}

#[test]
fn turn_table_is_exactly_the_lifecycle() {
    use crate::turn::TurnStatus as S;
    use TurnEvent as E;
    let expected = [
        (S::Queued, E::Claim, S::Running),
        (S::Running, E::Complete, S::Completed),
        (S::Queued, E::Fail, S::Failed),
        (S::Running, E::Fail, S::Failed),
        (S::Running, E::Requeue, S::Queued),
        (S::Queued, E::Cancel, S::Cancelled),
        (S::Running, E::Cancel, S::Cancelled),
    ];
    check_exhaustively(S::ALL, E::ALL, &expected, E::apply, S::as_str);
    let edges: Vec<_> = expected.iter().map(|(f, _, t)| (*f, *t)).collect();
    check_reachable(S::Queued, S::ALL, &edges);
    for terminal in [S::Completed, S::Failed, S::Cancelled] {
        assert!(E::ALL.iter().all(|e| e.apply(terminal).is_err()));
    }
}

#[test]
fn event_names_are_unique_per_machine() {
    fn unique(names: Vec<&'static str>) {
        let set: BTreeSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len());
    }
    unique(SpecTaskEvent::ALL.iter().map(|e| e.as_str()).collect());
    unique(WorkSessionEvent::ALL.iter().map(|e| e.as_str()).collect());
    unique(ZedThreadEvent::ALL.iter().map(|e| e.as_str()).collect());
    unique(
        ImplementationTaskEvent::ALL
            .iter()
            .map(|e| e.as_str())
            .collect(),
    );
}

#[test]
fn refusal_message_names_current_and_allowed_statuses() {
    let err = SpecTaskEvent::ApproveSpecs
        .apply(SpecTaskStatus::Backlog)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot approve_specs a spec task in status `backlog`; `approve_specs` is allowed from: spec_review"
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of events, applied only when allowed, keeps the task in a known status and
        /// every refusal leaves it where it was.
        #[test]
        fn random_event_sequences_stay_inside_the_table(seq in proptest::collection::vec(0..SpecTaskEvent::ALL.len(), 0..64)) {
            let mut status = SpecTaskStatus::Backlog;
            for i in seq {
                let event = SpecTaskEvent::ALL[i];
                match event.apply(status) {
                    Ok(next) => {
                        prop_assert!(event.allowed_from().contains(&status));
                        status = next;
                    }
                    Err(err) => prop_assert_eq!(err.current, status.as_str()),
                }
            }
            prop_assert!(SpecTaskStatus::ALL.contains(&status));
        }
    }
}
