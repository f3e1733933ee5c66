//! Rule-based consolidation: what the episodic log says about the owner, when no model
//! cortex is configured to read it.
//!
//! The daemon writes an episodic item for each audit or kernel event worth remembering,
//! with the event in its metadata, e.g.
//!
//! ```json
//! {"event":"tool.call","tool":"fs.read","outcome":"allow","resource":"path:/home/u/proj/src/a.rs"}
//! {"event":"ask","text":"I prefer short answers"}
//! {"event":"session.started","client":"claude-code","cwd":"/home/u/proj","task":"fix the build"}
//! ```
//!
//! (When `event` is missing, a tag naming a known event stands in for it.) [`distil`] reads
//! those with simple, predictable rules, each documented on its constant, and returns
//! [`Distilled`] facts: semantic items to store, some with an entry for the owner's
//! [sketch](crate::sketch). The rules are deliberately plain. They must never invent
//! anything: a wrong fact in the sketch is sent with every model call.
//!
//! [`dedup_key`] and [`duplicates`] find items that say the same thing, so consolidation
//! keeps one.
//!
//! Everything here is pure.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Item, Kind};
use crate::sketch::Sketch;

const HOUR_MS: i64 = 3600 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// How far back the rules on habits, projects, focus and refusals look: older events say
/// little about what the owner does now. Stated preferences have no age limit (a
/// preference holds until the owner says otherwise).
pub const WINDOW_MS: i64 = 30 * DAY_MS;
/// Rule (a), habits: a tool called (and not refused) at least this many times in
/// [`WINDOW_MS`] is a habit: "The owner often uses fs.read (12 calls since 2025-01-03)",
/// tagged `habit`. Fewer is chance.
pub const HABIT_MIN_CALLS: usize = 3;
/// Rule (b), projects: a directory seen at least this many times in
/// [`PROJECT_WINDOW_MS`], counting sessions started there (`cwd`) and file accesses under it
/// (`resource: "path:…"`), is a project, tagged `project`, and goes into the sketch's
/// projects. A file is counted for the deepest session directory holding it; a file under
/// no session directory, for the directory above its first `src`, `crates`, `lib`, `tests`,
/// `docs`, `packages`, `cmd`, `pkg` or `.git` component (`/home/u/proj/src/a.rs` is in
/// `/home/u/proj`), or not at all. The filesystem root, home directories and system
/// directories (`/usr`, `/etc`, `/tmp`…) are never projects.
pub const PROJECT_MIN_SIGHTINGS: usize = 2;
/// Rule (b)'s window: projects are what the owner works on this week.
pub const PROJECT_WINDOW_MS: i64 = 7 * DAY_MS;
/// Rule (c), focus: the tasks of the sessions started in the last [`FOCUS_WINDOW_MS`], the
/// most recent [`MAX_FOCUS`] distinct ones, tagged `focus`, go into the sketch's focus.
pub const MAX_FOCUS: usize = 3;
/// Rule (c)'s window: the focus is today's work.
pub const FOCUS_WINDOW_MS: i64 = DAY_MS;
/// Rule (e), refusals: an action on a resource refused by policy at least this many times
/// in [`WINDOW_MS`] is remembered ("Requests to shell.exec on path:/etc are refused (4
/// times)", tagged `refusal`), so an agent stops asking. (Rule (d), stated preferences, is
/// described on [`distil`].)
pub const REFUSAL_MIN: usize = 3;
/// The most evidence ids one fact lists (the most recent), so its metadata stays small.
pub const MAX_EVIDENCE: usize = 64;
/// The longest preference text taken from an ask, in bytes (cut at a word).
pub const MAX_PREFERENCE_BYTES: usize = 160;

/// Where in the sketch a distilled fact goes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SketchSection {
    /// [`Sketch::preferences`].
    Preferences,
    /// [`Sketch::projects`].
    Projects,
    /// [`Sketch::focus`].
    Focus,
}

impl SketchSection {
    /// The sketch's list for this section.
    pub fn list_mut(self, sketch: &mut Sketch) -> &mut Vec<String> {
        match self {
            SketchSection::Preferences => &mut sketch.preferences,
            SketchSection::Projects => &mut sketch.projects,
            SketchSection::Focus => &mut sketch.focus,
        }
    }
}

/// One fact distilled from the episodic log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Distilled {
    /// The semantic item's text. Only its numbers (counts, dates) change from run to run
    /// while its subject stays, so a caller can key the item by the text without digits.
    pub content: String,
    /// Its tags: the rule's (`habit`, `project`, `focus`, `preference`, `refusal`).
    pub tags: Vec<String>,
    /// The ids of the episodic items it came from, oldest first, at most [`MAX_EVIDENCE`]
    /// (the most recent).
    pub evidence: Vec<String>,
    /// The entry it makes in the owner's sketch, if any.
    pub sketch: Option<(SketchSection, String)>,
}

/// The text two items must share to be duplicates: lowercase, whitespace runs collapsed
/// to one space, and punctuation, quotes and brackets trimmed from both ends. (`+` and `#`
/// are kept, so "C++" and "C#" stay apart from "C".)
pub fn dedup_key(content: &str) -> String {
    let collapsed = content.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .trim_matches(|c: char| c.is_whitespace() || is_end_punct(c))
        .to_lowercase()
}

