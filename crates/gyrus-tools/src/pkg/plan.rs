//! What apt is asked and what it answers, as data: package names checked against Debian
//! policy, the plan parsed from `apt-get -s`, and the checks that decide whether a plan may
//! be carried out. Pure.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::Serialize;

use crate::spec::ToolError;

/// The most packages in one call.
pub const MAX_PACKAGES: usize = 64;

// ---------------------------------------------------------------------------------------
// Names.

/// A package named in a call: its name, and the version it is pinned to, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSpec {
    /// The package name.
    pub name: String,
    /// `=version`, if given.
    pub version: Option<String>,
}

impl PackageSpec {
    /// As apt takes it: `name` or `name=version`.
    pub fn apt_arg(&self) -> String {
        match &self.version {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Checks a package name (Debian policy, section 5.6.1: lowercase letters, digits, `+`, `-`
/// and `.`, at least two characters, starting with a letter or digit), optionally with
/// `=version` (Debian policy, section 5.6.12: starting with a digit; letters, digits and
/// `.+~:-`).
pub fn parse_package(text: &str) -> Result<PackageSpec, String> {
    let (name, version) = match text.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (text, None),
    };
    let name_ok = name.len() >= 2
        && name.len() <= 128
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        });
    if !name_ok {
        return Err(format!(
            "{text:?} is not a Debian package name (lowercase letters, digits, + - and ., at least two characters, starting with a letter or digit; optionally =version)"
        ));
    }
    if name.ends_with('-') {
        return Err(format!(
            "{name:?} ends in -, which apt reads as \"remove\"; use pkg.remove to remove a package"
        ));
    }
    if let Some(v) = version {
        let ok = v.len() <= 128
            && v.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && v.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'~' | b':' | b'-')
            });
        if !ok {
            return Err(format!(
                "{v:?} is not a Debian version (it starts with a digit; letters, digits and . + ~ : -)"
            ));
        }
    }
    Ok(PackageSpec {
        name: name.to_string(),
        version: version.map(str::to_string),
    })
}

