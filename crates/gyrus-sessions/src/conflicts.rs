//! Conflict prediction between branches and worktrees.
//!
//! Sessions that work in separate worktrees, or on separate branches, of one repository learn
//! which files a merge of their work would conflict on before anyone merges. The prediction is
//! git's own: `git merge-tree --write-tree` (git 2.38 and newer) runs the same merge machinery
//! (`ort`) as `git merge`, but writes only objects, never a worktree, an index or a ref.
//!
//! - [`repo_info`]: where a directory sits in git (worktree, repository, branch, head).
//! - [`state_commit`]: the commit that stands for a worktree's state, uncommitted edits included
//!   if asked.
//! - [`predict`]: the outcome of merging one commit into another.
//! - [`predict_pairs`]: the predictions among several sessions' state commits.
//!
//! Every function runs the real `git` binary (no libgit2) the same way: `git -C <dir>
//! --no-pager`, `LC_ALL=C` (so that messages can be recognised), `GIT_TERMINAL_PROMPT=0`,
//! `GIT_CONFIG_NOSYSTEM=1`, `GIT_OPTIONAL_LOCKS=0` (no opportunistic index refresh under a
//! session's feet), stdin closed, `core.hooksPath` pointed at the null device (none of the
//! commands used runs hooks; this makes sure), and the variables a parent git
//! exports to its hooks (`GIT_DIR`, `GIT_INDEX_FILE`, `GIT_CONFIG_PARAMETERS`, …) removed, so that a
//! gyrus hook started from inside a git hook looks at the directory it names.
//!
//! The user's global config is read, because two things in it matter for correct answers:
//! `safe.directory`, and the clean filters (`core.autocrlf`, Git LFS's `filter.lfs.clean`) that
//! [`state_commit`] must apply to hash the working tree as `git add` would. Where global config
//! would change the answer instead, it is overridden: [`predict`] pins `merge.renames=true` and
//! `merge.directoryRenames=conflict` (git's defaults), so a prediction is what a default
//! `git merge` does; [`state_commit`] pins `commit.gpgSign=false` (no pinentry for a throwaway
//! object) and `core.splitIndex=false`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The oldest git with `git merge-tree --write-tree`.
const MIN_GIT: (u32, u32) = (2, 38);

const NULL_DEVICE: &str = if cfg!(windows) { "NUL" } else { "/dev/null" };

/// Variables a parent git sets (for its hooks, or for `git -c`) that would point our commands at
/// another repository, index or configuration than the directory we name.
const PARENT_GIT_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
];

/// Pins for `git merge-tree`: git's default merge settings, whatever the config says.
const MERGE_PINS: &[&str] = &[
    "-c",
    "merge.renames=true",
    "-c",
    "merge.directoryRenames=conflict",
];

/// The identity and date of the commit [`state_commit`] makes. Fixed, so that one state of one
/// HEAD always gives the same commit id, in every worktree and on every call.
const STATE_IDENTITY: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "gyrus"),
    ("GIT_AUTHOR_EMAIL", "gyrus@localhost"),
    ("GIT_AUTHOR_DATE", "1000000000 +0000"),
    ("GIT_COMMITTER_NAME", "gyrus"),
    ("GIT_COMMITTER_EMAIL", "gyrus@localhost"),
    ("GIT_COMMITTER_DATE", "1000000000 +0000"),
];

const STATE_MESSAGE: &str = "gyrus: uncommitted state of a worktree";

