//! The memory fabric as typed tools: `memory.store`, `memory.update`, `memory.query`,
//! `memory.get`, `memory.history`, `memory.forget`, `memory.sketch`, `memory.ingest`.
//!
//! Every call goes through the consent broker. The resource is the namespace,
//! `memory:<namespace>`; when a call names none it is the caller's own (`memory:@self`,
//! decided as `memory:<principal id>`), which the core policy `core.own-memory` allows.
//! Anything else (the owner's memory, another agent's, a shared space) takes a grant, one
//! decision per namespace a query names. Namespaces are exact names, never patterns, so a
//! query cannot reach further than its decisions. An item asked for by id in a namespace it
//! is not in is "not found", whatever namespace it is really in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gyrus_policy::Principal;
use gyrus_tools::{
    CallContext, Ran, Requirement, Risk, SELF, ToolEnv, ToolError, Tools, Typed, TypedTool,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::chunk::{ChunkConfig, chunk_markdown, chunk_text, is_ingestible};
use crate::model::{Item, Kind, Namespace, NewItem};
use crate::sketch::{DEFAULT_BUDGET, Sketch};
use crate::store::{Forgotten, MemoryError, MemoryStore, Query, Scored, Update};

/// The most files one ingest reads.
pub const MAX_INGEST_FILES: usize = 5_000;
/// The largest file an ingest reads.
pub const MAX_INGEST_FILE_BYTES: u64 = 8 << 20;
/// The tag of the sketch item.
pub const SKETCH_TAG: &str = "sketch";

/// Registers the memory tools on `store`.
pub fn register(tools: &mut Tools, store: Arc<MemoryStore>) {
    tools.register(Typed::new(MemoryStoreTool(store.clone())));
    tools.register(Typed::new(MemoryUpdate(store.clone())));
    tools.register(Typed::new(MemoryQuery(store.clone())));
    tools.register(Typed::new(MemoryGet(store.clone())));
    tools.register(Typed::new(MemoryHistory(store.clone())));
    tools.register(Typed::new(MemoryForget(store.clone())));
    tools.register(Typed::new(MemorySketch(store.clone())));
    tools.register(Typed::new(MemoryIngest(store)));
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn err(e: MemoryError) -> ToolError {
    match e {
        MemoryError::Invalid(m) => ToolError::InvalidArgs(m),
        e @ MemoryError::NotFound(_) => ToolError::Failed(e.to_string()),
        e @ MemoryError::NotCurrent { .. } => ToolError::Conflict(e.to_string()),
        other => ToolError::Internal(other.to_string()),
    }
}

/// The namespace argument checked: `None` is the caller's own.
fn checked(ns: Option<&str>) -> Result<Option<Namespace>, ToolError> {
    ns.map(|n| Namespace::parse(n).map_err(ToolError::InvalidArgs))
        .transpose()
}

fn resource(ns: Option<&str>) -> Result<String, ToolError> {
    Ok(match checked(ns)? {
        Some(n) => n.resource(),
        None => format!("memory:{SELF}"),
    })
}

/// The namespace a call acts in: the one named, or the caller's own.
fn resolve(ns: Option<&str>, principal: &Principal) -> Result<Namespace, ToolError> {
    match checked(ns)? {
        Some(n) => Ok(n),
        None => Namespace::parse(&principal.id()).map_err(ToolError::Internal),
    }
}

/// Looks `id` up in `ns` only.
fn item_in(store: &MemoryStore, id: &str, ns: &Namespace) -> Result<Item, ToolError> {
    match store.get(id).map_err(err)? {
        Some(item) if item.namespace == *ns => Ok(item),
        _ => Err(ToolError::Failed(format!(
            "no memory item {id} in namespace {ns}; memory.query finds ids"
        ))),
    }
}

/// Arguments of `memory.store`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreArgs {
    /// The text to remember.
    pub content: String,
    /// episodic, semantic (default), procedural, knowledge or sketch.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// Labels for filtering.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A JSON object.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Where it came from (default: you).
    #[serde(default)]
    pub source: Option<String>,
    /// Forget it after this many milliseconds.
    #[serde(default)]
    pub ttl_ms: Option<i64>,
    /// From when it holds (Unix ms; default now).
    #[serde(default)]
    pub valid_from: Option<i64>,
    /// Where to store it (default: your own namespace).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `memory.store`.
#[derive(Debug)]
pub struct MemoryStoreTool(Arc<MemoryStore>);

impl TypedTool for MemoryStoreTool {
    type Args = StoreArgs;
    type Output = Item;
    const NAME: &'static str = "memory.store";
    const DESCRIPTION: &'static str = "Remember something: store a memory item (a fact, preference, event or note) in your namespace, or another you were granted. Returns the item with its id.";
    const RISK: Risk = Risk::Write;

    fn requirements(&self, a: &StoreArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new(
            Self::NAME,
            resource(a.namespace.as_deref())?,
        )?])
    }

    fn run(&self, cx: &CallContext<'_>, a: StoreArgs) -> Result<Ran<Item>, ToolError> {
        let ns = resolve(a.namespace.as_deref(), cx.principal)?;
        let new = NewItem {
            kind: a.kind.unwrap_or_default(),
            content: a.content,
            tags: a.tags,
            metadata: a.metadata,
            source: Some(a.source.unwrap_or_else(|| cx.principal.id())),
            valid_from: a.valid_from,
            ttl_ms: a.ttl_ms,
        };
        Ok(Ran::output(self.0.store(&ns, new, now_ms()).map_err(err)?))
    }
}

