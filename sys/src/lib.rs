//! The few calls into the C library that no safe crate offers, each wrapped in a safe
//! function, so every other crate of the workspace can keep `#![forbid(unsafe_code)]`.
#![deny(unsafe_op_in_unsafe_fn)]

/// Hands the kernel back the free pages glibc's allocator keeps after large frees.
///
/// Compiling the block lists allocates and frees tens of megabytes of temporary
/// buffers on several threads; glibc keeps most of it in its arenas, where it counts
/// as the process's memory. On a small box that memory is better returned. A no-op
/// where the C library is not glibc.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer and only walks glibc's own arenas; it
    // is documented as safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes every allocation of 128 KiB or more its own mapping, returned to the kernel
/// when freed.
///
/// glibc raises that threshold by itself after large frees, after which the block
/// lists' build buffers (megabytes each, on worker threads) land in per-thread arenas
/// and stay resident after the build: about 12 MiB with 5 million names. Called once
/// at start, before any thread. A no-op where the C library is not glibc.
pub fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` takes two integers and only changes glibc's allocator
    // settings; M_MMAP_THRESHOLD with a value under its maximum always succeeds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Asks for the pages under `data` to be 2 MiB ones, now.
///
/// The block-list index is one array of tens of megabytes read at random, a few
/// places per query: with 4 KiB pages nearly every probe also misses the TLB and walks
/// the page tables. Only the whole 2 MiB pages inside `data` are concerned (its own
/// allocation, so no other data shares them); the contents do not change. Without
/// transparent huge pages in the kernel, or before Linux 6.1 (`MADV_COLLAPSE`), the
/// pages stay as they are or are collapsed later in the background. Linux only.
pub fn prefer_huge_pages<T>(data: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        const MADV_COLLAPSE: libc::c_int = 25;
        let start = data.as_ptr() as usize;
        let end = start + std::mem::size_of_val(data);
        let first = start.next_multiple_of(HUGE);
        let last = end / HUGE * HUGE;
        if last <= first {
            return;
        }
        for advice in [libc::MADV_HUGEPAGE, MADV_COLLAPSE] {
            // SAFETY: [first, last) lies inside `data`, which the caller holds borrowed,
            // so the range is mapped and belongs to that one allocation. Both advices
            // only change how the range is backed (huge pages), never its contents,
            // and failing (EINVAL without THP, say) leaves the mapping as it was.
            unsafe {
                libc::madvise(first as *mut libc::c_void, last - first, advice);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn releasing_free_heap_keeps_live_memory_intact() {
        super::return_large_allocations();
        let kept: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1 << 16]).collect();
        drop((0..64).map(|_| vec![7u8; 1 << 20]).collect::<Vec<_>>());
        super::release_free_heap();
        let big: Vec<u64> = (0..1u64 << 20).collect();
        super::prefer_huge_pages(&big);
        assert!(big.iter().enumerate().all(|(i, v)| *v == i as u64));
        super::prefer_huge_pages::<u8>(&[]);
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, v)| v.iter().all(|b| *b == i as u8))
        );
    }
}