/// Why a git question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// There is no `git` on `PATH`.
    #[error("git is not installed or not on PATH: install git 2.38 or newer")]
    NotInstalled,
    /// The installed git predates `git merge-tree --write-tree`.
    #[error(
        "git {version} is too old: conflict prediction needs `git merge-tree --write-tree`, \
         new in git 2.38; install git 2.38 or newer"
    )]
    TooOld {
        /// What `git version` said, e.g. `2.34.1`.
        version: String,
    },
    /// git could not be started, or its output not read.
    #[error("could not run `{command}` in {}: {source}", .dir.display())]
    Spawn {
        /// The command, e.g. `git rev-parse --show-toplevel`.
        command: String,
        /// The directory it ran in.
        dir: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A git command failed, or said something this module does not understand.
    #[error("`{command}` failed in {} ({}): {message}", .dir.display(), describe_exit(*.code))]
    Failed {
        /// The command, e.g. `git merge-tree --write-tree --name-only --no-messages -z A B`.
        command: String,
        /// The directory it ran in.
        dir: PathBuf,
        /// Its exit status; `None` when a signal ended it.
        code: Option<i32>,
        /// The first line of its error output (the first `fatal:` or `error:` line when there is
        /// one), or what was wrong with its output.
        message: String,
    },
    /// The two commits share no history: `git merge` refuses them unless told
    /// `--allow-unrelated-histories`, so there is no merge to predict.
    #[error(
        "{ours} and {theirs} have no common history: git merge refuses to merge them without \
         --allow-unrelated-histories"
    )]
    UnrelatedHistories {
        /// The commit merged into.
        ours: String,
        /// The commit merged.
        theirs: String,
    },
    /// An empty revision, or one that git would read as an option (it starts with `-`).
    #[error("{0:?} is not a revision: it is empty or starts with `-`")]
    BadRevision(String),
    /// Work on the file system around git failed (canonicalising a path, the temporary index).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit {code}"),
        None => "killed by a signal".to_owned(),
    }
}

/// Where a directory sits in git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// The worktree's top directory (`git rev-parse --show-toplevel`), canonicalised.
    pub worktree: String,
    /// The repository's common git directory (`git rev-parse --git-common-dir`), absolute and
    /// canonicalised: the same for every worktree of one repository.
    pub repository: String,
    /// The checked-out branch's short name (`main` for `refs/heads/main`); `None` when HEAD is
    /// detached. In a repository without commits it is the branch the first commit will make.
    pub branch: Option<String>,
    /// The HEAD commit id; `None` in a repository without commits.
    pub head: Option<String>,
}

/// Where `dir` sits in git; `None` when it is not inside a git worktree (outside any repository,
/// in a bare repository, or inside a `.git` directory), which is not an error.
///
/// Runs two git processes: `git rev-parse` for the worktree, common directory and HEAD, and
/// `git symbolic-ref -q HEAD` for the branch. The branch is the symbolic ref with `refs/heads/`
/// taken off rather than `--short`'s output, which turns ambiguous when a tag shares the
/// branch's name.
pub fn repo_info(dir: &Path) -> Result<Option<RepoInfo>, GitError> {
    let args = [
        "rev-parse",
        "--path-format=absolute",
        "--show-toplevel",
        "--git-common-dir",
        "--verify",
        "-q",
        "HEAD",
    ];
    let out = run(dir, &args, &[])?;
    // `--verify -q HEAD` exits 1, after printing the rest, when HEAD names no commit yet.
    let head_known = match out.code {
        Some(0) => true,
        Some(1) => false,
        Some(128) if not_in_worktree(&out.stderr) => return Ok(None),
        _ => return Err(out.failure()),
    };
    let text = out.stdout_text();
    let mut lines = text.lines();
    let (Some(top), Some(common)) = (lines.next(), lines.next()) else {
        return Err(out.unexpected("expected the worktree and the git directory"));
    };
    // A git before 2.31 does not know `--path-format` and echoes it back.
    if top.starts_with("--") {
        check_git()?;
        return Err(out.unexpected("expected the worktree's path"));
    }
    let head = if head_known {
        match lines.next() {
            Some(id) if is_object_id(id) => Some(id.to_owned()),
            _ => return Err(out.unexpected("expected HEAD's commit id")),
        }
    } else {
        None
    };
    let worktree = canonical(top)?;
    let repository = canonical(common)?;

    let out = run(dir, &["symbolic-ref", "-q", "HEAD"], &[])?;
    let branch = match out.code {
        Some(0) => {
            let name = out.stdout_text().trim_end().to_owned();
            Some(
                name.strip_prefix("refs/heads/")
                    .map(str::to_owned)
                    .unwrap_or(name),
            )
        }
        Some(1) => None,
        _ => return Err(out.failure()),
    };
    Ok(Some(RepoInfo {
        worktree,
        repository,
        branch,
        head,
    }))
}

