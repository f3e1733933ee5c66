//! Query text for full-text search, and how much of a query a document covers.
//!
//! Pure functions: the store builds its FTS5 query from [`terms`] and weighs each full-text
//! hit in the fused ranking by its [`coverage`] of the query.

/// English function words, question words and fillers. They carry no topic, so a query's
/// full-text part leaves them out: "what is my girlfriend's profession?" searches for
/// "girlfriend profession", not for every memory containing "my" or "is".
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "ever",
    "few",
    "for",
    "from",
    "further",
    "get",
    "got",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "might",
    "mine",
    "more",
    "most",
    "must",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "s",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "us",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// At most this many terms go into one full-text query.
const MAX_TERMS: usize = 32;

/// The distinct lowercased words of `text` that carry content, in order: words are runs of
/// letters and digits (as FTS5's `unicode61` tokenizer splits them), stopwords left out.
/// When every word is a stopword ("who is it?"), all the words are kept, so such a query
/// still searches for something.
pub fn terms(text: &str) -> Vec<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut out: Vec<String> = Vec::new();
    for w in words.iter().filter(|w| !STOPWORDS.contains(&w.as_str())) {
        if !out.contains(w) {
            out.push(w.clone());
        }
    }
    if out.is_empty() {
        for w in words {
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out.truncate(MAX_TERMS);
    out
}

/// `terms` as an FTS5 query: each quoted (so no word is an operator), joined by OR, so BM25
/// ranks by how many match and how rare they are. `None` when there are no terms.
pub fn fts_query(terms: &[String]) -> Option<String> {
    (!terms.is_empty()).then(|| {
        terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR ")
    })
}

/// The share of `terms` that occur in `text`, in [0, 1]; 0 when `terms` is empty. A term
/// occurs when a word of `text` equals it, or when one is a prefix of the other and the
/// shorter has at least four characters (so "meetings" covers "meeting" and "called" covers
/// "call", but "pet" does not cover "petrol"): a light stand-in for the Porter stemmer FTS5
/// uses.
///
/// A full-text hit that matches one word of a four-word question is weak evidence, one that
/// matches all four is strong; BM25's rank alone does not say which, since it only orders
/// the hits among themselves.
pub fn coverage(terms: &[String], text: &str) -> f64 {
    if terms.is_empty() {
        return 0.0;
    }
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let found = terms
        .iter()
        .filter(|t| words.iter().any(|w| same_word(t, w)))
        .count();
    found as f64 / terms.len() as f64
}

/// At most `max` bytes of `s`, cut at a char boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn same_word(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short == long || (short.chars().count() >= 4 && long.starts_with(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn terms_drop_stopwords_and_repeats() {
        assert_eq!(
            terms("What is my girlfriend's profession? My GIRLFRIEND"),
            strings(&["girlfriend", "profession"])
        );
        assert_eq!(
            terms("What caused UNKNOWN_TOPIC_OR_PARTITION?"),
            strings(&["caused", "unknown", "topic", "partition"])
        );
        assert_eq!(terms("B-RL 4821"), strings(&["b", "rl", "4821"]));
    }

    #[test]
    fn a_query_of_stopwords_only_keeps_them() {
        assert_eq!(terms("who is it?"), strings(&["who", "is", "it"]));
        assert!(terms("?! ...").is_empty());
    }

    #[test]
    fn the_fts_query_quotes_every_term() {
        assert_eq!(
            fts_query(&terms("disk OR \"x\" NEAR(y)")).unwrap(),
            "\"disk\" OR \"x\" OR \"near\" OR \"y\""
        );
        assert!(fts_query(&[]).is_none());
    }

    #[test]
    fn coverage_counts_the_terms_a_text_contains() {
        let t = terms("boss like instead of meetings");
        assert_eq!(t, strings(&["boss", "like", "instead", "meetings"]));
        assert_eq!(
            coverage(&t, "My boss prefers written updates to meetings."),
            0.5
        );
        assert_eq!(coverage(&t, "nothing here"), 0.0);
        assert_eq!(coverage(&strings(&["pet"]), "petrol"), 0.0);
        assert_eq!(coverage(&t, "BOSS likes meeting instead"), 1.0);
        assert_eq!(coverage(&[], "anything"), 0.0);
    }
}
