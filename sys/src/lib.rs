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

#[cfg(test)]
mod tests {
    #[test]
    fn releasing_free_heap_keeps_live_memory_intact() {
        super::return_large_allocations();
        let kept: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1 << 16]).collect();
        drop((0..64).map(|_| vec![7u8; 1 << 20]).collect::<Vec<_>>());
        super::release_free_heap();
        assert!(
            kept.iter()
                .enumerate()
                .all(|(i, v)| v.iter().all(|b| *b == i as u8))
        );
    }
}