/// The commit that stands for a worktree's current state.
///
/// Without `include_uncommitted`, that is HEAD. With it, and tracked files (staged or not) that
/// differ from HEAD, it is a commit whose tree is the working tree's tracked files and whose
/// parent is HEAD, so merging it is merging the worktree as if its changes were committed.
/// Untracked files are left out, as `git stash` leaves them. A clean worktree gives HEAD.
/// `None` in a repository without commits.
///
/// The commit is made without touching any ref, index or file of the worktree: the index is
/// copied to a temporary file beside it, `git add -u` and `git write-tree` run on the copy, and
/// `git commit-tree` writes the commit object (with a fixed author, date and message, so one
/// state of one HEAD always has the same id). Only new objects land in the object store, where
/// `git gc` prunes them in time. `git stash create` was not used: it refreshes and rewrites the
/// real index under `index.lock`, and a session's own `git commit` running at that moment
/// would fail on the lock.
pub fn state_commit(
    worktree: &Path,
    include_uncommitted: bool,
) -> Result<Option<String>, GitError> {
    if !include_uncommitted {
        return head_commit(worktree);
    }
    let args = [
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "index",
        "HEAD",
        "HEAD^{tree}",
    ];
    let out = run(worktree, &args, &[])?;
    if out.code != Some(0) {
        // A HEAD without commits fails `HEAD^{tree}`: tell that apart from a real failure.
        return match head_commit(worktree)? {
            None => Ok(None),
            Some(_) => Err(out.failure()),
        };
    }
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    let [index, head, head_tree] = lines[..] else {
        return Err(out.unexpected("expected the index path, HEAD and its tree"));
    };
    if !is_object_id(head) || !is_object_id(head_tree) {
        return Err(out.unexpected("expected HEAD's commit and tree ids"));
    }

    let temp = TempIndex::copy_of(Path::new(index))?;
    let env = [("GIT_INDEX_FILE", temp.path.as_os_str())];
    // From the worktree's top or any subdirectory, `add -u` without a pathspec covers the
    // whole tree (git 2.0 and newer).
    run(
        worktree,
        &["-c", "core.splitIndex=false", "add", "-u"],
        &env,
    )?
    .success()?;
    let out = run(worktree, &["write-tree"], &env)?.success()?;
    let tree = out.stdout_text().trim_end().to_owned();
    if !is_object_id(&tree) {
        return Err(out.unexpected("expected a tree id"));
    }
    drop(temp);
    if tree == head_tree {
        return Ok(Some(head.to_owned()));
    }

    let identity: Vec<(&str, &OsStr)> = STATE_IDENTITY
        .iter()
        .map(|&(name, value)| (name, OsStr::new(value)))
        .collect();
    let args = [
        "-c",
        "commit.gpgSign=false",
        "commit-tree",
        "-p",
        head,
        "-m",
        STATE_MESSAGE,
        &tree,
    ];
    let out = run(worktree, &args, &identity)?.success()?;
    let commit = out.stdout_text().trim_end().to_owned();
    if !is_object_id(&commit) {
        return Err(out.unexpected("expected a commit id"));
    }
    Ok(Some(commit))
}

/// HEAD's commit id, or `None` when HEAD has no commit yet.
fn head_commit(worktree: &Path) -> Result<Option<String>, GitError> {
    let out = run(worktree, &["rev-parse", "--verify", "-q", "HEAD"], &[])?;
    match out.code {
        Some(0) => {
            let id = out.stdout_text().trim_end().to_owned();
            if is_object_id(&id) {
                Ok(Some(id))
            } else {
                Err(out.unexpected("expected HEAD's commit id"))
            }
        }
        Some(1) => Ok(None),
        _ => Err(out.failure()),
    }
}

