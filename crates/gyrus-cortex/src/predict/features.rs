//! What the predictor knows about one request: its embedding and a few cheap text features.

/// How many cheap text features [`Features::text`] holds.
pub const TEXT_FEATURES: usize = 8;

/// The names of the cheap text features, in the order of [`Features::text`], for explanations.
pub const TEXT_FEATURE_NAMES: [&str; TEXT_FEATURES] = [
    "log_chars",
    "log_words",
    "lines",
    "code",
    "math",
    "digits",
    "tools",
    "questions",
];

/// One request as the predictor sees it.
///
/// The embedding is stored L2-normalised (so a dot product is the cosine similarity); a
/// non-finite coordinate becomes 0 and an all-zero embedding stays zero (it is then similar to
/// nothing, and the prediction falls back to the base rates). The text features are each in
/// `[0, 1]`, so the regression sees comparable scales.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    embedding: Vec<f32>,
    text: [f64; TEXT_FEATURES],
}

impl Features {
    /// The features of `text` whose sentence embedding is `embedding` (any dimension, the same
    /// for every request a predictor sees).
    pub fn of(text: &str, embedding: &[f32]) -> Self {
        Self {
            embedding: normalised(embedding),
            text: text_features(text),
        }
    }

    /// The unit-length (or zero) embedding.
    pub fn embedding(&self) -> &[f32] {
        &self.embedding
    }

    /// The cheap text features, named by [`TEXT_FEATURE_NAMES`].
    pub fn text(&self) -> &[f64; TEXT_FEATURES] {
        &self.text
    }
}

fn normalised(embedding: &[f32]) -> Vec<f32> {
    let clean: Vec<f32> = embedding
        .iter()
        .map(|&x| if x.is_finite() { x } else { 0.0 })
        .collect();
    let norm = clean
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        clean
            .iter()
            .map(|&x| (f64::from(x) / norm) as f32)
            .collect()
    } else {
        vec![0.0; clean.len()]
    }
}

/// Keyword matching reads at most this many words of a request.
const MAX_SCANNED_WORDS: usize = 2000;

/// Words that suggest source code when they appear as whole words.
const CODE_WORDS: &[&str] = &[
    "fn",
    "def",
    "struct",
    "impl",
    "import",
    "include",
    "return",
    "function",
    "println",
    "printf",
    "console",
    "select",
    "lambda",
    "async",
    "await",
    "const",
    "var",
    "elif",
    "void",
    "int",
    "regex",
    "compile",
    "python",
    "rust",
    "javascript",
    "sql",
    "bash",
];
/// Words that suggest arithmetic or a calculation.
const MATH_WORDS: &[&str] = &[
    "calculate",
    "compute",
    "solve",
    "equation",
    "percent",
    "percentage",
    "sum",
    "product",
    "integral",
    "derivative",
    "probability",
    "average",
    "total",
    "how many",
    "how much",
    "square root",
];
/// Words that ask for an action in the world rather than an answer.
const TOOL_WORDS: &[&str] = &[
    "run",
    "execute",
    "open",
    "send",
    "email",
    "schedule",
    "remind",
    "delete",
    "remove",
    "download",
    "upload",
    "install",
    "browse",
    "click",
    "book",
    "call",
    "create a file",
    "search the web",
    "look up",
    "calendar",
];

