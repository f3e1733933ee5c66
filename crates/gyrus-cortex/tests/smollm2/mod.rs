//! The real SmolLM2-135M-Instruct Q4_1 GGUF the embedded-model tests run on, and a generation
//! helper they share.

use std::path::{Path, PathBuf};

use gyrus_cortex::local::{Generation, LocalModel, Sampling};

/// The file's name in `.cache/models/`.
pub const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where the model is: `GYRUS_SMOLLM2_GGUF`, else `.cache/models/` (`cargo xtask
/// fetch-models`). Panics, saying how to get it, when it is missing.
pub fn path() -> PathBuf {
    let path = match std::env::var_os("GYRUS_SMOLLM2_GGUF") {
        Some(path) => PathBuf::from(path),
        None => Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join(".cache/models")
            .join(FILE),
    };
    assert!(
        path.is_file(),
        "the test model {} is missing: run `cargo xtask fetch-models` (or point GYRUS_SMOLLM2_GGUF at a copy)",
        path.display()
    );
    path
}

/// Generates with `model`, collecting every piece passed to `on_token`, and checks the text
/// is what was streamed.
pub fn run(model: &LocalModel, prompt: &str, sampling: &Sampling) -> (Generation, Vec<String>) {
    let mut pieces = Vec::new();
    let generation = model
        .generate(prompt, sampling, &mut |piece| {
            pieces.push(piece.to_string());
            true
        })
        .unwrap();
    assert_eq!(
        pieces.concat(),
        generation.text,
        "text is what was streamed"
    );
    (generation, pieces)
}
