//! The file tools: `fs.read`, `fs.write`, `fs.list`, `fs.delete`, `fs.move`.
//!
//! Paths are resolved (symlinks and `..`) before the broker sees them, and then opened with
//! `openat2(RESOLVE_NO_SYMLINKS)`, so a directory swapped for a symlink between the decision
//! and the act makes the call fail instead of reaching outside what was granted. Changes
//! are made relative to the parent directory's descriptor and are atomic (a temporary file,
//! fsync, rename). Every change keeps what undo needs: the state before (contents as blobs
//! in the undo journal, modes, symlink targets) and a digest of the state after, so an undo
//! after a later change refuses instead of destroying it.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::paths::{resolve, resource};
use crate::spec::{Requirement, Risk, ToolError};
use crate::typed::{CallContext, Ran, Typed, TypedTool};
use crate::undo::{UndoJournal, sha256_hex};
use crate::{ToolEnv, Tools};

/// Registers the file tools.
pub fn register(tools: &mut Tools) {
    tools.register(Typed::new(FsRead));
    tools.register(Typed::new(FsWrite));
    tools.register(Typed::new(FsList));
    tools.register(Typed::new(FsDelete));
    tools.register(Typed::new(FsMove));
}

/// The most bytes one `fs.read` returns.
pub const MAX_READ_BYTES: u64 = 4 << 20;
/// The most bytes one call snapshots for undo; beyond it the call needs `keep_undo: false`.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 << 20;

/// How file contents travel in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Text, as it is.
    #[default]
    Utf8,
    /// Any bytes, base64 (standard alphabet, padded).
    Base64,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(format!("cannot {what} {}: {e}", path.display()))
}

fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// Parses an octal mode such as `0644` or `755`.
fn parse_mode(text: &str) -> Result<u32, ToolError> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
        _ => Err(ToolError::InvalidArgs(format!(
            "field `mode`: {text:?} is not an octal file mode such as \"0644\""
        ))),
    }
}

/// Opens a directory that must not be reached through any symlink.
fn open_dir(path: &Path) -> Result<OwnedFd, ToolError> {
    rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            ToolError::Failed(format!(
                "{} changed into a symlink after it was checked; refusing to follow it",
                path.display()
            ))
        } else {
            io_err("open the directory", path, e)
        }
    })
}

/// Splits a resolved path into its parent's descriptor and its file name.
fn parent_and_name(path: &Path) -> Result<(OwnedFd, std::ffi::OsString), ToolError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ToolError::Failed(format!(
            "{} has no parent directory",
            path.display()
        )));
    };
    Ok((open_dir(parent)?, name.to_os_string()))
}

/// A principal other than the owner may not touch a file with several hard links: the
/// same bytes are reachable through another path that its grant may not cover.
fn check_links(
    cx: &CallContext<'_>,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), ToolError> {
    if !cx.principal.is_owner() && meta.is_file() && meta.nlink() > 1 {
        return Err(ToolError::Failed(format!(
            "{} has {} hard links, so its contents are also reachable outside this path; only the owner may use it",
            path.display(),
            meta.nlink()
        )));
    }
    Ok(())
}

/// What is at a path: the unit of undo snapshots and of "changed since" checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    /// Nothing.
    Absent,
    /// A regular file: its mode and the SHA-256 of its bytes (the blob that holds them, in
    /// a snapshot taken for undo).
    File {
        /// Permission bits.
        mode: u32,
        /// SHA-256 of the contents.
        blob: String,
        /// Size in bytes.
        size: u64,
    },
    /// A symlink and its target.
    Symlink {
        /// What it points at.
        target: String,
    },
    /// A directory, its mode and its entries, by name.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Entries, sorted by name.
        entries: Vec<(String, Node)>,
    },
}

