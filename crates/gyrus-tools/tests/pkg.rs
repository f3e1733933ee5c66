//! The pkg tools through the one call path on a real kernel: one decision per package, the
//! plan from the real `apt-get -s` when apt and its package lists are here (a simulation:
//! nothing is installed, nothing is downloaded), and a clear error when apt is not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::SystemTime;

use gyrus_home::Home;
use gyrus_kernel::Kernel;
use gyrus_policy::{IntentSource, NewGrant, Outcome, Principal};
use gyrus_tools::pkg::{Apt, Install, Remove, Search};
use gyrus_tools::{CallResult, ToolCall, ToolEnv, Tools, Typed};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

struct World {
    _dir: tempfile::TempDir,
    kernel: Kernel,
    tools: Tools,
}

fn world_with(apt: Apt) -> World {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap();
    let kernel = Kernel::open(&home, "http://127.0.0.1:1".into()).unwrap();
    let mut tools = Tools::new(ToolEnv::new(home)).unwrap();
    tools.register(Typed::new(Search { apt: apt.clone() }));
    tools.register(Typed::new(Install { apt: apt.clone() }));
    tools.register(Typed::new(Remove { apt }));
    World {
        _dir: dir,
        kernel,
        tools,
    }
}

fn device() -> Principal {
    Principal::Token {
        id: "tok_pkg".into(),
        name: "laptop".into(),
    }
}

impl World {
    fn grant(&self, actions: &[&str], resources: &[&str]) {
        self.kernel
            .broker()
            .grants()
            .add(
                NewGrant {
                    principal: device().id(),
                    actions: actions.iter().map(|s| s.to_string()).collect(),
                    resources: resources.iter().map(|s| s.to_string()).collect(),
                    granted_by: "owner".into(),
                    ..NewGrant::default()
                },
                SystemTime::now(),
            )
            .unwrap();
    }

    fn call(&self, tool: &str, args: Value) -> CallResult {
        self.tools
            .call(
                &self.kernel,
                &ToolCall {
                    principal: device(),
                    tool: tool.into(),
                    args,
                    intent: "set up the machine".into(),
                    intent_source: IntentSource::Untrusted("test".into()),
                    plan_id: None,
                },
            )
            .unwrap()
    }
}

/// A package apt knows (a candidate version exists) and that is not installed, so its plan
/// has an `Inst` line; `None` when apt or its lists are missing.
fn installable() -> Option<&'static str> {
    ["hello", "cowsay", "sl", "fortune-mod", "figlet"]
        .into_iter()
        .find(|name| {
            let Ok(out) = Command::new("apt-cache")
                .env("LC_ALL", "C")
                .args(["policy", name])
                .output()
            else {
                return false;
            };
            let text = String::from_utf8_lossy(&out.stdout);
            text.contains("Installed: (none)")
                && !text.contains("Candidate: (none)")
                && text.contains("Candidate:")
        })
}

#[test]
fn every_package_is_decided_on_its_own() {
    let w = world_with(Apt::system());
    // The grant covers one of the two packages: the call is refused, naming the other.
    w.grant(&["pkg.install"], &["pkg:apt/hello"]);
    let r = w.call("pkg.install", json!({"packages": ["hello", "cowsay"]}));
    // The verdict reported is the refusal: the second package's decision.
    assert_eq!(r.decision.outcome, Outcome::Deny, "{r:?}");
    let refused = w.kernel.audit().get(r.decision.seq).unwrap().unwrap();
    assert_eq!(refused.record.resource, "pkg:apt/cowsay");
    let err = r.error.unwrap();
    assert_eq!(err.code, "denied");
    assert!(
        err.message
            .contains("pkg.install on pkg:apt/cowsay was refused"),
        "{}",
        err.message
    );
    // One decision per package, in order, and the call's outcome.
    let trail = w.kernel.audit().tail(100).unwrap();
    let resources: Vec<&str> = trail.iter().map(|e| e.record.resource.as_str()).collect();
    assert_eq!(
        resources,
        ["pkg:apt/hello", "pkg:apt/cowsay", "pkg:apt/hello"]
    );
}

#[test]
fn bad_names_fail_before_any_decision() {
    let w = world_with(Apt::system());
    for bad in [
        json!(["-o=APT::x"]),
        json!(["bash-"]),
        json!(["Hello"]),
        json!([]),
        json!(["a b"]),
    ] {
        let err = w
            .tools
            .call(
                &w.kernel,
                &ToolCall {
                    principal: device(),
                    tool: "pkg.install".into(),
                    args: json!({"packages": bad}),
                    intent: "x".into(),
                    intent_source: IntentSource::Owner,
                    plan_id: None,
                },
            )
            .unwrap_err();
        assert_eq!(err.code(), "invalid_args", "{bad}: {err}");
    }
    assert!(w.kernel.audit().is_empty());
}

#[test]
fn without_apt_the_error_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let w = world_with(Apt::at(dir.path()));
    w.grant(&["pkg.*"], &["pkg:apt", "pkg:apt/**"]);
    for (tool, args) in [
        ("pkg.search", json!({"query": "hello"})),
        ("pkg.install", json!({"packages": ["hello"]})),
        ("pkg.remove", json!({"packages": ["hello"]})),
    ] {
        let r = w.call(tool, args);
        let err = r.error.unwrap();
        assert_eq!(err.code, "unavailable", "{tool}");
        assert!(err.message.contains("apt"), "{}", err.message);
    }
}

#[test]
fn a_dry_run_returns_apt_s_plan_and_installs_nothing() {
    let w = world_with(Apt::system());
    w.grant(&["pkg.*"], &["pkg:apt", "pkg:apt/**"]);
    let Some(name) = installable() else {
        // No apt or no package lists here: the tools must say apt is missing or cannot plan.
        let r = w.call("pkg.install", json!({"packages": ["hello"]}));
        let err = r.error.unwrap();
        assert!(
            ["unavailable", "failed"].contains(&err.code.as_str()),
            "{err:?}"
        );
        return;
    };
    let r = w.call("pkg.install", json!({"packages": [name]}));
    assert!(r.is_ok(), "{r:?}");
    let out = r.output.unwrap();
    assert_eq!(out["dry_run"], true);
    assert_eq!(out["applied"], false);
    assert_eq!(out["blocked"], Value::Null);
    let plan = out["plan"].as_array().unwrap();
    assert!(
        plan.iter().any(|s| s["action"] == "install"
            && s["package"].as_str().unwrap().split(':').next() == Some(name)),
        "{plan:?}"
    );
    assert!(out["summary"].as_str().unwrap().contains("newly installed"));
    // Still not installed.
    let policy = Command::new("apt-cache")
        .env("LC_ALL", "C")
        .args(["policy", name])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&policy.stdout).contains("Installed: (none)"));

    // Search finds it by name, exact match first.
    let r = w.call("pkg.search", json!({"query": name, "limit": 5}));
    let out = r.output.unwrap();
    assert_eq!(out["packages"][0]["name"], name);

    // Removing a package that is not installed plans nothing.
    let r = w.call("pkg.remove", json!({"packages": [name]}));
    assert_eq!(r.output.unwrap()["plan"], json!([]));

    // An unknown package: apt cannot plan, and says which.
    let r = w.call(
        "pkg.install",
        json!({"packages": ["gyrus-no-such-package"]}),
    );
    let err = r.error.unwrap();
    assert_eq!(err.code, "failed");
    assert!(
        err.message.contains("gyrus-no-such-package"),
        "{}",
        err.message
    );
}
