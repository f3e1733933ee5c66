//! What every handler and layer can see.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use gyrus_home::{ApiConfig, Home};
use gyrus_policy::TokenStore;
use serde::Serialize;

use crate::metrics::Metrics;

/// Shared handle to the API state.
pub type ApiStateRef = Arc<ApiState>;

/// One rate-limit bucket per principal (token id, the owner) or, before authentication, per
/// peer address.
pub(crate) type Limiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Health of one part of the daemon, as `gyrus status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PartStatus {
    /// Part name, e.g. `http`.
    pub name: String,
    /// `running`, `ready`, `stopped`, `failed`.
    pub state: String,
    /// One line of detail.
    pub detail: String,
}

/// The daemon as the API sees it.
#[derive(Debug)]
pub struct ApiState {
    /// The home.
    pub home: Home,
    /// `[api]` from gyrus.toml, with `listen` replaced by the bound address.
    pub config: ApiConfig,
    /// Token hashes.
    pub tokens: RwLock<TokenStore>,
    /// The bound TCP address.
    pub listen: SocketAddr,
    /// The owner's socket.
    pub socket: PathBuf,
    /// The uid allowed on the socket: the daemon's own.
    pub owner_uid: u32,
    /// The daemon's pid.
    pub pid: u32,
    /// Version string.
    pub version: &'static str,
    /// Monotonic start, for uptime.
    pub started: Instant,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// Parts and their health, set by the daemon as they start and stop.
    pub parts: RwLock<BTreeMap<String, PartStatus>>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// The agent kernel.
    pub kernel: Arc<gyrus_kernel::Kernel>,
    /// Every tool, and the undo journal.
    pub tools: Arc<gyrus_tools::Tools>,
    /// The session manager.
    pub sessions: Arc<gyrus_sessions::Manager>,
    /// The frontal lobe (`/api/v1/ask`, `/api/v1/cortices`, the `/v1` gateway); `None` in
    /// an API served without one, whose frontal routes answer 503.
    pub frontal: Option<Arc<gyrus_frontal::Frontal>>,
    pub(crate) limiter: Limiter,
}

/// Everything needed to build an [`ApiState`].
#[derive(Debug)]
pub struct ApiStateInit {
    /// The home.
    pub home: Home,
    /// `[api]` settings.
    pub config: ApiConfig,
    /// The opened token store.
    pub tokens: TokenStore,
    /// The bound TCP address.
    pub listen: SocketAddr,
    /// The uid allowed on the Unix socket.
    pub owner_uid: u32,
    /// Version string.
    pub version: &'static str,
    /// The agent kernel.
    pub kernel: Arc<gyrus_kernel::Kernel>,
    /// The tool registry.
    pub tools: Arc<gyrus_tools::Tools>,
    /// The session manager.
    pub sessions: Arc<gyrus_sessions::Manager>,
    /// The frontal lobe, if the daemon runs one.
    pub frontal: Option<Arc<gyrus_frontal::Frontal>>,
}

impl ApiState {
    /// Builds the state. `config` must already be checked (`Config::load` does).
    pub fn new(init: ApiStateInit) -> ApiStateRef {
        let rate = init.config.rate_limit;
        let quota = Quota::per_second(NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN));
        Arc::new(ApiState {
            socket: init.home.socket_path(),
            home: init.home,
            config: init.config,
            tokens: RwLock::new(init.tokens),
            listen: init.listen,
            owner_uid: init.owner_uid,
            pid: std::process::id(),
            version: init.version,
            started: Instant::now(),
            started_at: SystemTime::now(),
            parts: RwLock::new(BTreeMap::new()),
            metrics: Metrics::new(init.version),
            kernel: init.kernel,
            tools: init.tools,
            sessions: init.sessions,
            frontal: init.frontal,
            limiter: RateLimiter::keyed(quota),
        })
    }

    /// Records a part's health.
    pub fn set_part(&self, name: &str, state: &str, detail: impl Into<String>) {
        if let Ok(mut parts) = self.parts.write() {
            parts.insert(
                name.to_string(),
                PartStatus {
                    name: name.to_string(),
                    state: state.to_string(),
                    detail: detail.into(),
                },
            );
        }
    }

    /// The longest a request may wait inside its handler (a long poll): a second less than
    /// the request timeout, so the wait ends before the timeout layer cuts it off.
    pub fn max_wait(&self, requested_ms: u64) -> std::time::Duration {
        let ceiling = (self.config.request_timeout_secs * 1000)
            .saturating_sub(1000)
            .max(1);
        std::time::Duration::from_millis(requested_ms.min(60_000).min(ceiling))
    }

    /// Forgets rate-limit buckets that have refilled, so one-off peers do not accumulate.
    pub fn prune_rate_limits(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}
