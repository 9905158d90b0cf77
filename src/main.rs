//! The `istio-canary` binary: everything lives in the library; this only turns `cli::main`'s
//! result into the process exit code (0 ok, 1 difference found, 2 error; see `cli`).

fn main() {
    std::process::exit(istio_canary::cli::main());
}
