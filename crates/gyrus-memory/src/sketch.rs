//! The user sketch: a compact, always-resident profile of the owner.
//!
//! Every model call gets the sketch as context, so it must be small (a byte budget,
//! [`DEFAULT_BUDGET`] by default) and its text stable: [`Sketch::render`] is that text,
//! exactly. The owner can read and edit it (`gyrus memory sketch --edit` opens the rendered
//! text in `$EDITOR` and [`Sketch::parse`]s it back), and consolidation keeps it current
//! with [`merge_entry`], putting the most recent or strongest entry first. When it grows
//! past its budget, [`Sketch::fit`] drops the least important entries: the sections rank
//! focus, preferences, projects, notes, and within a section earlier entries rank higher.
//!
//! Entries are single lines: whitespace runs (newlines included) are collapsed to one
//! space and the ends trimmed, when rendered and when parsed, so `parse(render(s))` gives
//! `s` back for any sketch whose entries are already single, trimmed and not empty.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default size of the rendered sketch, in bytes: about 500 tokens, small enough to
/// send with every model call.
pub const DEFAULT_BUDGET: usize = 2048;

/// The longest entry kept whole when the sketch must shrink, in bytes; a longer one is cut
/// (at a character boundary) and ends with `…`.
pub const MAX_ENTRY_BYTES: usize = 200;

/// The ellipsis that ends a shortened entry.
const ELLIPSIS: &str = "…";

/// The owner's profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Sketch {
    /// How the owner likes things done ("Prefers tabs", "Never use sudo").
    #[serde(default)]
    pub preferences: Vec<String>,
    /// What the owner works on: repositories, directories, named projects.
    #[serde(default)]
    pub projects: Vec<String>,
    /// What the owner is doing now: the latest tasks.
    #[serde(default)]
    pub focus: Vec<String>,
    /// Anything else the owner wants every model to know.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The sections, as (heading, field), in rendering order.
const HEADINGS: [&str; 4] = ["Preferences", "Projects", "Current focus", "Notes"];

impl Sketch {
    /// The section lists in rendering order (matching `HEADINGS`).
    fn sections(&self) -> [&Vec<String>; 4] {
        [&self.preferences, &self.projects, &self.focus, &self.notes]
    }

