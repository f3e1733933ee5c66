//! The cortex registry on real files: `user/cortices.toml` round trips, validation, key files
//! and environment keys, and the drivers it builds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use gyrus_cortex::driver::Timeouts;
use gyrus_cortex::registry::{
    CortexSpec, DriverKind, KeySource, Registry, RegistryError, Tier, build_driver, resolve_key,
    resolve_model,
};
use gyrus_cortex::types::Price;
use pretty_assertions::assert_eq;

const KEY: &str = "sk-test-0123456789abcdef";

/// A home-like temp dir with a `user/` layer (mode 0700).
fn user_dir() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let user = home.path().join("user");
    fs::create_dir(&user).unwrap();
    fs::set_permissions(&user, fs::Permissions::from_mode(0o700)).unwrap();
    (home, user)
}

fn write_key(path: &Path, content: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn claude() -> CortexSpec {
    CortexSpec {
        key: KeySource::Env("ANTHROPIC_API_KEY".into()),
        price: Some(Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
        }),
        ..CortexSpec::new(
            "claude",
            DriverKind::Anthropic,
            "claude-sonnet-4-5",
            Tier::Strategic,
        )
    }
}

fn vllm() -> CortexSpec {
    CortexSpec {
        url: Some("http://127.0.0.1:8000/v1".into()),
        key: KeySource::File("keys/vllm".into()),
        max_concurrency: 8,
        ..CortexSpec::new(
            "qwen-14b",
            DriverKind::Openai,
            "Qwen/Qwen2.5-14B",
            Tier::Tactical,
        )
    }
}

fn smol() -> CortexSpec {
    CortexSpec::new("smol", DriverKind::Local, "smollm2", Tier::Operational)
}

fn small() -> CortexSpec {
    CortexSpec::new(
        "llama3.2",
        DriverKind::Ollama,
        "llama3.2:3b",
        Tier::Operational,
    )
}

fn names(registry: &Registry) -> Vec<&str> {
    registry.list().iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn add_list_remove_save_reopen_round_trip() {
    let (_home, user) = user_dir();
    let path = user.join("cortices.toml");
    let mut registry = Registry::open(&path).unwrap();
    assert!(
        registry.list().is_empty(),
        "a missing file is an empty registry"
    );
    assert!(!path.exists(), "opening does not create the file");

    for spec in [claude(), vllm(), smol(), small()] {
        registry.add(spec).unwrap();
    }
    assert_eq!(names(&registry), ["llama3.2", "smol", "qwen-14b", "claude"]);
    assert_eq!(registry.get("claude"), Some(&claude()));
    assert_eq!(registry.get("nope"), None);
    registry.save().unwrap();

    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = fs::read_dir(&user)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["cortices.toml"],
        "no temporary file left behind"
    );

    let reopened = Registry::open(&path).unwrap();
    assert_eq!(reopened.list(), registry.list());
    assert_eq!(reopened.get("qwen-14b").unwrap().max_concurrency, 8);
    assert_eq!(reopened.get("smol").unwrap().max_concurrency, 1);
    assert_eq!(reopened.get("claude").unwrap().max_concurrency, 4);

    let mut registry = reopened;
    let removed = registry.remove("smol").unwrap();
    assert_eq!(removed, smol());
    registry.save().unwrap();
    let reopened = Registry::open(&path).unwrap();
    assert_eq!(names(&reopened), ["llama3.2", "qwen-14b", "claude"]);
}

#[test]
fn the_file_holds_no_key_material() {
    let (_home, user) = user_dir();
    write_key(&user.join("keys/vllm"), KEY, 0o600);
    let path = user.join("cortices.toml");
    let mut registry = Registry::open(&path).unwrap();
    registry.add(claude()).unwrap();
    registry.add(vllm()).unwrap();
    registry.save().unwrap();

    // Both keys are resolvable, yet neither is in the file: only where to find them is.
    let env = |var: &str| (var == "ANTHROPIC_API_KEY").then(|| KEY.to_owned());
    for spec in registry.list() {
        let key = resolve_key(spec, &user, env).unwrap().unwrap();
        assert_eq!(key.expose(), KEY);
    }
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains(KEY), "{text}");
    assert!(text.contains("key_env = \"ANTHROPIC_API_KEY\""), "{text}");
    assert!(text.contains("key_file = \"keys/vllm\""), "{text}");
    assert!(text.contains("[[cortex]]"), "{text}");
}

