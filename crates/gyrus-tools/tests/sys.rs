//! `sys.health` through the one call path on a real kernel, reading this machine's real
//! `/proc`: decided on `system:host`, and every number in a plausible range.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use gyrus_home::Home;
use gyrus_kernel::Kernel;
use gyrus_policy::{IntentSource, NewGrant, Outcome, Principal};
use gyrus_tools::{ToolCall, ToolEnv, Tools};
use serde_json::json;

#[test]
fn health_reads_the_real_proc_once_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap();
    let kernel = Kernel::open(&home, "http://127.0.0.1:1".into()).unwrap();
    let mut tools = Tools::new(ToolEnv::new(home)).unwrap();
    gyrus_tools::sys::register(&mut tools);
    let principal = Principal::Token {
        id: "tok_sys".into(),
        name: "monitor".into(),
    };
    let call = ToolCall {
        principal: principal.clone(),
        tool: "sys.health".into(),
        args: json!({}),
        intent: "check the machine".into(),
        intent_source: IntentSource::Untrusted("test".into()),
        plan_id: None,
    };

    let r = tools.call(&kernel, &call).unwrap();
    assert_eq!(r.decision.outcome, Outcome::Deny);
    let entry = kernel.audit().get(r.decision.seq).unwrap().unwrap();
    assert_eq!(entry.record.resource, "system:host");

    kernel
        .broker()
        .grants()
        .add(
            NewGrant {
                principal: principal.id(),
                actions: vec!["sys.health".into()],
                resources: vec!["system:host".into()],
                granted_by: "owner".into(),
                ..NewGrant::default()
            },
            SystemTime::now(),
        )
        .unwrap();
    let r = tools.call(&kernel, &call).unwrap();
    assert!(r.is_ok(), "{r:?}");
    let out = r.output.unwrap();

    let cpu = &out["cpu"];
    assert!(cpu["cores"].as_u64().unwrap() >= 1);
    let usage = cpu["usage_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&usage), "{usage}");
    let states: f64 = cpu["states"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(states == 0.0 || (states - 100.0).abs() < 0.5, "{states}");

    let mem = &out["memory"];
    let total = mem["total"].as_u64().unwrap();
    assert!(total > 0);
    assert!(mem["available"].as_u64().unwrap() <= total);
    assert_eq!(
        mem["used"].as_u64().unwrap(),
        total - mem["available"].as_u64().unwrap()
    );

    // The root filesystem (or whatever holds it in a container) is a disk.
    let disks = out["disks"].as_array().unwrap();
    assert!(!disks.is_empty(), "{out}");
    for d in disks {
        assert!(d["total"].as_u64().unwrap() >= d["free"].as_u64().unwrap());
        assert!(d["free"].as_u64().unwrap() >= d["available"].as_u64().unwrap());
        assert!(!["proc", "sysfs", "tmpfs", "cgroup2"].contains(&d["fs_type"].as_str().unwrap()));
    }

    assert_eq!(out["load"].as_array().unwrap().len(), 3);
    assert!(out["uptime_secs"].as_f64().unwrap() > 0.0);
    assert!(!out["hostname"].as_str().unwrap().is_empty());
    assert!(!out["kernel"].as_str().unwrap().is_empty());
    // Pressure is there or null, never half-parsed garbage.
    let pressure = &out["pressure"];
    if !pressure.is_null() {
        for k in ["cpu", "memory", "io"] {
            let p = &pressure[k];
            assert!(p.is_null() || p["some"]["avg10"].is_number(), "{k}: {p}");
        }
    }
}
