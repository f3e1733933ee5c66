//! The session manager as the daemon runs it: hook events in, verdicts and context out.
//!
//! [`Manager::handle`] turns one canonical [`HookInput`] into a [`HookReply`]:
//!
//! - a start (or the first event of a session never seen) registers the session, with its
//!   worktree, repository and branch from git, and answers with the [digest](Manager::digest):
//!   who else works in this repository, on what, which paths they hold, predicted conflicts,
//!   the board and any messages;
//! - a prompt sets the session's current task and delivers its messages;
//! - an edit takes an exclusive lease on each file it touches, all or nothing; a file another
//!   live session holds is denied (or "ask", as `sessions.on_conflict` says) with a reason
//!   naming that session and its task;
//! - a stop marks the session idle; an end ends it and frees its leases.
//!
//! Conflict prediction between worktrees runs in [`Manager::predict`]; the daemon calls it
//! every `sessions.conflict_check_secs` and keeps the last result for digests.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::conflicts::{self, GitError, PairPrediction};
use crate::hooks::{HookEvent, HookInput, HookReply, Verdict};
use crate::model::{Client, Lease, NewSession, Session, SessionState};
use crate::store::{Conflict, SessionFilter, SessionStore, StoreError};

/// Longest task text kept (the first line of a prompt).
const TASK_MAX: usize = 160;

/// How the manager behaves, from `[sessions]`.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Silence after which a session expires, in ms.
    pub expire_after_ms: i64,
    /// Lifetime of an edit's lease, in ms.
    pub lease_ttl_ms: i64,
    /// What a conflicting edit gets: [`Verdict::Deny`] or [`Verdict::Ask`].
    pub on_conflict: Verdict,
    /// Release a session's leases when its turn ends (the client's stop).
    pub release_on_stop: bool,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            expire_after_ms: 1_800_000,
            lease_ttl_ms: 900_000,
            on_conflict: Verdict::Deny,
            release_on_stop: false,
        }
    }
}

/// A failure handling a request.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// An edit refused because another session holds the path, for the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The absolute path asked for.
    pub path: String,
    /// The holder's lease.
    pub lease: Lease,
    /// The holder.
    pub holder: Session,
    /// Deny or ask.
    pub verdict: Verdict,
}

/// What [`Manager::handle`] did.
#[derive(Debug, Clone)]
pub struct Handled {
    /// The answer for the client.
    pub reply: HookReply,
    /// The session the event belongs to, after the event.
    pub session: Session,
    /// True when this event registered the session (or revived it).
    pub registered: bool,
    /// Set when an edit was refused.
    pub refusal: Option<Refusal>,
}

/// Predicted conflicts in one repository.
#[derive(Debug, Clone, Serialize)]
pub struct RepoConflicts {
    /// The repository (its common git directory).
    pub repository: String,
    /// Each pair of worktrees whose merge would conflict, or merges cleanly.
    pub pairs: Vec<PairConflict>,
}

/// One predicted merge between two worktrees' current states.
#[derive(Debug, Clone, Serialize)]
pub struct PairConflict {
    /// The first worktree.
    pub a: String,
    /// The sessions working in it.
    pub a_sessions: Vec<String>,
    /// The second worktree.
    pub b: String,
    /// The sessions working in it.
    pub b_sessions: Vec<String>,
    /// The commits compared (working-tree states where uncommitted changes exist).
    pub a_commit: String,
    /// See `a_commit`.
    pub b_commit: String,
    /// True when the merge is clean.
    pub clean: bool,
    /// The paths that would conflict.
    pub files: Vec<String>,
}

/// The session manager.
#[derive(Debug)]
pub struct Manager {
    store: SessionStore,
    config: ManagerConfig,
    /// The last prediction per repository, for digests.
    predicted: Mutex<BTreeMap<String, RepoConflicts>>,
}