#[test]
fn the_file_format_is_flat_and_defaults_apply() {
    let (_home, user) = user_dir();
    let path = user.join("cortices.toml");
    fs::write(
        &path,
        r#"
[[cortex]]
name = "gemini"
driver = "gemini"
model = "gemini-2.5-pro"
tier = "strategic"
key_env = "GEMINI_API_KEY"
price_in = 1.25
price_out = 10.0
"#,
    )
    .unwrap();
    let registry = Registry::open(&path).unwrap();
    let spec = registry.get("gemini").unwrap();
    assert_eq!(
        spec,
        &CortexSpec {
            key: KeySource::Env("GEMINI_API_KEY".into()),
            price: Some(Price {
                input_per_mtok: 1.25,
                output_per_mtok: 10.0
            }),
            ..CortexSpec::new(
                "gemini",
                DriverKind::Gemini,
                "gemini-2.5-pro",
                Tier::Strategic
            )
        }
    );
    assert_eq!(
        spec.base_url(),
        Some("https://generativelanguage.googleapis.com")
    );
}

#[test]
fn duplicate_and_missing_names_are_errors() {
    let (_home, user) = user_dir();
    let mut registry = Registry::open(user.join("cortices.toml")).unwrap();
    registry.add(claude()).unwrap();
    let err = registry.add(claude()).unwrap_err();
    assert!(matches!(err, RegistryError::Duplicate(ref n) if n == "claude"));
    assert!(
        err.to_string().contains("gyrus cortex remove claude"),
        "{err}"
    );

    let err = registry.remove("nope").unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(_)));
    assert!(err.to_string().contains("gyrus cortex list"), "{err}");
    assert_eq!(names(&registry), ["claude"]);
}

/// Opens a registry file with `body` and returns the error's message.
fn open_error(body: &str) -> String {
    let (_home, user) = user_dir();
    let path = user.join("cortices.toml");
    fs::write(&path, body).unwrap();
    let err = Registry::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("cortices.toml"),
        "names the file: {message}"
    );
    message
}

#[test]
fn bad_files_are_errors_naming_the_problem() {
    let entry =
        "[[cortex]]\nname = \"x\"\ndriver = \"ollama\"\nmodel = \"m\"\ntier = \"tactical\"\n";

    let message = open_error(&format!("{entry}api_key = \"{KEY}\"\n"));
    assert!(message.contains("unknown field `api_key`"), "{message}");
    assert!(message.contains("line 6"), "{message}");
    assert!(!message.contains(KEY), "{message}");

    let message = open_error("[daemon]\nx = 1\n");
    assert!(message.contains("unknown field `daemon`"), "{message}");

    let message = open_error(&entry.replace("ollama", "bard"));
    assert!(message.contains("unknown variant `bard`"), "{message}");

    let message = open_error(&format!("{entry}{entry}"));
    assert!(message.contains("already exists"), "{message}");

    let message = open_error(&format!("{entry}key_env = \"A\"\nkey_file = \"k\"\n"));
    assert!(message.contains("both set"), "{message}");

    let message = open_error(&format!("{entry}price_in = 1.0\n"));
    assert!(message.contains("set both, or neither"), "{message}");

    let message = open_error(&format!("{entry}max_concurrency = 0\n"));
    assert!(message.contains("max_concurrency is 0"), "{message}");
    assert!(message.contains("fix or remove"), "{message}");

    let message = open_error("[[cortex]\n");
    assert!(message.contains("line 1"), "{message}");
}

