//! When a lease's path glob covers a path, and when two leases overlap (pure: no I/O).
//!
//! A lease glob is relative to its worktree's top directory and `/`-separated: `src/lib.rs`,
//! `docs/**`, `src/*.rs`, `src/{a,b}.rs`. It is matched with [`globset`] with
//! `literal_separator` on, so `*`, `?` and `[...]` never cross a `/` and only a `**`
//! component spans directories. One trailing `/` is accepted and ignored (`src/` is `src`).
//!
//! **Covering.** A glob covers a path when it matches the path or any of the path's parent
//! directories: a lease on `src` (or `src/*`) covers `src/a/b.rs`. So every glob stands for
//! the paths it matches *and everything below them*.
//!
//! **Overlap.** Two globs overlap when some path could be covered by both. The answer is
//! exact when both globs are literal (no metacharacters once escapes like `[*]` or `\*` are
//! read as the characters they stand for): `a` and `b` overlap when they are equal or one is
//! a parent directory of the other. With patterns it is conservative, never "no" when some
//! path is covered by both:
//!
//! - each glob is read as a list of components, `**` meaning "zero or more components", with
//!   an implicit `**` at the end for "everything below";
//! - two lists overlap when some list of component names is accepted by both, checked by a
//!   small dynamic programme over (component of `a`, component of `b`);
//! - two single components overlap when they are equal literals, when a literal matches the
//!   other's pattern (exact, with `globset`), or, for two patterns, when their literal
//!   prefixes agree (one starts with the other) and their literal suffixes agree (one ends
//!   with the other): `*.rs` and `*.md` in the same directory do not overlap, `a*` and `*b`
//!   may.
//!
//! Because a literal may name a directory, `src/lib.rs` and `**/*.md` *do* overlap (the path
//! `src/lib.rs/x.md` is covered by both); [`covers`], used for edits of real files, has no
//! such false positive. A component with `**` inside it (`a**b`, `{**,x}`) is read as `**`;
//! a glob that [`validate`] would refuse is read from its first unparsable component on as
//! `**`.
//!
//! Plain paths are compared as strings; patterns are compiled once per thread and kept in a
//! small cache, so checking an edit against every lease of a worktree stays cheap.

use std::cell::RefCell;
use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher};

/// The longest glob (or path) accepted, in bytes.
pub const MAX_GLOB_BYTES: usize = 1024;

/// The characters that make a glob component a pattern.
const META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// Checks that `glob` is usable as a lease glob: non-empty, at most [`MAX_GLOB_BYTES`],
/// relative, no `.`, `..` or empty components, no NUL, no `/` inside `[...]`, `{...}` or
/// after `\`, and a valid glob. The error says what is wrong.
pub fn validate(glob: &str) -> Result<(), String> {
    validate_shape(glob)?;
    if split(normalize(glob)).is_none() {
        return Err(
            "a `/` inside `[...]`, inside `{...}` or after `\\` is not supported; use one glob \
             per directory"
                .into(),
        );
    }
    compile(normalize(glob))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks that `path` is usable as a relative path to lease: what [`validate`] checks about
/// its shape, with metacharacters taken as plain characters.
pub fn validate_path(path: &str) -> Result<(), String> {
    validate_shape(path)
}

fn validate_shape(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.len() > MAX_GLOB_BYTES {
        return Err(format!("it is longer than {MAX_GLOB_BYTES} bytes"));
    }
    if text.contains('\0') {
        return Err("it contains a NUL byte".into());
    }
    if text.starts_with('/') {
        return Err("it must be relative to the worktree (no leading `/`)".into());
    }
    for component in normalize(text).split('/') {
        match component {
            "" => return Err("it has an empty path component (`//`)".into()),
            "." | ".." => return Err("it has a `.` or `..` component".into()),
            _ => {}
        }
    }
    Ok(())
}

/// `glob` without one trailing `/`: `src/` is the same lease as `src`.
pub fn normalize(glob: &str) -> &str {
    match glob.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => glob,
    }
}

