//! The embedded cortex's `qwen2` path on real weights: SmolLM2-135M-Instruct's GGUF rewritten
//! at test time as a `qwen2` file.
//!
//! No real Qwen2 GGUF can be fetched here, but the two architectures differ little in the
//! file: the same tensor names, the metadata under `qwen2.*` instead of `llama.*`, and biases
//! on the query, key and value projections, which the rewrite adds as zeros. Every other
//! tensor is copied as stored (Q4_1, no requantisation). llama GGUFs store the query and key
//! rows permuted for interleaved rotary embeddings while candle's qwen2 rotates halves, so this
//! model's text is not SmolLM2's and need not be English: these tests check behaviour (what is
//! read from the file, determinism, turn-taking on the shared weights, limits), not content.
//!
//! The source model comes from `cargo xtask fetch-models` (or `GYRUS_SMOLLM2_GGUF`), as for
//! `tests/local.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod smollm2;

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::Path;
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use gyrus_cortex::local::{Finish, Generation, LocalError, LocalModel, Sampling};
use sha2::{Digest, Sha256};

const NAME: &str = "SmolLM2 135M Instruct, as qwen2";

/// The rewritten file as written, and the model loaded from it.
struct Qwen2 {
    model: LocalModel,
    file_sha256: String,
    file_size: u64,
    /// Weights in the source file, and in the biases the rewrite added.
    source_parameters: u64,
    bias_parameters: u64,
}

/// Loaded once: the rewritten file lives in a temporary folder only until it is loaded, since
/// [`LocalModel::load`] reads everything into memory.
fn qwen2() -> &'static Qwen2 {
    static MODEL: OnceLock<Qwen2> = OnceLock::new();
    MODEL.get_or_init(|| {
        let source = smollm2::path();
        let rewritten = qwen2_from_llama(&source);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smollm2-as-qwen2.gguf");
        std::fs::write(&path, &rewritten.bytes).unwrap();
        let model =
            LocalModel::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        Qwen2 {
            model,
            file_sha256: Sha256::digest(&rewritten.bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            file_size: rewritten.bytes.len() as u64,
            source_parameters: rewritten.source_parameters,
            bias_parameters: rewritten.bias_parameters,
        }
    })
}

fn model() -> &'static LocalModel {
    &qwen2().model
}

struct Rewritten {
    bytes: Vec<u8>,
    source_parameters: u64,
    bias_parameters: u64,
}

/// A `qwen2` GGUF made of a `llama` one: `llama.*` keys renamed `qwen2.*`, the architecture and
/// name changed, every tensor copied as stored, and zero q/k/v biases added (in f32, as Qwen2
/// GGUFs store them), each as long as its projection's output. Keys and tensors are written in
/// sorted order, so the same source gives the same bytes.
fn qwen2_from_llama(source: &Path) -> Rewritten {
    let device = Device::Cpu;
    let mut reader = BufReader::new(File::open(source).unwrap());
    let content = Content::read(&mut reader).unwrap();
    let architecture = content.metadata["general.architecture"]
        .to_string()
        .unwrap();
    assert_eq!(architecture, "llama", "the source is a llama GGUF");

    let mut metadata: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| {
            let value = match key.as_str() {
                "general.architecture" => Value::String("qwen2".to_string()),
                "general.name" => Value::String(NAME.to_string()),
                _ => value.clone(),
            };
            let key = match key.strip_prefix("llama.") {
                Some(rest) => format!("qwen2.{rest}"),
                None => key.clone(),
            };
            (key, value)
        })
        .collect();
    metadata.sort_by(|a, b| a.0.cmp(&b.0));

    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut source_parameters = 0;
    let mut bias_parameters = 0;
    for name in names {
        let tensor = content.tensor(&mut reader, name, &device).unwrap();
        source_parameters += tensor.shape().elem_count() as u64;
        let bias = ["attn_q", "attn_k", "attn_v"]
            .iter()
            .find_map(|p| name.strip_suffix(&format!(".{p}.weight")).map(|b| (b, p)));
        if let Some((block, projection)) = bias {
            // candle's shape is (rows, columns): one bias per output row.
            let rows = tensor.shape().dims()[0];
            let zeros = Tensor::zeros(rows, DType::F32, &device).unwrap();
            let bias = QTensor::quantize(&zeros, GgmlDType::F32).unwrap();
            bias_parameters += rows as u64;
            tensors.push((format!("{block}.{projection}.bias"), bias));
        }
        tensors.push((name.clone(), tensor));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let blocks = content.metadata["llama.block_count"].to_u32().unwrap() as usize;
    let biases = tensors.iter().filter(|(n, _)| n.ends_with(".bias")).count();
    assert_eq!(
        biases,
        3 * blocks,
        "three biases in each of {blocks} blocks"
    );

    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    Rewritten {
        bytes: out.into_inner(),
        source_parameters,
        bias_parameters,
    }
}

/// Generates, collecting every piece passed to `on_token`.
fn run(prompt: &str, sampling: &Sampling) -> (Generation, Vec<String>) {
    smollm2::run(model(), prompt, sampling)
}

