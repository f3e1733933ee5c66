//! The kernel facade: the typed calls ("syscalls") every caller goes through.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gyrus_audit::{AuditError, AuditLog, Entry, NewEntry};
use gyrus_bus::{
    Bus, Delivered, Delivery, Envelope, EventBus, MailboxError, Mailboxes, Pattern, Subject,
};
use gyrus_home::{Home, Layer};
use gyrus_policy::{ConsentBroker, ConsentStore, GrantStore, PolicyError, StoreError};

use crate::manifest::Manifest;
use crate::registry::{AgentRecord, AgentRegistry, AgentState, RegistryError};
use crate::supervisor::{EventSink, Supervisor};

/// Kernel failures, each with a message the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The agent registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The audit trail refused or failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The grants database failed.
    #[error(transparent)]
    Grants(#[from] StoreError),
    /// The owner's policies do not load.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A mailbox failed.
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// A file or directory of the home could not be created or read.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Reading an agent's log failed.
    #[error("cannot read the log of {name}: {source}")]
    Log {
        /// The agent.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A newly spawned agent; `token` is set for agents without a command, which connect by
/// themselves and need it (shown once). Agents with a command get a fresh one at every start.
#[derive(Debug, Clone)]
pub struct Spawned {
    /// The agent.
    pub agent: AgentRecord,
    /// Its token, for agents without a command.
    pub token: Option<String>,
}

/// The agent kernel.
pub struct Kernel {
    agents: Arc<AgentRegistry>,
    supervisor: Arc<Supervisor>,
    audit: Arc<AuditLog>,
    bus: Bus,
    mailboxes: Arc<Mailboxes>,
    events: EventBus,
    closing: tokio::sync::watch::Sender<bool>,
    broker: ConsentBroker,
    consents: ConsentStore,
    /// Tool calls per agent id, for `quotas.tool_calls_per_minute`.
    pub(crate) call_windows:
        std::sync::Mutex<std::collections::HashMap<String, crate::quota::SlidingWindow>>,
    /// The origin the windows measure time from.
    pub(crate) started: std::time::Instant,
    /// Woken whenever the owner answers a consent request.
    consent_answered: tokio::sync::Notify,
}

/// Where a sent message went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sent {
    /// The envelope as sent (with its id).
    pub envelope: Envelope,
    /// The mailbox delivery id, when sent to a named agent (durable).
    pub mailbox_id: Option<u64>,
    /// In-process subscribers reached.
    pub subscribers: usize,
    /// In-process subscribers whose queue was full.
    pub dropped: usize,
}

/// Where the audit trail's files are in a home: the database and the signed checkpoint in
/// `memory/`, the signing key in `user/`.
pub fn audit_paths(home: &Home) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    (
        home.layer(Layer::Memory).join("audit.db"),
        home.layer(Layer::User).join("audit.key"),
        home.layer(Layer::Memory).join("audit.sth.json"),
    )
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel").finish_non_exhaustive()
    }
}

impl Kernel {
    /// Opens the kernel's state in `home` (`memory/kernel.db`, logs in `runtime/agents/`).
    /// Agents reach the API at `url`. Call [`Kernel::resume`] once the API serves.
    pub fn open(home: &Home, url: String) -> Result<Kernel, KernelError> {
        let agents = Arc::new(AgentRegistry::open(
            &home.layer(Layer::Memory).join("kernel.db"),
        )?);
        let events = EventBus::new(4096);
        let sink: EventSink = {
            let events = events.clone();
            Arc::new(move |kind: &str, data| {
                if let Ok(kind) = Subject::new(kind) {
                    events.publish(kind, data);
                }
            })
        };
        let supervisor = Supervisor::new(
            agents.clone(),
            url,
            home.layer(Layer::Runtime).join("agents"),
            sink,
        );
        let mailboxes = Arc::new(Mailboxes::open(
            &home.layer(Layer::Memory).join("mailboxes.db"),
        )?);
        let grants = Arc::new(GrantStore::open(
            &home.layer(Layer::User).join("grants.db"),
        )?);
        let policy_dir = home.layer(Layer::User).join("policies");
        std::fs::create_dir_all(&policy_dir).map_err(|source| KernelError::Io {
            path: policy_dir.clone(),
            source,
        })?;
        // gyrus's own state is the owner's alone, whatever a grant says.
        let protected = format!("path:{}/**", home.root().display());
        let broker = ConsentBroker::new(grants.clone(), &policy_dir)?
            .with_protected_resources(&[protected])?;
        let consents = ConsentStore::new(grants);
        let (db, key, checkpoint) = audit_paths(home);
        let audit = Arc::new(AuditLog::open(&db, &key, &checkpoint)?);
        Ok(Kernel {
            agents,
            supervisor,
            audit,
            bus: Bus::new(),
            mailboxes,
            events,
            closing: tokio::sync::watch::Sender::new(false),
            broker,
            consents,
            call_windows: std::sync::Mutex::new(std::collections::HashMap::new()),
            started: std::time::Instant::now(),
            consent_answered: tokio::sync::Notify::new(),
        })
    }

