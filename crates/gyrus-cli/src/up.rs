//! `gyrus up`: initialise the home, take the one-daemon lock, serve the API on TCP and on the
//! owner's Unix socket, and shut down cleanly on SIGINT/SIGTERM.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use gyrus_api::{ApiState, ApiStateInit};
use gyrus_home::{Config, DaemonLock, Home, Layer, LockError, resolve};
use gyrus_policy::TokenStore;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::cli::UpArgs;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The longest path a Unix socket address holds on Linux (`sun_path` is 108 bytes with NUL).
const MAX_SOCKET_PATH: usize = 107;

pub fn run(home_flag: Option<&Path>, args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    init_logging("info");
    let resolved = resolve(home_flag, |k| std::env::var_os(k))?;
    let home = Home::new(&resolved.path);
    let report = home
        .init()
        .with_context(|| format!("cannot set up the home {}", home.root().display()))?;
    let lock = DaemonLock::acquire(&home.pid_path()).map_err(|e| match e {
        LockError::AlreadyRunning { pid } => anyhow!(
            "gyrus is already running (pid {pid}) for home {}; stop it first, or pass another --home",
            home.root().display()
        ),
        other => anyhow!(other),
    })?;
    // A daemon killed with -9 leaves its listen file: it names an address nobody serves.
    let _ = std::fs::remove_file(home.listen_path());
    let config = Config::load(&home.config_path())
        .map_err(|e| anyhow!("{e}; fix it, or delete the file to get the defaults back"))?;
    let tokens = TokenStore::open(&home.layer(Layer::User).join("tokens.json"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gyrus")
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(serve(&home, config, tokens, args, &report, started));
    // Whatever happened, leave no socket or listen file behind; the lock's drop removes the
    // pid file last.
    let _ = std::fs::remove_file(home.socket_path());
    let _ = std::fs::remove_file(home.listen_path());
    drop(lock);
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// Logs to stderr (stdout is for the banner, or the protocol of `gyrus mcp`), filtered by
/// GYRUS_LOG in the tracing filter syntax (e.g. `debug` or `gyrus_api=trace`), else `default`.
pub(crate) fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_env("GYRUS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

async fn bind_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the port is taken (by another program, or a gyrus with another home); choose another with --listen or api.listen in user/gyrus.toml"
            }
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges; choose a higher port",
            _ => "check --listen or api.listen in user/gyrus.toml",
        };
        anyhow!("cannot listen on {addr}: {e}; {hint}")
    })
}

fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        bail!(
            "the socket path {} is {len} bytes, longer than Unix sockets allow ({MAX_SOCKET_PATH}); choose a shorter --home",
            path.display()
        );
    }
    // We hold the lock, so any socket file here was left by a daemon that died.
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow!(
                "cannot remove the stale socket {}: {e}",
                path.display()
            ));
        }
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot create the socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set mode 0600 on {}", path.display()))?;
    Ok(listener)
}

