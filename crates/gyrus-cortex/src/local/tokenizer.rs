//! The model's tokenizer, rebuilt from the GGUF's own metadata, so no `tokenizer.json` is
//! needed beside the model file.
//!
//! GGUF files converted from Hugging Face byte-level BPE models (`tokenizer.ggml.model` =
//! `gpt2`: GPT-2, SmolLM, Llama 3, Qwen2) carry the vocabulary (`tokenizer.ggml.tokens`, in
//! byte-level form), the merges and the token types. The pre-tokenizer, the regex that splits
//! text into words before BPE, is not stored; `tokenizer.ggml.pre` names it and
//! [`pre_tokenizer`] maps that name to the same regexes llama.cpp uses (`llama-vocab.cpp`).
//! candle-core ships a similar builder, but it does not know SmolLM's digit splitting.

use std::collections::HashSet;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::LocalError;
use super::gguf::{Metadata, value_as_u64};

/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_LLAMA3` split.
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2` split (digits one by one).
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token texts that end a turn, as llama.cpp's end-of-generation heuristic lists them; a chat
/// model's GGUF often names `<|endoftext|>` as EOS while its turns end with `<|im_end|>`.
const END_OF_TURN: [&str; 9] = [
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<|end▁of▁sentence|>",
];

/// GGUF token types (`llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// A byte-level BPE tokenizer and the special tokens generation needs.
#[derive(Debug)]
pub(super) struct TextTokenizer {
    inner: Tokenizer,
    /// Prepended to a prompt when the model asks for it (`tokenizer.ggml.add_bos_token`).
    bos: Option<u32>,
    add_bos: bool,
    /// Tokens that end generation: EOS, EOT and the end-of-turn tokens above.
    stop_ids: HashSet<u32>,
    pub(super) bos_text: String,
    pub(super) eos_text: String,
}

