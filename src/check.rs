//! Reading a written output back: `compile --check` (compare the compiled file map with `--out`),
//! `verify` (compare a directory with the sha256 digests its `plan.json` records), `show` (one
//! phase's files as a single YAML stream) and the text form of `plan`.
//!
//! Owns: the small read-only tree reader (`read_tree`, `read_file`: each file through
//! `yamlin::read_whole` with `OUTPUT_FILE_LIMIT`, `plan.json` with `PLAN_JSON_LIMIT`), the checks
//! on a `plan.json` read back (apiVersion, kind, safe relative paths, digests) and the pure
//! comparisons and texts built from them. Must not: write, rename or delete anything, run a
//! process, contact a cluster, print (the caller prints), decide anything the plan decides
//! (everything here is read from the compiled map or from `plan.json`), or declare plan.json
//! types of its own: it reads the `schema` types emit writes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use crate::emit::MARKER_FILE;
use crate::error::{Error, Result};
use crate::policy::sha256_hex;
use crate::schema::{
    InjectionDoc, InjectionGroupDoc, InjectionRowDoc, PhaseDoc, PlanDoc, PLAN_API_VERSION,
    PLAN_API_VERSION_V1ALPHA1, PLAN_JSON, PLAN_KIND,
};
use crate::yamlin;

/// One entry of a directory tree as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file (or a symbolic link to one) and its bytes.
    File(Vec<u8>),
    /// Something compile never writes and no one reads: an empty directory (its key ends in
    /// `/`), or a symbolic link to a directory or to nothing. The text says which.
    Other(&'static str),
}

/// A directory tree: `/`-separated path relative to its root -> entry, sorted.
pub type Tree = BTreeMap<String, Entry>;

/// Reads every entry under `dir`. Symbolic links inside are not followed into directories, so
/// a link loop cannot make this run forever; a link to a file is read through. Each file is
/// read with `read_file`'s limit; a FIFO, socket or device (or a link to one) is an error.
pub fn read_tree(dir: &Path) -> Result<Tree> {
    let mut tree = Tree::new();
    walk(dir, "", &mut tree)?;
    Ok(tree)
}

fn walk(dir: &Path, prefix: &str, tree: &mut Tree) -> Result<()> {
    let reader = std::fs::read_dir(dir).map_err(|e| Error::io("reading directory", dir, &e))?;
    let mut any = false;
    for entry in reader {
        let entry = entry.map_err(|e| Error::io("reading directory", dir, &e))?;
        any = true;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("reading", &path, &e))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(&path, &format!("{rel}/"), tree)?;
            continue;
        }
        if kind.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(target) if target.is_dir() => {
                    tree.insert(rel, Entry::Other("a symbolic link to a directory"));
                    continue;
                }
                Ok(_) => {}
                Err(_) => {
                    tree.insert(rel, Entry::Other("a symbolic link to nothing readable"));
                    continue;
                }
            }
        }
        tree.insert(rel, Entry::File(read_bytes(&path)?));
    }
    if !any && !prefix.is_empty() {
        tree.insert(prefix.to_string(), Entry::Other("an empty directory"));
    }
    Ok(())
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    yamlin::read_whole(path, yamlin::OUTPUT_FILE_LIMIT, "reading")
}

/// Reads one file of an output directory named by a (checked) relative path: a regular file of
/// at most `yamlin::OUTPUT_FILE_LIMIT` bytes.
pub fn read_file(dir: &Path, rel: &str) -> Result<Vec<u8>> {
    read_bytes(&dir.join(rel))
}

/// True when `rel` is a relative path of normal segments (no root, `.`, `..`, empty segment,
/// backslash or NUL): the only kind of path a plan may name.
pub fn is_safe_relative(rel: &str) -> bool {
    !rel.is_empty()
        && rel
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0']))
}

// ---------------------------------------------------------------------------------------------
// compile --check

