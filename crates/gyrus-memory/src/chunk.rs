//! The knowledge-base chunker behind `gyrus memory ingest PATH`.
//!
//! A document is cut into [`Chunk`]s small enough to embed and to hand a model as context,
//! yet whole enough to make sense alone:
//!
//! 1. Markdown is split into sections at ATX headings (`#` to `######`; a `#` inside a fenced
//!    code block is code, not a heading). Each section remembers its heading path
//!    (`Install > Debian`), and every chunk of it starts with that path, so a chunk found by
//!    search says where it came from without its neighbours.
//! 2. A section is split into blocks: paragraphs (runs of non-blank lines) and fenced code
//!    blocks (```` ``` ```` or `~~~`, kept whole, blank lines and all, when at most
//!    `max_bytes`).
//! 3. Blocks are packed into chunks of up to `target_bytes`. A block longer than `max_bytes`
//!    is split first: prose at sentence ends, code at line ends, then at whitespace, and a
//!    single word longer than `max_bytes` at a character boundary (never inside a UTF-8
//!    character).
//! 4. The next chunk of the same section begins with the last `overlap_bytes` (at most) of
//!    the previous one, starting at a word, so a sentence cut at a chunk boundary is still
//!    found whole by one of the two.
//!
//! Nothing is lost: every word of the input is in some chunk, in order (a heading's `#`
//! markers become the heading path). A heading with no text under it and no subheading
//! becomes a chunk of its own heading path, so even an outline is searchable. No chunk is
//! empty.
//!
//! Everything here is pure: the caller reads the file.

use std::path::Path;

/// The file extensions [`is_ingestible`] accepts, lowercase.
pub const INGESTIBLE_EXTENSIONS: &[&str] = &["md", "markdown", "txt", "rst", "text"];

/// The smallest `max_bytes` honoured: a chunk must hold at least one character (4 bytes at
/// most in UTF-8) for the chunker to always make progress.
const MIN_MAX_BYTES: usize = 4;

/// How a document is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    /// The size blocks are packed up to, in bytes (without the heading line). About 900
    /// bytes is a few paragraphs: enough context for an answer, small enough that one
    /// chunk is about one thing (which is what an embedding can represent).
    pub target_bytes: usize,
    /// The hard limit on a chunk's text without its heading line, in bytes. A single block
    /// up to this size is kept whole rather than cut at `target_bytes`; longer ones are
    /// split. At least 4 is used.
    pub max_bytes: usize,
    /// How much of a chunk's end the next chunk of the same section repeats, in bytes, at
    /// most half of `target_bytes`.
    pub overlap_bytes: usize,
}

impl Default for ChunkConfig {
    fn default() -> ChunkConfig {
        ChunkConfig {
            target_bytes: 900,
            max_bytes: 1500,
            overlap_bytes: 120,
        }
    }
}

impl ChunkConfig {
    /// The limits actually used: `max_bytes` at least 4, `target_bytes` between 1 and
    /// `max_bytes`, `overlap_bytes` at most half of `target_bytes` (so each chunk is mostly
    /// new text).
    fn normalized(&self) -> ChunkConfig {
        let max_bytes = self.max_bytes.max(MIN_MAX_BYTES);
        let target_bytes = self.target_bytes.clamp(1, max_bytes);
        ChunkConfig {
            target_bytes,
            max_bytes,
            overlap_bytes: self.overlap_bytes.min(target_bytes / 2),
        }
    }
}

/// One piece of a document, ready to store as a knowledge item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its position in the document, from 0. With the file's path it names the chunk
    /// (`file:<path>#<index>`), so re-ingesting an edited file updates chunks in place.
    pub index: usize,
    /// The Markdown heading path of its section, e.g. `Install > Debian`; `None` before the
    /// first heading and for plain text.
    pub heading: Option<String>,
    /// The text: the heading path and a blank line when there is a heading, then the body.
    /// The body is at most `max_bytes`.
    pub text: String,
    /// The first line of the document this chunk's new text comes from, from 1 (the overlap
    /// repeated from the previous chunk is not counted).
    pub start_line: usize,
    /// The last line it comes from, inclusive.
    pub end_line: usize,
}