/// Takes the state of `path` (not following a final symlink). With `journal`, file contents
/// are kept as blobs so the state can be restored; `budget` bounds the bytes read.
fn snapshot(
    path: &Path,
    journal: Option<&UndoJournal>,
    budget: &mut u64,
) -> Result<Node, ToolError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Node::Absent),
        Err(e) => return Err(io_err("inspect", path, e)),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(|e| io_err("read the link", path, e))?;
        return Ok(Node::Symlink {
            target: target.to_string_lossy().into_owned(),
        });
    }
    if ft.is_file() {
        if meta.len() > *budget {
            return Err(ToolError::Failed(format!(
                "{} is too large to keep for undo (over {} MiB in this call); pass \"keep_undo\": false to do it without undo",
                path.display(),
                MAX_SNAPSHOT_BYTES >> 20
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| io_err("read", path, e))?;
        *budget = budget.saturating_sub(bytes.len() as u64);
        let blob = match journal {
            Some(j) => j.put_blob(&bytes)?,
            None => sha256_hex(&bytes),
        };
        return Ok(Node::File {
            mode: meta.permissions().mode() & 0o7777,
            blob,
            size: bytes.len() as u64,
        });
    }
    if ft.is_dir() {
        let mut entries = Vec::new();
        let dir = std::fs::read_dir(path).map_err(|e| io_err("list", path, e))?;
        for entry in dir {
            let entry = entry.map_err(|e| io_err("list", path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push((name, snapshot(&entry.path(), journal, budget)?));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(Node::Dir {
            mode: meta.permissions().mode() & 0o7777,
            entries,
        });
    }
    Err(ToolError::Failed(format!(
        "{} is not a file, directory or symlink (a socket, FIFO or device); the file tools leave it alone",
        path.display()
    )))
}

/// The state of `path` now, compared by content hash.
fn current(path: &Path) -> Result<Node, ToolError> {
    let mut budget = u64::MAX;
    snapshot(path, None, &mut budget)
}

/// Writes `bytes` to `name` in `dir` atomically: a temporary file with the final mode,
/// fsync, rename over the target, fsync of the directory.
fn write_at(
    dir: &OwnedFd,
    dir_path: &Path,
    name: &std::ffi::OsStr,
    bytes: &[u8],
    mode: u32,
) -> Result<(), ToolError> {
    let tmp = format!(".gyrus-tmp-{}", crate::registry::random_suffix());
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| io_err("create a file in", dir_path, e))?;
    let result = (|| {
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, bytes)?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        file.sync_all()?;
        rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
        rustix::fs::fsync(dir)?;
        Ok::<(), std::io::Error>(())
    })();
    if let Err(e) = result {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        return Err(io_err("write", &dir_path.join(name), e));
    }
    Ok(())
}

/// Puts `node` back at `path` (which must be absent).
fn restore(path: &Path, node: &Node, journal: &UndoJournal) -> Result<(), ToolError> {
    let (dir, name) = parent_and_name(path)?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    match node {
        Node::Absent => Ok(()),
        Node::File { mode, blob, .. } => {
            let bytes = journal.blob(blob)?;
            write_at(&dir, parent, &name, &bytes, *mode)
        }
        Node::Symlink { target } => rustix::fs::symlinkat(target.as_str(), &dir, &name)
            .map_err(|e| io_err("recreate the symlink", path, e)),
        Node::Dir { mode, entries } => {
            rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(0o700))
                .map_err(|e| io_err("recreate the directory", path, e))?;
            for (child, node) in entries {
                restore(&path.join(child), node, journal)?;
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| io_err("set the mode of", path, e))
        }
    }
}

/// Removes whatever is at `path` (not following a final symlink).
fn remove(path: &Path) -> Result<(), ToolError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| io_err("inspect", path, e))?;
    let (dir, name) = parent_and_name(path)?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(|e| io_err("delete", path, e))?;
    } else {
        rustix::fs::unlinkat(&dir, &name, AtFlags::empty())
            .map_err(|e| io_err("delete", path, e))?;
    }
    rustix::fs::fsync(&dir).map_err(|e| io_err("sync", path, e))
}

fn changed(path: &Path, expected: &Node) -> Result<(), ToolError> {
    let now = current(path)?;
    if &now != expected {
        return Err(ToolError::Conflict(format!(
            "{} changed since the call ({}); undo refuses so as not to destroy the newer change",
            path.display(),
            describe_change(expected, &now)
        )));
    }
    Ok(())
}