/// The difference between what compile would write and what `--out` holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Files whose bytes differ, with their unified diff (or a note when no text diff applies).
    pub changed: Vec<(String, String)>,
    /// Files compile would write that `--out` lacks, with their diff from nothing.
    pub missing: Vec<(String, String)>,
    /// Entries of `--out` compile would not write (they would be removed).
    pub extra: Vec<(String, String)>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }

    /// The report for stdout: every diff, then one line per file, a count, and last the
    /// command that regenerates `out` (`regenerate`).
    pub fn render(&self, out: &str, regenerate: &str) -> String {
        let mut s = String::new();
        for (_, diff) in self.changed.iter().chain(&self.missing).chain(&self.extra) {
            s.push_str(diff);
        }
        for (path, _) in &self.changed {
            let _ = writeln!(s, "changed: {path}");
        }
        for (path, _) in &self.missing {
            let _ = writeln!(s, "missing: {path} (compile would add it)");
        }
        for (path, _) in &self.extra {
            let _ = writeln!(s, "extra:   {path} (compile would remove it)");
        }
        let _ = writeln!(
            s,
            "{out} is out of date: {} changed, {} missing, {} extra",
            self.changed.len(),
            self.missing.len(),
            self.extra.len()
        );
        let _ = writeln!(s, "to regenerate it, run: {regenerate}");
        s
    }
}

/// Compares the compiled map (`expected`) with the tree read from `--out` (`actual`). Pure.
/// Diff headers are `a/PATH` (what `--out` holds) and `b/PATH` (what compile would write).
pub fn check(expected: &BTreeMap<String, String>, actual: &Tree) -> CheckReport {
    let mut report = CheckReport::default();
    for (path, want) in expected {
        match actual.get(path) {
            None => report.missing.push((
                path.clone(),
                unified("", want, "/dev/null", &format!("b/{path}")),
            )),
            Some(Entry::File(bytes)) if bytes == want.as_bytes() => {}
            Some(Entry::File(bytes)) => {
                let diff = match std::str::from_utf8(bytes) {
                    Ok(have) => unified(have, want, &format!("a/{path}"), &format!("b/{path}")),
                    Err(_) => format!("Binary files a/{path} and b/{path} differ\n"),
                };
                report.changed.push((path.clone(), diff));
            }
            Some(Entry::Other(what)) => report.changed.push((
                path.clone(),
                format!("a/{path} is {what}; compile writes a file there\n"),
            )),
        }
    }
    for (path, entry) in actual {
        if expected.contains_key(path) {
            continue;
        }
        let diff = match entry {
            Entry::File(bytes) => match std::str::from_utf8(bytes) {
                Ok(have) => unified(have, "", &format!("a/{path}"), "/dev/null"),
                Err(_) => format!("Binary file a/{path} would be removed\n"),
            },
            Entry::Other(what) => format!("a/{path} is {what}; compile would remove it\n"),
        };
        report.extra.push((path.clone(), diff));
    }
    report
}

fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// Refuses an `--out` that `compile --check` cannot compare: missing, not a directory, or not
/// written by istio-canary (no marker).
pub fn check_out_dir(out: &Path) -> Result<()> {
    match std::fs::metadata(out) {
        Err(e) => Err(Error::io("cannot compare with --out", out, &e)
            .with_help("compile once without --check to create it")),
        Ok(m) if !m.is_dir() => Err(Error::new(format!(
            "cannot compare with --out {}: it is not a directory",
            out.display()
        ))),
        Ok(_) if !out.join(MARKER_FILE).is_file() => Err(Error::new(format!(
            "cannot compare with --out {}: it was not written by istio-canary (no {MARKER_FILE} marker)",
            out.display()
        ))
        .with_help("point --out at a directory `istio-canary compile` wrote")),
        Ok(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// plan.json

/// The files of a phase in apply order: its `apply` entries, then the `patch` entries that have
/// a file; for the uninstall phase its delete stubs.
pub fn stream_files(phase: &PhaseDoc) -> Vec<&str> {
    if phase.kind == "uninstall" {
        return phase.delete.iter().map(|e| e.file.as_str()).collect();
    }
    phase
        .apply
        .iter()
        .map(|e| e.file.as_str())
        .chain(phase.patch.iter().filter_map(|p| p.file.as_deref()))
        .collect()
}

/// Reads (at most `yamlin::PLAN_JSON_LIMIT` bytes, a regular file only) and checks
/// `DIR/plan.json`.
pub fn load_plan(dir: &Path) -> Result<PlanDoc> {
    let path = dir.join(PLAN_JSON);
    let help = "give the directory `istio-canary compile` wrote (default: bundles)";
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(Error::new(format!("{} {what}", dir.display())).with_help(help));
    }
    // Nothing at all there (a symbolic link to nothing is named by the reader).
    if std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Err(Error::new(format!("{} has no {PLAN_JSON}", dir.display())).with_help(help));
    }
    let bytes = yamlin::read_whole(&path, yamlin::PLAN_JSON_LIMIT, "reading")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::new(format!("{} is not UTF-8 text", path.display())).in_file(&path))?;
    parse_plan(&path, &text)
}

