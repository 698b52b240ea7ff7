//! The agent's stdout as the ACP connection reads it, with two bounds the crate does not have.
//!
//! **Line length.** `agent-client-protocol` reads the stream with `BufReader::lines()`, which
//! grows one buffer until it sees a newline: an agent printing a gigabyte without one would make
//! the server hold a gigabyte. [`AgentStdout`] counts the bytes since the last newline and fails
//! the read once a line exceeds the limit; the crate's line reader then ends the connection, and
//! the buffer it had grown (at most about twice the limit, by `Vec` doubling) is freed with it.
//! The reason is kept in [`StdoutLimits::overflow`] so the instance's loss and the failing turn
//! say what happened.
//!
//! **Queued updates.** The crate's transport hands every parsed line to its dispatch loop through
//! an unbounded channel, and the dispatch loop hands `session/update`s to the turn through
//! `TurnRouter`. Neither may wait for a slow turn: a dispatch loop blocked on one turn would stop
//! relaying every other session's traffic, responses and probes included, and a turn that is no
//! longer read would block it forever. So the bound is applied where the bytes enter: the router
//! counts the updates queued for turns but not yet received ([`Backlog`]), and while that count is
//! at [`Backlog::capacity`] this reader stops reading the pipe. The agent then blocks on a full
//! pipe (its own backpressure), the dispatch loop keeps running over what was already read, and
//! reading resumes as soon as a turn takes an update. A receiver that is dropped gives its queued
//! updates back to the count, so an abandoned turn can never keep the reader stopped.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, ReadBuf};

/// The longest line accepted from an agent unless configured otherwise: 16 MiB, far above any
/// real ACP message (a file read or a large tool output is well under a megabyte).
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How many `session/update`s may wait for their turns before the agent's stdout is no longer
/// read. Each is at most one line; real updates are a few hundred bytes.
pub(crate) const UPDATE_BACKLOG: usize = 1024;

/// The count of updates routed to turns and not yet received, and the reader waiting for it to
/// fall below capacity.
#[derive(Debug)]
pub(crate) struct Backlog {
    queued: AtomicUsize,
    capacity: usize,
    reader: AtomicWaker,
}

impl Backlog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queued: AtomicUsize::new(0),
            capacity: capacity.max(1),
            reader: AtomicWaker::new(),
        }
    }

    /// One more update queued for a turn.
    pub(crate) fn add(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// An update left the queue (received by its turn, or dropped with it).
    pub(crate) fn remove(&self) {
        let before = self.queued.fetch_sub(1, Ordering::SeqCst);
        if before <= self.capacity {
            self.reader.wake();
        }
    }

    /// Whether the reader should pause.
    pub(crate) fn is_full(&self) -> bool {
        self.queued.load(Ordering::SeqCst) >= self.capacity
    }
}

/// What the reader of one agent's stdout is bounded by, shared with the connection.
#[derive(Debug)]
pub(crate) struct StdoutLimits {
    pub(crate) max_line_bytes: usize,
    pub(crate) backlog: Backlog,
    /// Set once, when a line exceeded `max_line_bytes`: the reason the connection ended.
    pub(crate) overflow: OnceLock<String>,
}

impl StdoutLimits {
    pub(crate) fn new(max_line_bytes: usize, backlog: usize) -> Self {
        Self {
            max_line_bytes: max_line_bytes.max(1),
            backlog: Backlog::new(backlog),
            overflow: OnceLock::new(),
        }
    }
}

/// The agent's stdout, failing on an over-long line and pausing while turns are behind.
#[derive(Debug)]
pub(crate) struct AgentStdout<R> {
    inner: R,
    limits: Arc<StdoutLimits>,
    /// Bytes of the current line seen so far (since the last newline).
    line: usize,
}

impl<R> AgentStdout<R> {
    pub(crate) fn new(inner: R, limits: Arc<StdoutLimits>) -> Self {
        Self {
            inner,
            limits,
            line: 0,
        }
    }

    fn overflow_error(&self) -> std::io::Error {
        let reason = self
            .limits
            .overflow
            .get_or_init(|| {
                format!(
                    "the agent sent a line longer than the limit of {} bytes (--agent-max-line-bytes); it was stopped",
                    self.limits.max_line_bytes
                )
            })
            .clone();
        std::io::Error::new(std::io::ErrorKind::InvalidData, reason)
    }

    /// Accounts for `bytes` just read; false if a line went over the limit.
    fn account(&mut self, bytes: &[u8]) -> bool {
        let max = self.limits.max_line_bytes;
        let mut segments = bytes.split(|byte| *byte == b'\n');
        // The first segment continues the current line; every later one starts a new line.
        if let Some(first) = segments.next() {
            self.line = self.line.saturating_add(first.len());
        }
        for segment in segments {
            if self.line > max {
                return false;
            }
            self.line = segment.len();
        }
        self.line <= max
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AgentStdout<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.limits.overflow.get().is_some() {
            return Poll::Ready(Err(self.overflow_error()));
        }
        if self.limits.backlog.is_full() {
            self.limits.backlog.reader.register(cx.waker());
            // Re-checked after registering, so a receive in between is not missed.
            if self.limits.backlog.is_full() {
                return Poll::Pending;
            }
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.account(&buf.filled()[before..]) {
                    Poll::Ready(Ok(()))
                } else {
                    // A failed read hands out no bytes.
                    buf.set_filled(before);
                    let error = this.overflow_error();
                    tracing::warn!(
                        security_event = "agent_line_too_long",
                        max_line_bytes = this.limits.max_line_bytes,
                        "{error}"
                    );
                    Poll::Ready(Err(error))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read_all(input: &'static [u8], max: usize) -> (Vec<u8>, Option<String>) {
        let limits = Arc::new(StdoutLimits::new(max, 8));
        let mut reader = AgentStdout::new(input, limits);
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).await.err();
        (out, error.map(|e| e.to_string()))
    }

    #[tokio::test]
    async fn lines_up_to_the_limit_pass_and_a_longer_one_fails() {
        let (out, error) = read_all(b"abcd\nefgh\n", 4).await;
        assert_eq!(out, b"abcd\nefgh\n");
        assert_eq!(error, None);
        let (_, error) = read_all(b"abcd\nefghi\nx\n", 4).await;
        assert!(error.unwrap().contains("longer than the limit of 4 bytes"));
        // A line without a newline at the end of the stream counts too.
        let (_, error) = read_all(b"ab\nabcde", 4).await;
        assert!(error.is_some());
    }

    #[tokio::test]
    async fn a_full_backlog_pauses_reading_until_an_update_is_received() {
        let limits = Arc::new(StdoutLimits::new(100, 1));
        limits.backlog.add();
        let mut reader = AgentStdout::new(&b"x\n"[..], limits.clone());
        let mut out = [0u8; 2];
        assert!(
            futures::FutureExt::now_or_never(reader.read(&mut out)).is_none(),
            "no read while the backlog is full"
        );
        let read = tokio::spawn(async move {
            let mut out = [0u8; 2];
            reader.read(&mut out).await.unwrap()
        });
        limits.backlog.remove();
        assert_eq!(read.await.unwrap(), 2);
    }
}