    fn section_mut(&mut self, i: usize) -> Option<&mut Vec<String>> {
        match i {
            0 => Some(&mut self.preferences),
            1 => Some(&mut self.projects),
            2 => Some(&mut self.focus),
            3 => Some(&mut self.notes),
            _ => None,
        }
    }

    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.sections()
            .iter()
            .all(|s| s.iter().all(|e| clean(e).is_empty()))
    }

    /// The sketch as text, exactly as every model call gets it:
    ///
    /// ```text
    /// ## Preferences
    /// - …
    /// ## Projects
    /// - …
    /// ## Current focus
    /// - …
    /// ## Notes
    /// - …
    /// ```
    ///
    /// Each line ends with `\n`; a section with no entries is left out (an empty sketch is
    /// the empty string). Entries are collapsed to one line; blank ones are left out.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.rendered_len());
        for (heading, entries) in HEADINGS.iter().zip(self.sections()) {
            let mut entries = entries
                .iter()
                .map(|e| clean(e))
                .filter(|e| !e.is_empty())
                .peekable();
            if entries.peek().is_none() {
                continue;
            }
            out.push_str("## ");
            out.push_str(heading);
            out.push('\n');
            for e in entries {
                out.push_str("- ");
                out.push_str(&e);
                out.push('\n');
            }
        }
        out
    }

    /// The length of [`Sketch::render`], computed without building it.
    fn rendered_len(&self) -> usize {
        HEADINGS
            .iter()
            .zip(self.sections())
            .map(|(heading, entries)| {
                let body: usize = entries
                    .iter()
                    .map(|e| clean(e).len())
                    .filter(|&n| n > 0)
                    .map(|n| n + 3)
                    .sum();
                if body == 0 {
                    0
                } else {
                    heading.len() + 4 + body
                }
            })
            .sum()
    }

    /// Parses the text [`Sketch::render`] makes, as edited by the owner.
    ///
    /// - A heading is a line of `#`s and a section name: `Preferences`, `Projects`,
    ///   `Current focus` or `Notes`, in any case. A section may appear more than once (its
    ///   entries are appended) and in any order.
    /// - An entry is a line starting `- ` or `* ` under a heading. An indented line right
    ///   after an entry continues it (editors wrap long lines).
    /// - Blank lines are ignored.
    ///
    /// Anything else is an error naming the line, so an edit that would silently lose text
    /// (a typo in a heading, a line before any heading) is refused rather than dropped.
    pub fn parse(text: &str) -> Result<Sketch, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut sketch = Sketch::default();
        let mut section: Option<usize> = None;
        // Whether the previous line was an entry (so an indented line continues it).
        let mut in_entry = false;
        for (n, raw) in text.lines().enumerate() {
            let lineno = n + 1;
            let line = raw.trim();
            if line.is_empty() {
                in_entry = false;
                continue;
            }
            if line.starts_with('#') {
                let name = line.trim_start_matches('#').trim();
                let Some(i) = HEADINGS.iter().position(|h| h.eq_ignore_ascii_case(name)) else {
                    return Err(format!(
                        "line {lineno}: unknown section {name:?}; the sections are {}",
                        allowed()
                    ));
                };
                section = Some(i);
                in_entry = false;
                continue;
            }
            let Some(list) = section.and_then(|i| sketch.section_mut(i)) else {
                return Err(format!(
                    "line {lineno}: {line:?} is outside a section; start with a heading: {}",
                    allowed()
                ));
            };
            let bullet = ["- ", "* "]
                .iter()
                .find_map(|b| line.strip_prefix(b))
                .or_else(|| (line == "-" || line == "*").then_some(""));
            match bullet {
                Some(entry) => {
                    let entry = clean(entry);
                    in_entry = !entry.is_empty();
                    if in_entry {
                        list.push(entry);
                    }
                }
                None if in_entry && raw.starts_with(char::is_whitespace) => {
                    if let Some(last) = list.last_mut() {
                        last.push(' ');
                        last.push_str(&clean(line));
                    }
                }
                None => {
                    return Err(format!(
                        "line {lineno}: {line:?} is not an entry; start it with \"- \""
                    ));
                }
            }
        }
        Ok(sketch)
    }

    /// Trims the sketch so that `render().len() <= budget`, and returns what it took out,
    /// in the order taken: each dropped entry, and each shortened entry as it was before.
    /// (Consolidation can keep those as ordinary memories, so nothing is forgotten, only
    /// moved out of the always-sent profile.)
    ///
    /// Nothing changes when the sketch already fits. Otherwise entries are collapsed to
    /// one line, those longer than [`MAX_ENTRY_BYTES`] are cut to it (ending `…`), and then,
    /// while it is still too big, the least important entry goes: the last note first, then
    /// the notes before it, then projects, then preferences, and focus last. (Consolidation
    /// puts the most recent or strongest entry first in each section.)
    pub fn fit(&mut self, budget: usize) -> Vec<String> {
        let mut taken = Vec::new();
        if self.rendered_len() <= budget {
            return taken;
        }
        for i in 0..HEADINGS.len() {
            let Some(list) = self.section_mut(i) else {
                continue;
            };
            let old = std::mem::take(list);
            for e in old {
                let c = clean(&e);
                if c.is_empty() {
                    continue;
                }
                if c.len() > MAX_ENTRY_BYTES {
                    taken.push(e);
                    list.push(shorten(&c, MAX_ENTRY_BYTES));
                } else {
                    list.push(c);
                }
            }
        }
        // Least important first: notes, projects, preferences, focus.
        for i in [3, 1, 0, 2] {
            while self.rendered_len() > budget {
                let Some(e) = self.section_mut(i).and_then(Vec::pop) else {
                    break;
                };
                taken.push(e);
            }
        }
        taken
    }
}