fn describe_change(expected: &Node, now: &Node) -> String {
    match (expected, now) {
        (Node::Absent, _) => "something was created there".into(),
        (_, Node::Absent) => "it was removed".into(),
        (
            Node::File {
                mode: a, blob: x, ..
            },
            Node::File {
                mode: b, blob: y, ..
            },
        ) if x == y => {
            format!(
                "its mode changed from {} to {}",
                mode_text(*a),
                mode_text(*b)
            )
        }
        (Node::File { .. }, Node::File { .. }) => "its contents changed".into(),
        _ => "it was replaced".into(),
    }
}

fn path_of(text: &str) -> PathBuf {
    PathBuf::from(text)
}

fn undo_data<T: Serialize>(data: &T) -> Result<serde_json::Value, ToolError> {
    serde_json::to_value(data).map_err(ToolError::internal)
}

fn parse_undo<T: serde::de::DeserializeOwned>(data: serde_json::Value) -> Result<T, ToolError> {
    serde_json::from_value(data)
        .map_err(|e| ToolError::Internal(format!("unreadable undo record: {e}")))
}

// ---------------------------------------------------------------------------------------
// fs.read

/// Arguments of `fs.read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// Absolute path of the file. Symlinks are followed; the broker sees the real path.
    pub path: String,
    /// First byte to read.
    #[serde(default)]
    pub offset: u64,
    /// The most bytes to return (default 1 MiB, at most 4 MiB); `truncated` says if there
    /// was more.
    pub max_bytes: Option<u64>,
    /// How to return the bytes: `utf8` (default; invalid UTF-8 falls back to base64) or
    /// `base64`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// Output of `fs.read`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReadOutput {
    /// The real path read.
    pub path: String,
    /// The file's size.
    pub size: u64,
    /// Its permission bits, octal.
    pub mode: String,
    /// The bytes read.
    pub content: String,
    /// How `content` is encoded.
    pub encoding: Encoding,
    /// True if the file goes on past what was returned.
    pub truncated: bool,
}

/// `fs.read`.
#[derive(Debug)]
pub struct FsRead;

impl TypedTool for FsRead {
    type Args = ReadArgs;
    type Output = ReadOutput;
    const NAME: &'static str = "fs.read";
    const DESCRIPTION: &'static str = "Read a file (or part of it). Returns its contents as UTF-8 text or base64, its size and mode.";
    const RISK: Risk = Risk::Read;

    fn requirements(&self, args: &ReadArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        if args.max_bytes.is_some_and(|m| m > MAX_READ_BYTES) {
            return Err(ToolError::InvalidArgs(format!(
                "field `max_bytes`: at most {MAX_READ_BYTES}"
            )));
        }
        let path = resolve(&args.path, true)?;
        Ok(vec![Requirement::new("fs.read", resource(&path)?)?])
    }

    fn run(&self, cx: &CallContext<'_>, args: ReadArgs) -> Result<Ran<ReadOutput>, ToolError> {
        let path = resolve(&args.path, true)?;
        let fd = rustix::fs::openat2(
            rustix::fs::CWD,
            &path,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| io_err("open", &path, e))?;
        let mut file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(|e| io_err("inspect", &path, e))?;
        if !meta.is_file() {
            return Err(ToolError::Failed(format!(
                "{} is not a regular file{}",
                path.display(),
                if meta.is_dir() {
                    "; use fs.list for a directory"
                } else {
                    ""
                }
            )));
        }
        check_links(cx, &path, &meta)?;
        let max = args.max_bytes.unwrap_or(1 << 20);
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(args.offset))
            .map_err(|e| io_err("seek in", &path, e))?;
        let mut bytes = Vec::new();
        (&mut file)
            .take(max)
            .read_to_end(&mut bytes)
            .map_err(|e| io_err("read", &path, e))?;
        let truncated = args.offset.saturating_add(bytes.len() as u64) < meta.len();
        let (content, encoding) = match args.encoding {
            Encoding::Utf8 => match String::from_utf8(bytes) {
                Ok(text) => (text, Encoding::Utf8),
                Err(e) => (
                    base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    Encoding::Base64,
                ),
            },
            Encoding::Base64 => (
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                Encoding::Base64,
            ),
        };
        Ok(Ran::output(ReadOutput {
            path: path.display().to_string(),
            size: meta.len(),
            mode: mode_text(meta.permissions().mode()),
            content,
            encoding,
            truncated,
        }))
    }
}

// ---------------------------------------------------------------------------------------
// fs.write

