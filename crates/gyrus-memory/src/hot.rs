//! The bounded in-RAM tier (operational memory): the items read or written most recently,
//! by id, and the embeddings of recent query texts, so a hot item or a repeated question
//! does not go back to SQLite or the encoder.
//!
//! It only ever holds copies: the SQLite store stays the truth. The store drops an item
//! here whenever the item changes there (superseded, retired, forgotten, expired), under
//! its database lock, so a reader never sees a stale copy.

use std::num::NonZeroUsize;

use lru::LruCache;

use crate::model::Item;

/// How many items the tier holds.
pub const HOT_ITEMS: usize = 4096;
/// How many query embeddings the tier holds.
pub const HOT_QUERIES: usize = 1024;

pub(crate) struct Hot {
    items: LruCache<String, Item>,
    queries: LruCache<String, Vec<f32>>,
}

impl Hot {
    pub(crate) fn new(items: usize, queries: usize) -> Hot {
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Hot {
            items: LruCache::new(cap(items)),
            queries: LruCache::new(cap(queries)),
        }
    }

    pub(crate) fn item(&mut self, id: &str) -> Option<Item> {
        self.items.get(id).cloned()
    }

    pub(crate) fn put_item(&mut self, item: &Item) {
        self.items.put(item.id.clone(), item.clone());
    }

    pub(crate) fn drop_items<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.items.pop(id);
        }
    }

    pub(crate) fn query_vector(&mut self, text: &str) -> Option<Vec<f32>> {
        self.queries.get(text).cloned()
    }

    pub(crate) fn put_query_vector(&mut self, text: &str, vector: &[f32]) {
        self.queries.put(text.to_string(), vector.to_vec());
    }

    pub(crate) fn len(&self) -> (usize, usize) {
        (self.items.len(), self.queries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Namespace};

    fn item(id: &str) -> Item {
        Item {
            id: id.into(),
            namespace: Namespace::owner(),
            kind: Kind::Semantic,
            content: format!("content of {id}"),
            tags: vec![],
            metadata: serde_json::json!({}),
            source: None,
            created_at: 1,
            valid_from: 1,
            valid_to: None,
            supersedes: None,
            ttl_ms: None,
            expires_at: None,
        }
    }

    #[test]
    fn it_is_bounded_and_evicts_the_least_recently_used() {
        let mut hot = Hot::new(2, 1);
        hot.put_item(&item("a"));
        hot.put_item(&item("b"));
        assert!(hot.item("a").is_some()); // a is now the most recent
        hot.put_item(&item("c"));
        assert!(hot.item("b").is_none());
        assert!(hot.item("a").is_some() && hot.item("c").is_some());
        hot.drop_items(["a"]);
        assert!(hot.item("a").is_none());
        hot.put_query_vector("q1", &[1.0]);
        hot.put_query_vector("q2", &[2.0]);
        assert_eq!(hot.query_vector("q1"), None);
        assert_eq!(hot.query_vector("q2"), Some(vec![2.0]));
        assert_eq!(hot.len(), (1, 1));
        // A zero capacity still works (as one).
        let mut tiny = Hot::new(0, 0);
        tiny.put_item(&item("x"));
        assert!(tiny.item("x").is_some());
    }
}
