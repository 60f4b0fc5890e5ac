//! CPU time and resident memory of local processes, from /proc (Linux).

use std::time::Duration;

/// Clock ticks per second of /proc's utime/stime: USER_HZ, which Linux fixes
/// at 100 for userspace on every mainstream architecture.
const USER_HZ: f64 = 100.0;

/// User + system CPU time of the whole process (all threads).
pub fn cpu(pid: u32) -> Option<Duration> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// (user, system) CPU time of the whole process (all threads).
pub fn cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// User + system CPU time of one thread of this process.
pub fn thread_cpu(tid: u32) -> Option<Duration> {
    let (user, system) = stat_cpu(&format!("/proc/self/task/{tid}/stat"))?;
    Some(user + system)
}

/// The calling thread's id, from the `/proc/thread-self` link
/// (`<pid>/task/<tid>`).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// utime and stime of a `/proc/.../stat` file.
fn stat_cpu(path: &str) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; 3 is `state`, index 0 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((
        Duration::from_secs_f64(utime / USER_HZ),
        Duration::from_secs_f64(stime / USER_HZ),
    ))
}

/// (busy, total) CPU time of the whole machine, all cores, from /proc/stat:
/// shows whether the machine itself was saturated during a run.
pub fn machine() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user);
    // steal (a VM's host busy elsewhere) counts as neither busy nor total.
    let total: f64 = ticks.iter().take(7).sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0.0);
    Some((
        Duration::from_secs_f64((total - idle) / USER_HZ),
        Duration::from_secs_f64(total / USER_HZ),
    ))
}

/// Resident set size, bytes.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn self_pid() -> u32 {
    std::process::id()
}

/// Open file descriptors (entries of /proc/<pid>/fd): sockets, files, pipes.
/// Needs the same user as the process (or root).
pub fn fds(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.count() as u64)
}
