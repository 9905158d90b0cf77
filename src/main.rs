//! The `istio-canary` binary: everything lives in the library; this only turns `cli::main`'s
//! result into the process exit code (0 ok, 1 difference found, 2 error; see `cli`), and picks
//! the allocator (mimalloc: a plan of thousands of namespaces makes millions of small
//! short-lived allocations, where glibc's malloc spent a quarter of the time and kept freed
//! memory fragmented) and how soon it gives freed memory back.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the crate exports no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // mimalloc keeps freed pages for a second (its default `purge_delay`) before returning them
    // to the system: a whole compile. A large plan frees its kept states before it makes the
    // output's text (`Plan::release_states`); returned after 10 ms, their pages do not add to
    // the peak. SAFETY: `mi_option_set` is not thread-safe, and no other thread exists yet.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 10) };
    std::process::exit(istio_canary::cli::main());
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "ISTIO_CANARY_PURGE_DELAY_CHILD";

    /// `PURGE_DELAY` is the option mimalloc reads from `MIMALLOC_PURGE_DELAY`: the test runs
    /// itself again with that variable set (mimalloc reads its environment once, so only a new
    /// process sees it), and the child reads the option back by `PURGE_DELAY`.
    #[test]
    fn purge_delay_is_the_option_mimalloc_reads_as_its_purge_delay() {
        let name = "tests::purge_delay_is_the_option_mimalloc_reads_as_its_purge_delay";
        if let Ok(expected) = std::env::var(CHILD) {
            // SAFETY: reading an option; nothing sets one in this process.
            let read = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
            assert_eq!(read.to_string(), expected);
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads", "1"])
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .env(CHILD, "4321")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.contains("1 passed"),
            "the child ran no test: {stdout}"
        );
    }
}
