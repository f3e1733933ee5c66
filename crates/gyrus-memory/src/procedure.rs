//! Procedural memory: learned skills.
//!
//! When a multi-step task succeeds in the agent loop, its tool-call [`Trace`] is turned into
//! a parameterised [`Procedure`] keyed by its intent ([`learn`]). Next time a request matches
//! the intent template ([`bind`]), the router can [`replay`] the procedure at the reactive
//! tier, with no model call, validating each step's result and stopping at the first
//! failure so the caller can escalate to a model. So repeated work moves down the tiers.
//!
//! A step's `args` is a JSON template. Its string leaves may hold placeholders:
//!
//! - `{{p0}}`, `{{p1}}`…: a parameter, bound from the request;
//! - `{{steps.N.output/<json pointer>}}`: a value of an earlier step's output, `N` counting
//!   from 0 (`{{steps.N.output}}` is the whole output; the dotted form
//!   `{{steps.N.output.a.b}}` is read as the pointer `/a/b`).
//!
//! A string leaf that is exactly one placeholder takes the referenced value with its JSON
//! type (a number stays a number); a placeholder within a longer string is stringified. A
//! `{{…}}` that names neither a declared parameter nor `steps.` is literal text.
//!
//! Everything here is pure: [`replay`] runs tools only through the caller's [`StepRunner`].

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Item, Kind, MAX_METADATA_BYTES, NewItem};

/// The most top-level keys a step's [`Expect::OutputHas`] lists.
pub const MAX_EXPECTED_KEYS: usize = 8;

/// The tag every procedure item carries.
pub const PROCEDURE_TAG: &str = "procedure";

/// Words never made into parameters: they carry the request's shape, not its values.
const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "with", "from", "into", "onto", "that", "this", "then", "than", "all",
    "any", "are", "was", "were", "its", "our", "you", "your", "his", "her", "their", "them",
    "what", "which", "who", "how", "why", "when", "where", "please", "can", "could", "would",
    "should", "will", "not", "but", "out", "about", "over", "under", "each", "every", "some",
];

/// How many output leaves one search for a step reference looks at, at most.
const LEAF_BUDGET: usize = 10_000;
/// How deep into an output a step reference looks, at most.
const MAX_DEPTH: usize = 32;

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

/// One tool call of a recorded task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TraceStep {
    /// The tool called, e.g. `fs.read`.
    pub tool: String,
    /// The arguments it was called with.
    pub args: Value,
    /// What it returned.
    pub output: Value,
    /// Whether the call succeeded.
    pub ok: bool,
}

/// A recorded multi-step task: the request and the tool calls that answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Trace {
    /// The request text.
    pub intent: String,
    /// The tool calls, in order.
    pub steps: Vec<TraceStep>,
    /// Whether the task as a whole succeeded.
    pub succeeded: bool,
}

/// A learned skill: a parameterised tool-call trace keyed by an intent template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Procedure {
    /// The request template, with `{{p0}}`… where the request's values were, e.g.
    /// `count the lines in {{p0}}`.
    pub intent: String,
    /// The parameters, in the order they first appear in the intent.
    pub params: Vec<Param>,
    /// The steps to replay, in order.
    pub steps: Vec<Step>,
    /// How many times it was replayed.
    #[serde(default)]
    pub uses: u32,
    /// How many of those replays succeeded.
    #[serde(default)]
    pub successes: u32,
}

/// A parameter of a procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Param {
    /// Its name, `p0`, `p1`…
    pub name: String,
    /// The value it had in the learned trace. A numeric example makes the parameter a
    /// number: [`bind`] then only accepts a number for it, and a leaf that is exactly the
    /// placeholder is replayed as a JSON number.
    pub example: String,
}

/// One step of a procedure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    /// The tool to call.
    pub tool: String,
    /// The arguments template (see the module docs for placeholders).
    pub args: Value,
    /// What its result must look like for the replay to go on.
    pub expect: Expect,
}

/// How a replayed step's result is validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The call must succeed.
    Ok,
    /// The call must succeed and return an object with these top-level keys.
    OutputHas(Vec<String>),
}

/// Why a trace cannot become a procedure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LearnError {
    /// The task failed.
    #[error("the task did not succeed; only a successful trace becomes a procedure")]
    NotSucceeded,
    /// Fewer than two steps.
    #[error(
        "the trace has {0} step(s); a procedure needs at least 2 (a single call needs no replay)"
    )]
    TooFewSteps(usize),
    /// A step failed (even if the task recovered).
    #[error(
        "step {index} ({tool}) failed; only a trace whose every step succeeded becomes a procedure"
    )]
    StepFailed {
        /// The failed step, from 0.
        index: usize,
        /// Its tool.
        tool: String,
    },
    /// The intent is blank.
    #[error("the intent is blank; a procedure is keyed by its request text")]
    BlankIntent,
    /// Parameterising would leave no literal word, so the template would match anything.
    #[error(
        "the intent template {0:?} keeps no literal word of 3 or more letters; it would match almost any request"
    )]
    TooGeneric(String),
    /// The procedure would not fit in a memory item's metadata.
    #[error("the procedure is {0} bytes as metadata, more than the {max} a memory item holds", max = MAX_METADATA_BYTES)]
    TooLarge(usize),
}

/// Runs one tool call for [`replay`]: the caller's bridge to the tool broker.
pub trait StepRunner {
    /// Calls `tool` with `args`; `Err` carries why the call failed.
    fn run(&mut self, tool: &str, args: &Value) -> Result<Value, String>;
}

/// How a replay ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replay {
    /// Every step ran and validated.
    Done {
        /// Each step's output, in order.
        outputs: Vec<Value>,
    },
    /// A step could not be instantiated, failed, or returned the wrong shape; the steps
    /// after it did not run.
    Failed {
        /// The failed step, from 0.
        step: usize,
        /// Why, naming the step's tool (and the missing key or reference).
        reason: String,
        /// The outputs of the steps before it (so `outputs.len() == step`).
        outputs: Vec<Value>,
    },
}

