//! Incremental framing of streamed bodies: server-sent events (OpenAI, Anthropic, Gemini) and
//! newline-delimited JSON (Ollama). Bytes arrive in arbitrary chunks, split anywhere (inside an
//! event, a line or a UTF-8 character); frames come out whole.

/// One unit of a streamed body: an SSE event (its `event:` name and joined `data:` lines) or
/// one NDJSON line (`event` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub event: Option<String>,
    pub data: String,
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub(crate) struct Framer {
    kind: Kind,
    buffer: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sse,
    Ndjson,
}

impl Framer {
    /// Server-sent events, as the WHATWG spec frames them.
    pub(crate) fn sse() -> Self {
        Self::with(Kind::Sse)
    }

    /// One JSON document per line.
    pub(crate) fn ndjson() -> Self {
        Self::with(Kind::Ndjson)
    }

    fn with(kind: Kind) -> Self {
        Self {
            kind,
            buffer: Vec::new(),
            event: None,
            data: Vec::new(),
        }
    }

    /// Takes in a chunk and returns the frames it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Frame> {
        self.buffer.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while let Some(line) = self.take_line() {
            self.line(&line, &mut frames);
        }
        frames
    }

    /// The body ended: returns what the last, unterminated line or event held.
    pub(crate) fn finish(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        if !self.buffer.is_empty() {
            // Terminate the last line (a lone trailing `\r` becomes a `\r\n`).
            self.buffer.push(b'\n');
            while let Some(line) = self.take_line() {
                self.line(&line, &mut frames);
            }
        }
        if self.kind == Kind::Sse {
            self.dispatch(&mut frames);
        }
        frames
    }

    /// The next complete line (without its terminator), if the buffer holds one. A `\r` at
    /// the very end of the buffer waits: the `\n` of a `\r\n` may be in the next chunk.
    fn take_line(&mut self) -> Option<String> {
        let end = self.buffer.iter().position(|&b| b == b'\n' || b == b'\r')?;
        let terminator = if self.buffer[end] == b'\r' {
            match self.buffer.get(end + 1) {
                Some(b'\n') => 2,
                Some(_) => 1,
                None => return None,
            }
        } else {
            1
        };
        let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        self.buffer.drain(..end + terminator);
        Some(line)
    }

    fn line(&mut self, line: &str, frames: &mut Vec<Frame>) {
        match self.kind {
            Kind::Ndjson => {
                let line = line.trim();
                if !line.is_empty() {
                    frames.push(Frame {
                        event: None,
                        data: line.to_owned(),
                    });
                }
            }
            Kind::Sse => {
                if line.is_empty() {
                    self.dispatch(frames);
                    return;
                }
                if line.starts_with(':') {
                    return; // a comment (keep-alive)
                }
                let (field, value) = match line.split_once(':') {
                    Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                    None => (line, ""),
                };
                match field {
                    "event" => self.event = Some(value.to_owned()),
                    "data" => self.data.push(value.to_owned()),
                    _ => {} // id, retry: not used by the model vendors
                }
            }
        }
    }

    fn dispatch(&mut self, frames: &mut Vec<Frame>) {
        let event = self.event.take();
        if self.data.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        frames.push(Frame { event, data });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn frame(event: Option<&str>, data: &str) -> Frame {
        Frame {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn sse_frames_survive_any_split() {
        let body = "event: a\r\ndata: {\"x\":\r\ndata: \"é\"}\r\n\r\n: ping\n\ndata: [DONE]\n\n";
        let expected = vec![frame(Some("a"), "{\"x\":\n\"é\"}"), frame(None, "[DONE]")];
        let bytes = body.as_bytes();
        for split in 0..bytes.len() {
            let mut framer = Framer::sse();
            let mut frames = framer.push(&bytes[..split]);
            frames.extend(framer.push(&bytes[split..]));
            frames.extend(framer.finish());
            assert_eq!(frames, expected, "split at {split}");
        }
    }

    #[test]
    fn sse_dispatches_an_unterminated_last_event() {
        let mut framer = Framer::sse();
        assert!(framer.push(b"data: {}").is_empty());
        assert_eq!(framer.finish(), vec![frame(None, "{}")]);
    }

    #[test]
    fn ndjson_lines_survive_any_split() {
        let body = "{\"a\":1}\n\n{\"b\":\"ü\"}\r\n{\"c\":3}";
        let bytes = body.as_bytes();
        for split in 0..bytes.len() {
            let mut framer = Framer::ndjson();
            let mut frames = framer.push(&bytes[..split]);
            frames.extend(framer.push(&bytes[split..]));
            frames.extend(framer.finish());
            let data: Vec<_> = frames.into_iter().map(|f| f.data).collect();
            assert_eq!(
                data,
                vec!["{\"a\":1}", "{\"b\":\"ü\"}", "{\"c\":3}"],
                "split at {split}"
            );
        }
    }
}