impl Manager {
    /// Opens the store at `path`.
    pub fn open(path: &Path, config: ManagerConfig) -> Result<Manager, ManagerError> {
        Ok(Manager {
            store: SessionStore::open(path)?,
            config,
            predicted: Mutex::new(BTreeMap::new()),
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// Registers a session from `cwd` (worktree, repository and branch from git; `cwd`
    /// itself outside git). Registering the same client session again returns it.
    pub fn register(
        &self,
        client: Client,
        client_session_id: &str,
        cwd: &str,
        task: Option<&str>,
        now_ms: i64,
    ) -> Result<(Session, bool), ManagerError> {
        if client_session_id.is_empty() || client_session_id.len() > 256 {
            return Err(ManagerError::Invalid(
                "the client session id must be 1 to 256 bytes".into(),
            ));
        }
        let cwd_path = Path::new(cwd);
        if !cwd_path.is_absolute() {
            return Err(ManagerError::Invalid(format!(
                "the working directory must be absolute, got {cwd:?}"
            )));
        }
        let cwd = normalize(cwd_path);
        let cwd_text = cwd.to_string_lossy().into_owned();
        let Place {
            worktree,
            repository,
            branch,
        } = place(&cwd)?;
        let new = NewSession {
            client,
            client_session_id: client_session_id.to_string(),
            cwd: cwd_text,
            worktree,
            repository,
            branch,
            task: task.map(task_line),
        };
        Ok(self.store.register(&new, now_ms)?)
    }

    /// Handles one hook event.
    pub fn handle(&self, input: &HookInput, now_ms: i64) -> Result<Handled, ManagerError> {
        let known = self
            .store
            .find(input.client, &input.client_session_id)?
            .filter(|s| s.state.is_live());
        let is_start = matches!(input.event, HookEvent::Start { .. });
        let (mut session, registered) = match known {
            Some(s) if !is_start => (s, false),
            // A start, or the first sight of a session (hooks installed mid-session, or
            // one that expired while its user was away).
            _ => {
                if matches!(input.event, HookEvent::End { .. }) {
                    // An end for a session never seen (or already gone): nothing to do.
                    if let Some(s) = self.store.find(input.client, &input.client_session_id)? {
                        let s = self.store.end(&s.id, now_ms)?;
                        return Ok(Handled {
                            reply: HookReply::allow(),
                            session: s,
                            registered: false,
                            refusal: None,
                        });
                    }
                }
                let (s, _) = self.register(
                    input.client,
                    &input.client_session_id,
                    &input.cwd,
                    None,
                    now_ms,
                )?;
                (s, true)
            }
        };
        let mut reply = HookReply::allow();
        let mut refusal = None;
        match &input.event {
            HookEvent::Start { .. } => {
                self.predict_for(&session);
                reply.context = Some(self.digest(&session, now_ms)?);
            }
            HookEvent::Prompt { prompt } => {
                let task = task_line(prompt);
                if !task.is_empty() {
                    session = self.store.set_task(&session.id, Some(&task), now_ms)?;
                }
                session = self
                    .store
                    .touch(&session.id, Some(SessionState::Active), now_ms)?;
                if registered {
                    self.predict_for(&session);
                    reply.context = Some(self.digest(&session, now_ms)?);
                } else {
                    reply.context = self.messages(&session, now_ms)?;
                }
            }
            HookEvent::PreTool { paths, edits, .. } => {
                session = self
                    .store
                    .touch(&session.id, Some(SessionState::Active), now_ms)?;
                if *edits && !paths.is_empty() {
                    let (relative, absolute) = self.relative_paths(&session, &input.cwd, paths);
                    if !relative.is_empty() {
                        match self.store.claim_paths(
                            &session.id,
                            &relative,
                            self.config.lease_ttl_ms,
                            now_ms,
                        )? {
                            Ok(_) => {}
                            Err(conflict) => {
                                let abs = relative
                                    .iter()
                                    .position(|p| *p == conflict.path)
                                    .and_then(|i| absolute.get(i).cloned())
                                    .unwrap_or_else(|| conflict.path.clone());
                                reply.verdict = self.config.on_conflict;
                                reply.reason = Some(refusal_reason(&conflict, now_ms));
                                refusal = Some(Refusal {
                                    path: abs,
                                    lease: conflict.lease,
                                    holder: conflict.holder,
                                    verdict: self.config.on_conflict,
                                });
                            }
                        }
                    }
                }
                if refusal.is_none() && takes_context(input) {
                    reply.context = self.messages(&session, now_ms)?;
                }
            }
            HookEvent::PostTool { .. } => {
                session = self
                    .store
                    .touch(&session.id, Some(SessionState::Active), now_ms)?;
                if takes_context(input) {
                    reply.context = self.messages(&session, now_ms)?;
                }
            }
            HookEvent::Stop => {
                session = self
                    .store
                    .touch(&session.id, Some(SessionState::Idle), now_ms)?;
                if self.config.release_on_stop {
                    self.store.release(&session.id, "*")?;
                }
            }
            HookEvent::End { .. } => {
                session = self.store.end(&session.id, now_ms)?;
            }
            HookEvent::Other => {
                session = self.store.touch(&session.id, None, now_ms)?;
            }
        }
        // Only inject where the client reads it; messages not shown stay undelivered
        // because `messages` is only called on events that carry context.
        if reply.context.as_deref().is_some_and(str::is_empty) {
            reply.context = None;
        }
        Ok(Handled {
            reply,
            session,
            registered,
            refusal,
        })
    }

    /// Undelivered messages as context text, marked delivered; None when there are none.
    fn messages(&self, session: &Session, now_ms: i64) -> Result<Option<String>, ManagerError> {
        let messages = self.store.take_undelivered(&session.id, now_ms)?;
        if messages.is_empty() {
            return Ok(None);
        }
        let mut out = String::from("gyrus: messages from other sessions:\n");
        for m in messages {
            let from = m.from_session.as_deref().unwrap_or("the owner");
            out.push_str(&format!("- [{}] from {from}: {}\n", m.id, m.text));
        }
        out.push_str("(acknowledge with the session.inbox tool)\n");
        Ok(Some(out))
    }

    /// The paths of an edit relative to the session's worktree (lexically normalised),
    /// beside their absolute forms. Paths outside the worktree take no lease.
    fn relative_paths(
        &self,
        session: &Session,
        cwd: &str,
        paths: &[String],
    ) -> (Vec<String>, Vec<String>) {
        let worktree = Path::new(&session.worktree);
        let base = if cwd.is_empty() { &session.cwd } else { cwd };
        let mut relative = Vec::new();
        let mut absolute = Vec::new();
        for p in paths {
            let abs = normalize(&Path::new(base).join(p));
            if let Ok(rel) = abs.strip_prefix(worktree) {
                let rel = rel.to_string_lossy().into_owned();
                if !rel.is_empty() && !relative.contains(&rel) {
                    relative.push(rel);
                    absolute.push(abs.to_string_lossy().into_owned());
                }
            }
        }
        (relative, absolute)
    }

    /// The short digest a starting session receives: the other live sessions in its
    /// repository and what they do and hold, predicted conflicts, the board, its messages.
    pub fn digest(&self, session: &Session, now_ms: i64) -> Result<String, ManagerError> {
        let others: Vec<Session> = self
            .store
            .list(&SessionFilter {
                live_only: true,
                repository: Some(session.repository.clone()),
                worktree: None,
            })?
            .into_iter()
            .filter(|s| s.id != session.id)
            .collect();
        let mut out = format!("gyrus session manager: you are session {}", session.id);
        if let Some(b) = &session.branch {
            out.push_str(&format!(" on branch {b}"));
        }
        out.push_str(".\n");
        if others.is_empty() {
            out.push_str("No other session is working in this repository.\n");
        } else {
            out.push_str(&format!(
                "{} other session{} in this repository:\n",
                others.len(),
                if others.len() == 1 { "" } else { "s" }
            ));
            for s in &others {
                let task = s.task.as_deref().unwrap_or("task not known");
                let place = if s.worktree == session.worktree {
                    "same worktree".to_string()
                } else {
                    format!("worktree {}", s.worktree)
                };
                let branch = s
                    .branch
                    .as_deref()
                    .map(|b| format!(", branch {b}"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "- {} ({}, {place}{branch}, {}, seen {} ago): {task}\n",
                    s.id,
                    s.client.as_str(),
                    s.state.as_str(),
                    ago(now_ms - s.last_seen_ms),
                ));
                let leases = self.store.session_leases(&s.id, now_ms)?;
                if !leases.is_empty() {
                    let globs: Vec<&str> = leases.iter().take(8).map(|l| l.glob.as_str()).collect();
                    let more = leases.len().saturating_sub(8);
                    out.push_str(&format!(
                        "  holds: {}{}\n",
                        globs.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
            out.push_str(
                "Editing a file another session holds is refused; coordinate with it first (session.send).\n",
            );
        }
        let predicted = self
            .predicted
            .lock()
            .map_err(|_| ManagerError::Invalid("prediction cache poisoned".into()))?
            .get(&session.repository)
            .cloned();
        if let Some(rc) = predicted {
            for p in rc.pairs.iter().filter(|p| !p.clean) {
                let mine = p.a == session.worktree || p.b == session.worktree;
                if !mine {
                    continue;
                }
                let other = if p.a == session.worktree { &p.b } else { &p.a };
                out.push_str(&format!(
                    "Predicted merge conflict with {other}: {}\n",
                    p.files.join(", ")
                ));
            }
        }
        let board = self.store.board(&session.repository, 5)?;
        if !board.is_empty() {
            out.push_str("Board:\n");
            for n in board {
                out.push_str(&format!(
                    "- {:?} by {}: {}\n",
                    n.kind,
                    n.session_id.as_deref().unwrap_or("the owner"),
                    n.text
                ));
            }
        }
        if let Some(m) = self.messages(session, now_ms)? {
            out.push_str(&m);
        }
        Ok(out)
    }

    /// The repository a directory belongs to (its common git directory), or the directory
    /// itself outside git, as sessions registered there record it.
    pub fn repository_of(&self, dir: &str) -> Result<String, ManagerError> {
        Ok(place(&existing_dir(dir)?)?.repository)
    }

    /// Which of `paths` (relative to the worktree `dir` is in) live sessions other than
    /// `except` hold, one conflict per held path. For the pre-commit guard.
    pub fn held(
        &self,
        dir: &str,
        paths: &[String],
        except: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<Conflict>, ManagerError> {
        let worktree = place(&existing_dir(dir)?)?.worktree;
        let leases = self.store.leases(Some(&worktree), now_ms)?;
        let mut out = Vec::new();
        for p in paths {
            let Some(lease) = leases.iter().find(|l| {
                Some(l.session_id.as_str()) != except && crate::globs::covers(&l.glob, p)
            }) else {
                continue;
            };
            let Some(holder) = self.store.get(&lease.session_id)? else {
                continue;
            };
            out.push(Conflict {
                path: p.clone(),
                lease: lease.clone(),
                holder,
            });
        }
        Ok(out)
    }

    /// Expires silent sessions (and their leases) and drops lapsed leases.
    pub fn sweep(&self, now_ms: i64) -> Result<Vec<Session>, ManagerError> {
        Ok(self.store.expire(now_ms, self.config.expire_after_ms)?)
    }

    /// Predicts merge conflicts between the worktrees of live sessions, per repository
    /// (only `repository` if given), including uncommitted changes, and keeps the result
    /// for digests.
    pub fn predict(&self, repository: Option<&str>) -> Result<Vec<RepoConflicts>, ManagerError> {
        let live = self.store.list(&SessionFilter {
            live_only: true,
            repository: repository.map(str::to_string),
            worktree: None,
        })?;
        // repository -> worktree -> sessions
        let mut repos: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for s in live {
            // Outside git the session's repository is its own directory: nothing to merge.
            if s.repository == s.worktree {
                continue;
            }
            repos
                .entry(s.repository.clone())
                .or_default()
                .entry(s.worktree.clone())
                .or_default()
                .push(s.id.clone());
        }
        let mut out = Vec::new();
        for (repo, worktrees) in repos {
            if worktrees.len() < 2 {
                let rc = RepoConflicts {
                    repository: repo.clone(),
                    pairs: Vec::new(),
                };
                self.keep(&repo, &rc);
                out.push(rc);
                continue;
            }
            let mut heads = Vec::new();
            for wt in worktrees.keys() {
                if let Some(c) = conflicts::state_commit(Path::new(wt), true)? {
                    heads.push((wt.clone(), c));
                }
            }
            let pairs = conflicts::predict_pairs(Path::new(&repo), &heads)?;
            let rc = RepoConflicts {
                repository: repo.clone(),
                pairs: pairs
                    .into_iter()
                    .map(|p: PairPrediction| PairConflict {
                        a_sessions: worktrees.get(&p.a).cloned().unwrap_or_default(),
                        b_sessions: worktrees.get(&p.b).cloned().unwrap_or_default(),
                        a: p.a,
                        b: p.b,
                        a_commit: p.prediction.ours,
                        b_commit: p.prediction.theirs,
                        clean: p.prediction.clean,
                        files: p.prediction.files,
                    })
                    .collect(),
            };
            self.keep(&repo, &rc);
            out.push(rc);
        }
        Ok(out)
    }

    /// Predicts now for a starting session's repository when another live session works in
    /// another worktree of it, so the digest's conflicts are current. A git failure only
    /// leaves the last prediction in place.
    fn predict_for(&self, session: &Session) {
        if session.repository == session.worktree {
            return;
        }
        let others = self.store.list(&SessionFilter {
            live_only: true,
            repository: Some(session.repository.clone()),
            worktree: None,
        });
        let elsewhere = others
            .map(|list| list.iter().any(|s| s.worktree != session.worktree))
            .unwrap_or(false);
        if elsewhere {
            let _ = self.predict(Some(&session.repository));
        }
    }

    fn keep(&self, repo: &str, rc: &RepoConflicts) {
        if let Ok(mut map) = self.predicted.lock() {
            map.insert(repo.to_string(), rc.clone());
        }
    }
}

/// Where a directory sits: its worktree, repository and branch from git, or the directory
/// itself (no branch) outside git or when it does not exist.
struct Place {
    worktree: String,
    repository: String,
    branch: Option<String>,
}

fn place(dir: &Path) -> Result<Place, GitError> {
    let info = if dir.is_dir() {
        conflicts::repo_info(dir)?
    } else {
        None
    };
    Ok(match info {
        Some(info) => Place {
            worktree: info.worktree,
            repository: info.repository,
            branch: info.branch,
        },
        None => {
            let text = dir.to_string_lossy().into_owned();
            Place {
                worktree: text.clone(),
                repository: text,
                branch: None,
            }
        }
    })
}

/// `dir`, normalised, if it is an absolute path to an existing directory.
fn existing_dir(dir: &str) -> Result<PathBuf, ManagerError> {
    let path = Path::new(dir);
    if !path.is_absolute() || !path.is_dir() {
        return Err(ManagerError::Invalid(format!(
            "{dir:?} is not an absolute path to a directory"
        )));
    }
    Ok(normalize(path))
}

/// Whether the client reads context from this event (so messages are only marked
/// delivered when they really reach the model): Claude Code and Codex on starts, prompts and
/// both tool events; Gemini CLI on starts, prompts (`BeforeAgent`) and `AfterTool`.
fn takes_context(input: &HookInput) -> bool {
    match input.event {
        HookEvent::Start { .. } | HookEvent::Prompt { .. } | HookEvent::PostTool { .. } => true,
        HookEvent::PreTool { .. } => input.client != Client::Gemini,
        HookEvent::Stop | HookEvent::End { .. } | HookEvent::Other => false,
    }
}

/// The reason a refused edit gives: who holds the path, doing what, and what to do.
fn refusal_reason(conflict: &Conflict, now_ms: i64) -> String {
    let h = &conflict.holder;
    let task = h
        .task
        .as_deref()
        .map(|t| format!(" working on \"{t}\""))
        .unwrap_or_default();
    format!(
        "{} is leased {} by session {} ({}{task}, seen {} ago, lease ends in {}); leave this file to it, or ask it with the session.send tool, or wait until it ends",
        conflict.path,
        conflict.lease.mode.as_str(),
        h.id,
        h.client.as_str(),
        ago(now_ms - h.last_seen_ms),
        ago(conflict.lease.expires_ms - now_ms),
    )
}

/// The first line of a prompt, trimmed and cut at [`TASK_MAX`] characters.
fn task_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() <= TASK_MAX {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(TASK_MAX - 1).collect();
    cut.push('…');
    cut
}

/// `12s`, `4m`, `3h`.
fn ago(ms: i64) -> String {
    let s = (ms.max(0) + 500) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

/// Lexical normalisation: removes `.` and resolves `..` without touching the file system
/// (the file an edit names may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn input(client_session_id: &str, cwd: &Path, event: HookEvent) -> HookInput {
        HookInput {
            client: Client::ClaudeCode,
            client_session_id: client_session_id.into(),
            cwd: cwd.to_string_lossy().into_owned(),
            event_name: "test".into(),
            event,
        }
    }

    fn edit(path: &str) -> HookEvent {
        HookEvent::PreTool {
            tool: "Edit".into(),
            paths: vec![path.into()],
            edits: true,
        }
    }

    /// Outside git: worktree and repository are the directory itself. A stop keeps the
    /// leases unless `release_on_stop`.
    fn stop_keeps_or_releases(release_on_stop: bool) -> Verdict {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let config = ManagerConfig {
            release_on_stop,
            ..ManagerConfig::default()
        };
        let m = Manager::open(&dir.path().join("s.db"), config).unwrap();
        let start = HookEvent::Start { source: None };
        for who in ["a", "b"] {
            let h = m.handle(&input(who, &work, start.clone()), 1_000).unwrap();
            assert!(h.registered && h.reply.context.is_some());
        }
        let a = m.handle(&input("a", &work, edit("x.rs")), 2_000).unwrap();
        assert_eq!(a.reply.verdict, Verdict::Allow);
        let b = m.handle(&input("b", &work, edit("./x.rs")), 3_000).unwrap();
        assert_eq!(b.reply.verdict, Verdict::Deny);
        let refusal = b.refusal.unwrap();
        assert_eq!(refusal.holder.id, a.session.id);
        assert!(refusal.path.ends_with("/work/x.rs"), "{}", refusal.path);
        m.handle(&input("a", &work, HookEvent::Stop), 4_000)
            .unwrap();
        m.handle(&input("b", &work, edit("x.rs")), 5_000)
            .unwrap()
            .reply
            .verdict
    }

    #[test]
    fn a_stop_keeps_the_leases_unless_configured_to_release_them() {
        assert_eq!(stop_keeps_or_releases(false), Verdict::Deny);
        assert_eq!(stop_keeps_or_releases(true), Verdict::Allow);
    }

    #[test]
    fn edits_outside_the_worktree_take_no_lease() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let m = Manager::open(&dir.path().join("s.db"), ManagerConfig::default()).unwrap();
        let h = m
            .handle(&input("a", &work, edit("/etc/hosts")), 1_000)
            .unwrap();
        assert!(h.registered);
        assert!(
            m.store()
                .session_leases(&h.session.id, 1_000)
                .unwrap()
                .is_empty()
        );
        let h = m
            .handle(&input("a", &work, edit("../outside.rs")), 1_000)
            .unwrap();
        assert!(
            m.store()
                .session_leases(&h.session.id, 1_000)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn normalises_lexically() {
        assert_eq!(
            normalize(Path::new("/r/a/./b/../c.rs")),
            PathBuf::from("/r/a/c.rs")
        );
        assert_eq!(normalize(Path::new("/r/../../x")), PathBuf::from("/x"));
    }

    #[test]
    fn tasks_are_one_short_line() {
        assert_eq!(task_line("\n  fix the parser  \nmore"), "fix the parser");
        let long = "x".repeat(500);
        assert_eq!(task_line(&long).chars().count(), TASK_MAX);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(12_000), "12s");
        assert_eq!(ago(240_000), "4m");
        assert_eq!(ago(3 * 3_600_000), "3h");
        assert_eq!(ago(-5), "0s");
    }
}