impl Procedure {
    /// Counts a replay: one more use, and one more success when it finished.
    pub fn record(&mut self, outcome: &Replay) {
        self.uses = self.uses.saturating_add(1);
        if matches!(outcome, Replay::Done { .. }) {
            self.successes = self.successes.saturating_add(1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Learning
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandKind {
    Quoted,
    Path,
    Number,
    Word,
}

/// A value in the intent that may become a parameter.
#[derive(Debug, Clone)]
struct Cand {
    value: String,
    kind: CandKind,
    /// Byte spans of its occurrences in the intent.
    spans: Vec<(usize, usize)>,
}

/// A piece of a templated string leaf.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Lit(String),
    Cand(usize),
    Ref { step: usize, ptr: String },
}

/// Learns a procedure from a successful trace of at least two steps that all succeeded.
///
/// Values of the intent that also occur in the steps' arguments become parameters: quoted
/// strings, paths (tokens with `/`), numbers, and other tokens of 3 or more characters
/// (not common words) found as a whole word in an argument. An argument equal to a string
/// or number of an earlier step's output becomes a reference to it (a parameter equal to
/// the whole argument wins; empty or one-character strings and the numbers -1, 0 and 1 are
/// too common to be references). Each step expects the top-level keys its recorded output
/// had (those later steps reference first, at most [`MAX_EXPECTED_KEYS`]).
pub fn learn(trace: &Trace) -> Result<Procedure, LearnError> {
    if !trace.succeeded {
        return Err(LearnError::NotSucceeded);
    }
    if trace.steps.len() < 2 {
        return Err(LearnError::TooFewSteps(trace.steps.len()));
    }
    if let Some((index, step)) = trace.steps.iter().enumerate().find(|(_, s)| !s.ok) {
        return Err(LearnError::StepFailed {
            index,
            tool: step.tool.clone(),
        });
    }
    let intent = trace.intent.trim();
    if intent.is_empty() {
        return Err(LearnError::BlankIntent);
    }
    let cands = candidates(intent);
    let mut allowed = vec![true; cands.len()];
    let mut proc = analyse(intent, &trace.steps, &cands, &allowed);
    if !proc.params.is_empty() && !has_literal_word(&proc.intent) {
        // Free words took over the template; keep only the unmistakable values.
        for (a, c) in allowed.iter_mut().zip(&cands) {
            *a = c.kind != CandKind::Word;
        }
        proc = analyse(intent, &trace.steps, &cands, &allowed);
        if !proc.params.is_empty() && !has_literal_word(&proc.intent) {
            return Err(LearnError::TooGeneric(proc.intent));
        }
    }
    let size = serde_json::to_string(&metadata_of(&proc)).map_or(usize::MAX, |s| s.len());
    if size > MAX_METADATA_BYTES {
        return Err(LearnError::TooLarge(size));
    }
    Ok(proc)
}

/// Builds the procedure with the candidates `allowed` marks.
fn analyse(intent: &str, steps: &[TraceStep], cands: &[Cand], allowed: &[bool]) -> Procedure {
    let outputs: Vec<Value> = steps.iter().map(|s| s.output.clone()).collect();

    // Pass 1: which candidates the arguments use.
    let mut used = vec![false; cands.len()];
    for (i, step) in steps.iter().enumerate() {
        let _ = map_leaves(&step.args, &mut |leaf| {
            if let Some(pieces) = leaf_pieces(leaf, cands, allowed, &outputs[..i]) {
                for p in pieces {
                    if let Piece::Cand(c) = p {
                        used[c] = true;
                    }
                }
            }
            Ok(None)
        });
    }

    // Name the used candidates in order of first appearance (cands are in that order).
    let mut names: Vec<Option<String>> = vec![None; cands.len()];
    let mut params = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        if used[i] {
            let name = format!("p{}", params.len());
            names[i] = Some(name.clone());
            params.push(Param {
                name,
                example: c.value.clone(),
            });
        }
    }

    // The intent template.
    let mut spans: Vec<(usize, usize, usize)> = cands
        .iter()
        .enumerate()
        .filter(|(i, _)| used[*i])
        .flat_map(|(i, c)| c.spans.iter().map(move |&(a, b)| (a, b, i)))
        .collect();
    spans.sort_unstable();
    let mut template = String::with_capacity(intent.len());
    let mut at = 0;
    for (a, b, i) in spans {
        template.push_str(&intent[at..a]);
        template.push_str(&placeholder(names[i].as_deref().unwrap_or_default()));
        at = b;
    }
    template.push_str(&intent[at..]);

    // Pass 2: the argument templates, noting which output keys later steps reference.
    let mut referenced: Vec<Vec<String>> = vec![Vec::new(); steps.len()];
    let mut args = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let templated = map_leaves(&step.args, &mut |leaf| {
            let Some(pieces) = leaf_pieces(leaf, cands, allowed, &outputs[..i]) else {
                return Ok(None);
            };
            let mut s = String::new();
            for p in pieces {
                match p {
                    Piece::Lit(l) => s.push_str(&l),
                    Piece::Cand(c) => {
                        s.push_str(&placeholder(names[c].as_deref().unwrap_or_default()))
                    }
                    Piece::Ref { step, ptr } => {
                        if let Some(key) = top_key(&ptr)
                            && !referenced[step].contains(&key)
                        {
                            referenced[step].push(key);
                        }
                        s.push_str(&format!("{{{{steps.{step}.output{ptr}}}}}"));
                    }
                }
            }
            Ok(Some(Value::String(s)))
        })
        .unwrap_or_else(|_| step.args.clone());
        args.push(templated);
    }

    let steps = steps
        .iter()
        .zip(args)
        .enumerate()
        .map(|(i, (step, args))| Step {
            tool: step.tool.clone(),
            args,
            expect: expect_of(&step.output, &referenced[i]),
        })
        .collect();

    Procedure {
        intent: template,
        params,
        steps,
        uses: 0,
        successes: 0,
    }
}

fn placeholder(name: &str) -> String {
    format!("{{{{{name}}}}}")
}

/// The first segment of a JSON pointer, unescaped.
fn top_key(ptr: &str) -> Option<String> {
    let rest = ptr.strip_prefix('/')?;
    let seg = rest.split('/').next().unwrap_or_default();
    Some(seg.replace("~1", "/").replace("~0", "~"))
}

/// What a step expects: the recorded output object's top-level keys, referenced ones first.
fn expect_of(output: &Value, referenced: &[String]) -> Expect {
    let Some(obj) = output.as_object() else {
        return Expect::Ok;
    };
    let mut keys: Vec<String> = referenced
        .iter()
        .filter(|k| obj.contains_key(k.as_str()))
        .cloned()
        .collect();
    for k in obj.keys() {
        if keys.len() >= MAX_EXPECTED_KEYS {
            break;
        }
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys.truncate(MAX_EXPECTED_KEYS);
    if keys.is_empty() {
        Expect::Ok
    } else {
        Expect::OutputHas(keys)
    }
}

/// Whether a template keeps, outside its placeholders, a run of 3 or more letters.
fn has_literal_word(template: &str) -> bool {
    let mut literal = String::new();
    let mut rest = template;
    while let Some(a) = rest.find("{{") {
        literal.push_str(&rest[..a]);
        literal.push(' ');
        match rest[a..].find("}}") {
            Some(b) => rest = &rest[a + b + 2..],
            None => {
                rest = "";
            }
        }
    }
    literal.push_str(rest);
    let mut run = 0;
    for c in literal.chars() {
        if c.is_alphabetic() {
            run += 1;
            if run >= 3 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// The values of the intent that may become parameters, deduplicated, in order of first
/// appearance.
fn candidates(intent: &str) -> Vec<Cand> {
    let chars: Vec<(usize, char)> = intent.char_indices().collect();
    let mut raw: Vec<(usize, usize, CandKind)> = Vec::new();
    let mut consumed: Vec<(usize, usize)> = Vec::new();

    // Quoted strings: a quote at the start of a token, closed by the same quote at the end
    // of one (so apostrophes in "don't" open nothing).
    let mut k = 0;
    while k < chars.len() {
        let (bi, c) = chars[k];
        let opens = matches!(c, '"' | '\'' | '`')
            && (k == 0
                || chars[k - 1].1.is_whitespace()
                || matches!(chars[k - 1].1, '(' | '[' | ':' | '='));
        if opens {
            let close = (k + 1..chars.len()).find(|&m| {
                chars[m].1 == c
                    && (m + 1 == chars.len()
                        || chars[m + 1].1.is_whitespace()
                        || matches!(
                            chars[m + 1].1,
                            '.' | ',' | ';' | ':' | '!' | '?' | ')' | ']'
                        ))
            });
            if let Some(m) = close {
                let start = bi + c.len_utf8();
                let end = chars[m].0;
                let inner = &intent[start..end];
                if !inner.trim().is_empty() && !inner.contains("{{") && !inner.contains("}}") {
                    raw.push((start, end, CandKind::Quoted));
                }
                consumed.push((bi, end + c.len_utf8()));
                k = m + 1;
                continue;
            }
        }
        k += 1;
    }

    // Whitespace-separated tokens outside the quotes, trimmed of punctuation.
    for (mut a, mut b) in token_spans(intent) {
        if consumed.iter().any(|&(x, y)| a < y && x < b) {
            continue;
        }
        let token = &intent[a..b];
        if token.contains("{{") || token.contains("}}") {
            continue;
        }
        while b - a > 1 && intent[a..b].starts_with(['(', '[', '<', '"', '\'', '`']) {
            a += 1;
        }
        while b - a > 1
            && intent[a..b].ends_with(['.', ',', ';', ':', '!', '?', ')', ']', '>', '"', '\'', '`'])
        {
            b -= 1;
        }
        let t = &intent[a..b];
        let kind = if t.contains('/') && t.len() >= 2 {
            CandKind::Path
        } else if is_numeric(t) {
            CandKind::Number
        } else if t.chars().count() >= 3
            && t.chars().any(char::is_alphanumeric)
            && !STOP_WORDS.contains(&t.to_lowercase().as_str())
        {
            CandKind::Word
        } else {
            continue;
        };
        raw.push((a, b, kind));
    }

    raw.sort_unstable_by_key(|&(a, _, _)| a);
    let mut cands: Vec<Cand> = Vec::new();
    for (a, b, kind) in raw {
        let value = &intent[a..b];
        match cands.iter_mut().find(|c| c.value == value) {
            Some(c) => c.spans.push((a, b)),
            None => cands.push(Cand {
                value: value.to_string(),
                kind,
                spans: vec![(a, b)],
            }),
        }
    }
    cands
}

/// Byte spans of the whitespace-separated tokens of `s`.
fn token_spans(s: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(a)) => {
                spans.push((a, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(a) = start {
        spans.push((a, s.len()));
    }
    spans
}

/// Whether `s` is a plain decimal number (`12`, `-3`, `2.5`, `1e6`).
fn is_numeric(s: &str) -> bool {
    !s.is_empty()
        && s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
        && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// `s` as a JSON number, when it is one.
fn to_number(s: &str) -> Option<serde_json::Number> {
    let s = s.trim();
    if !is_numeric(s) {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(i.into());
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(u.into());
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    a == b || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// How a leaf of a step's arguments is templated, or `None` to keep it as it is.
fn leaf_pieces(
    leaf: &Value,
    cands: &[Cand],
    allowed: &[bool],
    earlier: &[Value],
) -> Option<Vec<Piece>> {
    let usable = |i: usize| allowed.get(i).copied().unwrap_or(false);
    match leaf {
        Value::String(s) => {
            if s.is_empty() {
                return None;
            }
            if let Some(i) = (0..cands.len()).find(|&i| usable(i) && cands[i].value == *s) {
                return Some(vec![Piece::Cand(i)]);
            }
            if let Some((step, ptr)) = find_reference(leaf, earlier) {
                return Some(vec![Piece::Ref { step, ptr }]);
            }
            let mut order: Vec<usize> = (0..cands.len()).filter(|&i| usable(i)).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(cands[i].value.len()));
            let mut taken: Vec<(usize, usize, usize)> = Vec::new();
            for i in order {
                let c = &cands[i];
                let bounded = matches!(c.kind, CandKind::Word | CandKind::Number);
                for (a, m) in s.match_indices(c.value.as_str()) {
                    let b = a + m.len();
                    if taken.iter().any(|&(x, y, _)| a < y && x < b) {
                        continue;
                    }
                    if bounded
                        && (s[..a].chars().next_back().is_some_and(is_word_char)
                            || s[b..].chars().next().is_some_and(is_word_char))
                    {
                        continue;
                    }
                    taken.push((a, b, i));
                }
            }
            if taken.is_empty() {
                return None;
            }
            taken.sort_unstable();
            let mut pieces = Vec::new();
            let mut at = 0;
            for (a, b, i) in taken {
                if a > at {
                    pieces.push(Piece::Lit(s[at..a].to_string()));
                }
                pieces.push(Piece::Cand(i));
                at = b;
            }
            if at < s.len() {
                pieces.push(Piece::Lit(s[at..].to_string()));
            }
            Some(pieces)
        }
        Value::Number(n) => {
            let exact = (0..cands.len()).find(|&i| {
                usable(i)
                    && cands[i].kind == CandKind::Number
                    && to_number(&cands[i].value).is_some_and(|c| numbers_equal(&c, n))
            });
            if let Some(i) = exact {
                return Some(vec![Piece::Cand(i)]);
            }
            find_reference(leaf, earlier).map(|(step, ptr)| vec![Piece::Ref { step, ptr }])
        }
        _ => None,
    }
}

/// Whether a value is distinctive enough to be taken for a reference to an output.
fn referable(v: &Value) -> bool {
    match v {
        Value::String(s) => s.chars().count() >= 2 && !s.contains("{{") && !s.contains("}}"),
        Value::Number(n) => !matches!(n.as_f64(), Some(x) if x == 0.0 || x == 1.0 || x == -1.0),
        _ => false,
    }
}

/// The latest earlier output holding a leaf equal to `leaf`, and its JSON pointer.
fn find_reference(leaf: &Value, earlier: &[Value]) -> Option<(usize, String)> {
    if !referable(leaf) {
        return None;
    }
    for (j, out) in earlier.iter().enumerate().rev() {
        let mut ptr = String::new();
        let mut budget = LEAF_BUDGET;
        if find_leaf(out, leaf, &mut ptr, &mut budget, 0) {
            return Some((j, ptr));
        }
    }
    None
}

/// Depth-first search for a leaf equal to `target`; on success `ptr` points at it.
fn find_leaf(
    v: &Value,
    target: &Value,
    ptr: &mut String,
    budget: &mut usize,
    depth: usize,
) -> bool {
    if *budget == 0 || depth > MAX_DEPTH {
        return false;
    }
    *budget -= 1;
    let base = ptr.len();
    match (v, target) {
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => numbers_equal(a, b),
        (Value::Array(items), _) => {
            for (i, x) in items.iter().enumerate() {
                ptr.push('/');
                ptr.push_str(&i.to_string());
                if find_leaf(x, target, ptr, budget, depth + 1) {
                    return true;
                }
                ptr.truncate(base);
            }
            false
        }
        (Value::Object(map), _) => {
            for (k, x) in map {
                if k.contains("{{") || k.contains("}}") {
                    continue;
                }
                ptr.push('/');
                ptr.push_str(&k.replace('~', "~0").replace('/', "~1"));
                if find_leaf(x, target, ptr, budget, depth + 1) {
                    return true;
                }
                ptr.truncate(base);
            }
            false
        }
        _ => false,
    }
}

/// Maps every scalar leaf of `v` through `f` (`None` keeps the leaf).
fn map_leaves(
    v: &Value,
    f: &mut dyn FnMut(&Value) -> Result<Option<Value>, String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| map_leaves(x, f))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, x) in map {
                out.insert(k.clone(), map_leaves(x, f)?);
            }
            Value::Object(out)
        }
        leaf => f(leaf)?.unwrap_or_else(|| leaf.clone()),
    })
}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

/// A piece of a template string.
#[derive(Debug, Clone, PartialEq)]
enum Part<'a> {
    Lit(&'a str),
    Param(&'a str),
    Ref(&'a str),
}

/// Splits a template string into literal text, declared parameters and step references.
fn parse_template<'a>(s: &'a str, params: &[Param]) -> Vec<Part<'a>> {
    let mut parts = Vec::new();
    let mut lit_start = 0;
    let mut at = 0;
    while let Some(a) = s[at..].find("{{").map(|a| at + a) {
        let Some(b) = s[a + 2..].find("}}").map(|b| a + 2 + b) else {
            break;
        };
        let inner = s[a + 2..b].trim();
        let part = if inner.starts_with("steps.") {
            Some(Part::Ref(inner))
        } else if params.iter().any(|p| p.name == inner) {
            Some(Part::Param(inner))
        } else {
            None
        };
        match part {
            Some(p) => {
                if a > lit_start {
                    parts.push(Part::Lit(&s[lit_start..a]));
                }
                parts.push(p);
                at = b + 2;
                lit_start = at;
            }
            None => at = a + 2,
        }
    }
    if lit_start < s.len() {
        parts.push(Part::Lit(&s[lit_start..]));
    }
    parts
}

/// Resolves `steps.N.output[/ptr | .a.b]` against the outputs of the steps run so far.
fn resolve_reference<'v>(inner: &str, outputs: &'v [Value]) -> Result<&'v Value, String> {
    let bad = || format!("the reference {{{{{inner}}}}} is not steps.N.output/<json pointer>");
    let rest = inner.strip_prefix("steps.").ok_or_else(bad)?;
    let (n, rest) = rest.split_once('.').ok_or_else(bad)?;
    let n: usize = n.parse().map_err(|_| bad())?;
    let path = rest.strip_prefix("output").ok_or_else(bad)?;
    let ptr = if path.is_empty() || path.starts_with('/') {
        path.to_string()
    } else if let Some(dotted) = path.strip_prefix('.') {
        dotted
            .split('.')
            .map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1")))
            .collect()
    } else {
        return Err(bad());
    };
    let out = outputs.get(n).ok_or_else(|| {
        format!("the reference {{{{{inner}}}}} names step {n}, which has not run before this one")
    })?;
    out.pointer(&ptr).ok_or_else(|| {
        format!(
            "the reference {{{{{inner}}}}} cannot be resolved: step {n}'s output has no {ptr:?}"
        )
    })
}

/// A JSON value as text within a longer string.
fn stringify(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A step's arguments with its parameters and references substituted.
fn instantiate(
    template: &Value,
    proc: &Procedure,
    bindings: &[(String, String)],
    outputs: &[Value],
) -> Result<Value, String> {
    let bound = |name: &str| -> Result<&str, String> {
        bindings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("no value is bound for the parameter {{{{{name}}}}}"))
    };
    let numeric = |name: &str| {
        proc.params
            .iter()
            .any(|p| p.name == name && is_numeric(p.example.trim()))
    };
    map_leaves(template, &mut |leaf| {
        let Value::String(s) = leaf else {
            return Ok(None);
        };
        let parts = parse_template(s, &proc.params);
        if parts.iter().all(|p| matches!(p, Part::Lit(_))) {
            return Ok(None);
        }
        if let [only] = parts.as_slice() {
            match only {
                Part::Param(name) => {
                    let v = bound(name)?;
                    let typed = if numeric(name) { to_number(v) } else { None };
                    return Ok(Some(match typed {
                        Some(n) => Value::Number(n),
                        None => Value::String(v.to_string()),
                    }));
                }
                Part::Ref(inner) => return Ok(Some(resolve_reference(inner, outputs)?.clone())),
                Part::Lit(_) => {}
            }
        }
        let mut out = String::new();
        for p in parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Param(name) => out.push_str(bound(name)?),
                Part::Ref(inner) => out.push_str(&stringify(resolve_reference(inner, outputs)?)),
            }
        }
        Ok(Some(Value::String(out)))
    })
}

