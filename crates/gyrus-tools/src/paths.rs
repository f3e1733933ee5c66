//! Paths as the broker sees them: absolute, with symlinks and `..` resolved, so a grant on a
//! directory covers exactly what lies in it.

use std::path::{Component, Path, PathBuf};

use crate::spec::ToolError;

/// Resolves `path` to what a call would touch. It must be absolute. The longest existing
/// ancestor is canonicalised (symlinks and `..` resolved by the kernel); the parts below it,
/// which do not exist, are appended with `..` applied lexically (nothing there can be a
/// symlink). With `follow_last` false the last part is not followed if it is a symlink (for
/// calls that act on the link itself: delete, move).
pub fn resolve(path: &str, follow_last: bool) -> Result<PathBuf, ToolError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(ToolError::InvalidArgs(format!(
            "path {path:?} is not absolute; give the full path, e.g. /home/you/project/file.txt"
        )));
    }
    if path.contains('\0') {
        return Err(ToolError::InvalidArgs("a path may not contain NUL".into()));
    }
    let lexical = normalise(p);
    if !follow_last {
        let (Some(parent), Some(name)) = (lexical.parent(), lexical.file_name()) else {
            return Ok(lexical);
        };
        return Ok(resolve_existing_prefix(parent)?.join(name));
    }
    resolve_existing_prefix(&lexical)
}

/// `..` and `.` applied lexically (`/a/b/../c` → `/a/c`); never climbs above `/`.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn resolve_existing_prefix(p: &Path) -> Result<PathBuf, ToolError> {
    // Walk up to the deepest ancestor that exists, canonicalise it, put the rest back.
    let mut rest = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        match std::fs::canonicalize(&cur) {
            Ok(real) => {
                let mut real = real;
                for part in rest.iter().rev() {
                    real.push(part);
                }
                return Ok(real);
            }
            Err(_) => match (cur.parent(), cur.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    cur = parent.to_path_buf();
                }
                _ => return Ok(p.to_path_buf()),
            },
        }
    }
}

/// The broker's resource for a resolved path: `path:/…`. A path that is not UTF-8 cannot be
/// named in a grant, so it is refused.
pub fn resource(path: &Path) -> Result<String, ToolError> {
    let text = path.to_str().ok_or_else(|| {
        ToolError::InvalidArgs(format!(
            "path {} is not valid UTF-8; gyrus cannot name it in a grant",
            path.display()
        ))
    })?;
    Ok(format!("path:{text}"))
}

/// The resource for everything under a directory: `path:/dir/**`.
pub fn tree_resource(dir: &Path) -> Result<String, ToolError> {
    let base = resource(dir)?;
    Ok(if base.ends_with('/') {
        format!("{base}**")
    } else {
        format!("{base}/**")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_is_resolved_before_the_broker_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("granted")).unwrap();
        let sneaky = format!("{}/granted/../secret", root.display());
        assert_eq!(resolve(&sneaky, true).unwrap(), root.join("secret"));
    }

    #[test]
    fn symlinks_resolve_to_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("granted")).unwrap();
        std::fs::write(root.join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("secret"), root.join("granted/link")).unwrap();
        let link = format!("{}/granted/link", root.display());
        assert_eq!(resolve(&link, true).unwrap(), root.join("secret"));
        assert_eq!(resolve(&link, false).unwrap(), root.join("granted/link"));
        // A symlinked directory in the middle is followed even when the last part is not.
        std::os::unix::fs::symlink(root.join("granted"), root.join("alias")).unwrap();
        let via = format!("{}/alias/new.txt", root.display());
        assert_eq!(resolve(&via, false).unwrap(), root.join("granted/new.txt"));
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(matches!(
            resolve("notes.txt", true),
            Err(ToolError::InvalidArgs(_))
        ));
    }
}
