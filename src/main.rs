//! The `istio-canary` binary: everything lives in the library; this only turns `cli::main`'s
//! result into the process exit code (0 ok, 1 difference found, 2 error; see `cli`), and picks
//! the allocator (mimalloc: a plan of thousands of namespaces makes millions of small
//! short-lived allocations, where glibc's malloc spent a quarter of the time and kept freed
//! memory fragmented).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(istio_canary::cli::main());
}
