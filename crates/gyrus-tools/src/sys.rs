//! `sys.health`: how the machine is doing, from `/proc` and `statvfs`: CPU use over a short
//! sample, memory, pressure stall information, disks, load, uptime. The parsers are pure and
//! take the files' text; only [`Health::run`] reads the files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::env::ToolEnv;
use crate::registry::Tools;
use crate::spec::{Requirement, Risk, ToolError};
use crate::typed::{CallContext, Ran, Typed, TypedTool};

/// How long the CPU is watched to measure its use.
pub const CPU_SAMPLE: Duration = Duration::from_millis(100);

/// Registers `sys.health`.
pub fn register(tools: &mut Tools) {
    tools.register(Typed::new(Health));
}

/// Arguments of `sys.health`: none.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthArgs {}

/// The machine's state.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct HealthOutput {
    /// Processor use.
    pub cpu: Cpu,
    /// Memory and swap.
    pub memory: Memory,
    /// Pressure stall information; `null` where the kernel does not provide it.
    pub pressure: Option<Pressure>,
    /// Mounted filesystems backed by storage, one per device.
    pub disks: Vec<Disk>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Seconds since boot.
    pub uptime_secs: f64,
    /// The host name.
    pub hostname: String,
    /// The kernel release, e.g. `6.8.0-45-generic`.
    pub kernel: String,
}

/// Processor use over the sample.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Cpu {
    /// Online logical processors.
    pub cores: usize,
    /// Percent of all processors' time spent not idle (idle and iowait count as idle).
    pub usage_percent: f64,
    /// Percent of time in each state (`user`, `nice`, `system`, `idle`, `iowait`, `irq`,
    /// `softirq`, `steal`), summing to 100.
    pub states: BTreeMap<String, f64>,
}

/// Memory and swap, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Memory {
    /// Physical memory.
    pub total: u64,
    /// What new work could use without swapping (`MemAvailable`).
    pub available: u64,
    /// `total - available`.
    pub used: u64,
    /// Swap space.
    pub swap_total: u64,
    /// Unused swap.
    pub swap_free: u64,
}

/// Pressure stall information (`/proc/pressure/*`): the share of time tasks waited.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Pressure {
    /// Waiting for a processor.
    pub cpu: Option<Stall>,
    /// Waiting for memory.
    pub memory: Option<Stall>,
    /// Waiting for I/O.
    pub io: Option<Stall>,
}

/// One resource's pressure.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Stall {
    /// Some tasks were stalled.
    pub some: StallAverages,
    /// All non-idle tasks were stalled at once (absent for CPU on older kernels).
    pub full: Option<StallAverages>,
}

/// Percent of time stalled, averaged over 10, 60 and 300 seconds.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct StallAverages {
    /// Over 10 seconds.
    pub avg10: f64,
    /// Over 60 seconds.
    pub avg60: f64,
    /// Over 300 seconds.
    pub avg300: f64,
}

/// One filesystem, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Disk {
    /// Where it is mounted.
    pub mount: String,
    /// Its type, e.g. `ext4`.
    pub fs_type: String,
    /// What it is mounted from, e.g. `/dev/nvme0n1p2`.
    pub source: String,
    /// Its size.
    pub total: u64,
    /// Free space, the part reserved for root included.
    pub free: u64,
    /// Free space an ordinary user may use.
    pub available: u64,
}

/// `sys.health`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Health;

impl TypedTool for Health {
    type Args = HealthArgs;
    type Output = HealthOutput;
    const NAME: &'static str = "sys.health";
    const DESCRIPTION: &'static str = "Reports the machine's health: CPU use over a 100 ms sample, memory and swap, pressure stalls, disk space per filesystem, load averages, uptime, host name and kernel.";
    const RISK: Risk = Risk::Read;

    fn timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn requirements(
        &self,
        _args: &HealthArgs,
        _env: &ToolEnv,
    ) -> Result<Vec<Requirement>, ToolError> {
        Ok(vec![Requirement::new(Self::NAME, "system:host")?])
    }