/// Arguments of `fs.write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// Absolute path of the file to create or replace. Symlinks are followed.
    pub path: String,
    /// The new contents.
    pub content: String,
    /// How `content` is encoded: `utf8` (default) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Octal permission bits such as "0644" (default: the existing file's, else 0644).
    pub mode: Option<String>,
    /// Create missing parent directories (undo removes them again if they are empty).
    #[serde(default)]
    pub create_parents: bool,
    /// Keep what undo needs (default true).
    #[serde(default = "yes")]
    pub keep_undo: bool,
}

fn yes() -> bool {
    true
}

/// Output of `fs.write`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WriteOutput {
    /// The real path written.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of the new contents.
    pub sha256: String,
    /// The file's mode, octal.
    pub mode: String,
    /// True if the file did not exist before.
    pub created: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct WriteUndo {
    path: String,
    before: Node,
    after: Node,
    created_dirs: Vec<String>,
}

/// `fs.write`.
#[derive(Debug)]
pub struct FsWrite;

impl TypedTool for FsWrite {
    type Args = WriteArgs;
    type Output = WriteOutput;
    const NAME: &'static str = "fs.write";
    const DESCRIPTION: &'static str = "Create or replace a file atomically, optionally setting its mode. Undoable: `gyrus undo` restores the previous contents and mode byte for byte.";
    const RISK: Risk = Risk::Write;
    const UNDOABLE: bool = true;

    fn requirements(
        &self,
        args: &WriteArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        if let Some(m) = &args.mode {
            parse_mode(m)?;
        }
        let path = resolve(&args.path, true)?;
        Ok(vec![Requirement::new("fs.write", resource(&path)?)?])
    }

    fn run(&self, cx: &CallContext<'_>, args: WriteArgs) -> Result<Ran<WriteOutput>, ToolError> {
        let bytes = match args.encoding {
            Encoding::Utf8 => args.content.into_bytes(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(args.content.as_bytes())
                .map_err(|e| ToolError::InvalidArgs(format!("field `content`: not base64: {e}")))?,
        };
        let path = resolve(&args.path, true)?;
        let existing = match std::fs::symlink_metadata(&path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("inspect", &path, e)),
        };
        if let Some(m) = &existing {
            if !m.is_file() {
                return Err(ToolError::Failed(format!(
                    "{} exists and is not a regular file",
                    path.display()
                )));
            }
            check_links(cx, &path, m)?;
        }
        let mode = match &args.mode {
            Some(m) => parse_mode(m)?,
            None => existing
                .as_ref()
                .map_or(0o644, |m| m.permissions().mode() & 0o7777),
        };
        let mut budget = MAX_SNAPSHOT_BYTES;
        let before = if args.keep_undo {
            snapshot(&path, Some(cx.undo), &mut budget)?
        } else {
            Node::Absent
        };
        let mut created_dirs = Vec::new();
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            if !args.create_parents {
                return Err(ToolError::Failed(format!(
                    "{} does not exist; pass \"create_parents\": true to create it",
                    parent.display()
                )));
            }
            let mut missing = Vec::new();
            let mut p = parent;
            while !p.exists() {
                missing.push(p.to_path_buf());
                match p.parent() {
                    Some(up) => p = up,
                    None => break,
                }
            }
            for dir in missing.iter().rev() {
                std::fs::create_dir(dir).map_err(|e| io_err("create", dir, e))?;
                created_dirs.push(dir.display().to_string());
            }
        }
        let (dir, name) = parent_and_name(&path)?;
        write_at(
            &dir,
            path.parent().unwrap_or(Path::new("/")),
            &name,
            &bytes,
            mode,
        )?;
        let sha256 = sha256_hex(&bytes);
        let after = Node::File {
            mode,
            blob: sha256.clone(),
            size: bytes.len() as u64,
        };
        let undo = if args.keep_undo {
            Some(undo_data(&WriteUndo {
                path: path.display().to_string(),
                before,
                after,
                created_dirs,
            })?)
        } else {
            None
        };
        Ok(Ran {
            output: WriteOutput {
                path: path.display().to_string(),
                bytes: bytes.len() as u64,
                sha256,
                mode: mode_text(mode),
                created: existing.is_none(),
            },
            undo,
        })
    }

    fn undo(
        &self,
        cx: &CallContext<'_>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let u: WriteUndo = parse_undo(data)?;
        let path = path_of(&u.path);
        changed(&path, &u.after)?;
        if !matches!(u.before, Node::File { .. }) {
            remove(&path)?;
        }
        // A file is put back by an atomic replace: a crash leaves the new or the old bytes.
        restore(&path, &u.before, cx.undo)?;
        for dir in u.created_dirs.iter().rev() {
            // Only if empty: something else may have been put there since.
            let _ = std::fs::remove_dir(dir);
        }
        Ok(serde_json::json!({"path": u.path, "restored": u.before != Node::Absent}))
    }
}