#[test]
fn every_validation_error_says_what_to_do() {
    let local = smol;
    let cases: Vec<(CortexSpec, &str)> = vec![
        (
            CortexSpec {
                name: "".into(),
                ..small()
            },
            "1 to 63 characters",
        ),
        (
            CortexSpec {
                name: "Claude".into(),
                ..small()
            },
            "not valid",
        ),
        (
            CortexSpec {
                name: "a/b".into(),
                ..small()
            },
            "gyrus/<name>",
        ),
        (
            CortexSpec {
                name: "-a".into(),
                ..small()
            },
            "starting with a letter or digit",
        ),
        (
            CortexSpec {
                name: "a".repeat(64),
                ..small()
            },
            "1 to 63",
        ),
        (
            CortexSpec {
                model: "".into(),
                ..small()
            },
            "model is empty",
        ),
        (
            CortexSpec {
                model: "a b".into(),
                ..small()
            },
            "spaces",
        ),
        (
            CortexSpec {
                url: None,
                ..vllm()
            },
            "needs the server's base URL: add --url",
        ),
        (
            CortexSpec {
                url: Some("ftp://host/v1".into()),
                ..vllm()
            },
            "http:// or https://",
        ),
        (
            CortexSpec {
                url: Some("not a url".into()),
                ..vllm()
            },
            "not a valid URL",
        ),
        (
            CortexSpec {
                url: Some("http://u:pw@host/v1".into()),
                ..vllm()
            },
            "--key-env",
        ),
        (
            CortexSpec {
                url: Some("https://h/v1?key=abc".into()),
                ..vllm()
            },
            "query",
        ),
        (
            CortexSpec {
                max_concurrency: 0,
                ..small()
            },
            "between 1 and 256",
        ),
        (
            CortexSpec {
                max_concurrency: 257,
                ..small()
            },
            "between 1 and 256",
        ),
        (
            CortexSpec {
                price: Some(Price {
                    input_per_mtok: -1.0,
                    output_per_mtok: 1.0,
                }),
                ..small()
            },
            "price_in is -1",
        ),
        (
            CortexSpec {
                price: Some(Price {
                    input_per_mtok: 1.0,
                    output_per_mtok: f64::NAN,
                }),
                ..small()
            },
            "price_out is NaN",
        ),
        (
            CortexSpec {
                price: Some(Price {
                    input_per_mtok: f64::INFINITY,
                    output_per_mtok: 1.0,
                }),
                ..small()
            },
            "0 or more",
        ),
        (
            CortexSpec {
                key: KeySource::Env("api_key".into()),
                ..claude()
            },
            "in capitals",
        ),
        (
            CortexSpec {
                key: KeySource::Env("1KEY".into()),
                ..claude()
            },
            "environment variable",
        ),
        (
            CortexSpec {
                key: KeySource::File("/etc/key".into()),
                ..vllm()
            },
            "is absolute",
        ),
        (
            CortexSpec {
                key: KeySource::File("../key".into()),
                ..vllm()
            },
            "leaves user/ with `..`",
        ),
        (
            CortexSpec {
                key: KeySource::File("a/../../k".into()),
                ..vllm()
            },
            "`..`",
        ),
        (
            CortexSpec {
                key: KeySource::File("".into()),
                ..vllm()
            },
            "must name a file",
        ),
        (
            CortexSpec {
                key: KeySource::File(".".into()),
                ..vllm()
            },
            "must name a file",
        ),
        (
            CortexSpec {
                model: "model.bin".into(),
                ..local()
            },
            "not a .gguf file",
        ),
        (
            CortexSpec {
                model: "m.gguf".into(),
                ..local()
            },
            "relative path",
        ),
        (
            CortexSpec {
                model: "".into(),
                ..local()
            },
            "aliases smollm2",
        ),
        (
            CortexSpec {
                url: Some("http://h".into()),
                ..local()
            },
            "drop --url",
        ),
        (
            CortexSpec {
                key: KeySource::Env("K".into()),
                ..local()
            },
            "needs no key",
        ),
    ];
    for (spec, expected) in cases {
        let err = spec.validate().unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{spec:?}: {message}");
    }

    // What is valid.
    for spec in [
        claude(),
        vllm(),
        smol(),
        small(),
        CortexSpec {
            model: "/models/q.GGUF".into(),
            ..smol()
        },
        CortexSpec {
            url: Some("https://openrouter.ai/api/v1".into()),
            ..vllm()
        },
        CortexSpec {
            max_concurrency: 256,
            ..small()
        },
        CortexSpec {
            price: Some(Price {
                input_per_mtok: 0.0,
                output_per_mtok: 0.0,
            }),
            ..smol()
        },
    ] {
        spec.validate().unwrap();
    }
}

