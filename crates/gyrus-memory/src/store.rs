//! The memory store: one SQLite file (`memory/memory.db`) holding every item version, its
//! full-text index (FTS5) and its vector, plus an in-RAM vector index over the current items.
//!
//! - Writes are transactions (`BEGIN IMMEDIATE`, WAL, `synchronous=FULL`): once a call returns
//!   the item survives `kill -9`, and a half-written one never shows.
//! - Updates never overwrite: the new version supersedes the old, whose `valid_to` is set.
//! - `forget` really deletes, every version, its vector and its full-text postings, with
//!   `secure_delete` so the freed pages are zeroed; a record of what was forgotten (ids,
//!   namespace, when, by whom; no content) stays for the owner.
//! - Items with a TTL are ephemeral: invisible once expired, deleted by [`MemoryStore::expire`].
//!
//! The vector index holds only current items. Below `hnsw_threshold` vectors it is exact
//! ([`FlatIndex`]); above, [`MemoryStore::maintain`] builds an [`HnswIndex`] off the request
//! path and swaps it in, and saves it beside the database with the sequence number of the last
//! change it holds, so a restart replays only the changes after it (`vector_log`).
//!
//! One daemon owns the file: the in-RAM index does not see writes made by another process.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::embed::{EmbedError, Embedder, EmbedderId};
use crate::hot::{HOT_ITEMS, HOT_QUERIES, Hot};
use crate::model::{Item, Kind, Namespace, NewItem};
use crate::vector::{FlatIndex, HnswConfig, HnswIndex, IndexError, VectorIndex};

/// Reciprocal rank fusion's constant (Cormack et al. use 60).
pub const RRF_K: f64 = 60.0;
/// The default size above which the vector index is HNSW.
pub const DEFAULT_HNSW_THRESHOLD: usize = 20_000;
/// The most hits one query returns.
pub const MAX_LIMIT: usize = 1000;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The input is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// No such item (or not in the namespaces asked).
    #[error("no memory item {0}")]
    NotFound(String),
    /// The item was superseded or expired; only its current version can be updated.
    #[error("memory item {id} is not current (superseded by {by}); update {by} instead")]
    NotCurrent {
        /// The item asked for.
        id: String,
        /// Its newer version, or `expired`.
        by: String,
    },
    /// The store's vectors are from another embedder.
    #[error(
        "memory.db's vectors were made by {stored}, but the embedder now is {current}; vectors of two models cannot be compared"
    )]
    EmbedderMismatch {
        /// The store's.
        stored: String,
        /// The one given.
        current: String,
    },
    /// Embedding failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The vector index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// SQLite failed.
    #[error("memory database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// How a query ranks.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Full-text and vector search fused by reciprocal rank fusion.
    #[default]
    Hybrid,
    /// Full-text (FTS5, BM25) only.
    Text,
    /// Vector (semantic) only.
    Vector,
}

/// A search of the memory fabric. The caller has already been allowed every namespace it
/// names; the store never looks outside them. Also the arguments of `memory.query`, where
/// no namespace means the caller's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// What to look for. Empty: the newest items matching the filters.
    #[serde(default)]
    pub text: String,
    /// Where to look (at least one for the store; for `memory.query`, default: your own
    /// namespace, and each one named needs its own permission).
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// Only these kinds (any, when empty).
    #[serde(default)]
    pub kinds: Vec<Kind>,
    /// Only items carrying every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only items created at or after this time (Unix ms).
    #[serde(default)]
    pub from: Option<i64>,
    /// Only items created before this time (Unix ms).
    #[serde(default)]
    pub to: Option<i64>,
    /// The versions that held at this time, instead of the current ones.
    #[serde(default)]
    pub as_of: Option<i64>,
    /// At most this many hits (default 10, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// How to rank.
    #[serde(default)]
    pub mode: Mode,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scored {
    /// The item.
    pub item: Item,
    /// The fused score (higher is better).
    pub score: f64,
    /// Its rank in the full-text results, 1-based.
    pub text_rank: Option<usize>,
    /// Its rank in the vector results, 1-based.
    pub vector_rank: Option<usize>,
}

/// An update: what changes (the rest is carried over from the current version).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Update {
    /// The new text.
    #[serde(default)]
    pub content: Option<String>,
    /// The new tags (replacing the old).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// The new metadata object (replacing the old).
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// What a `forget` deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Forgotten {
    /// The id asked for.
    pub id: String,
    /// Every version deleted.
    pub versions: Vec<String>,
    /// Whose it was.
    pub namespace: Namespace,
    /// When.
    pub forgotten_at: i64,
    /// Who asked (a principal id).
    pub by: String,
}

/// Counts, for `gyrus memory` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stats {
    /// Current items per kind.
    pub current: HashMap<String, u64>,
    /// Every stored version.
    pub versions: u64,
    /// Vectors in the in-RAM index.
    pub indexed: usize,
    /// `flat` or `hnsw`.
    pub index: String,
    /// Forget records.
    pub forgotten: u64,
    /// Items and query embeddings held in the in-RAM tier.
    pub hot: (usize, usize),
}

/// The store. Cheap to share (`Arc`); calls are serialised on one connection.
pub struct MemoryStore {
    db: Mutex<Connection>,
    vectors: Mutex<Vectors>,
    /// The in-RAM tier; a leaf lock (nothing else is locked while holding it, except the
    /// database lock taken before it).
    hot: Mutex<Hot>,
    embedder: Arc<dyn Embedder>,
    space: i64,
    index_path: PathBuf,
    hnsw_threshold: usize,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("index_path", &self.index_path)
            .field("embedder", self.embedder.id())
            .finish_non_exhaustive()
    }
}

/// A fused score with the ranks it came from (text, vector).
type Fused = (f64, Option<usize>, Option<usize>);

/// What the full-text half of a query found (see [`MemoryStore::query`]).
struct TextPhase {
    /// The ids of the query's namespaces that exist.
    ns_ids: Vec<i64>,
    /// The query has no text (or no namespace): the newest matching items are the answer.
    newest: bool,
    /// The query's search terms.
    terms: Vec<String>,
    /// BM25 hits, best first, with the text the fusion weighs them by.
    hits: Vec<(i64, String)>,
}

/// The in-RAM index and the last `vector_log` sequence number it reflects.
struct Vectors {
    index: Index,
    seq: i64,
}

enum Index {
    Flat(FlatIndex),
    Hnsw(Box<HnswIndex>),
}

