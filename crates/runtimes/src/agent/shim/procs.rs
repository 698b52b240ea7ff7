//! What the shim and the start-up reaper read from `/proc`: a process's parent, session and start
//! time (`/proc/<pid>/stat`), whether its environment carries a marker (`/proc/<pid>/environ`),
//! and the machine's boot id. Processes vanish at any moment, so every read may fail; a failed
//! read means "not there".

use std::collections::HashMap;

/// What `/proc/<pid>/stat` says about one live (not zombie) process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) session: i32,
    /// Field 22: clock ticks since boot when the process started. With the pid it names one
    /// process for the lifetime of a boot, which a pid alone does not (pids are reused).
    pub(crate) start_time: u64,
}

/// Parses `/proc/<pid>/stat`; `None` for a process that is gone or a zombie.
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// The command name (field 2) is in parentheses and may itself contain spaces and parentheses,
/// so the fields are counted from the last `)`: field 3 (state) is the first after it.
fn parse_stat(pid: i32, text: &str) -> Option<ProcStat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    let state = *fields.first()?;
    if state == "Z" || state == "X" {
        return None;
    }
    Some(ProcStat {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Every live process on the machine (those whose stat could be read).
pub(crate) fn all() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Every live descendant of `root`, parents before their children.
pub(crate) fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for process in all() {
        children.entry(process.ppid).or_default().push(process.pid);
    }
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(parent) = next.pop() {
        for &child in children.get(&parent).map_or(&[][..], Vec::as_slice) {
            found.push(child);
            next.push(child);
        }
    }
    found
}

/// Whether `pid`'s environment (as it was at its `exec`) holds the entry `entry` (`NAME=value`).
/// Only processes of the same user are readable; others never match.
pub(crate) fn environ_contains(pid: i32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
        environ
            .split(|byte| *byte == 0)
            .any(|item| item == entry.as_bytes())
    })
}

/// This boot's id: start times only compare within one boot.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_parentheses_and_spaces_does_not_shift_fields() {
        let text = "42 (a) b (c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 100";
        assert_eq!(
            parse_stat(42, text),
            Some(ProcStat {
                pid: 42,
                ppid: 7,
                session: 42,
                start_time: 123_456
            })
        );
    }

    #[test]
    fn zombies_count_as_gone() {
        let text = "42 (sleep) Z 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 0 0";
        assert_eq!(parse_stat(42, text), None);
    }

    #[test]
    fn this_process_is_found_with_its_start_time() {
        let me = i32::try_from(std::process::id()).unwrap();
        let first = stat(me).unwrap();
        assert_eq!(first.pid, me);
        assert!(first.start_time > 0);
        assert_eq!(stat(me).unwrap().start_time, first.start_time);
        assert!(all().iter().any(|process| process.pid == me));
    }
}
