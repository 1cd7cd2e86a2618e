//! Resident memory of this process, from `/proc/self/status` (Linux; `None` elsewhere).

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

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process_on_linux() {
        if cfg!(target_os = "linux") {
            let (now, peak) = super::rss().expect("/proc/self/status is readable");
            assert!(now > 0 && peak >= now);
        }
    }
}
