//! The agent's stderr, drained until it closes and logged line by line with the instance id.
//!
//! Never stops early: an agent whose stderr pipe fills up blocks on its next write, so a reader
//! that gave up (as `lines()` does at the first invalid UTF-8) would freeze the agent. Bytes are
//! decoded lossily, and a line longer than [`MAX_LOGGED_LINE`] is logged cut, with the number of
//! bytes left out, while the rest of it is read and discarded without being buffered.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The most bytes of one stderr line that are kept and logged.
pub(crate) const MAX_LOGGED_LINE: usize = 8 * 1024;

/// Reads `stderr` to its end, handing each line (lossily decoded, cut at `max_line` bytes, with
/// how many bytes were cut) to `log`. Read errors end the drain (the pipe is gone).
pub(crate) async fn drain_lines<R: AsyncRead + Unpin>(
    stderr: R,
    max_line: usize,
    mut log: impl FnMut(&str, usize),
) {
    let mut reader = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = 0usize;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (segment, newline) = match chunk.iter().position(|byte| *byte == b'\n') {
            Some(end) => (&chunk[..end], true),
            None => (chunk, false),
        };
        let room = max_line.saturating_sub(line.len());
        let kept = segment.len().min(room);
        line.extend_from_slice(&segment[..kept]);
        cut += segment.len() - kept;
        let consumed = segment.len() + usize::from(newline);
        reader.consume(consumed);
        if newline {
            log(&String::from_utf8_lossy(trim_cr(&line)), cut);
            line.clear();
            cut = 0;
        }
    }
    if !line.is_empty() || cut > 0 {
        log(&String::from_utf8_lossy(trim_cr(&line)), cut);
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Drains `stderr` into the log at info level under the `…::acp::stderr` target.
pub(crate) async fn log_stderr<R: AsyncRead + Unpin>(stderr: R, instance_id: String) {
    drain_lines(stderr, MAX_LOGGED_LINE, |line, cut| {
        if cut == 0 {
            tracing::info!(target: "spectask_runtimes::agent::acp::stderr", %instance_id, "{line}");
        } else {
            tracing::info!(target: "spectask_runtimes::agent::acp::stderr", %instance_id, cut_bytes = cut, "{line}…");
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        drain_lines(input, max, |line, cut| out.push((line.to_owned(), cut))).await;
        out
    }

    #[tokio::test]
    async fn invalid_utf8_does_not_stop_the_drain() {
        let out = lines(b"one\n\xff\xfe bad\nthree\r\nlast", 100).await;
        assert_eq!(
            out,
            [
                ("one".to_owned(), 0),
                ("\u{fffd}\u{fffd} bad".to_owned(), 0),
                ("three".to_owned(), 0),
                ("last".to_owned(), 0)
            ]
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_is_read() {
        let mut input = vec![b'a'; 20_000];
        input.extend_from_slice(b"\nnext\n");
        let out = lines(&input, 10).await;
        assert_eq!(out, [("a".repeat(10), 19_990), ("next".to_owned(), 0)]);
    }
}