// ---------------------------------------------------------------------------------------
// fs.list

/// Arguments of `fs.list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Absolute path of the directory.
    pub path: String,
    /// Descend into subdirectories (symlinks are listed, not followed).
    #[serde(default)]
    pub recursive: bool,
    /// The most entries to return (default 1000, at most 100000).
    pub max_entries: Option<usize>,
}

/// One entry of a listing.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListEntry {
    /// Path relative to the listed directory.
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Size in bytes (files).
    pub size: u64,
    /// Permission bits, octal.
    pub mode: String,
    /// Last modification, Unix seconds.
    pub modified: i64,
}

/// Output of `fs.list`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOutput {
    /// The real path listed.
    pub path: String,
    /// The entries, sorted by name.
    pub entries: Vec<ListEntry>,
    /// True if there were more than `max_entries`.
    pub truncated: bool,
}

/// `fs.list`.
#[derive(Debug)]
pub struct FsList;

impl TypedTool for FsList {
    type Args = ListArgs;
    type Output = ListOutput;
    const NAME: &'static str = "fs.list";
    const DESCRIPTION: &'static str = "List a directory (optionally recursively): names, kinds, sizes, modes, modification times.";
    const RISK: Risk = Risk::Read;

    fn requirements(&self, args: &ListArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        if args.max_entries.is_some_and(|m| m > 100_000) {
            return Err(ToolError::InvalidArgs(
                "field `max_entries`: at most 100000".into(),
            ));
        }
        let path = resolve(&args.path, true)?;
        Ok(vec![Requirement::new("fs.list", resource(&path)?)?])
    }

    fn run(&self, _cx: &CallContext<'_>, args: ListArgs) -> Result<Ran<ListOutput>, ToolError> {
        let root = resolve(&args.path, true)?;
        drop(open_dir(&root)?);
        let max = args.max_entries.unwrap_or(1000);
        let mut entries = Vec::new();
        let mut truncated = false;
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| io_err("list", &dir, e))?
                .filter_map(Result::ok)
                .collect();
            names.sort_by_key(|e| e.file_name());
            for entry in names {
                if entries.len() >= max {
                    truncated = true;
                    break;
                }
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                let ft = meta.file_type();
                let kind = if ft.is_symlink() {
                    "symlink"
                } else if ft.is_dir() {
                    "dir"
                } else if ft.is_file() {
                    "file"
                } else {
                    "other"
                };
                let name = rel.join(entry.file_name());
                if args.recursive && ft.is_dir() {
                    stack.push(name.clone());
                }
                entries.push(ListEntry {
                    name: name.to_string_lossy().into_owned(),
                    kind: kind.into(),
                    size: if ft.is_file() { meta.len() } else { 0 },
                    mode: mode_text(meta.permissions().mode()),
                    modified: meta.mtime(),
                });
            }
            if truncated {
                break;
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Ran::output(ListOutput {
            path: root.display().to_string(),
            entries,
            truncated,
        }))
    }
}

// ---------------------------------------------------------------------------------------
// fs.delete

/// Arguments of `fs.delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// Absolute path of a file, symlink (the link itself is deleted) or directory.
    pub path: String,
    /// Delete a directory and everything in it.
    #[serde(default)]
    pub recursive: bool,
    /// Keep what undo needs (default true; at most 256 MiB of contents per call).
    #[serde(default = "yes")]
    pub keep_undo: bool,
}

/// Output of `fs.delete`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteOutput {
    /// The path deleted.
    pub path: String,
    /// `file`, `symlink` or `dir`.
    pub kind: String,
    /// Entries deleted (1 for a file).
    pub entries: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeleteUndo {
    path: String,
    before: Node,
}