fn text_features(text: &str) -> [f64; TEXT_FEATURES] {
    let chars = text.chars().count();
    let words = text.split_whitespace().count();
    let lines = text.lines().count();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let questions = text.matches('?').count();

    // Keywords match whole lower-case words (a phrase, consecutive words); each keyword
    // counts once however often it occurs.
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_SCANNED_WORDS)
        .collect();
    let hits = |list: &[&str]| {
        list.iter()
            .filter(|keyword| {
                let mut parts = keyword.split(' ');
                let first = parts.next().unwrap_or_default();
                (0..tokens.len()).any(|i| {
                    tokens[i] == first
                        && parts
                            .clone()
                            .enumerate()
                            .all(|(j, part)| tokens.get(i + 1 + j) == Some(&part))
                })
            })
            .count() as f64
    };

    let fence = f64::from(u8::from(text.contains("```")));
    let braces = f64::from(u8::from(text.contains('{') && text.contains('}')));
    let symbols = ["=>", "::", "->", "();", "!=", "==", "&&", "||"]
        .iter()
        .filter(|s| text.contains(*s))
        .count() as f64;
    let code = 0.4 * fence
        + 0.2 * braces
        + 0.2 * (symbols / 2.0).min(1.0)
        + 0.2 * (hits(CODE_WORDS) / 3.0).min(1.0);

    let operations = arithmetic(text) as f64;
    let math = 0.5 * (operations / 2.0).min(1.0) + 0.5 * (hits(MATH_WORDS) / 2.0).min(1.0);

    let ratio = |count: usize, of: usize| {
        if of == 0 {
            0.0
        } else {
            count as f64 / of as f64
        }
    };
    [
        (chars as f64).ln_1p() / 8.0,
        (words as f64).ln_1p() / 7.0,
        (lines as f64).ln_1p() / 4.0,
        code,
        math,
        (ratio(digits, chars) * 10.0).min(1.0),
        (hits(TOOL_WORDS) / 2.0).min(1.0),
        (questions as f64).ln_1p() / 2.0,
    ]
    .map(|x| x.clamp(0.0, 1.0))
}

/// How many times a digit (or `x`, `y`, `)`) is followed, across optional spaces, by an
/// arithmetic operator and then a digit (or `x`, `y`, `(`): "3 + 4", "2*x", "x^2".
fn arithmetic(text: &str) -> usize {
    let operand = |c: char| c.is_ascii_digit() || matches!(c, 'x' | 'y' | 'n');
    let chars: Vec<char> = text.chars().filter(|c| *c != ' ').collect();
    chars
        .windows(3)
        .filter(|w| {
            (operand(w[0]) || w[0] == ')')
                && matches!(w[1], '+' | '-' | '*' | '/' | '^' | '=' | '×' | '÷')
                && (operand(w[2]) || w[2] == '(')
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(text: &str) -> f64 {
        let f = Features::of(text, &[1.0]);
        f.text()[TEXT_FEATURE_NAMES
            .iter()
            .position(|n| *n == "code")
            .unwrap_or(0)]
    }

    #[test]
    fn code_scores_above_prose() {
        let code = named("```rust\nfn main() { println!(\"hi\"); }\n```");
        let prose = named("Tell me about the history of the Roman empire.");
        assert!(code > 0.7, "code {code}");
        assert!(prose < 0.1, "prose {prose}");
    }

    #[test]
    fn math_tools_and_questions() {
        let f = Features::of("Calculate 3 + 4 * 2, then how much is 10 / 5?", &[]);
        let math = f.text()[4];
        assert!(math > 0.9, "math {math}");
        let g = Features::of("Please send an email and schedule a meeting", &[]);
        assert!(g.text()[6] >= 1.0);
        assert!(g.text()[7] == 0.0);
        assert!(f.text()[7] > 0.0);
    }

    #[test]
    fn degenerate_inputs_are_finite() {
        for text in ["", " ", "????", "\u{0}\u{feff}", &"a".repeat(100_000)] {
            let f = Features::of(text, &[f32::NAN, f32::INFINITY, 0.0]);
            assert!(
                f.text()
                    .iter()
                    .all(|x| x.is_finite() && (0.0..=1.0).contains(x))
            );
            assert_eq!(f.embedding(), &[0.0, 0.0, 0.0]);
        }
        let f = Features::of("x", &[3.0, 4.0]);
        assert!((f.embedding()[0] - 0.6).abs() < 1e-6);
        assert!((f.embedding()[1] - 0.8).abs() < 1e-6);
    }
}