/// The predicted outcome of merging `theirs` into `ours`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    /// The commit merged into, as given to [`predict`] (full ids from [`predict_pairs`]).
    pub ours: String,
    /// The commit merged, as given to [`predict`] (full ids from [`predict_pairs`]).
    pub theirs: String,
    /// Whether git would merge them without conflicts.
    pub clean: bool,
    /// The conflicted paths, sorted and deduplicated: the paths a failed `git merge` leaves
    /// unmerged in the index (what `git diff --name-only --diff-filter=U` lists). Both sides'
    /// new names and the old name for a rename/rename; the path for content, modify/delete,
    /// add/add and binary conflicts. A path git moves aside to make room (file/directory and
    /// distinct-types conflicts: `thing~<label>`) is listed under its own name, `thing`,
    /// because the label differs between merges: `git merge` writes `thing~HEAD`,
    /// `merge-tree` `thing~<the revision given>`. Empty when clean.
    pub files: Vec<String>,
}

/// The outcome of merging `theirs` into `ours` as `git merge` would, computed without touching
/// any worktree, index or ref.
///
/// `repository` is any directory of the repository: a worktree, a subdirectory, or the git
/// directory itself ([`RepoInfo::repository`]). Runs
/// `git merge-tree --write-tree --name-only --no-messages -z`: exit 0 with a tree id is clean,
/// exit 1 with a tree id is conflicted, with the conflicted paths after the tree id.
/// (`merge-tree` also exits 1, with no tree id, when a revision does not resolve: that is an
/// error.) `--name-only` lists exactly the paths with conflict stages, which are the paths a
/// real merge leaves unmerged; should a conflicted merge list none (a conflict that leaves no
/// stages in the index), the merge runs again with its messages and the paths of its `CONFLICT`
/// messages are taken. When a listed path is `path~<ours or theirs>` (a file moved aside), the
/// merge runs again with its messages to tell that from a file really called so.
///
/// Commits without common history are [`GitError::UnrelatedHistories`]: `git merge` refuses
/// them too, and a merge from an empty base would report every common path as add/add.
pub fn predict(repository: &Path, ours: &str, theirs: &str) -> Result<Prediction, GitError> {
    check_revision(ours)?;
    check_revision(theirs)?;
    let (clean, listing) = merge_tree(repository, ours, theirs, false)?;
    let mut files = listing.files;
    let moved_aside = |path: &str| {
        [ours, theirs]
            .iter()
            .find_map(|label| path.strip_suffix(label)?.strip_suffix('~'))
            .map(str::to_owned)
    };
    let nameless = !clean && files.is_empty();
    if nameless || files.iter().any(|path| moved_aside(path).is_some()) {
        let (_, detailed) = merge_tree(repository, ours, theirs, true)?;
        let conflicts = detailed
            .messages
            .iter()
            .filter(|message| message.kind.starts_with("CONFLICT"));
        if nameless {
            files = conflicts
                .flat_map(|message| message.paths.clone())
                .collect();
        } else {
            // A conflict message that names both `path~label` and `path` moved the first aside.
            for message in conflicts {
                for path in &message.paths {
                    if let Some(original) = moved_aside(path)
                        && message.paths.contains(&original)
                    {
                        for file in files.iter_mut().filter(|file| *file == path) {
                            file.clone_from(&original);
                        }
                    }
                }
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(Prediction {
        ours: ours.to_owned(),
        theirs: theirs.to_owned(),
        clean,
        files,
    })
}

/// Runs `git merge-tree --write-tree --name-only -z`, with or without its messages: whether
/// the merge is clean, and what it listed.
fn merge_tree(
    repository: &Path,
    ours: &str,
    theirs: &str,
    messages: bool,
) -> Result<(bool, MergeTreeOutput), GitError> {
    let mut args: Vec<&str> = MERGE_PINS.to_vec();
    args.extend(["merge-tree", "--write-tree", "--name-only"]);
    if !messages {
        args.push("--no-messages");
    }
    args.extend(["-z", ours, theirs]);
    let out = run(repository, &args, &[])?;
    let clean = match out.code {
        Some(0) => true,
        Some(1) => false,
        _ => return Err(merge_tree_failure(&out, ours, theirs)),
    };
    match MergeTreeOutput::parse(&out.stdout) {
        Some(listing) => Ok((clean, listing)),
        None => Err(merge_tree_failure(&out, ours, theirs)),
    }
}

/// The error for a `merge-tree` run that gave no answer.
fn merge_tree_failure(out: &Finished, ours: &str, theirs: &str) -> GitError {
    if out.code == Some(128) && out.stderr.contains("unrelated histories") {
        return GitError::UnrelatedHistories {
            ours: ours.to_owned(),
            theirs: theirs.to_owned(),
        };
    }
    // 129 is a usage error: a git before 2.38 does not know `--write-tree`.
    if out.code == Some(129)
        && let Err(too_old @ GitError::TooOld { .. }) = check_git()
    {
        return too_old;
    }
    // Exit 0 or 1 without a tree id: an error message (`x - not something we can merge`
    // exits 1) or, without one, output this module does not understand.
    if matches!(out.code, Some(0 | 1)) && out.stderr.trim().is_empty() {
        return out.unexpected("expected a tree id first");
    }
    out.failure()
}

/// What `git merge-tree --write-tree --name-only -z` printed.
#[derive(Debug, Default, PartialEq, Eq)]
struct MergeTreeOutput {
    /// The conflicted file info: paths with conflict stages.
    files: Vec<String>,
    /// The informational messages, when they were asked for.
    messages: Vec<MergeMessage>,
}

/// One of `git merge-tree`'s informational messages.
#[derive(Debug, Default, PartialEq, Eq)]
struct MergeMessage {
    /// The paths it is about.
    paths: Vec<String>,
    /// Its stable type, e.g. `Auto-merging` or `CONFLICT (rename/rename)`.
    kind: String,
}

impl MergeTreeOutput {
    /// Parses `<tree>\0<path>\0…` and, when present, the messages after an empty field:
    /// `<count>\0<path>\0…<type>\0<message>\0`. `None` when there is no tree id first.
    fn parse(stdout: &[u8]) -> Option<MergeTreeOutput> {
        let text = String::from_utf8_lossy(stdout);
        let mut fields = text.split('\0');
        let tree = fields.next()?.trim_end_matches('\n');
        if !is_object_id(tree) {
            return None;
        }
        let mut output = MergeTreeOutput::default();
        for field in fields.by_ref() {
            if field.is_empty() {
                break;
            }
            output.files.push(field.to_owned());
        }
        while let Some(count) = fields.next() {
            let Ok(count) = count.parse::<usize>() else {
                break;
            };
            let paths = fields.by_ref().take(count).map(str::to_owned).collect();
            let kind = fields.next().unwrap_or_default().to_owned();
            let _text = fields.next();
            output.messages.push(MergeMessage { paths, kind });
        }
        Some(output)
    }
}

/// One pair of [`predict_pairs`]'s input and their merge's prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPrediction {
    /// The first pair member's label (earlier in the input); its commit is `prediction.ours`.
    pub a: String,
    /// The second pair member's label; its commit is `prediction.theirs`.
    pub b: String,
    /// What merging `b`'s commit into `a`'s gives.
    pub prediction: Prediction,
}

/// The pairwise predictions among `(label, commit)` heads of one repository (commits as from
/// [`state_commit`]; any revision git resolves to a commit will do).
///
/// Pairs come in input order (`a` before `b`), clean ones included, and leave out pairs that
/// cannot conflict or cannot be merged: the same commit, one commit an ancestor of the other
/// (a fast-forward), and commits without common history (which `git merge` refuses; see
/// [`GitError::UnrelatedHistories`]). Commits are resolved to full ids first, so `main` and
/// its id count as the same; each distinct pair of commits is computed once.
///
/// Runs one `git rev-parse`, then for each distinct pair a `git merge-base` and, unless
/// skipped, a `git merge-tree`.
pub fn predict_pairs(
    repository: &Path,
    heads: &[(String, String)],
) -> Result<Vec<PairPrediction>, GitError> {
    if heads.len() < 2 {
        return Ok(Vec::new());
    }
    let commits = resolve_commits(repository, heads.iter().map(|(_, commit)| commit.as_str()))?;
    let mut known: HashMap<(&str, &str), Option<Prediction>> = HashMap::new();
    let mut pairs = Vec::new();
    for (i, (a, ours)) in heads
        .iter()
        .map(|(label, _)| label)
        .zip(&commits)
        .enumerate()
    {
        for (b, theirs) in heads
            .iter()
            .map(|(label, _)| label)
            .zip(&commits)
            .skip(i + 1)
        {
            if ours == theirs {
                continue;
            }
            let key = (ours.as_str(), theirs.as_str());
            let prediction = match known.get(&key) {
                Some(prediction) => prediction.clone(),
                None => {
                    let prediction = match merge_base(repository, ours, theirs)? {
                        Some(base) if base != *ours && base != *theirs => {
                            Some(predict(repository, ours, theirs)?)
                        }
                        _ => None,
                    };
                    known.insert(key, prediction.clone());
                    prediction
                }
            };
            if let Some(prediction) = prediction {
                pairs.push(PairPrediction {
                    a: a.clone(),
                    b: b.clone(),
                    prediction,
                });
            }
        }
    }
    Ok(pairs)
}

/// The full commit ids of `revisions`, in order, with one `git rev-parse`.
fn resolve_commits<'a>(
    repository: &Path,
    revisions: impl Iterator<Item = &'a str>,
) -> Result<Vec<String>, GitError> {
    let mut args = vec!["rev-parse".to_owned()];
    for revision in revisions {
        check_revision(revision)?;
        args.push(format!("{revision}^{{commit}}"));
    }
    let wanted = args.len() - 1;
    // A trailing `--` makes every argument a revision, never a path.
    args.push("--".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(repository, &args, &[])?.success()?;
    let ids: Vec<String> = out
        .stdout_text()
        .lines()
        .filter(|line| *line != "--")
        .map(str::to_owned)
        .collect();
    if ids.len() != wanted || !ids.iter().all(|id| is_object_id(id)) {
        return Err(out.unexpected("expected one commit id per revision"));
    }
    Ok(ids)
}

/// The best common ancestor of two commits; `None` when they share no history.
fn merge_base(repository: &Path, a: &str, b: &str) -> Result<Option<String>, GitError> {
    let out = run(repository, &["merge-base", a, b], &[])?;
    match out.code {
        Some(0) => {
            let base = out.stdout_text().trim_end().to_owned();
            if is_object_id(&base) {
                Ok(Some(base))
            } else {
                Err(out.unexpected("expected a commit id"))
            }
        }
        Some(1) if out.stdout.is_empty() => Ok(None),
        _ => Err(out.failure()),
    }
}

/// Checks that git is installed and new enough for [`predict`] (2.38 or newer); returns its
/// version, e.g. `2.47.3`. [`predict`] calls it only after a failure that an old git explains,
/// so the happy path costs no extra process.
pub fn check_git() -> Result<String, GitError> {
    let dir = std::env::temp_dir();
    let out = run(&dir, &["version"], &[])?.success()?;
    let text = out.stdout_text();
    let Some(version) = parse_version(&text) else {
        return Err(out.unexpected("expected `git version X.Y.Z`"));
    };
    if version.1 < MIN_GIT {
        return Err(GitError::TooOld { version: version.0 });
    }
    Ok(version.0)
}

/// `git version 2.39.2 (Apple Git-143)` → (`2.39.2`, (2, 39)).
fn parse_version(text: &str) -> Option<(String, (u32, u32))> {
    let version = text
        .trim()
        .strip_prefix("git version ")?
        .split_whitespace()
        .next()?;
    let mut numbers = version.split('.');
    let major = numbers.next()?.parse().ok()?;
    let minor_text: String = numbers
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let minor = minor_text.parse().ok()?;
    Some((version.to_owned(), (major, minor)))
}

fn check_revision(revision: &str) -> Result<(), GitError> {
    if revision.starts_with('-') || revision.is_empty() {
        return Err(GitError::BadRevision(revision.to_owned()));
    }
    Ok(())
}

/// A SHA-1 or SHA-256 object id in hex.
fn is_object_id(text: &str) -> bool {
    (text.len() == 40 || text.len() == 64) && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Whether git's error says the directory is in no worktree.
fn not_in_worktree(stderr: &str) -> bool {
    stderr.contains("not a git repository") || stderr.contains("must be run in a work tree")
}

fn canonical(path: &str) -> Result<String, GitError> {
    fs::canonicalize(path)
        .map(|path| path.to_string_lossy().into_owned())
        .map_err(|source| GitError::Io {
            what: format!("could not canonicalise {path}"),
            source,
        })
}

/// A finished git process.
struct Finished {
    command: String,
    dir: PathBuf,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl fmt::Debug for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finished")
            .field("command", &self.command)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl Finished {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Itself when it exited 0, else its failure.
    fn success(self) -> Result<Finished, GitError> {
        if self.code == Some(0) {
            Ok(self)
        } else {
            Err(self.failure())
        }
    }

    /// The error that says this command failed, with its error output's telling line.
    fn failure(&self) -> GitError {
        GitError::Failed {
            command: self.command.clone(),
            dir: self.dir.clone(),
            code: self.code,
            message: first_error_line(&self.stderr),
        }
    }

    /// The error that says this command printed something unexpected.
    fn unexpected(&self, what: &str) -> GitError {
        let said: String = self.stdout_text().chars().take(200).collect();
        GitError::Failed {
            command: self.command.clone(),
            dir: self.dir.clone(),
            code: self.code,
            message: format!("unexpected output ({what}): {said:?}"),
        }
    }
}

/// The first `fatal:` or `error:` line (warnings and hints may come before it), else the first
/// non-empty line.
fn first_error_line(stderr: &str) -> String {
    let mut lines = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let first = lines.clone().next();
    lines
        .find(|line| line.starts_with("fatal:") || line.starts_with("error:"))
        .or(first)
        .unwrap_or("(no error output)")
        .to_owned()
}

/// Runs `git -C dir <args>` as described in the module documentation and waits for it.
fn run(dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Result<Finished, GitError> {
    let command = describe(args);
    let mut git = Command::new("git");
    git.arg("-C")
        .arg(dir)
        .arg("--no-pager")
        .arg("-c")
        .arg(format!("core.hooksPath={NULL_DEVICE}"))
        .args(args)
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(std::process::Stdio::null());
    for name in PARENT_GIT_ENV {
        git.env_remove(name);
    }
    for (name, value) in env {
        git.env(name, value);
    }
    let output = git.output().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            GitError::NotInstalled
        } else {
            GitError::Spawn {
                command: command.clone(),
                dir: dir.to_owned(),
                source,
            }
        }
    })?;
    Ok(Finished {
        command,
        dir: dir.to_owned(),
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `git <args>` without the leading `-c name=value` pins, for error messages.
fn describe(args: &[&str]) -> String {
    let mut rest = args;
    while let ["-c", _, tail @ ..] = rest {
        rest = tail;
    }
    let mut command = String::from("git");
    for arg in rest {
        command.push(' ');
        command.push_str(arg);
    }
    command
}

/// A copy of a worktree's index beside it, removed (with its lock) when dropped.
#[derive(Debug)]
struct TempIndex {
    path: PathBuf,
}

impl TempIndex {
    /// Copies `index`; a missing index (git reads it as empty) gives no file, only the path.
    /// The copy lives in the same git directory as the index, which the user owns (a shared
    /// temporary directory invites symlink games), and is created exclusively.
    fn copy_of(index: &Path) -> Result<TempIndex, GitError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = index.parent().unwrap_or(Path::new("."));
        let io_error = |what: String| move |source| GitError::Io { what, source };
        let mut source = match fs::File::open(index) {
            Ok(file) => Some(file),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(io_error(format!("could not read {}", index.display()))(
                    error,
                ));
            }
        };
        loop {
            let count = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("gyrus-index-{}-{count}", std::process::id()));
            let Some(source) = source.as_mut() else {
                if path.exists() {
                    continue;
                }
                return Ok(TempIndex { path });
            };
            let mut target = match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => file,
                // Left behind by a process that had this id before.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && count < 1_000_000 => {
                    continue;
                }
                Err(error) => {
                    return Err(io_error(format!("could not create {}", path.display()))(
                        error,
                    ));
                }
            };
            let temp = TempIndex { path };
            io::copy(source, &mut target)
                .map_err(io_error(format!("could not copy {}", index.display())))?;
            return Ok(temp);
        }
    }
}