#[test]
fn loads_as_qwen2_with_the_files_own_metadata() {
    let q = qwen2();
    let info = q.model.info();
    assert_eq!(info.architecture, "qwen2");
    assert_eq!(info.name.as_deref(), Some(NAME));
    assert_eq!(info.context_length, 8192, "qwen2.context_length");
    assert_eq!(
        info.usable_context, 8192,
        "no llama rope-table cap on qwen2"
    );
    assert_eq!(info.vocab_size, 49152);
    assert_eq!(info.sha256, q.file_sha256);
    assert_eq!(info.file_size, q.file_size);
    assert_eq!(info.parameters, q.source_parameters + q.bias_parameters);
    // 30 blocks, each with a 576-long query bias and 192-long key and value biases.
    assert_eq!(q.bias_parameters, 30 * (576 + 2 * 192));
    assert!(info.chat_template_from_gguf);
}

#[test]
fn tokenizer_and_chat_template_come_from_the_gguf() {
    let m = model();
    for text in [
        "Hello, world! It's 2024; x = 42 * 7.",
        "naïve café, Straße, 日本語, emoji 🦀",
    ] {
        let ids = m.encode(text).unwrap();
        assert!(!ids.is_empty());
        assert_eq!(m.decode(&ids).unwrap(), text, "{ids:?}");
    }
    // SmolLM2's pre-tokenizer (`tokenizer.ggml.pre` = smollm) came along: digits one by one.
    assert_eq!(m.encode("12345").unwrap().len(), 5);
    assert_eq!(m.encode("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(m.encode("<|im_end|>").unwrap(), vec![2]);
    let prompt = m
        .apply_chat_template(&[("system", "Be brief."), ("user", "Hi there")])
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
    // SmolLM2's own template adds its system message when there is none; ChatML would not.
    let prompt = m.apply_chat_template(&[("user", "Hi")]).unwrap();
    assert!(prompt.starts_with("<|im_start|>system\n"), "{prompt}");
}

#[test]
fn greedy_is_deterministic_in_turns_and_concurrently() {
    let prompt = "The capital of France is";
    let sampling = Sampling::greedy(6);
    let (first, first_pieces) = run(prompt, &sampling);
    assert!(!first.text.is_empty(), "{first:?}");
    assert_eq!(first.finish, Finish::Length, "{first:?}");
    assert_eq!(first.completion_tokens, 6);
    assert_eq!(first.prompt_tokens, model().encode(prompt).unwrap().len());

    // Another prompt in between leaves nothing behind in the shared weights' KV cache.
    let (other, _) = run(
        "Once upon a time, in a land far away,",
        &Sampling::greedy(3),
    );
    assert_eq!(other.completion_tokens, 3);
    let (again, again_pieces) = run(prompt, &sampling);
    assert_eq!(again.text, first.text);
    assert_eq!(again_pieces, first_pieces);

    // Two at once take turns on the weights and get the same as one alone.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(prompt, &sampling));
        let b = s.spawn(|| run(prompt, &sampling));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (generation, pieces) in [a, b] {
        assert_eq!(generation.text, first.text);
        assert_eq!(pieces, first_pieces);
        assert_eq!(
            (generation.finish, generation.completion_tokens),
            (Finish::Length, 6)
        );
    }
}

#[test]
fn seeded_sampling_repeats_and_stops_at_max_tokens() {
    let sampling = |seed| Sampling {
        temperature: 0.8,
        top_p: Some(0.95),
        seed,
        max_tokens: 5,
        stop: Vec::new(),
    };
    let prompt = "Once upon a time";
    let (first, _) = run(prompt, &sampling(7));
    let (again, _) = run(prompt, &sampling(7));
    assert_eq!(first.text, again.text);
    assert!(!first.text.is_empty(), "{first:?}");
    assert_eq!((first.finish, first.completion_tokens), (Finish::Length, 5));
}

#[test]
fn chat_generates_from_the_templates_prompt() {
    let messages = [("user", "What is the capital of France?")];
    let prompt = model().apply_chat_template(&messages).unwrap();
    let mut streamed = String::new();
    let generation = model()
        .chat(&messages, &Sampling::greedy(8), &mut |piece| {
            streamed.push_str(piece);
            true
        })
        .unwrap();
    assert_eq!(streamed, generation.text);
    assert_eq!(
        generation.prompt_tokens,
        model().encode(&prompt).unwrap().len()
    );
    assert!(generation.completion_tokens <= 8, "{generation:?}");
    assert!(
        matches!(generation.finish, Finish::Stop | Finish::Length),
        "{generation:?}"
    );
    assert!(!generation.text.contains("<|im_end|>"), "{generation:?}");
}

#[test]
fn a_prompt_longer_than_one_prefill_chunk_runs() {
    // Over 512 tokens, so the prompt goes in two chunks and the second one's causal mask
    // starts past position 0.
    let prompt = "one two three four five six seven eight nine ten ".repeat(53);
    let (generation, _) = run(&prompt, &Sampling::greedy(2));
    assert!(generation.prompt_tokens > 512, "{generation:?}");
    assert_eq!(
        (generation.finish, generation.completion_tokens),
        (Finish::Length, 2)
    );
}

#[test]
fn a_prompt_is_limited_by_the_qwen2_context() {
    let long = "word ".repeat(9000);
    let err = model().generate(&long, &Sampling::greedy(1), &mut |_| true);
    assert!(
        matches!(err, Err(LocalError::PromptTooLong { context: 8192, .. })),
        "{err:?}"
    );
}
