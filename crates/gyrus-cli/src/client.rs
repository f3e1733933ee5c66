//! How client commands reach the daemon: its Unix socket (the owner), or HTTP with a token
//! when `GYRUS_URL` and `GYRUS_TOKEN` are set (a thin client on another device).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use gyrus_home::{Home, resolve};

/// How long a client waits for the daemon before giving up.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Transport {
    Unix {
        socket: PathBuf,
        home: PathBuf,
    },
    Http {
        authority: String,
        base: String,
        token: String,
    },
}

/// A connection recipe to the daemon.
#[derive(Debug)]
pub struct Client {
    transport: Transport,
    /// The local home, when talking over its socket.
    pub home: Option<Home>,
}

impl Client {
    /// Chooses the transport: HTTP when `GYRUS_URL` is set, else the home's socket.
    pub fn from_env(home_flag: Option<&Path>) -> anyhow::Result<Client> {
        let url = std::env::var("GYRUS_URL").ok().filter(|v| !v.is_empty());
        let token = std::env::var("GYRUS_TOKEN").ok().filter(|v| !v.is_empty());
        match (url, token) {
            (Some(url), Some(token)) => Client::http(&url, token),
            (Some(_), None) => bail!(
                "GYRUS_URL is set but GYRUS_TOKEN is not; set both to reach a remote gyrus, or unset GYRUS_URL to use the local socket"
            ),
            (None, _) => {
                let resolved = resolve(home_flag, |k| std::env::var_os(k))?;
                let home = Home::new(resolved.path);
                Ok(Client {
                    transport: Transport::Unix {
                        socket: home.socket_path(),
                        home: home.root().to_path_buf(),
                    },
                    home: Some(home),
                })
            }
        }
    }

    fn http(url: &str, token: String) -> anyhow::Result<Client> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            bail!(
                "GYRUS_URL uses https, which this client does not speak yet; reach the daemon through a tunnel (ssh -L 7878:127.0.0.1:7878 HOST) and use GYRUS_URL=http://127.0.0.1:7878"
            )
        } else {
            bail!("GYRUS_URL must look like http://HOST:PORT, got {url:?}")
        };
        let (authority, base) = match rest.split_once('/') {
            Some((a, b)) => (a, format!("/{}", b.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        if authority.is_empty() {
            bail!("GYRUS_URL must look like http://HOST:PORT, got {url:?}");
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Client {
            transport: Transport::Http {
                authority,
                base: if base == "/" { String::new() } else { base },
                token,
            },
            home: None,
        })
    }

    /// Sends a request and returns the JSON body of a successful answer; an error answer
    /// becomes an error carrying the daemon's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, bytes) = tokio::time::timeout(TIMEOUT, self.send(method, path, body))
            .await
            .map_err(|_| anyhow!("gyrus did not answer within {} s", TIMEOUT.as_secs()))??;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("the daemon answered {status}"));
        Err(anyhow!(message))
    }

    /// Sends a request and returns the status and the JSON body (`null` if not JSON),
    /// whatever the status; only a failure to reach the daemon, or no answer within
    /// `timeout`, is an error (`gyrus mcp` maps each status to MCP itself).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let (status, bytes) = tokio::time::timeout(timeout, self.send(method, path, body))
            .await
            .map_err(|_| anyhow!("gyrus did not answer within {} s", timeout.as_secs()))??;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder().method(method);
        let payload = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&v)?)
            }
            None => Bytes::new(),
        };
        match &self.transport {
            Transport::Unix { socket, home } => {
                let stream = match UnixStream::connect(socket).await {
                    Ok(s) => s,
                    Err(e) => return Err(not_running(home, socket, &e)),
                };
                let request = request
                    .uri(path)
                    .header(header::HOST, "localhost")
                    .body(Full::new(payload))?;
                exchange(stream, request).await
            }
            Transport::Http {
                authority,
                base,
                token,
            } => {
                let stream = TcpStream::connect(authority.as_str())
                    .await
                    .with_context(|| format!("cannot reach gyrus at http://{authority}"))?;
                let request = request
                    .uri(format!("{base}{path}"))
                    .header(header::HOST, authority.as_str())
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Full::new(payload))?;
                exchange(stream, request).await
            }
        }
    }
}

fn not_running(home: &Path, socket: &Path, error: &std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind::{ConnectionRefused, NotFound};
    match error.kind() {
        NotFound | ConnectionRefused => anyhow!(
            "gyrus is not running for home {} (no daemon on {}); start it with `gyrus up`",
            home.display(),
            socket.display()
        ),
        _ => anyhow!("cannot connect to {}: {error}", socket.display()),
    }
}

async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with gyrus failed")?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .context("gyrus closed the connection")?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .context("reading gyrus's answer failed")?
        .to_bytes();
    driver.abort();
    Ok((status, bytes))
}