// ---------------------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
enum Seg<'a> {
    Lit(Vec<char>),
    Param(&'a str),
}

/// Collapses runs of whitespace to one space.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    if space && !out.is_empty() {
        out.push(' ');
    }
    out
}

/// Drops trailing sentence punctuation and whitespace.
fn trim_end_punct(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '.' | '?' | '!'))
}

fn chars_eq_ci(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
}

/// Matches `request` against the procedure's intent template.
///
/// The template's literal text must match (ignoring case, runs of whitespace, and
/// trailing `.`, `?` or `!`); each placeholder captures the shortest non-blank text that
/// lets the rest match (one at the end captures to the end). A numeric parameter (see
/// [`Param::example`]) only takes a number; a parameter used twice must capture the same
/// text both times. Returns the bindings, in the order of [`Procedure::params`], or `None`.
pub fn bind(proc: &Procedure, request: &str) -> Option<Vec<(String, String)>> {
    let template = collapse(trim_end_punct(proc.intent.trim()));
    let mut segs: Vec<Seg<'_>> = Vec::new();
    for part in parse_template(&template, &proc.params) {
        match part {
            Part::Lit(l) => segs.push(Seg::Lit(l.chars().collect())),
            Part::Param(name) => segs.push(Seg::Param(
                proc.params
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.name.as_str())?,
            )),
            // A step reference has no place in an intent; such a template matches nothing.
            Part::Ref(_) => return None,
        }
    }
    let request: Vec<char> = collapse(trim_end_punct(request.trim())).chars().collect();
    let names: Vec<&str> = segs
        .iter()
        .filter_map(|s| match s {
            Seg::Param(n) => Some(*n),
            Seg::Lit(_) => None,
        })
        .collect();
    let repeated = names.iter().collect::<HashSet<_>>().len() < names.len();
    let mut matcher = Matcher {
        proc,
        segs: &segs,
        request: &request,
        caps: Vec::new(),
        failed: HashSet::new(),
        memo: !repeated,
    };
    if !matcher.go(0, 0) {
        return None;
    }
    let caps = matcher.caps;
    Some(
        proc.params
            .iter()
            .filter_map(|p| {
                caps.iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(n, v)| (n.to_string(), v.clone()))
            })
            .collect(),
    )
}

