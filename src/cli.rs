//! The command line: parsing arguments into a checked configuration, running the pipeline, and
//! turning the outcome into an exit code.
//!
//! Exit codes (the contract, also in the README): 0 success; 1 a difference found
//! (`compile --check`: `--out` is out of date; `verify`: a file is missing, extra or edited);
//! 2 any error (bad input, istioctl failure, I/O).
//! Owns: clap, everything printed on stdout and stderr, exit codes. A closed stdout (`| head`)
//! is not an error. Must not: contain pipeline or comparison logic (that is `check`); nothing
//! after `Config` sees clap.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::check;
use crate::error::{Error, Result};
use crate::pipeline::{compile_all, compile_with_progress, CompileConfig};
use crate::render::Progress;

pub const EXIT_OK: i32 = 0;
pub const EXIT_DIFFERENT: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "istio-canary",
    version,
    about = "Compile an Istio canary (revision-based) control-plane upgrade into ordered, reviewable YAML bundles",
    long_about = None,
    after_help = "Exit codes: 0 success; 1 a difference found (`compile --check`, `verify`); 2 any error (bad input, istioctl failure, I/O)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render both revisions with their vendored istioctl and write one bundle per phase (with
    /// --check: compare with --out instead).
    Compile {
        /// The upgrade policy (CanaryUpgrade). Repeat it to compile a fleet: each policy then
        /// writes OUT/<metadata.name>/.
        #[arg(long, value_name = "FILE", default_value = "canary.yaml")]
        policy: Vec<PathBuf>,
        /// Compile a fleet: the canary.yaml of every subdirectory of DIR, each into
        /// OUT/<metadata.name>/.
        #[arg(long, value_name = "DIR", conflicts_with = "policy")]
        policies: Option<PathBuf>,
        /// With --policies: compile only shard I of N (0-based) of the fleet, the policies whose
        /// place in the sorted list is I modulo N, for a CI matrix or fan-out.
        #[arg(long, value_name = "I/N", requires = "policies", value_parser = parse_shard)]
        shard: Option<Shard>,
        /// Where to write the bundles; replaced whole on every run (a fleet: one directory per
        /// policy in it).
        #[arg(long, value_name = "DIR", default_value = "bundles")]
        out: PathBuf,
        /// Replace --out even if istio-canary did not write it.
        #[arg(long, conflicts_with = "check")]
        force: bool,
        /// Write nothing: compare the compiled output with --out; exit 1 with a diff when they
        /// differ.
        #[arg(long)]
        check: bool,
        /// Print no summary (notes and warnings still go to stderr).
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        render: RenderArgs,
        /// Also write live/, the desired state after this phase (an index or a name such as
        /// migrate-canary); overrides spec.promote.
        #[arg(long, value_name = "PHASE")]
        promote: Option<String>,
    },
    /// Check a written output against the sha256 digests in its plan.json (no istioctl, no
    /// policy); exit 1 when a file is missing, extra or edited.
    Verify {
        /// The output directory.
        #[arg(value_name = "DIR", default_value = "bundles")]
        dir: PathBuf,
    },
    /// Print one phase's files as one YAML stream in apply order, for `| kubectl apply -f -`
    /// (the uninstall phase: its delete stubs, for `| kubectl delete -f -`).
    Show {
        /// The phase: its index (`3`, `03`), directory (`03-migrate-canary`) or name
        /// (`migrate-canary`); with `--restarts`, also a rollback directory
        /// (`rollback/03-migrate-canary`).
        phase: String,
        /// The output directory.
        #[arg(long, value_name = "DIR", default_value = "bundles")]
        out: PathBuf,
        /// Print instead the phase's (or rollback's) pod-template patches, one `kubectl patch`
        /// command per line in plan order, for `| sh -e`: how PLAN.md runs a directory's
        /// restarts when they are too many to list.
        #[arg(long)]
        restarts: bool,
    },
    /// Compile and print the plan without writing anything.
    Plan {
        /// The upgrade policy (CanaryUpgrade).
        #[arg(long, value_name = "FILE", default_value = "canary.yaml")]
        policy: PathBuf,
        /// text: phases, changes, commands, injection table, input digests; json: exactly the
        /// plan.json compile would write.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        render: RenderArgs,
    },
    /// Check a policy and the files it names without running istioctl, and report every error
    /// and warning at once, each at its file:line:col (exit 2 on an error).
    Lint {
        /// The upgrade policy (CanaryUpgrade).
        #[arg(long, value_name = "FILE", default_value = "canary.yaml")]
        policy: PathBuf,
        /// text: each finding with its source line and help; json: one document for CI
        /// annotations (README: Linting a policy).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Count warnings as errors: exit 2 when there is any.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Write a commented starter policy for an upgrade from one Istio version to another (never
    /// replaces a file), and say what to do next.
    Init {
        /// The Istio version running now (MAJOR.MINOR.PATCH).
        #[arg(long, value_name = "VERSION")]
        from: String,
        /// The Istio version to upgrade to.
        #[arg(long, value_name = "VERSION")]
        to: String,
        /// The IstioOperator spec of the installation, relative to the policy's directory.
        #[arg(long, value_name = "FILE")]
        istio_operator: String,
        /// A namespace to move (repeat the flag for more): the first goes in the first wave
        /// (canary), the others in the second (rest).
        #[arg(long = "namespace", value_name = "NS", required = true)]
        namespaces: Vec<String>,
        /// The policy's metadata.name.
        #[arg(long, default_value = "istio-upgrade")]
        name: String,
        /// Where to write the policy; an existing file is never replaced.
        #[arg(long, value_name = "FILE", default_value = "canary.yaml")]
        policy: PathBuf,
    },
    /// Keep the render cache bounded (README: Render cache).
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Print the JSON Schema of the policy file (canary.yaml), generated from the types that
    /// load it, for editors and CI (README: Editor support).
    Schema,
    /// Print a shell completion script for bash, zsh or fish, generated from these commands and
    /// flags (e.g. `source <(istio-canary completions bash)`).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

/// What `cache` does.
#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// Remove the renders unused for more than --max-age days, then the least recently used
    /// until the rest fit --max-size, and what killed compiles left; a compile may run meanwhile.
    #[command(group(clap::ArgGroup::new("limit").required(true).multiple(true).args(["max_size", "max_age"])))]
    Prune {
        /// The render cache (default: $XDG_CACHE_HOME/istio-canary, else ~/.cache/istio-canary).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Keep at most this much: bytes, or a number with K, M or G (500M, 2G).
        #[arg(long, value_name = "SIZE", value_parser = crate::cache::parse_size)]
        max_size: Option<u64>,
        /// Remove the renders no compile used in the last DAYS days.
        #[arg(long, value_name = "DAYS")]
        max_age: Option<u64>,
    },
}