    /// Restarts the agents that were up when the daemon last stopped.
    pub fn resume(&self) -> Result<(), KernelError> {
        Ok(self.supervisor.resume()?)
    }

    /// Tells long-lived readers (event streams, waiting receivers) that the daemon is
    /// stopping, so in-flight requests can finish.
    pub fn begin_shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Kernel::begin_shutdown`] was called.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// Stops every agent process (daemon shutdown); they come back at the next start.
    pub async fn shutdown(&self) {
        self.supervisor.stop_all().await;
    }

    /// `AgentSpawn`: registers the agent under a fresh id and starts it.
    pub fn spawn_agent(&self, manifest: &Manifest) -> Result<Spawned, KernelError> {
        let agent = self.agents.register(manifest, now())?;
        let token = if manifest.command.is_none() {
            Some(self.agents.rotate_token(&agent.id)?)
        } else {
            self.supervisor.start(&agent);
            None
        };
        Ok(Spawned { agent, token })
    }

    /// `AgentStop`: stops the agent's process; it keeps its id, grants and mailbox, and stays
    /// stopped across daemon restarts until started again.
    pub async fn stop_agent(&self, name: &str) -> Result<AgentRecord, KernelError> {
        let agent = self.agents.by_name(name)?;
        self.agents.set_enabled(&agent.id, false, now())?;
        self.supervisor.stop(&agent.id).await;
        self.agents
            .set_state(&agent.id, AgentState::Stopped, None, None, now())?;
        Ok(self.agents.by_name(name)?)
    }

    /// Starts a stopped (or failed) agent again.
    pub fn start_agent(&self, name: &str) -> Result<AgentRecord, KernelError> {
        let agent = self.agents.by_name(name)?;
        self.agents.set_enabled(&agent.id, true, now())?;
        if agent.manifest.command.is_none() {
            self.agents
                .set_state(&agent.id, AgentState::Ready, None, None, now())?;
        } else {
            self.supervisor.start(&agent);
        }
        Ok(self.agents.by_name(name)?)
    }

    /// Stops and retires the agent: its name is free again, its id, token and grants never
    /// work again.
    pub async fn remove_agent(&self, name: &str) -> Result<AgentRecord, KernelError> {
        let agent = self.agents.by_name(name)?;
        self.supervisor.stop(&agent.id).await;
        self.agents.remove(&agent.id, now())?;
        self.mailboxes.purge(&agent.id)?;
        Ok(self.agents.get(&agent.id)?.unwrap_or(agent))
    }

    /// Live agents, oldest first (removed ones too if asked).
    pub fn agents(&self, include_removed: bool) -> Result<Vec<AgentRecord>, KernelError> {
        Ok(self.agents.list(include_removed)?)
    }

    /// One live agent by name.
    pub fn agent(&self, name: &str) -> Result<AgentRecord, KernelError> {
        Ok(self.agents.by_name(name)?)
    }

    /// The end of an agent's log.
    pub fn agent_log(&self, name: &str, max_bytes: u64) -> Result<String, KernelError> {
        let agent = self.agents.by_name(name)?;
        self.supervisor
            .log_tail(&agent.id, max_bytes)
            .map_err(|source| KernelError::Log {
                name: name.to_string(),
                source,
            })
    }

    /// The consent broker (and, through it, the grants).
    pub fn broker(&self) -> &ConsentBroker {
        &self.broker
    }

    /// Pending and past consent requests.
    pub fn consents(&self) -> &ConsentStore {
        &self.consents
    }

    /// Wakes everyone waiting for an answer to a consent request; call after approving or
    /// denying one.
    pub fn consent_answered(&self) {
        self.consent_answered.notify_waiters();
    }

    /// Resolves at the next answer to any consent request (call `enable` on it before
    /// checking the state it waits for, so an answer in between is not missed).
    pub fn next_consent_answer(&self) -> tokio::sync::futures::Notified<'_> {
        self.consent_answered.notified()
    }

    /// An agent by id, removed or not.
    pub fn agent_by_id(&self, id: &str) -> Option<AgentRecord> {
        self.agents.get(id).ok().flatten()
    }

    /// The audit trail.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Appends one entry to the audit trail (blocking: it commits and signs a checkpoint).
    pub fn record(&self, entry: NewEntry) -> Result<Entry, KernelError> {
        Ok(self.audit.append(entry)?)
    }

    /// The kernel event bus (agent lifecycle, decisions, messages).
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The in-process bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Publishes a kernel event; `kind` must be a valid subject (a bad one is dropped, logged).
    pub fn emit(&self, kind: &str, data: serde_json::Value) {
        match Subject::new(kind) {
            Ok(kind) => {
                self.events.publish(kind, data);
            }
            Err(e) => tracing::error!(%e, "bad event kind"),
        }
    }

    /// `SemanticSend`: to a named agent's durable mailbox (delivered when it next receives,
    /// even if it is stopped now), and in every case to in-process subscribers of the intent
    /// and one member of each handler group. Blocking (the mailbox commits).
    pub fn send(&self, envelope: Envelope, to_agent: Option<&str>) -> Result<Sent, KernelError> {
        let mut envelope = envelope;
        let mailbox_id = match to_agent {
            Some(name) => {
                let agent = self.agents.by_name(name)?;
                envelope.to = Some(agent.id.clone());
                Some(self.mailboxes.enqueue(&agent.id, &envelope)?)
            }
            None => None,
        };
        let Delivered {
            subscribers,
            dropped,
            ..
        } = self.bus.publish(&envelope);
        self.emit(
            "ipc.message",
            serde_json::json!({"id": envelope.id, "intent": envelope.intent.as_str(), "from": envelope.from,
                "to": envelope.to, "mailbox_id": mailbox_id, "subscribers": subscribers}),
        );
        Ok(Sent {
            envelope,
            mailbox_id,
            subscribers,
            dropped,
        })
    }

    /// `SemanticRecv` from an agent's durable mailbox: leases up to `max` messages matching
    /// `pattern` for `lease`; unacknowledged ones come back after the lease (at least once).
    pub fn receive(
        &self,
        agent_name: &str,
        pattern: Option<&Pattern>,
        max: usize,
        lease: std::time::Duration,
    ) -> Result<(String, Vec<Delivery>), KernelError> {
        let agent = self.agents.by_name(agent_name)?;
        let deliveries = self.mailboxes.fetch(&agent.id, pattern, max, lease)?;
        Ok((agent.id, deliveries))
    }

    /// Waits until something is enqueued for the agent with this id.
    pub async fn wait_mail(&self, agent_id: &str) {
        self.mailboxes.wait(agent_id).await;
    }

    /// Acknowledges deliveries from an agent's mailbox; they are never delivered again.
    pub fn acknowledge(&self, agent_name: &str, ids: &[u64]) -> Result<usize, KernelError> {
        let agent = self.agents.by_name(agent_name)?;
        Ok(self.mailboxes.ack_many(&agent.id, ids)?)
    }

    /// The live agent whose current token this is, as `(id, name)`.
    pub fn authenticate_agent(&self, token: &str) -> Option<(String, String)> {
        self.agents.authenticate(token)
    }
}
