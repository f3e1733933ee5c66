//! `HnswIndex`: a hierarchical navigable small world graph (Malkov & Yashunin, 2016).
//!
//! Written here rather than taken from a crate because the memory fabric needs three things
//! that the maintained Rust HNSW crates do not all offer together: namespace filters applied
//! *during* the graph search (not by over-fetching and dropping hits, which leaks recall and,
//! with a selective filter, returns too few hits), real deletion, and a persistence format of
//! our own that loads without trusting the file.
//!
//! The graph follows the paper: each node gets a level drawn from `floor(-ln(U) * mL)` with
//! `mL = 1/ln(M)`; upper levels keep at most `M` links per node and level 0 at most
//! `M0 = 2M`; insertion descends greedily, then at each level runs a beam search of width
//! `ef_construction` and keeps neighbours chosen by the heuristic (Algorithm 4: a candidate is
//! kept only when it is closer to the new node than to every neighbour kept so far). Searches
//! use a beam of `max(ef_search, k)`.
//!
//! **Deletion** uses tombstones: a removed node leaves the result set at once (it is never
//! admitted into results) but stays in the graph as a waypoint, so the graph stays connected
//! and recall holds. New nodes never link to tombstones. When tombstones outnumber half the
//! live nodes the index rebuilds its links from the live vectors (deterministically, from
//! the seed), which frees their memory.
//!
//! **Namespaces** each get a graph of their own, held in the same arrays: a node links only
//! to nodes of its namespace, and each namespace has its own entry point and top level. A
//! search calls the filter once per namespace and walks only the graphs that pass, so
//! filtering is exact and costs nothing: a query in one namespace of ten touches that
//! namespace's nodes only, never the other nine tenths of the index (a single graph with
//! the filter applied during the walk would have to wade through them, or fall back to a
//! scan). Namespaces that pass with few vectors (at most [`EXACT_MAX`], or four beam
//! widths) are scanned exactly in one pass; the hits of every namespace searched are merged.
//!
//! Storage is laid out for speed on one thread: one contiguous `Vec<f32>` of unit vectors,
//! level-0 links in one flat array (`M0 + 1` slots per node: count, then links), a
//! generation-stamped visited array, and search scratch reused between queries.
//!
//! **Speed.** Each search and each insert is one [`dispatch`]ed operation: the CPU is checked
//! once and the whole graph walk runs with the AVX2 + FMA kernel inlined (see
//! [`super::simd`]). An expansion first marks the unvisited neighbours and prefetches their
//! vectors and link lists, then computes distances, so cache misses overlap; the link list
//! of the nearest pending candidate is prefetched as soon as it becomes the nearest.
//! Candidates are packed into one `u64` so heap comparisons are single integer compares.

use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use super::flat::top_k;
use super::persist::{self, Decoder, Encoder, KIND_HNSW};
use super::simd::{Kernel, KernelOp, dispatch};
use super::{Hit, IndexError, VectorIndex, normalize_into, normalized};

/// The highest level a node may get; with `M` ≥ 2 it is never reached in practice.
const MAX_LEVEL: usize = 16;
/// The class of a deleted slot: it never passes a filter.
const DELETED: u32 = 0;
/// A namespace with at most this many live vectors (or four beam widths, when more) is
/// scanned exactly rather than walked: its graph would visit about as many nodes.
pub const EXACT_MAX: usize = 1024;

/// Parameters of an [`HnswIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswConfig {
    /// Links per node on upper levels (`M`); level 0 keeps `2M`. 2 ..= 128.
    pub m: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    /// Beam width while searching (raised to `k` when `k` is larger).
    pub ef_search: usize,
    /// Seed of the level generator; the same inserts with the same seed give the same graph.
    pub seed: u64,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            seed: 0x5eed_6779_7275_7300,
        }
    }
}

/// A candidate: a slot at distance `d` (`1 - cosine`), packed into one `u64` whose integer
/// order is the order of `(d.total_cmp, slot)`: the high half is `d`'s bits mapped to an
/// unsigned key that sorts like `f32::total_cmp`, the low half the slot. Heap operations
/// dominate the search loop once distances are SIMD, and one integer compare is much
/// cheaper than a float total order followed by a tie break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cand(u64);

