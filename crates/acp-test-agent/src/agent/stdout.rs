//! The agent's stdio for the SDK, with stdout written by a thread of its own.
//!
//! The SDK's `Stdio` flushes every line through a blocking-pool thread and waits for it: two
//! thread switches per line, which made the agent's flood (and so the relay benchmark) a measure
//! of the agent's own stdout. Here a line is handed to a writer thread and counts as flushed at
//! once; the thread writes everything queued meanwhile in one `write`, so under a flood it wakes
//! once per batch, not per line. Order is kept (one queue, one writer). Output still queued
//! when the process exits is lost, as with any buffered stdout: the crash steps wait a moment
//! before exiting for this reason.

use std::io::Write;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};

/// The write half: lines queued for the writer thread.
pub(crate) struct QueuedStdout {
    queue: mpsc::Sender<Vec<u8>>,
}

impl QueuedStdout {
    /// Starts the writer thread.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (queue, queued) = mpsc::channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("stdout-writer".into())
            .spawn(move || write_queued(&queued))?;
        Ok(Self { queue })
    }
}

/// Writes what is queued, a batch at a time, until the queue's sender is gone or stdout fails
/// (the client went away).
fn write_queued(queued: &mpsc::Receiver<Vec<u8>>) {
    let stdout = std::io::stdout();
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Ok(first) = queued.recv() {
        batch.extend_from_slice(&first);
        while batch.len() < 1024 * 1024
            && let Ok(more) = queued.try_recv()
        {
            batch.extend_from_slice(&more);
        }
        // Locked per batch only: a scripted step may write to stdout directly in between.
        let mut out = stdout.lock();
        if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
            return;
        }
        batch.clear();
    }
}

impl futures::AsyncWrite for QueuedStdout {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(match self.queue.send(buf.to_vec()) {
            Ok(()) => Ok(buf.len()),
            Err(_) => Err(std::io::ErrorKind::BrokenPipe.into()),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