impl Index {
    fn as_dyn(&self) -> &dyn VectorIndex {
        match self {
            Index::Flat(i) => i,
            Index::Hnsw(i) => i.as_ref(),
        }
    }
    fn as_dyn_mut(&mut self) -> &mut dyn VectorIndex {
        match self {
            Index::Flat(i) => i,
            Index::Hnsw(i) => i.as_mut(),
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS namespaces (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS spaces (
  id INTEGER PRIMARY KEY, model TEXT NOT NULL, revision TEXT NOT NULL, dim INTEGER NOT NULL,
  UNIQUE (model, revision, dim));
CREATE TABLE IF NOT EXISTS items (
  rowid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  lineage TEXT NOT NULL,
  ns INTEGER NOT NULL REFERENCES namespaces(id),
  kind TEXT NOT NULL,
  content TEXT NOT NULL,
  tags TEXT NOT NULL,
  metadata TEXT NOT NULL,
  source TEXT,
  created_at INTEGER NOT NULL,
  valid_from INTEGER NOT NULL,
  valid_to INTEGER,
  supersedes TEXT,
  ttl_ms INTEGER,
  expires_at INTEGER);
CREATE INDEX IF NOT EXISTS items_current ON items (ns, kind, created_at) WHERE valid_to IS NULL;
CREATE INDEX IF NOT EXISTS items_time ON items (ns, created_at);
CREATE INDEX IF NOT EXISTS items_lineage ON items (lineage);
CREATE INDEX IF NOT EXISTS items_source ON items (source) WHERE source IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(
  content, tags, ns, content='items', content_rowid='rowid', tokenize='porter unicode61');
CREATE TRIGGER IF NOT EXISTS items_fts_add AFTER INSERT ON items BEGIN
  INSERT INTO items_fts (rowid, content, tags, ns) VALUES (new.rowid, new.content, new.tags, new.ns);
END;
CREATE TRIGGER IF NOT EXISTS items_fts_del AFTER DELETE ON items BEGIN
  INSERT INTO items_fts (items_fts, rowid, content, tags, ns)
    VALUES ('delete', old.rowid, old.content, old.tags, old.ns);
END;
CREATE TABLE IF NOT EXISTS vectors (
  item INTEGER PRIMARY KEY, space INTEGER NOT NULL REFERENCES spaces(id), vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS vector_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, item INTEGER NOT NULL, op TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forgotten (
  id TEXT NOT NULL, lineage TEXT NOT NULL, namespace TEXT NOT NULL, kind TEXT NOT NULL,
  versions TEXT NOT NULL, forgotten_at INTEGER NOT NULL, by TEXT NOT NULL);
";

const ITEM_COLUMNS: &str = "items.rowid, items.id, namespaces.name, items.kind, items.content, items.tags, \
     items.metadata, items.source, items.created_at, items.valid_from, items.valid_to, \
     items.supersedes, items.ttl_ms, items.expires_at";

/// Stores made before the full-text index had its `ns` column (so a query's namespaces
/// narrow the match inside FTS5, before any row is scored) get the index rebuilt from
/// `items`, in one transaction.
fn migrate_fts(conn: &Connection) -> Result<(), MemoryError> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'items_fts'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if sql.is_none_or(|s| s.contains(" ns,")) {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         DROP TRIGGER IF EXISTS items_fts_add;
         DROP TRIGGER IF EXISTS items_fts_del;
         DROP TABLE items_fts;
         {SCHEMA}
         INSERT INTO items_fts (items_fts) VALUES ('rebuild');
         COMMIT;"
    ))?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn new_id() -> Result<String, MemoryError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| MemoryError::Invalid(format!("no randomness: {e}")))?;
    Ok(format!(
        "mem_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn row_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Item)> {
    let bad = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(e),
        )
    };
    let ns: String = row.get(2)?;
    let kind: String = row.get(3)?;
    let tags: String = row.get(5)?;
    let metadata: String = row.get(6)?;
    Ok((
        row.get(0)?,
        Item {
            id: row.get(1)?,
            namespace: Namespace::parse(&ns).map_err(|e| bad(2, e))?,
            kind: Kind::parse(&kind).ok_or_else(|| bad(3, format!("unknown kind {kind}")))?,
            content: row.get(4)?,
            tags: serde_json::from_str(&tags).map_err(|e| bad(5, e.to_string()))?,
            metadata: serde_json::from_str(&metadata).map_err(|e| bad(6, e.to_string()))?,
            source: row.get(7)?,
            created_at: row.get(8)?,
            valid_from: row.get(9)?,
            valid_to: row.get(10)?,
            supersedes: row.get(11)?,
            ttl_ms: row.get(12)?,
            expires_at: row.get(13)?,
        },
    ))
}

impl MemoryStore {
    /// Opens (creating) the store at `path`, with `embedder` for vectors. The HNSW index
    /// file, when there is one, is `path` with `.hnsw` added.
    pub fn open(path: &Path, embedder: Arc<dyn Embedder>) -> Result<MemoryStore, MemoryError> {
        MemoryStore::open_with(path, embedder, DEFAULT_HNSW_THRESHOLD)
    }

    /// [`MemoryStore::open`] with the size above which the vector index is HNSW.
    pub fn open_with(
        path: &Path,
        embedder: Arc<dyn Embedder>,
        hnsw_threshold: usize,
    ) -> Result<MemoryStore, MemoryError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
             PRAGMA secure_delete=ON;",
        )?;
        migrate_fts(&conn)?;
        conn.execute_batch(SCHEMA)?;
        // Deleting a document removes its postings from the full-text index too, so a
        // forgotten word is not left in FTS5's segments.
        conn.execute(
            "INSERT INTO items_fts (items_fts, rank) VALUES ('secure-delete', 1)",
            [],
        )?;
        let id = embedder.id().clone();
        let stored: Option<(String, String, i64)> = conn
            .query_row(
                "SELECT model, revision, dim FROM spaces WHERE id IN (SELECT space FROM vectors LIMIT 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((model, revision, dim)) = stored {
            let stored = EmbedderId {
                model,
                revision,
                dim: usize::try_from(dim).unwrap_or(0),
            };
            if stored != id {
                return Err(MemoryError::EmbedderMismatch {
                    stored: stored.label(),
                    current: id.label(),
                });
            }
        }
        conn.execute(
            "INSERT OR IGNORE INTO spaces (model, revision, dim) VALUES (?1, ?2, ?3)",
            params![id.model, id.revision, id.dim as i64],
        )?;
        let space: i64 = conn.query_row(
            "SELECT id FROM spaces WHERE model = ?1 AND revision = ?2 AND dim = ?3",
            params![id.model, id.revision, id.dim as i64],
            |r| r.get(0),
        )?;
        let mut index_path = path.as_os_str().to_owned();
        index_path.push(".hnsw");
        let index_path = PathBuf::from(index_path);
        let vectors = load_vectors(&conn, &index_path, id.dim, hnsw_threshold)?;
        Ok(MemoryStore {
            db: Mutex::new(conn),
            vectors: Mutex::new(vectors),
            hot: Mutex::new(Hot::new(HOT_ITEMS, HOT_QUERIES)),
            embedder,
            space,
            index_path,
            hnsw_threshold,
        })
    }

