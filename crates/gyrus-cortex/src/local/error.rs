//! What can go wrong loading a GGUF file or generating from it.

use std::path::PathBuf;

/// An error from the embedded cortex. Every variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The model file could not be opened or read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("{path} is not a GGUF model file ({reason})")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The file ends before its header or its tensor data does: an interrupted download.
    #[error(
        "{path} is truncated ({reason}); download it again (`cargo xtask fetch-models` for the default model)"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where it ends and what was still expected.
        reason: String,
    },
    /// The file is GGUF but its header or tensors are malformed.
    #[error("{path} is a malformed GGUF file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The model's architecture is not one this runtime can run.
    #[error(
        "model architecture `{architecture}` is not supported by the embedded cortex (supported: {})",
        super::SUPPORTED_ARCHITECTURES.join(", ")
    )]
    UnsupportedArchitecture {
        /// `general.architecture` from the file.
        architecture: String,
    },
    /// The GGUF's tokenizer cannot be rebuilt from its metadata.
    #[error("the model's tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to render these messages.
    #[error("the model's chat template: {0}")]
    Template(String),
    /// The sampling parameters are out of range.
    #[error("invalid sampling parameters: {0}")]
    InvalidSampling(String),
    /// The prompt encodes to no tokens at all.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt alone fills the model's context window.
    #[error(
        "the prompt is {tokens} tokens but the model's context holds {context}; shorten it to leave room for the answer"
    )]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// The context window this runtime gives the model.
        context: usize,
    },
    /// The tensor runtime failed during inference.
    #[error("inference failed: {0}")]
    Inference(#[from] candle_core::Error),
}