    fn run(
        &self,
        _cx: &CallContext<'_>,
        _args: HealthArgs,
    ) -> Result<Ran<HealthOutput>, ToolError> {
        let before = parse_stat(&read("/proc/stat")?)?;
        std::thread::sleep(CPU_SAMPLE);
        let after = parse_stat(&read("/proc/stat")?)?;
        let cpu = cpu_usage(&before, &after);
        let memory = parse_meminfo(&read("/proc/meminfo")?)?;
        let pressure = read_pressure(Path::new("/proc/pressure"));
        let disks = disks(&read("/proc/self/mountinfo")?);
        let load = parse_loadavg(&read("/proc/loadavg")?)?;
        let uptime_secs = parse_uptime(&read("/proc/uptime")?)?;
        let hostname = read("/proc/sys/kernel/hostname")?.trim().to_string();
        let kernel = read("/proc/sys/kernel/osrelease")?.trim().to_string();
        Ok(Ran::output(HealthOutput {
            cpu,
            memory,
            pressure,
            disks,
            load,
            uptime_secs,
            hostname,
            kernel,
        }))
    }
}

fn read(path: &str) -> Result<String, ToolError> {
    std::fs::read_to_string(path).map_err(|e| {
        ToolError::Unavailable(format!(
            "cannot read {path}: {e}; sys.health needs Linux with /proc mounted"
        ))
    })
}

fn bad(file: &str, what: &str) -> ToolError {
    ToolError::Failed(format!("{file} is not in the expected format: {what}"))
}

/// The CPU time counters of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuTimes {
    /// The aggregate `cpu` line: user, nice, system, idle, iowait, irq, softirq, steal.
    pub total: [u64; 8],
    /// How many `cpuN` lines there are: online processors.
    pub cores: usize,
}

const CPU_STATES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Parses `/proc/stat`. Guest time is already counted in user and nice, so it is left out.
pub fn parse_stat(text: &str) -> Result<CpuTimes, ToolError> {
    let mut total = None;
    let mut cores = 0;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") => {
                let mut t = [0u64; 8];
                for (slot, field) in t.iter_mut().zip(&mut fields) {
                    *slot = field
                        .parse()
                        .map_err(|_| bad("/proc/stat", "a cpu counter is not a number"))?;
                }
                total = Some(t);
            }
            Some(name)
                if name.starts_with("cpu") && name[3..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                cores += 1;
            }
            _ => {}
        }
    }
    let total = total.ok_or_else(|| bad("/proc/stat", "no cpu line"))?;
    Ok(CpuTimes { total, cores })
}

/// Processor use between two readings of `/proc/stat`.
pub fn cpu_usage(before: &CpuTimes, after: &CpuTimes) -> Cpu {
    let delta: Vec<u64> = after
        .total
        .iter()
        .zip(before.total)
        .map(|(a, b)| a.saturating_sub(b))
        .collect();
    let sum: u64 = delta.iter().sum();
    let pct = |v: u64| {
        if sum == 0 {
            0.0
        } else {
            round2(v as f64 * 100.0 / sum as f64)
        }
    };
    let idle = delta[3] + delta[4];
    let states = CPU_STATES
        .iter()
        .zip(&delta)
        .map(|(name, v)| (name.to_string(), pct(*v)))
        .collect();
    Cpu {
        cores: after.cores.max(1),
        usage_percent: if sum == 0 {
            0.0
        } else {
            round2(100.0 - pct(idle))
        },
        states,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Parses `/proc/meminfo` (values in kB) into bytes.
pub fn parse_meminfo(text: &str) -> Result<Memory, ToolError> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(value)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let scale = match parts.next() {
            Some("kB") => 1024,
            _ => 1,
        };
        fields.insert(key.trim(), value.saturating_mul(scale));
    }
    let get = |key: &str| {
        fields
            .get(key)
            .copied()
            .ok_or_else(|| bad("/proc/meminfo", &format!("no {key}")))
    };
    let total = get("MemTotal")?;
    // MemAvailable exists since Linux 3.14; before that, free plus page cache is close.
    let available = get("MemAvailable").or_else(|_| {
        Ok::<u64, ToolError>(
            get("MemFree")? + get("Cached").unwrap_or(0) + get("Buffers").unwrap_or(0),
        )
    })?;
    Ok(Memory {
        total,
        available,
        used: total.saturating_sub(available),
        swap_total: get("SwapTotal").unwrap_or(0),
        swap_free: get("SwapFree").unwrap_or(0),
    })
}

