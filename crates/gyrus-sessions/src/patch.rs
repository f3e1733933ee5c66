//! The paths a Codex `apply_patch` envelope touches (pure).
//!
//! Codex edits files with one tool, `apply_patch`, whose argument is an envelope in its own
//! format (codex-rs `apply-patch`, grammar in `apply_patch_tool_instructions.md`):
//!
//! ```text
//! *** Begin Patch
//! *** Add File: docs/new.md
//! +text
//! *** Update File: src/lib.rs
//! *** Move to: src/core.rs
//! @@ fn main
//!  context
//! -old
//! +new
//! *** End of File
//! *** Delete File: old.txt
//! *** End Patch
//! ```
//!
//! [`paths`] lists what such an envelope touches. Current Codex hands it to hooks as
//! `tool_input.command` of the `apply_patch` tool; older Codex ran it through the shell
//! (`["apply_patch", "*** Begin Patch…"]`, or `bash -lc "apply_patch <<'EOF' … EOF"`), which
//! [`paths_in_command`] and [`paths_in_argv`] find.

use std::fmt;

/// What a patch does to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOp {
    /// `*** Add File:` creates it.
    Add,
    /// `*** Update File:` edits it in place.
    Update,
    /// `*** Delete File:` removes it.
    Delete,
    /// `*** Update File:` followed by `*** Move to:`: the file that is moved away.
    MoveFrom,
    /// `*** Move to:`: where the moved file lands.
    MoveTo,
}

impl PatchOp {
    /// A lowercase name: `add`, `update`, `delete`, `move-from`, `move-to`.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOp::Add => "add",
            PatchOp::Update => "update",
            PatchOp::Delete => "delete",
            PatchOp::MoveFrom => "move-from",
            PatchOp::MoveTo => "move-to",
        }
    }
}

/// One path a patch touches, as the patch spells it (relative to the session's working
/// directory, or absolute).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PatchPath {
    /// The path.
    pub path: String,
    /// What happens to it.
    pub op: PatchOp,
}

/// Why an envelope could not be read. Line numbers count from 1 within the envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The text is empty.
    #[error("the patch is empty")]
    Empty,
    /// The first line is not `*** Begin Patch`.
    #[error("the patch must start with `*** Begin Patch`, found {found:?}")]
    NoBegin {
        /// The first line.
        found: String,
    },
    /// No `*** End Patch` line closes the envelope.
    #[error("the patch has no `*** End Patch` line")]
    NoEnd,
    /// Something follows `*** End Patch`.
    #[error("line {line}: nothing may follow `*** End Patch`, found {found:?}")]
    TrailingText {
        /// Its line.
        line: usize,
        /// What was found.
        found: String,
    },
    /// The envelope holds no file operation.
    #[error("the patch touches no file")]
    NoHunks,
    /// A line that is not a file header where one is expected.
    #[error(
        "line {line}: expected `*** Add File:`, `*** Update File:`, `*** Delete File:` or \
         `*** End Patch`, found {found:?}"
    )]
    ExpectedHeader {
        /// Its line.
        line: usize,
        /// What was found.
        found: String,
    },
    /// A line inside an `Add File` section that does not start with `+`.
    #[error("line {line}: lines of an added file must start with `+`, found {found:?}")]
    BadAddLine {
        /// Its line.
        line: usize,
        /// What was found.
        found: String,
    },
    /// A line inside an `Update File` section that is not a hunk line.
    #[error(
        "line {line}: lines of an update must start with `@@`, ` `, `+` or `-`, found {found:?}"
    )]
    BadUpdateLine {
        /// Its line.
        line: usize,
        /// What was found.
        found: String,
    },
    /// An `Update File` section with neither a hunk nor a move.
    #[error("line {line}: the update of {path:?} is empty")]
    EmptyUpdate {
        /// The header's line.
        line: usize,
        /// The file.
        path: String,
    },
    /// A header without a path.
    #[error("line {line}: {header} without a path")]
    MissingPath {
        /// Its line.
        line: usize,
        /// The header, e.g. `*** Add File:`.
        header: &'static str,
    },
    /// `*** Move to:` that does not follow `*** Update File:`.
    #[error("line {line}: `*** Move to:` must directly follow `*** Update File:`")]
    StrayMove {
        /// Its line.
        line: usize,
    },
}

const BEGIN: &str = "*** Begin Patch";
const END: &str = "*** End Patch";
const ADD: &str = "*** Add File:";
const UPDATE: &str = "*** Update File:";
const DELETE: &str = "*** Delete File:";
const MOVE: &str = "*** Move to:";
const END_OF_FILE: &str = "*** End of File";

