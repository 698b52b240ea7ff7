//! The shim's life on Linux: arm, start the agent, wait, kill the whole tree, exit.
//!
//! Signals are never handled asynchronously: the shim blocks the ones it cares about and takes
//! them with `sigtimedwait`, so its one thread sees "the server asks us to stop", "a child changed
//! state" and "time passed" as plain return values of one call.

#![allow(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};

use super::records::{MARKER_VAR, Record};
use super::{EXIT_CANNOT_RUN, ShimPlan, procs};

/// The signals the shim takes with `sigtimedwait`: SIGCHLD (a child changed state) and the ones
/// that mean "stop": SIGTERM (the server's shutdown and the death signal), SIGINT, SIGHUP.
const WATCHED: [i32; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// How often the shim looks at its parent even without a signal: a backstop for a death signal
/// that cannot fire (it is tied to the thread that spawned the shim, not to the whole server).
const PARENT_CHECK: Duration = Duration::from_secs(1);

/// How long the shim waits for killed descendants to turn into zombies before it scans again.
const KILL_RESCAN: Duration = Duration::from_millis(50);

pub(super) fn run(plan: &ShimPlan, agent: &OsStr, agent_args: &[OsString]) -> ExitCode {
    let watched = match block_watched_signals() {
        Ok(set) => set,
        Err(err) => return cannot_run(&format!("cannot block signals: {err}")),
    };
    if let Err(err) = arm(plan) {
        return cannot_run(&err);
    }
    let me = rustix::process::getpid();
    let Some(shim) = procs::stat(me.as_raw_nonzero().get()) else {
        return cannot_run("cannot read the shim's own /proc entry");
    };
    let mut record = Record {
        instance_id: plan.instance_id.clone(),
        boot_id: procs::boot_id(),
        shim_pid: shim.pid,
        shim_start_time: shim.start_time,
        agent_pid: None,
        agent_start_time: None,
        marker: format!("{}.{}", shim.pid, shim.start_time),
    };
    // Recorded before the agent exists, so no agent ever runs unrecorded.
    if let Err(err) = record.write(&plan.run_dir) {
        return cannot_run(&format!(
            "cannot write the shim record in {}: {err}",
            plan.run_dir.display()
        ));
    }
    let record_path = Record::path(&plan.run_dir, shim.pid);

    let mut command = std::process::Command::new(agent);
    command.args(agent_args).env(MARKER_VAR, &record.marker);
    let sandbox = plan.sandbox.clone();
    let inherited_mask = watched;
    // SAFETY: the closure runs in the forked child of this single-threaded process (no lock can
    // be held by another thread), before exec; it only makes system calls.
    unsafe {
        command.pre_exec(move || {
            // The signal mask survives fork and exec (std does not reset it): without this the
            // agent could not be stopped with SIGTERM or interrupted with SIGINT.
            if libc::sigprocmask(
                libc::SIG_UNBLOCK,
                &raw const inherited_mask,
                std::ptr::null_mut(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Its own session and process group: the server's SIGTERM goes to the agent's group,
            // and a terminal's signals do not reach it.
            rustix::process::setsid()?;
            // The sandbox, before exec, so the agent and every descendant run confined while
            // the shim itself stays outside (it must clean up and remove its record).
            if let Some(sandbox) = &sandbox {
                let report = crate::agent::sandbox::apply(sandbox).map_err(|err| {
                    // Only an errno crosses back to `spawn` (std reports EINVAL for anything
                    // else): say what went wrong here.
                    eprintln!("spectask agent-shim: cannot sandbox the agent: {err}");
                    std::io::Error::other(format!("cannot sandbox the agent: {err}"))
                })?;
                if !report.skipped.is_empty() {
                    eprintln!(
                        "spectask agent-shim: sandbox partly enforced; skipped: {}",
                        report.skipped.join("; ")
                    );
                }
            }
            // If the shim itself is SIGKILLed, the agent goes with it (its descendants then wait
            // for the start-up reaper). Armed after the sandbox: entering a user namespace
            // changes credentials, which clears a death signal set earlier.
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            let _ = std::fs::remove_file(&record_path);
            return cannot_run(&format!(
                "cannot start the agent `{}`: {err}",
                agent.to_string_lossy()
            ));
        }
    };
    let agent_pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    // The shim reaps with `waitpid(-1)` below; the std handle is never waited on.
    drop(child);
    record.agent_pid = Some(agent_pid);
    record.agent_start_time = procs::stat(agent_pid).map(|agent| agent.start_time);
    if let Err(err) = record.write(&plan.run_dir) {
        // The first record (marker included) still names the run; the reaper finds the tree by
        // its marker.
        eprintln!("spectask agent-shim: cannot update the shim record: {err}");
    }

    let status = supervise(plan, agent_pid, &watched);
    let status = kill_tree(me, agent_pid, &watched).or(status);
    if let Err(err) = std::fs::remove_file(&record_path) {
        eprintln!(
            "spectask agent-shim: cannot remove the shim record {}: {err}",
            record_path.display()
        );
    }
    exit_like(status)
}

/// Makes the shim a subreaper and ties it to the server.
fn arm(plan: &ShimPlan) -> Result<(), String> {
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me))
        .map_err(|err| format!("cannot become a child subreaper: {err}"))?;
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .map_err(|err| format!("cannot set the parent death signal: {err}"))?;
    // The server may have died before the death signal was armed; then none will come.
    if !parent_is_server(plan) {
        return Err("the server is gone".to_owned());
    }
    Ok(())
}

fn parent_is_server(plan: &ShimPlan) -> bool {
    rustix::process::getppid()
        .is_some_and(|parent| parent.as_raw_nonzero().get() == plan.server_pid)
}

/// Waits until the agent exits, or until the server asked the shim to stop (or died) and the
/// agent had its grace period. Reaps every child that exits meanwhile (orphans of the tree come to
/// the shim). Returns the agent's status if it exited.
fn supervise(plan: &ShimPlan, agent_pid: i32, watched: &libc::sigset_t) -> Option<WaitStatus> {
    let grace = Duration::from_millis(plan.grace_ms);
    let mut stop_by: Option<Instant> = None;
    loop {
        if let Some(status) = reap_ready(agent_pid) {
            return Some(status);
        }
        let now = Instant::now();
        if stop_by.is_some_and(|deadline| now >= deadline) {
            return None;
        }
        let timeout = stop_by.map_or(PARENT_CHECK, |deadline| {
            deadline.saturating_duration_since(now).min(PARENT_CHECK)
        });
        let signal = wait_signal(watched, timeout);
        let stop = matches!(signal, Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP))
            || !parent_is_server(plan);
        if stop && stop_by.is_none() {
            // The agent's group first (its session leader is the agent): a well-behaved agent
            // and its in-group children get to exit on their own.
            if let Some(group) = Pid::from_raw(agent_pid) {
                let _ = rustix::process::kill_process_group(group, Signal::TERM);
            }
            stop_by = Some(Instant::now() + grace);
        }
    }
}

/// Reaps every child that already changed state; the agent's status if it was among them.
fn reap_ready(agent_pid: i32) -> Option<WaitStatus> {
    let mut agent_status = None;
    while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
        if pid.as_raw_nonzero().get() == agent_pid {
            agent_status = Some(status);
        }
    }
    agent_status
}