/// How istioctl runs and where its renders are kept: the flags `compile` and `plan` share.
#[derive(clap::Args, Debug)]
struct RenderArgs {
    /// Stop an istioctl call that takes longer than this.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    istioctl_timeout: u64,
    /// Keep renders in DIR and reuse them (default: $XDG_CACHE_HOME/istio-canary, else
    /// ~/.cache/istio-canary).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Neither read nor write the render cache: run istioctl for every render.
    #[arg(long)]
    no_cache: bool,
    /// Run at most N istioctl calls, and N threads of a large plan, at once (default: the number
    /// of cores).
    #[arg(long, value_name = "N")]
    jobs: Option<NonZeroUsize>,
}

impl RenderArgs {
    /// The checked configuration, the cache directory resolved from the environment.
    fn config(&self, policy: PathBuf, out: PathBuf) -> Result<CompileConfig> {
        let cache_dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => Some(crate::cache::default_dir(|name| std::env::var_os(name))?),
        };
        Ok(CompileConfig {
            istioctl_timeout: Duration::from_secs(self.istioctl_timeout),
            cache_dir,
            jobs: self.jobs.unwrap_or_else(crate::jobs::available),
            ..CompileConfig::new(policy, out)
        })
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// The shells `completions` writes for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// What a command produced: its exit code and what it prints.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn ok(stdout: String, stderr: String) -> Self {
        Outcome {
            code: EXIT_OK,
            stdout,
            stderr,
        }
    }
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
            policies,
            shard,
            out,
            force,
            check,
            quiet,
            render,
            promote,
        } => compile_command(
            policy,
            policies.map(|dir| (dir, shard)),
            out,
            render,
            quiet,
            check,
            force,
            promote,
        ),
        Command::Verify { dir } => run_verify(&dir),
        Command::Show {
            phase,
            out,
            restarts: false,
        } => run_show(&phase, &out),
        Command::Show {
            phase,
            out,
            restarts: true,
        } => run_show_restarts(&phase, &out),
        Command::Plan {
            policy,
            format,
            render,
        } => render
            .config(policy, PathBuf::from("bundles"))
            .and_then(|config| run_plan(&config, format)),
        Command::Lint {
            policy,
            format,
            deny_warnings,
        } => Ok(run_lint(&policy, format, deny_warnings)),
        Command::Init {
            from,
            to,
            istio_operator,
            namespaces,
            name,
            policy,
        } => run_init(
            &crate::init::Starter {
                name,
                from,
                to,
                istio_operator,
                namespaces,
            },
            &policy,
        ),
        Command::Cache {
            command:
                CacheCommand::Prune {
                    cache_dir,
                    max_size,
                    max_age,
                },
        } => run_prune(
            cache_dir,
            crate::cache::Limits {
                max_size,
                max_age: max_age.map(|days| Duration::from_secs(days.saturating_mul(86_400))),
            },
        ),
        Command::Schema => Ok(Outcome::ok(crate::policy::json_schema(), String::new())),
        Command::Completions { shell } => Ok(Outcome::ok(completions(shell), String::new())),
    };
    let outcome = result.and_then(|o| print_stdout(&o.stdout).map(|()| o));
    match outcome {
        Ok(o) => {
            eprint!("{}", o.stderr);
            o.code
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_ERROR
        }
    }
}