struct Matcher<'a> {
    proc: &'a Procedure,
    segs: &'a [Seg<'a>],
    request: &'a [char],
    caps: Vec<(&'a str, String)>,
    /// (segment, position) states known not to match; sound only without repeated names.
    failed: HashSet<(usize, usize)>,
    memo: bool,
}

impl<'a> Matcher<'a> {
    fn go(&mut self, si: usize, pos: usize) -> bool {
        if si == self.segs.len() {
            return pos == self.request.len();
        }
        if self.memo && self.failed.contains(&(si, pos)) {
            return false;
        }
        let segs = self.segs;
        let ok = match &segs[si] {
            Seg::Lit(lit) => {
                let end = pos + lit.len();
                end <= self.request.len()
                    && lit
                        .iter()
                        .zip(&self.request[pos..end])
                        .all(|(&a, &b)| chars_eq_ci(a, b))
                    && self.go(si + 1, end)
            }
            Seg::Param(name) => {
                let name: &'a str = name;
                let last = si + 1 == self.segs.len();
                let mut ok = false;
                let ends: Vec<usize> = if last {
                    vec![self.request.len()]
                } else {
                    (pos + 1..=self.request.len()).collect()
                };
                for end in ends {
                    let text: String = self.request[pos..end].iter().collect();
                    let text = text.trim().to_string();
                    if !self.acceptable(name, &text) {
                        continue;
                    }
                    self.caps.push((name, text));
                    if self.go(si + 1, end) {
                        ok = true;
                        break;
                    }
                    self.caps.pop();
                }
                ok
            }
        };
        if !ok && self.memo {
            self.failed.insert((si, pos));
        }
        ok
    }

