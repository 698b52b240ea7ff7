//! Fresh ids and the store's clock.

use std::sync::Mutex;

use chrono::{DateTime, SubsecRound, Utc};
use ulid::{Generator, Ulid};

/// A monotonic ULID source: ids made in the same millisecond still sort in creation order.
#[derive(Default)]
pub(crate) struct IdGenerator {
    inner: Mutex<Generator>,
}

impl std::fmt::Debug for IdGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdGenerator").finish_non_exhaustive()
    }
}

impl IdGenerator {
    pub(crate) fn next(&self) -> Ulid {
        let mut generator = match self.inner.lock() {
            Ok(guard) => guard,
            // The generator holds no invariant a panic elsewhere could break.
            Err(poisoned) => poisoned.into_inner(),
        };
        // Overflow needs 2^80 ids in one millisecond; fall back to a fresh random id rather
        // than fail a request over it.
        generator.generate().unwrap_or_else(|_| Ulid::new())
    }
}

/// Now, at the microsecond precision both databases keep, so a value reads back equal.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