/// The completion script for `shell`, generated by clap_complete from `Cli`, so it offers
/// exactly the commands, flags and values the parser accepts.
fn completions(shell: CompletionShell) -> String {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "istio-canary", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    // clap_complete's bash script spells the state of a subcommand of a hyphenated binary two
    // ways (clap-rs/clap#6421: the loop sets `istio__canary__subcmd__compile`, the case arm
    // reads `istio__subcmd__canary__subcmd__compile`), so no flag after a subcommand would
    // complete. Spell the arms as the loop does; tests/completions.rs completes through it.
    match shell {
        clap_complete::Shell::Bash => script.replace("istio__subcmd__canary", "istio__canary"),
        _ => script,
    }
}

/// Writes `text` to stdout. A reader that closed the pipe (`| head -1`) is not an error: the
/// rest is dropped and nothing is reported.
fn print_stdout(text: &str) -> Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::new(format!(
            "writing to stdout: {}",
            crate::error::io_reason(&e)
        ))),
    }
}

/// `compile` (with `--check`, `compile --check`) of one policy or of a fleet.
#[allow(clippy::too_many_arguments)] // one per flag of `compile`, unpacked from clap's struct
fn compile_command(
    policy: Vec<PathBuf>,
    policies: Option<(PathBuf, Option<Shard>)>,
    out: PathBuf,
    render: RenderArgs,
    quiet: bool,
    check: bool,
    force: bool,
    promote: Option<String>,
) -> Result<Outcome> {
    let fleet = match (policies, policy.as_slice()) {
        (Some((dir, shard)), _) => Some(in_shard(fleet_policies(&dir)?, shard)),
        (None, [_, _, ..]) => Some(policy.clone()),
        (None, _) => None,
    };
    let first = policy.into_iter().next().unwrap_or_default();
    let config = CompileConfig {
        force,
        promote,
        ..render.config(first, out)?
    };
    let progress = progress_printer();
    match (fleet, check) {
        (None, false) => run_compile(&config, &progress, quiet),
        (None, true) => run_check(&config, &progress),
        (Some(list), false) => run_fleet(&list, &config, &progress, quiet),
        (Some(list), true) => run_fleet_check(&list, &config, &progress),
    }
}

