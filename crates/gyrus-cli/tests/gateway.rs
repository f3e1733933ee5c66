//! The OpenAI-compatible gateway at `/v1`, end to end: a real daemon whose one cortex is an
//! `openai` cortex pointing at a scripted OpenAI-compatible server on loopback (standing in
//! for a paid API), driven with plain HTTP and with the official `openai` Python client.
//!
//! The Python client comes from `.cache/python/openai-<version>/` (or `GYRUS_PYTHONPATH`),
//! which `cargo xtask test` and `cargo xtask fetch-models` install.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/scripted.rs"]
mod scripted;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pretty_assertions::assert_eq;
use scripted::Scripted;
use serde_json::{Value, json};
use support::{Daemon, Response, ok};

/// Must match `OPENAI_PYTHON` in xtask/src/tools.rs.
const OPENAI_PYTHON: &str = "openai-3.57.0";

/// Writes `user/cortices.toml` with one `openai` cortex, `stub`, at the scripted server.
fn write_cortices(home: &Path, server: &Scripted) {
    let user = home.join("user");
    std::fs::create_dir_all(&user).unwrap();
    let path = user.join("cortices.toml");
    std::fs::write(
        &path,
        format!(
            "[[cortex]]\nname = \"stub\"\ndriver = \"openai\"\nmodel = \"{}\"\ntier = \"tactical\"\nurl = \"{}\"\n",
            scripted::MODEL,
            server.base_url()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    server: Scripted,
    daemon: Daemon,
    token: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let server = Scripted::start();
    write_cortices(&home, &server);
    let daemon = Daemon::start(&home, None, &[]);
    let token = daemon.create_token("gateway-test");
    Setup {
        _dir: dir,
        server,
        daemon,
        token,
    }
}

fn post(daemon: &Daemon, path: &str, token: Option<&str>, body: &Value) -> Response {
    let body = body.to_string();
    let auth = token.map_or(String::new(), |t| format!("\r\nAuthorization: Bearer {t}"));
    daemon.tcp(
        &format!(
            "POST {path} HTTP/1.1{auth}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    )
}

/// The `data:` payloads of a server-sent event stream, `[DONE]` as the string "[DONE]".
fn sse_events(body: &[u8]) -> Vec<Value> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let data = frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {frame:?}"));
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }}])
}