    /// The embedder's space.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// Stores a new item in `namespace`. Returns once it is durable.
    pub fn store(
        &self,
        namespace: &Namespace,
        new: NewItem,
        now: i64,
    ) -> Result<Item, MemoryError> {
        self.store_many(namespace, vec![new], now)?
            .into_iter()
            .next()
            .ok_or_else(|| MemoryError::Invalid("nothing stored".into()))
    }

    /// Stores several items in one transaction (one fsync), embedding them in one batch.
    pub fn store_many(
        &self,
        namespace: &Namespace,
        news: Vec<NewItem>,
        now: i64,
    ) -> Result<Vec<Item>, MemoryError> {
        let entries = news.into_iter().map(|n| (namespace.clone(), n)).collect();
        self.store_entries(entries, now, None)
    }

    /// Stores items in several namespaces in one transaction, and sets the `meta` key to
    /// the value in the same transaction when given (a feed's watermark, so a crash can
    /// neither lose nor repeat what it fed).
    pub fn store_entries(
        &self,
        entries: Vec<(Namespace, NewItem)>,
        now: i64,
        meta: Option<(&str, &str)>,
    ) -> Result<Vec<Item>, MemoryError> {
        let mut checked = Vec::with_capacity(entries.len());
        for (namespace, new) in entries {
            let tags = new.check().map_err(MemoryError::Invalid)?;
            checked.push((namespace, new, tags));
        }
        let texts: Vec<&str> = checked.iter().map(|(_, n, _)| n.content.as_str()).collect();
        let vecs = self.embed_all(&texts)?;
        let mut db = lock(&self.db);
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(checked.len());
        let mut added = Vec::with_capacity(checked.len());
        for ((namespace, new, tags), vec) in checked.into_iter().zip(vecs) {
            let ns = namespace_id(&tx, &namespace)?;
            let id = new_id()?;
            let item = Item {
                id: id.clone(),
                namespace,
                kind: new.kind,
                content: new.content,
                tags,
                metadata: new
                    .metadata
                    .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
                source: new.source,
                created_at: now,
                valid_from: new.valid_from.unwrap_or(now),
                valid_to: None,
                supersedes: None,
                ttl_ms: new.ttl_ms,
                expires_at: new.ttl_ms.map(|t| now.saturating_add(t)),
            };
            let rowid = insert_item(&tx, ns, &item, &id, self.space, &vec)?;
            added.push((rowid, ns, vec));
            out.push(item);
        }
        let seq = log_changes(&tx, added.iter().map(|(r, _, _)| (*r, "add")))?;
        if let Some((key, value)) = meta {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
        }
        tx.commit()?;
        // The in-RAM index changes under the database lock, so a racing write cannot
        // interleave its index change with this one (lock order: database, then vectors).
        let mut v = lock(&self.vectors);
        for (rowid, ns, vec) in added {
            index_insert(&mut v.index, rowid, ns, &vec)?;
        }
        v.seq = v.seq.max(seq);
        let mut hot = lock(&self.hot);
        for item in &out {
            hot.put_item(item);
        }
        Ok(out)
    }

    /// Stores a new version of the current item `id`, superseding it. Returns the new version.
    pub fn update(&self, id: &str, update: Update, now: i64) -> Result<Item, MemoryError> {
        let old = self
            .get(id)?
            .ok_or_else(|| MemoryError::NotFound(id.to_string()))?;
        if old.valid_to.is_some() || old.expires_at.is_some_and(|e| e <= now) {
            let by = self.successor(id)?.unwrap_or_else(|| "expired".to_string());
            return Err(MemoryError::NotCurrent {
                id: id.to_string(),
                by,
            });
        }
        let new = NewItem {
            kind: old.kind,
            content: update.content.unwrap_or_else(|| old.content.clone()),
            tags: update.tags.unwrap_or_else(|| old.tags.clone()),
            metadata: Some(update.metadata.unwrap_or_else(|| old.metadata.clone())),
            source: old.source.clone(),
            valid_from: Some(now),
            ttl_ms: old.ttl_ms,
        };
        let tags = new.check().map_err(MemoryError::Invalid)?;
        let vec = self.embed_one(&new.content)?;
        let mut db = lock(&self.db);
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (old_rowid, ns, lineage): (i64, i64, String) = tx.query_row(
            "SELECT rowid, ns, lineage FROM items WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let closed = tx.execute(
            "UPDATE items SET valid_to = ?2 WHERE id = ?1 AND valid_to IS NULL",
            params![id, now],
        )?;
        if closed != 1 {
            // Another call superseded it between our read and this transaction.
            return Err(MemoryError::NotCurrent {
                id: id.to_string(),
                by: "a concurrent update".to_string(),
            });
        }
        let new_id = new_id()?;
        let item = Item {
            id: new_id.clone(),
            namespace: old.namespace.clone(),
            kind: old.kind,
            content: new.content,
            tags,
            metadata: new.metadata.unwrap_or_default(),
            source: new.source,
            created_at: now,
            valid_from: now,
            valid_to: None,
            supersedes: Some(id.to_string()),
            ttl_ms: new.ttl_ms,
            // A new version starts a new lifetime, as its created_at says.
            expires_at: new.ttl_ms.map(|t| now.saturating_add(t)),
        };
        let rowid = insert_item(&tx, ns, &item, &lineage, self.space, &vec)?;
        let seq = log_changes(&tx, [(old_rowid, "del"), (rowid, "add")].into_iter())?;
        tx.commit()?;
        // The in-RAM index changes under the database lock, so a racing write cannot
        // interleave its index change with this one (lock order: database, then vectors).
        let mut v = lock(&self.vectors);
        v.index.as_dyn_mut().remove(old_rowid as u64);
        index_insert(&mut v.index, rowid, ns, &vec)?;
        v.seq = v.seq.max(seq);
        let mut hot = lock(&self.hot);
        hot.drop_items([id]);
        hot.put_item(&item);
        Ok(item)
    }

