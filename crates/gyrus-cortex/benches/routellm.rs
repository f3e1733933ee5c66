//! The tier predictor as a two-tier router, scored on RouteLLM's precomputed outcomes.
//!
//! `cargo bench -p gyrus-cortex --bench routellm` reads GSM8K and the 47 MMLU domains with the
//! correctness of Mixtral-8x7B (the weak, cheap tier 0) and GPT-4-1106 (the strong, expensive
//! tier 1), drops the prompts RouteLLM lists as contaminated, splits each source file 50/50 by
//! the SHA-256 of the prompt (the half with the smaller hashes trains), embeds every prompt with
//! pocket-encoder (cached under `target/routellm-cache/`), trains one predictor on the pooled
//! training half and scores the test half: APGR, CPT(50%), CPT(80%) and the strong calls saved
//! at 95% of the strong model's accuracy, beside the random router (100 seeded orderings) and
//! the oracle. Nothing is tuned on the test half; `fit` picks its kNN knobs by leave-one-out on
//! the training half.
//!
//! The router's score is `1 − P(weak succeeds)`: send a prompt up when the cheap tier is
//! likely to fail. That is the question `Predictor::cheapest` asks (the first tier at or above a
//! threshold), and it does not add the strong model's estimate, whose success rate is high and
//! nearly flat here, so it would mostly add noise to the ranking.
//!
//! Data: `$GYRUS_ROUTELLM_DIR`, else `<workspace>/../shared/data/routellm`.
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs the same pipeline on a small
//! synthetic set instead, which needs no data and no encoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gyrus_cortex::predict::eval::{self, Curve, Summary};
use gyrus_cortex::predict::{Features, Outcome, Predictor, TEXT_FEATURE_NAMES};
use sha2::{Digest, Sha256};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const WEAK: &str = "mistralai/Mixtral-8x7B-Instruct-v0.1";
const STRONG: &str = "gpt-4-1106-preview";
/// Bump when the prompt text fed to the encoder changes.
const CACHE_VERSION: &str = "routellm-embeddings-v1";
const RANDOM_RUNS: u64 = 100;

/// One prompt with both models' outcomes.
struct Example {
    dataset: &'static str,
    source: String,
    prompt: String,
    weak: bool,
    strong: bool,
    hash: [u8; 32],
    train: bool,
    embedding: Vec<f32>,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let outcome = if full { full_run() } else { smoke() };
    if let Err(error) = outcome {
        eprintln!("routellm: {error}");
        std::process::exit(1);
    }
}

fn full_run() -> Result<()> {
    let dir = data_dir();
    if !dir.join("README.md").is_file() {
        return Err(format!(
            "RouteLLM data not found at {} (set GYRUS_ROUTELLM_DIR to the folder holding gsm8k/ and mmlu/)",
            dir.display()
        )
        .into());
    }
    let mut examples = load(&dir)?;
    split(&mut examples);
    embed(&mut examples)?;
    evaluate(&examples)
}

fn data_dir() -> PathBuf {
    match std::env::var_os("GYRUS_ROUTELLM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace().join("../shared/data/routellm"),
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn load(dir: &Path) -> Result<Vec<Example>> {
    let mut examples = Vec::new();
    let mut files = vec![(
        "GSM8K",
        dir.join("gsm8k/gsm8k_responses.csv"),
        dir.join("gsm8k/contaminated_prompts.jsonl"),
    )];
    let mut domains: Vec<PathBuf> = std::fs::read_dir(dir.join("mmlu"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "csv"))
        .collect();
    domains.sort();
    for domain in domains {
        files.push(("MMLU", domain, dir.join("mmlu/contaminated_prompts.jsonl")));
    }
    let mut dropped = 0;
    for (dataset, csv_path, contaminated_path) in files {
        let contaminated = contaminated(&contaminated_path)?;
        let source = csv_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut reader = csv::Reader::from_path(&csv_path)
            .map_err(|e| format!("{}: {e}", csv_path.display()))?;
        let headers = reader.headers()?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("{}: no column {name:?}", csv_path.display()))
        };
        let (prompt_at, weak_at, strong_at) = (column("prompt")?, column(WEAK)?, column(STRONG)?);
        for record in reader.records() {
            let record = record?;
            let prompt = record.get(prompt_at).unwrap_or_default().to_owned();
            if contaminated.contains(prompt.trim()) {
                dropped += 1;
                continue;
            }
            let flag = |at: usize| match record.get(at) {
                Some("True") => Ok(true),
                Some("False") => Ok(false),
                other => Err(format!("{}: bad correctness {other:?}", csv_path.display())),
            };
            examples.push(Example {
                dataset,
                source: source.clone(),
                hash: Sha256::digest(prompt.as_bytes()).into(),
                weak: flag(weak_at)?,
                strong: flag(strong_at)?,
                prompt,
                train: false,
                embedding: Vec::new(),
            });
        }
    }
    println!(
        "loaded {} prompts from {} ({dropped} contaminated dropped)",
        examples.len(),
        dir.display()
    );
    Ok(examples)
}