/// Punctuation [`dedup_key`] trims from the ends.
fn is_end_punct(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | ';'
            | ':'
            | '!'
            | '?'
            | '\''
            | '"'
            | '`'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '<'
            | '>'
            | '-'
            | '_'
            | '*'
            | '~'
            | '…'
            | '“'
            | '”'
            | '‘'
            | '’'
            | '«'
            | '»'
            | '–'
            | '—'
    )
}

/// The duplicates among `items`: current items (`valid_to` is `None`) of the same
/// namespace and kind whose contents have the same [`dedup_key`]. For each group, the id to
/// keep (the oldest: smallest `created_at`, then smallest id, so the one others may already
/// refer to) and the others, in the same order. Groups come in the order of the kept item.
/// Items whose key is empty (only punctuation) are never duplicates.
pub fn duplicates(items: &[Item]) -> Vec<(String, Vec<String>)> {
    let mut groups: BTreeMap<(&str, Kind, String), Vec<&Item>> = BTreeMap::new();
    for item in items.iter().filter(|i| i.valid_to.is_none()) {
        let key = dedup_key(&item.content);
        if key.is_empty() {
            continue;
        }
        groups
            .entry((item.namespace.as_str(), item.kind, key))
            .or_default()
            .push(item);
    }
    let mut out: Vec<(i64, String, Vec<String>)> = Vec::new();
    for mut group in groups.into_values() {
        if group.len() < 2 {
            continue;
        }
        group.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let keep = group[0];
        let dups: Vec<String> = group[1..]
            .iter()
            .filter(|i| i.id != keep.id)
            .map(|i| i.id.clone())
            .collect();
        if !dups.is_empty() {
            out.push((keep.created_at, keep.id.clone(), dups));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out.into_iter()
        .map(|(_, keep, dups)| (keep, dups))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// The event names the rules read.
const TOOL_CALL: &str = "tool.call";
const ASK: &str = "ask";
const SESSION_STARTED: &str = "session.started";

/// An episodic item read as an event.
#[derive(Debug, Clone, Copy)]
struct Event<'a> {
    item: &'a Item,
    name: Option<&'a str>,
    /// When it happened: the item's `valid_from`.
    at: i64,
}

impl<'a> Event<'a> {
    fn new(item: &'a Item) -> Event<'a> {
        let name = item
            .metadata
            .get("event")
            .and_then(|v| v.as_str())
            .or_else(|| {
                item.tags
                    .iter()
                    .map(String::as_str)
                    .find(|t| [TOOL_CALL, ASK, SESSION_STARTED].contains(t))
            });
        Event {
            item,
            name,
            at: item.valid_from,
        }
    }

    fn is(&self, name: &str) -> bool {
        self.name == Some(name)
    }

    /// A metadata string, trimmed, when not empty.
    fn meta(&self, key: &str) -> Option<&'a str> {
        self.item
            .metadata
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Whether policy refused it.
    fn denied(&self) -> bool {
        self.meta("outcome").is_some_and(|o| {
            ["deny", "denied", "refuse", "refused", "forbid", "forbidden"]
                .iter()
                .any(|d| o.eq_ignore_ascii_case(d))
        })
    }

    /// Whether it happened within `window` before `now` (a future time counts as now).
    fn within(&self, now: i64, window: i64) -> bool {
        now.saturating_sub(self.at) <= window
    }
}

/// The evidence list of a fact: the ids of `events` (oldest first), the last
/// [`MAX_EVIDENCE`].
fn evidence(events: &[Event<'_>]) -> Vec<String> {
    let skip = events.len().saturating_sub(MAX_EVIDENCE);
    events[skip..].iter().map(|e| e.item.id.clone()).collect()
}

/// Unix milliseconds as a UTC date, `YYYY-MM-DD` (Howard Hinnant's `civil_from_days`).
fn date(ms: i64) -> String {
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

// ---------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------

/// Distils the owner's episodic items into facts, at `now_ms`.
///
/// Only current (`valid_to` is `None`) episodic items are read; the rules are on the
/// constants: (a) habits [`HABIT_MIN_CALLS`], (b) projects [`PROJECT_MIN_SIGHTINGS`], (c)
/// focus [`MAX_FOCUS`], (e) refusals [`REFUSAL_MIN`], and (d) stated preferences:
///
/// (d) In the text of an ask (`text`, else the item's content), a sentence saying "I
/// prefer X", "I like X", "always use X", "never use X" or "call me X" (any case) is a
/// preference, tagged `preference`, that goes into the sketch's preferences ("Prefers X",
/// "Likes X", "Always use X", "Never use X", "Call the owner X"). X runs to the end of the
/// sentence, at most [`MAX_PREFERENCE_BYTES`]. To keep out what is not a statement of
/// preference: questions (a sentence ending `?`) are skipped; "always use", "never use"
/// and "call me" count only at the start of a sentence or after "please", "I", "we", "you
/// should", "you must" or "just" (so "you never use tests" and "can you call me back" are
/// not preferences); and "I like it/that/this/them" says nothing.
///
/// The output is deterministic: habits, projects, focus, preferences, then refusals; within
/// a rule, from the weakest or oldest fact to the strongest or most recent, so a caller
/// that applies the sketch entries in order with [`crate::sketch::merge_entry`] (which puts
/// each at the front) ends with the strongest first.
pub fn distil(episodes: &[Item], now_ms: i64) -> Vec<Distilled> {
    let mut events: Vec<Event<'_>> = episodes
        .iter()
        .filter(|i| i.kind == Kind::Episodic && i.valid_to.is_none())
        .map(Event::new)
        .collect();
    events.sort_by(|a, b| (a.at, &a.item.id).cmp(&(b.at, &b.item.id)));
    let mut out = Vec::new();
    habits(&events, now_ms, &mut out);
    projects(&events, now_ms, &mut out);
    focus(&events, now_ms, &mut out);
    preferences(&events, &mut out);
    refusals(&events, now_ms, &mut out);
    out
}

/// Applies the sketch entries of `facts` to `sketch` in order with
/// [`crate::sketch::merge_entry`], keeping at most `cap` entries a section.
pub fn apply_to_sketch(facts: &[Distilled], sketch: &mut Sketch, cap: usize) {
    for (section, entry) in facts.iter().filter_map(|f| f.sketch.as_ref()) {
        crate::sketch::merge_entry(section.list_mut(sketch), entry, cap);
    }
}

/// Rule (a).
fn habits(events: &[Event<'_>], now: i64, out: &mut Vec<Distilled>) {
    let mut by_tool: BTreeMap<&str, Vec<Event<'_>>> = BTreeMap::new();
    for e in events {
        if e.is(TOOL_CALL)
            && e.within(now, WINDOW_MS)
            && !e.denied()
            && let Some(tool) = e.meta("tool")
        {
            by_tool.entry(tool).or_default().push(*e);
        }
    }
    let mut facts: Vec<(usize, &str, Distilled)> = by_tool
        .into_iter()
        .filter(|(_, calls)| calls.len() >= HABIT_MIN_CALLS)
        .map(|(tool, calls)| {
            let since = date(calls[0].at);
            let n = calls.len();
            let fact = Distilled {
                content: format!("The owner often uses {tool} ({n} calls since {since})"),
                tags: vec!["habit".to_string()],
                evidence: evidence(&calls),
                sketch: None,
            };
            (n, tool, fact)
        })
        .collect();
    facts.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    out.extend(facts.into_iter().map(|(_, _, f)| f));
}

/// A directory without its trailing `/`s.
fn normalize_dir(dir: &str) -> &str {
    let d = dir.trim_end_matches('/');
    if d.is_empty() { dir } else { d }
}

/// Directories that are never projects: not absolute, the root, a home directory, or a
/// system directory.
fn never_a_project(dir: &str) -> bool {
    const SYSTEM: &[&str] = &[
        "bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "media", "mnt", "nix",
        "opt", "proc", "run", "sbin", "snap", "srv", "sys", "tmp", "usr", "var",
    ];
    if !dir.starts_with('/') {
        return true;
    }
    let parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => true,
        [first, ..] if SYSTEM.contains(first) => true,
        ["root"] | ["home"] | ["Users"] | ["home", _] | ["Users", _] => true,
        _ => false,
    }
}

/// Whether `path` is `dir` or inside it.
fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The directory above a path's first source-tree marker, if any.
fn repo_root(path: &str) -> Option<String> {
    const MARKERS: &[&str] = &[
        "src", "crates", "lib", "tests", "docs", "packages", "cmd", "pkg", ".git",
    ];
    let parts: Vec<&str> = path.split('/').collect();
    // parts[0] is "" for an absolute path; a marker needs a directory above it.
    let i = parts.iter().skip(2).position(|p| MARKERS.contains(p))? + 2;
    let root = parts[..i].join("/");
    (!never_a_project(&root)).then_some(root)
}

/// Rule (b).
fn projects(events: &[Event<'_>], now: i64, out: &mut Vec<Distilled>) {
    let recent: Vec<&Event<'_>> = events
        .iter()
        .filter(|e| e.within(now, PROJECT_WINDOW_MS) && !e.denied())
        .collect();
    // Session directories first, deepest first, so a file is counted for the deepest.
    let mut cwds: Vec<&str> = recent
        .iter()
        .filter(|e| e.is(SESSION_STARTED))
        .filter_map(|e| e.meta("cwd"))
        .map(normalize_dir)
        .filter(|d| !never_a_project(d))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    cwds.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    let mut seen: BTreeMap<String, Vec<Event<'_>>> = BTreeMap::new();
    for e in recent {
        let dir = if e.is(SESSION_STARTED) {
            e.meta("cwd")
                .map(normalize_dir)
                .filter(|d| !never_a_project(d))
                .map(str::to_string)
        } else if let Some(path) = e.meta("resource").and_then(|r| r.strip_prefix("path:")) {
            let path = normalize_dir(path);
            cwds.iter()
                .find(|c| is_under(path, c))
                .map(|c| (*c).to_string())
                .or_else(|| repo_root(path))
        } else {
            None
        };
        if let Some(dir) = dir {
            seen.entry(dir).or_default().push(*e);
        }
    }
    let mut facts: Vec<(usize, i64, String, Distilled)> = seen
        .into_iter()
        .filter(|(_, sightings)| sightings.len() >= PROJECT_MIN_SIGHTINGS)
        .map(|(dir, sightings)| {
            let n = sightings.len();
            let last = sightings.last().map_or(0, |e| e.at);
            let fact = Distilled {
                content: format!(
                    "The owner works on {dir} ({n} sessions and file accesses in the last 7 days)"
                ),
                tags: vec!["project".to_string()],
                evidence: evidence(&sightings),
                sketch: Some((SketchSection::Projects, dir.clone())),
            };
            (n, last, dir, fact)
        })
        .collect();
    facts.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    out.extend(facts.into_iter().map(|(_, _, _, f)| f));
}

/// Rule (c).
fn focus(events: &[Event<'_>], now: i64, out: &mut Vec<Distilled>) {
    // Distinct tasks by key, with their sessions; ordered by their latest session.
    let mut tasks: BTreeMap<String, (String, Vec<Event<'_>>)> = BTreeMap::new();
    for e in events {
        if !(e.is(SESSION_STARTED) && e.within(now, FOCUS_WINDOW_MS)) {
            continue;
        }
        let Some(task) = e.meta("task") else {
            continue;
        };
        let key = dedup_key(task);
        if key.is_empty() {
            continue;
        }
        let text = task.split_whitespace().collect::<Vec<_>>().join(" ");
        let entry = tasks
            .entry(key)
            .or_insert_with(|| (String::new(), Vec::new()));
        // The latest wording wins.
        entry.0 = text;
        entry.1.push(*e);
    }
    let mut tasks: Vec<(String, Vec<Event<'_>>)> = tasks.into_values().collect();
    tasks.sort_by_key(|(_, sessions)| sessions.last().map(|e| (e.at, e.item.id.clone())));
    let skip = tasks.len().saturating_sub(MAX_FOCUS);
    for (task, sessions) in tasks.into_iter().skip(skip) {
        out.push(Distilled {
            content: format!("The owner's current focus: {task}"),
            tags: vec!["focus".to_string()],
            evidence: evidence(&sessions),
            sketch: Some((SketchSection::Focus, task)),
        });
    }
}

/// A preference pattern: what it matches, whether it must start a sentence (after an
/// allowed lead-in), and how it reads as sketch entry and as content.
struct Pattern {
    words: &'static str,
    sentence_start: bool,
    entry: fn(&str) -> String,
    content: fn(&str) -> String,
}

const PATTERNS: &[Pattern] = &[
    Pattern {
        words: "i prefer",
        sentence_start: false,
        entry: |x| format!("Prefers {x}"),
        content: |x| format!("The owner prefers {x}"),
    },
    Pattern {
        words: "i like",
        sentence_start: false,
        entry: |x| format!("Likes {x}"),
        content: |x| format!("The owner likes {x}"),
    },
    Pattern {
        words: "always use",
        sentence_start: true,
        entry: |x| format!("Always use {x}"),
        content: |x| format!("The owner says to always use {x}"),
    },
    Pattern {
        words: "never use",
        sentence_start: true,
        entry: |x| format!("Never use {x}"),
        content: |x| format!("The owner says to never use {x}"),
    },
    Pattern {
        words: "call me",
        sentence_start: true,
        entry: |x| format!("Call the owner {x}"),
        content: |x| format!("The owner wants to be called {x}"),
    },
];

/// What may come before a sentence-start pattern in its sentence.
const LEAD_INS: &[&str] = &[
    "",
    "please",
    "i",
    "we",
    "you should",
    "you must",
    "just",
    "and",
];

/// Objects that say nothing on their own.
const VAGUE: &[&str] = &["it", "that", "this", "them", "these", "those", "so", "to"];

/// The sentences of `text` with the character that ended each (`None` at the end).
fn sentences(text: &str) -> Vec<(&str, Option<char>)> {
    let mut out = Vec::new();
    let mut from = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = match c {
            '!' | '?' | ';' | '\n' => true,
            '.' => chars.peek().is_none_or(|&(_, n)| n.is_whitespace()),
            _ => false,
        };
        if ends {
            out.push((&text[from..i], Some(c)));
            from = i + c.len_utf8();
        }
    }
    if from < text.len() {
        out.push((&text[from..], None));
    }
    out
}

/// The preferences stated in `text`, as (sketch entry, content).
fn stated(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (sentence, end) in sentences(text) {
        if end == Some('?') {
            continue;
        }
        for (i, _) in sentence.char_indices() {
            let before = &sentence[..i];
            if before
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '\'')
            {
                continue;
            }
            let Some(p) = PATTERNS.iter().find(|p| {
                sentence
                    .get(i..i + p.words.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(p.words))
            }) else {
                continue;
            };
            let rest = &sentence[i + p.words.len()..];
            if !rest.starts_with(char::is_whitespace) {
                continue;
            }
            if p.sentence_start {
                let lead = before.trim().trim_end_matches(',').trim().to_lowercase();
                if !LEAD_INS.contains(&lead.as_str()) {
                    continue;
                }
            }
            let object = object_of(rest);
            if object.is_empty() || VAGUE.contains(&object.to_lowercase().as_str()) {
                continue;
            }
            out.push(((p.entry)(&object), (p.content)(&object)));
        }
    }
    out
}

/// The object of a preference: the rest of the sentence, one line, without closing
/// punctuation, at most [`MAX_PREFERENCE_BYTES`] (cut at a word).
fn object_of(rest: &str) -> String {
    let mut s = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > MAX_PREFERENCE_BYTES {
        let mut end = MAX_PREFERENCE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        end = s[..end].rfind(' ').unwrap_or(end);
        s.truncate(end);
    }
    s.trim_end_matches(|c: char| c.is_whitespace() || is_end_punct(c))
        .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | ',' | '-'))
        .to_string()
}

/// Rule (d).
fn preferences(events: &[Event<'_>], out: &mut Vec<Distilled>) {
    // By entry key: the latest wording and the asks that stated it.
    let mut found: BTreeMap<String, (String, String, Vec<Event<'_>>)> = BTreeMap::new();
    for e in events.iter().filter(|e| e.is(ASK)) {
        let text = e.meta("text").unwrap_or(&e.item.content);
        for (entry, content) in stated(text) {
            let slot = found
                .entry(dedup_key(&entry))
                .or_insert_with(|| (String::new(), String::new(), Vec::new()));
            slot.0 = entry;
            slot.1 = content;
            if slot.2.last().is_none_or(|l| l.item.id != e.item.id) {
                slot.2.push(*e);
            }
        }
    }
    let mut prefs: Vec<(String, String, Vec<Event<'_>>)> = found.into_values().collect();
    prefs.sort_by_key(|(_, _, asks)| asks.last().map(|e| (e.at, e.item.id.clone())));
    for (entry, content, asks) in prefs {
        out.push(Distilled {
            content,
            tags: vec!["preference".to_string()],
            evidence: evidence(&asks),
            sketch: Some((SketchSection::Preferences, entry)),
        });
    }
}

/// Rule (e).
fn refusals(events: &[Event<'_>], now: i64, out: &mut Vec<Distilled>) {
    let mut by_target: BTreeMap<(&str, Option<&str>), Vec<Event<'_>>> = BTreeMap::new();
    for e in events {
        if !(e.denied() && e.within(now, WINDOW_MS)) {
            continue;
        }
        let Some(action) = e.meta("tool").or_else(|| e.meta("action")).or(e.name) else {
            continue;
        };
        by_target
            .entry((action, e.meta("resource")))
            .or_default()
            .push(*e);
    }
    let mut facts: Vec<(usize, Distilled)> = by_target
        .into_iter()
        .filter(|(_, denials)| denials.len() >= REFUSAL_MIN)
        .map(|((action, resource), denials)| {
            let n = denials.len();
            let content = match resource {
                Some(r) => format!("Requests to {action} on {r} are refused ({n} times)"),
                None => format!("Requests to {action} are refused ({n} times)"),
            };
            let fact = Distilled {
                content,
                tags: vec!["refusal".to_string()],
                evidence: evidence(&denials),
                sketch: None,
            };
            (n, fact)
        })
        .collect();
    // Stable: equal counts keep the (action, resource) order of the map.
    facts.sort_by_key(|(n, _)| *n);
    out.extend(facts.into_iter().map(|(_, f)| f));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::Namespace;
    use serde_json::{Value, json};

    /// 2025-06-15T12:00:00Z.
    const NOW: i64 = 1_749_988_800_000;

    fn item(id: &str, kind: Kind, content: &str, at: i64, metadata: Value) -> Item {
        Item {
            id: id.to_string(),
            namespace: Namespace::owner(),
            kind,
            content: content.to_string(),
            tags: Vec::new(),
            metadata,
            source: None,
            created_at: at,
            valid_from: at,
            valid_to: None,
            supersedes: None,
            ttl_ms: None,
            expires_at: None,
        }
    }

    fn ep(id: &str, ago_ms: i64, metadata: Value) -> Item {
        item(id, Kind::Episodic, "event", NOW - ago_ms, metadata)
    }

    fn call(id: &str, ago_ms: i64, tool: &str, outcome: &str, resource: &str) -> Item {
        ep(
            id,
            ago_ms,
            json!({"event": "tool.call", "tool": tool, "outcome": outcome, "resource": resource}),
        )
    }

    fn session(id: &str, ago_ms: i64, cwd: &str, task: &str) -> Item {
        ep(
            id,
            ago_ms,
            json!({"event": "session.started", "client": "claude-code", "cwd": cwd, "task": task}),
        )
    }

    fn ask(id: &str, ago_ms: i64, text: &str) -> Item {
        ep(id, ago_ms, json!({"event": "ask", "text": text}))
    }

    fn tagged<'a>(out: &'a [Distilled], tag: &str) -> Vec<&'a Distilled> {
        out.iter()
            .filter(|d| d.tags.iter().any(|t| t == tag))
            .collect()
    }

    fn contents(ds: &[&Distilled]) -> Vec<String> {
        ds.iter().map(|d| d.content.clone()).collect()
    }

    #[test]
    fn dedup_keys() {
        assert_eq!(
            dedup_key("  The owner   likes\nTea.  "),
            "the owner likes tea"
        );
        assert_eq!(
            dedup_key("\"(the owner likes tea)!\""),
            "the owner likes tea"
        );
        assert_eq!(dedup_key("I use C++"), "i use c++");
        assert_ne!(dedup_key("I use C#"), dedup_key("I use C"));
        assert_eq!(dedup_key("..."), "");
    }

    #[test]
    fn duplicates_keep_the_oldest() {
        let mut items = vec![
            item("mem_3", Kind::Semantic, "Likes tea.", 30, json!({})),
            item("mem_1", Kind::Semantic, "likes  TEA", 10, json!({})),
            item("mem_2", Kind::Semantic, "likes tea", 10, json!({})),
            // Other kind, other namespace, superseded, different text: not duplicates.
            item("mem_4", Kind::Knowledge, "likes tea", 5, json!({})),
            item("mem_6", Kind::Semantic, "likes coffee", 1, json!({})),
            item("mem_7", Kind::Semantic, "likes tea", 1, json!({})),
            item("mem_8", Kind::Knowledge, "x", 50, json!({})),
            item("mem_9", Kind::Knowledge, "X!", 40, json!({})),
        ];
        items[5].valid_to = Some(20);
        let mut other = item("mem_5", Kind::Semantic, "likes tea", 0, json!({}));
        other.namespace = Namespace::parse("agent:a").unwrap();
        items.push(other);
        assert_eq!(
            duplicates(&items),
            [
                (
                    "mem_1".to_string(),
                    vec!["mem_2".to_string(), "mem_3".to_string()]
                ),
                ("mem_9".to_string(), vec!["mem_8".to_string()]),
            ]
        );
        assert!(duplicates(&items[..1]).is_empty());
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(NOW), "2025-06-15");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(date(-DAY_MS), "1969-12-31");
    }

    #[test]
    fn habit_needs_three_calls_in_the_window() {
        let items = vec![
            call("mem_1", 3 * DAY_MS, "fs.read", "allow", "path:/x/a"),
            call("mem_2", 2 * DAY_MS, "fs.read", "allow", "path:/x/b"),
            call("mem_3", HOUR_MS, "fs.read", "allow", "path:/x/c"),
            call("mem_4", HOUR_MS, "fs.write", "allow", "path:/x/c"),
            call("mem_5", 2 * HOUR_MS, "fs.write", "allow", "path:/x/c"),
            // Refused calls are not use; an old call is out of the window.
            call("mem_6", 3 * HOUR_MS, "fs.write", "deny", "path:/x/c"),
            call("mem_7", 31 * DAY_MS, "fs.write", "allow", "path:/x/c"),
        ];
        let out = distil(&items, NOW);
        let habits = tagged(&out, "habit");
        assert_eq!(
            contents(&habits),
            ["The owner often uses fs.read (3 calls since 2025-06-12)"]
        );
        assert_eq!(habits[0].evidence, ["mem_1", "mem_2", "mem_3"]);
        assert_eq!(habits[0].sketch, None);
    }

    #[test]
    fn habits_order_weakest_first_and_evidence_is_capped() {
        let mut items = Vec::new();
        for i in 0..70 {
            items.push(call(
                &format!("mem_a{i:02}"),
                i * 1000,
                "a.tool",
                "allow",
                "",
            ));
        }
        for i in 0..3 {
            items.push(call(&format!("mem_b{i}"), i * 1000, "b.tool", "allow", ""));
        }
        let out = distil(&items, NOW);
        let habits = tagged(&out, "habit");
        assert_eq!(habits.len(), 2);
        assert!(habits[0].content.contains("b.tool (3 calls"));
        assert!(habits[1].content.contains("a.tool (70 calls"));
        assert_eq!(habits[1].evidence.len(), MAX_EVIDENCE);
        // Oldest first, the most recent kept: mem_a00 is the newest.
        assert_eq!(habits[1].evidence.last().unwrap(), "mem_a00");
    }

    #[test]
    fn project_from_sessions_and_paths() {
        let items = vec![
            session("mem_1", 2 * DAY_MS, "/home/u/proj/", ""),
            call(
                "mem_2",
                DAY_MS,
                "fs.read",
                "allow",
                "path:/home/u/proj/src/a.rs",
            ),
            // Seen once: not a project.
            session("mem_3", DAY_MS, "/home/u/other", ""),
            // Under no session, but inside a source tree: /home/u/lib2 twice.
            call(
                "mem_4",
                DAY_MS,
                "fs.read",
                "allow",
                "path:/home/u/lib2/src/x.rs",
            ),
            call(
                "mem_5",
                HOUR_MS,
                "fs.read",
                "allow",
                "path:/home/u/lib2/tests/y.rs",
            ),
            // Never projects: home, system directories, loose files.
            session("mem_6", HOUR_MS, "/home/u", ""),
            session("mem_7", HOUR_MS, "/home/u", ""),
            call("mem_8", HOUR_MS, "fs.read", "allow", "path:/usr/lib/a.so"),
            call("mem_9", HOUR_MS, "fs.read", "allow", "path:/usr/lib/b.so"),
            call(
                "mem_10",
                HOUR_MS,
                "fs.read",
                "allow",
                "path:/home/u/notes.txt",
            ),
            call(
                "mem_11",
                HOUR_MS,
                "fs.read",
                "allow",
                "path:/home/u/todo.txt",
            ),
        ];
        let out = distil(&items, NOW);
        let projects = tagged(&out, "project");
        let entries: Vec<_> = projects.iter().map(|p| p.sketch.clone().unwrap()).collect();
        assert_eq!(
            entries,
            [
                (SketchSection::Projects, "/home/u/proj".to_string()),
                (SketchSection::Projects, "/home/u/lib2".to_string()),
            ]
        );
        assert_eq!(
            projects[0].content,
            "The owner works on /home/u/proj (2 sessions and file accesses in the last 7 days)"
        );
        assert_eq!(projects[0].evidence, ["mem_1", "mem_2"]);
    }

    #[test]
    fn files_count_for_the_deepest_session_directory() {
        let items = vec![
            session("mem_1", DAY_MS, "/work/mono", ""),
            session("mem_2", DAY_MS, "/work/mono/app", ""),
            call(
                "mem_3",
                HOUR_MS,
                "fs.read",
                "allow",
                "path:/work/mono/app/main.go",
            ),
            call(
                "mem_4",
                HOUR_MS,
                "fs.read",
                "allow",
                "path:/work/monolith/x",
            ),
        ];
        let projects: Vec<String> = distil(&items, NOW)
            .into_iter()
            .filter_map(|d| d.sketch.map(|s| s.1))
            .collect();
        assert_eq!(projects, ["/work/mono/app"]);
    }

    #[test]
    fn old_and_refused_sightings_are_not_projects() {
        let items = vec![
            session("mem_1", 8 * DAY_MS, "/home/u/proj", ""),
            session("mem_2", 9 * DAY_MS, "/home/u/proj", ""),
            call(
                "mem_3",
                HOUR_MS,
                "fs.read",
                "allow",
                "path:/home/u/proj/src/a.rs",
            ),
            call(
                "mem_4",
                HOUR_MS,
                "fs.read",
                "deny",
                "path:/home/u/proj/src/b.rs",
            ),
        ];
        assert!(tagged(&distil(&items, NOW), "project").is_empty());
    }

    #[test]
    fn focus_is_the_latest_tasks_of_the_day() {
        let items = vec![
            session("mem_1", 2 * DAY_MS, "/p", "old task"),
            session("mem_2", 20 * HOUR_MS, "/p", "task one"),
            session("mem_3", 10 * HOUR_MS, "/p", "task two"),
            session("mem_4", 5 * HOUR_MS, "/p", "Task  One."),
            session("mem_5", 4 * HOUR_MS, "/p", "task three"),
            session("mem_6", 3 * HOUR_MS, "/p", "task four"),
            session("mem_7", 2 * HOUR_MS, "/p", "  "),
        ];
        let out = distil(&items, NOW);
        let focus = tagged(&out, "focus");
        let entries: Vec<_> = focus.iter().map(|f| f.sketch.clone().unwrap().1).collect();
        // Most recent last; "task two" is the fourth most recent and drops out.
        assert_eq!(entries, ["Task One.", "task three", "task four"]);
        assert_eq!(focus[0].evidence, ["mem_2", "mem_4"]);
        assert_eq!(focus[2].content, "The owner's current focus: task four");
        assert!(
            focus
                .iter()
                .all(|f| f.sketch.as_ref().unwrap().0 == SketchSection::Focus)
        );
    }

    #[test]
    fn no_focus_without_recent_tasks() {
        let items = vec![session("mem_1", 25 * HOUR_MS, "/p", "yesterday")];
        assert!(tagged(&distil(&items, NOW), "focus").is_empty());
    }

    #[test]
    fn stated_preferences() {
        let items = vec![
            ask("mem_1", 100 * DAY_MS, "I prefer short answers. Thanks!"),
            ask(
                "mem_2",
                2 * HOUR_MS,
                "please always use rustfmt; and NEVER USE sudo.",
            ),
            ask("mem_3", HOUR_MS, "Call me Sam"),
            ask("mem_4", 30 * 60_000, "i like tea, with milk"),
            ask("mem_5", 60_000, "Again: I PREFER short answers!"),
        ];
        let out = distil(&items, NOW);
        let prefs = tagged(&out, "preference");
        let entries: Vec<_> = prefs.iter().map(|p| p.sketch.clone().unwrap()).collect();
        let want = [
            "Always use rustfmt",
            "Never use sudo",
            "Call the owner Sam",
            "Likes tea, with milk",
            "Prefers short answers",
        ];
        assert_eq!(
            entries.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
            want
        );
        assert!(entries.iter().all(|e| e.0 == SketchSection::Preferences));
        assert_eq!(
            contents(&prefs),
            [
                "The owner says to always use rustfmt",
                "The owner says to never use sudo",
                "The owner wants to be called Sam",
                "The owner likes tea, with milk",
                "The owner prefers short answers",
            ]
        );
        // Stated twice, a hundred days apart: one fact, both asks, the latest wording.
        assert_eq!(prefs[4].evidence, ["mem_1", "mem_5"]);
        assert_eq!(prefs[0].evidence, ["mem_2"]);
    }

    #[test]
    fn not_preferences() {
        for text in [
            "Do I prefer tabs?",
            "You never use tests",
            "Can you call me back later",
            "I like it",
            "I'd like a summary",
            "I liked the old one",
            "I likewise agree",
            "Hi prefer nothing",
            "always use",
            "Yesterday I never used it",
        ] {
            let out = distil(&[ask("mem_1", HOUR_MS, text)], NOW);
            assert!(out.is_empty(), "{text:?} -> {out:?}");
        }
    }

    #[test]
    fn ask_text_falls_back_to_content_and_event_to_tags() {
        let mut it = item(
            "mem_1",
            Kind::Episodic,
            "I prefer dark mode",
            NOW,
            json!({}),
        );
        it.tags = vec!["ask".to_string()];
        let out = distil(&[it], NOW);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].sketch,
            Some((SketchSection::Preferences, "Prefers dark mode".to_string()))
        );
    }

    #[test]
    fn long_preference_is_cut_at_a_word() {
        let text = format!("I prefer {}", "ünïcode words ".repeat(30));
        let out = distil(&[ask("mem_1", HOUR_MS, &text)], NOW);
        let entry = &out[0].sketch.as_ref().unwrap().1;
        assert!(entry.len() <= "Prefers ".len() + MAX_PREFERENCE_BYTES);
        assert!(
            entry.ends_with("words") || entry.ends_with("ünïcode"),
            "{entry}"
        );
    }

    #[test]
    fn repeated_refusals() {
        let items = vec![
            call("mem_1", 3 * HOUR_MS, "shell.exec", "deny", "path:/etc"),
            call("mem_2", 2 * HOUR_MS, "shell.exec", "deny", "path:/etc"),
            call("mem_3", HOUR_MS, "shell.exec", "denied", "path:/etc"),
            // Twice only, allowed, or long ago: not remembered.
            call("mem_4", HOUR_MS, "net.fetch", "deny", "url:https://x"),
            call("mem_5", HOUR_MS, "net.fetch", "deny", "url:https://x"),
            call("mem_6", HOUR_MS, "fs.read", "allow", "path:/etc"),
            call("mem_7", 40 * DAY_MS, "net.fetch", "deny", "url:https://x"),
            ep(
                "mem_8",
                HOUR_MS,
                json!({"event": "tool.call", "tool": "mail.send", "outcome": "deny"}),
            ),
            ep(
                "mem_9",
                HOUR_MS,
                json!({"event": "tool.call", "tool": "mail.send", "outcome": "deny"}),
            ),
            ep(
                "mem_10",
                HOUR_MS,
                json!({"event": "tool.call", "tool": "mail.send", "outcome": "DENY"}),
            ),
            ep(
                "mem_11",
                HOUR_MS,
                json!({"event": "tool.call", "tool": "mail.send", "outcome": "Deny"}),
            ),
        ];
        let out = distil(&items, NOW);
        let refusals = tagged(&out, "refusal");
        assert_eq!(
            contents(&refusals),
            [
                "Requests to shell.exec on path:/etc are refused (3 times)",
                "Requests to mail.send are refused (4 times)",
            ]
        );
        assert_eq!(refusals[0].evidence, ["mem_1", "mem_2", "mem_3"]);
        assert!(tagged(&out, "habit").is_empty());
    }

    #[test]
    fn old_items_are_ignored_but_old_preferences_are_not() {
        let old = 31 * DAY_MS;
        let items = vec![
            call("mem_1", old, "fs.read", "allow", "path:/home/u/p/src/a"),
            call("mem_2", old, "fs.read", "allow", "path:/home/u/p/src/a"),
            call("mem_3", old, "fs.read", "allow", "path:/home/u/p/src/a"),
            session("mem_4", old, "/home/u/p", "task"),
            session("mem_5", old, "/home/u/p", "task"),
            ask("mem_6", old, "never use emoji"),
        ];
        let out = distil(&items, NOW);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].tags, ["preference"]);
    }

    #[test]
    fn only_current_episodic_items_are_read() {
        let mut superseded = ask("mem_1", HOUR_MS, "I prefer vim");
        superseded.valid_to = Some(NOW);
        let mut semantic = ask("mem_2", HOUR_MS, "I prefer emacs");
        semantic.kind = Kind::Semantic;
        assert!(distil(&[superseded, semantic], NOW).is_empty());
    }

    #[test]
    fn output_is_deterministic_and_ordered_by_rule() {
        let mut items = vec![
            ask("mem_1", HOUR_MS, "I prefer tabs"),
            session("mem_2", HOUR_MS, "/home/u/proj", "ship it"),
            session("mem_3", 2 * HOUR_MS, "/home/u/proj", ""),
            call("mem_4", HOUR_MS, "fs.read", "allow", "path:/home/u/proj/a"),
            call("mem_5", HOUR_MS, "fs.read", "allow", "path:/home/u/proj/b"),
            call("mem_6", HOUR_MS, "fs.read", "allow", "path:/home/u/proj/c"),
            call("mem_7", HOUR_MS, "fs.write", "deny", "path:/"),
            call("mem_8", HOUR_MS, "fs.write", "deny", "path:/"),
            call("mem_9", HOUR_MS, "fs.write", "deny", "path:/"),
        ];
        let out = distil(&items, NOW);
        let tags: Vec<&str> = out.iter().map(|d| d.tags[0].as_str()).collect();
        assert_eq!(tags, ["habit", "project", "focus", "preference", "refusal"]);
        items.reverse();
        assert_eq!(distil(&items, NOW), out);
    }

    #[test]
    fn applying_to_the_sketch_puts_the_strongest_first() {
        let items = vec![
            session("mem_1", 3 * HOUR_MS, "/p", "first"),
            session("mem_2", 2 * HOUR_MS, "/p", "second"),
            ask("mem_3", HOUR_MS, "I prefer tabs"),
        ];
        let mut sketch = Sketch {
            focus: vec!["stale".to_string()],
            ..Sketch::default()
        };
        apply_to_sketch(&distil(&items, NOW), &mut sketch, 2);
        assert_eq!(sketch.focus, ["second", "first"]);
        assert_eq!(sketch.preferences, ["Prefers tabs"]);
        assert_eq!(sketch.projects, ["/p"], "two sessions in /p");
    }
}