    /// One version by id.
    pub fn get(&self, id: &str) -> Result<Option<Item>, MemoryError> {
        let db = lock(&self.db);
        if let Some(item) = lock(&self.hot).item(id) {
            return Ok(Some(item));
        }
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items JOIN namespaces ON namespaces.id = items.ns WHERE items.id = ?1"
        );
        let item = db
            .query_row(&sql, [id], row_item)
            .optional()?
            .map(|(_, i)| i);
        if let Some(item) = &item {
            lock(&self.hot).put_item(item);
        }
        Ok(item)
    }

    /// Every namespace that has been written to.
    pub fn namespaces(&self) -> Result<Vec<Namespace>, MemoryError> {
        let db = lock(&self.db);
        let mut stmt = db.prepare("SELECT name FROM namespaces ORDER BY id")?;
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        names
            .iter()
            .map(|n| Namespace::parse(n).map_err(MemoryError::Invalid))
            .collect()
    }

    /// A `meta` value (a feed's watermark, say).
    pub fn meta(&self, key: &str) -> Result<Option<String>, MemoryError> {
        let db = lock(&self.db);
        Ok(db
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// The current version in `namespace` whose source is `source`, if any (the newest when
    /// several).
    pub fn current_by_source(
        &self,
        namespace: &Namespace,
        source: &str,
    ) -> Result<Option<Item>, MemoryError> {
        let db = lock(&self.db);
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items JOIN namespaces ON namespaces.id = items.ns \
             WHERE namespaces.name = ?1 AND items.source = ?2 AND items.valid_to IS NULL \
             ORDER BY items.rowid DESC LIMIT 1"
        );
        Ok(db
            .query_row(&sql, params![namespace.as_str(), source], row_item)
            .optional()?
            .map(|(_, i)| i))
    }

    /// The current items in `namespace` whose source starts with `prefix`, as
    /// (source, id), in source order (for ingest: the chunks of one file).
    pub fn current_with_source_prefix(
        &self,
        namespace: &Namespace,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, MemoryError> {
        // Every string starting with `prefix` sorts in [prefix, prefix + U+10FFFF).
        let end = format!("{prefix}\u{10FFFF}");
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(
            "SELECT items.source, items.id FROM items JOIN namespaces ON namespaces.id = items.ns \
             WHERE namespaces.name = ?1 AND items.source >= ?2 AND items.source < ?3 \
             AND items.valid_to IS NULL ORDER BY items.source",
        )?;
        let rows = stmt.query_map(params![namespace.as_str(), prefix, end], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends the current item `id` without a successor: it stays in history (as-of queries
    /// still find it) but is no longer current. For what its source no longer has, such as
    /// the chunks past the end of a file that shrank.
    pub fn retire(&self, id: &str, now: i64) -> Result<(), MemoryError> {
        let mut db = lock(&self.db);
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rowid: Option<i64> = tx
            .query_row(
                "SELECT rowid FROM items WHERE id = ?1 AND valid_to IS NULL",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(rowid) = rowid else {
            return Err(MemoryError::NotFound(id.to_string()));
        };
        tx.execute(
            "UPDATE items SET valid_to = ?2 WHERE rowid = ?1",
            params![rowid, now],
        )?;
        let seq = log_changes(&tx, [(rowid, "del")].into_iter())?;
        tx.commit()?;
        let mut v = lock(&self.vectors);
        v.index.as_dyn_mut().remove(rowid as u64);
        v.seq = v.seq.max(seq);
        lock(&self.hot).drop_items([id]);
        Ok(())
    }

    fn successor(&self, id: &str) -> Result<Option<String>, MemoryError> {
        let db = lock(&self.db);
        Ok(db
            .query_row("SELECT id FROM items WHERE supersedes = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Every version of the item `id` belongs to, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<Item>, MemoryError> {
        let db = lock(&self.db);
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items JOIN namespaces ON namespaces.id = items.ns \
             WHERE items.lineage = (SELECT lineage FROM items WHERE id = ?1) \
             ORDER BY items.created_at, items.rowid"
        );
        let mut stmt = db.prepare(&sql)?;
        let rows = stmt.query_map([id], row_item)?;
        let items: Vec<Item> = rows.map(|r| r.map(|(_, i)| i)).collect::<Result<_, _>>()?;
        if items.is_empty() {
            return Err(MemoryError::NotFound(id.to_string()));
        }
        Ok(items)
    }

    /// Deletes every version of the item `id` belongs to, with their vectors and full-text
    /// postings, and records that it was forgotten (not what it said).
    pub fn forget(&self, id: &str, by: &str, now: i64) -> Result<Forgotten, MemoryError> {
        let mut db = lock(&self.db);
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: Option<(String, String, String)> = tx
            .query_row(
                "SELECT items.lineage, namespaces.name, items.kind FROM items \
                 JOIN namespaces ON namespaces.id = items.ns WHERE items.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((lineage, ns, kind)) = found else {
            return Err(MemoryError::NotFound(id.to_string()));
        };
        let mut rows: Vec<(i64, String)> = Vec::new();
        {
            let mut stmt =
                tx.prepare("SELECT rowid, id FROM items WHERE lineage = ?1 ORDER BY rowid")?;
            for r in stmt.query_map([&lineage], |r| Ok((r.get(0)?, r.get(1)?)))? {
                rows.push(r?);
            }
        }
        for (rowid, _) in &rows {
            tx.execute("DELETE FROM vectors WHERE item = ?1", [rowid])?;
        }
        tx.execute("DELETE FROM items WHERE lineage = ?1", [&lineage])?;
        let versions: Vec<String> = rows.iter().map(|(_, id)| id.clone()).collect();
        tx.execute(
            "INSERT INTO forgotten (id, lineage, namespace, kind, versions, forgotten_at, by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                lineage,
                ns,
                kind,
                serde_json::to_string(&versions).unwrap_or_default(),
                now,
                by
            ],
        )?;
        let seq = log_changes(&tx, rows.iter().map(|(r, _)| (*r, "del")))?;
        tx.commit()?;
        // The deleted pages are zeroed (secure_delete), but their old images may still sit
        // in the write-ahead log: checkpoint it into the database and truncate it.
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        // The in-RAM index changes under the database lock, so a racing write cannot
        // interleave its index change with this one (lock order: database, then vectors).
        let mut v = lock(&self.vectors);
        for (rowid, _) in &rows {
            v.index.as_dyn_mut().remove(*rowid as u64);
        }
        v.seq = v.seq.max(seq);
        lock(&self.hot).drop_items(rows.iter().map(|(_, id)| id.as_str()));
        Ok(Forgotten {
            id: id.to_string(),
            versions,
            namespace: Namespace::parse(&ns).map_err(MemoryError::Invalid)?,
            forgotten_at: now,
            by: by.to_string(),
        })
    }

    /// The forget records in `namespaces` (all when empty), newest first.
    pub fn forgotten(&self, namespaces: &[Namespace]) -> Result<Vec<Forgotten>, MemoryError> {
        let db = lock(&self.db);
        let mut stmt = db.prepare(
            "SELECT id, versions, namespace, forgotten_at, by FROM forgotten ORDER BY forgotten_at DESC, rowid DESC",
        )?;
        let mut out = Vec::new();
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })? {
            let (id, versions, ns, at, by) = row?;
            let namespace = Namespace::parse(&ns).map_err(MemoryError::Invalid)?;
            if namespaces.is_empty() || namespaces.contains(&namespace) {
                out.push(Forgotten {
                    id,
                    versions: serde_json::from_str(&versions).unwrap_or_default(),
                    namespace,
                    forgotten_at: at,
                    by,
                });
            }
        }
        Ok(out)
    }

    /// Deletes the ephemeral items that expired by `now`. Returns how many.
    pub fn expire(&self, now: i64) -> Result<usize, MemoryError> {
        let mut db = lock(&self.db);
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut rows: Vec<i64> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT rowid, id FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            )?;
            for r in stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))? {
                let (rowid, id) = r?;
                rows.push(rowid);
                ids.push(id);
            }
        }
        for rowid in &rows {
            tx.execute("DELETE FROM vectors WHERE item = ?1", [rowid])?;
            tx.execute("DELETE FROM items WHERE rowid = ?1", [rowid])?;
        }
        let seq = log_changes(&tx, rows.iter().map(|r| (*r, "del")))?;
        tx.commit()?;
        if !rows.is_empty() {
            // As in forget: expired content must not linger in the write-ahead log.
            db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        // The in-RAM index changes under the database lock, so a racing write cannot
        // interleave its index change with this one (lock order: database, then vectors).
        let mut v = lock(&self.vectors);
        for rowid in &rows {
            v.index.as_dyn_mut().remove(*rowid as u64);
        }
        v.seq = v.seq.max(seq);
        lock(&self.hot).drop_items(ids.iter().map(String::as_str));
        Ok(rows.len())
    }

    /// Searches. Every namespace in `query` must already be allowed to the caller.
    pub fn query(&self, query: &Query, now: i64) -> Result<Vec<Scored>, MemoryError> {
        if query.namespaces.is_empty() {
            return Err(MemoryError::Invalid(
                "a query needs at least one namespace".into(),
            ));
        }
        let limit = query.limit.unwrap_or(10);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(MemoryError::Invalid(format!(
                "limit must be 1 to {MAX_LIMIT}, got {limit}"
            )));
        }
        if let (Some(a), Some(b)) = (query.from, query.to)
            && a >= b
        {
            return Err(MemoryError::Invalid(format!(
                "the time range is empty: from {a} is not before to {b}"
            )));
        }
        let tags: Vec<String> = query.tags.iter().map(|t| t.trim().to_lowercase()).collect();
        let depth = (limit * 4).max(40);
        let filter = Filter::new(query, &tags, now);
        let text = query.text.trim();
        let needs_vector = matches!(query.mode, Mode::Hybrid | Mode::Vector)
            && text.chars().any(char::is_alphanumeric);
        let cached = if needs_vector {
            lock(&self.hot).query_vector(text)
        } else {
            None
        };
        let full_text = || self.text_phase(query, &filter, text, depth);
        let (embedding, found) = if needs_vector && cached.is_none() {
            // The encoder, the slowest step, and the full-text search run side by side on
            // the rayon pool the encoder's matrix multiplies already use: one worker embeds
            // while another searches, then joins the multiplies, so a hybrid query costs
            // about the slower of the two and never has more runnable threads than the pool
            // has workers (an OS thread of its own for the encoder made three on two cores,
            // and a slow tail). Nothing that holds the store's locks waits on the pool.
            // A panic in the encoder becomes an error here, so the join never re-raises it.
            let embed = || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.embed_one(text)))
                    .unwrap_or_else(|_| {
                        Err(MemoryError::Embed(EmbedError(
                            "the encoder panicked".into(),
                        )))
                    })
            };
            let (embedding, found) = rayon::join(embed, full_text);
            let v = embedding?;
            lock(&self.hot).put_query_vector(text, &v);
            (Some(v), found)
        } else {
            (cached, full_text())
        };
        self.rank(query, &filter, depth, limit, found?, embedding)
    }

    /// The embedding of a query text, from the recent-queries cache when it is there (as
    /// [`MemoryStore::query`] would embed it), so a caller that searches and also needs the
    /// vector embeds once.
    pub fn query_embedding(&self, text: &str) -> Result<Vec<f32>, MemoryError> {
        let text = text.trim();
        if let Some(v) = lock(&self.hot).query_vector(text) {
            return Ok(v);
        }
        let v = self.embed_one(text)?;
        lock(&self.hot).put_query_vector(text, &v);
        Ok(v)
    }

    /// The full-text half of [`MemoryStore::query`]: the ids of the query's namespaces that
    /// exist and, when the mode uses full text, the BM25 hits in them.
    fn text_phase(
        &self,
        query: &Query,
        filter: &Filter,
        text: &str,
        depth: usize,
    ) -> Result<TextPhase, MemoryError> {
        let db = lock(&self.db);
        let ns_ids = namespace_ids(&db, &query.namespaces)?;
        if ns_ids.is_empty() || text.is_empty() {
            return Ok(TextPhase {
                ns_ids,
                newest: true,
                terms: Vec::new(),
                hits: Vec::new(),
            });
        }
        let terms = crate::text::terms(text);
        let hits = match (query.mode, crate::text::fts_query(&terms)) {
            (Mode::Hybrid | Mode::Text, Some(fts)) => {
                text_search(&db, filter, &ns_ids, &fts, depth)?
            }
            _ => Vec::new(),
        };
        Ok(TextPhase {
            ns_ids,
            newest: false,
            terms,
            hits,
        })
    }

    /// The rest of [`MemoryStore::query`]: the vector hits for `embedding` (when the query
    /// has one), fused with the full-text hits, best first.
    fn rank(
        &self,
        query: &Query,
        filter: &Filter,
        depth: usize,
        limit: usize,
        found: TextPhase,
        embedding: Option<Vec<f32>>,
    ) -> Result<Vec<Scored>, MemoryError> {
        let TextPhase {
            ns_ids,
            newest: no_text,
            terms,
            hits: text_hits,
        } = found;
        if ns_ids.is_empty() {
            return Ok(Vec::new());
        }
        let db = lock(&self.db);
        if no_text {
            return newest(&db, filter, &ns_ids, limit);
        }
        let vector_hits = match embedding {
            Some(q) if query.as_of.is_some() => exact_search(&db, filter, &ns_ids, &q, depth)?,
            Some(q) => self.index_search(&db, filter, &ns_ids, &q, depth)?,
            None => Vec::new(),
        };
        let mut fused: HashMap<i64, Fused> = HashMap::new();
        // Reciprocal rank fusion, each full-text hit weighed by the share of the query's
        // terms it contains: with no other evidence, a hit on one word of a paraphrased
        // question would count as much as the vector search's best match. Text-only search
        // ranks by BM25 alone.
        let weigh = query.mode == Mode::Hybrid;
        for (rank, (rowid, text)) in text_hits.iter().enumerate() {
            let weight = if weigh {
                crate::text::coverage(&terms, text)
            } else {
                1.0
            };
            let e = fused.entry(*rowid).or_insert((0.0, None, None));
            e.0 += weight / (RRF_K + rank as f64 + 1.0);
            e.1 = Some(rank + 1);
        }
        for (rank, rowid) in vector_hits.iter().enumerate() {
            let e = fused.entry(*rowid).or_insert((0.0, None, None));
            e.0 += 1.0 / (RRF_K + rank as f64 + 1.0);
            e.2 = Some(rank + 1);
        }
        let mut ranked: Vec<(i64, Fused)> = fused.into_iter().collect();
        ranked.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        let mut out = Vec::with_capacity(ranked.len());
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items JOIN namespaces ON namespaces.id = items.ns WHERE items.rowid = ?1"
        );
        let mut stmt = db.prepare_cached(&sql)?;
        for (rowid, (score, text_rank, vector_rank)) in ranked {
            if let Some((_, item)) = stmt.query_row([rowid], row_item).optional()? {
                out.push(Scored {
                    item,
                    score,
                    text_rank,
                    vector_rank,
                });
            }
        }
        Ok(out)
    }

    /// The current items of `kinds` in `namespace` created at or after `since`, oldest first
    /// (for consolidation).
    pub fn recent(
        &self,
        namespace: &Namespace,
        kinds: &[Kind],
        since: i64,
        max: usize,
        now: i64,
    ) -> Result<Vec<Item>, MemoryError> {
        let q = Query {
            namespaces: vec![namespace.clone()],
            kinds: kinds.to_vec(),
            from: Some(since),
            limit: Some(max.clamp(1, MAX_LIMIT)),
            ..Query::default()
        };
        let mut items: Vec<Item> = self.query(&q, now)?.into_iter().map(|s| s.item).collect();
        items.reverse();
        Ok(items)
    }

    /// Counts.
    pub fn stats(&self) -> Result<Stats, MemoryError> {
        let db = lock(&self.db);
        let mut current = HashMap::new();
        let mut stmt =
            db.prepare("SELECT kind, count(*) FROM items WHERE valid_to IS NULL GROUP BY kind")?;
        for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (k, n) = r?;
            current.insert(k, u64::try_from(n).unwrap_or(0));
        }
        let versions: i64 = db.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?;
        let forgotten: i64 = db.query_row("SELECT count(*) FROM forgotten", [], |r| r.get(0))?;
        drop(stmt);
        drop(db);
        let v = lock(&self.vectors);
        Ok(Stats {
            current,
            versions: u64::try_from(versions).unwrap_or(0),
            indexed: v.index.as_dyn().len(),
            index: match v.index {
                Index::Flat(_) => "flat".into(),
                Index::Hnsw(_) => "hnsw".into(),
            },
            forgotten: u64::try_from(forgotten).unwrap_or(0),
            hot: lock(&self.hot).len(),
        })
    }

    /// Background upkeep: once the index outgrows the threshold, builds an HNSW index from
    /// the stored vectors without holding the store's locks, catches it up with the changes
    /// made meanwhile, swaps it in and saves it; an HNSW index in use is saved when it has
    /// changed. Returns whether an index was built or saved.
    pub fn maintain(&self) -> Result<bool, MemoryError> {
        let (is_flat, len, seq) = {
            let v = lock(&self.vectors);
            (
                matches!(v.index, Index::Flat(_)),
                v.index.as_dyn().len(),
                v.seq,
            )
        };
        if is_flat && len > self.hnsw_threshold {
            let (hnsw, built_seq) = {
                // Read a consistent snapshot on a second connection, so writes go on.
                let conn = Connection::open(self.db_path()?)?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                build_hnsw(&conn, self.embedder.id().dim)?
            };
            // Lock order everywhere: the database, then the vectors.
            let db = lock(&self.db);
            let mut v = lock(&self.vectors);
            let mut index = Index::Hnsw(Box::new(hnsw));
            let caught_up = replay_log(&db, &mut index, built_seq, built_seq)?;
            v.index = index;
            v.seq = caught_up;
            save_index(&v, &self.index_path)?;
            db.execute("DELETE FROM vector_log WHERE seq <= ?1", [caught_up])?;
            return Ok(true);
        }
        let db = lock(&self.db);
        let v = lock(&self.vectors);
        match v.index {
            Index::Hnsw(_) if read_saved_seq(&self.index_path) != Some(seq) => {
                save_index(&v, &self.index_path)?;
                db.execute("DELETE FROM vector_log WHERE seq <= ?1", [v.seq])?;
                Ok(true)
            }
            Index::Hnsw(_) => Ok(false),
            // Nothing is saved for an exact index; the log only has to reach back to a save.
            Index::Flat(_) => {
                db.execute("DELETE FROM vector_log WHERE seq <= ?1", [v.seq])?;
                Ok(false)
            }
        }
    }

    fn db_path(&self) -> Result<PathBuf, MemoryError> {
        let db = lock(&self.db);
        db.path()
            .map(PathBuf::from)
            .ok_or_else(|| MemoryError::Invalid("the memory database has no file".into()))
    }

    /// One text's vector (see [`MemoryStore::embed_all`]).
    fn embed_one(&self, text: &str) -> Result<Vec<f32>, MemoryError> {
        self.embed_all(&[text])?
            .into_iter()
            .next()
            .ok_or_else(|| MemoryError::Embed(EmbedError("the encoder returned nothing".into())))
    }

    fn embed_all(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MemoryError> {
        let vecs = self.embedder.embed(texts)?;
        let dim = self.embedder.id().dim;
        if vecs.len() != texts.len() || vecs.iter().any(|v| v.len() != dim) {
            return Err(MemoryError::Embed(EmbedError(format!(
                "the embedder returned {} vectors for {} texts, or not {dim}-d",
                vecs.len(),
                texts.len()
            ))));
        }
        Ok(vecs)
    }

    /// Vector search through the in-RAM index, namespace-filtered inside the index and the
    /// other filters applied to its candidates; widens until `depth` pass or none are left.
    fn index_search(
        &self,
        db: &Connection,
        filter: &Filter,
        ns_ids: &[i64],
        q: &[f32],
        depth: usize,
    ) -> Result<Vec<i64>, MemoryError> {
        let allowed: HashSet<u32> = ns_ids
            .iter()
            .filter_map(|n| u32::try_from(*n).ok())
            .collect();
        let mut k = depth;
        loop {
            let (hits, total) = {
                let v = lock(&self.vectors);
                let idx = v.index.as_dyn();
                (idx.search(q, k, &|ns| allowed.contains(&ns)), idx.len())
            };
            let ids: Vec<i64> = hits.iter().map(|h| h.id as i64).collect();
            let passing = filter.passing(db, &ids)?;
            let kept: Vec<i64> = ids.into_iter().filter(|r| passing.contains(r)).collect();
            if kept.len() >= depth || hits.len() < k || k >= total {
                return Ok(kept.into_iter().take(depth).collect());
            }
            if k >= 8 * depth.max(512) {
                // The filters pass few of the nearest vectors: score the filtered rows exactly.
                return exact_search(db, filter, ns_ids, q, depth);
            }
            k *= 4;
        }
    }
}