fn contaminated(path: &Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut prompts = HashSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)?;
        if let Some(prompt) = value.get("eval_prompt").and_then(|p| p.as_str()) {
            prompts.insert(prompt.trim().to_owned());
        }
    }
    Ok(prompts)
}

/// Within each source file (GSM8K, each MMLU domain), the half with the smaller prompt hashes
/// trains and the rest tests: deterministic, and stratified by domain.
fn split(examples: &mut [Example]) {
    let mut by_source: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, example) in examples.iter().enumerate() {
        by_source.entry(example.source.clone()).or_default().push(i);
    }
    for indices in by_source.values_mut() {
        indices.sort_by_key(|&i| examples[i].hash);
        let half = indices.len() / 2;
        for &i in &indices[..half] {
            examples[i].train = true;
        }
    }
}

/// Embeds every prompt, reading and appending to a cache keyed by the encoder's identity and
/// the prompt's hash.
fn embed(examples: &mut [Example]) -> Result<()> {
    let info = pocket_encoder::model_info();
    let version = format!("{CACHE_VERSION}|{}|{}", info.id, info.revision);
    let version_hash = hex(&Sha256::digest(version.as_bytes())[..8]);
    let cache_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from)
        .join("routellm-cache");
    std::fs::create_dir_all(&cache_dir)?;
    let cache_path = cache_dir.join(format!("embeddings-{version_hash}.bin"));
    let dimension = info.dimensions;
    let record = 32 + 4 * dimension;
    let mut cache: HashMap<[u8; 32], Vec<f32>> = HashMap::new();
    if let Ok(mut file) = std::fs::File::open(&cache_path) {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // A torn last record (an interrupted run) is ignored.
        for chunk in bytes.chunks_exact(record) {
            let key: [u8; 32] = chunk[..32].try_into()?;
            let vector = chunk[32..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            cache.insert(key, vector);
        }
    }
    let mut missing: Vec<(usize, [u8; 32])> = Vec::new();
    let mut seen = HashSet::new();
    for (i, example) in examples.iter().enumerate() {
        if !cache.contains_key(&example.hash) && seen.insert(example.hash) {
            missing.push((i, example.hash));
        }
    }
    eprintln!(
        "embeddings: {} cached in {}, {} to compute",
        cache.len(),
        cache_path.display(),
        missing.len()
    );
    if !missing.is_empty() {
        let encoder = pocket_encoder::Encoder::new()?;
        let file = Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&cache_path)?,
        );
        let done = AtomicUsize::new(0);
        let computed = Mutex::new(Vec::new());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let started = Instant::now();
        let per_thread = missing.len().div_ceil(threads);
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = missing
                .chunks(per_thread)
                .map(|share| {
                    let (encoder, examples, file, done, computed) =
                        (encoder.clone(), &*examples, &file, &done, &computed);
                    let total = missing.len();
                    scope.spawn(move || -> std::result::Result<(), String> {
                        for batch in share.chunks(16) {
                            let texts: Vec<&str> = batch
                                .iter()
                                .map(|(i, _)| encoder_text(&examples[*i].prompt))
                                .collect();
                            let vectors = encoder.embed(&texts).map_err(|e| e.to_string())?;
                            let mut bytes = Vec::with_capacity(batch.len() * record);
                            for ((_, key), vector) in batch.iter().zip(&vectors) {
                                bytes.extend_from_slice(key);
                                for x in vector {
                                    bytes.extend_from_slice(&x.to_le_bytes());
                                }
                            }
                            file.lock()
                                .map_err(|e| e.to_string())?
                                .write_all(&bytes)
                                .map_err(|e| e.to_string())?;
                            computed
                                .lock()
                                .map_err(|e| e.to_string())?
                                .extend(batch.iter().map(|b| b.1).zip(vectors));
                            let now = done.fetch_add(batch.len(), Ordering::Relaxed) + batch.len();
                            let rate = now as f64 / started.elapsed().as_secs_f64().max(1e-3);
                            eprint!(
                                "\rembedding {now}/{total} ({rate:.0}/s, {:.0}s left)   ",
                                (total - now) as f64 / rate
                            );
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().map_err(|_| "embedding thread panicked")??;
            }
            Ok(())
        })?;
        eprintln!(
            "\nembedded {} prompts in {:.0}s",
            missing.len(),
            started.elapsed().as_secs_f64()
        );
        cache.extend(computed.into_inner().map_err(|e| e.to_string())?);
    }
    for example in examples.iter_mut() {
        example.embedding = cache
            .get(&example.hash)
            .cloned()
            .ok_or("embedding missing after the embedding pass")?;
    }
    Ok(())
}