impl Cand {
    #[inline(always)]
    fn new(d: f32, slot: u32) -> Self {
        let b = d.to_bits();
        // Negative: flip every bit (larger magnitude sorts lower); else set the sign bit.
        let key = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
        Cand((u64::from(key) << 32) | u64::from(slot))
    }

    /// The distance.
    #[inline(always)]
    fn d(self) -> f32 {
        let key = (self.0 >> 32) as u32;
        f32::from_bits(if key >> 31 == 1 {
            key & 0x7fff_ffff
        } else {
            !key
        })
    }

    /// The slot.
    #[inline(always)]
    fn slot(self) -> u32 {
        self.0 as u32
    }
}

/// Reversed order: a `BinaryHeap<Near>` pops the nearest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Near(std::cmp::Reverse<Cand>);

/// One namespace's share of the index: its live count and the entry point and top level of
/// its own graph (`None` while it has no live node).
#[derive(Debug, Clone, Copy, Default)]
struct Class {
    ns: u32,
    live: usize,
    entry: Option<u32>,
    max_level: usize,
}

/// Per-search working memory, reused between searches.
#[derive(Debug, Default)]
struct Beam {
    visited: Vec<u32>,
    generation: u32,
    cand: BinaryHeap<Near>,
    /// Max-heap: the farthest admitted node on top.
    res: BinaryHeap<Cand>,
}

impl Beam {
    fn begin(&mut self, n: usize) {
        if self.visited.len() < n {
            self.visited.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.visited.fill(0);
            self.generation = 1;
        }
        self.cand.clear();
        self.res.clear();
    }
    /// Marks `slot`; returns whether it was new. (`search_layer` inlines the same logic over
    /// local borrows; this method is kept for the tests.)
    #[cfg(test)]
    fn visit(&mut self, slot: u32) -> bool {
        let g = self.generation;
        match self.visited.get_mut(slot as usize) {
            Some(v) if *v != g => {
                *v = g;
                true
            }
            _ => false,
        }
    }
}

/// Working memory of searches and inserts, reused between calls so that neither allocates
/// in the steady state.
#[derive(Debug, Default)]
struct Scratch {
    beam: Beam,
    /// Per class: whether it passes the current filter.
    pass: Vec<bool>,
    /// Search: per class, whether it is scanned exactly.
    exact: Vec<bool>,
    /// The normalised query.
    query: Vec<f32>,
    /// Insert: entry points of the next level down.
    entries: Vec<Cand>,
    /// Insert: the beam's result, sorted nearest first.
    cands: Vec<Cand>,
    /// Insert: heuristic selection output.
    sel: Vec<u32>,
    /// Insert: the new node's links on the current level.
    chosen: Vec<u32>,
    /// Insert: candidates while re-selecting a full neighbour list.
    tmp: Vec<Cand>,
}