/// The filters of a query as SQL over `items` (joined to nothing else), with parameters.
struct Filter {
    sql: String,
    params: Vec<rusqlite::types::Value>,
}

impl Filter {
    fn new(q: &Query, tags: &[String], now: i64) -> Filter {
        use rusqlite::types::Value as V;
        let mut sql = String::from("(items.expires_at IS NULL OR items.expires_at > ?)");
        let mut params = vec![V::Integer(now)];
        match q.as_of {
            None => sql.push_str(" AND items.valid_to IS NULL"),
            Some(t) => {
                sql.push_str(
                    " AND items.created_at <= ? AND items.valid_from <= ? \
                     AND (items.valid_to IS NULL OR items.valid_to > ?)",
                );
                params.extend([V::Integer(t), V::Integer(t), V::Integer(t)]);
            }
        }
        if !q.kinds.is_empty() {
            sql.push_str(" AND items.kind IN (");
            sql.push_str(&vec!["?"; q.kinds.len()].join(","));
            sql.push(')');
            params.extend(q.kinds.iter().map(|k| V::Text(k.as_str().to_string())));
        }
        for tag in tags {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM json_each(items.tags) WHERE json_each.value = ?)",
            );
            params.push(V::Text(tag.clone()));
        }
        if let Some(from) = q.from {
            sql.push_str(" AND items.created_at >= ?");
            params.push(V::Integer(from));
        }
        if let Some(to) = q.to {
            sql.push_str(" AND items.created_at < ?");
            params.push(V::Integer(to));
        }
        Filter { sql, params }
    }

    fn ns_clause(ns_ids: &[i64]) -> String {
        let list: Vec<String> = ns_ids.iter().map(i64::to_string).collect();
        format!("items.ns IN ({})", list.join(","))
    }

    /// Which of `rowids` pass (the namespace was checked by the index).
    fn passing(&self, db: &Connection, rowids: &[i64]) -> Result<HashSet<i64>, MemoryError> {
        if rowids.is_empty() {
            return Ok(HashSet::new());
        }
        let list: Vec<String> = rowids.iter().map(i64::to_string).collect();
        let sql = format!(
            "SELECT items.rowid FROM items WHERE items.rowid IN ({}) AND {}",
            list.join(","),
            self.sql
        );
        let mut stmt = db.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(self.params.iter()), |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn newest(
    db: &Connection,
    filter: &Filter,
    ns_ids: &[i64],
    limit: usize,
) -> Result<Vec<Scored>, MemoryError> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM items JOIN namespaces ON namespaces.id = items.ns \
         WHERE {} AND {} ORDER BY items.created_at DESC, items.rowid DESC LIMIT {limit}",
        Filter::ns_clause(ns_ids),
        filter.sql
    );
    let mut stmt = db.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(filter.params.iter()), row_item)?;
    let mut out = Vec::new();
    for (i, r) in rows.enumerate() {
        let (_, item) = r?;
        out.push(Scored {
            item,
            score: 1.0 / (RRF_K + i as f64 + 1.0),
            text_rank: None,
            vector_rank: None,
        });
    }
    Ok(out)
}

