//! A server-sent-events decoder: bytes in, whole events out, however the bytes were split.
//!
//! It follows the WHATWG event-stream rules that matter for chat completions: lines end in `\n`,
//! `\r\n` or `\r`; `:` starts a comment (keep-alives); `data:` lines of one event are joined with
//! `\n`; a blank line dispatches the event. Lines are assembled as bytes and decoded only when
//! complete, so a multi-byte UTF-8 character split across TCP chunks arrives intact.

#[cfg(test)]
mod tests;

/// One dispatched event. `event` is the `event:` field when the server set one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// A line longer than this is not a chat-completion chunk but a runaway body.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// The stream had a line longer than [`MAX_LINE_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTooLong;

#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    /// The current line's bytes so far (no terminator).
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next chunk belongs to that ending.
    skip_lf: bool,
    /// Whether the first line has been seen (a UTF-8 BOM may precede it).
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; appends every event they complete to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), LineTooLong> {
        while !bytes.is_empty() {
            if self.skip_lf {
                self.skip_lf = false;
                if bytes[0] == b'\n' {
                    bytes = &bytes[1..];
                    continue;
                }
            }
            match bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    if self.line.len() + bytes.len() > MAX_LINE_BYTES {
                        return Err(LineTooLong);
                    }
                    self.line.extend_from_slice(bytes);
                    return Ok(());
                }
                Some(end) => {
                    if self.line.len() + end > MAX_LINE_BYTES {
                        return Err(LineTooLong);
                    }
                    self.line.extend_from_slice(&bytes[..end]);
                    self.skip_lf = bytes[end] == b'\r';
                    bytes = &bytes[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.line_complete(&line, out);
                    // Reuse the allocation for the next line.
                    self.line = line;
                    self.line.clear();
                }
            }
        }
        Ok(())
    }

    /// The body ended: an unterminated last line and a pending event are dispatched rather than
    /// dropped, because some servers omit the final blank line.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_complete(&line, out);
        }
        self.dispatch(out);
    }

    fn line_complete(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let mut line = line;
        if !self.started {
            self.started = true;
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            // `id` and `retry` steer browser reconnection, which a completion never does.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if self.has_data {
            self.has_data = false;
            out.push(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
    }
}
