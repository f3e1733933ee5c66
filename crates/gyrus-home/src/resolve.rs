//! Which directory is the home: `--home`, else `GYRUS_HOME`, else `$XDG_DATA_HOME/gyrus`,
//! else `~/.local/share/gyrus`. Pure: the caller passes the environment in.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the chosen home came from, for messages such as `gyrus status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeSource {
    /// The `--home DIR` flag.
    Flag,
    /// The `GYRUS_HOME` environment variable.
    EnvGyrusHome,
    /// `$XDG_DATA_HOME/gyrus`.
    XdgDataHome,
    /// `$HOME/.local/share/gyrus`.
    Default,
}

impl fmt::Display for HomeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HomeSource::Flag => "--home",
            HomeSource::EnvGyrusHome => "GYRUS_HOME",
            HomeSource::XdgDataHome => "XDG_DATA_HOME",
            HomeSource::Default => "default",
        })
    }
}

/// A resolved, absolute home path and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Absolute path of the home directory (it may not exist yet).
    pub path: PathBuf,
    /// Which rule chose it.
    pub source: HomeSource,
}

/// The home could not be determined.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// None of `--home`, `GYRUS_HOME`, `XDG_DATA_HOME` or `HOME` is set.
    #[error("cannot tell where the gyrus home is: pass --home DIR or set GYRUS_HOME")]
    NoHome,
    /// A relative path was given and the working directory is unknown.
    #[error("cannot make {path} absolute: {reason}")]
    NotAbsolute {
        /// The path as given.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

/// Resolves the home from the flag and an environment lookup (`env("GYRUS_HOME")`, …).
///
/// Empty values count as unset, as the XDG specification asks. Relative paths are made absolute
/// against the current directory, because the daemon publishes paths (the socket) to others.
pub fn resolve(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Resolved, ResolveError> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let (path, source) = if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        (p.to_path_buf(), HomeSource::Flag)
    } else if let Some(p) = set("GYRUS_HOME") {
        (p, HomeSource::EnvGyrusHome)
    } else if let Some(p) = set("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        // The XDG spec says relative values are invalid and must be ignored.
        (p.join("gyrus"), HomeSource::XdgDataHome)
    } else if let Some(p) = set("HOME") {
        (p.join(".local/share/gyrus"), HomeSource::Default)
    } else {
        return Err(ResolveError::NoHome);
    };
    let path = std::path::absolute(&path).map_err(|e| ResolveError::NotAbsolute {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Resolved { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn check(
        flag: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> Result<(String, HomeSource), ResolveError> {
        resolve(flag.map(Path::new), env(pairs)).map(|r| (r.path.display().to_string(), r.source))
    }

    #[test]
    fn precedence_is_flag_then_env_then_xdg_then_home() {
        let all = [
            ("GYRUS_HOME", "/g"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(check(Some("/f"), &all), Ok(("/f".into(), HomeSource::Flag)));
        assert_eq!(
            check(None, &all),
            Ok(("/g".into(), HomeSource::EnvGyrusHome))
        );
        assert_eq!(
            check(None, &all[1..]),
            Ok(("/xdg/gyrus".into(), HomeSource::XdgDataHome))
        );
        assert_eq!(
            check(None, &all[2..]),
            Ok(("/home/u/.local/share/gyrus".into(), HomeSource::Default))
        );
        assert_eq!(check(None, &[]), Err(ResolveError::NoHome));
    }

    #[test]
    fn empty_and_relative_xdg_values_are_ignored() {
        let pairs = [("GYRUS_HOME", ""), ("XDG_DATA_HOME", "rel"), ("HOME", "/h")];
        assert_eq!(
            check(None, &pairs),
            Ok(("/h/.local/share/gyrus".into(), HomeSource::Default))
        );
    }

    #[test]
    fn relative_flag_becomes_absolute() {
        let (path, _) = check(Some("rel/home"), &[]).unwrap();
        assert!(Path::new(&path).is_absolute(), "{path}");
        assert!(path.ends_with("rel/home"), "{path}");
    }
}