#[test]
fn a_pasted_key_is_refused_without_being_repeated() {
    for key in [
        KeySource::Env("sk-ant-api03-abcdef".into()),
        KeySource::Env("AIzaSyAbcdefGhijk".into()),
        KeySource::File("sk-ant-api03-abcdef".into()),
        KeySource::File("AIzaSyAbcdefGhijk".into()),
    ] {
        let pasted = match &key {
            KeySource::Env(v) => v.clone(),
            KeySource::File(p) => p.display().to_string(),
            KeySource::None => unreachable!(),
        };
        let message = CortexSpec { key, ..claude() }
            .validate()
            .unwrap_err()
            .to_string();
        assert!(!message.contains(&pasted), "{message}");
    }
}

#[test]
fn tiers_and_drivers_parse_with_a_clear_error() {
    assert_eq!("tactical".parse::<Tier>().unwrap(), Tier::Tactical);
    let message = "fast".parse::<Tier>().unwrap_err().to_string();
    assert_eq!(
        message,
        "unknown tier `fast`: use one of reactive, operational, tactical, strategic"
    );
    assert_eq!("ollama".parse::<DriverKind>().unwrap(), DriverKind::Ollama);
    let message = "OpenAI".parse::<DriverKind>().unwrap_err().to_string();
    assert!(
        message.contains("openai, anthropic, gemini, ollama, local"),
        "{message}"
    );
    let mut tiers = vec![
        Tier::Strategic,
        Tier::Reactive,
        Tier::Tactical,
        Tier::Operational,
    ];
    tiers.sort();
    assert_eq!(tiers, Tier::ALL);
}

#[test]
fn key_file_with_mode_0600_or_stricter_is_read_and_trimmed() {
    let (_home, user) = user_dir();
    let spec = vllm();
    for mode in [0o600, 0o400] {
        write_key(&user.join("keys/vllm"), &format!("  {KEY}\n"), mode);
        let key = resolve_key(&spec, &user, no_env).unwrap().unwrap();
        assert_eq!(key.expose(), KEY);
        fs::remove_file(user.join("keys/vllm")).unwrap();
    }
}

/// Resolves the key of `vllm()` and returns the error's message, checking it has no key in it.
fn key_error(user: &Path) -> String {
    let err = resolve_key(&vllm(), user, no_env).unwrap_err();
    assert!(matches!(err, RegistryError::Key { .. }), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains(KEY), "{message}");
    message
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let (_home, user) = user_dir();
    for mode in [0o644, 0o640, 0o604, 0o700, 0o660] {
        write_key(&user.join("keys/vllm"), KEY, mode);
        let message = key_error(&user);
        assert!(message.contains("chmod 600"), "{mode:o}: {message}");
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
    }
}

#[test]
fn key_file_symlinked_out_of_the_user_layer_is_refused() {
    let (home, user) = user_dir();
    let outside = home.path().join("outside-key");
    write_key(&outside, KEY, 0o600);
    fs::create_dir(user.join("keys")).unwrap();
    symlink(&outside, user.join("keys/vllm")).unwrap();
    let message = key_error(&user);
    assert!(message.contains("outside the user layer"), "{message}");

    // A symlink to a key file inside the layer is fine.
    write_key(&user.join("secrets/real"), KEY, 0o600);
    fs::remove_file(user.join("keys/vllm")).unwrap();
    symlink(user.join("secrets/real"), user.join("keys/vllm")).unwrap();
    assert_eq!(
        resolve_key(&vllm(), &user, no_env)
            .unwrap()
            .unwrap()
            .expose(),
        KEY
    );

    // So is a directory symlinked out on the way to the file.
    fs::remove_file(user.join("keys/vllm")).unwrap();
    fs::remove_dir(user.join("keys")).unwrap();
    let out_dir = home.path().join("out-dir");
    write_key(&out_dir.join("vllm"), KEY, 0o600);
    symlink(&out_dir, user.join("keys")).unwrap();
    let message = key_error(&user);
    assert!(message.contains("outside the user layer"), "{message}");
}

