//! What the bench reads about a process from `/proc`: CPU time (user + system, from
//! `/proc/PID/stat`), of it or of its children, and memory (`VmRSS`, `VmHWM` from
//! `/proc/PID/status`).

use std::collections::BTreeMap;
use std::io;

/// CPU time a process has used, user + system, in clock ticks (see [`clock_ticks`]).
/// Threads that have ended are included; children are not.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat: unexpected format")))
}

/// CPU time (as [`cpu_ticks`]) of each live child of `pid` (each process whose parent
/// it is, such as the stdio upstreams a gateway started), by child pid. Fails only
/// when `pid` itself is not readable.
pub fn children_cpu_ticks(pid: u32) -> io::Result<BTreeMap<u32, u64>> {
    std::fs::metadata(format!("/proc/{pid}/stat"))?;
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(child) = entry.ok().and_then(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())) else {
            continue;
        };
        // A process may end between the listing and the read: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        if parse_stat_ppid(&stat) == Some(pid) {
            if let Some(ticks) = parse_stat_cpu(&stat) {
                out.insert(child, ticks);
            }
        }
    }
    Ok(out)
}

/// The parent pid (field 4) from the text of `/proc/PID/stat`.
fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// utime + stime from the text of `/proc/PID/stat`. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    // After the name: state (3), ppid (4), ... utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Machine-wide CPU time from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineCpu {
    /// Time not idle (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// Time the hypervisor ran something else while this machine wanted the CPU.
    pub steal: u64,
}

/// Reads [`MachineCpu`].
pub fn machine_cpu() -> io::Result<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    parse_machine_cpu(&stat).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat: unexpected format"))
}

fn parse_machine_cpu(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line.split_ascii_whitespace().map(|x| x.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice: inside user]
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(MachineCpu { busy: at(0) + at(1) + at(2) + at(5) + at(6) + at(7), steal: at(7) })
}

/// A `kB` line of `/proc/PID/status`, such as `VmRSS` or `VmHWM`, in KiB.
pub fn status_kib(pid: u32, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&status, key)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/status: no {key}")))
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`): `SHADOWCAT_CLK_TCK` if set
/// (the run script passes `getconf CLK_TCK`), else 100, its value on every Linux port
/// that the bench runs on.
pub fn clock_ticks() -> u64 {
    std::env::var("SHADOWCAT_CLK_TCK").ok().and_then(|v| v.parse().ok()).filter(|&t| t > 0).unwrap_or(100)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat_cpu(stat), Some(281));
        assert_eq!(parse_stat_cpu("garbage"), None);
        assert_eq!(parse_stat_ppid(stat), Some(1));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn finds_children() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = children_cpu_ticks(std::process::id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains_key(&child.id()), "{found:?}");
        assert!(children_cpu_ticks(u32::MAX).is_err());
    }

    #[test]
    fn parses_machine_cpu() {
        let stat = "cpu  93058 1 17995 276213 1484 2 878 49 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(parse_machine_cpu(stat), Some(MachineCpu { busy: 93058 + 1 + 17995 + 2 + 878 + 49, steal: 49 }));
        assert_eq!(parse_machine_cpu("intr 1 2"), None);
    }

    #[test]
    fn parses_status_lines() {
        let status = "Name:\tx\nVmHWM:\t   5120 kB\nVmRSS:\t    4096 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(4096));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(5120));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_ok());
        assert!(status_kib(me, "VmRSS").unwrap() > 0);
    }
}
