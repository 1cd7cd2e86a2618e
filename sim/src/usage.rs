//! What this process uses: resident memory (`/proc/self/status`) and CPU time of the
//! main thread (`/proc/self/schedstat`), on Linux; `None` elsewhere. CPU time is
//! reported beside wall time because the machine is shared: wall time includes waiting
//! for a core, CPU time does not.

/// `(current, peak)` resident set size in bytes.
pub fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time of the calling thread's task group leader (the simulator's only thread), in
/// seconds.
pub fn cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process_on_linux() {
        if cfg!(target_os = "linux") {
            let (now, peak) = super::rss().expect("/proc/self/status is readable");
            assert!(now > 0 && peak >= now);
            assert!(super::cpu_s().is_some_and(|s| s > 0.0));
        }
    }
}