impl TextTokenizer {
    pub(super) fn from_gguf(meta: &Metadata<'_>) -> Result<Self, LocalError> {
        let fail = |m: String| LocalError::Tokenizer(m);
        let model = meta.string("tokenizer.ggml.model").unwrap_or("(none)");
        if model != "gpt2" {
            return Err(fail(format!(
                "tokenizer model `{model}` is not supported; the embedded cortex reads byte-level BPE (`gpt2`) vocabularies"
            )));
        }
        let tokens: Vec<&str> = meta
            .array("tokenizer.ggml.tokens")
            .ok_or_else(|| fail("the GGUF has no tokenizer.ggml.tokens".into()))?
            .iter()
            .map(|v| v.to_string().map(String::as_str))
            .collect::<Result<_, _>>()
            .map_err(|_| fail("tokenizer.ggml.tokens holds a non-string".into()))?;
        let merges: Vec<(String, String)> = meta
            .array("tokenizer.ggml.merges")
            .ok_or_else(|| fail("the GGUF has no tokenizer.ggml.merges".into()))?
            .iter()
            .map(|v| {
                v.to_string()
                    .ok()
                    .and_then(|m| m.split_once(' '))
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| fail(format!("malformed merge {v:?}")))
            })
            .collect::<Result<_, _>>()?;
        let types: Vec<u64> = meta
            .array("tokenizer.ggml.token_type")
            .map(|a| a.iter().map(|v| value_as_u64(v).unwrap_or(1)).collect())
            .unwrap_or_default();

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| Ok(((*t).to_string(), u32::try_from(id)?)))
            .collect::<Result<_, std::num::TryFromIntError>>()
            .map_err(|e| fail(e.to_string()))?;
        let pre = meta.string("tokenizer.ggml.pre").unwrap_or("gpt2");
        let (pre_tokenizer, nfc, ignore_merges) = pre_tokenizer(pre)?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        if nfc {
            inner.with_normalizer(Some(NFC));
        }

        let id = |key: &str| {
            meta.integer(key)
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| (v as usize) < tokens.len())
        };
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let add_bos = meta.bool("tokenizer.ggml.add_bos_token").unwrap_or(false);

        // Control and user-defined tokens are matched whole in the input (so a rendered chat
        // template's `<|im_start|>` is one token); control tokens are left out of decoded text.
        let mut special_ids: HashSet<u32> = [bos, eos].into_iter().flatten().collect();
        let mut added = Vec::new();
        for (index, &kind) in types.iter().enumerate() {
            let Some(text) = tokens.get(index) else { break };
            let Ok(token_id) = u32::try_from(index) else {
                break;
            };
            match kind {
                TOKEN_TYPE_CONTROL => {
                    special_ids.insert(token_id);
                }
                TOKEN_TYPE_USER_DEFINED => added.push(AddedToken::from(*text, false)),
                _ => {}
            }
        }
        let specials: Vec<AddedToken> = special_ids
            .iter()
            .filter_map(|&i| tokens.get(i as usize))
            .map(|t| AddedToken::from(*t, true))
            .collect();
        inner.add_special_tokens(&specials);
        inner.add_tokens(&added);

        let mut stop_ids: HashSet<u32> = [
            eos,
            id("tokenizer.ggml.eot_token_id"),
            id("tokenizer.ggml.eom_token_id"),
        ]
        .into_iter()
        .flatten()
        .collect();
        for &token_id in &special_ids {
            if tokens
                .get(token_id as usize)
                .is_some_and(|t| END_OF_TURN.contains(t))
            {
                stop_ids.insert(token_id);
            }
        }
        let text_of = |i: Option<u32>| {
            i.and_then(|i| tokens.get(i as usize))
                .map(|t| (*t).to_string())
                .unwrap_or_default()
        };
        Ok(Self {
            inner,
            bos,
            add_bos,
            stop_ids,
            bos_text: text_of(bos),
            eos_text: text_of(eos),
        })
    }

    /// The tokens of `text`, special tokens written in it included, without BOS.
    pub(super) fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| LocalError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The tokens of a prompt: [`Self::encode`] plus BOS where the model wants it and the text
    /// (a rendered chat template, say) does not already start with it.
    pub(super) fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let mut ids = self.encode(text)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos)
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// The text of `ids`; with `skip_special`, control tokens are left out.
    pub(super) fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, LocalError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| LocalError::Tokenizer(e.to_string()))
    }

    pub(super) fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }
}

/// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre`, whether the text is NFC-normalised
/// first, and whether whole words found in the vocabulary skip the merges (Llama 3's
/// `ignore_merges`).
fn pre_tokenizer(pre: &str) -> Result<(PreTokenizerWrapper, bool, bool), LocalError> {
    let split = |regex: &str| {
        Split::new(
            SplitPattern::Regex(regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| LocalError::Tokenizer(e.to_string()))
    };
    // The GPT-2 regex, which `ByteLevel` applies itself when `use_regex` is on.
    let gpt2 = || ByteLevel::new(false, true, true);
    Ok(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => (
            Sequence::new(vec![
                split(REGEX_LLAMA3)?.into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            false,
            true,
        ),
        "qwen2" | "deepseek-r1-qwen" => (
            Sequence::new(vec![
                split(REGEX_QWEN2)?.into(),
                ByteLevel::new(false, false, false).into(),
            ])
            .into(),
            true,
            false,
        ),
        // Digits one by one, then the GPT-2 regex.
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (
                Sequence::new(vec![Digits::new(true).into(), gpt2().into()]).into(),
                false,
                false,
            )
        }
        "gpt2" | "default" | "gpt-2" => (gpt2().into(), false, false),
        other => {
            tracing::warn!(
                pre = other,
                "unknown GGUF pre-tokenizer; splitting words with the GPT-2 regex, which may tokenize differently from the model's training"
            );
            (gpt2().into(), false, false)
        }
    })
}
