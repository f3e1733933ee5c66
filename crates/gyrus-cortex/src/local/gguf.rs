//! Reading a GGUF file: its hash, its header, and checks that turn a bad file into an error.
//!
//! candle's GGUF reader reports short reads as I/O errors and never checks that the tensor data
//! it points at is actually in the file; these functions add what a user needs to act on: "not a
//! GGUF file", "truncated" or "malformed", with the path.

use std::fs::File;
use std::io::{BufReader, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use sha2::{Digest, Sha256};

use super::LocalError;

/// The first four bytes of every GGUF file.
const MAGIC: &[u8; 4] = b"GGUF";

/// Opens `path`, mapping failures to [`LocalError::Io`].
pub(super) fn open(path: &Path) -> Result<File, LocalError> {
    File::open(path).map_err(|source| io_error(path, source))
}

pub(super) fn io_error(path: &Path, source: std::io::Error) -> LocalError {
    LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of the whole file, streamed in 1 MiB reads, and its length, as lowercase hex.
pub(super) fn sha256(path: &Path) -> Result<(String, u64), LocalError> {
    let mut file = open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    let digest = hasher.finalize();
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, len))
}

/// Reads and checks the header: magic, metadata, tensor table, and that every tensor's bytes lie
/// inside the file.
pub(super) fn read_header(
    path: &Path,
    reader: &mut BufReader<File>,
    file_len: u64,
) -> Result<Content, LocalError> {
    let mut magic = [0u8; 4];
    let got = read_up_to(reader, &mut magic).map_err(|e| io_error(path, e))?;
    if got < magic.len() || &magic != MAGIC {
        let reason = if got == 0 {
            "the file is empty".to_string()
        } else {
            format!("it starts with {:02x?}, not \"GGUF\"", &magic[..got])
        };
        return Err(LocalError::NotGguf {
            path: path.to_path_buf(),
            reason,
        });
    }
    use std::io::Seek;
    reader
        .seek(std::io::SeekFrom::Start(0))
        .map_err(|e| io_error(path, e))?;
    // candle sizes buffers from lengths in the file; a corrupt length can make it panic on an
    // out-of-range slice. The panic is turned into an error rather than taking the daemon down.
    let content = catch_unwind(AssertUnwindSafe(|| Content::read(reader)))
        .map_err(|panic| malformed(path, panic_message(&panic)))?
        .map_err(|e| header_error(path, e))?;

    let mut data_end = content.tensor_data_offset;
    for (name, info) in &content.tensor_infos {
        let block = info.ggml_dtype.block_size() as u64;
        let elems = info.shape.elem_count() as u64;
        if block == 0 || !elems.is_multiple_of(block) {
            return Err(malformed(
                path,
                format!("tensor {name} has {elems} elements, not a multiple of its block size"),
            ));
        }
        let bytes = (elems / block).saturating_mul(info.ggml_dtype.type_size() as u64);
        let end = content
            .tensor_data_offset
            .saturating_add(info.offset)
            .saturating_add(bytes);
        data_end = data_end.max(end);
    }
    if data_end > file_len {
        return Err(LocalError::Truncated {
            path: path.to_path_buf(),
            reason: format!("it is {file_len} bytes but its tensors need {data_end}"),
        });
    }
    Ok(content)
}

/// Like `read_exact`, but reports how much was there instead of failing on a short file.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn header_error(path: &Path, error: candle_core::Error) -> LocalError {
    let error = innermost(&error);
    // candle checks every length in the header against the bytes left in the file and says
    // "... remaining ..." when one does not fit; a plain short read is an UnexpectedEof.
    let truncated = match error {
        candle_core::Error::Io(io) => io.kind() == std::io::ErrorKind::UnexpectedEof,
        candle_core::Error::Msg(msg) => msg.contains("remaining"),
        _ => false,
    };
    if truncated {
        LocalError::Truncated {
            path: path.to_path_buf(),
            reason: format!("it ends inside its header: {error}"),
        }
    } else {
        malformed(path, error.to_string())
    }
}

/// The error under candle's backtrace and context wrappers.
pub(super) fn innermost(error: &candle_core::Error) -> &candle_core::Error {
    match error {
        candle_core::Error::WithBacktrace { inner, .. }
        | candle_core::Error::Context { inner, .. }
        | candle_core::Error::WithPath { inner, .. } => innermost(inner),
        other => other,
    }
}

pub(super) fn malformed(path: &Path, reason: String) -> LocalError {
    LocalError::Malformed {
        path: path.to_path_buf(),
        reason,
    }
}

pub(super) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("the reader panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("the reader panicked: {s}")
    } else {
        "the reader panicked".to_string()
    }
}

/// Typed access to a GGUF's metadata.
pub(super) struct Metadata<'a>(pub(super) &'a Content);

impl Metadata<'_> {
    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        self.0.metadata.get(key)
    }

    pub(super) fn string(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
    }

    /// Any integer type, as GGUF writers differ on which they use for ids and lengths.
    pub(super) fn integer(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(value_as_u64)
    }

    pub(super) fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|v| v.to_bool().ok())
    }

    pub(super) fn array(&self, key: &str) -> Option<&Vec<Value>> {
        self.get(key).and_then(|v| v.to_vec().ok())
    }
}

pub(super) fn value_as_u64(value: &Value) -> Option<u64> {
    match *value {
        Value::U8(v) => Some(u64::from(v)),
        Value::U16(v) => Some(u64::from(v)),
        Value::U32(v) => Some(u64::from(v)),
        Value::U64(v) => Some(v),
        Value::I8(v) => u64::try_from(v).ok(),
        Value::I16(v) => u64::try_from(v).ok(),
        Value::I32(v) => u64::try_from(v).ok(),
        Value::I64(v) => u64::try_from(v).ok(),
        _ => None,
    }
}