/// The paths `patch` touches, in the order the patch names them, each `(path, op)` once.
///
/// Tolerates CRLF line ends, whitespace around the envelope and around marker lines, and a
/// heredoc wrapper (`apply_patch <<'EOF'` … `EOF`, or a bare `<<'EOF'` … `EOF`) as Codex's own
/// lenient parser does. Anything else that breaks the grammar is an error saying where.
pub fn paths(patch: &str) -> Result<Vec<PatchPath>, PatchError> {
    let lines: Vec<&str> = patch
        .trim()
        .lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let lines = strip_heredoc(&lines);
    let Some(first) = lines.first() else {
        return Err(PatchError::Empty);
    };
    if first.trim() != BEGIN {
        return Err(PatchError::NoBegin {
            found: first.to_string(),
        });
    }
    let Some(end) = lines.iter().rposition(|line| line.trim() == END) else {
        return Err(PatchError::NoEnd);
    };
    if end == 0 {
        return Err(PatchError::NoEnd);
    }
    if let Some((offset, found)) = lines[end + 1..]
        .iter()
        .enumerate()
        .find(|(_, line)| !line.trim().is_empty())
    {
        return Err(PatchError::TrailingText {
            line: end + 2 + offset,
            found: found.to_string(),
        });
    }

    let mut out = Paths::default();
    let body = &lines[1..end];
    // Index into `body`; line numbers shown to the user are `index + 2`.
    let mut index = 0;
    while index < body.len() {
        let line = body[index];
        let number = index + 2;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            index += 1;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(ADD) {
            out.push(header_path(rest, number, ADD)?, PatchOp::Add);
            index += 1;
            while index < body.len() && !is_header(body[index]) {
                let content = body[index];
                if !content.starts_with('+') && !content.trim().is_empty() {
                    return Err(PatchError::BadAddLine {
                        line: index + 2,
                        found: content.to_string(),
                    });
                }
                index += 1;
            }
        } else if let Some(rest) = trimmed.strip_prefix(DELETE) {
            out.push(header_path(rest, number, DELETE)?, PatchOp::Delete);
            index += 1;
        } else if let Some(rest) = trimmed.strip_prefix(UPDATE) {
            let from = header_path(rest, number, UPDATE)?;
            index += 1;
            let mut to = None;
            if let Some(rest) = body.get(index).and_then(|l| l.trim().strip_prefix(MOVE)) {
                to = Some(header_path(rest, index + 2, MOVE)?);
                index += 1;
            }
            let mut changes = 0;
            while index < body.len() && !is_header(body[index]) {
                let content = body[index];
                let marker = content.trim();
                let ok = content.starts_with([' ', '+', '-'])
                    || content.is_empty()
                    || marker.starts_with("@@")
                    || marker == END_OF_FILE;
                if !ok {
                    return Err(PatchError::BadUpdateLine {
                        line: index + 2,
                        found: content.to_string(),
                    });
                }
                changes += 1;
                index += 1;
            }
            match to {
                Some(to) => {
                    out.push(from, PatchOp::MoveFrom);
                    out.push(to, PatchOp::MoveTo);
                }
                None if changes == 0 => {
                    return Err(PatchError::EmptyUpdate {
                        line: number,
                        path: from,
                    });
                }
                None => out.push(from, PatchOp::Update),
            }
        } else if trimmed.starts_with(MOVE) {
            return Err(PatchError::StrayMove { line: number });
        } else {
            return Err(PatchError::ExpectedHeader {
                line: number,
                found: line.to_string(),
            });
        }
    }
    if out.list.is_empty() {
        return Err(PatchError::NoHunks);
    }
    Ok(out.list)
}

/// The envelope inside a shell command, if the command runs `apply_patch` (or `applypatch`):
/// `None` when it does not, `Some(Err)` when it does but the envelope is malformed.
///
/// Finds `apply_patch <<'EOF' … EOF` heredocs and `apply_patch "*** Begin Patch…"` alike,
/// anywhere in the string (e.g. the script of `bash -lc`).
pub fn paths_in_command(command: &str) -> Option<Result<Vec<PatchPath>, PatchError>> {
    if !mentions_apply_patch(command) {
        return None;
    }
    let Some(begin) = command.find(BEGIN) else {
        // `apply_patch` with the envelope somewhere we can't see (a file, a variable).
        return None;
    };
    let rest = &command[begin..];
    let Some(end) = rest.rfind(END) else {
        return Some(Err(PatchError::NoEnd));
    };
    Some(paths(&rest[..end + END.len()]))
}

