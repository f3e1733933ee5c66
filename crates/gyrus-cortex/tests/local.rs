//! The embedded cortex against the real SmolLM2-135M-Instruct Q4_1 GGUF.
//!
//! The model comes from `cargo xtask fetch-models` (or `GYRUS_SMOLLM2_GGUF`); without it these
//! tests fail and say so. It is loaded once; generations stay short because this is a CPU.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod smollm2;

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use gyrus_cortex::local::{Finish, Generation, LocalError, LocalModel, Sampling};

const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
fn model_path() -> std::path::PathBuf {
    smollm2::path()
}

fn model() -> &'static LocalModel {
    static MODEL: OnceLock<LocalModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = model_path();
        LocalModel::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
    })
}

/// Generates, collecting every piece passed to `on_token`.
fn run(prompt: &str, sampling: &Sampling) -> (Generation, Vec<String>) {
    smollm2::run(model(), prompt, sampling)
}

fn sampled(seed: u64, max_tokens: usize) -> Sampling {
    Sampling {
        temperature: 0.8,
        top_p: Some(0.95),
        seed,
        max_tokens,
        stop: Vec::new(),
    }
}

#[test]
fn local_model_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<LocalModel>();
}

#[test]
fn loads_smollm2_with_its_metadata_and_hash() {
    let info = model().info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.context_length, 8192, "llama.context_length");
    assert_eq!(info.usable_context, 4096, "candle's llama rope table");
    assert_eq!(info.vocab_size, 49152);
    assert_eq!(info.sha256, SMOLLM2_SHA256);
    assert_eq!(
        info.file_size,
        std::fs::metadata(model_path()).unwrap().len()
    );
    assert!(
        (130_000_000..140_000_000).contains(&info.parameters),
        "135M parameters, got {}",
        info.parameters
    );
    assert!(info.chat_template_from_gguf);
}

#[test]
fn tokenizer_round_trips_ascii_and_utf8() {
    let m = model();
    for text in [
        "Hello, world! It's 2024; x = 42 * 7.",
        "  leading spaces,\ttabs\nand\r\nnewlines  ",
        "naïve café façade, Ærøskøbing, Straße",
        "emoji 🦀🚀 and a ZWJ family 👩‍💻",
        "日本語のテキストと中文文本, 한국어",
    ] {
        let ids = m.encode(text).unwrap();
        assert!(!ids.is_empty());
        assert_eq!(m.decode(&ids).unwrap(), text, "{ids:?}");
    }
    // SmolLM's pre-tokenizer splits digits one by one (`tokenizer.ggml.pre` = smollm).
    assert_eq!(m.encode("12345").unwrap().len(), 5);
    // Special tokens in text are single tokens.
    assert_eq!(m.encode("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(m.encode("<|im_end|>").unwrap(), vec![2]);
}

#[test]
fn chat_template_is_smollm2_chatml() {
    let prompt = model()
        .apply_chat_template(&[("system", "Be brief."), ("user", "Hi there")])
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
    // Without a system message the template adds SmolLM's own.
    let prompt = model().apply_chat_template(&[("user", "Hi")]).unwrap();
    assert!(prompt.starts_with("<|im_start|>system\n"), "{prompt}");
    assert!(
        prompt.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt}"
    );
}

#[test]
fn greedy_is_deterministic_even_concurrently() {
    let prompt = "The capital of France is";
    let sampling = Sampling::greedy(6);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(prompt, &sampling));
        let b = s.spawn(|| run(prompt, &sampling));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.0.text, b.0.text);
    assert_eq!(a.1, b.1, "same pieces");
    assert_eq!(a.0.finish, Finish::Length);
    assert_eq!(a.0.completion_tokens, 6);
    assert_eq!(a.0.prompt_tokens, model().encode(prompt).unwrap().len());
    assert!(a.0.text.contains("Paris"), "{:?}", a.0.text);
}

#[test]
fn answers_a_factual_chat_question() {
    let generation = model()
        .chat(
            &[
                ("system", "You are a helpful assistant."),
                ("user", "What is the capital of France?"),
            ],
            &Sampling::greedy(24),
            &mut |_| true,
        )
        .unwrap();
    assert!(generation.text.contains("Paris"), "{:?}", generation.text);
    assert_eq!(generation.finish, Finish::Stop, "{:?}", generation.text);
    assert!(!generation.text.contains("<|im_end|>"));
}

#[test]
fn seeded_sampling_repeats_and_stops_at_max_tokens() {
    let prompt = "Once upon a time";
    let (first, _) = run(prompt, &sampled(7, 8));
    let (again, _) = run(prompt, &sampled(7, 8));
    assert_eq!(first.text, again.text);
    assert_eq!(first.finish, Finish::Length);
    assert_eq!(first.completion_tokens, 8);
    let (other, _) = run(prompt, &sampled(8, 8));
    assert_ne!(first.text, other.text, "another seed, another story");
}