async fn serve(
    home: &Home,
    config: Config,
    tokens: TokenStore,
    args: UpArgs,
    report: &gyrus_home::InitReport,
    started: Instant,
) -> anyhow::Result<()> {
    let requested = args.listen.unwrap_or(config.api.listen);
    let tcp = bind_tcp(requested).await?;
    let listen = tcp.local_addr()?;
    let unix = bind_unix(&home.socket_path())?;
    gyrus_home::write_atomic(&home.listen_path(), format!("{listen}\n").as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", home.listen_path().display()))?;

    let mut api_config = config.api.clone();
    api_config.listen = listen;
    let token_count = tokens.active_count(std::time::SystemTime::now());
    let kernel = std::sync::Arc::new(
        gyrus_kernel::Kernel::open(home, format!("http://{listen}"))
            .context("cannot open the agent kernel")?,
    );
    let sessions = std::sync::Arc::new(open_sessions(home, &config.sessions)?);
    let mut tools = open_tools(home, &config.tools)?;
    gyrus_sessions::tools::register(&mut tools, sessions.clone());
    let memory = std::sync::Arc::new(open_memory(home, &config.memory)?);
    gyrus_memory::tools::register(&mut tools, memory.clone());
    let tools = std::sync::Arc::new(tools);
    let frontal = std::sync::Arc::new(open_frontal(
        home,
        &kernel,
        &tools,
        &memory,
        &config.router,
    )?);
    frontal.embed_skills_later();
    let state = ApiState::new(ApiStateInit {
        kernel: kernel.clone(),
        tools,
        frontal: Some(frontal.clone()),
        sessions: sessions.clone(),
        home: home.clone(),
        config: api_config,
        tokens,
        listen,
        owner_uid: rustix::process::geteuid().as_raw(),
        version: VERSION,
    });
    state.set_part("http", "running", format!("http://{listen}"));
    state.set_part(
        "socket",
        "running",
        home.socket_path().display().to_string(),
    );
    state.set_part("tokens", "ready", format!("{token_count} active"));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let app = gyrus_api::app(state.clone());
    let mut tcp_server = tokio::spawn(gyrus_api::serve(tcp, app.clone(), stopped(stop_rx.clone())));
    let mut unix_server = tokio::spawn(gyrus_api::serve(unix, app, stopped(stop_rx.clone())));
    let housekeeping = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.prune_rate_limits();
            }
        })
    };
    let memory_watch = tokio::spawn(watch_memory(
        memory,
        kernel.clone(),
        Duration::from_secs(config.memory.consolidate_secs),
        config.memory.sketch_budget_bytes,
    ));
    let session_watch = tokio::spawn(watch_sessions(
        sessions,
        Duration::from_secs(config.sessions.conflict_check_secs),
    ));

    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    kernel.resume().context("cannot resume the agents")?;
    state.set_part(
        "kernel",
        "running",
        format!("{} agents", kernel.agents(false).map_or(0, |a| a.len())),
    );
    print_banner(home, listen, report, started);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(%listen, pid = std::process::id(), "ready");

    // Run until a signal, or until a server fails (which is an error exit).
    let failure = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); None }
        r = &mut tcp_server => Some(("http", r)),
        r = &mut unix_server => Some(("socket", r)),
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    kernel.begin_shutdown();
    let _ = stop_tx.send(true);
    housekeeping.abort();
    session_watch.abort();
    memory_watch.abort();
    if let Some((part, result)) = failure {
        kernel.shutdown().await;
        let reason = match result {
            Ok(Ok(())) => "stopped unexpectedly".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        bail!("the {part} server failed: {reason}");
    }

    // Let in-flight requests finish, within the grace period; a second signal cuts it short.
    let grace = Duration::from_secs(config.daemon.shutdown_grace_secs);
    let drained = tokio::select! {
        r = tokio::time::timeout(grace, async { let _ = tokio::join!(&mut tcp_server, &mut unix_server); }) => r.is_ok(),
        _ = sigterm.recv() => false,
        _ = sigint.recv() => false,
    };
    if !drained {
        tracing::warn!("requests still in flight were cut off");
        tcp_server.abort();
        unix_server.abort();
    }
    kernel.shutdown().await;
    // The route log commits in the background; what is queued is written before exit.
    if let Err(e) = frontal.log().flush() {
        tracing::warn!(error = %e, "the last routing decisions were not written");
    }
    tracing::info!("stopped");
    Ok(())
}

fn print_banner(
    home: &Home,
    listen: SocketAddr,
    report: &gyrus_home::InitReport,
    started: Instant,
) {
    let new = if report.is_new() {
        "  (new: created core/ user/ memory/ runtime/)"
    } else {
        ""
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "gyrus {VERSION} is up (pid {}, ready in {} ms)",
        std::process::id(),
        started.elapsed().as_millis()
    );
    let _ = writeln!(out, "  home    {}{new}", home.root().display());
    let _ = writeln!(out, "  config  {}", home.config_path().display());
    let _ = writeln!(
        out,
        "  http    http://{listen}  (needs a token: `gyrus token create NAME`)"
    );
    let _ = writeln!(
        out,
        "  socket  {}  (owner only; `gyrus status` uses it)",
        home.socket_path().display()
    );
    if !listen.ip().is_loopback() {
        let _ = writeln!(
            out,
            "  warning: listening beyond this machine over plain HTTP; tokens cross the network unencrypted unless a TLS proxy fronts gyrus"
        );
    }
    let _ = writeln!(out, "Stop with Ctrl-C or SIGTERM.");
    let _ = out.flush();
}

/// The frontal lobe: the cortices of `user/cortices.toml`, the router, the route log on
/// `memory/routes.db`. Keys come from the daemon's environment or key files in `user/`.
fn open_frontal(
    home: &Home,
    kernel: &std::sync::Arc<gyrus_kernel::Kernel>,
    tools: &std::sync::Arc<gyrus_tools::Tools>,
    memory: &std::sync::Arc<gyrus_memory::store::MemoryStore>,
    router: &gyrus_home::RouterConfig,
) -> anyhow::Result<gyrus_frontal::Frontal> {
    let embedder = memory.embedder().clone();
    gyrus_frontal::Frontal::open(gyrus_frontal::FrontalInit {
        home: home.clone(),
        kernel: kernel.clone(),
        tools: tools.clone(),
        embedder,
        models_dir: std::env::var_os("GYRUS_MODELS_DIR").map(std::path::PathBuf::from),
        timeouts: gyrus_cortex::driver::Timeouts::default(),
        env: std::sync::Arc::new(|var: &str| std::env::var(var).ok()),
        router: router.clone(),
        memory: Some(memory.clone()),
    })
    .context("cannot open the frontal lobe")
}

