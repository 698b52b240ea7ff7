//! Typed, prefixed, sortable ids: `<prefix>_<ulid>` with the ULID in lowercase Crockford base32.
//!
//! The ULID's leading 48 bits are a millisecond timestamp, so ids sort by creation time; the caller
//! (the store) draws them from a monotonic generator so ids made in the same millisecond still sort
//! in creation order. This module only formats and validates: it never reads a clock.

use std::fmt;

use ulid::Ulid;

/// An id string that is not `<prefix>_<26 Crockford base32 characters>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id `{value}`: expected `{prefix}` followed by a 26-character ULID")]
pub struct IdError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(feature = "openapi", schema(value_type = String, example = json!(concat!($prefix, "01jd2w3x4y5z6a7b8c9d0e1f2g"))))]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Formats a freshly generated ULID as an id of this kind.
            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(format!("{}{}", $prefix, ulid.to_string().to_ascii_lowercase()))
            }

            /// Validates an id that came from outside (a URL, a request body, a row).
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let invalid = || IdError { kind: $kind, prefix: $prefix, value: value.to_owned() };
                let rest = value.strip_prefix($prefix).ok_or_else(invalid)?;
                if rest.len() != ulid::ULID_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(invalid());
                }
                let ulid = Ulid::from_string(rest).map_err(|_| invalid())?;
                Ok(Self::from_ulid(ulid))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A SpecTask (`spt_…`).
    SpecTaskId, "spt_", "spec task"
);
prefixed_id!(
    /// A Helix session: one conversation with an agent (`ses_…`).
    SessionId, "ses_", "session"
);
prefixed_id!(
    /// One prompt/response exchange inside a session (`int_…`).
    InteractionId, "int_", "interaction"
);
prefixed_id!(
    /// A work session of a SpecTask (`stws_…`).
    WorkSessionId, "stws_", "work session"
);
prefixed_id!(
    /// The row that maps a work session to its Zed thread (`stzt_…`). Not the external thread id,
    /// which is the free-form `zed_thread_id` string the runtime assigns.
    SpecTaskZedThreadId, "stzt_", "zed thread"
);
prefixed_id!(
    /// An implementation task parsed from the approved plan (`stit_…`).
    ImplementationTaskId, "stit_", "implementation task"
);
prefixed_id!(
    /// A reviewer's comment on a spec document (`spc_…`).
    SpecCommentId, "spc_", "spec comment"
);
prefixed_id!(
    /// A durable turn: one prompt sent to an agent (`turn_…`).
    TurnId, "turn_", "turn"
);

prefixed_id!(
    /// One run of a check command (issue 18).
    CheckRunId, "chk_", "check run"
);

prefixed_id!(
    /// A reviewer's verdict on one acceptance criterion (issue 18).
    VerdictId, "vrd_", "verdict"
);
prefixed_id!(
    /// An agent's permission request waiting for a human (`prq_…`).
    PermissionRequestId, "prq_", "permission request"
);

prefixed_id!(
    /// An agent instance spectask started for a SpecTask (`zin_…`, the task's `zed_instance_id`):
    /// one agent host whose threads are the task's planning and work sessions.
    InstanceId, "zin_", "instance"
);

/// The id an agent gave one of its threads (the ACP session id), kept as a work session's
/// `zed_thread_id` or a planning session's `agent_thread_id`. The agent chooses its form, so it is
/// not validated.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct AgentThreadId(String);

impl AgentThreadId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for AgentThreadId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an agent thread serves: a work session of the implementation, or the planning session
/// that writes a task's spec. Only work sessions get spectask's tools.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThreadOwner {
    WorkSession(WorkSessionId),
    PlanningSession(SessionId),
}

impl ThreadOwner {
    /// The owner's id as a string, for logs.
    pub fn as_str(&self) -> &str {
        match self {
            ThreadOwner::WorkSession(id) => id.as_str(),
            ThreadOwner::PlanningSession(id) => id.as_str(),
        }
    }

    /// The work session, when a work session owns the thread.
    pub fn work_session(&self) -> Option<&WorkSessionId> {
        match self {
            ThreadOwner::WorkSession(id) => Some(id),
            ThreadOwner::PlanningSession(_) => None,
        }
    }
}

impl fmt::Display for ThreadOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_validates() {
        let ulid = Ulid::from_parts(1_700_000_000_000, 42);
        let id = SpecTaskId::from_ulid(ulid);
        assert!(id.as_str().starts_with("spt_"));
        assert_eq!(id.as_str().len(), 4 + 26);
        assert_eq!(SpecTaskId::parse(id.as_str()), Ok(id.clone()));
        // Upper-case input is accepted and normalised.
        let upper = format!("spt_{}", ulid);
        assert_eq!(SpecTaskId::parse(&upper), Ok(id));
    }

    #[test]
    fn rejects_wrong_prefix_length_and_alphabet() {
        let ulid = Ulid::from_parts(1, 2).to_string();
        for bad in [
            String::new(),
            "spt_".to_owned(),
            format!("ses_{ulid}"),
            format!("spt_{ulid}x"),
            format!("spt_{}", &ulid[1..]),
            "spt_0000000000000000000000000u".to_owned(),
            "spt_ü0000000000000000000000000".to_owned(),
        ] {
            assert!(SpecTaskId::parse(&bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn instance_ids_are_prefixed_ulids() {
        let id = InstanceId::from_ulid(Ulid::from_parts(1_700_000_000_000, 7));
        assert!(id.as_str().starts_with("zin_"));
        assert_eq!(InstanceId::parse(id.as_str()), Ok(id));
        assert!(InstanceId::parse("i1").is_err());
    }

    #[test]
    fn a_thread_owner_says_whether_a_work_session_owns_the_thread() {
        let ws = WorkSessionId::from_ulid(Ulid::from_parts(1, 2));
        let work = ThreadOwner::WorkSession(ws.clone());
        assert_eq!(work.work_session(), Some(&ws));
        assert_eq!(work.to_string(), ws.as_str());
        let session = SessionId::from_ulid(Ulid::from_parts(1, 2));
        let planning = ThreadOwner::PlanningSession(session.clone());
        assert_eq!(planning.work_session(), None);
        assert_eq!(planning.as_str(), session.as_str());
    }

    #[test]
    fn agent_thread_ids_are_taken_as_the_agent_gave_them() {
        let id = AgentThreadId::new("sess-42 (any form)");
        assert_eq!(id.as_str(), "sess-42 (any form)");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"sess-42 (any form)\""
        );
    }

    #[test]
    fn ids_sort_by_time() {
        let a = WorkSessionId::from_ulid(Ulid::from_parts(1_000, u128::MAX >> 48));
        let b = WorkSessionId::from_ulid(Ulid::from_parts(1_001, 0));
        assert!(a < b);
    }
}
