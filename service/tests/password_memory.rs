//! A registration or login storm keeps a replica's memory near `PASSWORD_HASH_CONCURRENCY` × 19 MiB of
//! argon2 work memory, so a pod with the chart's memory limit survives it. Its own test binary: the
//! figure is the whole process's peak RSS, which other tests in the same process would disturb.

use std::time::Duration;

use tiketi_service::auth::password::Hasher;

/// A `/proc/self/status` figure in KiB (`VmRSS`: now, `VmHWM`: the peak so far).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

#[test]
fn a_burst_of_password_hashes_stays_within_the_slots_work_memory() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let slots = 4;
    let before = status_kib("VmRSS");
    runtime.block_on(async {
        // 100 requests at once, as at a sale's opening, through 4 slots; every one waits its turn
        let hasher = Hasher::new(slots, Duration::from_secs(600), Default::default());
        let burst: Vec<_> = (0..100)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(format!("password-{i}")).await })
            })
            .collect();
        for hash in burst {
            assert!(hash.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
    });
    let grown_mib = status_kib("VmHWM").saturating_sub(before) / 1024;
    // 4 slots × 19 MiB = 76 MiB of work memory, plus the runtime's threads and some slack
    let bound = u64::from(slots) * 19 + 48;
    eprintln!("peak RSS grew {grown_mib} MiB for {slots} slots (bound {bound} MiB)");
    assert!(
        grown_mib <= bound,
        "100 hashes through {slots} slots grew the peak RSS by {grown_mib} MiB (bound {bound} MiB)"
    );
}