/// Arguments of `memory.update`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    /// The current version's id.
    pub id: String,
    /// The new text.
    #[serde(default)]
    pub content: Option<String>,
    /// The new tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// The new metadata object.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// The item's namespace (default: your own).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `memory.update`.
#[derive(Debug)]
pub struct MemoryUpdate(Arc<MemoryStore>);

impl TypedTool for MemoryUpdate {
    type Args = UpdateArgs;
    type Output = Item;
    const NAME: &'static str = "memory.update";
    const DESCRIPTION: &'static str = "Correct a memory item: stores a new version that supersedes the current one. The old version stays in its history (memory.history).";
    const RISK: Risk = Risk::Write;

    fn requirements(&self, a: &UpdateArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new(
            Self::NAME,
            resource(a.namespace.as_deref())?,
        )?])
    }

    fn run(&self, cx: &CallContext<'_>, a: UpdateArgs) -> Result<Ran<Item>, ToolError> {
        let ns = resolve(a.namespace.as_deref(), cx.principal)?;
        item_in(&self.0, &a.id, &ns)?;
        let update = Update {
            content: a.content,
            tags: a.tags,
            metadata: a.metadata,
        };
        Ok(Ran::output(
            self.0.update(&a.id, update, now_ms()).map_err(err)?,
        ))
    }
}

/// What `memory.query` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct QueryOutput {
    /// Best first.
    pub hits: Vec<Scored>,
}

/// `memory.query`.
#[derive(Debug)]
pub struct MemoryQuery(Arc<MemoryStore>);

impl TypedTool for MemoryQuery {
    type Args = Query;
    type Output = QueryOutput;
    const NAME: &'static str = "memory.query";
    const DESCRIPTION: &'static str = "Search memory by meaning and by words (full-text and semantic search fused), with filters on kind, tags, time range and as-of time.";
    const RISK: Risk = Risk::Read;

    fn requirements(&self, a: &Query, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        if a.namespaces.is_empty() {
            return Ok(vec![Requirement::new(Self::NAME, resource(None)?)?]);
        }
        if a.namespaces.len() > 16 {
            return Err(ToolError::InvalidArgs(
                "at most 16 namespaces per query".into(),
            ));
        }
        a.namespaces
            .iter()
            .map(|n| Requirement::new(Self::NAME, n.resource()))
            .collect()
    }

    fn run(&self, cx: &CallContext<'_>, mut query: Query) -> Result<Ran<QueryOutput>, ToolError> {
        if query.namespaces.is_empty() {
            query.namespaces = vec![resolve(None, cx.principal)?];
        }
        let hits = self.0.query(&query, now_ms()).map_err(err)?;
        Ok(Ran::output(QueryOutput { hits }))
    }
}

/// Arguments of `memory.get` and `memory.history`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// The item's id.
    pub id: String,
    /// Its namespace (default: your own).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `memory.get`.
#[derive(Debug)]
pub struct MemoryGet(Arc<MemoryStore>);