    fn acceptable(&self, name: &str, text: &str) -> bool {
        if text.is_empty() {
            return false;
        }
        if let Some((_, earlier)) = self.caps.iter().find(|(n, _)| *n == name) {
            return earlier == text;
        }
        let numeric = self
            .proc
            .params
            .iter()
            .any(|p| p.name == name && is_numeric(p.example.trim()));
        !numeric || is_numeric(text)
    }
}

// ---------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------

/// Checks a step's output against what it expects.
fn validate(expect: &Expect, output: &Value) -> Result<(), String> {
    match expect {
        Expect::Ok => Ok(()),
        Expect::OutputHas(keys) => {
            let Some(obj) = output.as_object() else {
                return Err(format!(
                    "its output is not a JSON object; expected the keys {keys:?}"
                ));
            };
            match keys.iter().find(|k| !obj.contains_key(k.as_str())) {
                Some(k) => Err(format!("its output lacks the expected key {k:?}")),
                None => Ok(()),
            }
        }
    }
}

/// Replays a procedure with `bindings` (from [`bind`]), running each step through
/// `runner`: instantiates its arguments (an unbound parameter or an unresolvable reference
/// fails the step before it runs), runs it, and validates the output against its
/// [`Expect`]. Stops at the first failure; the caller then escalates to a model.
pub fn replay(
    proc: &Procedure,
    bindings: &[(String, String)],
    runner: &mut dyn StepRunner,
) -> Replay {
    let mut outputs: Vec<Value> = Vec::with_capacity(proc.steps.len());
    for (i, step) in proc.steps.iter().enumerate() {
        let args = match instantiate(&step.args, proc, bindings, &outputs) {
            Ok(args) => args,
            Err(why) => {
                return Replay::Failed {
                    step: i,
                    reason: format!("step {i} ({}) was not run: {why}", step.tool),
                    outputs,
                };
            }
        };
        let output = match runner.run(&step.tool, &args) {
            Ok(output) => output,
            Err(why) => {
                return Replay::Failed {
                    step: i,
                    reason: format!("step {i} ({}) failed: {why}", step.tool),
                    outputs,
                };
            }
        };
        if let Err(why) = validate(&step.expect, &output) {
            return Replay::Failed {
                step: i,
                reason: format!(
                    "step {i} ({}) returned an unexpected result: {why}",
                    step.tool
                ),
                outputs,
            };
        }
        outputs.push(output);
    }
    Replay::Done { outputs }
}

