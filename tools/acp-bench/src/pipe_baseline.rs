//! The raw pipe: the most an OS pipe and an ACP parser carry on this machine, measured in the
//! same run as the relay. One thread writes the `session/update` lines the test agent sends for
//! a flood (the same JSON, the same sizes) into a pipe; another reads them line by line and
//! parses each into the ACP crate's `SessionNotification`, as the server's connection does.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::{Duration, Instant};

use agent_client_protocol::v1::schema::SessionNotification;
use anyhow::{Context, Result};
use serde::Deserialize;

/// A JSON-RPC notification line as the agent writes it.
#[derive(Deserialize)]
struct NotificationLine {
    #[allow(dead_code)] // parsed as the connection parses it; only counted here
    method: String,
    #[allow(dead_code)]
    params: SessionNotification,
}

/// Lines per second through the pipe, parsed, for `lines` chunk updates.
pub fn lines_per_second(lines: u64) -> Result<(u64, Duration)> {
    let (reader, writer) = std::io::pipe().context("opening a pipe")?;
    let started = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(64 * 1024, writer);
        for i in 1..=lines {
            writeln!(
                out,
                r#"{{"jsonrpc":"2.0","method":"session/update","params":{{"sessionId":"sess_01jbench000000000000000000","update":{{"sessionUpdate":"agent_message_chunk","content":{{"type":"text","text":"{i}\n"}}}}}}}}"#
            )?;
        }
        out.flush()
    });
    let mut parsed = 0u64;
    for line in BufReader::with_capacity(64 * 1024, reader).lines() {
        let line = line.context("reading the pipe")?;
        serde_json::from_str::<NotificationLine>(&line)
            .with_context(|| format!("parsing {line}"))?;
        parsed += 1;
    }
    let elapsed = started.elapsed();
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the pipe's writer panicked"))?
        .context("writing the pipe")?;
    anyhow::ensure!(parsed == lines, "parsed {parsed} of {lines} lines");
    Ok((parsed, elapsed))
}