#[test]
fn key_file_with_dot_dot_is_refused_before_any_read() {
    let (home, user) = user_dir();
    write_key(&home.path().join("key"), KEY, 0o600);
    let spec = CortexSpec {
        key: KeySource::File("../key".into()),
        ..vllm()
    };
    let err = resolve_key(&spec, &user, no_env).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`..`"), "{message}");
}

#[test]
fn key_file_missing_empty_or_not_a_file_is_refused() {
    let (_home, user) = user_dir();
    let message = key_error(&user);
    assert!(message.contains("does not exist"), "{message}");

    write_key(&user.join("keys/vllm"), " \n\t", 0o600);
    let message = key_error(&user);
    assert!(message.contains("is empty"), "{message}");

    fs::remove_file(user.join("keys/vllm")).unwrap();
    fs::create_dir(user.join("keys/vllm")).unwrap();
    fs::set_permissions(user.join("keys/vllm"), fs::Permissions::from_mode(0o700)).unwrap();
    let message = key_error(&user);
    assert!(message.contains("not a regular file"), "{message}");
}

#[test]
fn env_key_missing_or_empty_is_an_error_naming_the_variable() {
    let (_home, user) = user_dir();
    let err = resolve_key(&claude(), &user, no_env).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("ANTHROPIC_API_KEY"), "{message}");
    assert!(message.contains("not set"), "{message}");

    let err = resolve_key(&claude(), &user, |_| Some("  ".into())).unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");

    let key = resolve_key(&claude(), &user, |v| {
        (v == "ANTHROPIC_API_KEY").then(|| format!("{KEY}\n"))
    })
    .unwrap()
    .unwrap();
    assert_eq!(key.expose(), KEY);
    assert!(!format!("{key:?}").contains(KEY));

    assert!(resolve_key(&small(), &user, no_env).unwrap().is_none());
}

#[test]
fn build_driver_gives_each_http_kind_a_driver_named_after_the_cortex() {
    let gemini = CortexSpec::new("gem", DriverKind::Gemini, "gemini-2.5-pro", Tier::Strategic);
    for spec in [claude(), vllm(), small(), gemini] {
        for key in [None, Some(KEY.into())] {
            let driver = build_driver(&spec, key, Timeouts::default()).unwrap();
            assert_eq!(driver.name(), spec.name);
            assert!(!format!("{driver:?}").contains(KEY));
        }
    }
    assert_eq!(claude().base_url(), Some("https://api.anthropic.com"));
    assert_eq!(small().base_url(), Some("http://127.0.0.1:11434"));
    assert_eq!(vllm().base_url(), Some("http://127.0.0.1:8000/v1"));

    let err = build_driver(&smol(), None, Timeouts::default()).unwrap_err();
    assert!(matches!(err, RegistryError::Local(_)));
    assert!(err.to_string().contains("the daemon loads itself"), "{err}");

    let err = build_driver(
        &CortexSpec {
            url: None,
            ..vllm()
        },
        None,
        Timeouts::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--url"), "{err}");
}

#[test]
fn local_models_resolve_aliases_in_the_models_dir() {
    let models = tempfile::tempdir().unwrap();
    let err = resolve_model(&smol(), models.path()).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let file = models.path().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    fs::write(&file, b"GGUF").unwrap();
    assert_eq!(resolve_model(&smol(), models.path()).unwrap(), file);

    let by_path = CortexSpec {
        model: file.display().to_string(),
        ..smol()
    };
    assert_eq!(
        resolve_model(&by_path, Path::new("/nowhere")).unwrap(),
        file
    );
    assert!(resolve_model(&small(), models.path()).is_err());
}
