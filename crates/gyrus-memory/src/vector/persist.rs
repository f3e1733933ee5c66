//! The index file format and its atomic write.
//!
//! Layout (little endian): magic `GYRVECIX`, format version `u32`, kind `u32`
//! (1 flat, 2 HNSW), the kind's payload, then an FNV-1a 64 checksum of everything before it.
//! A reader checks the magic, version, kind and checksum before it parses the payload, and
//! every length it reads is checked against the bytes left, so a damaged file is an error.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::IndexError;

const MAGIC: &[u8; 8] = b"GYRVECIX";
/// The file format version written and read by this build. 2: an HNSW file holds one graph
/// per namespace (an entry point and top level each) instead of one for all. An older file
/// is refused, and the store then rebuilds its index from the stored vectors.
pub(crate) const VERSION: u32 = 2;
/// Kind tag of [`super::FlatIndex`] files.
pub(crate) const KIND_FLAT: u32 = 1;
/// Kind tag of [`super::HnswIndex`] files.
pub(crate) const KIND_HNSW: u32 = 2;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Builds a file image in memory.
#[derive(Debug)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(kind: u32) -> Self {
        let mut e = Encoder { buf: Vec::new() };
        e.buf.extend_from_slice(MAGIC);
        e.u32(VERSION);
        e.u32(kind);
        e
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn f32s(&mut self, v: &[f32]) {
        self.buf.reserve(v.len() * 4);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    pub(crate) fn u32s(&mut self, v: &[u32]) {
        self.buf.reserve(v.len() * 4);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let sum = fnv1a(&self.buf);
        self.u64(sum);
        self.buf
    }
}

/// Reads a file image, every read bounds-checked.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: String,
}

impl<'a> Decoder<'a> {
    /// Checks header and checksum; the decoder is then positioned at the payload.
    pub(crate) fn open(bytes: &'a [u8], kind: u32, path: &Path) -> Result<Self, IndexError> {
        let path = path.display().to_string();
        let bad = |reason: &str| IndexError::Corrupt {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        if bytes.len() < MAGIC.len() + 8 + 8 {
            return Err(bad("file is too short"));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad("not a gyrus vector index file (bad magic)"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut sum_bytes = [0u8; 8];
        sum_bytes.copy_from_slice(sum);
        let mut d = Decoder {
            bytes: body,
            pos: 8,
            path: path.clone(),
        };
        let version = d.u32()?;
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this build reads version {VERSION}"
            )));
        }
        let got_kind = d.u32()?;
        if got_kind != kind {
            return Err(bad(&format!("index kind {got_kind}, expected {kind}")));
        }
        if fnv1a(body) != u64::from_le_bytes(sum_bytes) {
            return Err(bad("checksum mismatch (file damaged or truncated)"));
        }
        Ok(d)
    }

    pub(crate) fn corrupt(&self, reason: impl Into<String>) -> IndexError {
        IndexError::Corrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.corrupt("file ends early"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, IndexError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, IndexError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, IndexError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    /// A count that must fit in the bytes left at `unit` bytes each.
    pub(crate) fn count(&mut self, unit: usize) -> Result<usize, IndexError> {
        let n = usize::try_from(self.u64()?).map_err(|_| self.corrupt("count too large"))?;
        if n.saturating_mul(unit.max(1)) > self.bytes.len() - self.pos {
            return Err(self.corrupt("count exceeds file size"));
        }
        Ok(n)
    }
    pub(crate) fn f32s(&mut self, n: usize) -> Result<Vec<f32>, IndexError> {
        let len = n
            .checked_mul(4)
            .ok_or_else(|| self.corrupt("length overflow"))?;
        let raw = self.take(len)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    pub(crate) fn u32s(&mut self, n: usize) -> Result<Vec<u32>, IndexError> {
        let len = n
            .checked_mul(4)
            .ok_or_else(|| self.corrupt("length overflow"))?;
        let raw = self.take(len)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    pub(crate) fn end(&self) -> Result<(), IndexError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes after the index"))
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> IndexError {
    IndexError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, IndexError> {
    fs::read(path).map_err(|e| io_err(path, e))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, then an
/// fsync of the directory so the rename itself is durable.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io_err(path, std::io::Error::other("path has no file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Best effort: not every platform can open a directory.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io_err(path, e))
}
