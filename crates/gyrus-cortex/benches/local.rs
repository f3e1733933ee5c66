//! The embedded cortex on this machine's CPU: SmolLM2-135M-Instruct (Q4_1 GGUF) load time,
//! prompt processing and greedy generation speed, each the median of three runs.
//!
//! `cargo bench -p gyrus-cortex --bench local` runs it in full; under `cargo test --benches`
//! (no `--bench` argument) it only loads the model and generates a few tokens. The model comes
//! from `cargo xtask fetch-models` or `GYRUS_SMOLLM2_GGUF`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gyrus_cortex::local::{Generation, LocalModel, Sampling};

const RUNS: usize = 3;
const GENERATED: usize = 128;

fn model_path() -> PathBuf {
    match std::env::var_os("GYRUS_SMOLLM2_GGUF") {
        Some(path) => PathBuf::from(path),
        None => Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn rate(tokens: usize, time: Duration) -> f64 {
    tokens as f64 / time.as_secs_f64()
}

fn generate(model: &LocalModel, prompt: &str, sampling: &Sampling) -> Generation {
    model.generate(prompt, sampling, &mut |_| true).unwrap()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let path = model_path();
    assert!(
        path.is_file(),
        "the benchmark model {} is missing: run `cargo xtask fetch-models`",
        path.display()
    );

    if !full {
        let model = LocalModel::load(&path).unwrap();
        let g = generate(&model, "The capital of France is", &Sampling::greedy(4));
        assert!(g.completion_tokens > 0);
        println!(
            "local: smoke run ok ({} tokens); `cargo bench` for numbers",
            g.completion_tokens
        );
        return;
    }

    let mut loads = Vec::new();
    let mut model = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        model = Some(LocalModel::load(&path).unwrap());
        loads.push(started.elapsed().as_secs_f64());
    }
    let model = model.unwrap();
    let info = model.info();
    println!(
        "model: {} ({}, {} parameters, {:.1} MB)",
        info.name.as_deref().unwrap_or("?"),
        info.architecture,
        info.parameters,
        info.file_size as f64 / 1e6
    );
    println!(
        "load (hash, header, weights): {:.0} ms",
        median(loads) * 1e3
    );

    // A prompt of about 128 tokens, processed in one batch; one token is then sampled.
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(13);
    let mut prompt_rates = Vec::new();
    let mut prompt_tokens = 0;
    for _ in 0..RUNS {
        let g = generate(&model, &prompt, &Sampling::greedy(1));
        prompt_tokens = g.prompt_tokens;
        prompt_rates.push(rate(g.prompt_tokens, g.prompt_time));
    }
    println!(
        "prompt processing ({prompt_tokens} tokens): {:.1} tokens/s",
        median(prompt_rates)
    );

    let mut generation_rates = Vec::new();
    let mut generated = 0;
    for _ in 0..RUNS {
        let g = generate(
            &model,
            "Once upon a time, in a small village by the sea,",
            &Sampling::greedy(GENERATED),
        );
        generated = g.completion_tokens;
        generation_rates.push(rate(g.completion_tokens, g.completion_time));
    }
    println!(
        "generation (greedy, {generated} tokens): {:.1} tokens/s",
        median(generation_rates)
    );
}