/// `--shard I/N`: the I-th of N disjoint parts of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shard {
    index: usize,
    count: usize,
}

fn parse_shard(text: &str) -> std::result::Result<Shard, String> {
    let parsed = text
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    match parsed {
        Some((index, count)) if index < count => Ok(Shard { index, count }),
        Some(_) => Err("I must be less than N (shards are numbered from 0)".to_string()),
        None => Err("expected I/N, such as 0/4".to_string()),
    }
}

/// The policies of `shard`: every N-th of the sorted list, starting at the I-th.
fn in_shard(policies: Vec<PathBuf>, shard: Option<Shard>) -> Vec<PathBuf> {
    match shard {
        None => policies,
        Some(Shard { index, count }) => policies
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % count == index)
            .map(|(_, p)| p)
            .collect(),
    }
}

/// What `--policies DIR` names: `DIR/*/canary.yaml`, sorted. A directory without one is an
/// error, so a typo never compiles an empty fleet.
fn fleet_policies(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io("cannot read --policies", dir, &e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot read --policies", dir, &e))?;
        let policy = entry.path().join("canary.yaml");
        if policy.is_file() {
            found.push(policy);
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(Error::new(format!(
            "--policies {}: no subdirectory holds a canary.yaml",
            dir.display()
        ))
        .with_help("--policies takes a directory with one subdirectory per policy (DIR/<cluster>/canary.yaml)"));
    }
    Ok(found)
}

/// The progress display: each istioctl call as it starts and ends, on stderr, only when stderr is
/// a terminal (a CI log or a redirected stderr gets the summary alone).
fn progress_printer() -> impl Fn(&Progress) + Sync {
    use std::io::IsTerminal as _;
    let terminal = std::io::stderr().is_terminal();
    move |p: &Progress| {
        if !terminal {
            return;
        }
        if p.finished {
            eprintln!("istio-canary: [{}/{}] {}: done", p.done, p.total, p.what);
        } else {
            eprintln!("istio-canary: [{}/{}] {}…", p.done, p.total, p.what);
        }
    }
}

/// The summary, or with `--quiet` only its `note:` and `warning:` lines.
fn quieted(summary: String, quiet: bool) -> String {
    if !quiet {
        return summary;
    }
    summary
        .lines()
        .filter(|l| l.starts_with("note: ") || l.starts_with("warning: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn run_compile(
    config: &CompileConfig,
    progress: &(dyn Fn(&Progress) + Sync),
    quiet: bool,
) -> Result<Outcome> {
    let outcome = compile_with_progress(config, progress)?;
    let summary = outcome.summary(&config.out)?;
    let notes =
        crate::write::write_atomic(&config.out, &outcome.files, config.force, &outcome.inputs)?;
    let mut stderr: String = notes.iter().map(|n| format!("{n}\n")).collect();
    stderr.push_str(&quieted(summary, quiet));
    Ok(Outcome::ok(String::new(), stderr))
}

/// A fleet: every policy compiled (renders shared), then each written to `OUT/<name>/`. Nothing
/// is written unless every policy compiled.
fn run_fleet(
    policies: &[PathBuf],
    config: &CompileConfig,
    progress: &(dyn Fn(&Progress) + Sync),
    quiet: bool,
) -> Result<Outcome> {
    let batch = compile_all(policies, true, config, progress, |c| {
        let out = config.out.join(&c.plan.name);
        let summary = c.summary(&out)?;
        Ok((out, summary, c.files, c.inputs))
    })?;
    // Every policy's output is checked against every input of the fleet.
    let inputs: Vec<PathBuf> = batch
        .results
        .iter()
        .flat_map(|(_, _, _, inputs)| inputs.iter().cloned())
        .collect();
    let inputs = crate::write::Inputs::of(&inputs)?;
    let mut stderr = String::new();
    for (out, summary, files, _) in &batch.results {
        let notes = crate::write::write_atomic_with(out, files, config.force, &inputs)?;
        stderr.extend(notes.iter().map(|n| format!("{n}\n")));
        stderr.push_str(&quieted(summary.clone(), quiet));
    }
    let footer = format!(
        "istio-canary: {} policies in {}/: {} distinct renders, {} from the render cache\n",
        batch.results.len(),
        config.out.display(),
        batch.counts.cached + batch.counts.rendered,
        batch.counts.cached
    );
    stderr.push_str(&quieted(footer, quiet));
    for n in &batch.notes {
        stderr.push_str(&format!("note: {n}\n"));
    }
    Ok(Outcome::ok(String::new(), stderr))
}

/// `compile --check` of a fleet: each policy against `OUT/<name>/`; exit 1 when any differs.
fn run_fleet_check(
    policies: &[PathBuf],
    config: &CompileConfig,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Outcome> {
    let regenerate = regenerate_command();
    let batch = compile_all(policies, true, config, progress, |c| {
        let out = config.out.join(&c.plan.name);
        check::check_out_dir(&out)?;
        let report = check::check(&c.files, &check::read_tree(&out)?);
        let shown = format!("{}/", out.display());
        Ok((
            report.is_clean(),
            report.render(&shown, &regenerate),
            c.files.len(),
        ))
    })?;
    let notes: String = batch.notes.iter().map(|n| format!("note: {n}\n")).collect();
    if batch.results.iter().all(|(clean, _, _)| *clean) {
        let files: usize = batch.results.iter().map(|(_, _, n)| n).sum();
        return Ok(Outcome::ok(
            String::new(),
            format!(
                "istio-canary: {} policies in {}/ are up to date ({files} files)\n{notes}",
                batch.results.len(),
                config.out.display()
            ),
        ));
    }
    Ok(Outcome {
        code: EXIT_DIFFERENT,
        stdout: batch
            .results
            .iter()
            .filter(|(clean, _, _)| !clean)
            .map(|(_, report, _)| report.as_str())
            .collect(),
        stderr: notes,
    })
}

/// `compile --check`: compile, read `--out`, compare. Writes nothing.
fn run_check(config: &CompileConfig, progress: &(dyn Fn(&Progress) + Sync)) -> Result<Outcome> {
    check::check_out_dir(&config.out)?;
    let compiled = compile_with_progress(config, progress)?;
    let tree = check::read_tree(&config.out)?;
    let report = check::check(&compiled.files, &tree);
    let out = format!("{}/", config.out.display());
    let notes: String = compiled
        .notes
        .iter()
        .map(|n| format!("note: {n}\n"))
        .collect();
    if report.is_clean() {
        return Ok(Outcome::ok(
            String::new(),
            format!(
                "istio-canary: {out} is up to date ({} files)\n{notes}",
                compiled.files.len()
            ),
        ));
    }
    Ok(Outcome {
        code: EXIT_DIFFERENT,
        stdout: report.render(&out, &regenerate_command()),
        stderr: notes,
    })
}

/// The command line that was run, as `istio-canary compile ...` without `--check`, quoted for
/// a POSIX shell.
fn regenerate_command() -> String {
    let mut words = vec!["istio-canary".to_string()];
    words.extend(
        std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .filter(|a| a != "--check")
            .map(|a| shell_quote(&a)),
    );
    words.join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,@%+".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `lint`: the report on stdout, its summary on stderr; exit 2 when it found an error (or,
/// with `--deny-warnings`, a warning), else 0.
fn run_lint(policy: &Path, format: Format, deny_warnings: bool) -> Outcome {
    let report = crate::lint::lint(policy);
    let failed = !report.errors.is_empty() || (deny_warnings && !report.warnings.is_empty());
    Outcome {
        code: if failed { EXIT_ERROR } else { EXIT_OK },
        stdout: match format {
            Format::Text => report.text(),
            Format::Json => report.json(),
        },
        stderr: report.summary(policy),
    }
}

/// `init`: the starter policy, checked by the loader as `compile` will load it, then created
/// at `policy` (never replacing a file); the next steps on stderr.
fn run_init(starter: &crate::init::Starter, policy: &Path) -> Result<Outcome> {
    let text = crate::init::starter_text(starter);
    crate::init::check(&text, policy, &|p: &Path, limit: u64| {
        crate::yamlin::read_limited(p, limit)
    })?;
    crate::write::write_new(policy, &text)?;
    let compile = format!(
        "istio-canary compile --policy {} --out bundles",
        shell_quote(&policy.to_string_lossy())
    );
    Ok(Outcome::ok(
        String::new(),
        crate::init::next_steps(starter, policy, &compile),
    ))
}

/// `verify DIR`: the directory against its plan.json's digests. Reads only.
/// `cache prune`: the cache shrunk to its limits, and what was removed and kept.
fn run_prune(dir: Option<PathBuf>, limits: crate::cache::Limits) -> Result<Outcome> {
    let dir = match dir {
        Some(dir) => dir,
        None => crate::cache::default_dir(|name| std::env::var_os(name))?,
    };
    let pruned = crate::cache::prune(&dir, limits, std::time::SystemTime::now())?;
    Ok(Outcome::ok(String::new(), pruned.summary(&dir)))
}

fn run_verify(dir: &Path) -> Result<Outcome> {
    let plan = check::load_plan(dir)?;
    let tree = check::read_tree(dir)?;
    let v = check::verify(&plan, &tree);
    let shown = format!("{}/", dir.display());
    if v.is_clean() {
        return Ok(Outcome::ok(
            String::new(),
            format!(
                "istio-canary: {shown} matches its plan.json ({} files)\n",
                plan.files.len()
            ),
        ));
    }
    Ok(Outcome {
        code: EXIT_DIFFERENT,
        stdout: v.render(&shown),
        stderr: String::new(),
    })
}

/// `show PHASE`: one phase as one YAML stream. Reads only.
fn run_show(query: &str, out: &Path) -> Result<Outcome> {
    let plan = check::load_plan(out)?;
    let phase = check::find_phase(&plan, query)?;
    let stream = check::phase_stream(&plan, phase, |rel| check::read_file(out, rel))?;
    let mut stderr = String::new();
    if stream.is_empty() {
        stderr.push_str(&format!(
            "istio-canary: phase {} has no files to apply\n",
            phase.dir
        ));
    }
    if phase.patch.iter().any(|p| p.file.is_some()) {
        stderr.push_str(
            "istio-canary: this stream holds label patches of objects others own: apply it server-side (`kubectl apply --server-side --field-manager=istio-canary -f -`); a client-side `kubectl apply` would delete the labels and annotations their owners applied\n",
        );
    }
    let commands = check::phase_commands_outside_stream(phase);
    if !commands.is_empty() {
        stderr.push_str(&format!(
            "istio-canary: after this stream, phase {} also needs these commands, which no file carries:\n",
            phase.dir
        ));
        for c in commands {
            stderr.push_str(&format!("  {c}\n"));
        }
    }
    Ok(Outcome::ok(stream, stderr))
}

/// `show --restarts`: the pod-template patch commands of a phase or rollback directory.
fn run_show_restarts(query: &str, out: &Path) -> Result<Outcome> {
    let plan = check::load_plan(out)?;
    let (dir, commands) = check::restart_commands(&plan, query)?;
    let mut stdout = String::new();
    for c in &commands {
        stdout.push_str(c);
        stdout.push('\n');
    }
    let stderr = if commands.is_empty() {
        format!("istio-canary: {dir} has no pod-template patches\n")
    } else {
        String::new()
    };
    Ok(Outcome::ok(stdout, stderr))
}

/// `plan`: compile and print the plan. Writes nothing (`config.out` is not used).
fn run_plan(config: &CompileConfig, format: Format) -> Result<Outcome> {
    let compiled = compile_with_progress(config, &progress_printer())?;
    let json = compiled
        .files
        .get(crate::schema::PLAN_JSON)
        .ok_or_else(|| Error::new("internal error: compile produced no plan.json"))?;
    let stdout = match format {
        Format::Json => json.clone(),
        Format::Text => check::plan_text(&check::parse_plan(
            Path::new(crate::schema::PLAN_JSON),
            json,
        )?),
    };
    let notes: String = compiled
        .notes
        .iter()
        .map(|n| format!("note: {n}\n"))
        .collect();
    Ok(Outcome::ok(stdout, notes))
}
