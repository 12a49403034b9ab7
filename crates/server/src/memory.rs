//! How the binaries' memory comes from the kernel.
//!
//! mimalloc reserves its memory in large arenas (1 GiB of address space at a time) and, where the
//! kernel offers transparent huge pages, asks for them. With huge pages each thread's first touch
//! of a fresh region maps 2 MiB, not 4 KiB: the server's resident memory about doubles, and the
//! router gains nothing from it. The crate's `no_thp` feature stops mimalloc's own request;
//! [`no_transparent_huge_pages`] also covers kernels set to use huge pages for every large mapping
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `always`, as on RHEL).

/// Turns transparent huge pages off for this process and what it starts. Call it first in
/// `main`, before the runtime's threads touch their memory. Elsewhere than Linux it does nothing.
pub fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Logging is not set up yet; the server runs on, only with more memory.
        eprintln!("hookbus: could not turn transparent huge pages off ({e}); memory use may be higher");
    }
}
