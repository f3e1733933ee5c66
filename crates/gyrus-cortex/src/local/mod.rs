//! The embedded cortex: in-process inference on a quantized GGUF model with candle, on the CPU.
//!
//! [`LocalModel::load`] reads everything from the one file: the weights, the tokenizer
//! (rebuilt from `tokenizer.ggml.*`) and the chat template (`tokenizer.chat_template`, rendered
//! with minijinja, ChatML when absent). [`LocalModel::generate`] streams a completion for a raw
//! prompt, [`LocalModel::chat`] for messages.
//!
//! Architectures: `llama` (Llama 2/3, SmolLM, Mistral-style GGUFs) and `qwen2`.
//!
//! A loaded model is shared: `LocalModel` is `Send + Sync` and the KV cache lives per call. For
//! `llama`, every call to `generate` takes a cheap copy of the weights' handles
//! (reference-counted tensors) with its own empty cache, so concurrent calls neither lock nor see
//! each other's state. candle's `qwen2` weights cannot be copied, so they sit behind a `Mutex`:
//! calls take turns, each starting from a cleared cache.

mod error;
mod gguf;
mod stream;
mod template;
mod tokenizer;

use std::fs::File;
use std::io::{BufReader, Cursor};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::{quantized_llama, quantized_qwen2};

pub use error::LocalError;
use gguf::Metadata;
use stream::StopScanner;
use template::ChatTemplate;
use tokenizer::TextTokenizer;

/// `general.architecture` values [`LocalModel::load`] accepts.
pub const SUPPORTED_ARCHITECTURES: [&str; 2] = ["llama", "qwen2"];

/// Prompts are fed in chunks of this many tokens, which bounds the attention scratch memory
/// of a long prompt.
const PREFILL_CHUNK: usize = 512;

/// Decoded text that ends in U+FFFD may be a multi-byte character split across tokens; it is
/// held back for at most this many tokens, after which the replacement character is real.
const MAX_HELD_TOKENS: usize = 8;

/// What a loaded model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// `general.architecture`: `llama` or `qwen2`.
    pub architecture: String,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    /// `<architecture>.context_length` from the file: the context the model was trained for.
    pub context_length: usize,
    /// The context this runtime gives it, prompt and completion together: `context_length`,
    /// capped at 4096 for `llama` because candle's llama precomputes rotary embeddings for
    /// 4096 positions.
    pub usable_context: usize,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Weights in all tensors.
    pub parameters: u64,
    /// Bytes in the file.
    pub file_size: u64,
    /// SHA-256 of the file, lowercase hex, computed while loading.
    pub sha256: String,
    /// Whether the chat template is the model's own (false: the ChatML fallback).
    pub chat_template_from_gguf: bool,
}

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token every time (greedy, deterministic); higher flattens the
    /// distribution.
    pub temperature: f64,
    /// Nucleus sampling: sample only among the most likely tokens whose probabilities add up to
    /// this. Ignored when greedy.
    pub top_p: Option<f64>,
    /// Seed of the sampler: the same seed, prompt and parameters give the same text.
    pub seed: u64,
    /// Most tokens to generate (the end-of-turn token counts).
    pub max_tokens: usize,
    /// Stop when the text contains any of these; the text returned ends before it.
    pub stop: Vec<String>,
}

impl Sampling {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            seed: 0,
            max_tokens,
            stop: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), LocalError> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(LocalError::InvalidSampling(format!(
                "temperature must be a finite number >= 0, not {}",
                self.temperature
            )));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(LocalError::InvalidSampling(format!(
                "top_p must be in (0, 1], not {p}"
            )));
        }
        Ok(())
    }
}

impl Default for Sampling {
    /// Greedy, 256 tokens.
    fn default() -> Self {
        Self::greedy(256)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn (an end-of-sequence or end-of-turn token).
    Stop,
    /// `max_tokens` were generated, or the context window is full.
    Length,
    /// The text reached one of [`Sampling::stop`].
    StopSequence,
    /// The `on_token` callback returned false.
    Cancelled,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The completion: exactly what was passed to `on_token`, in order.
    pub text: String,
    /// Tokens in the prompt, BOS included.
    pub prompt_tokens: usize,
    /// Tokens generated, the end-of-turn token included.
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish: Finish,
    /// Time spent processing the prompt (until the first token's logits).
    pub prompt_time: Duration,
    /// Time spent generating after that.
    pub completion_time: Duration,
}

/// The weights of one of the supported architectures.
enum Weights {
    /// Copied per call (the copy shares the tensors), so each call has its own KV cache.
    Llama(quantized_llama::ModelWeights),
    /// candle's qwen2 weights cannot be copied, so calls take turns, each clearing the cache.
    Qwen2(Mutex<quantized_qwen2::ModelWeights>),
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Llama(_) => "Weights::Llama",
            Self::Qwen2(_) => "Weights::Qwen2",
        })
    }
}