fn count(node: &Node) -> u64 {
    match node {
        Node::Absent => 0,
        Node::Dir { entries, .. } => 1 + entries.iter().map(|(_, n)| count(n)).sum::<u64>(),
        _ => 1,
    }
}

/// `fs.delete`.
#[derive(Debug)]
pub struct FsDelete;

impl TypedTool for FsDelete {
    type Args = DeleteArgs;
    type Output = DeleteOutput;
    const NAME: &'static str = "fs.delete";
    const DESCRIPTION: &'static str = "Delete a file, a symlink or (with recursive) a directory. Undoable: `gyrus undo` restores contents and modes byte for byte.";
    const RISK: Risk = Risk::Write;
    const UNDOABLE: bool = true;

    fn requirements(
        &self,
        args: &DeleteArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        let path = resolve(&args.path, false)?;
        let mut req = Requirement::new("fs.delete", resource(&path)?)?;
        if args.recursive {
            req = req.with_attr("recursive", true);
        }
        Ok(vec![req])
    }

    fn run(&self, cx: &CallContext<'_>, args: DeleteArgs) -> Result<Ran<DeleteOutput>, ToolError> {
        let path = resolve(&args.path, false)?;
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io_err("delete", &path, e))?;
        check_links(cx, &path, &meta)?;
        if meta.is_dir() && !args.recursive {
            let empty = std::fs::read_dir(&path)
                .map_err(|e| io_err("list", &path, e))?
                .next()
                .is_none();
            if !empty {
                return Err(ToolError::Failed(format!(
                    "{} is a directory that is not empty; pass \"recursive\": true to delete it and everything in it",
                    path.display()
                )));
            }
        }
        let mut budget = MAX_SNAPSHOT_BYTES;
        let before = if args.keep_undo {
            snapshot(&path, Some(cx.undo), &mut budget)?
        } else {
            current_shallow(&meta)
        };
        remove(&path)?;
        let kind = match &before {
            Node::Dir { .. } => "dir",
            Node::Symlink { .. } => "symlink",
            _ => "file",
        };
        let undo = if args.keep_undo {
            Some(undo_data(&DeleteUndo {
                path: path.display().to_string(),
                before: before.clone(),
            })?)
        } else {
            None
        };
        Ok(Ran {
            output: DeleteOutput {
                path: path.display().to_string(),
                kind: kind.into(),
                entries: count(&before).max(1),
            },
            undo,
        })
    }

    fn undo(
        &self,
        cx: &CallContext<'_>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let u: DeleteUndo = parse_undo(data)?;
        let path = path_of(&u.path);
        changed(&path, &Node::Absent)?;
        restore(&path, &u.before, cx.undo)?;
        Ok(serde_json::json!({"path": u.path, "restored": count(&u.before)}))
    }
}

fn current_shallow(meta: &std::fs::Metadata) -> Node {
    if meta.is_dir() {
        Node::Dir {
            mode: meta.permissions().mode() & 0o7777,
            entries: Vec::new(),
        }
    } else {
        Node::Absent
    }
}

// ---------------------------------------------------------------------------------------
// fs.move

/// Arguments of `fs.move`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveArgs {
    /// Absolute path of what to move (a symlink is moved itself).
    pub from: String,
    /// Absolute path to move it to (on the same filesystem).
    pub to: String,
    /// Replace what is at `to` (undo puts it back).
    #[serde(default)]
    pub overwrite: bool,
    /// Keep what undo needs (default true).
    #[serde(default = "yes")]
    pub keep_undo: bool,
}

/// Output of `fs.move`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MoveOutput {
    /// Where it was.
    pub from: String,
    /// Where it is.
    pub to: String,
    /// True if something at `to` was replaced.
    pub replaced: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct MoveUndo {
    from: String,
    to: String,
    moved: Node,
    replaced: Node,
}

/// `fs.move`.
#[derive(Debug)]
pub struct FsMove;

impl TypedTool for FsMove {
    type Args = MoveArgs;
    type Output = MoveOutput;
    const NAME: &'static str = "fs.move";
    const DESCRIPTION: &'static str = "Move or rename a file, symlink or directory within one filesystem. Undoable: `gyrus undo` moves it back and restores anything it replaced.";
    const RISK: Risk = Risk::Write;
    const UNDOABLE: bool = true;