impl TypedTool for MemoryGet {
    type Args = IdArgs;
    type Output = Item;
    const NAME: &'static str = "memory.get";
    const DESCRIPTION: &'static str = "Read one memory item version by id.";
    const RISK: Risk = Risk::Read;

    fn requirements(&self, a: &IdArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new(
            Self::NAME,
            resource(a.namespace.as_deref())?,
        )?])
    }

    fn run(&self, cx: &CallContext<'_>, a: IdArgs) -> Result<Ran<Item>, ToolError> {
        let ns = resolve(a.namespace.as_deref(), cx.principal)?;
        Ok(Ran::output(item_in(&self.0, &a.id, &ns)?))
    }
}

/// What `memory.history` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryOutput {
    /// Every version, oldest first; the last with no `valid_to` is current.
    pub versions: Vec<Item>,
}

/// `memory.history`.
#[derive(Debug)]
pub struct MemoryHistory(Arc<MemoryStore>);

impl TypedTool for MemoryHistory {
    type Args = IdArgs;
    type Output = HistoryOutput;
    const NAME: &'static str = "memory.history";
    const DESCRIPTION: &'static str =
        "Every version of a memory item, oldest first, with when each held.";
    const RISK: Risk = Risk::Read;

    fn requirements(&self, a: &IdArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new(
            Self::NAME,
            resource(a.namespace.as_deref())?,
        )?])
    }

    fn run(&self, cx: &CallContext<'_>, a: IdArgs) -> Result<Ran<HistoryOutput>, ToolError> {
        let ns = resolve(a.namespace.as_deref(), cx.principal)?;
        item_in(&self.0, &a.id, &ns)?;
        let versions = self.0.history(&a.id).map_err(err)?;
        Ok(Ran::output(HistoryOutput { versions }))
    }
}

/// `memory.forget`.
#[derive(Debug)]
pub struct MemoryForget(Arc<MemoryStore>);

impl TypedTool for MemoryForget {
    type Args = IdArgs;
    type Output = Forgotten;
    const NAME: &'static str = "memory.forget";
    const DESCRIPTION: &'static str = "Forget a memory item for real: every version is deleted, with its vector and search entries. A record that it was forgotten (not what it said) stays for the owner.";
    const RISK: Risk = Risk::Irreversible;

    fn requirements(&self, a: &IdArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new(
            Self::NAME,
            resource(a.namespace.as_deref())?,
        )?])
    }

    fn run(&self, cx: &CallContext<'_>, a: IdArgs) -> Result<Ran<Forgotten>, ToolError> {
        let ns = resolve(a.namespace.as_deref(), cx.principal)?;
        item_in(&self.0, &a.id, &ns)?;
        Ok(Ran::output(
            self.0
                .forget(&a.id, &cx.principal.id(), now_ms())
                .map_err(err)?,
        ))
    }
}

/// The owner's sketch: the current sketch item in `owner`, parsed.
pub fn current_sketch(store: &MemoryStore) -> Result<(Option<Item>, Sketch), MemoryError> {
    let q = Query {
        namespaces: vec![Namespace::owner()],
        kinds: vec![Kind::Sketch],
        tags: vec![SKETCH_TAG.to_string()],
        limit: Some(1),
        ..Query::default()
    };
    let item = store
        .query(&q, now_ms())?
        .into_iter()
        .next()
        .map(|s| s.item);
    let sketch = match &item {
        Some(i) => Sketch::parse(&i.content).unwrap_or_default(),
        None => Sketch::default(),
    };
    Ok((item, sketch))
}

/// Stores `sketch` (fitted to `budget`) as the new version of the owner's sketch.
pub fn save_sketch(
    store: &MemoryStore,
    current: Option<&Item>,
    mut sketch: Sketch,
    budget: usize,
    source: &str,
) -> Result<(Item, Vec<String>), MemoryError> {
    let dropped = sketch.fit(budget);
    let mut text = sketch.render();
    if text.trim().is_empty() {
        text = "## Notes\n- (empty)\n".to_string();
    }
    let item = match current {
        Some(c) if c.content == text => c.clone(),
        Some(c) => store.update(
            &c.id,
            Update {
                content: Some(text),
                ..Update::default()
            },
            now_ms(),
        )?,
        None => {
            let new = NewItem::new(Kind::Sketch, text)
                .tagged([SKETCH_TAG])
                .from_source(source);
            store.store(&Namespace::owner(), new, now_ms())?
        }
    };
    Ok((item, dropped))
}

