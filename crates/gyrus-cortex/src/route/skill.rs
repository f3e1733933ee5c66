//! Reactive skills: built-in requests answered by one read-only tool call, no model.
//!
//! A request matches a skill first by cheap rules (word phrases per skill, `*` standing for any
//! one word), then by meaning: the cosine between the request's sentence embedding and each
//! skill's example embeddings, accepted above a threshold and with a margin over the next
//! skill. A request that asks for an action beyond reading ("delete", "free up", "kill",
//! "install") never matches: these skills only look.

use serde::Serialize;

use super::RouteError;

/// The read-only tools the built-in skills call (gyrus-tools' names). The daemon formats each
/// skill's answer from the tool's output by the skill's id.
pub mod tools {
    /// CPU, memory, disks, load, uptime, host: the disk, memory, uptime and status skills.
    pub const HEALTH: &str = "sys.health";
    /// The running processes.
    pub const PROCESSES: &str = "process.list";
    /// The most recent audit entries.
    pub const AUDIT: &str = "sec.audit";
    /// The grants in force.
    pub const GRANTS: &str = "sec.grants";
}

/// A built-in request answered by calling one read-only tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skill {
    /// Short name, shown in decisions (`disk`).
    pub id: &'static str,
    /// What it answers.
    pub description: &'static str,
    /// Requests it answers, as people phrase them; their embeddings are what meaning-based
    /// matching compares against.
    pub examples: &'static [&'static str],
    /// Word phrases that match it outright (lower case, `*` for any one word).
    pub rules: &'static [&'static str],
    /// The tool it calls.
    pub tool: &'static str,
    /// The tool's arguments.
    pub args: serde_json::Value,
}

/// How a request matched its skill.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// A rule phrase of the skill appears in the request.
    Rule(&'static str),
    /// The request's embedding is close to one of the skill's examples.
    Embedding {
        /// The best cosine over the skill's examples.
        score: f32,
        /// How far it is ahead of the best other skill.
        margin: f32,
    },
}

/// A request matched to a skill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkillMatch {
    /// The skill.
    pub skill: Skill,
    /// Why.
    pub by: MatchedBy,
}

impl std::fmt::Display for SkillMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.by {
            MatchedBy::Rule(rule) => write!(f, "reactive skill {} (rule {rule:?})", self.skill.id),
            MatchedBy::Embedding { score, margin } => write!(
                f,
                "reactive skill {} (similarity {score:.2}, {margin:.2} ahead of the next skill)",
                self.skill.id
            ),
        }
    }
}

/// The built-in skills.
pub fn builtin() -> Vec<Skill> {
    let none = || serde_json::Value::Object(serde_json::Map::new());
    vec![
        Skill {
            id: "disk",
            description: "free and used disk space",
            examples: &[
                "how much disk space is free",
                "how much free space is left on my drive",
                "is my disk full",
                "how much storage do I have left",
                "show disk usage",
            ],
            rules: &[
                "disk space",
                "free space",
                "storage left",
                "df",
                "disk usage",
                "disk full",
                "drive space",
                "how full is * drive",
                "how full is * disk",
            ],
            tool: tools::HEALTH,
            args: none(),
        },
        Skill {
            id: "memory",
            description: "memory (RAM) and swap in use",
            examples: &[
                "how much RAM is used",
                "how much memory is free",
                "what is using my memory",
                "show memory usage",
                "how much swap is in use",
            ],
            rules: &[
                "ram",
                "memory usage",
                "memory use",
                "memory used",
                "free memory",
                "swap usage",
                "how much memory",
            ],
            tool: tools::HEALTH,
            args: none(),
        },
        Skill {
            id: "processes",
            description: "the running processes",
            examples: &[
                "which processes are running",
                "what programs are running",
                "what is using the most cpu",
                "list the top processes",
            ],
            rules: &[
                "running processes",
                "list processes",
                "process list",
                "top processes",
                "which processes",
                "what processes",
                "cpu usage",
                "ps",
            ],
            tool: tools::PROCESSES,
            args: none(),
        },
        Skill {
            id: "uptime",
            description: "how long the host has been up",
            examples: &[
                "what's the uptime",
                "how long has the machine been running",
                "when did the system last boot",
            ],
            rules: &["uptime", "last boot", "since boot", "been up"],
            tool: tools::HEALTH,
            args: none(),
        },
        Skill {
            id: "audit",
            description: "the most recent audit events",
            examples: &[
                "show me recent audit events",
                "what happened recently",
                "show the latest entries of the audit log",
                "what did the agents do today",
            ],
            rules: &[
                "audit events",
                "audit log",
                "audit trail",
                "audit tail",
                "recent events",
                "latest events",
            ],
            tool: tools::AUDIT,
            args: serde_json::json!({ "limit": 20 }),
        },
        Skill {
            id: "grants",
            description: "the grants in force",
            examples: &[
                "which grants are active",
                "what permissions have I granted",
                "list my grants",
            ],
            rules: &[
                "my grants",
                "list grants",
                "active grants",
                "which grants",
                "what grants",
                "show grants",
            ],
            tool: tools::GRANTS,
            args: none(),
        },
        Skill {
            id: "status",
            description: "the daemon's own status",
            examples: &[
                "what is the system status",
                "is gyrus healthy",
                "show the status of gyrus",
            ],
            rules: &[
                "system status",
                "gyrus status",
                "daemon status",
                "status of gyrus",
                "is gyrus healthy",
                "is gyrus running",
            ],
            tool: tools::HEALTH,
            args: none(),
        },
    ]
}

