//! The one poller of the tests: look until a state is reached, fail with what was last seen
//! after a deadline. Tests wait for a state, never for a duration. Here rather than in testkit so
//! that the doubles' own helpers (the process-tree waits) and the runtimes' tests use it too.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How long [`wait_until`] waits before failing the test. Generous on purpose: a machine shared
/// with builds is slow, and the slowest tier starts a Claude Code process per session; a test that
/// fails only waits longer to say so.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(120);

/// The pause between two looks of [`wait_until`]: short, so a test goes on soon after the state it
/// waits for is reached.
const WAIT_POLL: Duration = Duration::from_millis(25);

/// What one look of [`wait_until`] found: the awaited value, or not yet (with what it saw, if the
/// look says).
pub trait Observation {
    type Value;
    /// The awaited value, or what was seen instead (`None`: the look does not say).
    fn into_outcome(self) -> Result<Self::Value, Option<String>>;
}

/// `Some(value)`: found; `None`: not yet.
impl<T> Observation for Option<T> {
    type Value = T;
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Ok(value)`: found; `Err(state)`: not yet, `state` being what was seen instead (reported if the
/// wait fails).
impl<T, S: Display> Observation for Result<T, S> {
    type Value = T;
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.map_err(|state| Some(state.to_string()))
    }
}

/// Looks with `check` until it finds what the test waits for (`Some`/`Ok`) and returns that; fails
/// the test, naming `what` and the last state seen, after [`WAIT_DEADLINE`]. The one poller of
/// the tests: they wait for a state, never for a duration.
pub async fn wait_until<O, F, Fut>(what: &str, check: F) -> O::Value
where
    O: Observation,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    wait_until_within(what, WAIT_DEADLINE, check).await
}

/// [`wait_until`] with a deadline of the caller's.
pub async fn wait_until_within<O, F, Fut>(what: &str, within: Duration, mut check: F) -> O::Value
where
    O: Observation,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await.into_outcome() {
            Ok(value) => return value,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            match last {
                Some(state) => {
                    panic!("timed out after {within:?} waiting for {what}; last seen: {state}")
                }
                None => panic!("timed out after {within:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}