/// Chunks a Markdown document: by heading, then by paragraph, keeping fenced code whole.
/// See the module documentation for the rules.
pub fn chunk_markdown(text: &str, cfg: &ChunkConfig) -> Vec<Chunk> {
    chunk(text, cfg, true)
}

/// Chunks plain text: by blank-line paragraphs only (no headings, no code fences).
pub fn chunk_text(text: &str, cfg: &ChunkConfig) -> Vec<Chunk> {
    chunk(text, cfg, false)
}

/// Whether `path` names a file `gyrus memory ingest` reads: extension `md`, `markdown`,
/// `txt`, `rst` or `text`, in any case. Other files (binaries, source code, archives) would
/// need their own parsers to make useful chunks, so they are skipped rather than guessed at.
pub fn is_ingestible(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        INGESTIBLE_EXTENSIONS
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

// ---------------------------------------------------------------------------------------
// Parsing: sections and blocks
// ---------------------------------------------------------------------------------------

/// A paragraph or fenced code block.
#[derive(Debug)]
struct Block {
    /// Its lines joined by `\n`.
    text: String,
    /// Its first line in the document, from 1.
    start_line: usize,
    /// Whether it is fenced code (split at lines) rather than prose (split at sentences).
    code: bool,
    /// The byte offsets of the `\n`s in `text`, to map offsets to lines.
    newlines: Vec<usize>,
}

impl Block {
    fn new(lines: &[&str], start_line: usize, code: bool) -> Block {
        let text = lines.join("\n");
        let newlines = text.match_indices('\n').map(|(i, _)| i).collect();
        Block {
            text,
            start_line,
            code,
            newlines,
        }
    }

    /// The document line holding byte `offset` of the block.
    fn line_of(&self, offset: usize) -> usize {
        self.start_line + self.newlines.partition_point(|&nl| nl < offset)
    }
}

/// The text under one heading (or before the first).
#[derive(Debug)]
struct Section {
    /// The heading path, `None` when empty.
    heading: Option<String>,
    /// The heading's level (1 to 6), 0 before the first heading.
    level: usize,
    /// The heading's line, from 1 (0 before the first heading).
    line: usize,
    blocks: Vec<Block>,
}

/// An ATX heading: up to three spaces, 1 to 6 `#`, then a space, a tab or the line's end.
/// Returns the level and the title without the optional closing `#`s.
fn atx_heading(line: &str) -> Option<(usize, &str)> {
    let rest = strip_indent(line)?;
    let level = rest.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let title = after.trim();
    let without_closing = title.trim_end_matches('#');
    let title = if without_closing.is_empty() {
        ""
    } else if without_closing.ends_with([' ', '\t']) {
        without_closing.trim_end()
    } else {
        title
    };
    Some((level, title))
}

/// The line without up to three leading spaces; `None` when it is indented more (an
/// indented code line in Markdown, never a heading or fence).
fn strip_indent(line: &str) -> Option<&str> {
    let spaces = line.bytes().take_while(|&b| b == b' ').count();
    (spaces <= 3).then(|| &line[spaces..])
}

/// A fence opening: its character and length.
fn fence_open(line: &str) -> Option<(u8, usize)> {
    let rest = strip_indent(line)?;
    let ch = *rest.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = rest.bytes().take_while(|&b| b == ch).count();
    if len < 3 {
        return None;
    }
    // A backtick fence's info string may not hold a backtick (CommonMark), else ``` `x` ```
    // inline code at a line's start would open a block.
    if ch == b'`' && rest[len..].contains('`') {
        return None;
    }
    Some((ch, len))
}

/// Whether `line` closes a fence opened by `open`: the same character, at least as many,
/// nothing after but whitespace.
fn fence_closes(open: (u8, usize), line: &str) -> bool {
    let Some(rest) = strip_indent(line) else {
        return false;
    };
    let len = rest.bytes().take_while(|&b| b == open.0).count();
    len >= open.1 && rest[len..].trim().is_empty()
}

/// Splits a document into sections of blocks.
fn sections(text: &str, markdown: bool) -> Vec<Section> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut stack: Vec<(usize, &str)> = Vec::new();
    let mut current = Section {
        heading: None,
        level: 0,
        line: 0,
        blocks: Vec::new(),
    };
    let mut para_start = 0;
    let mut para: Vec<&str> = Vec::new();
    let flush = |para: &mut Vec<&str>, start: usize, blocks: &mut Vec<Block>| {
        if !para.is_empty() {
            blocks.push(Block::new(para, start, false));
            para.clear();
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if markdown {
            if let Some(open) = fence_open(line) {
                flush(&mut para, para_start, &mut current.blocks);
                let mut end = i + 1;
                while end < lines.len() && !fence_closes(open, lines[end]) {
                    end += 1;
                }
                // An unclosed fence runs to the end of the document, as in CommonMark.
                let last = end.min(lines.len() - 1);
                current
                    .blocks
                    .push(Block::new(&lines[i..=last], i + 1, true));
                i = last + 1;
                continue;
            }
            if let Some((level, title)) = atx_heading(line) {
                flush(&mut para, para_start, &mut current.blocks);
                while stack.last().is_some_and(|&(l, _)| l >= level) {
                    stack.pop();
                }
                stack.push((level, title));
                let path: Vec<&str> = stack
                    .iter()
                    .map(|&(_, t)| t)
                    .filter(|t| !t.is_empty())
                    .collect();
                let next = Section {
                    heading: (!path.is_empty()).then(|| path.join(" > ")),
                    level,
                    line: i + 1,
                    blocks: Vec::new(),
                };
                out.push(std::mem::replace(&mut current, next));
                i += 1;
                continue;
            }
        }
        if line.trim().is_empty() {
            flush(&mut para, para_start, &mut current.blocks);
        } else {
            if para.is_empty() {
                para_start = i + 1;
            }
            para.push(line);
        }
        i += 1;
    }
    flush(&mut para, para_start, &mut current.blocks);
    out.push(current);
    out
}

// ---------------------------------------------------------------------------------------
// Splitting oversized blocks
// ---------------------------------------------------------------------------------------

/// A byte range of one block's text, trimmed, not empty.
#[derive(Debug, Clone, Copy)]
struct Piece {
    block: usize,
    start: usize,
    end: usize,
}

/// How a too-long range is cut, coarsest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Sentences,
    Lines,
    Words,
    Chars,
}

