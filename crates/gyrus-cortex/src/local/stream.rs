//! Streaming text out of a generation: stop sequences are found across token boundaries, and
//! text that might be the start of one is held back until it is known not to be.
//!
//! Pure logic, no model: the generation loop pushes decoded text in and emits what comes out.

/// The completion's text so far and how much of it has been handed to the caller.
#[derive(Debug)]
pub(super) struct StopScanner {
    stops: Vec<String>,
    text: String,
    /// Byte length of `text` already emitted.
    emitted: usize,
}

/// What one push produced.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Pushed {
    /// Text now safe to emit (may be empty).
    pub(super) emit: String,
    /// A stop sequence was found; the text ends just before it.
    pub(super) stopped: bool,
}

impl StopScanner {
    pub(super) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            emitted: 0,
        }
    }

    /// Adds decoded text. A stop sequence cannot start inside text already emitted (that text
    /// would have completed it earlier or been held back), so the search starts there.
    pub(super) fn push(&mut self, piece: &str) -> Pushed {
        self.text.push_str(piece);
        let tail = &self.text[self.emitted..];
        let found = self
            .stops
            .iter()
            .filter_map(|s| tail.find(s.as_str()))
            .min();
        if let Some(at) = found {
            let end = self.emitted + at;
            let emit = self.text[self.emitted..end].to_string();
            self.text.truncate(end);
            self.emitted = end;
            return Pushed {
                emit,
                stopped: true,
            };
        }
        // Hold back the longest tail that a stop sequence starts with.
        let tail = &self.text[self.emitted..];
        let held = tail
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&tail[i..])))
            .unwrap_or(tail.len());
        let end = self.emitted + held;
        let emit = self.text[self.emitted..end].to_string();
        self.emitted = end;
        Pushed {
            emit,
            stopped: false,
        }
    }

    /// Releases held-back text: generation ended, so it cannot grow into a stop sequence.
    pub(super) fn finish(&mut self) -> String {
        let rest = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        rest
    }

    /// Everything emitted so far.
    pub(super) fn emitted(&self) -> &str {
        &self.text[..self.emitted]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(stops: &[&str]) -> StopScanner {
        StopScanner::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn pushed(emit: &str, stopped: bool) -> Pushed {
        Pushed {
            emit: emit.to_string(),
            stopped,
        }
    }

    #[test]
    fn without_stops_everything_is_emitted_at_once() {
        let mut s = scanner(&[]);
        assert_eq!(s.push("Hello"), pushed("Hello", false));
        assert_eq!(s.push(", world"), pushed(", world", false));
        assert_eq!(s.finish(), "");
        assert_eq!(s.emitted(), "Hello, world");
    }

    #[test]
    fn a_stop_split_across_pieces_is_found_and_excluded() {
        let mut s = scanner(&["\n\nUser:"]);
        assert_eq!(s.push("Sure.\n"), pushed("Sure.", false));
        assert_eq!(s.push("\nUs"), pushed("", false));
        assert_eq!(s.push("er: hi"), pushed("", true));
        assert_eq!(s.emitted(), "Sure.");
    }

    #[test]
    fn held_text_that_diverges_is_released() {
        let mut s = scanner(&["END"]);
        assert_eq!(s.push("the E"), pushed("the ", false));
        assert_eq!(s.push("ND"), pushed("", true));
        let mut s = scanner(&["END"]);
        assert_eq!(s.push("the E"), pushed("the ", false));
        assert_eq!(s.push("nd"), pushed("End", false));
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut s = scanner(&["c", "ab"]);
        assert_eq!(s.push("xxabc"), pushed("xx", true));
    }

    #[test]
    fn finish_releases_a_held_prefix() {
        let mut s = scanner(&["STOP"]);
        assert_eq!(s.push("go ST"), pushed("go ", false));
        assert_eq!(s.finish(), "ST");
        assert_eq!(s.emitted(), "go ST");
    }

    #[test]
    fn multibyte_text_is_held_on_char_boundaries() {
        let mut s = scanner(&["é!"]);
        assert_eq!(s.push("café"), pushed("caf", false));
        assert_eq!(s.push("s"), pushed("és", false));
        assert_eq!(s.push("é!"), pushed("", true));
        assert_eq!(s.emitted(), "cafés");
    }
}