impl Weights {
    /// Weights with an empty KV cache, for one generation.
    fn session(&self) -> Session<'_> {
        match self {
            Self::Llama(w) => Session::Llama(Box::new(w.clone())),
            Self::Qwen2(w) => {
                // A panic in another call cannot leave the weights themselves half-written;
                // the cache it may have left is cleared here.
                let mut guard = w.lock().unwrap_or_else(PoisonError::into_inner);
                guard.clear_kv_cache();
                Session::Qwen2(guard)
            }
        }
    }
}

/// One generation's hold on the weights and its KV cache.
enum Session<'a> {
    Llama(Box<quantized_llama::ModelWeights>),
    Qwen2(MutexGuard<'a, quantized_qwen2::ModelWeights>),
}

impl Session<'_> {
    /// Logits for the token after `tokens`, which start at `position` in the sequence.
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Tensor, candle_core::Error> {
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        // candle forks every matrix multiply onto rayon's global pool; run the whole forward
        // pass inside the pool, so each fork is local to a worker instead of a hand-off from
        // this thread and back (hundreds per token).
        let logits = match self {
            Self::Llama(w) => {
                let w: &mut quantized_llama::ModelWeights = w;
                rayon::scope(|_| w.forward(&input, position))?
            }
            Self::Qwen2(w) => {
                let w: &mut quantized_qwen2::ModelWeights = w;
                rayon::scope(|_| w.forward(&input, position))?
            }
        };
        logits.squeeze(0)?.to_dtype(DType::F32)
    }
}

/// A GGUF model loaded into memory, ready to generate. See the module docs on sharing.
#[derive(Debug)]
pub struct LocalModel {
    weights: Weights,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    info: ModelInfo,
}