/// The glob that matches exactly `path`, its metacharacters escaped as `[*]`.
pub fn literal(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for c in path.chars() {
        if META.contains(&c) {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

/// True when `glob` matches `path` or one of its parent directories (a lease on `src` covers
/// `src/a/b.rs`). `path` is taken literally. A glob that does not compile covers nothing.
pub fn covers(glob: &str, path: &str) -> bool {
    let glob = normalize(glob);
    let path = normalize(path);
    if !glob.contains(META) {
        // The common case, without allocating: a plain path covers itself and below.
        return path
            .strip_prefix(glob)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    }
    if let Some(parts) = split(glob)
        && let Some(names) = literal_names(&parts)
    {
        // The fast path: a literal glob covers itself and everything below it.
        let mut path_parts = path.split('/');
        return names.iter().all(|n| path_parts.next() == Some(n.as_str()));
    }
    // The path itself or one of its parent directories (a glob that does not compile
    // matches nothing).
    let hit = |p: &str| glob_match(glob, p) == Some(true);
    hit(path)
        || path
            .match_indices('/')
            .any(|(i, _)| i > 0 && hit(&path[..i]))
}

/// True when some path could be covered by both `a` and `b`: exact for literal globs,
/// conservative for patterns (see the module documentation for the rule).
pub fn overlap(a: &str, b: &str) -> bool {
    let a = components(normalize(a));
    let b = components(normalize(b));
    // overlaps[i][j]: the rest of `a` from i and the rest of `b` from j accept a common
    // list of names. Filled from the ends, as each cell needs only later ones.
    let (la, lb) = (a.len(), b.len());
    let width = lb + 1;
    let mut cell = vec![false; (la + 1) * width];
    for i in (0..=la).rev() {
        for j in (0..=lb).rev() {
            let at = |i: usize, j: usize| cell[i * width + j];
            let skip_any = (i < la && a[i] == Part::Any && at(i + 1, j))
                || (j < lb && b[j] == Part::Any && at(i, j + 1));
            let value = if (i == la && j == lb) || skip_any {
                true
            } else if i == la || j == lb {
                false
            } else {
                match (&a[i], &b[j]) {
                    // Both absorbing a name leads back here: nothing new.
                    (Part::Any, Part::Any) => false,
                    (Part::Any, _) => at(i, j + 1),
                    (_, Part::Any) => at(i + 1, j),
                    (x, y) => at(i + 1, j + 1) && part_overlap(x, y),
                }
            };
            cell[i * width + j] = value;
        }
    }
    cell[0]
}

/// One component of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Matches exactly this name.
    Literal(String),
    /// A one-component pattern, as written.
    Pattern(String),
    /// `**`: zero or more components.
    Any,
}

/// The glob's components, with the implicit trailing `**` ("everything below").
fn components(glob: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut raw = glob;
    loop {
        match next_component(raw) {
            Some((component, rest)) => {
                parts.push(part(component));
                match rest {
                    Some(rest) => raw = rest,
                    None => break,
                }
            }
            None => {
                // Unparsable from here on: anything.
                parts.push(Part::Any);
                break;
            }
        }
    }
    if parts.last() != Some(&Part::Any) {
        parts.push(Part::Any);
    }
    parts
}

/// Splits a glob into its raw components, or `None` when a `/` is inside `[...]` or `{...}`
/// or escaped.
fn split(glob: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut raw = glob;
    loop {
        let (component, rest) = next_component(raw)?;
        out.push(component);
        match rest {
            Some(rest) => raw = rest,
            None => return Some(out),
        }
    }
}

/// The first component of `raw` and what follows its `/`, or `None` when the component's
/// brackets, braces or escapes hold a `/`.
fn next_component(raw: &str) -> Option<(&str, Option<&str>)> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    let mut braces = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                if bytes.get(i + 1) == Some(&b'/') {
                    return None;
                }
                i += 2;
                continue;
            }
            b'[' => {
                // A class runs to the next `]`, a `]` right after `[` or `[!` / `[^` being
                // part of it.
                let mut j = i + 1;
                if matches!(bytes.get(j), Some(b'!' | b'^')) {
                    j += 1;
                }
                if bytes.get(j) == Some(&b']') {
                    j += 1;
                }
                while j < bytes.len() && bytes[j] != b']' {
                    if bytes[j] == b'/' {
                        return None;
                    }
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            b'/' => {
                if braces > 0 {
                    return None;
                }
                return Some((&raw[..i], Some(&raw[i + 1..])));
            }
            _ => {}
        }
        i += 1;
    }
    Some((raw, None))
}

/// Reads one raw component.
fn part(component: &str) -> Part {
    if component.contains("**") {
        return Part::Any;
    }
    match unescape(component) {
        Some(name) => Part::Literal(name),
        None => Part::Pattern(component.to_string()),
    }
}

