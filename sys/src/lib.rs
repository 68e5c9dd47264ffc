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

/// Most datagrams one `send_batch` call takes.
pub const SEND_BATCH_MAX: usize = 64;

/// Sends `datagrams[i]` to `to[i]` on the UDP socket `fd`, in one `sendmmsg(2)` call,
/// at most [`SEND_BATCH_MAX`] of them: the answers to a batch of queries go out with
/// one trip into the kernel instead of one each. Returns how many were sent, from the
/// first; an error means the first of them could not be.
#[cfg(target_os = "linux")]
pub fn send_batch<D: AsRef<[u8]>>(
    fd: std::os::fd::BorrowedFd<'_>,
    datagrams: &[D],
    to: &[std::net::SocketAddr],
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = datagrams.len().min(to.len()).min(SEND_BATCH_MAX);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero bytes are a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; SEND_BATCH_MAX] = unsafe { std::mem::zeroed() };
    let mut iovecs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH_MAX];
    // SAFETY: as above.
    let mut headers: [libc::mmsghdr; SEND_BATCH_MAX] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let data = datagrams[i].as_ref();
        iovecs[i] = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let len = write_sockaddr(&to[i], &mut names[i]);
        let h = &mut headers[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = len;
        h.msg_iov = &mut iovecs[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers point at `n` initialized addresses and iovecs, each
    // iovec at a live borrowed slice (sendmmsg only reads them); all outlive the call.
    let sent = unsafe { libc::sendmmsg(fd.as_raw_fd(), headers.as_mut_ptr(), n as u32, 0) };
    if sent < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(target_os = "linux")]
fn write_sockaddr(
    addr: &std::net::SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    use std::mem::size_of;
    match addr {
        std::net::SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is as large and as aligned as any socket
            // address, sockaddr_in among them.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Asks the processor to start bringing `value` in (every cache line it spans),
/// without waiting for it.
///
/// A receiving thread answers a batch of up to 32 queries; most of a cached answer's
/// own cost was waiting on memory, lookups in a row for each query (a table's slot,
/// then the entry it points to). Announcing every query's addresses before working on
/// the first lets those waits overlap instead of adding up. A hint: it changes no
/// value, faults on no address, and does nothing on a processor without the
/// instruction. Meant for small values (an entry of a few lines).
#[inline]
pub fn prefetch<T>(value: &T) {
    let start = std::ptr::from_ref(value).cast::<i8>();
    let mut offset = 0;
    while offset < std::mem::size_of::<T>().max(1) {
        prefetch_line(start.wrapping_add(offset));
        offset += 64;
    }
}

#[inline]
fn prefetch_line(at: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only hints the cache; it reads no memory architecturally and
    // cannot fault, whatever the address. SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at);
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: PRFM is a hint: it never faults and changes no register or memory.
    unsafe {
        std::arch::asm!(
            "prfm pldl1keep, [{0}]",
            in(reg) at,
            options(nostack, readonly, preserves_flags)
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_batch_reaches_each_address_in_order() {
        use std::net::UdpSocket;
        use std::os::fd::AsFd;
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v6 = UdpSocket::bind("[::1]:0").unwrap();
        let sender6 = UdpSocket::bind("[::1]:0").unwrap();
        for s in [&v4, &v6] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
        }
        let datagrams: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        let to = vec![v4.local_addr().unwrap(); 100];
        let mut done = 0;
        while done < 100 {
            done += super::send_batch(sender.as_fd(), &datagrams[done..], &to[done..]).unwrap();
        }
        let mut buf = [0u8; 512];
        for i in 0..100u8 {
            let (n, from) = v4.recv_from(&mut buf).unwrap();
            assert_eq!(from, sender.local_addr().unwrap());
            assert_eq!(&buf[..n], &datagrams[usize::from(i)][..]);
        }
        let sent = super::send_batch(sender6.as_fd(), &[b"six"], &[v6.local_addr().unwrap()]);
        assert_eq!(sent.unwrap(), 1);
        let (n, _) = v6.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"six");
        assert_eq!(
            super::send_batch::<&[u8]>(sender.as_fd(), &[], &[]).unwrap(),
            0
        );
    }

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
