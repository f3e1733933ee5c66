//! The field checks behind [`CortexSpec::validate`](super::CortexSpec::validate). Pure: no
//! file is read. Each returns what is wrong and what to do; the key checks never repeat a
//! value that may be a pasted key.

use std::path::{Component, Path};

use super::{LOCAL_ALIASES, RegistryError};

/// The longest model name or path accepted.
const MAX_MODEL_CHARS: usize = 1024;

pub(super) fn check_name(name: &str) -> Result<(), RegistryError> {
    let bytes = name.as_bytes();
    let ok = (1..=63).contains(&bytes.len())
        && bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Name {
            name: name.to_owned(),
        })
    }
}

pub(super) fn check_model(model: &str) -> Result<(), String> {
    if model.is_empty() {
        return Err("is empty: give the vendor's model name (--model)".into());
    }
    if model.chars().count() > MAX_MODEL_CHARS {
        return Err(format!("is longer than {MAX_MODEL_CHARS} characters"));
    }
    if model.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{}` has spaces or control characters: give the vendor's model name as it is",
            model.escape_debug()
        ));
    }
    Ok(())
}

pub(super) fn check_local_model(model: &str) -> Result<(), String> {
    if LOCAL_ALIASES.iter().any(|(alias, _)| *alias == model) {
        return Ok(());
    }
    let aliases: Vec<&str> = LOCAL_ALIASES.iter().map(|(a, _)| *a).collect();
    let what_to_do = format!(
        "give the absolute path of a .gguf file, or one of the aliases {}",
        aliases.join(", ")
    );
    if model.is_empty() {
        return Err(format!("is empty: {what_to_do}"));
    }
    if model.chars().count() > MAX_MODEL_CHARS || model.chars().any(char::is_control) {
        return Err(format!("is not a usable path: {what_to_do}"));
    }
    let path = Path::new(model);
    let is_gguf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if !is_gguf {
        return Err(format!("`{model}` is not a .gguf file: {what_to_do}"));
    }
    if !path.is_absolute() {
        return Err(format!(
            "`{model}` is a relative path, which would depend on where the daemon starts: \
             {what_to_do}"
        ));
    }
    Ok(())
}

pub(super) fn check_url(url: &str) -> Result<(), String> {
    // The message never repeats a URL with credentials in it.
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("is not a valid URL ({e}): give the server's base URL, like https://host/v1")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "has the scheme `{}`: use an http:// or https:// URL",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host: give the server's base URL, like https://host/v1".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "has a user name or password in it, which would be stored in the clear: \
             remove it and give the key with --key-env or --key-file"
                .into(),
        );
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(
            "has a query or fragment (`?…`, `#…`), which drivers do not keep: give the base URL \
             only, and the key with --key-env or --key-file"
                .into(),
        );
    }
    Ok(())
}

pub(super) fn check_env_name(var: &str) -> Result<(), String> {
    // Upper case only: a mixed-case value is more likely a pasted key than a variable name,
    // and the message does not repeat it, so a key never reaches a terminal or a log here.
    let bytes = var.as_bytes();
    let ok = (1..=128).contains(&bytes.len())
        && !bytes.first().is_some_and(u8::is_ascii_digit)
        && bytes
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(
            "must be the name of an environment variable, in capitals, digits and `_` \
             (like ANTHROPIC_API_KEY), not the key itself"
                .into(),
        )
    }
}

pub(super) fn check_key_path(path: &Path) -> Result<(), String> {
    let Some(text) = path.to_str() else {
        return Err("is not UTF-8: name the key file with a plain path inside user/".into());
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // A pasted key instead of a path: refuse it without repeating it.
    if file_name.starts_with("sk-") || file_name.starts_with("AIza") {
        return Err(
            "looks like a key, not a path: write the key into a file inside user/ and give \
             that file's path"
                .into(),
        );
    }
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err("must name a file inside user/, like keys/anthropic".into());
    }
    if path.is_absolute() {
        return Err(format!(
            "`{text}` is absolute: give the path relative to user/, like keys/anthropic"
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(format!(
            "`{text}` leaves user/ with `..`: keep key files inside user/, like keys/anthropic"
        ));
    }
    if path.components().all(|c| c == Component::CurDir) {
        return Err("must name a file inside user/, like keys/anthropic".into());
    }
    Ok(())
}