/// The full-text hits, best first, each with its content and tags (what the fusion weighs).
fn text_search(
    db: &Connection,
    filter: &Filter,
    ns_ids: &[i64],
    fts: &str,
    depth: usize,
) -> Result<Vec<(i64, String)>, MemoryError> {
    // The namespaces go into the MATCH itself, so FTS5 only scores rows in them (a query
    // in one namespace of ten scores a tenth of the matches); the ns column has no weight
    // in BM25. The join re-checks them.
    let nss: Vec<String> = ns_ids.iter().map(|n| format!("\"{n}\"")).collect();
    let matching = format!("({fts}) AND ns : ({})", nss.join(" OR "));
    let sql = format!(
        "SELECT items.rowid, items.content || ' ' || items.tags FROM items_fts \
         JOIN items ON items.rowid = items_fts.rowid \
         WHERE items_fts MATCH ? AND {} AND {} \
         ORDER BY bm25(items_fts, 1.0, 1.0, 0.0) LIMIT {depth}",
        Filter::ns_clause(ns_ids),
        filter.sql
    );
    let mut stmt = db.prepare_cached(&sql)?;
    let mut params: Vec<rusqlite::types::Value> = vec![rusqlite::types::Value::Text(matching)];
    params.extend(filter.params.iter().cloned());
    let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Exact cosine over the stored vectors of the rows passing the filters.
fn exact_search(
    db: &Connection,
    filter: &Filter,
    ns_ids: &[i64],
    q: &[f32],
    depth: usize,
) -> Result<Vec<i64>, MemoryError> {
    let sql = format!(
        "SELECT items.rowid, vectors.vec FROM items JOIN vectors ON vectors.item = items.rowid \
         WHERE {} AND {}",
        Filter::ns_clause(ns_ids),
        filter.sql
    );
    let mut stmt = db.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(filter.params.iter()), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut scored: Vec<(f32, i64)> = Vec::new();
    for r in rows {
        let (rowid, blob) = r?;
        let v = from_blob(&blob);
        if v.len() == q.len() {
            scored.push((v.iter().zip(q).map(|(a, b)| a * b).sum(), rowid));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(scored.into_iter().take(depth).map(|(_, r)| r).collect())
}

fn namespace_id(tx: &Transaction<'_>, ns: &Namespace) -> Result<i64, MemoryError> {
    tx.execute(
        "INSERT OR IGNORE INTO namespaces (name) VALUES (?1)",
        [ns.as_str()],
    )?;
    Ok(tx.query_row(
        "SELECT id FROM namespaces WHERE name = ?1",
        [ns.as_str()],
        |r| r.get(0),
    )?)
}

fn namespace_ids(db: &Connection, nss: &[Namespace]) -> Result<Vec<i64>, MemoryError> {
    let mut stmt = db.prepare_cached("SELECT id FROM namespaces WHERE name = ?1")?;
    let mut out = Vec::new();
    for ns in nss {
        if let Some(id) = stmt.query_row([ns.as_str()], |r| r.get(0)).optional()? {
            out.push(id);
        }
    }
    Ok(out)
}

fn insert_item(
    tx: &Transaction<'_>,
    ns: i64,
    item: &Item,
    lineage: &str,
    space: i64,
    vec: &[f32],
) -> Result<i64, MemoryError> {
    tx.execute(
        "INSERT INTO items (id, lineage, ns, kind, content, tags, metadata, source, created_at, \
         valid_from, valid_to, supersedes, ttl_ms, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11, ?12, ?13)",
        params![
            item.id,
            lineage,
            ns,
            item.kind.as_str(),
            item.content,
            serde_json::to_string(&item.tags).unwrap_or_else(|_| "[]".into()),
            item.metadata.to_string(),
            item.source,
            item.created_at,
            item.valid_from,
            item.supersedes,
            item.ttl_ms,
            item.expires_at
        ],
    )?;
    let rowid = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO vectors (item, space, vec) VALUES (?1, ?2, ?3)",
        params![rowid, space, to_blob(vec)],
    )?;
    Ok(rowid)
}

/// Appends index changes to `vector_log`; returns the last sequence number (0 if none).
fn log_changes<'a>(
    tx: &Transaction<'_>,
    changes: impl Iterator<Item = (i64, &'a str)>,
) -> Result<i64, MemoryError> {
    let mut last = 0;
    let mut stmt = tx.prepare_cached("INSERT INTO vector_log (item, op) VALUES (?1, ?2)")?;
    for (item, op) in changes {
        stmt.execute(params![item, op])?;
        last = tx.last_insert_rowid();
    }
    Ok(last)
}

fn index_insert(index: &mut Index, rowid: i64, ns: i64, vec: &[f32]) -> Result<(), MemoryError> {
    let ns = u32::try_from(ns).map_err(|_| MemoryError::Invalid("too many namespaces".into()))?;
    index.as_dyn_mut().insert(rowid as u64, ns, vec)?;
    Ok(())
}

/// The current, unexpired vectors with their namespace, in rowid order.
fn current_vectors(
    conn: &Connection,
    mut each: impl FnMut(i64, i64, Vec<f32>) -> Result<(), MemoryError>,
) -> Result<i64, MemoryError> {
    let tx = conn.unchecked_transaction()?;
    let seq: i64 = tx.query_row("SELECT coalesce(max(seq), 0) FROM vector_log", [], |r| {
        r.get(0)
    })?;
    {
        let mut stmt = tx.prepare(
            "SELECT items.rowid, items.ns, vectors.vec FROM items JOIN vectors ON vectors.item = items.rowid \
             WHERE items.valid_to IS NULL ORDER BY items.rowid",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Vec<u8>>(2)?)))?;
        for r in rows {
            let (rowid, ns, blob) = r?;
            each(rowid, ns, from_blob(&blob))?;
        }
    }
    tx.finish()?;
    Ok(seq)
}