/// Words and phrases that ask for an action beyond reading; a request containing one matches
/// no skill. (Built-in skills only read; acting goes through a model and the consent broker.)
const ACTIONS: &[&str] = &[
    "delete",
    "remove",
    "rm",
    "erase",
    "wipe",
    "purge",
    "clean",
    "cleanup",
    "clear",
    "free up",
    "free some",
    "to free",
    "you free",
    "please free",
    "me free",
    "and free",
    "make room",
    "make space",
    "get rid of",
    "empty the",
    "kill",
    "terminate",
    "stop",
    "restart",
    "reboot",
    "shutdown",
    "shut down",
    "start",
    "launch",
    "run",
    "install",
    "uninstall",
    "upgrade",
    "update",
    "format",
    "mount",
    "unmount",
    "move",
    "rename",
    "copy",
    "write",
    "create",
    "change",
    "set",
    "enable",
    "disable",
    "grant",
    "revoke",
    "compress",
    "resize",
    "allocate",
    "increase",
    "reduce",
    "fix",
];

/// The lower-case words of `text`: runs of letters, digits and apostrophes (typographic ones
/// folded to `'`).
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '\u{2019}'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('\u{2019}', "'"))
        .collect()
}

/// Whether the phrase (space-separated words, `*` for any one word) occurs in `words`.
fn contains_phrase(words: &[String], phrase: &str) -> bool {
    // No allocation: this runs for every rule and action phrase on every request.
    let pattern = || phrase.split(' ').filter(|w| !w.is_empty());
    let length = pattern().count();
    if length == 0 || length > words.len() {
        return false;
    }
    words.windows(length).any(|window| {
        window
            .iter()
            .zip(pattern())
            .all(|(word, want)| want == "*" || word == want)
    })
}

/// Whether the request asks for an action beyond reading.
pub fn asks_for_action(text: &str) -> bool {
    is_action(&words(text))
}

/// Whether these words ask for an action: one of [`ACTIONS`], or a leading "free" (an
/// imperative "free disk space" reads like the question "free disk space?"; the model sorts
/// out which).
fn is_action(words: &[String]) -> bool {
    words.first().is_some_and(|w| w == "free")
        || ACTIONS.iter().any(|action| contains_phrase(words, action))
}

/// How meaning-based matching decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SkillThresholds {
    /// The least cosine between the request and a skill example that counts.
    pub score: f32,
    /// How far the best skill must be ahead of the next one.
    pub margin: f32,
}

impl Default for SkillThresholds {
    fn default() -> Self {
        // Calibrated on the bundled MiniLM-L3 encoder (`tests/route.rs`, `calibration`):
        // paraphrases of an example score 0.75 to 0.9 with margins of 0.25 or more; unrelated
        // requests score below 0.35, but a request on a skill's noun in another sense ("memory
        // in the brain") reaches 0.71. A wrong skill answer is worse than a model call, so the
        // bar sits above that.
        Self {
            score: 0.75,
            margin: 0.1,
        }
    }
}

/// The skills with their example embeddings, computed once.
#[derive(Debug, Clone)]
pub struct SkillIndex {
    skills: Vec<Skill>,
    /// Per skill, one unit vector per example (empty: rules only).
    vectors: Vec<Vec<Vec<f32>>>,
    dimension: Option<usize>,
    thresholds: SkillThresholds,
}

impl SkillIndex {
    /// The built-in skills, their examples embedded with `encoder`.
    pub fn new(encoder: &pocket_encoder::Encoder) -> Result<Self, RouteError> {
        Self::embed(builtin(), encoder)
    }