/// Parses one `/proc/pressure/<resource>` file.
pub fn parse_pressure(text: &str) -> Option<Stall> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let kind = parts.next()?;
        let mut avg = [None; 3];
        for part in parts {
            let (key, value) = part.split_once('=')?;
            let slot = match key {
                "avg10" => 0,
                "avg60" => 1,
                "avg300" => 2,
                _ => continue,
            };
            avg[slot] = value.parse::<f64>().ok();
        }
        let averages = StallAverages {
            avg10: avg[0]?,
            avg60: avg[1]?,
            avg300: avg[2]?,
        };
        match kind {
            "some" => some = Some(averages),
            "full" => full = Some(averages),
            _ => {}
        }
    }
    Some(Stall { some: some?, full })
}

fn read_pressure(dir: &Path) -> Option<Pressure> {
    let one = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|t| parse_pressure(&t))
    };
    let pressure = Pressure {
        cpu: one("cpu"),
        memory: one("memory"),
        io: one("io"),
    };
    if pressure.cpu.is_none() && pressure.memory.is_none() && pressure.io.is_none() {
        None
    } else {
        Some(pressure)
    }
}

/// Parses `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], ToolError> {
    let mut parts = text.split_ascii_whitespace().map(str::parse::<f64>);
    let mut next = || {
        parts
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| bad("/proc/loadavg", "fewer than three load averages"))
    };
    Ok([next()?, next()?, next()?])
}

/// Parses `/proc/uptime`.
pub fn parse_uptime(text: &str) -> Result<f64, ToolError> {
    text.split_ascii_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("/proc/uptime", "no uptime"))
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the device.
    pub device: String,
    /// The mount point, escapes decoded.
    pub mount_point: String,
    /// The filesystem type.
    pub fs_type: String,
    /// The source, escapes decoded.
    pub source: String,
}

/// Parses `/proc/self/mountinfo` (see proc(5)); malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let before: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            Some(Mount {
                device: before.get(2)?.to_string(),
                mount_point: unescape(before.get(4)?),
                fs_type: after.next()?.to_string(),
                source: unescape(after.next()?),
            })
        })
        .collect()
}

/// Decodes the octal escapes (`\040` for a space) the kernel writes in mount fields.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = oct
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Filesystem types that hold no storage of their own (or, for `tmpfs` and `squashfs`, none
/// worth watching).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "fuse.lxcfs",
];

/// The mounts worth reporting: real filesystems, one per device (a device mounted or
/// bind-mounted several times is reported at its shortest mount point).
pub fn storage_mounts(mounts: Vec<Mount>) -> Vec<Mount> {
    let mut best: BTreeMap<String, Mount> = BTreeMap::new();
    for m in mounts {
        if PSEUDO_FS.contains(&m.fs_type.as_str()) {
            continue;
        }
        // Network filesystems share a 0:N device number per mount; key them by source.
        let key = if m.device.starts_with("0:") {
            format!("{}|{}", m.fs_type, m.source)
        } else {
            m.device.clone()
        };
        match best.get(&key) {
            Some(seen) if seen.mount_point.len() <= m.mount_point.len() => {}
            _ => {
                best.insert(key, m);
            }
        }
    }
    let mut out: Vec<Mount> = best.into_values().collect();
    out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    out
}