fn hnsw_config() -> HnswConfig {
    HnswConfig {
        m: 16,
        ef_construction: 100,
        ef_search: 64,
        ..HnswConfig::default()
    }
}

fn build_hnsw(conn: &Connection, dim: usize) -> Result<(HnswIndex, i64), MemoryError> {
    let mut index = HnswIndex::new(dim, hnsw_config())?;
    let seq = current_vectors(conn, |rowid, ns, v| {
        let ns = u32::try_from(ns).map_err(|_| MemoryError::Invalid("namespace id".into()))?;
        index.insert(rowid as u64, ns, &v)?;
        Ok(())
    })?;
    Ok((index, seq))
}

/// Applies the `vector_log` entries after `from` to `index`; returns the last applied
/// (at least `at_least`).
fn replay_log(
    db: &Connection,
    index: &mut Index,
    from: i64,
    at_least: i64,
) -> Result<i64, MemoryError> {
    let mut last = from.max(at_least);
    let mut stmt = db.prepare(
        "SELECT vector_log.seq, vector_log.item, vector_log.op, items.ns, vectors.vec, items.valid_to \
         FROM vector_log LEFT JOIN items ON items.rowid = vector_log.item \
         LEFT JOIN vectors ON vectors.item = vector_log.item WHERE vector_log.seq > ?1 ORDER BY vector_log.seq",
    )?;
    let rows = stmt.query_map([from], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<Vec<u8>>>(4)?,
            r.get::<_, Option<i64>>(5)?,
        ))
    })?;
    for r in rows {
        let (seq, item, op, ns, vec, valid_to) = r?;
        match (op.as_str(), ns, vec, valid_to) {
            ("add", Some(ns), Some(vec), None) => index_insert(index, item, ns, &from_blob(&vec))?,
            _ => {
                index.as_dyn_mut().remove(item as u64);
            }
        }
        last = last.max(seq);
    }
    Ok(last)
}

