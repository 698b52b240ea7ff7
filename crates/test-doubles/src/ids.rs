//! Typed ids for tests, from short readable names: `instance_id("i1")`, `work_session("ws1")`.
//! The same name always gives the same id, and different short names different ids, so a test
//! can name its instances and sessions as it likes and still hand the runtime valid ids.

use spectask_domain::{AgentThreadId, InstanceId, SessionId, ThreadOwner, WorkSessionId};
use ulid::Ulid;

/// The ULID a name stands for (its bytes folded into 128 bits; distinct for distinct names of
/// up to 16 bytes).
fn ulid_of(name: &str) -> Ulid {
    let bits = name.bytes().fold(0u128, |acc, byte| {
        (acc << 8 | u128::from(byte)) ^ (acc >> 120)
    });
    Ulid(bits)
}

/// The instance id named `name`.
pub fn instance_id(name: &str) -> InstanceId {
    InstanceId::from_ulid(ulid_of(name))
}

/// The work session id named `name`.
pub fn work_session_id(name: &str) -> WorkSessionId {
    WorkSessionId::from_ulid(ulid_of(name))
}

/// A thread owned by the work session named `name`.
pub fn work_session(name: &str) -> ThreadOwner {
    ThreadOwner::WorkSession(work_session_id(name))
}

/// A thread owned by the planning session named `name`.
pub fn planning_session(name: &str) -> ThreadOwner {
    ThreadOwner::PlanningSession(SessionId::from_ulid(ulid_of(name)))
}

/// The agent thread id `id` (agents choose their ids freely).
pub fn thread_id(id: impl AsRef<str>) -> AgentThreadId {
    AgentThreadId::new(id.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_stable_distinct_valid_ids() {
        assert_eq!(instance_id("i1"), instance_id("i1"));
        assert_ne!(instance_id("i1"), instance_id("i2"));
        assert_ne!(instance_id("i-test"), instance_id("i-other"));
        let id = instance_id("a longer name than sixteen bytes");
        assert_eq!(InstanceId::parse(id.as_str()), Ok(id.clone()));
        assert!(id.as_str().starts_with("zin_"));
        assert!(work_session_id("ws1").as_str().starts_with("stws_"));
        assert!(planning_session("p").work_session().is_none());
    }
}