/// Arguments of `memory.sketch`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SketchArgs {
    /// A new sketch, in the rendered form (sections `## Preferences`, `## Projects`,
    /// `## Current focus`, `## Notes`, entries `- …`). Omit to read it.
    #[serde(default)]
    pub text: Option<String>,
    /// The byte budget (default 2048).
    #[serde(default)]
    pub budget: Option<usize>,
}

/// What `memory.sketch` returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SketchOutput {
    /// The sketch as every model call sees it.
    pub text: String,
    /// Its sections.
    pub sketch: Sketch,
    /// Its byte budget.
    pub budget: usize,
    /// The item holding it (its history is the sketch's history).
    pub item_id: Option<String>,
    /// Entries dropped to fit the budget.
    pub dropped: Vec<String>,
}

/// `memory.sketch`.
#[derive(Debug)]
pub struct MemorySketch(Arc<MemoryStore>);

impl TypedTool for MemorySketch {
    type Args = SketchArgs;
    type Output = SketchOutput;
    const NAME: &'static str = "memory.sketch";
    const DESCRIPTION: &'static str = "Read or replace the owner's sketch: the compact profile (preferences, projects, current focus) given to every model call.";
    const RISK: Risk = Risk::Write;

    fn requirements(&self, _a: &SketchArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new(
            Self::NAME,
            Namespace::owner().resource(),
        )?])
    }

    fn run(&self, cx: &CallContext<'_>, a: SketchArgs) -> Result<Ran<SketchOutput>, ToolError> {
        let budget = a.budget.unwrap_or(DEFAULT_BUDGET);
        if !(64..=65_536).contains(&budget) {
            return Err(ToolError::InvalidArgs(format!(
                "budget must be 64 to 65536 bytes, got {budget}"
            )));
        }
        let (item, sketch) = current_sketch(&self.0).map_err(err)?;
        let (item, sketch, dropped) = match a.text {
            None => (item, sketch, Vec::new()),
            Some(text) => {
                let new = Sketch::parse(&text).map_err(ToolError::InvalidArgs)?;
                let (saved, dropped) =
                    save_sketch(&self.0, item.as_ref(), new, budget, &cx.principal.id())
                        .map_err(err)?;
                let parsed = Sketch::parse(&saved.content).unwrap_or_default();
                (Some(saved), parsed, dropped)
            }
        };
        Ok(Ran::output(SketchOutput {
            text: sketch.render(),
            sketch,
            budget,
            item_id: item.map(|i| i.id),
            dropped,
        }))
    }
}

/// Arguments of `memory.ingest`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestArgs {
    /// A text or Markdown file, or a directory of them (read recursively, hidden entries
    /// skipped).
    pub path: String,
    /// Where to store the chunks (default: your own namespace).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Extra tags on every chunk.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What `memory.ingest` returns.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct IngestOutput {
    /// Files read.
    pub files: usize,
    /// Chunks stored new.
    pub stored: usize,
    /// Chunks whose text changed since the last ingest (stored as new versions).
    pub updated: usize,
    /// Chunks unchanged since the last ingest.
    pub unchanged: usize,
    /// Chunks past the end of a file that shrank since the last ingest: no longer current,
    /// still in history.
    pub retired: usize,
    /// Files skipped, with why.
    pub skipped: Vec<String>,
}

/// `memory.ingest`.
#[derive(Debug)]
pub struct MemoryIngest(Arc<MemoryStore>);

