//! Shared fixtures: a real SQLite file in a temporary directory, a broker over it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gyrus_bus::subject::{Pattern, Subject};
use gyrus_policy::{ActionRequest, ConsentBroker, GrantStore, IntentSource, NewGrant, Principal};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub grants: Arc<GrantStore>,
    pub broker: ConsentBroker,
}

pub fn fixture() -> Fixture {
    fixture_with(&[])
}

pub fn fixture_with(owner_policies: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let grants = Arc::new(GrantStore::open(&dir.path().join("grants.db")).unwrap());
    let sources: Vec<(String, String)> = owner_policies
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let broker = ConsentBroker::from_sources(Arc::clone(&grants), &sources).unwrap();
    Fixture {
        dir,
        grants,
        broker,
    }
}

pub fn write_policies(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

pub fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

pub fn agent(id: &str, name: &str) -> Principal {
    Principal::Agent {
        id: id.into(),
        name: name.into(),
    }
}

pub fn builder() -> Principal {
    agent("ag_1", "builder")
}

pub fn owner() -> Principal {
    Principal::Owner { uid: 1000 }
}

pub fn call(principal: Principal, action: &str, resource: &str) -> ActionRequest {
    ActionRequest::new(
        principal,
        Subject::new(action).unwrap(),
        resource,
        "build the project",
        IntentSource::Owner,
    )
}

pub fn patterns(list: &[&str]) -> Vec<Pattern> {
    list.iter().map(|p| Pattern::new(*p).unwrap()).collect()
}

pub fn grant(principal: &Principal, actions: &[&str], resources: &[&str]) -> NewGrant {
    NewGrant {
        principal: principal.id(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
        resources: resources.iter().map(|s| s.to_string()).collect(),
        intent: None,
        valid_for: None,
        max_uses: None,
        granted_by: "owner".into(),
    }
}