impl Drop for TempIndex {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let mut lock = self.path.clone().into_os_string();
        lock.push(".lock");
        let _ = fs::remove_file(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_vendor_suffixes() {
        let parse = |text| parse_version(text).map(|(_, numbers)| numbers);
        assert_eq!(parse("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(parse("git version 2.39.2 (Apple Git-143)"), Some((2, 39)));
        assert_eq!(parse("git version 2.45.1.windows.1"), Some((2, 45)));
        assert_eq!(parse("git version 2.37.0.rc1"), Some((2, 37)));
        assert_eq!(parse("hub version 2"), None);
        assert!((2, 37) < MIN_GIT && (2, 38) >= MIN_GIT && (3, 0) > MIN_GIT);
    }

    #[test]
    fn the_telling_error_line_is_chosen() {
        assert_eq!(
            first_error_line("fatal: bad revision 'x'\n"),
            "fatal: bad revision 'x'"
        );
        assert_eq!(
            first_error_line("hint: one\nwarning: two\nfatal: three\n"),
            "fatal: three"
        );
        assert_eq!(
            first_error_line("\nmerge-tree: x - not something\n"),
            "merge-tree: x - not something"
        );
        assert_eq!(first_error_line(""), "(no error output)");
    }

    #[test]
    fn merge_tree_output_parses_names_and_messages() {
        let tree = "93c95145e04641bbf616ebdd408d04e0f02cd778";
        let clean = MergeTreeOutput::parse(format!("{tree}\0").as_bytes());
        assert_eq!(clean.map(|o| o.files), Some(vec![]));
        let names = MergeTreeOutput::parse(format!("{tree}\0f\0rr_b1\0").as_bytes());
        assert_eq!(
            names.map(|o| o.files),
            Some(vec!["f".to_owned(), "rr_b1".to_owned()])
        );
        let messages = format!(
            "{tree}\0\x001\0f\0Auto-merging\0Auto-merging f\n\0\
             3\0rr\0rr_a\0rr_b\0CONFLICT (rename/rename)\0CONFLICT (rename/rename): …\n\0"
        );
        let parsed = MergeTreeOutput::parse(messages.as_bytes());
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            parsed.map(|o| (o.files, o.messages)),
            Some((
                vec![],
                vec![
                    MergeMessage {
                        paths: strings(&["f"]),
                        kind: "Auto-merging".to_owned()
                    },
                    MergeMessage {
                        paths: strings(&["rr", "rr_a", "rr_b"]),
                        kind: "CONFLICT (rename/rename)".to_owned()
                    },
                ]
            ))
        );
        assert_eq!(MergeTreeOutput::parse(b""), None);
        assert_eq!(MergeTreeOutput::parse(b"fatal\0"), None);
    }

    #[test]
    fn descriptions_leave_out_the_pins() {
        assert_eq!(
            describe(&["-c", "a=b", "-c", "c=d", "merge-tree", "x", "y"]),
            "git merge-tree x y"
        );
    }
}
