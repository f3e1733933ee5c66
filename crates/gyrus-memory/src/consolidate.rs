//! Consolidation: the background job that keeps memory tidy. Each run:
//!
//! 1. deletes the ephemeral items that expired;
//! 2. merges duplicates (same namespace, kind and normalised text): the oldest stays, the
//!    others are forgotten, recorded as forgotten by `consolidation`;
//! 3. distils the owner's recent episodic log into semantic items by rules
//!    ([`crate::distil`]): habits, projects, focus, stated preferences, repeated refusals.
//!    A distilled item is keyed by its rule and subject (`source = consolidation:<key>`), so
//!    a later run updates it (a new version) rather than adding another;
//! 4. updates the owner's sketch from what was distilled, within its byte budget;
//! 5. builds or saves the vector index when due ([`MemoryStore::maintain`]).
//!
//! The daemon runs it every `memory.consolidate_secs` and audits each run's [`Report`].
//! Distilling with a model cortex, when one is configured, comes with the cortices.

use serde::Serialize;

use crate::distil::{self, SketchSection};
use crate::model::{Kind, Namespace, NewItem};
use crate::sketch::merge_entry;
use crate::store::{MemoryError, MemoryStore, Update};
use crate::tools::{current_sketch, save_sketch};

/// How far back consolidation reads.
pub const WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
/// Entries kept per sketch section by consolidation (the budget trims further).
pub const SECTION_CAP: usize = 8;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Expired items deleted.
    pub expired: usize,
    /// Duplicates merged away.
    pub merged: usize,
    /// Semantic items distilled new.
    pub distilled: usize,
    /// Distilled items brought up to date (new versions).
    pub refreshed: usize,
    /// Whether the sketch changed.
    pub sketch_changed: bool,
    /// Whether the vector index was built or saved.
    pub index_saved: bool,
}

impl Report {
    /// Whether the run changed anything.
    pub fn changed(&self) -> bool {
        self.expired + self.merged + self.distilled + self.refreshed > 0
            || self.sketch_changed
            || self.index_saved
    }
}

/// The key a distilled item is filed under: its text without numbers (counts and dates
/// change from run to run; the subject does not).
fn key_of(content: &str) -> String {
    let k: String = distil::dedup_key(content)
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect();
    k.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One consolidation run at `now`, with the sketch kept within `sketch_budget` bytes.
pub fn consolidate(
    store: &MemoryStore,
    now: i64,
    sketch_budget: usize,
) -> Result<Report, MemoryError> {
    let mut report = Report {
        expired: store.expire(now)?,
        ..Report::default()
    };
    let since = now.saturating_sub(WINDOW_MS);
    for ns in store.namespaces()? {
        let items = store.recent(
            &ns,
            &[Kind::Semantic, Kind::Knowledge, Kind::Procedural],
            since,
            1000,
            now,
        )?;
        for (_keep, dups) in distil::duplicates(&items) {
            for id in dups {
                store.forget(&id, "consolidation", now)?;
                report.merged += 1;
            }
        }
    }
    let owner = Namespace::owner();
    let episodes = store.recent(&owner, &[Kind::Episodic], since, 1000, now)?;
    let distilled = distil::distil(&episodes, now);
    let (sketch_item, mut sketch) = current_sketch(store)?;
    let before = sketch.clone();
    for d in distilled {
        let source = format!("consolidation:{}", key_of(&d.content));
        let metadata = serde_json::json!({ "evidence": d.evidence, "by": "consolidation" });
        match store.current_by_source(&owner, &source)? {
            Some(old) if old.content == d.content => {}
            Some(old) => {
                store.update(
                    &old.id,
                    Update {
                        content: Some(d.content.clone()),
                        metadata: Some(metadata),
                        ..Update::default()
                    },
                    now,
                )?;
                report.refreshed += 1;
            }
            None => {
                let mut new = NewItem::new(Kind::Semantic, d.content.clone())
                    .tagged(d.tags.iter().cloned())
                    .tagged(["distilled"])
                    .from_source(source);
                new.metadata = Some(metadata);
                store.store(&owner, new, now)?;
                report.distilled += 1;
            }
        }
        if let Some((section, entry)) = d.sketch {
            let list = match section {
                SketchSection::Preferences => &mut sketch.preferences,
                SketchSection::Projects => &mut sketch.projects,
                SketchSection::Focus => &mut sketch.focus,
            };
            merge_entry(list, &entry, SECTION_CAP);
        }
    }
    if sketch != before {
        let (item, _) = save_sketch(
            store,
            sketch_item.as_ref(),
            sketch,
            sketch_budget,
            "consolidation",
        )?;
        report.sketch_changed = sketch_item.is_none_or(|old| old.id != item.id);
    }
    report.index_saved = store.maintain()?;
    Ok(report)
}