/// Parses `plan.json` text read from `path`: JSON, then apiVersion and kind, then the fields
/// this module reads, then every path it names (safe relative paths, digests in hex).
pub fn parse_plan(path: &Path, text: &str) -> Result<PlanDoc> {
    let json_error = |what: &str, e: serde_json::Error| {
        let (line, column) = (e.line(), e.column());
        let mut message = e.to_string();
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        Error::new(format!("{what}: {message}")).at(path, text, line, column)
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| json_error("plan.json is not valid JSON", e))?;
    let field = |name: &str| match value.get(name) {
        Some(serde_json::Value::String(s)) => format!("`{s}`"),
        Some(other) => other.to_string(),
        None => "none".to_string(),
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let known = [PLAN_API_VERSION, PLAN_API_VERSION_V1ALPHA1]
        .iter()
        .any(|v| api_version == format!("`{v}`"));
    if !known || kind != format!("`{PLAN_KIND}`") {
        return Err(Error::new(format!(
            "{} is not an istio-canary plan: it has apiVersion {api_version} and kind {kind}, not `{PLAN_API_VERSION}` and `{PLAN_KIND}`",
            path.display()
        ))
        .in_file(path));
    }
    let plan: PlanDoc = serde_json::from_str(text)
        .map_err(|e| json_error("plan.json does not hold a readable plan", e))?;
    let bad = |what: String| {
        Err(Error::new(format!("{}: {what}", path.display())).with_help(
            "compile again; plan.json is written by istio-canary and must not be edited",
        ))
    };
    for (file, digest) in &plan.files {
        if !is_safe_relative(file) || file == PLAN_JSON {
            return bad(format!(
                "`files` names {file:?}, which is not a file of the output"
            ));
        }
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return bad(format!(
                "`files` gives {file:?} the digest {digest:?}, which is not a sha256"
            ));
        }
    }
    for phase in &plan.phases {
        if !is_safe_relative(&phase.dir) || phase.dir.contains('/') {
            return bad(format!(
                "phase {} has the directory {:?}",
                phase.index, phase.dir
            ));
        }
        for file in stream_files(phase) {
            if !is_safe_relative(file) || file.contains('/') {
                return bad(format!("phase {} names the file {file:?}", phase.dir));
            }
        }
    }
    Ok(plan)
}

// ---------------------------------------------------------------------------------------------
// verify

/// How a directory differs from the digests its `plan.json` records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Listed files whose sha256 differs (or that are not regular files).
    pub edited: Vec<String>,
    /// Listed files that are absent.
    pub missing: Vec<String>,
    /// Entries present but not listed (`plan.json` itself excepted).
    pub extra: Vec<String>,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.edited.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }

    /// The report for stdout: one line per file, then a count.
    pub fn render(&self, dir: &str) -> String {
        let mut s = String::new();
        for path in &self.edited {
            let _ = writeln!(s, "edited:  {path} (sha256 differs from plan.json)");
        }
        for path in &self.missing {
            let _ = writeln!(s, "missing: {path}");
        }
        for path in &self.extra {
            let _ = writeln!(s, "extra:   {path} (not listed in plan.json)");
        }
        let _ = writeln!(
            s,
            "{dir} differs from its plan.json: {} edited, {} missing, {} extra",
            self.edited.len(),
            self.missing.len(),
            self.extra.len()
        );
        s
    }
}

/// Compares `tree` with the digests of `plan.files`. Pure.
pub fn verify(plan: &PlanDoc, tree: &Tree) -> Verification {
    let mut v = Verification::default();
    for (path, digest) in &plan.files {
        match tree.get(path) {
            None => v.missing.push(path.clone()),
            Some(Entry::File(bytes)) if sha256_hex(bytes) == *digest => {}
            Some(_) => v.edited.push(path.clone()),
        }
    }
    let listed: BTreeSet<&str> = plan.files.keys().map(String::as_str).collect();
    v.extra = tree
        .keys()
        .filter(|p| p.as_str() != PLAN_JSON && !listed.contains(p.as_str()))
        .cloned()
        .collect();
    v
}

