//! Skipped tiers: a test that needs something this machine lacks (PostgreSQL, the test agent
//! binaries, the installed claude agent) says so and passes, unless the environment requires that
//! tier: CI sets `SPECTASK_REQUIRE_TIERS` so that a tier it is meant to run cannot pass vacuously.

use std::fmt;

/// The environment variable naming the tiers that must not be skipped: a comma list of tier names
/// (`postgres`, `agent`, `claude`, `browser`, `acp-sdk`) or `all`.
pub const REQUIRE_TIERS_VAR: &str = "SPECTASK_REQUIRE_TIERS";

/// A group of tests that needs something beyond the Rust toolchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// PostgreSQL, reached through `SPECTASK_TEST_DATABASE_URL`.
    Postgres,
    /// Our scripted ACP test agent and the `spectask` binary (its shim), built into the target
    /// directory.
    Agent,
    /// The pinned `claude-agent-acp`, installed with npm.
    Claude,
    /// The web UI in a real browser: Debian's `chromium`, Node.js and the pinned
    /// `playwright-core` and `axe-core` in `tests/browser/node_modules` (`.ci/run` installs them).
    Browser,
    /// `spectask acp` driven by the official ACP TypeScript SDK: Node.js and the pinned
    /// `@agentclientprotocol/sdk` in `tests/acp-sdk/node_modules` (`.ci/run` installs it).
    AcpSdk,
}

impl Tier {
    const ALL: [Tier; 5] = [
        Tier::Postgres,
        Tier::Agent,
        Tier::Claude,
        Tier::Browser,
        Tier::AcpSdk,
    ];

    /// Its name in `SPECTASK_REQUIRE_TIERS`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Postgres => "postgres",
            Tier::Agent => "agent",
            Tier::Claude => "claude",
            Tier::Browser => "browser",
            Tier::AcpSdk => "acp-sdk",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reports that the calling test is skipped because its `tier` is unavailable (`reason`), after
/// which the test returns and passes.
///
/// # Panics
/// When `SPECTASK_REQUIRE_TIERS` requires that tier (or names a tier that does not exist): a
/// required tier that cannot run is a failure, not a pass.
pub fn skip(tier: Tier, reason: &str) {
    let setting = std::env::var(REQUIRE_TIERS_VAR).unwrap_or_default();
    match required_tiers(&setting) {
        Ok(required) if required.contains(&tier) => panic!(
            "the {tier} tier is required ({REQUIRE_TIERS_VAR}={setting}) but cannot run: {reason}"
        ),
        Ok(_) => eprintln!("SKIPPED ({tier}): {reason}"),
        Err(unknown) => panic!(
            "{REQUIRE_TIERS_VAR}={setting} names an unknown tier {unknown:?}; the tiers are all, {}",
            Tier::ALL.map(Tier::name).join(", ")
        ),
    }
}

/// The tiers a `SPECTASK_REQUIRE_TIERS` value requires, or the first word that names none.
fn required_tiers(setting: &str) -> Result<Vec<Tier>, String> {
    let mut required = Vec::new();
    for word in setting.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if word.eq_ignore_ascii_case("all") {
            required.extend(Tier::ALL);
            continue;
        }
        match Tier::ALL
            .iter()
            .find(|t| word.eq_ignore_ascii_case(t.name()))
        {
            Some(tier) => required.push(*tier),
            None => return Err(word.to_owned()),
        }
    }
    Ok(required)
}

#[cfg(test)]
mod tests {
    use super::{Tier, required_tiers};

    #[test]
    fn nothing_is_required_unless_named() {
        assert_eq!(required_tiers(""), Ok(vec![]));
        assert_eq!(required_tiers(" , "), Ok(vec![]));
    }

    #[test]
    fn names_and_all_select_tiers() {
        assert_eq!(
            required_tiers("postgres, Claude"),
            Ok(vec![Tier::Postgres, Tier::Claude])
        );
        assert_eq!(
            required_tiers("ACP-SDK,browser"),
            Ok(vec![Tier::AcpSdk, Tier::Browser])
        );
        assert_eq!(
            required_tiers("all"),
            Ok(vec![
                Tier::Postgres,
                Tier::Agent,
                Tier::Claude,
                Tier::Browser,
                Tier::AcpSdk
            ])
        );
    }

    #[test]
    fn an_unknown_tier_is_an_error_not_a_silent_skip() {
        assert_eq!(
            required_tiers("agent,postgress"),
            Err("postgress".to_owned())
        );
    }
}