/// An approximate cosine-similarity index; see the module documentation.
#[derive(Debug)]
pub struct HnswIndex {
    cfg: HnswConfig,
    dim: usize,
    m0: usize,
    ml: f64,
    vectors: Vec<f32>,
    ids: Vec<u64>,
    namespaces: Vec<u32>,
    /// Dense namespace class per slot; `DELETED` for tombstones.
    class: Vec<u32>,
    levels: Vec<u8>,
    /// Level-0 links: `m0 + 1` per slot (count, then links).
    links0: Vec<u32>,
    /// Links of levels 1 ..= level: `m + 1` per level (count, then links).
    upper: Vec<Vec<u32>>,
    slot_of: HashMap<u64, u32>,
    class_of_ns: HashMap<u32, u32>,
    /// Per class (index 0, `DELETED`, unused): its namespace, live count and graph.
    classes: Vec<Class>,
    live: usize,
    rng: u64,
    scratch: Mutex<Option<Scratch>>,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl HnswIndex {
    /// An empty index of `dim`-component vectors.
    pub fn new(dim: usize, cfg: HnswConfig) -> Result<Self, IndexError> {
        if dim == 0 || u32::try_from(dim).is_err() {
            return Err(IndexError::InvalidConfig(format!(
                "dimension {dim} out of range"
            )));
        }
        if !(2..=128).contains(&cfg.m) {
            return Err(IndexError::InvalidConfig(format!(
                "M = {} is not in 2..=128",
                cfg.m
            )));
        }
        if cfg.ef_construction == 0 || cfg.ef_search == 0 {
            return Err(IndexError::InvalidConfig(
                "ef values must be at least 1".into(),
            ));
        }
        Ok(HnswIndex {
            cfg,
            dim,
            m0: 2 * cfg.m,
            ml: 1.0 / (cfg.m as f64).ln(),
            vectors: Vec::new(),
            ids: Vec::new(),
            namespaces: Vec::new(),
            class: Vec::new(),
            levels: Vec::new(),
            links0: Vec::new(),
            upper: Vec::new(),
            slot_of: HashMap::new(),
            class_of_ns: HashMap::new(),
            classes: vec![Class::default()],
            live: 0,
            rng: cfg.seed,
            scratch: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> HnswConfig {
        self.cfg
    }

    /// Sets the search beam width used from now on (at least 1).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.cfg.ef_search = ef.max(1);
    }

    /// Deleted slots still held as waypoints.
    pub fn tombstones(&self) -> usize {
        self.ids.len() - self.live
    }

    #[inline(always)]
    fn vec(&self, slot: u32) -> &[f32] {
        let s = slot as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    #[inline(always)]
    fn dist<K: Kernel>(&self, k: K, q: &[f32], slot: u32) -> f32 {
        1.0 - k.dot(q, self.vec(slot))
    }

    /// The raw link row of `slot` on `level`: the count, then the link slots.
    #[inline(always)]
    fn link_row(&self, slot: u32, level: usize) -> &[u32] {
        if level == 0 {
            let s = slot as usize * (self.m0 + 1);
            &self.links0[s..s + self.m0 + 1]
        } else {
            let s = (level - 1) * (self.cfg.m + 1);
            &self.upper[slot as usize][s..s + self.cfg.m + 1]
        }
    }

    #[inline(always)]
    fn links(&self, slot: u32, level: usize) -> &[u32] {
        if level == 0 {
            let s = slot as usize * (self.m0 + 1);
            let n = self.links0[s] as usize;
            &self.links0[s + 1..s + 1 + n]
        } else {
            let u = &self.upper[slot as usize];
            let s = (level - 1) * (self.cfg.m + 1);
            let n = u[s] as usize;
            &u[s + 1..s + 1 + n]
        }
    }

    fn set_links(&mut self, slot: u32, level: usize, links: &[u32]) {
        let buf = if level == 0 {
            let s = slot as usize * (self.m0 + 1);
            &mut self.links0[s..s + self.m0 + 1]
        } else {
            let s = (level - 1) * (self.cfg.m + 1);
            let m = self.cfg.m;
            &mut self.upper[slot as usize][s..s + m + 1]
        };
        let n = links.len().min(buf.len() - 1);
        buf[0] = n as u32;
        buf[1..1 + n].copy_from_slice(&links[..n]);
    }

    /// Appends `to` to the links of `slot` on `level`; the caller checked there is room.
    fn push_link(&mut self, slot: u32, level: usize, to: u32) {
        let buf = if level == 0 {
            let s = slot as usize * (self.m0 + 1);
            &mut self.links0[s..s + self.m0 + 1]
        } else {
            let s = (level - 1) * (self.cfg.m + 1);
            let m = self.cfg.m;
            &mut self.upper[slot as usize][s..s + m + 1]
        };
        let n = buf[0] as usize;
        if n + 1 < buf.len() {
            buf[n + 1] = to;
            buf[0] = n as u32 + 1;
        }
    }

    fn random_level(&mut self) -> usize {
        // 53 random bits in (0, 1].
        let u = ((splitmix(&mut self.rng) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln() * self.ml) as usize).min(MAX_LEVEL)
    }

    /// Greedy descent on one level from `ep`.
    #[inline(always)]
    fn greedy<K: Kernel>(&self, k: K, q: &[f32], ep: &mut u32, d: &mut f32, level: usize) {
        loop {
            let mut moved = false;
            let links = self.links(*ep, level);
            for &n in links {
                k.prefetch(self.vec(n));
            }
            for &n in links {
                let dn = self.dist(k, q, n);
                if dn < *d {
                    *d = dn;
                    *ep = n;
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Beam search on one level; admitted nodes end in `beam.res` (at most `ef`).
    ///
    /// `pass` says which classes may enter the results; `None` admits every node (the
    /// caller guarantees there are no tombstones then), which skips a lookup per node.
    ///
    /// Each expansion first marks the unvisited neighbours and prefetches their vectors, then
    /// computes the distances, so the memory loads of one expansion overlap instead of
    /// stalling one after another (the vectors of a large index do not fit in cache).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn search_layer<K: Kernel>(
        &self,
        k: K,
        beam: &mut Beam,
        q: &[f32],
        entries: &[Cand],
        ef: usize,
        level: usize,
        pass: Option<&[bool]>,
    ) {
        let admits = |slot: u32| pass.is_none_or(|p| p[self.class[slot as usize] as usize]);
        beam.begin(self.ids.len());
        // Locals rather than fields behind `&mut`: the compiler then keeps the visited
        // array's length and the generation in registers across the loop.
        let Beam {
            visited,
            generation,
            cand,
            res,
        } = beam;
        let g = *generation;
        let visited = visited.as_mut_slice();
        let mut visit = |slot: u32| match visited.get_mut(slot as usize) {
            Some(v) if *v != g => {
                *v = g;
                true
            }
            _ => false,
        };
        for &e in entries {
            if visit(e.slot()) {
                cand.push(Near(std::cmp::Reverse(e)));
                if admits(e.slot()) {
                    res.push(e);
                }
            }
        }
        while res.len() > ef {
            res.pop();
        }
        while let Some(Near(std::cmp::Reverse(c))) = cand.pop() {
            if res.len() >= ef && res.peek().is_some_and(|w| c.d() > w.d()) {
                break;
            }
            // A fixed array, not a `Vec`: no capacity checks, and its length stays in a
            // register. Link lists hold at most `M0 = 2M <= 256` slots.
            let mut fresh = [0u32; 256];
            let mut count = 0;
            for &n in self.links(c.slot(), level) {
                if visit(n) {
                    k.prefetch(self.vec(n));
                    k.prefetch_u32(self.link_row(n, level));
                    if let Some(f) = fresh.get_mut(count) {
                        *f = n;
                        count += 1;
                    }
                }
            }
            for &n in &fresh[..count] {
                let dn = self.dist(k, q, n);
                let worst = res.peek().map_or(f32::INFINITY, |w| w.d());
                if res.len() < ef || dn < worst {
                    let new = Cand::new(dn, n);
                    cand.push(Near(std::cmp::Reverse(new)));
                    // The nearest candidate is expanded next: fetch its links now.
                    if let Some(Near(std::cmp::Reverse(next))) = cand.peek() {
                        k.prefetch_u32(self.link_row(next.slot(), level));
                    }
                    if admits(n) {
                        if res.len() < ef {
                            res.push(new);
                        } else if let Some(mut top) = res.peek_mut() {
                            // Full and `new` is nearer than the top: replacing the top
                            // (one sift down) is push-then-pop without the extra work.
                            *top = new;
                        }
                    }
                }
            }
        }
    }

    /// Algorithm 4 (without extending candidates or keeping pruned ones): `cands` sorted
    /// nearest first; keeps a candidate only when it is nearer the base than every one kept.
    #[inline(always)]
    fn select_heuristic<K: Kernel>(&self, k: K, cands: &[Cand], m: usize, out: &mut Vec<u32>) {
        out.clear();
        for c in cands {
            if out.len() >= m {
                break;
            }
            let v = self.vec(c.slot());
            if out.iter().all(|&r| 1.0 - k.dot(v, self.vec(r)) > c.d()) {
                out.push(c.slot());
            }
        }
    }

    /// Adds the link `from -> to` on `level`, re-selecting `from`'s links by the heuristic
    /// when its list is full.
    #[inline(always)]
    fn add_link<K: Kernel>(
        &mut self,
        k: K,
        from: u32,
        to: u32,
        level: usize,
        tmp: &mut Vec<Cand>,
        sel: &mut Vec<u32>,
    ) {
        let mmax = if level == 0 { self.m0 } else { self.cfg.m };
        let cur = self.links(from, level);
        if cur.contains(&to) {
            return;
        }
        if cur.len() < mmax {
            self.push_link(from, level, to);
            return;
        }
        let base = self.vec(from);
        tmp.clear();
        for &n in cur.iter().chain(std::iter::once(&to)) {
            tmp.push(Cand::new(1.0 - k.dot(base, self.vec(n)), n));
        }
        tmp.sort_unstable();
        self.select_heuristic(k, tmp, mmax, sel);
        let chosen = std::mem::take(sel);
        self.set_links(from, level, &chosen);
        *sel = chosen;
    }

    fn take_scratch(&self) -> Scratch {
        match self.scratch.try_lock() {
            Ok(mut g) => g.take().unwrap_or_default(),
            Err(_) => Scratch::default(),
        }
    }

    fn put_scratch(&self, s: Scratch) {
        if let Ok(mut g) = self.scratch.try_lock() {
            *g = Some(s);
        }
    }

    fn class_for(&mut self, ns: u32) -> u32 {
        if let Some(&c) = self.class_of_ns.get(&ns) {
            return c;
        }
        let c = self.classes.len() as u32;
        self.classes.push(Class {
            ns,
            ..Class::default()
        });
        self.class_of_ns.insert(ns, c);
        c
    }

    /// Adds a normalised vector as a new slot and links it.
    fn add(&mut self, id: u64, namespace: u32, v: &[f32]) -> Result<(), IndexError> {
        if self.ids.len() >= (u32::MAX - 1) as usize {
            return Err(IndexError::Full(self.ids.len()));
        }
        let slot = self.ids.len() as u32;
        let level = self.random_level();
        let class = self.class_for(namespace);
        self.classes[class as usize].live += 1;
        self.live += 1;
        self.vectors.extend_from_slice(v);
        self.ids.push(id);
        self.namespaces.push(namespace);
        self.class.push(class);
        self.levels.push(level as u8);
        self.links0.resize(self.links0.len() + self.m0 + 1, 0);
        self.upper.push(vec![0; level * (self.cfg.m + 1)]);
        self.slot_of.insert(id, slot);

        let c = &mut self.classes[class as usize];
        let Some(ep) = c.entry else {
            c.entry = Some(slot);
            c.max_level = level;
            return Ok(());
        };
        let top = c.max_level;
        let mut s = self.take_scratch();
        dispatch(LinkOp {
            ix: self,
            s: &mut s,
            slot,
            level,
            ep,
            top,
        });
        let c = &mut self.classes[class as usize];
        if level > c.max_level {
            c.max_level = level;
            c.entry = Some(slot);
        }
        self.put_scratch(s);
        Ok(())
    }

    /// Links the new node `slot` (already stored, at `level`) into its namespace's graph
    /// from that graph's entry point `ep` on its top level `top`: greedy descent to `level`,
    /// then a beam search and heuristic selection on each level from there down, with back
    /// links. Every node reached is of the same namespace (or a tombstone that was), so the
    /// graphs stay apart.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn link_new<K: Kernel>(
        &mut self,
        k: K,
        s: &mut Scratch,
        slot: u32,
        level: usize,
        ep: u32,
        top: usize,
    ) {
        let mut ep = ep;
        // Construction admits every live node; with no tombstones that is every node.
        let pass = if self.tombstones() == 0 {
            None
        } else {
            s.pass.clear();
            s.pass.resize(self.classes.len(), true);
            s.pass[DELETED as usize] = false;
            Some(s.pass.as_slice())
        };
        let v = self.vec(slot);
        let mut d = self.dist(k, v, ep);
        for l in (level + 1..=top).rev() {
            self.greedy(k, v, &mut ep, &mut d, l);
        }
        let mut entries = std::mem::take(&mut s.entries);
        let mut cands = std::mem::take(&mut s.cands);
        let mut sel = std::mem::take(&mut s.sel);
        let mut tmp = std::mem::take(&mut s.tmp);
        let mut chosen = std::mem::take(&mut s.chosen);
        entries.clear();
        entries.push(Cand::new(d, ep));
        for l in (0..=level.min(top)).rev() {
            let v = self.vec(slot);
            self.search_layer(
                k,
                &mut s.beam,
                v,
                &entries,
                self.cfg.ef_construction,
                l,
                pass,
            );
            cands.clear();
            cands.extend(s.beam.res.drain());
            cands.retain(|c| c.slot() != slot);
            if cands.is_empty() {
                continue;
            }
            cands.sort_unstable();
            self.select_heuristic(k, &cands, self.cfg.m, &mut sel);
            chosen.clear();
            chosen.extend_from_slice(&sel);
            self.set_links(slot, l, &chosen);
            for &n in &chosen {
                self.add_link(k, n, slot, l, &mut tmp, &mut sel);
            }
            entries.clear();
            entries.extend_from_slice(&cands);
        }
        s.entries = entries;
        s.cands = cands;
        s.sel = sel;
        s.tmp = tmp;
        s.chosen = chosen;
    }

    /// The search proper, after the query is normalised into `s.query` and `s.pass` holds
    /// the filter per class: the small passing namespaces scanned exactly in one pass, each
    /// larger one's graph walked, and the hits merged.
    #[inline(always)]
    fn search_normalized<K: Kernel>(&self, k: K, s: &mut Scratch, top: usize) -> Vec<Hit> {
        let ef = self.cfg.ef_search.max(top);
        let small = (4 * ef).max(EXACT_MAX);
        let Scratch {
            beam,
            pass,
            exact,
            query,
            ..
        } = s;
        exact.clear();
        exact.extend(
            self.classes
                .iter()
                .zip(pass.iter())
                .map(|(class, &p)| p && class.live <= small),
        );
        let mut hits = Vec::new();
        if exact.contains(&true) {
            for slot in 0..self.ids.len() {
                if exact[self.class[slot] as usize] {
                    hits.push(Hit {
                        id: self.ids[slot],
                        score: k.dot(query, self.vec(slot as u32)),
                    });
                }
            }
        }
        // Within a graph every node is of its namespace or a tombstone: with no tombstones
        // anywhere, skip the per-node class lookup.
        let admit = if self.tombstones() == 0 {
            None
        } else {
            Some(pass.as_slice())
        };
        for (c, class) in self.classes.iter().enumerate() {
            let Some(entry) = class.entry else { continue };
            if !pass[c] || exact[c] {
                continue;
            }
            let mut ep = entry;
            let mut d = self.dist(k, query, ep);
            for l in (1..=class.max_level).rev() {
                self.greedy(k, query, &mut ep, &mut d, l);
            }
            self.search_layer(k, beam, query, &[Cand::new(d, ep)], ef, 0, admit);
            while beam.res.len() > top {
                beam.res.pop();
            }
            hits.extend(beam.res.drain().map(|c| Hit {
                id: self.ids[c.slot() as usize],
                score: 1.0 - c.d(),
            }));
        }
        top_k(hits, top)
    }

    /// Rebuilds the graph from the live vectors, dropping tombstones.
    fn rebuild(&mut self) {
        let mut fresh = match HnswIndex::new(self.dim, self.cfg) {
            Ok(f) => f,
            Err(_) => return,
        };
        for slot in 0..self.ids.len() {
            if self.class[slot] != DELETED {
                let s = slot as u32;
                // The vectors are already unit length and the slot count only shrinks.
                let _ = fresh.add(self.ids[slot], self.namespaces[slot], self.vec(s));
            }
        }
        *self = fresh;
    }
}

/// [`HnswIndex::link_new`] as one dispatched operation.
struct LinkOp<'a> {
    ix: &'a mut HnswIndex,
    s: &'a mut Scratch,
    slot: u32,
    level: usize,
    ep: u32,
    top: usize,
}

impl KernelOp for LinkOp<'_> {
    type Output = ();
    #[inline(always)]
    fn run<K: Kernel>(self, k: K) {
        self.ix
            .link_new(k, self.s, self.slot, self.level, self.ep, self.top);
    }
}

/// [`HnswIndex::search_normalized`] as one dispatched operation.
struct SearchOp<'a> {
    ix: &'a HnswIndex,
    s: &'a mut Scratch,
    k: usize,
}

impl KernelOp for SearchOp<'_> {
    type Output = Vec<Hit>;
    #[inline(always)]
    fn run<K: Kernel>(self, k: K) -> Vec<Hit> {
        self.ix.search_normalized(k, self.s, self.k)
    }
}

impl VectorIndex for HnswIndex {
    fn insert(&mut self, id: u64, namespace: u32, vector: &[f32]) -> Result<(), IndexError> {
        let v = normalized(self.dim, vector)?;
        self.remove(id);
        self.add(id, namespace, &v)
    }

    fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        let c = std::mem::replace(&mut self.class[slot as usize], DELETED);
        let class = &mut self.classes[c as usize];
        class.live -= 1;
        if class.live == 0 {
            // Its graph holds only tombstones now: the namespace's next vector starts a new
            // one (the old nodes go at the next rebuild).
            class.entry = None;
            class.max_level = 0;
        }
        self.live -= 1;
        if self.live == 0 {
            // Nothing left to find: start afresh rather than keep a graph of tombstones.
            self.rebuild();
        } else if self.tombstones() > self.live / 2 + 16 {
            self.rebuild();
        }
        true
    }

    fn search(&self, query: &[f32], k: usize, filter: &dyn Fn(u32) -> bool) -> Vec<Hit> {
        if k == 0 || self.live == 0 {
            return Vec::new();
        }
        let mut s = self.take_scratch();
        s.query.resize(self.dim, 0.0);
        if normalize_into(self.dim, query, &mut s.query).is_err() {
            self.put_scratch(s);
            return Vec::new();
        }
        s.pass.clear();
        s.pass.push(false);
        let mut any = false;
        for class in &self.classes[1..] {
            let p = class.live > 0 && filter(class.ns);
            any |= p;
            s.pass.push(p);
        }
        let hits = if any {
            dispatch(SearchOp {
                ix: self,
                s: &mut s,
                k,
            })
        } else {
            Vec::new()
        };
        self.put_scratch(s);
        hits
    }

    fn len(&self) -> usize {
        self.live
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn save(&self, path: &Path) -> Result<(), IndexError> {
        let mut e = Encoder::new(KIND_HNSW);
        e.u32(self.dim as u32);
        e.u32(self.cfg.m as u32);
        e.u64(self.cfg.ef_construction as u64);
        e.u64(self.cfg.ef_search as u64);
        e.u64(self.cfg.seed);
        e.u64(self.rng);
        e.u64(self.ids.len() as u64);
        for slot in 0..self.ids.len() {
            e.u64(self.ids[slot]);
            e.u32(self.namespaces[slot]);
            e.u8(u8::from(self.class[slot] == DELETED));
            e.u8(self.levels[slot]);
        }
        e.f32s(&self.vectors);
        e.u32s(&self.links0);
        for u in &self.upper {
            e.u32s(u);
        }
        // Each namespace's graph: its entry point and top level.
        let graphs: Vec<(u32, u32, usize)> = self
            .classes
            .iter()
            .filter_map(|c| c.entry.map(|entry| (c.ns, entry, c.max_level)))
            .collect();
        e.u64(graphs.len() as u64);
        for (ns, entry, max_level) in graphs {
            e.u32(ns);
            e.u32(entry);
            e.u32(max_level as u32);
        }
        persist::write_atomic(path, &e.finish())
    }

    fn load(path: &Path) -> Result<Self, IndexError> {
        let bytes = persist::read(path)?;
        let mut d = Decoder::open(&bytes, KIND_HNSW, path)?;
        let dim = d.u32()? as usize;
        let m = d.u32()? as usize;
        let ef_construction = usize::try_from(d.u64()?).map_err(|_| d.corrupt("ef"))?;
        let ef_search = usize::try_from(d.u64()?).map_err(|_| d.corrupt("ef"))?;
        let seed = d.u64()?;
        let cfg = HnswConfig {
            m,
            ef_construction,
            ef_search,
            seed,
        };
        let mut ix = HnswIndex::new(dim, cfg).map_err(|e| d.corrupt(e.to_string()))?;
        ix.rng = d.u64()?;
        let n = d.count(14 + 4 * dim + 4 * (ix.m0 + 1))?;
        let mut deleted = Vec::with_capacity(n);
        for slot in 0..n {
            let id = d.u64()?;
            let ns = d.u32()?;
            let del = match d.u8()? {
                0 => false,
                1 => true,
                _ => return Err(d.corrupt("bad deleted flag")),
            };
            let level = d.u8()?;
            if level as usize > MAX_LEVEL {
                return Err(d.corrupt("node level out of range"));
            }
            ix.ids.push(id);
            ix.namespaces.push(ns);
            ix.levels.push(level);
            deleted.push(del);
            if del {
                ix.class.push(DELETED);
            } else {
                if ix.slot_of.insert(id, slot as u32).is_some() {
                    return Err(d.corrupt(format!("id {id} appears twice")));
                }
                let c = ix.class_for(ns);
                ix.classes[c as usize].live += 1;
                ix.class.push(c);
                ix.live += 1;
            }
        }
        ix.vectors = d.f32s(n * dim)?;
        if ix.vectors.iter().any(|x| !x.is_finite()) {
            return Err(d.corrupt("non-finite vector component"));
        }
        ix.links0 = d.u32s(n * (ix.m0 + 1))?;
        for slot in 0..n {
            let len = ix.levels[slot] as usize * (m + 1);
            ix.upper.push(d.u32s(len)?);
        }
        let graphs = d.count(12)?;
        for _ in 0..graphs {
            let ns = d.u32()?;
            let entry = d.u32()?;
            let max_level = d.u32()? as usize;
            let c = match ix.class_of_ns.get(&ns) {
                Some(&c) if ix.classes[c as usize].entry.is_none() => c,
                _ => return Err(d.corrupt("a graph for a namespace with no live vector, or twice")),
            };
            if entry as usize >= n
                || ix.levels[entry as usize] as usize != max_level
                || ix.namespaces[entry as usize] != ns
            {
                return Err(d.corrupt("bad entry point"));
            }
            let class = &mut ix.classes[c as usize];
            class.entry = Some(entry);
            class.max_level = max_level;
        }
        d.end()?;
        if ix.classes[1..].iter().any(|c| c.entry.is_none()) {
            return Err(d.corrupt("a namespace with live vectors has no graph"));
        }
        // Check every link list: count in range, targets in range and in the same namespace
        // (a walk must never leave its namespace's graph).
        for slot in 0..n {
            for l in 0..=ix.levels[slot] as usize {
                let (buf, cap) = if l == 0 {
                    let s = slot * (ix.m0 + 1);
                    (&ix.links0[s..s + ix.m0 + 1], ix.m0)
                } else {
                    let s = (l - 1) * (m + 1);
                    (&ix.upper[slot][s..s + m + 1], m)
                };
                let cnt = buf[0] as usize;
                if cnt > cap {
                    return Err(d.corrupt("link count out of range"));
                }
                if buf[1..1 + cnt].iter().any(|&t| {
                    t as usize >= n
                        || (l > 0 && (ix.levels[t as usize] as usize) < l)
                        || ix.namespaces[t as usize] != ix.namespaces[slot]
                }) {
                    return Err(d.corrupt("link target out of range or in another namespace"));
                }
            }
        }
        // No live node sits above its namespace's top level.
        for slot in 0..n {
            let c = ix.class[slot] as usize;
            if c != DELETED as usize && ix.levels[slot] as usize > ix.classes[c].max_level {
                return Err(d.corrupt("node level out of range"));
            }
        }
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn levels_follow_the_multiplier() {
        let mut ix = HnswIndex::new(4, HnswConfig::default()).unwrap();
        let n = 100_000;
        let above0 = (0..n).filter(|_| ix.random_level() > 0).count();
        // P(level > 0) = 1/M = 1/16.
        let share = above0 as f64 / n as f64;
        assert!((share - 1.0 / 16.0).abs() < 0.005, "share {share}");
    }

    #[test]
    fn visited_generations_wrap() {
        let mut b = Beam::default();
        b.begin(4);
        assert!(b.visit(1));
        assert!(!b.visit(1));
        b.generation = u32::MAX;
        b.begin(4);
        assert!(b.visit(1));
        assert!(!b.visit(9));
    }

    #[test]
    fn links_never_point_to_self_and_respect_caps() {
        let mut ix = HnswIndex::new(
            8,
            HnswConfig {
                m: 4,
                ..HnswConfig::default()
            },
        )
        .unwrap();
        let mut st = 7u64;
        for id in 0..500u64 {
            let v: Vec<f32> = (0..8)
                .map(|_| (splitmix(&mut st) % 1000) as f32 - 500.0)
                .collect();
            ix.insert(id, 0, &v).unwrap();
        }
        for slot in 0..ix.ids.len() as u32 {
            for l in 0..=ix.levels[slot as usize] as usize {
                let links = ix.links(slot, l);
                assert!(!links.contains(&slot));
                assert!(links.len() <= if l == 0 { 8 } else { 4 });
            }
        }
    }
}
