//! A reactive skill's answer in words, from its tool's output. Pure.

use serde_json::Value;

/// The answer to skill `skill` from its tool's `output`; `None` when the output is not what
/// the skill expects (the caller then shows the output itself).
pub fn skill_answer(skill: &str, output: &Value) -> Option<String> {
    match skill {
        "disk" => disk(output),
        "memory" => memory(output),
        "uptime" => uptime(output),
        "status" => status(output),
        "processes" => processes(output),
        "audit" => audit(output),
        "grants" => grants(output),
        _ => None,
    }
}

fn disk(output: &Value) -> Option<String> {
    let disks = output.get("disks")?.as_array()?;
    if disks.is_empty() {
        return Some("No storage-backed filesystem is mounted.".into());
    }
    let mut lines = Vec::with_capacity(disks.len());
    for d in disks {
        let total = d.get("total")?.as_u64()?;
        let available = d.get("available")?.as_u64()?;
        let used_pct = if total == 0 {
            0.0
        } else {
            100.0 * (total.saturating_sub(available)) as f64 / total as f64
        };
        lines.push(format!(
            "{}: {} free of {} ({used_pct:.0}% used, {})",
            d.get("mount")?.as_str()?,
            bytes(available),
            bytes(total),
            d.get("fs_type")?.as_str()?,
        ));
    }
    Some(lines.join("\n"))
}

fn memory(output: &Value) -> Option<String> {
    let m = output.get("memory")?;
    let total = m.get("total")?.as_u64()?;
    let available = m.get("available")?.as_u64()?;
    let swap_total = m.get("swap_total")?.as_u64()?;
    let swap_free = m.get("swap_free")?.as_u64()?;
    let mut text = format!(
        "Memory: {} available of {} ({} in use).",
        bytes(available),
        bytes(total),
        bytes(total.saturating_sub(available))
    );
    if swap_total > 0 {
        text.push_str(&format!(
            " Swap: {} in use of {}.",
            bytes(swap_total.saturating_sub(swap_free)),
            bytes(swap_total)
        ));
    } else {
        text.push_str(" No swap.");
    }
    Some(text)
}

