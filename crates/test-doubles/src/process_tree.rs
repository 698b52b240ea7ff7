//! The processes of one agent's tree, found in `/proc` by a marker variable that every process of
//! the tree inherits: for tests that check nothing an agent started outlives its runtime or its
//! server. Here rather than in `spectask-testkit` so that the runtimes' own tests (which testkit
//! depends on) can use it too.

use std::time::Duration;

/// The variable a test's agent profile sets to tag every process of its tree.
pub const TREE_VAR: &str = "SPECTASK_TEST_TREE";

/// The state letter of a live process (`R`, `S`, `T`…), or `None` once it is gone or a zombie.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state …`: comm may contain spaces, so read after its closing parenthesis.
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    (state != 'Z' && state != 'X').then_some(state)
}

/// Live processes whose environment holds `TREE_VAR=marker`, with their command names. An
/// unreadable `/proc` reads as no process at all.
pub fn agent_tree(marker: &str) -> Vec<(u32, String)> {
    let entry = format!("{TREE_VAR}={marker}");
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_state(*pid).is_some())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|item| item == entry.as_bytes())
            })
        })
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            (pid, comm.trim().to_owned())
        })
        .collect()
}

/// Waits (`within` at most, polling) until `done` holds for the tree tagged `marker`; fails the
/// test with `what` and the tree otherwise.
pub async fn wait_for_agent_tree(
    marker: &str,
    what: &str,
    within: Duration,
    done: impl Fn(&[(u32, String)]) -> bool,
) {
    crate::wait_until_within(what, within, || async {
        let processes = agent_tree(marker);
        if done(&processes) {
            Ok(())
        } else {
            Err(format!("the tree {processes:?}"))
        }
    })
    .await;
}
