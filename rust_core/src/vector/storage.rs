//! Growth of the big row buffers with transparent huge pages requested (Linux), as numpy does for
//! large arrays: a 150 MB scan over 4 KiB pages spends much of its time on TLB misses.

/// Reserves room for `additional` more elements and asks the kernel to back the not-yet-touched
/// part of the buffer with huge pages. Only advice: failure changes nothing but speed.
pub fn reserve<T>(v: &mut Vec<T>, additional: usize) {
    let before = v.capacity();
    v.reserve(additional);
    if v.capacity() != before {
        advise_huge(v);
    }
}

#[cfg(target_os = "linux")]
fn advise_huge<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < HUGE {
        return;
    }
    let start = v.as_ptr() as usize;
    let aligned = start.next_multiple_of(4096);
    let end = start + bytes;
    if end <= aligned {
        return;
    }
    // SAFETY: madvise only changes paging policy of pages inside the Vec's own allocation
    // ([aligned, end) lies within [start, start + capacity bytes)); it never frees or moves memory.
    unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            end - aligned,
            libc::MADV_HUGEPAGE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge<T>(_v: &Vec<T>) {}
