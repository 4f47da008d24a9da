//! CPU time and memory from `/proc` (Linux only): a process's `utime + stime` from
//! `/proc/<pid>/stat`, its `VmRSS` from `/proc/<pid>/status`, and machine-wide busy time from the
//! `cpu` line of `/proc/stat`.

use std::io;
use std::time::Duration;

/// Clock ticks per second, the unit of `/proc` CPU times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field such as `VmRSS: 12345 kB` from the text of `/proc/<pid>/status`, in bytes.
pub fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = value.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// (busy, total) clock ticks of all CPUs from the text of `/proc/stat`; idle and iowait are not
/// busy, and guest time is already inside user time.
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = v.iter().sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU time a process used so far (user + system). `pid` `None` is this process.
pub fn process_cpu(pid: Option<u32>) -> io::Result<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path)?;
    let ticks = parse_stat_cpu_ticks(&text).ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64))
}

/// Resident memory of a process, bytes.
pub fn process_rss(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kb(&text, "VmRSS").ok_or_else(|| io::Error::other("no VmRSS in /proc status"))
}

/// Machine-wide (busy, total) CPU ticks so far.
pub fn machine_ticks() -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat")?;
    parse_machine_ticks(&text).ok_or_else(|| io::Error::other("no cpu line in /proc/stat"))
}

/// Share of all CPUs' time that was busy between two [`machine_ticks`] readings.
pub fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    after.0.saturating_sub(before.0) as f64 / total as f64
}

/// (on-CPU, waiting-to-run) nanoseconds from the text of a `/proc/.../schedstat`: time a thread ran,
/// and time it was runnable but waited in a run queue because the CPUs were busy.
pub fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace();
    let run = fields.next()?.parse().ok()?;
    let wait = fields.next()?.parse().ok()?;
    Some((run, wait))
}

/// Run-queue wait summed over the threads a process has now (`pid` `None`: this process): how long
/// its runnable threads waited for a CPU. Threads that already ended are not counted.
pub fn process_runqueue_wait(pid: Option<u32>) -> io::Result<Duration> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let mut wait = 0u64;
    for task in std::fs::read_dir(dir)? {
        let path = task?.path().join("schedstat");
        // A thread may end between listing and reading.
        if let Some((_, w)) = std::fs::read_to_string(path).ok().as_deref().and_then(parse_schedstat) {
            wait += w;
        }
    }
    Ok(Duration::from_nanos(wait))
}

/// UDP counters of this network namespace, from `/proc/net/snmp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Datagrams delivered to sockets.
    pub in_datagrams: u64,
    /// Datagrams dropped because a socket's receive buffer was full (its reader was too slow).
    pub rcvbuf_errors: u64,
}

/// The `Udp:` header and value lines of `/proc/net/snmp`.
pub fn parse_udp_snmp(text: &str) -> Option<UdpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let get = |name: &str| -> Option<u64> { values.get(names.iter().position(|n| *n == name)?)?.parse().ok() };
    Some(UdpCounters {
        in_datagrams: get("InDatagrams")?,
        rcvbuf_errors: get("RcvbufErrors")?,
    })
}

/// UDP counters now (whole network namespace: every process in it, not only ours).
pub fn udp_counters() -> io::Result<UdpCounters> {
    let text = std::fs::read_to_string("/proc/net/snmp")?;
    parse_udp_snmp(&text).ok_or_else(|| io::Error::other("no Udp lines in /proc/net/snmp"))
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The CPU model, from the first `model name` of `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_tricky_name() {
        let stat = "4242 (sam tal) (x)) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 9 0 12345 999 100";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_rss_in_bytes() {
        let status = "Name:\tsamtal\nVmPeak:\t  900 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(20480 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM"), None);
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(parse_machine_ticks(stat), Some((160, 1000)));
    }

    #[test]
    fn udp_snmp_by_column_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 3186099 868 1468458 3639984 1468457 0\n\
                    UdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        assert_eq!(
            parse_udp_snmp(text),
            Some(UdpCounters {
                in_datagrams: 3186099,
                rcvbuf_errors: 1468457
            })
        );
        assert_eq!(parse_udp_snmp("Ip: a\nIp: 1\n"), None);
    }

    #[test]
    fn schedstat_run_and_wait() {
        assert_eq!(parse_schedstat("123456 7890 42\n"), Some((123456, 7890)));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn this_process_is_measurable() {
        assert!(process_runqueue_wait(None).is_ok());
        assert!(process_cpu(None).is_ok());
        assert!(process_rss(std::process::id()).unwrap() > 0);
        assert!(machine_ticks().unwrap().1 > 0);
    }
}