/// The paths an argv-style shell call touches, if it runs `apply_patch`: Codex's
/// `["apply_patch", "*** Begin Patch…"]` and `["bash", "-lc", "apply_patch <<'EOF' …"]` forms.
pub fn paths_in_argv<S: AsRef<str>>(argv: &[S]) -> Option<Result<Vec<PatchPath>, PatchError>> {
    let first = argv.first()?.as_ref();
    let program = first.rsplit('/').next().unwrap_or(first);
    if matches!(program, "apply_patch" | "applypatch") {
        return match argv.get(1) {
            Some(patch) => Some(paths(patch.as_ref())),
            None => Some(Err(PatchError::Empty)),
        };
    }
    argv.iter().find_map(|arg| paths_in_command(arg.as_ref()))
}

/// Collects `(path, op)` pairs once each, in first-seen order.
#[derive(Default)]
struct Paths {
    list: Vec<PatchPath>,
}

impl Paths {
    fn push(&mut self, path: String, op: PatchOp) {
        if !self.list.iter().any(|p| p.path == path && p.op == op) {
            self.list.push(PatchPath { path, op });
        }
    }
}

fn header_path(rest: &str, line: usize, header: &'static str) -> Result<String, PatchError> {
    let path = rest.trim();
    if path.is_empty() {
        Err(PatchError::MissingPath { line, header })
    } else {
        Ok(path.to_string())
    }
}

fn is_header(line: &str) -> bool {
    let line = line.trim();
    line.starts_with(ADD) || line.starts_with(UPDATE) || line.starts_with(DELETE)
}

/// Drops a heredoc wrapper: a first line holding `<<TAG` (quoted or not, optionally after
/// `apply_patch`) and a last line that is `TAG`.
fn strip_heredoc<'a>(lines: &'a [&'a str]) -> &'a [&'a str] {
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return lines;
    };
    if lines.len() < 2 || first.trim() == BEGIN {
        return lines;
    }
    let Some(at) = first.find("<<") else {
        return lines;
    };
    let tag = first[at + 2..]
        .trim()
        .trim_start_matches('-')
        .trim_matches(|c| c == '\'' || c == '"');
    if !tag.is_empty() && last.trim() == tag {
        &lines[1..lines.len() - 1]
    } else {
        lines
    }
}