// ---------------------------------------------------------------------------------------------
// show

/// Finds a phase by index (`3`, `03`), directory (`03-migrate-canary`) or name
/// (`migrate-canary`). An unknown phase is an error listing the phases.
pub fn find_phase<'a>(plan: &'a PlanDoc, query: &str) -> Result<&'a PhaseDoc> {
    let by_index = query
        .parse::<usize>()
        .ok()
        .filter(|_| query.bytes().all(|b| b.is_ascii_digit()));
    let found = plan.phases.iter().find(|p| match by_index {
        Some(i) => p.index == i,
        None => p.dir == query || p.name == query,
    });
    found.ok_or_else(|| {
        let list: Vec<String> = plan
            .phases
            .iter()
            .map(|p| format!("  {:>2}  {}", p.index, p.dir))
            .collect();
        Error::new(format!("no phase {query:?} in plan {:?}", plan.name)).with_help(format!(
            "give a phase's index, directory or name:\n{}",
            list.join("\n")
        ))
    })
}

/// The phase's files as one multi-document YAML stream, in apply order, each document after a
/// `---` line. `read` returns a file's bytes by its path relative to the output directory;
/// every file must still have the sha256 `plan.json` records (an edited file is refused).
pub fn phase_stream(
    plan: &PlanDoc,
    phase: &PhaseDoc,
    mut read: impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<String> {
    let mut stream = String::new();
    for file in stream_files(phase) {
        let rel = format!("{}/{file}", phase.dir);
        let bytes = read(&rel).map_err(|e| {
            e.with_help("run `istio-canary verify` on the directory, then compile again")
        })?;
        if plan.files.get(&rel) != Some(&sha256_hex(&bytes)) {
            return Err(Error::new(format!(
                "{rel} does not have the sha256 plan.json records for it: it was edited or replaced"
            ))
            .with_help("run `istio-canary verify` on the directory, then compile again"));
        }
        let text =
            String::from_utf8(bytes).map_err(|_| Error::new(format!("{rel} is not UTF-8 text")))?;
        stream.push_str("---\n");
        stream.push_str(&text);
        if !text.ends_with('\n') {
            stream.push('\n');
        }
    }
    Ok(stream)
}

/// `show --restarts`: the directory `query` names (a phase, by index, directory or name, or
/// `rollback/<phase directory>`) and its pod-template patch commands, in plan order.
pub fn restart_commands<'a>(plan: &'a PlanDoc, query: &str) -> Result<(&'a str, Vec<&'a str>)> {
    let patches = match query.strip_prefix("rollback/") {
        Some(_) => {
            let found = plan.phases.iter().find_map(|p| {
                let rb = p.rollback.as_ref()?;
                let dir = rb.dir.as_deref().filter(|d| *d == query)?;
                Some((dir, &rb.patch))
            });
            let Some(found) = found else {
                let list: Vec<String> = plan
                    .phases
                    .iter()
                    .filter_map(|p| p.rollback.as_ref()?.dir.as_ref())
                    .map(|d| format!("  {d}"))
                    .collect();
                return Err(
                    Error::new(format!("no rollback {query:?} in plan {:?}", plan.name))
                        .with_help(format!("give a rollback directory:\n{}", list.join("\n"))),
                );
            };
            found
        }
        None => {
            let phase = find_phase(plan, query)?;
            (phase.dir.as_str(), &phase.patch)
        }
    };
    let (dir, patches) = patches;
    let commands = patches
        .iter()
        .filter(|p| !p.template_labels.is_empty() || !p.template_annotations.is_empty())
        .filter_map(|p| p.command.as_deref())
        .collect();
    Ok((dir, commands))
}

