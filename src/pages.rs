//! Huge pages for the weights of a training run: the one place that advises the kernel on
//! memory, and so the one place with that `unsafe`.
//!
//! A step reads a wide layer's weights three times, and the forward product visits them in
//! column tiles, a few lines of each row, rows 8 KiB apart at 2048 columns: in 4 KiB pages,
//! every row of a tile needs its own TLB entry. Linux backs a range with 2 MiB pages when asked
//! (`madvise`): `MADV_HUGEPAGE` for the range's future page faults and `MADV_COLLAPSE` (Linux
//! 6.1) for the pages it already has, whatever the system's default (`transparent_hugepage`
//! is often `madvise`). A hint: where the kernel refuses, nothing changes but speed.

#![allow(unsafe_code)]

/// Weights below this many bytes are left as they are: they span few 2 MiB pages.
const MIN_BYTES: usize = 4 << 20;

/// The size of an x86-64 or aarch64 huge page.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the 2 MiB-aligned interior of `values` with huge pages, now and
/// later. Returns whether it did (`false` below [`MIN_BYTES`], outside Linux with glibc, or
/// when the kernel refuses). The values do not change.
pub(crate) fn advise_huge(values: &mut [f32]) -> bool {
    let bytes = std::mem::size_of_val(values);
    if bytes < MIN_BYTES {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let start = values.as_mut_ptr() as usize;
        let (first, end) = (
            start.next_multiple_of(HUGE_PAGE),
            (start + bytes) / HUGE_PAGE * HUGE_PAGE,
        );
        if end <= first {
            return false;
        }
        let range = (first as *mut libc::c_void, end - first);
        // SAFETY: the range is page aligned and inside the allocation of `values`, which this
        // function borrows exclusively; these two advices change how the memory is backed
        // (the kernel copies its pages into huge ones), never its contents.
        unsafe {
            libc::madvise(range.0, range.1, libc::MADV_HUGEPAGE) == 0
                && libc::madvise(range.0, range.1, libc::MADV_COLLAPSE) == 0
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kB of huge pages backing the mapping that holds `address` (`/proc/self/smaps`).
    fn huge_kb_at(address: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_once(' ').and_then(|(r, _)| r.split_once('-'));
            if let Some((lo, hi)) = range
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&address);
            } else if inside && let Some(kb) = line.strip_prefix("AnonHugePages:") {
                return kb.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
        None
    }

    #[test]
    fn advised_weights_keep_their_values_and_get_huge_pages_where_the_kernel_agrees() {
        let mut small: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert!(!advise_huge(&mut small), "small buffers are left alone");
        let n = 3 * (MIN_BYTES / 4);
        let mut values: Vec<f32> = (0..n).map(|i| (i as f32).sin()).collect();
        let before = values.clone();
        let accepted = advise_huge(&mut values);
        assert!(
            values
                .iter()
                .zip(&before)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        if accepted {
            let huge = huge_kb_at(values.as_ptr() as usize + MIN_BYTES)
                .expect("/proc/self/smaps lists the buffer");
            assert!(
                huge >= 2048,
                "the kernel accepted, yet {huge} kB of huge pages back it"
            );
        } else {
            // MADV_COLLAPSE ignores the system's transparent_hugepage setting: only a kernel
            // older than 6.1, or another system, may refuse.
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            let version: Vec<u32> = release
                .split(|c: char| !c.is_ascii_digit())
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            let modern = cfg!(all(target_os = "linux", target_env = "gnu"))
                && version.as_slice() >= [6, 1].as_slice();
            assert!(!modern, "Linux {} refused huge pages", release.trim());
        }
    }
}