fn uptime(output: &Value) -> Option<String> {
    let secs = output.get("uptime_secs")?.as_f64()?;
    let load = output.get("load")?.as_array()?;
    Some(format!(
        "{} has been up {}; load average {}.",
        output.get("hostname")?.as_str()?,
        duration(secs),
        load.iter()
            .filter_map(Value::as_f64)
            .map(|l| format!("{l:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn status(output: &Value) -> Option<String> {
    let cpu = output.get("cpu")?;
    let m = output.get("memory")?;
    let total = m.get("total")?.as_u64()?;
    let available = m.get("available")?.as_u64()?;
    let fullest = output
        .get("disks")?
        .as_array()?
        .iter()
        .filter_map(|d| {
            let t = d.get("total")?.as_u64()?;
            let a = d.get("available")?.as_u64()?;
            let mount = d.get("mount")?.as_str()?.to_owned();
            (t > 0).then_some((mount, a, t))
        })
        .max_by(|a, b| {
            let used = |(_, a, t): &(String, u64, u64)| 1.0 - *a as f64 / *t as f64;
            used(a).total_cmp(&used(b))
        });
    let mut text = format!(
        "{} (kernel {}), up {}: CPU {:.0}% of {} cores, memory {} available of {}",
        output.get("hostname")?.as_str()?,
        output.get("kernel")?.as_str()?,
        duration(output.get("uptime_secs")?.as_f64()?),
        cpu.get("usage_percent")?.as_f64()?,
        cpu.get("cores")?.as_u64()?,
        bytes(available),
        bytes(total),
    );
    if let Some((mount, available, total)) = fullest {
        text.push_str(&format!(
            ", fullest disk {mount} with {} free of {}",
            bytes(available),
            bytes(total)
        ));
    }
    text.push('.');
    Some(text)
}

fn processes(output: &Value) -> Option<String> {
    let list = output.get("processes")?.as_array()?;
    let mut rows: Vec<(&str, i64, u64)> = list
        .iter()
        .filter_map(|p| {
            Some((
                p.get("command")?.as_str()?,
                p.get("pid")?.as_i64()?,
                p.get("rss_bytes")
                    .and_then(Value::as_u64)
                    .unwrap_or_default(),
            ))
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
    let mut text = format!("{} processes are running.", list.len());
    if !rows.is_empty() {
        text.push_str(" Largest by memory:");
        for (command, pid, rss) in rows.iter().take(5) {
            text.push_str(&format!("\n  {command} (pid {pid}): {}", bytes(*rss)));
        }
    }
    Some(text)
}

fn audit(output: &Value) -> Option<String> {
    let entries = output.get("entries")?.as_array()?;
    if entries.is_empty() {
        return Some("The audit trail is empty.".into());
    }
    let mut text = format!(
        "The last {} of {} audit entries:",
        entries.len(),
        output.get("total")?.as_u64()?
    );
    for e in entries.iter().rev().take(10) {
        text.push_str(&format!(
            "\n  #{} {} {} {}{}",
            e.get("seq")?.as_u64()?,
            e.get("kind")?.as_str()?,
            e.get("principal")?.as_str()?,
            e.get("action")?.as_str()?,
            e.get("outcome")
                .and_then(Value::as_str)
                .map(|o| format!(" → {o}"))
                .unwrap_or_default(),
        ));
    }
    Some(text)
}

fn grants(output: &Value) -> Option<String> {
    let grants = output.get("grants")?.as_array()?;
    if grants.is_empty() {
        return Some(
            "No grant is in force: every principal other than you is default-deny.".into(),
        );
    }
    let mut text = format!("{} grants in force:", grants.len());
    for g in grants {
        let list = |key: &str| -> Option<String> {
            Some(
                g.get(key)?
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        };
        text.push_str(&format!(
            "\n  {} {}: {} on {}",
            g.get("id")?.as_str()?,
            g.get("principal")?.as_str()?,
            list("actions")?,
            list("resources")?,
        ));
    }
    Some(text)
}

/// Bytes in binary units, one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds as days, hours and minutes.
fn duration(secs: f64) -> String {
    let total = secs.max(0.0) as u64;
    let (days, hours, minutes) = (total / 86_400, total % 86_400 / 3600, total % 3600 / 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} d {hours} h"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn health() -> Value {
        json!({
            "cpu": {"cores": 2, "usage_percent": 12.5, "states": {}},
            "memory": {"total": 8u64 << 30, "available": 6u64 << 30, "used": 2u64 << 30,
                       "swap_total": 0, "swap_free": 0},
            "pressure": null,
            "disks": [
                {"mount": "/", "fs_type": "ext4", "source": "/dev/vda", "total": 100u64 << 30,
                 "free": 30u64 << 30, "available": 25u64 << 30},
                {"mount": "/data", "fs_type": "xfs", "source": "/dev/vdb", "total": 10u64 << 30,
                 "free": 1u64 << 30, "available": 1u64 << 30}
            ],
            "load": [0.5, 0.25, 0.1],
            "uptime_secs": 93_780.0,
            "hostname": "box",
            "kernel": "6.1.0"
        })
    }

    #[test]
    fn disk_lists_each_filesystem_with_free_space() {
        let text = skill_answer("disk", &health()).unwrap();
        assert_eq!(
            text,
            "/: 25.0 GiB free of 100.0 GiB (75% used, ext4)\n\
             /data: 1.0 GiB free of 10.0 GiB (90% used, xfs)"
        );
    }

    #[test]
    fn memory_uptime_and_status() {
        assert_eq!(
            skill_answer("memory", &health()).unwrap(),
            "Memory: 6.0 GiB available of 8.0 GiB (2.0 GiB in use). No swap."
        );
        assert_eq!(
            skill_answer("uptime", &health()).unwrap(),
            "box has been up 1 d 2 h; load average 0.50, 0.25, 0.10."
        );
        let status = skill_answer("status", &health()).unwrap();
        assert!(
            status.contains("fullest disk /data with 1.0 GiB free"),
            "{status}"
        );
    }

    #[test]
    fn unexpected_output_gives_none() {
        assert_eq!(skill_answer("disk", &json!({"nope": 1})), None);
        assert_eq!(skill_answer("no-such-skill", &health()), None);
        assert_eq!(
            skill_answer("grants", &json!({"grants": []})).unwrap(),
            "No grant is in force: every principal other than you is default-deny."
        );
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 40), "5.0 TiB");
    }
}