/// The encoder reads at most 128 tokens; cutting long prompts first only saves tokenising
/// text it would drop (128 tokens never span 4,000 characters of English).
fn encoder_text(prompt: &str) -> &str {
    let prompt = if prompt.trim().is_empty() {
        "(empty)"
    } else {
        prompt
    };
    match prompt.char_indices().nth(4000) {
        Some((end, _)) => &prompt[..end],
        None => prompt,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Trains on the training half, scores the test half, prints the tables.
fn evaluate(examples: &[Example]) -> Result<()> {
    let (train, test): (Vec<&Example>, Vec<&Example>) = examples.iter().partition(|e| e.train);
    for dataset in ["GSM8K", "MMLU"] {
        let count = |set: &[&Example]| set.iter().filter(|e| e.dataset == dataset).count();
        println!(
            "split {dataset}: {} train / {} test",
            count(&train),
            count(&test)
        );
    }
    let mut predictor = Predictor::new(2);
    for example in &train {
        let outcomes = [
            Outcome {
                tier: 0,
                success: example.weak,
            },
            Outcome {
                tier: 1,
                success: example.strong,
            },
        ];
        predictor.observe(Features::of(&example.prompt, &example.embedding), &outcomes)?;
    }
    let started = Instant::now();
    predictor.fit();
    println!(
        "fit on {} prompts in {:.1}s; kNN knobs per tier: {:?}",
        predictor.len(),
        started.elapsed().as_secs_f64(),
        predictor.knn_params()
    );

    let mut knn_scores = Vec::with_capacity(test.len());
    let mut full_scores = Vec::with_capacity(test.len());
    let mut latencies = Vec::with_capacity(test.len());
    let mut feature_latencies = Vec::with_capacity(test.len());
    for example in &test {
        let started = Instant::now();
        let features = Features::of(&example.prompt, &example.embedding);
        feature_latencies.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let p = predictor.predict(&features)?;
        latencies.push(started.elapsed().as_secs_f64());
        full_scores.push(1.0 - p[0]);
        knn_scores.push(1.0 - predictor.knn(&features)?[0].probability);
    }
    let quantile = |values: &mut Vec<f64>, q: f64| {
        values.sort_by(f64::total_cmp);
        values[((values.len() - 1) as f64 * q).round() as usize] * 1e6
    };
    println!(
        "predict over {} stored prompts ({}-d): p50 {:.0} µs, p99 {:.0} µs; Features::of p50 {:.1} µs, p99 {:.1} µs",
        predictor.len(),
        examples.first().map_or(0, |e| e.embedding.len()),
        quantile(&mut latencies, 0.5),
        quantile(&mut latencies, 0.99),
        quantile(&mut feature_latencies, 0.5),
        quantile(&mut feature_latencies, 0.99),
    );

    println!();
    for dataset in ["GSM8K", "MMLU", "both"] {
        let pick: Vec<usize> = (0..test.len())
            .filter(|&i| dataset == "both" || test[i].dataset == dataset)
            .collect();
        let n_train = train
            .iter()
            .filter(|e| dataset == "both" || e.dataset == dataset)
            .count();
        let weak: Vec<bool> = pick.iter().map(|&i| test[i].weak).collect();
        let strong: Vec<bool> = pick.iter().map(|&i| test[i].strong).collect();
        let select = |scores: &[f64]| pick.iter().map(|&i| scores[i]).collect::<Vec<f64>>();
        let knn = Curve::sweep(&select(&knn_scores), &weak, &strong)?;
        let full = Curve::sweep(&select(&full_scores), &weak, &strong)?;
        let oracle = Curve::sweep(&eval::oracle_scores(&weak, &strong), &weak, &strong)?;
        println!(
            "{dataset}: {n_train} train / {} test; accuracy weak {:.3}, strong {:.3}",
            pick.len(),
            knn.weak_accuracy(),
            knn.strong_accuracy()
        );
        print_table(
            &weak,
            &strong,
            &[
                ("kNN only", &knn),
                ("kNN + features", &full),
                ("oracle", &oracle),
            ],
        )?;
        println!();
    }
    let names: Vec<&str> = ["logit(kNN)", "ln(1+mass)", "nearest"]
        .into_iter()
        .chain(TEXT_FEATURE_NAMES)
        .collect();
    println!("regression inputs: {names:?}");
    Ok(())
}

fn print_table(weak: &[bool], strong: &[bool], routers: &[(&str, &Curve)]) -> Result<()> {
    println!(
        "  {:<16} {:>6} {:>8} {:>8} {:>10}",
        "router", "APGR", "CPT(50%)", "CPT(80%)", "saved@95%"
    );
    let row = |name: &str, summary: Option<Summary>, saved: Option<f64>| {
        let cell = |x: Option<f64>, width: usize| match x {
            Some(x) => format!("{x:>width$.3}"),
            None => format!("{:>width$}", "-"),
        };
        println!(
            "  {name:<16} {} {} {} {}",
            cell(summary.map(|s| s.apgr), 6),
            cell(summary.map(|s| s.cpt50), 8),
            cell(summary.map(|s| s.cpt80), 8),
            cell(saved, 10)
        );
    };
    let random = eval::random_summary(weak, strong, RANDOM_RUNS)?;
    let random_saved = {
        let mut total = 0.0;
        let mut all = true;
        for seed in 0..RANDOM_RUNS {
            let curve = Curve::sweep(&eval::random_scores(weak.len(), seed), weak, strong)?;
            match saved_at_95(&curve) {
                Some(s) => total += s,
                None => all = false,
            }
        }
        all.then(|| total / RANDOM_RUNS as f64)
    };
    row("random (100)", random, random_saved);
    for (name, curve) in routers {
        row(name, curve.summary(), saved_at_95(curve));
    }
    Ok(())
}

/// The share of strong-model calls saved at 95% of the strong model's accuracy (RouteLLM's
/// headline "cost reduction").
fn saved_at_95(curve: &Curve) -> Option<f64> {
    curve
        .share_for_accuracy(0.95 * curve.strong_accuracy())
        .map(|share| 1.0 - share)
}

/// The same pipeline on synthetic prompts: clusters of embeddings where the weak model is
/// mostly right in some clusters and mostly wrong in others.
fn smoke() -> Result<()> {
    println!("smoke run on synthetic prompts (`cargo bench --bench routellm` scores RouteLLM)");
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let dimension = 8;
    let centres: Vec<Vec<f32>> = (0..6)
        .map(|_| (0..dimension).map(|_| (next() - 0.5) as f32).collect())
        .collect();
    let mut examples = Vec::new();
    for i in 0..300 {
        let cluster = i % centres.len();
        let embedding: Vec<f32> = centres[cluster]
            .iter()
            .map(|c| c + 0.2 * (next() - 0.5) as f32)
            .collect();
        let weak_rate = [0.9, 0.2, 0.7, 0.3, 0.8, 0.1][cluster];
        let prompt = format!("synthetic prompt {i} in cluster {cluster}");
        examples.push(Example {
            dataset: if i % 2 == 0 { "GSM8K" } else { "MMLU" },
            source: format!("cluster{cluster}"),
            hash: Sha256::digest(prompt.as_bytes()).into(),
            prompt,
            weak: next() < weak_rate,
            strong: next() < 0.9,
            train: false,
            embedding,
        });
    }
    split(&mut examples);
    evaluate(&examples)
}