/// What `show` must add on stderr: the label commands of a phase that no file carries.
pub fn phase_commands_outside_stream(phase: &PhaseDoc) -> Vec<&str> {
    phase
        .patch
        .iter()
        .filter_map(|p| p.command.as_deref())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// plan --format text

fn object_name(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The injection table of a `plan.json` as one row per namespace, in the order the file gives
/// them: each group's namespaces (`v1alpha2`'s `rows`), or the `v1alpha1` rows as they are.
pub fn injection_rows(doc: &InjectionDoc) -> Vec<InjectionRowDoc> {
    let mut out = doc.namespaces.clone();
    for g in &doc.rows {
        out.extend(g.namespaces.iter().map(|ns| InjectionRowDoc {
            namespace: ns.clone(),
            tag: g.tag.clone(),
            states: g.states.clone(),
        }));
    }
    out
}

/// The injection table of a `plan.json` grouped: its `rows` as they are, or a `v1alpha1` table's
/// namespaces gathered by row, in the order of each row's first namespace.
pub fn injection_groups(doc: &InjectionDoc) -> Vec<InjectionGroupDoc> {
    let mut out: Vec<InjectionGroupDoc> = doc.rows.clone();
    for row in &doc.namespaces {
        match out
            .iter_mut()
            .find(|g| g.tag == row.tag && g.states == row.states)
        {
            Some(g) => g.namespaces.push(row.namespace.clone()),
            None => out.push(InjectionGroupDoc {
                tag: row.tag.clone(),
                states: row.states.clone(),
                namespaces: vec![row.namespace.clone()],
            }),
        }
    }
    out
}

/// The plan as text: the upgrade, each phase with its changes and commands, the injection
/// table and the input digests.
pub fn plan_text(plan: &PlanDoc) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "CanaryUpgrade {}: Istio {} (revision {}) -> {} (revision {}), {} phases",
        plan.name,
        plan.from.version,
        plan.from.revision,
        plan.to.version,
        plan.to.revision,
        plan.phases.len()
    );
    if let Some(k) = &plan.kubernetes_version {
        let _ = writeln!(s, "Kubernetes {k}");
    }
    for phase in &plan.phases {
        let _ = writeln!(s, "\n{} ({})", phase.dir, phase.kind);
        let _ = writeln!(s, "  {}", phase.summary);
        for e in &phase.apply {
            let _ = writeln!(
                s,
                "  apply   {}",
                object_name(&e.kind, e.namespace.as_deref(), &e.name)
            );
        }
        for p in &phase.patch {
            let mut labels: Vec<String> = p
                .set_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.extend(p.remove_labels.iter().map(|k| format!("{k}-")));
            let via = match (&p.file, &p.command) {
                (Some(f), _) => format!(" (file {f})"),
                (None, Some(c)) => format!(" (command `{c}`)"),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                s,
                "  label   {} {}{via}",
                object_name(&p.kind, p.namespace.as_deref(), &p.name),
                labels.join(" ")
            );
        }
        for e in &phase.delete {
            let _ = writeln!(
                s,
                "  delete  {}",
                object_name(&e.kind, e.namespace.as_deref(), &e.name)
            );
        }
        for c in &phase.commands {
            let _ = writeln!(s, "  run:    {c}");
        }
        for c in &phase.checks {
            let _ = writeln!(s, "  check:  {c}");
        }
        if let Some(u) = &phase.undo {
            let _ = writeln!(s, "  undo:   {u}");
        }
    }

    let _ = writeln!(
        s,
        "\nInjection (the revision injecting new pods, by state; namespaces alike share a column):"
    );
    let groups = injection_groups(&plan.injection);
    let heads: Vec<String> = groups
        .iter()
        .map(|g| match g.namespaces.as_slice() {
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} +{}", rest.len()),
            [] => String::new(),
        })
        .collect();
    let first = plan
        .injection
        .states
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("state".len());
    let widths: Vec<usize> = groups
        .iter()
        .zip(&heads)
        .map(|(g, head)| {
            g.states
                .iter()
                .map(String::len)
                .chain([head.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut header = format!("  {:<first$}", "state");
    for (head, w) in heads.iter().zip(&widths) {
        let _ = write!(header, "  {head:<w$}");
    }
    let _ = writeln!(s, "{}", header.trim_end());
    for (i, state) in plan.injection.states.iter().enumerate() {
        let mut line = format!("  {state:<first$}");
        for (g, w) in groups.iter().zip(&widths) {
            let cell = g.states.get(i).map(String::as_str).unwrap_or("?");
            let _ = write!(line, "  {cell:<w$}");
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    for (g, head) in groups.iter().zip(&heads) {
        if g.namespaces.len() > 1 || g.tag.is_some() {
            let tag = g
                .tag
                .as_ref()
                .map(|t| format!(" (tag {t})"))
                .unwrap_or_default();
            let _ = writeln!(s, "  {head}{tag}: {}", g.namespaces.join(" "));
        }
    }

    let _ = writeln!(s, "\nInputs (sha256):");
    let _ = writeln!(
        s,
        "  policy         {}  {}",
        plan.inputs.policy.sha256, plan.inputs.policy.path
    );
    for (path, digest) in &plan.inputs.istio_operators {
        let _ = writeln!(s, "  IstioOperator  {digest}  {path}");
    }
    for (version, digest) in &plan.inputs.istioctl {
        let _ = writeln!(s, "  istioctl       {digest}  {version}");
    }
    if !plan.assumptions.is_empty() {
        let _ = writeln!(s, "\nAssumptions:");
        for a in &plan.assumptions {
            let _ = writeln!(s, "  - {a}");
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(s, "\nWarnings (already before the upgrade):");
        for w in &plan.warnings {
            let _ = writeln!(s, "  - {w}");
        }
    }
    let _ = writeln!(s, "\nistio-canary {} wrote nothing.", plan.tool_version);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> Tree {
        files
            .iter()
            .map(|(p, t)| (p.to_string(), Entry::File(t.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn a_v1alpha1_plan_still_reads_with_one_injection_row_per_namespace() {
        let text = r#"{"apiVersion": "istio-canary.dev/v1alpha1", "kind": "CanaryUpgradePlan",
            "name": "p", "toolVersion": "1", "from": {"version": "1", "revision": "a"},
            "to": {"version": "2", "revision": "b"},
            "inputs": {"policy": {"path": "c", "sha256": "d"}, "istioOperators": {}, "istioctl": {}},
            "phases": [],
            "injection": {"states": ["before", "01-m"], "namespaces": [
              {"namespace": "x", "states": ["a", "b"]},
              {"namespace": "y", "tag": "t", "states": ["a", "b"]},
              {"namespace": "z", "states": ["a", "b"]}]}, "files": {}}"#;
        let doc = parse_plan(Path::new("plan.json"), text).unwrap();
        let rows = injection_rows(&doc.injection);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].tag.as_deref(), Some("t"));
        let groups = injection_groups(&doc.injection);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].namespaces, ["x", "z"]);
        assert!(plan_text(&doc).contains("x +1: x z"), "{}", plan_text(&doc));
    }

    #[test]
    fn check_sorts_changed_missing_and_extra() {
        let expected: BTreeMap<String, String> = [("a", "1\n"), ("b", "2\n"), ("c", "3\n")]
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        let actual = tree(&[("a", "1\n"), ("b", "two\n"), ("d", "4\n")]);
        let r = check(&expected, &actual);
        let names = |v: &[(String, String)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        assert_eq!(names(&r.changed), ["b"]);
        assert_eq!(names(&r.missing), ["c"]);
        assert_eq!(names(&r.extra), ["d"]);
        assert!(r.changed[0].1.contains("-two\n+2\n"));
        assert!(check(
            &expected,
            &tree(&[("a", "1\n"), ("b", "2\n"), ("c", "3\n")])
        )
        .is_clean());
    }

    #[test]
    fn read_tree_reports_what_compile_never_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("a/empty")).unwrap();
        std::fs::write(root.join("a/f.yaml"), "x\n").unwrap();
        std::os::unix::fs::symlink("f.yaml", root.join("a/to-file")).unwrap();
        std::os::unix::fs::symlink("..", root.join("a/loop")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
        let tree = read_tree(root).unwrap();
        let file = Entry::File(b"x\n".to_vec());
        let expected: Tree = [
            ("a/empty/", Entry::Other("an empty directory")),
            ("a/f.yaml", file.clone()),
            ("a/loop", Entry::Other("a symbolic link to a directory")),
            ("a/to-file", file),
            (
                "dangling",
                Entry::Other("a symbolic link to nothing readable"),
            ),
        ]
        .into_iter()
        .map(|(p, e)| (p.to_string(), e))
        .collect();
        assert_eq!(tree, expected);
    }

    #[test]
    fn safe_relative_paths() {
        for ok in ["a", "a/b.yaml", ".istio-canary"] {
            assert!(is_safe_relative(ok), "{ok}");
        }
        for bad in ["", "/a", "a/../b", "./a", "a//b", "..", "a\\b", "a/"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }
}