impl TypedTool for MemoryIngest {
    type Args = IngestArgs;
    type Output = IngestOutput;
    const NAME: &'static str = "memory.ingest";
    const DESCRIPTION: &'static str = "Add text and Markdown files (a file or a directory) to the knowledge base, in chunks that remember their source file and lines. Re-ingesting stores only what changed.";
    const RISK: Risk = Risk::Write;

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(600)
    }

    fn requirements(&self, a: &IngestArgs, _env: &ToolEnv) -> Result<Vec<Requirement>, ToolError> {
        let path = gyrus_tools::paths::resolve(&a.path, true)?;
        let read = if path.is_dir() {
            gyrus_tools::paths::tree_resource(&path)?
        } else {
            gyrus_tools::paths::resource(&path)?
        };
        Ok(vec![
            Requirement::new(Self::NAME, resource(a.namespace.as_deref())?)?,
            Requirement::new("fs.read", read)?,
        ])
    }

    fn run(&self, cx: &CallContext<'_>, a: IngestArgs) -> Result<Ran<IngestOutput>, ToolError> {
        let ns = resolve(a.namespace.as_deref(), cx.principal)?;
        let root = gyrus_tools::paths::resolve(&a.path, true)?;
        let mut out = IngestOutput::default();
        let files = ingestible_files(&root, &mut out.skipped)?;
        for file in files {
            if std::time::Instant::now() > cx.deadline {
                out.skipped.push(format!("{}: out of time", file.display()));
                continue;
            }
            match ingest_file(&self.0, &ns, &file, &a.tags, &mut out) {
                Ok(()) => out.files += 1,
                Err(e) => out.skipped.push(format!("{}: {e}", file.display())),
            }
        }
        Ok(Ran::output(out))
    }
}

fn ingestible_files(root: &Path, skipped: &mut Vec<String>) -> Result<Vec<PathBuf>, ToolError> {
    let meta = std::fs::symlink_metadata(root)
        .map_err(|e| ToolError::Failed(format!("cannot read {}: {e}", root.display())))?;
    if meta.is_file() {
        if !is_ingestible(root) {
            return Err(ToolError::InvalidArgs(format!(
                "{} is not a text or Markdown file (.md, .markdown, .txt, .rst, .text)",
                root.display()
            )));
        }
        return Ok(vec![root.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| ToolError::Failed(format!("cannot list {}: {e}", dir.display())))?;
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if hidden || m.file_type().is_symlink() {
                continue;
            }
            if m.is_dir() {
                stack.push(path);
            } else if m.is_file() && is_ingestible(&path) {
                if files.len() >= MAX_INGEST_FILES {
                    skipped.push(format!(
                        "{}: more than {MAX_INGEST_FILES} files",
                        path.display()
                    ));
                } else {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

fn ingest_file(
    store: &MemoryStore,
    ns: &Namespace,
    file: &Path,
    tags: &[String],
    out: &mut IngestOutput,
) -> Result<(), String> {
    let meta = std::fs::metadata(file).map_err(|e| e.to_string())?;
    if meta.len() > MAX_INGEST_FILE_BYTES {
        return Err(format!("larger than {MAX_INGEST_FILE_BYTES} bytes"));
    }
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let markdown = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown"));
    let cfg = ChunkConfig::default();
    let chunks = if markdown {
        chunk_markdown(&text, &cfg)
    } else {
        chunk_text(&text, &cfg)
    };
    let count = chunks.len();
    let mut news = Vec::new();
    for chunk in chunks {
        let source = format!("file:{}#{}", file.display(), chunk.index);
        let metadata = serde_json::json!({
            "path": file.display().to_string(),
            "chunk": chunk.index,
            "heading": chunk.heading,
            "lines": [chunk.start_line, chunk.end_line],
        });
        match store
            .current_by_source(ns, &source)
            .map_err(|e| e.to_string())?
        {
            Some(old) if old.content == chunk.text => out.unchanged += 1,
            Some(old) => {
                store
                    .update(
                        &old.id,
                        Update {
                            content: Some(chunk.text),
                            metadata: Some(metadata),
                            ..Update::default()
                        },
                        now_ms(),
                    )
                    .map_err(|e| e.to_string())?;
                out.updated += 1;
            }
            None => {
                let mut new = NewItem::new(Kind::Knowledge, chunk.text)
                    .tagged(tags.iter().cloned())
                    .tagged(["knowledge"])
                    .from_source(source);
                new.metadata = Some(metadata);
                news.push(new);
            }
        }
    }
    let prefix = format!("file:{}#", file.display());
    for (source, id) in store
        .current_with_source_prefix(ns, &prefix)
        .map_err(|e| e.to_string())?
    {
        let past_end = source[prefix.len()..]
            .parse::<usize>()
            .is_ok_and(|index| index >= count);
        if past_end {
            store.retire(&id, now_ms()).map_err(|e| e.to_string())?;
            out.retired += 1;
        }
    }
    // One transaction (and one embedding batch) per file, at most 256 chunks each.
    for batch in news.chunks(256) {
        out.stored += batch.len();
        store
            .store_many(ns, batch.to_vec(), now_ms())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
