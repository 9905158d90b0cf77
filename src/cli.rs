//! The command line: parsing arguments into a checked configuration, running the pipeline, and
//! turning the outcome into an exit code.
//!
//! Exit codes (the contract, also in the README): 0 success; 1 reserved for a later `--check`
//! that finds differences; 2 any error (bad input, istioctl failure, I/O).
//! Owns: clap, the stderr summary, exit codes. Must not: contain pipeline logic; nothing after
//! `Config` sees clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::Result;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "istio-canary",
    version,
    about = "Compile an Istio canary (revision-based) control-plane upgrade into ordered, reviewable YAML bundles",
    long_about = None,
    after_help = "Exit codes: 0 success; 2 any error (bad input, istioctl failure, I/O); 1 is reserved for `--check`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render both revisions with their vendored istioctl and write one bundle per phase.
    Compile {
        /// The upgrade policy (CanaryUpgrade).
        #[arg(long, value_name = "FILE", default_value = "canary.yaml")]
        policy: PathBuf,
        /// Where to write the bundles; replaced whole on every run.
        #[arg(long, value_name = "DIR", default_value = "bundles")]
        out: PathBuf,
        /// Replace --out even if istio-canary did not write it.
        #[arg(long)]
        force: bool,
        /// Stop an istioctl call that takes longer than this.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        istioctl_timeout: u64,
        /// Also write live/, the desired state after this phase (an index or a name such as
        /// migrate-canary); overrides spec.promote.
        #[arg(long, value_name = "PHASE")]
        promote: Option<String>,
    },
}

/// Everything `compile` needs, checked; built once from the command line.
#[derive(Debug, Clone)]
pub struct CompileConfig {
    pub policy: PathBuf,
    pub out: PathBuf,
    pub force: bool,
    pub istioctl_timeout: Duration,
    /// `--promote`: overrides the policy's `spec.promote`.
    pub promote: Option<String>,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
        }
    };
    let result = match cli.command {
        Command::Compile {
            policy,
            out,
            force,
            istioctl_timeout,
            promote,
        } => {
            let config = CompileConfig {
                policy,
                out,
                force,
                istioctl_timeout: Duration::from_secs(istioctl_timeout),
                promote,
            };
            run_compile(&config)
        }
    };
    match result {
        Ok(summary) => {
            eprint!("{summary}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_ERROR
        }
    }
}

fn run_compile(config: &CompileConfig) -> Result<String> {
    let outcome = crate::compile(config)?;
    crate::write::write_atomic(&config.out, &outcome.files, config.force, &outcome.inputs)?;
    Ok(outcome.summary(&config.out))
}