    fn requirements(&self, args: &MoveArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        let from = resolve(&args.from, false)?;
        let to = resolve(&args.to, false)?;
        Ok(vec![
            Requirement::new("fs.move", resource(&from)?)?,
            Requirement::new("fs.move", resource(&to)?)?.with_attr("role", "destination"),
        ])
    }

    fn run(&self, cx: &CallContext<'_>, args: MoveArgs) -> Result<Ran<MoveOutput>, ToolError> {
        let from = resolve(&args.from, false)?;
        let to = resolve(&args.to, false)?;
        if to.starts_with(&from) {
            return Err(ToolError::Failed(format!(
                "cannot move {} into itself",
                from.display()
            )));
        }
        let meta = std::fs::symlink_metadata(&from).map_err(|e| io_err("move", &from, e))?;
        check_links(cx, &from, &meta)?;
        let target = std::fs::symlink_metadata(&to).ok();
        if target.is_some() && !args.overwrite {
            return Err(ToolError::Failed(format!(
                "{} already exists; pass \"overwrite\": true to replace it",
                to.display()
            )));
        }
        let mut budget = MAX_SNAPSHOT_BYTES;
        let (moved, replaced) = if args.keep_undo {
            let replaced = snapshot(&to, Some(cx.undo), &mut budget)?;
            (current(&from)?, replaced)
        } else {
            (Node::Absent, Node::Absent)
        };
        if let (Some(t), true) = (&target, meta.is_dir())
            && t.is_dir()
        {
            // rename(2) only replaces an empty directory; remove it first (kept above).
            remove(&to)?;
        }
        let (from_dir, from_name) = parent_and_name(&from)?;
        let (to_dir, to_name) = parent_and_name(&to)?;
        rustix::fs::renameat(&from_dir, &from_name, &to_dir, &to_name).map_err(|e| {
            if e == rustix::io::Errno::XDEV {
                ToolError::Failed(format!(
                    "{} and {} are on different filesystems; copy with fs.read and fs.write, then fs.delete",
                    from.display(),
                    to.display()
                ))
            } else {
                io_err("move", &from, e)
            }
        })?;
        rustix::fs::fsync(&to_dir).map_err(|e| io_err("sync", &to, e))?;
        rustix::fs::fsync(&from_dir).map_err(|e| io_err("sync", &from, e))?;
        let undo = if args.keep_undo {
            Some(undo_data(&MoveUndo {
                from: from.display().to_string(),
                to: to.display().to_string(),
                moved,
                replaced,
            })?)
        } else {
            None
        };
        Ok(Ran {
            output: MoveOutput {
                from: from.display().to_string(),
                to: to.display().to_string(),
                replaced: target.is_some(),
            },
            undo,
        })
    }

    fn undo(
        &self,
        cx: &CallContext<'_>,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let u: MoveUndo = parse_undo(data)?;
        let (from, to) = (path_of(&u.from), path_of(&u.to));
        changed(&to, &u.moved)?;
        changed(&from, &Node::Absent)?;
        let (from_dir, from_name) = parent_and_name(&from)?;
        let (to_dir, to_name) = parent_and_name(&to)?;
        rustix::fs::renameat(&to_dir, &to_name, &from_dir, &from_name)
            .map_err(|e| io_err("move back", &to, e))?;
        rustix::fs::fsync(&from_dir).map_err(|e| io_err("sync", &from, e))?;
        restore(&to, &u.replaced, cx.undo)?;
        Ok(
            serde_json::json!({"from": u.to, "to": u.from, "restored_replaced": u.replaced != Node::Absent}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert_eq!(parse_mode("0o600").unwrap(), 0o600);
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn snapshots_see_contents_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/a"), "A").unwrap();
        std::fs::set_permissions(root.join("d/a"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("a", root.join("d/l")).unwrap();
        let before = current(&root.join("d")).unwrap();
        std::fs::set_permissions(root.join("d/a"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(current(&root.join("d")).unwrap(), before);
        assert_eq!(current(&root.join("nope")).unwrap(), Node::Absent);
    }
}