    /// These skills, their examples embedded with `encoder`.
    pub fn embed(
        skills: Vec<Skill>,
        encoder: &pocket_encoder::Encoder,
    ) -> Result<Self, RouteError> {
        let mut vectors = Vec::with_capacity(skills.len());
        for skill in &skills {
            let embedded = if skill.examples.is_empty() {
                Vec::new()
            } else {
                encoder
                    .embed(skill.examples)
                    .map_err(|e| RouteError::Encoder(e.to_string()))?
            };
            vectors.push(embedded);
        }
        Self::from_vectors(skills, vectors)
    }

    /// These skills with given example embeddings: `vectors[i]` holds skill `i`'s, one per
    /// example (or none, for a skill matched by rules only). Vectors are normalised here.
    pub fn from_vectors(
        skills: Vec<Skill>,
        vectors: Vec<Vec<Vec<f32>>>,
    ) -> Result<Self, RouteError> {
        if vectors.len() != skills.len() {
            return Err(RouteError::Skills(format!(
                "{} skills but example embeddings for {}",
                skills.len(),
                vectors.len()
            )));
        }
        let mut dimension = None;
        let mut normalised = Vec::with_capacity(vectors.len());
        for (skill, examples) in skills.iter().zip(vectors) {
            let mut unit = Vec::with_capacity(examples.len());
            for vector in examples {
                match dimension {
                    None => dimension = Some(vector.len()),
                    Some(d) if d != vector.len() => {
                        return Err(RouteError::Skills(format!(
                            "skill {} has a {}-dimensional example embedding, others have {d}",
                            skill.id,
                            vector.len()
                        )));
                    }
                    Some(_) => {}
                }
                unit.push(normalise(&vector));
            }
            normalised.push(unit);
        }
        Ok(Self {
            skills,
            vectors: normalised,
            dimension,
            thresholds: SkillThresholds::default(),
        })
    }

    /// These skills, matched by their rules only.
    pub fn rules_only(skills: Vec<Skill>) -> Self {
        Self {
            vectors: vec![Vec::new(); skills.len()],
            skills,
            dimension: None,
            thresholds: SkillThresholds::default(),
        }
    }

    /// The same index with other thresholds for meaning-based matching.
    pub fn with_thresholds(mut self, thresholds: SkillThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// The skills.
    pub fn skills(&self) -> &[Skill] {
        &self.skills
    }

    /// The thresholds in use.
    pub fn thresholds(&self) -> SkillThresholds {
        self.thresholds
    }

    /// The skill that answers `text`, by rule or else by its `embedding` (when given, of the
    /// same dimension as the examples'); none when the request asks for an action.
    pub fn matches(&self, text: &str, embedding: Option<&[f32]>) -> Option<SkillMatch> {
        let words = words(text);
        if is_action(&words) {
            return None;
        }
        for skill in &self.skills {
            if let Some(rule) = skill.rules.iter().find(|r| contains_phrase(&words, r)) {
                return Some(SkillMatch {
                    skill: skill.clone(),
                    by: MatchedBy::Rule(rule),
                });
            }
        }
        let embedding = embedding?;
        let (best, score, margin) = self.nearest(embedding)?;
        (score >= self.thresholds.score && margin >= self.thresholds.margin).then(|| SkillMatch {
            skill: self.skills[best].clone(),
            by: MatchedBy::Embedding { score, margin },
        })
    }

    /// The skill nearest to `embedding`: its index, its best cosine and its lead over the
    /// next skill (the whole score when there is no other skill with examples).
    pub fn nearest(&self, embedding: &[f32]) -> Option<(usize, f32, f32)> {
        if self.dimension != Some(embedding.len()) {
            return None;
        }
        let query = normalise(embedding);
        let mut best: Option<(usize, f32)> = None;
        let mut second = f32::NEG_INFINITY;
        for (i, examples) in self.vectors.iter().enumerate() {
            let Some(score) = examples
                .iter()
                .map(|v| dot(v, &query))
                .max_by(f32::total_cmp)
            else {
                continue;
            };
            match best {
                Some((_, top)) if score <= top => second = second.max(score),
                _ => {
                    if let Some((_, top)) = best {
                        second = top;
                    }
                    best = Some((i, score));
                }
            }
        }
        let (index, score) = best?;
        let margin = if second.is_finite() {
            score - second
        } else {
            score
        };
        Some((index, score, margin))
    }
}

/// The dot product, in eight independent sums so the compiler can use SIMD lanes (a plain
/// `sum()` is one sequential chain of float additions, which it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sums = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `v` scaled to unit length; non-finite coordinates become 0 and a zero vector stays zero.
fn normalise(v: &[f32]) -> Vec<f32> {
    let clean: Vec<f32> = v
        .iter()
        .map(|&x| if x.is_finite() { x } else { 0.0 })
        .collect();
    let norm = clean.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        clean.iter().map(|x| x / norm).collect()
    } else {
        clean
    }
}