/// The pieces of block `bi`: the whole block when it fits `max`, else its parts.
fn pieces_of(bi: usize, block: &Block, max: usize, out: &mut Vec<Piece>) {
    let Some((start, end)) = trimmed(&block.text, 0, block.text.len()) else {
        return;
    };
    if end - start <= max {
        out.push(Piece {
            block: bi,
            start,
            end,
        });
        return;
    }
    let first = if block.code {
        Cut::Lines
    } else {
        Cut::Sentences
    };
    split(bi, &block.text, start, end, first, max, out);
}

/// The range `[start, end)` of `text` without surrounding whitespace; `None` when nothing is
/// left.
fn trimmed(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let s = &text[start..end];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    (lead + trail < s.len()).then_some((start + lead, end - trail))
}

/// Cuts `[start, end)` of `text` (already trimmed) at `cut`, recursing with a finer cut
/// into the parts still longer than `max`.
fn split(
    bi: usize,
    text: &str,
    start: usize,
    end: usize,
    cut: Cut,
    max: usize,
    out: &mut Vec<Piece>,
) {
    let finer = match cut {
        Cut::Sentences | Cut::Lines => Cut::Words,
        Cut::Words | Cut::Chars => Cut::Chars,
    };
    let push = |s: usize, e: usize, out: &mut Vec<Piece>| {
        if let Some((s, e)) = trimmed(text, s, e) {
            if e - s <= max {
                out.push(Piece {
                    block: bi,
                    start: s,
                    end: e,
                });
            } else {
                split(bi, text, s, e, finer, max, out);
            }
        }
    };
    let s = &text[start..end];
    match cut {
        Cut::Sentences => {
            let mut from = start;
            let mut chars = s.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                let ends_sentence = matches!(c, '.' | '!' | '?' | '…')
                    && chars.peek().is_some_and(|&(_, n)| n.is_whitespace());
                if ends_sentence {
                    let to = start + i + c.len_utf8();
                    push(from, to, out);
                    from = to;
                }
            }
            push(from, end, out);
        }
        Cut::Lines => {
            let mut from = start;
            for (i, _) in s.match_indices('\n') {
                push(from, start + i, out);
                from = start + i + 1;
            }
            push(from, end, out);
        }
        Cut::Words => {
            let mut from = None;
            for (i, c) in s.char_indices() {
                match (c.is_whitespace(), from) {
                    (true, Some(f)) => {
                        push(f, start + i, out);
                        from = None;
                    }
                    (false, None) => from = Some(start + i),
                    _ => {}
                }
            }
            if let Some(f) = from {
                push(f, end, out);
            }
        }
        Cut::Chars => {
            // The range is one word longer than `max`: cut it into runs of whole
            // characters, each at most `max` bytes (at least one character each).
            let mut from = start;
            let mut len = 0;
            for (i, c) in s.char_indices() {
                let at = start + i;
                if len + c.len_utf8() > max && at > from {
                    out.push(Piece {
                        block: bi,
                        start: from,
                        end: at,
                    });
                    from = at;
                    len = 0;
                }
                len += c.len_utf8();
            }
            if end > from {
                out.push(Piece {
                    block: bi,
                    start: from,
                    end,
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------------------

/// The separator between blocks in a chunk (and between a heading and its body).
const BLOCK_SEP: &str = "\n\n";

/// A chunk being filled.
#[derive(Debug, Default)]
struct Building {
    /// The end of the previous chunk, repeated.
    overlap: String,
    /// Where the previous chunk's last text ended (block and offset): when this chunk
    /// continues that block, the original whitespace between them joins the overlap.
    prev_end: Option<(usize, usize)>,
    /// Its ranges, in order; consecutive pieces of one block are merged into one range.
    segs: Vec<Piece>,
    /// The body's length so far.
    len: usize,
}

impl Building {
    /// What goes between the overlap and a first piece `p`.
    fn overlap_sep<'a>(&self, blocks: &'a [Block], p: &Piece) -> &'a str {
        match self.prev_end {
            Some((b, end)) if b == p.block && end <= p.start => &blocks[b].text[end..p.start],
            _ => BLOCK_SEP,
        }
    }

    /// The body's length with `p` added.
    fn len_with(&self, blocks: &[Block], p: &Piece) -> usize {
        match self.segs.last() {
            Some(last) if last.block == p.block && last.end <= p.start => {
                self.len + (p.end - last.end)
            }
            Some(_) => self.len + BLOCK_SEP.len() + (p.end - p.start),
            None if self.overlap.is_empty() => p.end - p.start,
            None => self.overlap.len() + self.overlap_sep(blocks, p).len() + (p.end - p.start),
        }
    }

    fn add(&mut self, blocks: &[Block], p: Piece) {
        self.len = self.len_with(blocks, &p);
        match self.segs.last_mut() {
            Some(last) if last.block == p.block && last.end <= p.start => last.end = p.end,
            _ => self.segs.push(p),
        }
    }

    fn body(&self, blocks: &[Block]) -> String {
        let mut body = String::with_capacity(self.len);
        if let (false, Some(first)) = (self.overlap.is_empty(), self.segs.first()) {
            body.push_str(&self.overlap);
            body.push_str(self.overlap_sep(blocks, first));
        }
        for (i, seg) in self.segs.iter().enumerate() {
            if i > 0 {
                body.push_str(BLOCK_SEP);
            }
            body.push_str(&blocks[seg.block].text[seg.start..seg.end]);
        }
        body
    }
}

/// The last `n` bytes of `body` at most, starting at a word.
fn tail(body: &str, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    let mut start = body.len().saturating_sub(n);
    while !body.is_char_boundary(start) {
        start += 1;
    }
    let mid_word = body[..start]
        .chars()
        .next_back()
        .is_some_and(|c| !c.is_whitespace());
    let rest = &body[start..];
    let rest = if mid_word {
        rest.find(char::is_whitespace).map_or("", |i| &rest[i..])
    } else {
        rest
    };
    rest.trim_start()
}

fn chunk(text: &str, cfg: &ChunkConfig, markdown: bool) -> Vec<Chunk> {
    let cfg = cfg.normalized();
    let sections = sections(text, markdown);
    let mut out: Vec<Chunk> = Vec::new();
    for (si, section) in sections.iter().enumerate() {
        let mut pieces = Vec::new();
        for (bi, block) in section.blocks.iter().enumerate() {
            pieces_of(bi, block, cfg.max_bytes, &mut pieces);
        }
        if pieces.is_empty() {
            // A heading with nothing under it: its own chunk, unless a subheading follows
            // (whose path starts with this one, so the words are kept there).
            let subheading_follows = sections
                .get(si + 1)
                .is_some_and(|n| n.level > section.level);
            if let (Some(h), false) = (&section.heading, subheading_follows) {
                out.push(Chunk {
                    index: out.len(),
                    heading: Some(h.clone()),
                    text: h.clone(),
                    start_line: section.line,
                    end_line: section.line,
                });
            }
            continue;
        }
        pack(section, &pieces, &cfg, &mut out);
    }
    out
}

/// Packs one section's pieces into chunks appended to `out`.
fn pack(section: &Section, pieces: &[Piece], cfg: &ChunkConfig, out: &mut Vec<Chunk>) {
    let blocks = &section.blocks;
    let emit = |b: &Building, out: &mut Vec<Chunk>| -> String {
        let body = b.body(blocks);
        let (first, last) = match (b.segs.first(), b.segs.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => return body,
        };
        let text = match &section.heading {
            Some(h) => format!("{h}{BLOCK_SEP}{body}"),
            None => body.clone(),
        };
        out.push(Chunk {
            index: out.len(),
            heading: section.heading.clone(),
            text,
            start_line: blocks[first.block].line_of(first.start),
            end_line: blocks[last.block].line_of(last.end - 1),
        });
        body
    };
    let mut cur = Building::default();
    for p in pieces {
        if !cur.segs.is_empty() {
            if cur.len_with(blocks, p) <= cfg.target_bytes {
                cur.add(blocks, *p);
                continue;
            }
            let body = emit(&cur, out);
            let prev_end = cur.segs.last().map(|l| (l.block, l.end));
            cur = Building {
                overlap: tail(&body, cfg.overlap_bytes).to_string(),
                prev_end,
                ..Building::default()
            };
        }
        // The first piece of a chunk goes in whatever its size (it is at most `max_bytes`),
        // after the overlap when both fit.
        if !cur.overlap.is_empty() && cur.len_with(blocks, p) > cfg.max_bytes {
            cur.overlap.clear();
        }
        cur.add(blocks, *p);
    }
    if !cur.segs.is_empty() {
        emit(&cur, out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(target: usize, max: usize, overlap: usize) -> ChunkConfig {
        ChunkConfig {
            target_bytes: target,
            max_bytes: max,
            overlap_bytes: overlap,
        }
    }

    /// The input's words, less heading markers (tokens of `#` only, which become the
    /// heading path).
    fn input_words(text: &str) -> Vec<&str> {
        text.split_whitespace()
            .filter(|w| !w.bytes().all(|b| b == b'#'))
            .collect()
    }

    /// Whether `needle` is a subsequence of `hay`.
    fn subsequence<T: PartialEq>(needle: impl IntoIterator<Item = T>, hay: &[T]) -> bool {
        let mut it = hay.iter();
        needle.into_iter().all(|n| it.any(|h| *h == n))
    }

    /// Every word of the input (but those longer than `max`, which may be cut) appears in
    /// some chunk, in order; and every non-space character, in order.
    fn assert_preserved(input: &str, chunks: &[Chunk], max: usize) {
        let joined: Vec<&str> = chunks
            .iter()
            .flat_map(|c| c.text.split_whitespace())
            .collect();
        let words: Vec<&str> = input_words(input)
            .into_iter()
            .filter(|w| w.len() <= max)
            .collect();
        assert!(
            subsequence(words, &joined),
            "words lost: {input:?} -> {chunks:#?}"
        );
        let chars: Vec<char> = chunks
            .iter()
            .flat_map(|c| c.text.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let want = input_words(input).into_iter().flat_map(str::chars);
        assert!(
            subsequence(want, &chars),
            "text lost: {input:?} -> {chunks:#?}"
        );
    }

    fn assert_bounded(chunks: &[Chunk], max: usize) {
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index, i);
            assert!(!c.text.trim().is_empty(), "empty chunk {c:?}");
            let heading_line = c.heading.as_ref().map_or(0, |h| h.len() + BLOCK_SEP.len());
            assert!(
                c.text.len() <= max + heading_line,
                "chunk {i} is {} bytes: {c:?}",
                c.text.len()
            );
            assert!(c.start_line >= 1 && c.start_line <= c.end_line, "{c:?}");
            if let Some(h) = &c.heading {
                assert!(c.text.starts_with(h.as_str()));
            }
        }
    }

    #[test]
    fn defaults() {
        let c = ChunkConfig::default();
        assert_eq!(
            (c.target_bytes, c.max_bytes, c.overlap_bytes),
            (900, 1500, 120)
        );
    }

    #[test]
    fn headings_make_paths() {
        let doc = "Intro text.\n\n# Install\n\nGet it.\n\n## Debian\n\nUse apt.\n\n## Fedora ##\n\nUse dnf.\n\n# Use\n\nRun it.\n";
        let chunks = chunk_markdown(doc, &ChunkConfig::default());
        let got: Vec<(Option<&str>, &str)> = chunks
            .iter()
            .map(|c| (c.heading.as_deref(), c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (None, "Intro text."),
                (Some("Install"), "Install\n\nGet it."),
                (Some("Install > Debian"), "Install > Debian\n\nUse apt."),
                (Some("Install > Fedora"), "Install > Fedora\n\nUse dnf."),
                (Some("Use"), "Use\n\nRun it."),
            ]
        );
        let lines: Vec<(usize, usize)> =
            chunks.iter().map(|c| (c.start_line, c.end_line)).collect();
        assert_eq!(lines, [(1, 1), (5, 5), (9, 9), (13, 13), (17, 17)]);
        assert_preserved(doc, &chunks, 1500);
    }

    #[test]
    fn heading_levels_pop_correctly() {
        let doc = "# A\n### C\nc\n## B\nb\n# D\nd";
        let chunks = chunk_markdown(doc, &ChunkConfig::default());
        let heads: Vec<&str> = chunks
            .iter()
            .map(|c| c.heading.as_deref().unwrap())
            .collect();
        assert_eq!(heads, ["A > C", "A > B", "D"]);
    }

    #[test]
    fn empty_headings_are_kept_unless_a_subheading_follows() {
        let doc = "# Outline\n## First\n## Second\ntext\n# Last\n";
        let chunks = chunk_markdown(doc, &ChunkConfig::default());
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            ["Outline > First", "Outline > Second\n\ntext", "Last"]
        );
        assert_eq!((chunks[0].start_line, chunks[0].end_line), (2, 2));
        assert_preserved(doc, &chunks, 1500);
    }

    #[test]
    fn not_headings() {
        // No space after #, indented four spaces, seven #s, or a #tag: all text.
        let doc = "#tag\n    # indented\n####### seven\n";
        let chunks = chunk_markdown(doc, &ChunkConfig::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].heading, None);
        assert_eq!(chunks[0].text, doc.trim_end());
        assert_eq!(atx_heading("# #"), Some((1, "")));
        assert_eq!(atx_heading("  ## a # b ##  "), Some((2, "a # b")));
        assert_eq!(atx_heading("# C#"), Some((1, "C#")));
        assert_eq!(atx_heading("#"), Some((1, "")));
    }

    #[test]
    fn fenced_code_is_not_split_by_headings_or_blank_lines() {
        let doc =
            "# Build\n\n```sh\n# not a heading\n\nmake\n```\n\n~~~\n## also not\n~~~\nafter\n";
        let chunks = chunk_markdown(doc, &ChunkConfig::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].text,
            "Build\n\n```sh\n# not a heading\n\nmake\n```\n\n~~~\n## also not\n~~~\n\nafter"
        );
        assert_eq!((chunks[0].start_line, chunks[0].end_line), (3, 12));
    }

    #[test]
    fn unclosed_fence_runs_to_the_end() {
        let doc = "text\n```\n# inside\n\nmore";
        let chunks = chunk_markdown(doc, &ChunkConfig::default());
        assert!(chunks.iter().all(|c| c.heading.is_none()));
        assert_preserved(doc, &chunks, 1500);
    }

    #[test]
    fn code_block_stays_whole_up_to_max() {
        let code: String = (0..70).map(|i| format!("let x{i} = {i};\n")).collect();
        assert!(code.len() > 900 && code.len() < 1400);
        let doc = format!("Intro paragraph.\n\n```rust\n{code}```\n\nOutro.");
        let chunks = chunk_markdown(&doc, &ChunkConfig::default());
        let whole = chunks
            .iter()
            .filter(|c| c.text.contains("let x0 ") && c.text.contains("let x69 "));
        assert_eq!(whole.count(), 1, "{chunks:#?}");
        assert_bounded(&chunks, 1500);
    }

    #[test]
    fn long_code_block_splits_at_lines() {
        let code: String = (0..200).map(|i| format!("let x{i} = {i};\n")).collect();
        let doc = format!("```\n{code}```");
        let chunks = chunk_markdown(&doc, &cfg(300, 500, 0));
        assert!(chunks.len() > 1);
        for c in &chunks {
            for line in c.text.lines() {
                assert!(
                    line == "```" || (line.starts_with("let x") && line.ends_with(';')),
                    "{line:?}"
                );
            }
        }
        assert_bounded(&chunks, 500);
        assert_preserved(&doc, &chunks, 500);
    }

    #[test]
    fn paragraphs_pack_up_to_target() {
        let para = "word ".repeat(40); // 200 bytes
        let doc = [para.trim(); 10].join("\n\n");
        let chunks = chunk_text(&doc, &cfg(900, 1500, 0));
        // 4 paragraphs of 199 bytes and 3 separators: 802 bytes; a fifth would pass 900.
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].text.len(), 4 * 199 + 3 * 2);
        assert_eq!((chunks[0].start_line, chunks[0].end_line), (1, 7));
        assert_eq!(chunks[2].end_line, 19);
        assert_bounded(&chunks, 1500);
    }

    #[test]
    fn long_paragraph_splits_at_sentences() {
        let sentence = "This sentence is about forty bytes long. ";
        let doc = sentence.repeat(60);
        let chunks = chunk_text(&doc, &cfg(400, 600, 0));
        assert!(chunks.len() > 1);
        for c in &chunks {
            assert!(
                c.text.starts_with("This") && c.text.ends_with("long."),
                "{:?}",
                c.text
            );
            assert!(c.text.len() <= 400);
        }
        assert_preserved(&doc, &chunks, 600);
    }

    #[test]
    fn a_run_on_sentence_splits_at_whitespace_and_a_long_word_at_chars() {
        let doc = "ab ".repeat(500);
        let chunks = chunk_text(&doc, &cfg(100, 120, 0));
        assert!(chunks.iter().all(|c| c.text.split(' ').all(|w| w == "ab")));
        assert_bounded(&chunks, 120);

        let word = "é".repeat(300); // 600 bytes, no space
        let chunks = chunk_text(&word, &cfg(50, 101, 0));
        assert_bounded(&chunks, 101);
        let rejoined: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(rejoined, word);
        assert!(chunks.iter().all(|c| c.text.len() == 100));
    }

    #[test]
    fn overlap_repeats_the_end_at_a_word_within_a_section() {
        let doc = "# S\n\n".to_string()
            + &(0..40)
                .map(|i| format!("Sentence number {i} ends here."))
                .collect::<Vec<_>>()
                .join(" ");
        let chunks = chunk_markdown(&doc, &cfg(200, 300, 50));
        assert!(chunks.len() > 2);
        for pair in chunks.windows(2) {
            let prev = pair[0].text.strip_prefix("S\n\n").unwrap();
            let next = pair[1].text.strip_prefix("S\n\n").unwrap();
            // The next chunk starts with a suffix of the previous one, of at most 50 bytes,
            // starting at a word.
            let shared = (1..=prev.len().min(next.len()))
                .rev()
                .find(|&n| {
                    prev.is_char_boundary(prev.len() - n)
                        && next.starts_with(&prev[prev.len() - n..])
                })
                .unwrap_or(0);
            assert!(shared > 0 && shared <= 50, "{prev:?} / {next:?}");
            let cut = prev.len() - shared;
            assert!(
                cut == 0 || prev[..cut].ends_with(' '),
                "{prev:?} / {next:?}"
            );
        }
        assert_bounded(&chunks, 300);
        assert_preserved(&doc, &chunks, 300);
    }

    #[test]
    fn no_overlap_across_sections() {
        let para = "alpha beta gamma delta. ".repeat(20);
        let doc = format!("# One\n\n{para}\n\n# Two\n\nsecond");
        let chunks = chunk_markdown(&doc, &cfg(200, 300, 60));
        let two = chunks
            .iter()
            .find(|c| c.heading.as_deref() == Some("Two"))
            .unwrap();
        assert_eq!(two.text, "Two\n\nsecond");
    }

    #[test]
    fn plain_text_has_no_headings() {
        let doc = "# not a heading\n\n```\nnot code\n\nstill text\n```";
        let chunks = chunk_text(doc, &ChunkConfig::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].heading, None);
        assert_eq!(chunks[0].text, doc);
    }

    #[test]
    fn blank_input_has_no_chunks() {
        assert!(chunk_markdown("", &ChunkConfig::default()).is_empty());
        assert!(chunk_markdown(" \n\n\t\n", &ChunkConfig::default()).is_empty());
        assert!(chunk_text("\n\n", &ChunkConfig::default()).is_empty());
        // A heading without a title has nothing to say.
        assert!(chunk_markdown("#\n##\n", &ChunkConfig::default()).is_empty());
    }

    #[test]
    fn crlf_lines() {
        let doc = "# A\r\n\r\none\r\ntwo\r\n\r\nthree\r\n";
        let chunks = chunk_markdown(doc, &ChunkConfig::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "A\n\none\ntwo\n\nthree");
    }

    #[test]
    fn ingestible_extensions() {
        for ok in [
            "a.md",
            "b.MARKDOWN",
            "c.txt",
            "d.rst",
            "e.Text",
            "/x/y/README.Md",
        ] {
            assert!(is_ingestible(Path::new(ok)), "{ok}");
        }
        for bad in ["a.rs", "b", "c.md.gz", ".md", "d.pdf", "e.mdx"] {
            assert!(!is_ingestible(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn tiny_limits_still_make_progress() {
        let chunks = chunk_text("héllo wörld 😀😀", &cfg(0, 0, 9));
        assert_bounded(&chunks, MIN_MAX_BYTES);
        let rejoined: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(rejoined.replace(' ', ""), "héllowörld😀😀");
    }

    fn markdownish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("# ".to_string()),
                Just("## Sub ".to_string()),
                Just("```".to_string()),
                Just("~~~".to_string()),
                Just("\n".to_string()),
                Just("\n\n".to_string()),
                Just(". ".to_string()),
                Just("? ".to_string()),
                Just("é😀".to_string()),
                "[a-z]{1,12}",
                "[a-z]{30,80}",
                " {1,4}",
                any::<String>(),
            ],
            0..120,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn chunks_are_bounded_and_lose_nothing(
            text in markdownish(),
            target in 1usize..200,
            extra in 0usize..200,
            overlap in 0usize..80,
        ) {
            let c = cfg(target, target + extra, overlap);
            let max = c.normalized().max_bytes;
            let md = chunk_markdown(&text, &c);
            assert_bounded(&md, max);
            assert_preserved(&text, &md, max);
            let plain = chunk_text(&text, &c);
            assert_bounded(&plain, max);
            let joined: Vec<&str> = plain.iter().flat_map(|c| c.text.split_whitespace()).collect();
            let words = text.split_whitespace().filter(|w| w.len() <= max);
            prop_assert!(subsequence(words, &joined));
        }

        #[test]
        fn arbitrary_strings_do_not_panic(text in any::<String>()) {
            let c = ChunkConfig::default();
            let md = chunk_markdown(&text, &c);
            assert_bounded(&md, c.max_bytes);
            assert_preserved(&text, &md, c.max_bytes);
            assert_bounded(&chunk_text(&text, &c), c.max_bytes);
        }
    }
}