#[test]
fn a_stop_sequence_ends_the_text_before_it() {
    let prompt = "The capital of France is";
    let (full, _) = run(prompt, &Sampling::greedy(8));
    let dot = full.text.find('.').expect("the answer has a full stop");
    let sampling = Sampling {
        stop: vec![".".to_string(), "never appears".to_string()],
        ..Sampling::greedy(8)
    };
    let (stopped, _) = run(prompt, &sampling);
    assert_eq!(stopped.finish, Finish::StopSequence);
    assert_eq!(stopped.text, full.text[..dot]);
}

#[test]
fn returning_false_from_on_token_cancels() {
    let mut pieces = Vec::new();
    let generation = model()
        .generate(
            "The capital of France is",
            &Sampling::greedy(16),
            &mut |p| {
                pieces.push(p.to_string());
                false
            },
        )
        .unwrap();
    assert_eq!(generation.finish, Finish::Cancelled);
    assert_eq!(pieces.len(), 1);
    assert_eq!(generation.text, pieces[0]);
    assert!(generation.completion_tokens < 4, "{generation:?}");
}

#[test]
fn streamed_pieces_are_whole_characters() {
    // SmolLM2 answers this in Japanese, whose characters span several byte-level tokens.
    let prompt = model()
        .apply_chat_template(&[(
            "user",
            "Write the word 'hello' in Japanese and add a rocket emoji.",
        )])
        .unwrap();
    let (generation, pieces) = run(&prompt, &Sampling::greedy(12));
    assert!(
        generation.text.chars().any(|c| c.len_utf8() > 1),
        "{:?}",
        generation.text
    );
    assert!(
        generation.completion_tokens > pieces.len(),
        "split characters were held back"
    );
    // The last piece may end in a character cut off by max_tokens; none before it may.
    for piece in &pieces[..pieces.len() - 1] {
        assert!(!piece.contains('\u{FFFD}'), "{pieces:?}");
    }
}

#[test]
fn bad_prompts_and_sampling_are_errors() {
    let m = model();
    let long = "word ".repeat(5000);
    let err = m.generate(&long, &Sampling::greedy(1), &mut |_| true);
    assert!(
        matches!(err, Err(LocalError::PromptTooLong { context: 4096, .. })),
        "{err:?}"
    );
    let err = m.generate("", &Sampling::greedy(1), &mut |_| true);
    assert!(matches!(err, Err(LocalError::EmptyPrompt)), "{err:?}");
    for sampling in [
        Sampling {
            temperature: -1.0,
            ..Sampling::default()
        },
        Sampling {
            temperature: f64::NAN,
            ..Sampling::default()
        },
        Sampling {
            top_p: Some(0.0),
            ..sampled(1, 1)
        },
    ] {
        let err = m.generate("Hi", &sampling, &mut |_| true);
        assert!(
            matches!(err, Err(LocalError::InvalidSampling(_))),
            "{err:?}"
        );
    }
    let zero = m
        .generate("Hi", &Sampling::greedy(0), &mut |_| true)
        .unwrap();
    assert_eq!((zero.finish, zero.completion_tokens), (Finish::Length, 0));
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    file
}

#[test]
fn bad_files_are_clear_errors() {
    // Random bytes (a fixed xorshift stream, so the test is repeatable).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let file = write_temp(&noise);
    let err = LocalModel::load(file.path()).unwrap_err();
    assert!(matches!(err, LocalError::NotGguf { .. }), "{err}");
    assert!(err.to_string().contains("not a GGUF"), "{err}");

    let empty = write_temp(b"");
    let err = LocalModel::load(empty.path()).unwrap_err();
    assert!(matches!(err, LocalError::NotGguf { .. }), "{err}");

    let real = std::fs::read(model_path()).unwrap();
    // Cut inside the header (the vocabulary alone is over 1 MB) and inside the tensor data.
    for cut in [1 << 20, real.len() / 2] {
        let file = write_temp(&real[..cut]);
        let err = LocalModel::load(file.path()).unwrap_err();
        assert!(matches!(err, LocalError::Truncated { .. }), "{cut}: {err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    let err = LocalModel::load(Path::new("/nonexistent/model.gguf")).unwrap_err();
    match &err {
        LocalError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");
}

#[test]
fn an_unsupported_architecture_is_named() {
    use candle_core::quantized::gguf_file::{Value, write};
    let arch = Value::String("mamba".to_string());
    let mut bytes = std::io::Cursor::new(Vec::new());
    write(&mut bytes, &[("general.architecture", &arch)], &[]).unwrap();
    let file = write_temp(bytes.get_ref());
    let err = LocalModel::load(file.path()).unwrap_err();
    assert!(
        matches!(&err, LocalError::UnsupportedArchitecture { architecture } if architecture == "mamba"),
        "{err}"
    );
    assert!(err.to_string().contains("llama, qwen2"), "{err}");
}