/// The allowed headings, for error messages.
fn allowed() -> String {
    HEADINGS.map(|h| format!("\"## {h}\"")).join(", ")
}

/// An entry as one line: whitespace runs collapsed to a space, ends trimmed.
fn clean(entry: &str) -> String {
    entry.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to at most `max` bytes at a character boundary, ending with `…`.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", s[..end].trim_end())
}

/// What makes two entries the same: lowercase, whitespace collapsed, trailing punctuation
/// and surrounding whitespace ignored.
fn entry_key(entry: &str) -> String {
    clean(entry)
        .trim_end_matches(|c: char| c.is_ascii_punctuation() || c == '…' || c.is_whitespace())
        .to_lowercase()
}

/// Puts `entry` at the front of `list`, removing entries that say the same (ignoring case,
/// surrounding whitespace and trailing punctuation, so "Prefers tabs." and "prefers tabs"
/// are one), and keeps at most `cap` entries (the last ones go). The new wording wins, and
/// the front is where [`Sketch::fit`] keeps entries longest. A blank entry changes nothing.
pub fn merge_entry(list: &mut Vec<String>, entry: &str, cap: usize) {
    let key = entry_key(entry);
    if key.is_empty() {
        return;
    }
    list.retain(|e| entry_key(e) != key);
    list.insert(0, clean(entry));
    list.truncate(cap);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Sketch {
        Sketch {
            preferences: vec!["Prefers tabs".into(), "Never use sudo".into()],
            projects: vec!["/home/u/gyrus".into()],
            focus: vec!["Writing the memory store".into()],
            notes: vec![],
        }
    }

    #[test]
    fn renders_sections_in_order_and_omits_empty_ones() {
        assert_eq!(
            sample().render(),
            "## Preferences\n- Prefers tabs\n- Never use sudo\n## Projects\n- /home/u/gyrus\n## Current focus\n- Writing the memory store\n"
        );
        assert_eq!(Sketch::default().render(), "");
        assert!(Sketch::default().is_empty());
        let notes = Sketch {
            notes: vec!["  two\nlines ".into(), "   ".into()],
            ..Sketch::default()
        };
        assert_eq!(notes.render(), "## Notes\n- two lines\n");
        assert_eq!(notes.render().len(), notes.rendered_len());
    }

    #[test]
    fn parse_inverts_render() {
        let s = sample();
        assert_eq!(Sketch::parse(&s.render()).unwrap(), s);
        assert_eq!(Sketch::parse("").unwrap(), Sketch::default());
    }

    #[test]
    fn parse_is_lenient_about_form() {
        let text = "\u{feff}# current FOCUS\n\n* fixing\n  the build\n- \n\n### Notes\n-   spaced   out  \r\n## Current focus\n- more\n";
        let s = Sketch::parse(text).unwrap();
        assert_eq!(s.focus, ["fixing the build", "more"]);
        assert_eq!(s.notes, ["spaced out"]);
        assert!(s.preferences.is_empty() && s.projects.is_empty());
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = Sketch::parse("## Preferences\n- a\n## Hobbies\n- b\n").unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("Hobbies") && e.contains("## Current focus"),
            "{e}"
        );
        let e = Sketch::parse("- a\n## Notes\n").unwrap_err();
        assert!(
            e.contains("line 1") && e.contains("outside a section"),
            "{e}"
        );
        let e = Sketch::parse("## Notes\n- a\nplain line\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("\"- \""), "{e}");
        // An indented line after a blank line continues nothing.
        let e = Sketch::parse("## Notes\n- a\n\n  b\n").unwrap_err();
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn fit_drops_nothing_when_within_budget() {
        let mut s = sample();
        s.notes.push("x".repeat(300));
        let before = s.clone();
        let len = s.render().len();
        assert!(s.fit(len).is_empty());
        assert_eq!(s, before, "not even long entries are cut when it fits");
    }

    #[test]
    fn fit_drops_least_important_first() {
        let mut s = Sketch {
            preferences: vec!["p1".into(), "p2".into()],
            projects: vec!["j1".into(), "j2".into()],
            focus: vec!["f1".into(), "f2".into()],
            notes: vec!["n1".into(), "n2".into()],
        };
        let order = ["n2", "n1", "j2", "j1", "p2", "p1", "f2", "f1"];
        for k in 0..=order.len() {
            let mut t = s.clone();
            // The budget that leaves exactly the entries after the first k dropped.
            let mut want = s.clone();
            for e in &order[..k] {
                for list in [
                    &mut want.preferences,
                    &mut want.projects,
                    &mut want.focus,
                    &mut want.notes,
                ] {
                    list.retain(|x| x != e);
                }
            }
            let budget = want.render().len();
            let dropped = t.fit(budget);
            assert_eq!(dropped, order[..k], "budget {budget}");
            assert_eq!(t, want);
        }
        assert_eq!(s.fit(0).len(), 8);
        assert_eq!(s.render(), "");
    }

    #[test]
    fn fit_shortens_long_entries_at_a_char_boundary() {
        let long = "é".repeat(150); // 300 bytes
        let mut s = Sketch {
            focus: vec![long.clone()],
            notes: vec!["n".into()],
            ..Sketch::default()
        };
        let dropped = s.fit(260);
        assert_eq!(dropped, [long]);
        assert_eq!(s.notes, ["n"], "shortening was enough");
        let f = &s.focus[0];
        assert!(f.len() <= MAX_ENTRY_BYTES && f.ends_with('…'), "{f}");
        assert!(s.render().len() <= 260);
    }

    #[test]
    fn merge_entry_moves_dedups_and_caps() {
        let mut list = vec![
            "a".to_string(),
            "Prefers tabs.".to_string(),
            "c".to_string(),
        ];
        merge_entry(&mut list, "  prefers TABS  ", 10);
        assert_eq!(list, ["prefers TABS", "a", "c"]);
        merge_entry(&mut list, "d", 3);
        assert_eq!(list, ["d", "prefers TABS", "a"]);
        merge_entry(&mut list, " ... ", 3);
        assert_eq!(
            list,
            ["d", "prefers TABS", "a"],
            "blank entries change nothing"
        );
        merge_entry(&mut list, "A!", 3);
        assert_eq!(list, ["A!", "d", "prefers TABS"]);
        merge_entry(&mut list, "e", 0);
        assert!(list.is_empty());
    }

    #[test]
    fn serde_and_schema() {
        let s = sample();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(serde_json::from_value::<Sketch>(json).unwrap(), s);
        let partial: Sketch = serde_json::from_str(r#"{"focus":["x"]}"#).unwrap();
        assert_eq!(partial.focus, ["x"]);
        let schema = serde_json::to_value(schemars::schema_for!(Sketch)).unwrap();
        assert!(schema["properties"]["preferences"].is_object());
    }

    fn entries() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(
            prop_oneof!["[a-zé😀 ]{0,40}", "[a-z]{150,400}", any::<String>()],
            0..8,
        )
    }

    fn sketches() -> impl Strategy<Value = Sketch> {
        (entries(), entries(), entries(), entries()).prop_map(
            |(preferences, projects, focus, notes)| Sketch {
                preferences,
                projects,
                focus,
                notes,
            },
        )
    }

    proptest! {
        #[test]
        fn fit_is_always_within_budget(mut s in sketches(), budget in 0usize..3000) {
            let before = s.clone();
            let fits = before.render().len() <= budget;
            let dropped = s.fit(budget);
            prop_assert!(s.render().len() <= budget);
            prop_assert_eq!(s.render().len(), s.rendered_len());
            if fits {
                prop_assert!(dropped.is_empty());
                prop_assert_eq!(s, before);
            }
        }

        #[test]
        fn parse_render_round_trips(s in sketches()) {
            let text = s.render();
            let parsed = Sketch::parse(&text).unwrap();
            prop_assert_eq!(parsed.render(), text);
        }
    }
}