impl LocalModel {
    /// Loads a GGUF file: hashes it, checks it is whole, reads the weights onto the CPU and
    /// rebuilds its tokenizer and chat template.
    pub fn load(path: &Path) -> Result<Self, LocalError> {
        let started = Instant::now();
        let (sha256, file_size) = gguf::sha256(path)?;
        let mut reader = BufReader::new(gguf::open(path)?);
        let content = gguf::read_header(path, &mut reader, file_size)?;
        let meta = Metadata(&content);

        let architecture = meta
            .string("general.architecture")
            .ok_or_else(|| gguf::malformed(path, "it has no general.architecture".into()))?
            .to_string();
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(LocalError::UnsupportedArchitecture { architecture });
        }
        let key = format!("{architecture}.context_length");
        let context_length = meta
            .integer(&key)
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| gguf::malformed(path, format!("it has no {key}")))?;
        let usable_context = if architecture == "llama" {
            context_length.min(quantized_llama::MAX_SEQ_LEN)
        } else {
            context_length
        };
        let tokenizer = TextTokenizer::from_gguf(&meta)?;
        let template = ChatTemplate::new(meta.string("tokenizer.chat_template"))?;
        let info = ModelInfo {
            path: path.to_path_buf(),
            name: meta.string("general.name").map(str::to_string),
            context_length,
            usable_context,
            vocab_size: meta.array("tokenizer.ggml.tokens").map_or(0, Vec::len),
            parameters: content
                .tensor_infos
                .values()
                .map(|t| t.shape.elem_count() as u64)
                .sum(),
            file_size,
            sha256,
            chat_template_from_gguf: template.from_gguf,
            architecture,
        };
        let weights = read_weights(path, &info.architecture, content, &mut reader)?;
        tracing::info!(
            path = %path.display(),
            architecture = %info.architecture,
            parameters = info.parameters,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded local model"
        );
        Ok(Self {
            weights,
            tokenizer,
            template,
            info,
        })
    }

    /// What this model is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The tokens of `text` (special tokens written in it are recognised; no BOS is added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        self.tokenizer.encode(text)
    }

    /// The text of `ids`, special tokens included: the inverse of [`Self::encode`].
    pub fn decode(&self, ids: &[u32]) -> Result<String, LocalError> {
        self.tokenizer.decode(ids, false)
    }

    /// The prompt the model's chat template makes of `messages` ((role, content) pairs, roles
    /// `system`, `user`, `assistant`), ending with the assistant's turn opened.
    pub fn apply_chat_template<R, C>(&self, messages: &[(R, C)]) -> Result<String, LocalError>
    where
        R: AsRef<str>,
        C: AsRef<str>,
    {
        let messages: Vec<(&str, &str)> = messages
            .iter()
            .map(|(r, c)| (r.as_ref(), c.as_ref()))
            .collect();
        self.template.render(
            &messages,
            &self.tokenizer.bos_text,
            &self.tokenizer.eos_text,
        )
    }

    /// The assistant's reply to `messages`: [`Self::apply_chat_template`] then
    /// [`Self::generate`].
    pub fn chat<R, C>(
        &self,
        messages: &[(R, C)],
        sampling: &Sampling,
        on_token: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, LocalError>
    where
        R: AsRef<str>,
        C: AsRef<str>,
    {
        let prompt = self.apply_chat_template(messages)?;
        self.generate(&prompt, sampling, on_token)
    }

    /// Completes `prompt`. Text is passed to `on_token` as it is decoded, in whole UTF-8
    /// characters; returning false from it cancels. Blocking and CPU-bound: async callers run
    /// it on a blocking thread.
    pub fn generate(
        &self,
        prompt: &str,
        sampling: &Sampling,
        on_token: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation, LocalError> {
        sampling.validate()?;
        let started = Instant::now();
        let prompt_ids = self.tokenizer.encode_prompt(prompt)?;
        if prompt_ids.is_empty() {
            return Err(LocalError::EmptyPrompt);
        }
        let context = self.info.usable_context;
        if prompt_ids.len() >= context {
            return Err(LocalError::PromptTooLong {
                tokens: prompt_ids.len(),
                context,
            });
        }
        let mut result = Generation {
            text: String::new(),
            prompt_tokens: prompt_ids.len(),
            completion_tokens: 0,
            finish: Finish::Length,
            prompt_time: Duration::ZERO,
            completion_time: Duration::ZERO,
        };
        if sampling.max_tokens == 0 {
            return Ok(result);
        }

        let mut weights = self.weights.session();
        let mut logits = None;
        for (i, chunk) in prompt_ids.chunks(PREFILL_CHUNK).enumerate() {
            logits = Some(weights.forward(chunk, i * PREFILL_CHUNK)?);
        }
        let Some(mut logits) = logits else {
            return Err(LocalError::EmptyPrompt);
        };
        result.prompt_time = started.elapsed();
        let generating = Instant::now();

        let temperature = (sampling.temperature > 0.0).then_some(sampling.temperature);
        let mut sampler = LogitsProcessor::new(sampling.seed, temperature, sampling.top_p);
        let mut scanner = StopScanner::new(&sampling.stop);
        let mut generated: Vec<u32> = Vec::new();
        // generated[undecoded..] have not been turned into text yet.
        let mut undecoded = 0;
        let finish = loop {
            let token = sampler.sample(&logits)?;
            result.completion_tokens += 1;
            if self.tokenizer.is_stop(token) {
                break Finish::Stop;
            }
            generated.push(token);
            let piece = self.tokenizer.decode(&generated[undecoded..], true)?;
            if !piece.ends_with('\u{FFFD}') || generated.len() - undecoded >= MAX_HELD_TOKENS {
                undecoded = generated.len();
                let pushed = scanner.push(&piece);
                if !pushed.emit.is_empty() && !on_token(&pushed.emit) {
                    break Finish::Cancelled;
                }
                if pushed.stopped {
                    break Finish::StopSequence;
                }
            }
            if result.completion_tokens >= sampling.max_tokens {
                break Finish::Length;
            }
            let position = prompt_ids.len() + generated.len() - 1;
            if position >= context {
                break Finish::Length;
            }
            logits = weights.forward(&[token], position)?;
        };

        result.finish = finish;
        if matches!(finish, Finish::Stop | Finish::Length) {
            // Whatever was held back (a split character, a possible stop prefix) goes out now.
            let piece = self.tokenizer.decode(&generated[undecoded..], true)?;
            let pushed = scanner.push(&piece);
            if pushed.stopped {
                result.finish = Finish::StopSequence;
            }
            let mut rest = pushed.emit;
            if !pushed.stopped {
                rest.push_str(&scanner.finish());
            }
            if !rest.is_empty() && !on_token(&rest) {
                result.finish = Finish::Cancelled;
            }
        }
        result.text = scanner.emitted().to_string();
        result.completion_time = generating.elapsed();
        Ok(result)
    }
}

/// Quantizations candle multiplies without SIMD on x86-64 (it has AVX2 kernels for Q4_0,
/// Q8_0 and the k-quants only): matrices stored so run several times faster as f32.
const SLOW_QUANTS: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

/// The most f32 bytes [`widen`] turns a model into (SmolLM2-135M takes 0.5 GiB).
const WIDEN_LIMIT: u64 = 2 << 30;

/// Reads the tensors. candle's model builders index into what the header says; a panic from a
/// malformed file becomes an error.
fn read_weights(
    path: &Path,
    architecture: &str,
    content: Content,
    reader: &mut BufReader<File>,
) -> Result<Weights, LocalError> {
    let device = Device::Cpu;
    let built = catch_unwind(AssertUnwindSafe(|| {
        match widen(&content, reader, &device)? {
            Some(wide) => {
                let mut cursor = Cursor::new(wide);
                let content = Content::read(&mut cursor)?;
                build(architecture, content, &mut cursor, &device)
            }
            None => build(architecture, content, reader, &device),
        }
    }))
    .map_err(|panic| gguf::malformed(path, gguf::panic_message(&panic)))?;
    built.map_err(|e| gguf::malformed(path, gguf::innermost(&e).to_string()))
}

fn build<R: std::io::Read + std::io::Seek>(
    architecture: &str,
    content: Content,
    reader: &mut R,
    device: &Device,
) -> candle_core::Result<Weights> {
    match architecture {
        "qwen2" => quantized_qwen2::ModelWeights::from_gguf(content, reader, device)
            .map(|w| Weights::Qwen2(Mutex::new(w))),
        _ => quantized_llama::ModelWeights::from_gguf(content, reader, device).map(Weights::Llama),
    }
}

/// A model whose matrices are in a [`SLOW_QUANTS`] format, rewritten in memory as a GGUF
/// with those tensors in f32 (candle multiplies f32 with its SIMD GEMM, and leaves f32
/// tensors unquantized), when that fits [`WIDEN_LIMIT`]; `None` when nothing is gained.
/// The f32 values are the quantized ones exactly, so the model is the same model; what
/// changes is that activations are no longer rounded to 8 bits for the dot products.
/// Measured on SmolLM2-135M Q4_1 (2 cores, `benches/local.rs`): as stored, 13 prompt and 11
/// generated tokens/s; widened to f32, 383 and 17 (generation is then bound by memory
/// bandwidth); requantized to Q8_0 instead, 35 and 23. Prompts dominate a chat turn.
fn widen<R: std::io::Read + std::io::Seek>(
    content: &Content,
    reader: &mut R,
    device: &Device,
) -> candle_core::Result<Option<Vec<u8>>> {
    let infos = &content.tensor_infos;
    if !infos.values().any(|t| SLOW_QUANTS.contains(&t.ggml_dtype)) {
        return Ok(None);
    }
    let wide_bytes: u64 = infos
        .values()
        .map(|t| t.shape.elem_count() as u64 * 4)
        .sum();
    if wide_bytes > WIDEN_LIMIT {
        return Ok(None);
    }
    let mut tensors = Vec::with_capacity(infos.len());
    for name in infos.keys() {
        let tensor = content.tensor(reader, name, device)?;
        let tensor = if SLOW_QUANTS.contains(&tensor.dtype()) {
            QTensor::quantize(&tensor.dequantize(device)?, GgmlDType::F32)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::with_capacity(wide_bytes as usize + (1 << 20)));
    gguf_file::write(&mut out, &metadata, &refs)?;
    Ok(Some(out.into_inner()))
}