fn disks(mountinfo: &str) -> Vec<Disk> {
    let mut seen = BTreeSet::new();
    storage_mounts(parse_mountinfo(mountinfo))
        .into_iter()
        .filter_map(|m| {
            // A mount the daemon cannot stat (permissions, a hung network share) is left out.
            let st = rustix::fs::statvfs(m.mount_point.as_str()).ok()?;
            if st.f_blocks == 0 || !seen.insert(m.mount_point.clone()) {
                return None;
            }
            let unit = if st.f_frsize > 0 {
                st.f_frsize
            } else {
                st.f_bsize
            };
            Some(Disk {
                mount: m.mount_point,
                fs_type: m.fs_type,
                source: m.source,
                total: st.f_blocks.saturating_mul(unit),
                free: st.f_bfree.saturating_mul(unit),
                available: st.f_bavail.saturating_mul(unit),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_1: &str = "cpu  100 10 50 800 20 5 5 10 0 0
cpu0 50 5 25 400 10 2 3 5 0 0
cpu1 50 5 25 400 10 3 2 5 0 0
intr 12345 0 0
ctxt 999
btime 1700000000
processes 42
procs_running 1
";
    const STAT_2: &str = "cpu  160 10 70 900 30 5 5 20 0 0
cpu0 80 5 35 450 15 2 3 10 0 0
cpu1 80 5 35 450 15 3 2 10 0 0
";

    #[test]
    fn cpu_use_is_the_non_idle_share_of_the_sample() {
        let a = parse_stat(STAT_1).unwrap();
        let b = parse_stat(STAT_2).unwrap();
        assert_eq!(a.cores, 2);
        assert_eq!(a.total, [100, 10, 50, 800, 20, 5, 5, 10]);
        let cpu = cpu_usage(&a, &b);
        // Deltas: user 60, system 20, idle 100, iowait 10, steal 10 → 200 ticks, 110 idle.
        assert_eq!(cpu.cores, 2);
        assert_eq!(cpu.usage_percent, 45.0);
        assert_eq!(cpu.states["user"], 30.0);
        assert_eq!(cpu.states["system"], 10.0);
        assert_eq!(cpu.states["idle"], 50.0);
        assert_eq!(cpu.states["iowait"], 5.0);
        assert_eq!(cpu.states["steal"], 5.0);
        assert_eq!(cpu.states["nice"], 0.0);
        // No time passed: nothing used, no division by zero.
        assert_eq!(cpu_usage(&a, &a).usage_percent, 0.0);
        assert!(parse_stat("intr 1 2 3\n").is_err());
        assert!(parse_stat("cpu 1 x 3\n").is_err());
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       16318412 kB
MemFree:         1234567 kB
MemAvailable:    8000000 kB
Buffers:          200000 kB
Cached:          5000000 kB
SwapTotal:       2097148 kB
SwapFree:        2000000 kB
HugePages_Total:       0
";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(
            m,
            Memory {
                total: 16318412 * 1024,
                available: 8000000 * 1024,
                used: (16318412 - 8000000) * 1024,
                swap_total: 2097148 * 1024,
                swap_free: 2000000 * 1024,
            }
        );
        // An old kernel without MemAvailable: free + cached + buffers.
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n";
        let m = parse_meminfo(old).unwrap();
        assert_eq!(m.available, 400 * 1024);
        assert_eq!(m.swap_total, 0);
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn pressure_has_some_and_maybe_full() {
        let cpu = "some avg10=1.50 avg60=0.75 avg300=0.20 total=123456\n";
        let io = "some avg10=0.00 avg60=0.10 avg300=0.05 total=1\nfull avg10=0.00 avg60=0.05 avg300=0.01 total=1\n";
        let c = parse_pressure(cpu).unwrap();
        assert_eq!(
            c.some,
            StallAverages {
                avg10: 1.5,
                avg60: 0.75,
                avg300: 0.2
            }
        );
        assert_eq!(c.full, None);
        let i = parse_pressure(io).unwrap();
        assert_eq!(i.full.unwrap().avg60, 0.05);
        assert_eq!(parse_pressure(""), None);
        assert_eq!(parse_pressure("some avg10=x avg60=1 avg300=1\n"), None);
    }

    #[test]
    fn load_and_uptime() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/467 12345\n").unwrap(),
            [0.52, 0.58, 0.59]
        );
        assert!(parse_loadavg("0.5\n").is_err());
        assert_eq!(parse_uptime("350735.47 234388.90\n").unwrap(), 350735.47);
        assert!(parse_uptime("").is_err());
    }

    const MOUNTINFO: &str = r"22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 22 0:5 / /dev rw,nosuid,relatime shared:3 - devtmpfs udev rw,size=8000000k
26 22 0:25 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=1600000k
27 22 259:1 / /boot/efi rw,relatime shared:30 - vfat /dev/nvme0n1p1 rw
28 22 259:3 / /home/u/My\040Files rw,relatime shared:31 - ext4 /dev/nvme0n1p3 rw
29 22 259:2 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
30 22 0:40 / /mnt/share rw,relatime shared:40 - nfs4 server:/export rw
31 22 0:41 / /snap/core/1 ro,nodev,relatime shared:41 - squashfs /dev/loop0 ro
32 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw
garbage line
";

    #[test]
    fn mountinfo_keeps_real_filesystems_once_each() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 11);
        assert_eq!(mounts[6].mount_point, "/home/u/My Files");
        let kept: Vec<(String, String)> = storage_mounts(mounts)
            .into_iter()
            .map(|m| (m.mount_point, m.fs_type))
            .collect();
        let want: Vec<(String, String)> = [
            ("/", "ext4"),
            ("/boot/efi", "vfat"),
            ("/home/u/My Files", "ext4"),
            ("/mnt/share", "nfs4"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        pretty_assertions::assert_eq!(kept, want);
        assert_eq!(unescape(r"a\040b\134c\0"), "a b\\c\\0");
    }
}