fn mentions_apply_patch(command: &str) -> bool {
    ["apply_patch", "applypatch"].iter().any(|name| {
        command.match_indices(name).any(|(at, _)| {
            let before = command[..at].chars().next_back();
            let after = command[at + name.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !word(before) && !word(after)
        })
    })
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;

    fn p(path: &str, op: PatchOp) -> PatchPath {
        PatchPath {
            path: path.to_string(),
            op,
        }
    }

    const TWO_FILES: &str = "*** Begin Patch
*** Update File: src/lib.rs
@@ fn main
 context
-old
+new
*** Add File: docs/notes.md
+# Notes
+
*** End Patch
";

    #[test]
    fn update_and_add() {
        assert_eq!(
            paths(TWO_FILES).unwrap(),
            vec![
                p("src/lib.rs", PatchOp::Update),
                p("docs/notes.md", PatchOp::Add)
            ]
        );
    }

    #[test]
    fn delete_and_move() {
        let patch = "*** Begin Patch\n*** Delete File: old.txt\n*** Update File: a.rs\n\
                     *** Move to: b.rs\n@@\n-x\n+y\n*** End of File\n*** End Patch";
        assert_eq!(
            paths(patch).unwrap(),
            vec![
                p("old.txt", PatchOp::Delete),
                p("a.rs", PatchOp::MoveFrom),
                p("b.rs", PatchOp::MoveTo)
            ]
        );
    }

    #[test]
    fn pure_rename_is_allowed() {
        let patch = "*** Begin Patch\n*** Update File: a.rs\n*** Move to: b.rs\n*** End Patch";
        assert_eq!(
            paths(patch).unwrap(),
            vec![p("a.rs", PatchOp::MoveFrom), p("b.rs", PatchOp::MoveTo)]
        );
    }

    #[test]
    fn crlf_and_surrounding_whitespace() {
        let patch = format!("\n  \r\n{}\r\n  \n", TWO_FILES.replace('\n', "\r\n"));
        assert_eq!(paths(&patch).unwrap().len(), 2);
    }

    #[test]
    fn duplicates_once_in_order() {
        let patch = "*** Begin Patch\n*** Update File: a.rs\n@@\n-x\n+y\n\
                     *** Update File: b.rs\n@@\n-x\n+y\n*** Update File: a.rs\n@@\n-z\n+w\n\
                     *** End Patch";
        assert_eq!(
            paths(patch).unwrap(),
            vec![p("a.rs", PatchOp::Update), p("b.rs", PatchOp::Update)]
        );
    }

    #[test]
    fn heredoc_wrapper() {
        let patch = format!("apply_patch <<'EOF'\n{TWO_FILES}EOF\n");
        assert_eq!(paths(&patch).unwrap().len(), 2);
        let bare = format!("<<\"PATCH\"\n{TWO_FILES}PATCH");
        assert_eq!(paths(&bare).unwrap().len(), 2);
    }

    #[test]
    fn blank_lines_inside_an_update_are_context() {
        let patch = "*** Begin Patch\n*** Update File: a.rs\n@@\n a\n\n-b\n+c\n*** End Patch";
        assert_eq!(paths(patch).unwrap(), vec![p("a.rs", PatchOp::Update)]);
    }

    #[test]
    fn absolute_paths_are_kept() {
        let patch = "*** Begin Patch\n*** Delete File: /repo/x.txt\n*** End Patch";
        assert_eq!(
            paths(patch).unwrap(),
            vec![p("/repo/x.txt", PatchOp::Delete)]
        );
    }

    #[test]
    fn malformed_envelopes_say_what_is_wrong() {
        assert_eq!(paths("  "), Err(PatchError::Empty));
        assert!(matches!(
            paths("*** Update File: a\n*** End Patch"),
            Err(PatchError::NoBegin { .. })
        ));
        assert_eq!(
            paths("*** Begin Patch\n*** Delete File: a"),
            Err(PatchError::NoEnd)
        );
        assert_eq!(
            paths("*** Begin Patch\n*** End Patch"),
            Err(PatchError::NoHunks)
        );
        assert_eq!(
            paths("*** Begin Patch\n*** End Patch\nrm -rf /"),
            Err(PatchError::TrailingText {
                line: 3,
                found: "rm -rf /".to_string()
            })
        );
        assert_eq!(
            paths("*** Begin Patch\nhello\n*** End Patch"),
            Err(PatchError::ExpectedHeader {
                line: 2,
                found: "hello".to_string()
            })
        );
        assert_eq!(
            paths("*** Begin Patch\n*** Add File: a\nnot a plus\n*** End Patch"),
            Err(PatchError::BadAddLine {
                line: 3,
                found: "not a plus".to_string()
            })
        );
        assert_eq!(
            paths("*** Begin Patch\n*** Update File: a\n*junk\n*** End Patch"),
            Err(PatchError::BadUpdateLine {
                line: 3,
                found: "*junk".to_string()
            })
        );
        assert_eq!(
            paths("*** Begin Patch\n*** Update File: a\n*** End Patch"),
            Err(PatchError::EmptyUpdate {
                line: 2,
                path: "a".to_string()
            })
        );
        assert_eq!(
            paths("*** Begin Patch\n*** Delete File:   \n*** End Patch"),
            Err(PatchError::MissingPath {
                line: 2,
                header: DELETE
            })
        );
        assert_eq!(
            paths("*** Begin Patch\n*** Delete File: a\n*** Move to: b\n*** End Patch"),
            Err(PatchError::StrayMove { line: 3 })
        );
        let message = paths("*** Begin Patch\nhello\n*** End Patch")
            .unwrap_err()
            .to_string();
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn shell_heredoc_inside_bash_lc() {
        let script = format!("cd /repo && apply_patch <<'EOF'\n{TWO_FILES}EOF\n");
        let found = paths_in_argv(&["bash", "-lc", script.as_str()])
            .unwrap()
            .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(paths_in_command(&script).unwrap().unwrap().len(), 2);
    }

    #[test]
    fn argv_form() {
        let found = paths_in_argv(&["apply_patch", TWO_FILES]).unwrap().unwrap();
        assert_eq!(found[0], p("src/lib.rs", PatchOp::Update));
        let found = paths_in_argv(&["/usr/bin/applypatch", TWO_FILES])
            .unwrap()
            .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(
            paths_in_argv(&["apply_patch"]),
            Some(Err(PatchError::Empty))
        );
    }

    #[test]
    fn commands_without_apply_patch_are_not_patches() {
        assert_eq!(paths_in_command("cargo test"), None);
        assert_eq!(paths_in_argv(&["bash", "-lc", "ls -la"]), None);
        // The envelope text alone is not a call to apply_patch.
        assert_eq!(paths_in_command(TWO_FILES), None);
        // Nor is a longer word that contains the name.
        assert_eq!(
            paths_in_command(&format!("my_apply_patch_x '{TWO_FILES}'")),
            None
        );
        let broken = "apply_patch <<'EOF'\n*** Begin Patch\n*** Delete File: a\nEOF";
        assert_eq!(paths_in_command(broken), Some(Err(PatchError::NoEnd)));
    }
}