#[test]
fn completions_plain_streamed_and_with_tools() {
    let s = setup();
    let token = Some(s.token.as_str());

    // Models: gyrus/auto, then the cortex.
    let models = s.daemon.get("/v1/models", token);
    assert_eq!(
        models.status,
        200,
        "{}",
        String::from_utf8_lossy(&models.body)
    );
    let models = models.json();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gyrus/auto", "gyrus/stub"]);
    assert_eq!(models["data"][1]["object"], "model");
    assert_eq!(models["data"][1]["owned_by"], "gyrus");

    // A plain completion, with fields the gateway ignores.
    let r = post(
        &s.daemon,
        "/v1/chat/completions",
        token,
        &json!({
            "model": "gyrus/stub",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
            "max_tokens": 32, "temperature": 0.2, "stop": "END", "seed": 7,
            "user": "someone", "metadata": {"a": "b"}, "logprobs": false,
        }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-gyrus-cortex"), Some("stub"));
    assert_eq!(r.header("x-gyrus-tier"), Some("tactical"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "gyrus/stub");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], scripted::REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19})
    );
    // What the vendor got: the cortex's model and the request's settings, in OpenAI's shape.
    let sent = s.server.received().pop().unwrap();
    assert_eq!(sent["model"], scripted::MODEL);
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}])
    );
    assert_eq!(sent["max_tokens"], 32);
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["seed"], 7);

    // Streamed, with a usage-only chunk asked for.
    let r = post(
        &s.daemon,
        "/v1/chat/completions",
        token,
        &json!({
            "model": "gyrus/stub",
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": true, "stream_options": {"include_usage": true},
        }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(r.header("x-gyrus-cortex"), Some("stub"));
    let events = sse_events(&r.body);
    assert_eq!(events.last().unwrap(), &json!("[DONE]"));
    let chunks = &events[..events.len() - 1];
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, scripted::REPLY);
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["stop"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 19);
    // Its outcome was recorded once the stream ended: validated, with its tokens.
    let route_id: i64 = r.header("x-gyrus-route-id").unwrap().parse().unwrap();
    let log: Value = serde_json::from_str(&ok(s.daemon.cli(&["route", "log", "--json"]))).unwrap();
    let logged = log["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == route_id)
        .expect("the streamed call is in the route log")
        .clone();
    assert_eq!(logged["actual_outcome"], true, "{logged}");
    assert_eq!(logged["tokens"], 19, "{logged}");
    assert_eq!(logged["cortex"], "stub", "{logged}");

    // Streamed without include_usage: the usage rides on the finishing chunk.
    let r = post(
        &s.daemon,
        "/v1/chat/completions",
        token,
        &json!({"model": "stub", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
    );
    let events = sse_events(&r.body);
    let finishing = &events[events.len() - 2];
    assert_eq!(finishing["choices"][0]["finish_reason"], "stop");
    assert_eq!(finishing["usage"]["completion_tokens"], 7);

    // Tools: offered, called, answered.
    let question = json!({"role": "user", "content": "What is the weather in Paris?"});
    let r = post(
        &s.daemon,
        "/v1/chat/completions",
        token,
        &json!({"model": "gyrus/stub", "messages": [question], "tools": weather_tool(), "tool_choice": "auto"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    let call = &message["tool_calls"][0];
    assert_eq!(call["id"], scripted::CALL_ID);
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    let sent = s.server.received().pop().unwrap();
    assert_eq!(sent["tools"], weather_tool());
    assert_eq!(sent["tool_choice"], "auto");

    let r = post(
        &s.daemon,
        "/v1/chat/completions",
        token,
        &json!({"model": "gyrus/stub", "tools": weather_tool(), "messages": [
            question,
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": scripted::CALL_ID, "content": "sunny, 21 C"},
        ]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "The tool said: sunny, 21 C"
    );
    let sent = s.server.received().pop().unwrap();
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": scripted::CALL_ID, "content": "sunny, 21 C"})
    );

    // Tool calls streamed: index, id and name first, then the arguments in pieces.
    let r = post(
        &s.daemon,
        "/v1/chat/completions",
        token,
        &json!({"model": "gyrus/stub", "messages": [question], "tools": weather_tool(), "stream": true}),
    );
    let events = sse_events(&r.body);
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["id"], scripted::CALL_ID);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, scripted::TOOL_ARGUMENTS);
    let finish: Vec<&str> = events
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["tool_calls"]);
    assert_eq!(events.last().unwrap(), &json!("[DONE]"));
}

#[test]
fn embeddings_are_unit_vectors_as_floats_and_base64() {
    let s = setup();
    let token = Some(s.token.as_str());
    let r = post(
        &s.daemon,
        "/v1/embeddings",
        token,
        &json!({"model": "text-embedding-3-small", "input": ["the cat sat", "on the mat"]}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert!(v["model"].as_str().is_some_and(|m| !m.is_empty()));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let mut floats = Vec::new();
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let vector: Vec<f32> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(vector.len(), 384);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
        floats.push(vector);
    }
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // base64: little-endian f32, the same vector.
    let r = post(
        &s.daemon,
        "/v1/embeddings",
        token,
        &json!({"model": "x", "input": "the cat sat", "encoding_format": "base64"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let encoded = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_owned();
    let decoded: Vec<f32> = decode_base64(&encoded)
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(decoded.len(), 384);
    let distance: f32 = decoded
        .iter()
        .zip(&floats[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        distance < 1e-5,
        "base64 and float answers differ by {distance}"
    );

    let r = post(&s.daemon, "/v1/embeddings", token, &json!({"input": []}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for quad in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = quad
            .iter()
            .filter(|&&c| c != b'=')
            .map(|&c| value(c))
            .collect();
        let n = digits
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        for i in 0..digits.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn errors_come_in_openai_shape() {
    let s = setup();
    let token = Some(s.token.as_str());
    let hello = json!([{"role": "user", "content": "hi"}]);

    // No token: 401, before anything else.
    let r = post(
        &s.daemon,
        "/v1/chat/completions",
        None,
        &json!({"model": "gyrus/stub", "messages": hello}),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "unauthorized");
    assert_eq!(s.daemon.get("/v1/models", None).status, 401);

    let cases = [
        (
            json!({"model": "gyrus/nope", "messages": hello}),
            404,
            "model_not_found",
            "no cortex named `nope`",
        ),
        (
            json!({"model": "gyrus/stub", "messages": []}),
            400,
            "invalid_request",
            "`messages` is empty",
        ),
        (
            json!({"model": "gyrus/stub", "messages": [{"role": "wizard", "content": "x"}]}),
            400,
            "invalid_request",
            "unknown role `wizard`",
        ),
        (
            json!({"model": "gyrus/stub", "messages": hello, "n": 3}),
            400,
            "invalid_request",
            "`n` is 3",
        ),
        (
            json!({"model": "gyrus/stub", "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
            ]}),
            400,
            "invalid_request",
            "is not valid JSON",
        ),
        (
            json!({"messages": hello}),
            400,
            "invalid_body",
            "missing field `model`",
        ),
    ];
    for (body, status, code, says) in cases {
        let r = post(&s.daemon, "/v1/chat/completions", token, &body);
        assert_eq!(r.status, status, "{body}");
        let v = r.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    // Nothing malformed reached the vendor.
    assert_eq!(s.server.received(), Vec::<Value>::new());
}

/// The `openai` package's folder: `GYRUS_PYTHONPATH`, or where `cargo xtask fetch-models`
/// puts it.
fn openai_python() -> PathBuf {
    let path = std::env::var_os("GYRUS_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.cache/python")
                .join(OPENAI_PYTHON)
        });
    assert!(
        path.join("openai").is_dir(),
        "the openai Python client is not in {}: run `cargo xtask fetch-models` to install it",
        path.display()
    );
    path
}

const CLIENT_SCRIPT: &str = r#"
import json, sys
import openai

base_url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
out = {"version": openai.__version__}

raw = client.chat.completions.with_raw_response.create(
    model="gyrus/stub", messages=[{"role": "user", "content": "Say hello"}])
out["cortex"] = raw.headers.get("x-gyrus-cortex")
done = raw.parse()
out["completion"] = done.choices[0].message.content
out["finish"] = done.choices[0].finish_reason
out["total_tokens"] = done.usage.total_tokens

stream = client.chat.completions.create(
    model="gyrus/stub", messages=[{"role": "user", "content": "Say hello"}],
    stream=True, stream_options={"include_usage": True})
text, usage = "", None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage is not None:
        usage = chunk.usage.total_tokens
out["streamed"] = text
out["stream_usage"] = usage

tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
called = client.chat.completions.create(
    model="gyrus/stub", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools)
call = called.choices[0].message.tool_calls[0]
out["tool"] = [call.function.name, json.loads(call.function.arguments)]

emb = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "second text"])
out["embedding_dims"] = [len(d.embedding) for d in emb.data]
out["embedding_norm"] = sum(x * x for x in emb.data[0].embedding) ** 0.5

models = client.models.list()
out["models"] = [m.id for m in models.data]

try:
    client.chat.completions.create(model="gyrus/nope", messages=[{"role": "user", "content": "x"}])
    out["not_found"] = None
except openai.NotFoundError as e:
    out["not_found"] = e.status_code

print(json.dumps(out))
"#;

#[test]
fn the_official_openai_python_client_works() {
    let python_path = openai_python();
    let s = setup();
    let output = Command::new("python3")
        .arg("-c")
        .arg(CLIENT_SCRIPT)
        .arg(format!("http://{}/v1", s.daemon.addr))
        .arg(&s.token)
        .env("PYTHONPATH", &python_path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the Python client failed:\n{}\n{}\ndaemon:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        s.daemon.output()
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["version"], OPENAI_PYTHON.trim_start_matches("openai-"));
    assert_eq!(out["cortex"], "stub");
    assert_eq!(out["completion"], scripted::REPLY);
    assert_eq!(out["finish"], "stop");
    assert_eq!(out["total_tokens"], 19);
    assert_eq!(out["streamed"], scripted::REPLY);
    assert_eq!(out["stream_usage"], 19);
    assert_eq!(out["tool"], json!(["get_weather", {"city": "Paris"}]));
    assert_eq!(out["embedding_dims"], json!([384, 384]));
    let norm = out["embedding_norm"].as_f64().unwrap();
    assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    assert_eq!(out["models"], json!(["gyrus/auto", "gyrus/stub"]));
    assert_eq!(out["not_found"], 404);
}
