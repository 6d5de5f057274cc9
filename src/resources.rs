//! What a training run will allocate, checked against the memory the machine has before
//! anything is allocated, so that an impossible configuration (`--hidden 65536 --layers 2`,
//! `--epochs 100000000000`) is refused with an estimate instead of aborting on allocation.

use crate::error::{Error, Result};

/// The bytes a training run allocates, by kind (as `f64`: an absurd configuration's estimate
/// may not fit 64 bits, and is still reported).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryEstimate {
    /// The weights and biases, the momentum velocity, and the buffers of a model file being
    /// written (a serialised copy and the file's bytes).
    pub weights: f64,
    /// The activations and gradient buffers of a batch (or an evaluation chunk).
    pub workspace: f64,
    /// The records kept over the run: per-epoch metrics, the learning curve and the holdout's
    /// index lists.
    pub records: f64,
}

/// Two runs at once: the sum, kind by kind.
impl std::ops::Add for MemoryEstimate {
    type Output = MemoryEstimate;
    fn add(self, other: MemoryEstimate) -> MemoryEstimate {
        MemoryEstimate {
            weights: self.weights + other.weights,
            workspace: self.workspace + other.workspace,
            records: self.records + other.records,
        }
    }
}

impl MemoryEstimate {
    /// All of it.
    pub fn total(&self) -> f64 {
        self.weights + self.workspace + self.records
    }

    /// [`Error::Memory`] unless [`MemoryEstimate::total`] fits in the memory available now
    /// (nothing is checked where that is unknown: outside Linux).
    ///
    /// # Errors
    /// [`Error::Memory`], naming `what` and the estimate by kind.
    pub fn check(&self, what: &str) -> Result<()> {
        let parts: Vec<String> = [
            ("weights", self.weights),
            ("batch buffers", self.workspace),
            ("records", self.records),
        ]
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(name, n)| format!("{name} {}", bytes(*n)))
        .collect();
        match parts.len() {
            0 | 1 => check_bytes(what, self.total()),
            _ => check_bytes(&format!("{what} ({})", parts.join(", ")), self.total()),
        }
    }
}

/// [`Error::Memory`] if `needed` bytes exceed the memory available now (nothing is checked
/// where that is unknown).
///
/// # Errors
/// [`Error::Memory`] naming `what`.
pub(crate) fn check_bytes(what: &str, needed: f64) -> Result<()> {
    match available_memory() {
        Some(available) if needed > available as f64 => Err(Error::Memory {
            what: what.to_string(),
            needed: bytes(needed),
            available: bytes(available as f64),
        }),
        _ => Ok(()),
    }
}

/// The memory available to a new allocation now, in bytes: `MemAvailable` from
/// `/proc/meminfo` on Linux, `None` elsewhere or when it cannot be read.
pub(crate) fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line
        .trim_start_matches("MemAvailable:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// `n` bytes for a person: `1.5 GiB`, `320.0 MiB`, `2.1e10 GiB`.
pub(crate) fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else if value < 1e6 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.1e} {}", UNITS[unit])
    }
}

/// Threads per core above which a thread count is refused: more only adds switching.
pub(crate) const MAX_THREADS_PER_CORE: usize = 4;

/// The cores this process may run on (1 if the system does not say).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The largest thread count accepted on this machine: [`MAX_THREADS_PER_CORE`] per core.
pub(crate) fn max_threads() -> usize {
    cores().saturating_mul(MAX_THREADS_PER_CORE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512.0), "512 bytes");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(16.0 * (1u64 << 30) as f64), "16.0 GiB");
        assert_eq!(bytes(2.0f64.powi(100)), "1.2e21 GiB");
    }

    #[test]
    fn this_machine_reports_its_memory_and_refuses_more() {
        let available = available_memory().expect("Linux reports MemAvailable");
        assert!(available > 1 << 20, "{available}");
        assert!(check_bytes("a small thing", 1024.0).is_ok());
        let err = check_bytes("a huge thing", available as f64 * 2.0).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("a huge thing") && text.contains("available"),
            "{text}"
        );
    }
}
