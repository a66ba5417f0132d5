//! What every benchmark prints beside its figures: the machine's load (the
//! operator's build: `operator::operator_build`).
#![allow(dead_code)]

/// The load averages (1, 5, 15 min) from /proc/loadavg.
pub fn load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