/// The name a component matches when it is literal once `[c]` and `\c` escapes are read,
/// else `None`.
fn unescape(component: &str) -> Option<String> {
    let chars: Vec<char> = component.chars().collect();
    let mut out = String::with_capacity(component.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                out.push(*chars.get(i + 1)?);
                i += 2;
            }
            '[' => {
                let inner = *chars.get(i + 1)?;
                if inner == '!' || inner == '^' || chars.get(i + 2) != Some(&']') {
                    return None;
                }
                out.push(inner);
                i += 3;
            }
            c if META.contains(&c) => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The names of a glob's components when they are all literal.
fn literal_names(raw: &[&str]) -> Option<Vec<String>> {
    raw.iter()
        .map(|c| match part(c) {
            Part::Literal(name) => Some(name),
            _ => None,
        })
        .collect()
}

/// Could one component name match both?
fn part_overlap(a: &Part, b: &Part) -> bool {
    match (a, b) {
        (Part::Literal(x), Part::Literal(y)) => x == y,
        (Part::Literal(name), Part::Pattern(p)) | (Part::Pattern(p), Part::Literal(name)) => {
            glob_match(p, name).unwrap_or(true)
        }
        (Part::Pattern(p), Part::Pattern(q)) => {
            let (p_prefix, p_suffix) = affixes(p);
            let (q_prefix, q_suffix) = affixes(q);
            (p_prefix.starts_with(q_prefix) || q_prefix.starts_with(p_prefix))
                && (p_suffix.ends_with(q_suffix) || q_suffix.ends_with(p_suffix))
        }
        // `Any` is handled by the caller.
        _ => true,
    }
}

/// The literal text every match of a one-component pattern starts and ends with.
fn affixes(pattern: &str) -> (&str, &str) {
    let prefix_end = pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len());
    let suffix_start = pattern
        .rfind(['*', '?', ']', '}', '\\'])
        .map_or(0, |i| i + 1);
    (
        &pattern[..prefix_end],
        &pattern[suffix_start.max(prefix_end)..],
    )
}

fn compile(glob: &str) -> Result<GlobMatcher, globset::Error> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
}

/// How many compiled globs each thread keeps.
const CACHE_SIZE: usize = 512;

thread_local! {
    /// Compiled globs by text: compiling one costs tens of microseconds, matching a path
    /// well under one, and the same leases are checked on every edit.
    static MATCHERS: RefCell<HashMap<String, Option<GlobMatcher>>> =
        RefCell::new(HashMap::new());
}