/// The memory store on `memory/memory.db`, with the bundled sentence encoder.
fn open_memory(
    home: &Home,
    config: &gyrus_home::MemoryConfig,
) -> anyhow::Result<gyrus_memory::store::MemoryStore> {
    let path = home.layer(gyrus_home::Layer::Memory).join("memory.db");
    let embedder = gyrus_memory::embed::PocketEmbedder::shared()
        .context("cannot load the bundled sentence encoder")?;
    gyrus_memory::store::MemoryStore::open_with(&path, embedder, config.hnsw_threshold)
        .with_context(|| format!("cannot open the memory store {}", path.display()))
}

/// Feeds the audit trail into the episodic log every few seconds, and consolidates memory
/// every `every`, auditing each consolidation that changed something.
async fn watch_memory(
    memory: std::sync::Arc<gyrus_memory::store::MemoryStore>,
    kernel: std::sync::Arc<gyrus_kernel::Kernel>,
    every: Duration,
    sketch_budget: usize,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_consolidation = Instant::now();
    loop {
        tick.tick().await;
        let consolidate = last_consolidation.elapsed() >= every;
        if consolidate {
            last_consolidation = Instant::now();
        }
        let memory = memory.clone();
        let kernel = kernel.clone();
        let done = tokio::task::spawn_blocking(move || {
            let now = gyrus_memory::tools::now_ms();
            if let Err(e) = gyrus_memory::episodic::feed(&memory, kernel.audit(), now) {
                tracing::warn!(error = %e, "feeding the episodic log failed");
            }
            if consolidate {
                match gyrus_memory::consolidate::consolidate(&memory, now, sketch_budget) {
                    Ok(report) if report.changed() => {
                        let detail = serde_json::to_value(&report)
                            .ok()
                            .and_then(|v| v.as_object().cloned())
                            .unwrap_or_default();
                        let entry = gyrus_audit::NewEntry {
                            request_id: format!("consolidate-{now}"),
                            principal: "daemon".into(),
                            action: "memory.consolidate".into(),
                            resource: "memory:*".into(),
                            reason: format!(
                                "consolidation: {} expired, {} merged, {} distilled, {} refreshed, sketch {}",
                                report.expired,
                                report.merged,
                                report.distilled,
                                report.refreshed,
                                if report.sketch_changed { "updated" } else { "unchanged" }
                            ),
                            detail,
                            ..gyrus_audit::NewEntry::default()
                        };
                        if let Err(e) = kernel.audit().append(entry) {
                            tracing::warn!(error = %e, "auditing consolidation failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "memory consolidation failed"),
                }
            }
        })
        .await;
        if done.is_err() {
            tracing::warn!("the memory job panicked");
        }
    }
}

/// The session manager on `memory/sessions.db`, with the owner's `[sessions]`.
fn open_sessions(
    home: &Home,
    config: &gyrus_home::SessionsConfig,
) -> anyhow::Result<gyrus_sessions::Manager> {
    let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let manager_config = gyrus_sessions::ManagerConfig {
        expire_after_ms: ms(config.expire_after_secs),
        lease_ttl_ms: ms(config.lease_ttl_secs),
        on_conflict: match config.on_conflict {
            gyrus_home::OnConflict::Deny => gyrus_sessions::hooks::Verdict::Deny,
            gyrus_home::OnConflict::Ask => gyrus_sessions::hooks::Verdict::Ask,
        },
        release_on_stop: config.release_on_stop,
    };
    let path = gyrus_sessions::store_path(home);
    gyrus_sessions::Manager::open(&path, manager_config)
        .with_context(|| format!("cannot open the session store {}", path.display()))
}

/// Expires silent sessions every few seconds, and predicts merge conflicts between live
/// sessions' worktrees every `every`, for their digests.
async fn watch_sessions(sessions: std::sync::Arc<gyrus_sessions::Manager>, every: Duration) {
    let sweep_every = Duration::from_secs(5);
    let mut tick = tokio::time::interval(sweep_every);
    let mut since_prediction = every;
    loop {
        tick.tick().await;
        since_prediction += sweep_every;
        let predict = since_prediction >= every;
        if predict {
            since_prediction = Duration::ZERO;
        }
        let sessions = sessions.clone();
        let done = tokio::task::spawn_blocking(move || {
            let now = gyrus_sessions::tools::now_ms();
            if let Err(e) = sessions.sweep(now) {
                tracing::warn!(error = %e, "expiring silent sessions failed");
            }
            if predict && let Err(e) = sessions.predict(None) {
                tracing::warn!(error = %e, "conflict prediction failed");
            }
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "the session watcher panicked");
        }
    }
}

/// The tool registry, with the sandbox launcher (this binary) and the owner's `[tools]`.
fn open_tools(home: &Home, config: &gyrus_home::ToolsConfig) -> anyhow::Result<gyrus_tools::Tools> {
    let mut env = gyrus_tools::ToolEnv::new(home.clone());
    env.sandbox_launcher = std::env::current_exe().ok();
    env.allow_unsandboxed = config.allow_unsandboxed;
    env.undo_retention = Duration::from_secs(config.undo_retention_days * 24 * 3600);
    env.undo_max_bytes = config.undo_max_bytes;
    gyrus_tools::builtin(env).context("cannot open the tools")
}