fn read_saved_seq(index_path: &Path) -> Option<i64> {
    let mut p = index_path.as_os_str().to_owned();
    p.push(".seq");
    std::fs::read_to_string(PathBuf::from(p))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn save_index(v: &Vectors, index_path: &Path) -> Result<(), MemoryError> {
    if let Index::Hnsw(h) = &v.index {
        h.save(index_path)?;
        let mut p = index_path.as_os_str().to_owned();
        p.push(".seq");
        let p = PathBuf::from(p);
        let tmp = p.with_extension("seq.tmp");
        std::fs::write(&tmp, v.seq.to_string()).map_err(|source| MemoryError::Io {
            path: tmp.display().to_string(),
            source,
        })?;
        std::fs::rename(&tmp, &p).map_err(|source| MemoryError::Io {
            path: p.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Builds the in-RAM index at open: the saved HNSW index caught up from the log when there is
/// one that reads, otherwise exact from the stored vectors (HNSW if over the threshold).
fn load_vectors(
    conn: &Connection,
    index_path: &Path,
    dim: usize,
    threshold: usize,
) -> Result<Vectors, MemoryError> {
    if let (Ok(h), Some(seq)) = (HnswIndex::load(index_path), read_saved_seq(index_path))
        && h.dim() == dim
    {
        let oldest: Option<i64> =
            conn.query_row("SELECT min(seq) FROM vector_log", [], |r| r.get(0))?;
        let last: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        // The log must still reach back to the saved point, or changes were pruned unseen
        // (sequence numbers are never reused: AUTOINCREMENT).
        let reaches = match oldest {
            Some(oldest) => oldest <= seq + 1,
            None => last <= seq,
        };
        if reaches {
            let mut index = Index::Hnsw(Box::new(h));
            let seq = replay_log(conn, &mut index, seq, seq)?;
            return Ok(Vectors { index, seq });
        }
    }
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM items WHERE valid_to IS NULL",
        [],
        |r| r.get(0),
    )?;
    if usize::try_from(count).unwrap_or(0) > threshold {
        let (h, seq) = build_hnsw(conn, dim)?;
        let v = Vectors {
            index: Index::Hnsw(Box::new(h)),
            seq,
        };
        save_index(&v, index_path)?;
        return Ok(v);
    }
    let mut flat = FlatIndex::new(dim)?;
    let seq = current_vectors(conn, |rowid, ns, v| {
        let ns = u32::try_from(ns).map_err(|_| MemoryError::Invalid("namespace id".into()))?;
        flat.insert(rowid as u64, ns, &v)?;
        Ok(())
    })?;
    Ok(Vectors {
        index: Index::Flat(flat),
        seq,
    })
}