/// Whether the glob matches `path` ([`compile`]d once per thread), or `None` when it does
/// not compile.
fn glob_match(glob: &str, path: &str) -> Option<bool> {
    MATCHERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(glob) {
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(glob.to_string(), compile(glob).ok());
        }
        cache
            .get(glob)
            .and_then(|m| m.as_ref())
            .map(|m| m.is_match(path))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn validate_accepts_lease_globs() {
        for glob in [
            "src/lib.rs",
            "docs/**",
            "src/*.rs",
            "src/",
            "**",
            "**/*.md",
            "src/{a,b}.rs",
            "src/[[]id[]].tsx",
            "a/**/b",
            ".github/workflows",
        ] {
            assert_eq!(validate(glob), Ok(()), "{glob}");
        }
    }

    #[test]
    fn validate_refuses_bad_globs() {
        for (glob, says) in [
            ("", "empty"),
            ("/etc/passwd", "relative"),
            ("a//b", "empty path component"),
            ("a/../b", "`..`"),
            ("./a", "`.`"),
            ("a/./b", "`.`"),
            ("a\0b", "NUL"),
            ("src/[a", "unclosed"),
            ("{src/a,docs}/x", "inside"),
            ("a[/]b", "inside"),
            ("a\\/b", "after"),
            ("/", "relative"),
        ] {
            let err = validate(glob).expect_err(glob);
            assert!(err.contains(says), "{glob:?}: {err}");
        }
        let long = "a/".repeat(600);
        assert!(validate(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn validate_path_takes_metacharacters_literally() {
        assert_eq!(validate_path("app/[id]/page.tsx"), Ok(()));
        assert_eq!(validate_path("src/[a"), Ok(()));
        assert!(validate_path("../x").is_err());
        assert_eq!(validate(&literal("src/[a")), Ok(()));
    }

    #[test]
    fn covers_matches_and_contains() {
        let yes = [
            ("src/lib.rs", "src/lib.rs"),
            ("src", "src/a/b.rs"),
            ("src/", "src/a/b.rs"),
            ("src/*.rs", "src/lib.rs"),
            ("src/*", "src/a/b.rs"),
            ("docs/**", "docs/a/b.md"),
            ("**/*.md", "README.md"),
            ("**/*.md", "a/b/c.md"),
            ("a/**/b", "a/b"),
            ("a/**/b", "a/x/y/b/z"),
            ("src/{a,b}.rs", "src/b.rs"),
            ("**", "anything/at/all"),
        ];
        for (glob, path) in yes {
            assert!(covers(glob, path), "{glob} should cover {path}");
        }
        let no = [
            ("src/lib.rs", "src/lib.rsx"),
            ("src", "srcs/a.rs"),
            ("src/a", "src"),
            ("src/*.rs", "src/a/b.rs"),
            ("src/*.rs", "src/lib.md"),
            ("docs/**", "docs"),
            ("docs/**", "doc/a"),
            ("src/[ab].rs", "src/c.rs"),
        ];
        for (glob, path) in no {
            assert!(!covers(glob, path), "{glob} should not cover {path}");
        }
    }

    #[test]
    fn covers_takes_paths_literally() {
        let path = "app/[id]/page.tsx";
        let glob = literal(path);
        assert!(covers(&glob, path));
        assert!(!covers(&glob, "app/i/page.tsx"));
        assert!(covers(&literal("a*b"), "a*b"));
        assert!(!covers(&literal("a*b"), "axb"));
        assert!(covers(&literal("a\\b"), "a\\b"));
        assert!(covers("app/*/page.tsx", path));
        assert!(covers("src/\\*.rs", "src/*.rs"));
        assert!(!covers("src/\\*.rs", "src/a.rs"));
    }

    #[test]
    fn overlap_of_literals_is_exact() {
        let cases = [
            ("a", "a", true),
            ("a", "a/b", true),
            ("a/b", "a", true),
            ("a/b", "a/c", false),
            ("a/b", "a/bc", false),
            ("ab", "a", false),
            ("a/", "a/b", true),
            ("src/[[]id[]].tsx", "src/[[]id[]].tsx", true),
            ("src/[[]id[]].tsx", "src/\\[id\\].tsx", true),
            ("src/[[]id[]].tsx", "src/[[]ix[]].tsx", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlap(a, b), want, "{a} / {b}");
            assert_eq!(overlap(b, a), want, "{b} / {a}");
        }
    }

    #[test]
    fn overlap_of_patterns() {
        let cases = [
            ("src/*.rs", "src/lib.rs", true),
            ("src/*.rs", "src/lib.md", false),
            ("src/*.rs", "src/*.md", false),
            ("src/*.rs", "src/l*", true),
            ("src/*.rs", "docs/*.rs", false),
            ("src/*.rs", "src", true),
            ("src/*.rs", "src/a/b.rs", false),
            ("docs/**", "docs/a.md", true),
            ("docs/**", "src/**", false),
            ("docs/**", "docs", true),
            ("**/*.md", "src/a.md", true),
            ("**/*.md", "src", true),
            ("**/*.md", "src/lib.rs", true), // `src/lib.rs/x.md`
            ("a/**/z", "a/b/c/z", true),
            ("a/**/z", "b/z", false),
            ("a/*/z", "a/b/c/z", false),
            ("a/*/z", "a/b/z/q", true),
            ("a*", "*b", true),
            ("x/[ab]", "x/c", false),
            ("x/[ab]", "x/a", true),
            ("x/{a,b}", "x/b", true),
            ("x/{a,b}", "x/c", false),
            ("**", "anything", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlap(a, b), want, "{a} / {b}");
            assert_eq!(overlap(b, a), want, "{b} / {a}");
        }
    }

    /// Overlap is never "no" where some path is covered by both.
    #[test]
    fn overlap_is_conservative_against_covers() {
        let globs = [
            "a",
            "a/b",
            "a/b/c.rs",
            "a/*",
            "a/*.rs",
            "a/*.md",
            "a/**",
            "**/*.rs",
            "**/c.rs",
            "a/**/c.rs",
            "*/b",
            "a/[bc]",
            "a/{b,x}/*.rs",
            "b",
            "a/b*",
            "a/*c.rs",
        ];
        let paths = [
            "a", "a/b", "a/c", "a/b/c.rs", "a/b/d.md", "a/x/c.rs", "b", "b/c.rs", "a/c.rs",
            "a/b.rs", "c.rs", "x/b", "a/bc.rs",
        ];
        for a in globs {
            for b in globs {
                for p in paths {
                    if covers(a, p) && covers(b, p) {
                        assert!(overlap(a, b), "{a} and {b} both cover {p}");
                    }
                }
            }
        }
    }
}
