fn main() {
    std::process::exit(istio_canary::cli::main());
}