// ---------------------------------------------------------------------------------------
// Memory items
// ---------------------------------------------------------------------------------------

fn metadata_of(proc: &Procedure) -> Value {
    // Serialising these plain structs cannot fail (every map key is a string).
    let value = serde_json::to_value(proc).unwrap_or_default();
    serde_json::json!({ "procedure": value })
}

/// The memory item that stores a procedure: procedural, its content the intent template
/// (so it is searchable), its metadata `{"procedure": …}`, tagged `procedure`.
pub fn to_item(proc: &Procedure) -> NewItem {
    let mut item = NewItem::new(Kind::Procedural, proc.intent.clone()).tagged([PROCEDURE_TAG]);
    item.metadata = Some(metadata_of(proc));
    item
}

/// Reads a procedure back from its memory item.
pub fn from_item(item: &Item) -> Result<Procedure, String> {
    if item.kind != Kind::Procedural {
        return Err(format!(
            "item {} is {} memory, not procedural",
            item.id, item.kind
        ));
    }
    let value = item
        .metadata
        .get("procedure")
        .ok_or_else(|| format!("item {} has no \"procedure\" in its metadata", item.id))?;
    serde_json::from_value(value.clone())
        .map_err(|e| format!("item {}: the stored procedure does not parse: {e}", item.id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::Namespace;
    use serde_json::json;

    fn step(tool: &str, args: Value, output: Value) -> TraceStep {
        TraceStep {
            tool: tool.to_string(),
            args,
            output,
            ok: true,
        }
    }

    fn count_lines_trace() -> Trace {
        Trace {
            intent: "count the lines in /home/u/notes.txt".to_string(),
            steps: vec![
                step(
                    "fs.stat",
                    json!({"path": "/home/u/notes.txt"}),
                    json!({"size": 120, "kind": "file"}),
                ),
                step(
                    "fs.read",
                    json!({"path": "/home/u/notes.txt", "max_bytes": 120}),
                    json!({"text": "a\nb\nc\nd\ne\nf\ng\n", "lines": 7}),
                ),
            ],
            succeeded: true,
        }
    }

    /// A scripted stand-in for the tool broker: answers each tool from a table and
    /// records the calls.
    struct Script {
        answers: Vec<(&'static str, Result<Value, String>)>,
        calls: Vec<(String, Value)>,
    }

    impl StepRunner for Script {
        fn run(&mut self, tool: &str, args: &Value) -> Result<Value, String> {
            self.calls.push((tool.to_string(), args.clone()));
            self.answers
                .iter()
                .find(|(t, _)| *t == tool)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| Err(format!("no such tool {tool}")))
        }
    }

    fn script(answers: Vec<(&'static str, Result<Value, String>)>) -> Script {
        Script {
            answers,
            calls: Vec::new(),
        }
    }

    fn binding(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn learns_a_parameterised_procedure_with_a_step_reference() {
        let proc = learn(&count_lines_trace()).unwrap();
        assert_eq!(proc.intent, "count the lines in {{p0}}");
        assert_eq!(
            proc.params,
            [Param {
                name: "p0".into(),
                example: "/home/u/notes.txt".into()
            }]
        );
        assert_eq!(proc.steps.len(), 2);
        assert_eq!(proc.steps[0].tool, "fs.stat");
        assert_eq!(proc.steps[0].args, json!({"path": "{{p0}}"}));
        assert_eq!(
            proc.steps[0].expect,
            Expect::OutputHas(vec!["size".into(), "kind".into()])
        );
        assert_eq!(
            proc.steps[1].args,
            json!({"path": "{{p0}}", "max_bytes": "{{steps.0.output/size}}"})
        );
        let Expect::OutputHas(keys) = &proc.steps[1].expect else {
            panic!("expected keys, got {:?}", proc.steps[1].expect);
        };
        let mut keys = keys.clone();
        keys.sort();
        assert_eq!(keys, ["lines", "text"]);
        assert_eq!((proc.uses, proc.successes), (0, 0));
    }

    #[test]
    fn binds_requests_that_fit_the_template() {
        let proc = learn(&count_lines_trace()).unwrap();
        assert_eq!(
            bind(&proc, "count the lines in /tmp/other.md"),
            Some(vec![binding("p0", "/tmp/other.md")])
        );
        assert_eq!(
            bind(&proc, "  Count the   LINES in /tmp/My Notes.md? "),
            Some(vec![binding("p0", "/tmp/My Notes.md")])
        );
        assert_eq!(bind(&proc, "delete /tmp/x"), None);
        assert_eq!(bind(&proc, "count the lines in"), None);
        assert_eq!(bind(&proc, "count the lines in   "), None);
        assert_eq!(bind(&proc, "please count the lines in /tmp/x"), None);
    }

    #[test]
    fn binds_non_greedily_between_literals() {
        let proc = Procedure {
            intent: "copy {{p0}} to {{p1}}".into(),
            params: vec![
                Param {
                    name: "p0".into(),
                    example: "/a".into(),
                },
                Param {
                    name: "p1".into(),
                    example: "/b".into(),
                },
            ],
            steps: vec![],
            uses: 0,
            successes: 0,
        };
        assert_eq!(
            bind(&proc, "copy /x to /y to /z"),
            Some(vec![binding("p0", "/x"), binding("p1", "/y to /z")])
        );
        assert_eq!(bind(&proc, "copy  to /y"), None);
        assert_eq!(bind(&proc, "move /x to /y"), None);
    }

    #[test]
    fn replays_with_substituted_and_typed_arguments() {
        let mut proc = learn(&count_lines_trace()).unwrap();
        let bindings = bind(&proc, "count the lines in /tmp/other.md").unwrap();
        let mut runner = script(vec![
            ("fs.stat", Ok(json!({"size": 42, "kind": "file"}))),
            ("fs.read", Ok(json!({"text": "x\ny\nz\n", "lines": 3}))),
        ]);
        let outcome = replay(&proc, &bindings, &mut runner);
        assert_eq!(
            outcome,
            Replay::Done {
                outputs: vec![
                    json!({"size": 42, "kind": "file"}),
                    json!({"text": "x\ny\nz\n", "lines": 3}),
                ]
            }
        );
        assert_eq!(runner.calls.len(), 2);
        assert_eq!(
            runner.calls[0],
            ("fs.stat".into(), json!({"path": "/tmp/other.md"}))
        );
        assert_eq!(
            runner.calls[1],
            (
                "fs.read".into(),
                json!({"path": "/tmp/other.md", "max_bytes": 42})
            )
        );
        assert!(
            runner.calls[1].1["max_bytes"].is_u64(),
            "the reference keeps its number type"
        );
        proc.record(&outcome);
        assert_eq!((proc.uses, proc.successes), (1, 1));
    }

    #[test]
    fn references_within_longer_strings_are_stringified() {
        let proc = Procedure {
            intent: "report {{p0}}".into(),
            params: vec![Param {
                name: "p0".into(),
                example: "/a".into(),
            }],
            steps: vec![
                Step {
                    tool: "fs.stat".into(),
                    args: json!({"path": "{{p0}}"}),
                    expect: Expect::Ok,
                },
                Step {
                    tool: "chat.say".into(),
                    args: json!({
                        "text": "{{p0}} is {{steps.0.output/size}} bytes ({{steps.0.output.kind}})",
                        "all": "{{steps.0.output}}",
                        "literal": "{{not_a_param}}",
                        "list": ["{{ steps.0.output/size }}", true, 7]
                    }),
                    expect: Expect::Ok,
                },
            ],
            uses: 0,
            successes: 0,
        };
        let mut runner = script(vec![
            ("fs.stat", Ok(json!({"size": 9, "kind": "file"}))),
            ("chat.say", Ok(json!(null))),
        ]);
        let outcome = replay(&proc, &[binding("p0", "/x")], &mut runner);
        assert!(matches!(outcome, Replay::Done { .. }), "{outcome:?}");
        assert_eq!(
            runner.calls[1].1,
            json!({
                "text": "/x is 9 bytes (file)",
                "all": {"size": 9, "kind": "file"},
                "literal": "{{not_a_param}}",
                "list": [9, true, 7]
            })
        );
    }

    #[test]
    fn a_missing_expected_key_fails_that_step() {
        let mut proc = learn(&count_lines_trace()).unwrap();
        let bindings = vec![binding("p0", "/tmp/other.md")];
        let mut runner = script(vec![
            ("fs.stat", Ok(json!({"size": 42, "kind": "file"}))),
            ("fs.read", Ok(json!({"text": "x"}))),
        ]);
        let outcome = replay(&proc, &bindings, &mut runner);
        let Replay::Failed {
            step,
            reason,
            outputs,
        } = &outcome
        else {
            panic!("expected a failure, got {outcome:?}");
        };
        assert_eq!(*step, 1);
        assert!(reason.contains("\"lines\""), "{reason}");
        assert!(reason.contains("fs.read"), "{reason}");
        assert_eq!(outputs, &[json!({"size": 42, "kind": "file"})]);
        proc.record(&outcome);
        assert_eq!((proc.uses, proc.successes), (1, 0));

        // A tool error stops the replay at that step too.
        let mut runner = script(vec![("fs.stat", Err("permission denied".into()))]);
        let Replay::Failed {
            step,
            reason,
            outputs,
        } = replay(&proc, &bindings, &mut runner)
        else {
            panic!("expected a failure");
        };
        assert_eq!((step, outputs.len(), runner.calls.len()), (0, 0, 1));
        assert!(reason.contains("permission denied"), "{reason}");

        // An output that is not an object fails an OutputHas step.
        let mut runner = script(vec![("fs.stat", Ok(json!("file")))]);
        let Replay::Failed { step, .. } = replay(&proc, &bindings, &mut runner) else {
            panic!("expected a failure");
        };
        assert_eq!(step, 0);
    }

    #[test]
    fn an_unresolved_reference_fails_before_running() {
        let mut proc = learn(&count_lines_trace()).unwrap();
        // The recorded output had no such key, so it is not expected; the reference fails.
        proc.steps[0].expect = Expect::Ok;
        proc.steps[1].args["max_bytes"] = json!("{{steps.0.output/size}}");
        let bindings = vec![binding("p0", "/tmp/other.md")];
        let mut runner = script(vec![
            ("fs.stat", Ok(json!({"kind": "file"}))),
            ("fs.read", Ok(json!({"text": "x", "lines": 1}))),
        ]);
        let Replay::Failed {
            step,
            reason,
            outputs,
        } = replay(&proc, &bindings, &mut runner)
        else {
            panic!("expected a failure");
        };
        assert_eq!(step, 1);
        assert!(reason.contains("/size"), "{reason}");
        assert_eq!(outputs.len(), 1);
        assert_eq!(runner.calls.len(), 1, "the failing step never ran");

        // A reference to a step that has not run yet.
        proc.steps[1].args["max_bytes"] = json!("{{steps.1.output/size}}");
        let mut runner = script(vec![("fs.stat", Ok(json!({"kind": "file"})))]);
        let Replay::Failed { step, reason, .. } = replay(&proc, &bindings, &mut runner) else {
            panic!("expected a failure");
        };
        assert_eq!(step, 1);
        assert!(reason.contains("has not run"), "{reason}");

        // A parameter without a binding.
        let mut runner = script(vec![]);
        let Replay::Failed { step, reason, .. } = replay(&proc, &[], &mut runner) else {
            panic!("expected a failure");
        };
        assert_eq!(step, 0);
        assert!(reason.contains("{{p0}}"), "{reason}");
        assert!(runner.calls.is_empty());
    }

    #[test]
    fn learn_refuses_unfit_traces() {
        let mut failed = count_lines_trace();
        failed.succeeded = false;
        assert_eq!(learn(&failed), Err(LearnError::NotSucceeded));

        let mut one = count_lines_trace();
        one.steps.truncate(1);
        let err = learn(&one).unwrap_err();
        assert_eq!(err, LearnError::TooFewSteps(1));
        assert!(err.to_string().contains("at least 2"), "{err}");

        let mut bad_step = count_lines_trace();
        bad_step.steps[0].ok = false;
        let err = learn(&bad_step).unwrap_err();
        assert_eq!(
            err,
            LearnError::StepFailed {
                index: 0,
                tool: "fs.stat".into()
            }
        );
        assert!(err.to_string().contains("fs.stat"), "{err}");

        let mut blank = count_lines_trace();
        blank.intent = "   ".into();
        assert_eq!(learn(&blank), Err(LearnError::BlankIntent));

        let mut huge = count_lines_trace();
        huge.steps[1].args["blob"] = json!("x".repeat(MAX_METADATA_BYTES));
        assert!(matches!(learn(&huge), Err(LearnError::TooLarge(_))));
    }

    #[test]
    fn numbers_and_words_become_typed_parameters() {
        let trace = Trace {
            intent: "show the last 20 lines of /var/log/syslog".into(),
            steps: vec![
                step(
                    "fs.stat",
                    json!({"path": "/var/log/syslog"}),
                    json!({"size": 5000, "kind": "file"}),
                ),
                step(
                    "fs.tail",
                    json!({"path": "/var/log/syslog", "lines": 20, "max_bytes": 5000}),
                    json!({"text": "…", "count": 20}),
                ),
            ],
            succeeded: true,
        };
        let proc = learn(&trace).unwrap();
        assert_eq!(proc.intent, "show the last {{p0}} lines of {{p1}}");
        assert_eq!(proc.params[0].example, "20");
        assert_eq!(
            proc.steps[1].args,
            json!({"path": "{{p1}}", "lines": "{{p0}}", "max_bytes": "{{steps.0.output/size}}"})
        );
        assert_eq!(bind(&proc, "show the last five lines of /x"), None);
        let bindings = bind(&proc, "Show the last 5 lines of /tmp/app.log.").unwrap();
        assert_eq!(
            bindings,
            [binding("p0", "5"), binding("p1", "/tmp/app.log")]
        );
        let mut runner = script(vec![
            ("fs.stat", Ok(json!({"size": 77, "kind": "file"}))),
            ("fs.tail", Ok(json!({"text": "x", "count": 5}))),
        ]);
        assert!(matches!(
            replay(&proc, &bindings, &mut runner),
            Replay::Done { .. }
        ));
        assert_eq!(
            runner.calls[1].1,
            json!({"path": "/tmp/app.log", "lines": 5, "max_bytes": 77})
        );

        // A plain word found verbatim in the arguments; common words never are.
        let trace = Trace {
            intent: "what is the weather in Paris".into(),
            steps: vec![
                step(
                    "geo.lookup",
                    json!({"city": "Paris"}),
                    json!({"lat": 48.85, "lon": 2.35}),
                ),
                step(
                    "weather.now",
                    json!({"lat": 48.85, "lon": 2.35, "note": "the"}),
                    json!({"temp_c": 18}),
                ),
            ],
            succeeded: true,
        };
        let proc = learn(&trace).unwrap();
        assert_eq!(proc.intent, "what is the weather in {{p0}}");
        assert_eq!(
            proc.steps[1].args,
            json!({"lat": "{{steps.0.output/lat}}", "lon": "{{steps.0.output/lon}}", "note": "the"})
        );
        assert_eq!(
            bind(&proc, "What is the weather in New York?"),
            Some(vec![binding("p0", "New York")])
        );
    }

    #[test]
    fn quoted_strings_and_whole_output_values() {
        let trace = Trace {
            intent: "read the newest file in /logs matching \"error 42\"".into(),
            steps: vec![
                step(
                    "fs.list",
                    json!({"dir": "/logs"}),
                    json!({"newest": "/logs/b.txt", "count": 2}),
                ),
                step(
                    "fs.grep",
                    json!({"path": "/logs/b.txt", "pattern": "error 42", "label": "in /logs: error 42"}),
                    json!({"matches": []}),
                ),
            ],
            succeeded: true,
        };
        let proc = learn(&trace).unwrap();
        assert_eq!(
            proc.intent,
            "read the newest file in {{p0}} matching \"{{p1}}\""
        );
        assert_eq!(proc.params[1].example, "error 42");
        // The whole path equals an earlier output, so it is a reference, not "{{p0}}/b.txt".
        assert_eq!(
            proc.steps[1].args,
            json!({
                "path": "{{steps.0.output/newest}}",
                "pattern": "{{p1}}",
                "label": "in {{p0}}: {{p1}}"
            })
        );
        assert_eq!(
            bind(&proc, "read the newest file in /var matching \"disk full\""),
            Some(vec![binding("p0", "/var"), binding("p1", "disk full")])
        );
    }

    #[test]
    fn refuses_a_template_that_would_match_anything() {
        let trace = Trace {
            intent: "go /a/b".into(),
            steps: vec![
                step("fs.stat", json!({"path": "/a/b"}), json!({"size": 3})),
                step("fs.read", json!({"path": "/a/b"}), json!({"text": "abc"})),
            ],
            succeeded: true,
        };
        assert!(matches!(learn(&trace), Err(LearnError::TooGeneric(_))));
    }

    #[test]
    fn round_trips_through_a_memory_item() {
        let mut proc = learn(&count_lines_trace()).unwrap();
        proc.uses = 3;
        proc.successes = 2;
        let new = to_item(&proc);
        assert_eq!(new.kind, Kind::Procedural);
        assert_eq!(new.content, "count the lines in {{p0}}");
        assert_eq!(new.tags, ["procedure"]);
        assert_eq!(new.check().unwrap(), ["procedure"]);
        let item = Item {
            id: "mem_0000000000000001".into(),
            namespace: Namespace::owner(),
            kind: new.kind,
            content: new.content.clone(),
            tags: new.tags.clone(),
            metadata: new.metadata.clone().unwrap(),
            source: None,
            created_at: 1,
            valid_from: 1,
            valid_to: None,
            supersedes: None,
            ttl_ms: None,
            expires_at: None,
        };
        assert_eq!(from_item(&item).unwrap(), proc);

        let mut wrong = item.clone();
        wrong.kind = Kind::Semantic;
        assert!(from_item(&wrong).unwrap_err().contains("not procedural"));
        let mut empty = item;
        empty.metadata = json!({});
        assert!(from_item(&empty).unwrap_err().contains("procedure"));
    }

    #[test]
    fn serialises_readably_and_has_a_schema() {
        let proc = learn(&count_lines_trace()).unwrap();
        let v = serde_json::to_value(&proc).unwrap();
        assert_eq!(
            v["steps"][0]["expect"],
            json!({"output_has": ["size", "kind"]})
        );
        assert_eq!(serde_json::to_value(Expect::Ok).unwrap(), json!("ok"));
        let schema = serde_json::to_value(schemars::schema_for!(Procedure)).unwrap();
        assert!(schema["properties"]["steps"].is_object(), "{schema}");
    }
}