pub(crate) fn parse_packages(packages: &[String]) -> Result<Vec<PackageSpec>, ToolError> {
    if packages.is_empty() || packages.len() > MAX_PACKAGES {
        return Err(ToolError::InvalidArgs(format!(
            "packages: name 1 to {MAX_PACKAGES} packages"
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(packages.len());
    for p in packages {
        let spec =
            parse_package(p).map_err(|e| ToolError::InvalidArgs(format!("packages: {e}")))?;
        if !seen.insert(spec.name.clone()) {
            return Err(ToolError::InvalidArgs(format!(
                "packages: {} is named twice",
                spec.name
            )));
        }
        out.push(spec);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Plans.

/// What a plan step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// Unpack a package (new, or replacing the installed version in `old_version`).
    Install,
    /// Remove a package, keeping its configuration files.
    Remove,
    /// Remove a package and its configuration files.
    Purge,
    /// Configure an unpacked package.
    Configure,
}

/// One step of apt's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PlanStep {
    /// What happens.
    pub action: StepAction,
    /// The package, with `:arch` when apt names one.
    pub package: String,
    /// The version installed or configured, or for a removal the version removed.
    pub version: Option<String>,
    /// For an install that replaces an installed version (an upgrade or downgrade): that
    /// version.
    pub old_version: Option<String>,
}

/// Parses the `Inst`, `Remv`, `Purg` and `Conf` lines of `apt-get -s` output (in the C
/// locale); every other line is ignored. Forms:
///
/// ```text
/// Inst cowsay (3.03+dfsg2-8 Debian:12.14/oldstable [all])
/// Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.14/oldstable [amd64])
/// Remv hello [2.10-3]
/// Purg tk-dev [8.6.13]
/// Conf cowsay (3.03+dfsg2-8 Debian:12.14/oldstable [all])
/// ```
pub fn parse_plan(text: &str) -> Vec<PlanStep> {
    text.lines().filter_map(parse_step).collect()
}

fn parse_step(line: &str) -> Option<PlanStep> {
    let (verb, rest) = line.split_once(' ')?;
    let action = match verb {
        "Inst" => StepAction::Install,
        "Remv" => StepAction::Remove,
        "Purg" => StepAction::Purge,
        "Conf" => StepAction::Configure,
        _ => return None,
    };
    let (package, mut rest) = match rest.split_once(' ') {
        Some((p, r)) => (p, r.trim_start()),
        None => (rest, ""),
    };
    if package.is_empty() {
        return None;
    }
    let mut bracketed = None;
    if let Some(after) = rest.strip_prefix('[') {
        let (inside, after) = after.split_once(']')?;
        bracketed = Some(inside.to_string());
        rest = after.trim_start();
    }
    let mut parenthesised = None;
    if let Some(after) = rest.strip_prefix('(') {
        parenthesised = after
            .split_ascii_whitespace()
            .next()
            .map(|v| v.trim_end_matches(')').to_string());
    }
    let (version, old_version) = match action {
        StepAction::Install | StepAction::Configure => (parenthesised, bracketed),
        StepAction::Remove | StepAction::Purge => (bracketed, None),
    };
    Some(PlanStep {
        action,
        package: package.to_string(),
        version,
        old_version,
    })
}

/// A plan step's package without its `:arch`.
fn bare(package: &str) -> &str {
    package.split_once(':').map_or(package, |(n, _)| n)
}

/// Why an install plan must not run, if it must not: it removes packages.
pub fn install_problem(plan: &[PlanStep]) -> Option<String> {
    let removed: Vec<&str> = plan
        .iter()
        .filter(|s| matches!(s.action, StepAction::Remove | StepAction::Purge))
        .map(|s| s.package.as_str())
        .collect();
    (!removed.is_empty()).then(|| {
        format!(
            "this install would remove {}; remove them first with pkg.remove (which is decided on its own), then install",
            removed.join(", ")
        )
    })
}

/// Why a removal plan must not run, if it must not: it installs packages, or removes
/// packages the call did not name.
pub fn remove_problem(plan: &[PlanStep], named: &[PackageSpec]) -> Option<String> {
    let installed: Vec<&str> = plan
        .iter()
        .filter(|s| s.action == StepAction::Install)
        .map(|s| s.package.as_str())
        .collect();
    if !installed.is_empty() {
        return Some(format!(
            "this removal would install {}; check the package names (apt reads an unknown name ending in + as \"install\")",
            installed.join(", ")
        ));
    }
    let names: BTreeSet<&str> = named.iter().map(|p| p.name.as_str()).collect();
    let extra: Vec<&str> = plan
        .iter()
        .filter(|s| matches!(s.action, StepAction::Remove | StepAction::Purge))
        .map(|s| bare(&s.package))
        .filter(|p| !names.contains(p))
        .collect();
    (!extra.is_empty()).then(|| {
        format!(
            "removing these would also remove {} (they depend on them); name them all in packages to remove them together",
            extra.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTALL: &str = "NOTE: This is only a simulation!
      apt-get needs root privileges for real execution.
      Keep also in mind that locking is deactivated,
      so don't depend on the relevance to the real current situation!
Reading package lists...
Building dependency tree...
Reading state information...
The following additional packages will be installed:
  libtext-charwidth-perl
The following NEW packages will be installed:
  cowsay libtext-charwidth-perl
The following packages will be upgraded:
  bash
1 upgraded, 2 newly installed, 0 to remove and 80 not upgraded.
Inst libtext-charwidth-perl (0.04-11 Debian:12.14/oldstable [amd64])
Inst cowsay (3.03+dfsg2-8 Debian:12.14/oldstable [all])
Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.14/oldstable [amd64])
Inst libc6:i386 (2.36-9+deb12u10 Debian-Security:12/oldstable-security [i386]) []
Conf libtext-charwidth-perl (0.04-11 Debian:12.14/oldstable [amd64])
Conf cowsay (3.03+dfsg2-8 Debian:12.14/oldstable [all])
Conf bash (5.2.15-2+b13 Debian:12.14/oldstable [amd64])
";

    fn step(action: StepAction, package: &str, version: &str, old: Option<&str>) -> PlanStep {
        PlanStep {
            action,
            package: package.into(),
            version: Some(version.into()),
            old_version: old.map(str::to_string),
        }
    }

    #[test]
    fn install_plans_parse() {
        use StepAction::*;
        pretty_assertions::assert_eq!(
            parse_plan(INSTALL),
            vec![
                step(Install, "libtext-charwidth-perl", "0.04-11", None),
                step(Install, "cowsay", "3.03+dfsg2-8", None),
                step(Install, "bash", "5.2.15-2+b13", Some("5.2.15-2+b8")),
                step(Install, "libc6:i386", "2.36-9+deb12u10", None),
                step(Configure, "libtext-charwidth-perl", "0.04-11", None),
                step(Configure, "cowsay", "3.03+dfsg2-8", None),
                step(Configure, "bash", "5.2.15-2+b13", None),
            ]
        );
        assert_eq!(install_problem(&parse_plan(INSTALL)), None);
    }

    #[test]
    fn removal_plans_parse_and_are_checked() {
        use StepAction::*;
        let text = "Remv hello [2.10-3]\nPurg tk-dev [8.6.13]\nPurg build-essential:amd64 [12.9]\n";
        let plan = parse_plan(text);
        assert_eq!(
            plan,
            vec![
                step(Remove, "hello", "2.10-3", None),
                step(Purge, "tk-dev", "8.6.13", None),
                step(Purge, "build-essential:amd64", "12.9", None),
            ]
        );
        let named = |names: &[&str]| {
            names
                .iter()
                .map(|n| parse_package(n).unwrap())
                .collect::<Vec<_>>()
        };
        let all = named(&["hello", "tk-dev", "build-essential"]);
        assert_eq!(remove_problem(&plan, &all), None);
        let why = remove_problem(&plan, &named(&["hello"])).unwrap();
        assert!(why.contains("also remove tk-dev, build-essential"), "{why}");
        // `remove hello+` where hello+ does not exist: apt installs hello.
        let sneaky = parse_plan(
            "Inst hello (2.10-3 Debian:12 [amd64])\nConf hello (2.10-3 Debian:12 [amd64])\n",
        );
        assert!(
            remove_problem(&sneaky, &named(&["hello+"]))
                .unwrap()
                .contains("would install hello")
        );
        // An install that removes a conflicting package is not carried out.
        let conflict = parse_plan("Remv mawk [1.3.4]\nInst gawk (1:5.2.1-2 Debian:12 [amd64])\n");
        assert!(
            install_problem(&conflict)
                .unwrap()
                .contains("would remove mawk")
        );
    }

    #[test]
    fn other_lines_are_ignored() {
        assert!(parse_plan("E: Unable to locate package nope\nInstalling\nInst\n").is_empty());
    }

    #[test]
    fn package_names_follow_debian_policy() {
        for ok in [
            "hello",
            "g++",
            "libstdc++6",
            "python3.11",
            "0ad",
            "lib32z1-dev",
        ] {
            assert_eq!(parse_package(ok).unwrap().name, ok);
        }
        let pinned = parse_package("bash=5.2.15-2+b13").unwrap();
        assert_eq!(pinned.version.as_deref(), Some("5.2.15-2+b13"));
        assert_eq!(pinned.apt_arg(), "bash=5.2.15-2+b13");
        assert_eq!(
            parse_package("vim=2:9.0.1378-2")
                .unwrap()
                .version
                .as_deref(),
            Some("2:9.0.1378-2")
        );
        for bad in [
            "",
            "a",
            "Hello",
            "-y",
            "--purge",
            "hello world",
            "hello;rm",
            "../x",
            "hello/stable",
            "hello:amd64",
            "he*",
            "bash-",
            "bash=",
            "bash=abc",
            "bash=1 2",
            "+x",
        ] {
            assert!(parse_package(bad).is_err(), "{bad:?}");
        }
        assert!(parse_package("bash-").unwrap_err().contains("remove"));
        assert!(
            parse_packages(&["a1".into(), "a1".into()])
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(parse_packages(&[]).is_err());
    }
}