/// SIGKILLs every descendant of the shim, over and over, until the shim has no child left. As a
/// subreaper it inherits every orphan of the tree, so "no child" means "no descendant", also of
/// processes that left the agent's group or session. Returns the agent's status if the agent was
/// reaped here.
fn kill_tree(me: Pid, agent_pid: i32, watched: &libc::sigset_t) -> Option<WaitStatus> {
    let mut agent_status = None;
    loop {
        for pid in procs::descendants(me.as_raw_nonzero().get()) {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
        }
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    if pid.as_raw_nonzero().get() == agent_pid {
                        agent_status = Some(status);
                    }
                }
                // Children remain that have not died yet (or were forked after the scan).
                Ok(None) => break,
                // No child at all: the tree is gone.
                Err(rustix::io::Errno::CHILD) => return agent_status,
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => {
                    eprintln!("spectask agent-shim: waiting for the agent's tree failed: {err}");
                    return agent_status;
                }
            }
        }
        // Wakes on the next SIGCHLD, or rescans after a moment for processes forked meanwhile.
        let _ = wait_signal(watched, KILL_RESCAN);
    }
}

/// Exits as the agent did: with its exit code, or killed by the same signal.
fn exit_like(status: Option<WaitStatus>) -> ExitCode {
    let Some(status) = status else {
        return ExitCode::FAILURE;
    };
    if let Some(code) = status.exit_status() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    if let Some(signal) = status.terminating_signal() {
        if let Some(named) = Signal::from_named_raw(signal) {
            // The signal is blocked (or ignored, as SIGPIPE is in Rust programs) until it is
            // sent pending and then unblocked; a default-fatal one ends the shim here.
            let _ = rustix::process::kill_process(rustix::process::getpid(), named);
            unblock(signal);
        }
        return ExitCode::from(u8::try_from(128 + signal).unwrap_or(1));
    }
    ExitCode::FAILURE
}

fn cannot_run(message: &str) -> ExitCode {
    eprintln!("spectask agent-shim: {message}");
    ExitCode::from(EXIT_CANNOT_RUN)
}

fn block_watched_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: `set` is initialised by `sigemptyset` before use; the calls only read and write
    // the set they are given and this thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for signal in WATCHED {
            libc::sigaddset(&raw mut set, signal);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(set)
    }
}

fn unblock(signal: i32) {
    // SAFETY: as in `block_watched_signals`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
    }
}

/// Takes one of the blocked `watched` signals, waiting at most `timeout`; `None` on timeout.
fn wait_signal(watched: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: both pointers are valid for the call; a null `siginfo` is allowed.
    let signal = unsafe { libc::sigtimedwait(watched, std::ptr::null_mut(), &raw const timeout) };
    (signal > 0).then_some(signal)
}
