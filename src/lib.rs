//! istio-canary compiles an Istio canary (revision-based) control-plane upgrade into ordered,
//! reviewable YAML bundles, one per phase.
//!
//! The pipeline, one module per stage, none reaching backwards (`tests/layers.rs` holds every
//! module to its place in `LAYERS` below): `policy` (load and validate) -> `render` (istioctl,
//! the only process I/O, behind the render `cache` and run in parallel by `jobs`) -> `plan`
//! (pure) -> `describe` (the plan in words) -> `layout` (the plan as files) -> `emit` (pure: to
//! path -> text) -> `write` (atomic). Below the pipeline sit the Kubernetes model (`manifest`,
//! `selector`, `cluster`, `k8s`, `names`), free of Istio, and
//! Istio's facts (`istio`) and evaluation (`mesh`). `pipeline::compile` runs the stages; `cli` is
//! the command line; `check` reads a written output back and writes nothing; `lint` reports
//! every input-only finding of a policy at once.

pub mod cache;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod describe;
pub mod diff;
pub mod emit;
pub mod error;
pub mod gitops;
pub mod init;
pub mod inventory;
pub mod istio;
pub mod jobs;
pub mod k8s;
pub mod layout;
pub mod lint;
pub mod manifest;
pub mod mesh;
pub mod names;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod policy_schema;
pub mod render;
pub mod schema;
pub mod selector;
pub mod write;
pub mod yamlin;
pub mod yamlout;
pub mod yamlpath;

pub use pipeline::{compile, compile_all, CompileConfig, Compiled};

/// The tool's version, as it appears in generated files.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every module of the crate in pipeline order: a module may use only modules before it (its
/// unit tests aside). `tests/layers.rs` reads every `src/` file and fails on an import against
/// this order, and on a module missing from it.
#[rustfmt::skip] // one compact list: rustfmt would put each long name on a line of its own
pub const LAYERS: &[&str] = &[
    "error", "jobs", "yamlpath", "yamlin", "yamlout", "names", "k8s", "manifest", "inventory",
    "selector", "cluster", "istio", "mesh", "policy_schema", "policy", "init", "lint", "cache",
    "render", "diff", "plan", "describe", "schema", "layout", "gitops", "emit", "write", "check",
    "pipeline", "cli",
];
