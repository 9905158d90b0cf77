//! Writing the emitted files: all or nothing, and only inside `--out`.
//!
//! Owns: building the output beside `--out` in a temporary directory, swapping it in only when
//! complete, refusing to replace a directory istio-canary did not write (unless `--force`), and
//! leaving the previous output untouched on any error: the new output replaces the old one by an
//! exchange of the two names, so even a SIGKILL leaves `--out` complete, old or new. A SIGKILL can
//! still leave a staging directory beside `--out`: each is named with its compile's process id and
//! locked (`flock`) while that compile runs, and the next write into the same directory removes
//! those whose process is gone and whose lock is free (`remove_stale`), saying so. An `--out`
//! that already holds exactly the files is left as it is (`holds_exactly`). Also owns containment: every path of the
//! file map must be relative and made of normal segments, an `--out` that is or holds an input of
//! the compile is refused, and a symlinked `--out` is written through to its target (the link
//! stays). `write_new` creates the one file `init` writes, and never replaces anything. Must
//! not: decide file contents, or write anywhere but `--out` and its staging directory beside it,
//! or the new file `init` names and its temporary file beside it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::emit::MARKER_FILE;
use crate::error::{Error, Result};

/// Creates `path` holding `text` (the policy `init` writes). The text goes to a temporary file
/// beside it, which is then linked into place only if nothing is there: an existing file, link
/// or directory is never replaced, and a failed write leaves nothing behind. The file is
/// readable by all (0644), like a file a user writes.
pub fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let exists = || {
        Error::new(format!("{} already exists", path.display())).with_help(
            "init never replaces a file: choose another --policy, or move the file away first",
        )
    };
    if path.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".istio-canary-init-")
        .tempfile_in(parent)
        .map_err(|e| Error::io("cannot create a temporary file in", parent, &e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .map_err(|e| Error::io("cannot write", path, &e))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            exists()
        } else {
            Error::io("cannot create", path, &e.error)
        }
    })?;
    Ok(())
}

/// Replaces `out` with exactly `files` (paths relative to `out`). `inputs` are the files the
/// compile read (policy, specs, istioctl binaries): an `out` that is or holds one is refused,
/// since the swap would delete it. When `out` is a symbolic link, its target is replaced and the
/// link is kept.
pub fn write_atomic(
    out: &Path,
    files: &BTreeMap<String, String>,
    force: bool,
    inputs: &[PathBuf],
) -> Result<Vec<String>> {
    for rel in files.keys() {
        check_relative(rel)?;
    }
    write_atomic_with(out, files, force, &Inputs::of(inputs)?)
}

/// The inputs of a compile, each with every path its resolution passes through (`entries_of`),
/// resolved once for all the outputs of a fleet.
#[derive(Debug)]
pub struct Inputs(Vec<(PathBuf, Vec<PathBuf>)>);

impl Inputs {
    pub fn of(inputs: &[PathBuf]) -> Result<Inputs> {
        // In the given order (the first input found inside `out` is the one named), each once.
        let mut seen = std::collections::BTreeSet::new();
        let resolved = inputs
            .iter()
            .filter(|input| seen.insert(*input))
            .map(|input| Ok((input.clone(), entries_of(input)?)))
            .collect::<Result<_>>()?;
        Ok(Inputs(resolved))
    }
}

/// `write_atomic` with the inputs resolved beforehand (`Inputs::of`). Returns the notes of what
/// it removed beside `out` (`remove_stale`).
pub fn write_atomic_with(
    out: &Path,
    files: &BTreeMap<String, String>,
    force: bool,
    inputs: &Inputs,
) -> Result<Vec<String>> {
    for rel in files.keys() {
        check_relative(rel)?;
    }
    let target = checked_target(out, force, inputs)?;
    write_into(out, files, force, inputs, &target)
}

/// The write of `write_atomic_with` once `out` is resolved and judged (`target`); what is at
/// `out` may have changed since (another compile of the same `--out`).
fn write_into(
    out: &Path,
    files: &BTreeMap<String, String>,
    force: bool,
    inputs: &Inputs,
    target: &Target,
) -> Result<Vec<String>> {
    let parent = &target.parent;
    std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, &e))?;
    let dest = parent.join(&target.file_name);
    let notes = remove_stale(parent, std::process::id(), &|p| std::fs::remove_dir_all(p));
    if let Some(real) = &target.existing {
        // Already exactly this output (a warm re-run): nothing to replace.
        if holds_exactly(real, files) {
            return Ok(notes);
        }
    }
    let (staging, _lock) = staging_dir(parent, STAGING_NEW)?;
    for (rel, text) in files {
        let path = staging.path().join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, &e))?;
        }
        std::fs::write(&path, text).map_err(|e| Error::io("cannot write", &path, &e))?;
    }
    if target.existing.is_none() {
        match rename_new(staging.path(), &dest) {
            Ok(()) => {
                // The staging directory now is `out`; do not let its guard delete it.
                let _ = staging.keep();
                return Ok(notes);
            }
            Err(e) if !name_taken(&e) => {
                return Err(Error::io("cannot move the new output into", out, &e))
            }
            Err(_) => {
                // Something took the name since it was resolved (another compile of the same
                // --out finished first): judged again as an existing output, then replaced.
                let now = checked_target(out, force, inputs)?;
                if now.existing.is_none()
                    || now.parent != target.parent
                    || now.file_name != target.file_name
                {
                    return Err(Error::new(format!(
                        "cannot move the new output into {}: it changed while the output was written",
                        out.display()
                    ))
                    .with_help("run the compile again"));
                }
            }
        }
    }
    match exchange(staging.path(), &dest) {
        // The staging directory's name now holds the previous output, which its guard removes
        // when dropped.
        Ok(()) => return Ok(notes),
        Err(e) if !exchange_unsupported(&e) => {
            return Err(Error::io(
                "cannot move the new output into",
                out,
                &std::io::Error::from(e),
            ))
        }
        Err(_) => {}
    }
    // The filesystem cannot swap two names: move the previous output aside, then the new one in
    // (a kill between the two renames leaves `out` missing, its previous content beside).
    let (trash, _trash_lock) = staging_dir(parent, STAGING_OLD)?;
    let old = trash.path().join("previous");
    swap_in(staging.path(), &dest, &old, out, &|a, b| {
        std::fs::rename(a, b)
    })?;
    // `trash` (with the previous output) is removed when dropped; the staging directory now is
    // `out`: do not let its guard delete it.
    let _ = staging.keep();
    Ok(notes)
}

/// Where `out` goes, refused when it is not a directory istio-canary may replace: one that is
/// or holds an input, that is not a directory, or (without `force`) that has no marker file.
fn checked_target(out: &Path, force: bool, inputs: &Inputs) -> Result<Target> {
    let target = resolve_out(out)?;
    if let Some(real) = &target.existing {
        refuse_inputs_inside(out, real, inputs)?;
        if !real.is_dir() {
            return Err(
                Error::new(format!("{} exists and is not a directory", out.display()))
                    .with_help("choose another --out"),
            );
        }
        if !force && !real.join(MARKER_FILE).is_file() {
            return Err(Error::new(format!(
                "refusing to replace {}: it was not written by istio-canary (no {MARKER_FILE} file)",
                out.display()
            ))
            .with_help("choose another --out, or pass --force to replace the directory and everything in it"));
        }
    }
    Ok(target)
}

/// Renames `staging` to `dest` only if nothing is at `dest` (`renameat2(RENAME_NOREPLACE)`;
/// a plain rename where the filesystem cannot, which fails on a directory that is not empty).
fn rename_new(staging: &Path, dest: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, staging, CWD, dest, RenameFlags::NOREPLACE) {
        Err(e) if exchange_unsupported(&e) => std::fs::rename(staging, dest),
        other => other.map_err(std::io::Error::from),
    }
}

/// Whether a rename failed because something is at its destination.
fn name_taken(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error().is_some_and(|code| {
        [Errno::EXIST, Errno::NOTEMPTY].contains(&Errno::from_raw_os_error(code))
    })
}

/// Whether `dir` holds exactly `files`: the same paths, as regular files with the same bytes,
/// and nothing else (no other file, link or empty directory). Anything unreadable is a
/// difference, so the output is written as usual. The tree is listed first (a few hundred
/// directories at most), then its files are read back and compared, on every core when there
/// are more than a thousand (a large plan has tens of thousands), stopping at the first
/// difference.
fn holds_exactly(dir: &Path, files: &BTreeMap<String, String>) -> bool {
    /// Every regular file under `dir` (path relative to the output, path to read); `false` at
    /// anything else, or an empty directory.
    fn list(dir: &Path, rel: &str, found: &mut Vec<(String, PathBuf)>) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let mut any = false;
        for entry in entries {
            let Ok(entry) = entry else { return false };
            any = true;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                return false;
            };
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let Ok(kind) = entry.file_type() else {
                return false;
            };
            if kind.is_dir() {
                if !list(&entry.path(), &path, found) {
                    return false;
                }
            } else if kind.is_file() {
                found.push((path, entry.path()));
            } else {
                return false;
            }
        }
        // An empty directory is not something a write makes (the root aside).
        any || rel.is_empty()
    }
    let mut found = Vec::new();
    // As many files, each one of `files` (paths are unique): the same set of paths.
    if !list(dir, "", &mut found) || found.len() != files.len() {
        return false;
    }
    // A few hundred files are read faster than threads start.
    let jobs = if found.len() < 1000 {
        std::num::NonZeroUsize::MIN
    } else {
        crate::jobs::available()
    };
    let differs = std::sync::atomic::AtomicBool::new(false);
    crate::jobs::map(&found, jobs, |_, (rel, path)| {
        if differs.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let same = files
            .get(rel)
            .is_some_and(|text| std::fs::read(path).is_ok_and(|bytes| bytes == text.as_bytes()));
        if !same {
            differs.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    !differs.into_inner()
}

/// The name prefixes of the directories a write makes beside `--out`: the new output being
/// built, and (where names cannot be exchanged) the previous one moved aside. The process id and
/// a random part follow: `.istio-canary-new-<pid>-<random>`.
const STAGING_NEW: &str = ".istio-canary-new-";
const STAGING_OLD: &str = ".istio-canary-old-";

/// A staging directory in `parent`, named `<prefix><pid>-<random>`, and the open directory that
/// holds its lock until the write ends (a killed process's lock is released by the kernel).
fn staging_dir(parent: &Path, prefix: &str) -> Result<(tempfile::TempDir, std::fs::File)> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}{}-", std::process::id()))
        .tempdir_in(parent)
        .map_err(|e| Error::io("cannot create a staging directory in", parent, &e))?;
    let lock = std::fs::File::open(dir.path())
        .map_err(|e| Error::io("cannot open the staging directory", dir.path(), &e))?;
    // Blocking: another compile may hold it for the moment it takes to see this one is alive.
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        Error::io(
            "cannot lock the staging directory",
            dir.path(),
            &std::io::Error::from(e),
        )
    })?;
    Ok((dir, lock))
}

/// Removes the staging directories in `parent` that a killed compile left: only a directory
/// (not a link) named as `staging_dir` names them, whose process id is not `own` and is gone
/// from this machine's process table, and whose lock is free (so a compile in another PID
/// namespace sharing the directory, or one that just made its directory, is left alone).
/// Returns one note per directory removed or that could not be removed. Anything else in
/// `parent` is never touched.
fn remove_stale(
    parent: &Path,
    own: u32,
    remove: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        // Nothing to clean where nothing can be listed; the staging directory's own creation
        // reports a directory that cannot be written.
        return Vec::new();
    };
    let mut stale: Vec<(PathBuf, u32)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name();
            let name = name.to_str()?;
            let rest = [STAGING_NEW, STAGING_OLD]
                .iter()
                .find_map(|prefix| name.strip_prefix(prefix))?;
            let (pid, random) = rest.split_once('-')?;
            let pid: u32 = pid.parse().ok().filter(|p| *p != own)?;
            (!random.is_empty() && !process_alive(pid)).then(|| (entry.path(), pid))
        })
        .collect();
    stale.sort();
    let mut notes = Vec::new();
    for (path, pid) in stale {
        // Opened without following a link, as a directory; held locked while it is removed.
        let Ok(dir) = rustix::fs::open(
            &path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) else {
            continue;
        };
        if rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        notes.push(match remove(&path) {
            Ok(()) => format!(
                "note: removed {}, left by a compile that was killed (process {pid} is gone)",
                path.display()
            ),
            Err(e) => format!(
                "note: could not remove {}, left by a compile that was killed (process {pid} is gone): {}",
                path.display(),
                crate::error::io_reason(&e)
            ),
        });
    }
    notes
}

/// Whether process `pid` exists on this machine (one that exists but is not ours counts).
fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Swaps `staging` and `dest` in one step (`renameat2(RENAME_EXCHANGE)` on Linux,
/// `renameatx_np(RENAME_SWAP)` on macOS): at every instant `dest` is the complete previous output
/// or the complete new one, even if the process is killed.
fn exchange(staging: &Path, dest: &Path) -> rustix::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, staging, CWD, dest, RenameFlags::EXCHANGE)
}

/// The errors of a filesystem or kernel that cannot exchange two names.
fn exchange_unsupported(e: &rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::INVAL, Errno::NOSYS, Errno::NOTSUP, Errno::OPNOTSUPP].contains(e)
}

/// Moves the previous output `dest` aside to `old`, then `staging` into `dest`. When the second
/// move fails, the previous output is put back: `out` is either new and complete or as it was.
fn swap_in(
    staging: &Path,
    dest: &Path,
    old: &Path,
    out: &Path,
    rename: &dyn Fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<()> {
    rename(dest, old).map_err(|e| Error::io("cannot move aside", out, &e))?;
    if let Err(e) = rename(staging, dest) {
        // Put the previous output back; the error is the rename that failed.
        let _ = rename(old, dest);
        return Err(Error::io("cannot move the new output into", out, &e));
    }
    Ok(())
}

/// A path of the file map must name a file strictly inside `out`: relative, and made only of
/// normal segments (no root, no prefix, no `.` or `..`, no empty segment, no NUL).
fn check_relative(rel: &str) -> Result<()> {
    let segments_ok = !rel.is_empty()
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    let components_ok = Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if segments_ok && components_ok {
        Ok(())
    } else {
        Err(Error::new(format!(
            "internal error: refusing to write {rel:?}, which is not a plain relative path inside --out"
        ))
        .with_help("this is a bug in istio-canary; nothing was written"))
    }
}

/// Where the output goes, with symbolic links resolved.
struct Target {
    /// The directory the staging directory is made in, and that holds the output.
    parent: PathBuf,
    /// The output's name in `parent`.
    file_name: std::ffi::OsString,
    /// `parent/file_name`, canonical, when something is there already.
    existing: Option<PathBuf>,
}

/// Resolves `out`: an existing `out` (a symlink included) by its canonical path, so `.`, `..`
/// and links name the directory they mean; a new `out` by its canonical parent.
fn resolve_out(out: &Path) -> Result<Target> {
    match std::fs::symlink_metadata(out) {
        Ok(meta) => {
            let real = std::fs::canonicalize(out).map_err(|e| {
                if meta.file_type().is_symlink() {
                    let to = std::fs::read_link(out)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default();
                    Error::new(format!(
                        "--out {} is a symbolic link to {to}, which cannot be resolved: {}",
                        out.display(),
                        crate::error::io_reason(&e)
                    ))
                    .with_help("create the link's target directory, or choose another --out")
                } else {
                    Error::io("cannot resolve", out, &e)
                }
            })?;
            let (Some(parent), Some(file_name)) = (real.parent(), real.file_name()) else {
                return Err(Error::new(format!(
                    "refusing to replace {}: it is the root directory",
                    out.display()
                ))
                .with_help("choose another --out"));
            };
            Ok(Target {
                parent: parent.to_path_buf(),
                file_name: file_name.to_os_string(),
                existing: Some(real.clone()),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(file_name) = out.file_name() else {
                return Err(Error::new(format!(
                    "--out {} does not name a directory to create",
                    out.display()
                ))
                .with_help("choose another --out"));
            };
            let parent = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            std::fs::create_dir_all(&parent)
                .map_err(|e| Error::io("cannot create", &parent, &e))?;
            let parent = std::fs::canonicalize(&parent)
                .map_err(|e| Error::io("cannot resolve", &parent, &e))?;
            Ok(Target {
                parent,
                file_name: file_name.to_os_string(),
                existing: None,
            })
        }
        Err(e) => Err(Error::io("cannot read", out, &e)),
    }
}

/// Refuses an `out` (canonical: `real`) that is, or is an ancestor of, an input: replacing it
/// would delete the input. Each input is checked at every path `entries_of` lists.
fn refuse_inputs_inside(out: &Path, real: &Path, inputs: &Inputs) -> Result<()> {
    for (input, entries) in &inputs.0 {
        if let Some(hit) = entries.iter().find(|p| p.starts_with(real)) {
            let relation = if hit == real { "is" } else { "holds" };
            return Err(Error::new(format!(
                "refusing to replace {}: it {relation} {}, an input of this compile, which the swap would delete",
                out.display(),
                input.display()
            ))
            .with_help("keep the policy, the IstioOperator specs, the inventory and the vendored istioctl outside --out, or choose another --out"));
        }
    }
    Ok(())
}

/// Every path an input's resolution passes through, canonical: each prefix of its absolute
/// path, and where a prefix is a symbolic link, the directory entry of each link in its chain (a
/// link inside `out` that leads elsewhere counts, since the swap would delete it).
fn entries_of(input: &Path) -> Result<Vec<PathBuf>> {
    /// Linux's own limit on links followed in one lookup.
    const MAX_LINKS: usize = 40;
    let absolute =
        std::path::absolute(input).map_err(|e| Error::io("cannot resolve the input", input, &e))?;
    let mut out = Vec::new();
    for prefix in absolute.ancestors() {
        if let Ok(real) = std::fs::canonicalize(prefix) {
            out.push(real);
        }
        let mut link = prefix.to_path_buf();
        for _ in 0..MAX_LINKS {
            let Ok(target) = std::fs::read_link(&link) else {
                break;
            };
            link = match link.parent() {
                Some(dir) => dir.join(target),
                None => target,
            };
            if let (Some(dir), Some(name)) = (link.parent(), link.file_name()) {
                if let Ok(real_dir) = std::fs::canonicalize(dir) {
                    out.push(real_dir.join(name));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A pid no process has: a child that was started and reaped (Linux hands pids out in
    /// order, so it is not reused within the test).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    /// `out` resolved while nothing is there, then made by someone else before the new output
    /// moves in (as `make` does), then the write.
    fn write_after(make: impl FnOnce(&Path)) -> (tempfile::TempDir, Result<Vec<String>>) {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let inputs = Inputs::of(&[]).unwrap();
        let target = checked_target(&out, false, &inputs).unwrap();
        assert!(target.existing.is_none());
        make(&out);
        let new = files(&[(MARKER_FILE, "new\n"), ("a/b.yaml", "b\n")]);
        let result = write_into(&out, &new, false, &inputs, &target);
        (tmp, result)
    }

    #[test]
    fn an_output_another_compile_moved_in_meanwhile_is_replaced_whole() {
        let (tmp, result) = write_after(|out| {
            std::fs::create_dir_all(out.join("old")).unwrap();
            std::fs::write(out.join(MARKER_FILE), "other\n").unwrap();
            std::fs::write(out.join("old/x.yaml"), "x\n").unwrap();
        });
        assert_eq!(result.unwrap(), Vec::<String>::new());
        let out = tmp.path().join("out");
        assert_eq!(
            entries(&out),
            vec![MARKER_FILE.to_string(), "a".to_string()]
        );
        assert_eq!(
            std::fs::read_to_string(out.join(MARKER_FILE)).unwrap(),
            "new\n"
        );
        // Nothing is left beside it: the previous output went with the staging directory.
        assert_eq!(entries(tmp.path()), vec!["out".to_string()]);
    }

    #[test]
    fn a_link_made_meanwhile_is_not_replaced_by_a_directory() {
        let (tmp, result) = write_after(|out| {
            let other = out.with_file_name("other");
            std::fs::create_dir(&other).unwrap();
            std::fs::write(other.join(MARKER_FILE), "other\n").unwrap();
            std::os::unix::fs::symlink("other", out).unwrap();
        });
        let err = result.unwrap_err();
        assert!(
            err.message
                .ends_with("out: it changed while the output was written"),
            "{}",
            err.message
        );
        let out = tmp.path().join("out");
        assert!(out.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(entries(&out), vec![MARKER_FILE.to_string()]);
        assert_eq!(
            entries(tmp.path()),
            vec!["other".to_string(), "out".to_string()]
        );
    }

    #[test]
    fn a_directory_someone_made_meanwhile_is_not_replaced_without_the_marker() {
        let (tmp, result) = write_after(|out| {
            std::fs::create_dir(out).unwrap();
            std::fs::write(out.join("notes.txt"), "mine\n").unwrap();
        });
        let err = result.unwrap_err();
        assert!(
            err.message.starts_with("refusing to replace ")
                && err
                    .message
                    .ends_with("out: it was not written by istio-canary (no .istio-canary file)"),
            "{}",
            err.message
        );
        let out = tmp.path().join("out");
        assert_eq!(entries(&out), vec!["notes.txt".to_string()]);
        assert_eq!(entries(tmp.path()), vec!["out".to_string()]);
    }

    #[test]
    fn only_a_dead_compiles_unlocked_staging_directory_is_removed_and_each_is_noted() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let own = std::process::id();
        for name in [
            format!(".istio-canary-new-{dead}-abc"),
            format!(".istio-canary-old-{dead}-def"),
            // Its process is alive (this test): another compile still writing.
            format!(".istio-canary-new-{own}-ghi"),
            // Not a name a compile makes.
            format!(".istio-canary-new-{dead}-"),
            ".istio-canary-new-xyz".to_string(),
            format!("istio-canary-new-{dead}-abc"),
            "bundles".to_string(),
        ] {
            std::fs::create_dir(tmp.path().join(name)).unwrap();
        }
        // A dead pid's directory still locked: a compile in another PID namespace.
        let locked = tmp.path().join(format!(".istio-canary-new-{dead}-lck"));
        std::fs::create_dir(&locked).unwrap();
        let lock = std::fs::File::open(&locked).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        // A link with a stale name: never followed, never removed.
        let target = tmp.path().join("bundles");
        std::os::unix::fs::symlink(
            &target,
            tmp.path().join(format!(".istio-canary-new-{dead}-lnk")),
        )
        .unwrap();
        let notes = remove_stale(tmp.path(), own, &|p| std::fs::remove_dir_all(p));
        let shown = |name: &str| tmp.path().join(name).display().to_string();
        assert_eq!(
            notes,
            [
                format!(
                    "note: removed {}, left by a compile that was killed (process {dead} is gone)",
                    shown(&format!(".istio-canary-new-{dead}-abc"))
                ),
                format!(
                    "note: removed {}, left by a compile that was killed (process {dead} is gone)",
                    shown(&format!(".istio-canary-old-{dead}-def"))
                ),
            ]
        );
        let mut left = entries(tmp.path());
        left.sort();
        let mut expected = vec![
            format!(".istio-canary-new-{dead}-"),
            format!(".istio-canary-new-{dead}-lck"),
            format!(".istio-canary-new-{dead}-lnk"),
            format!(".istio-canary-new-{own}-ghi"),
            ".istio-canary-new-xyz".to_string(),
            "bundles".to_string(),
            format!("istio-canary-new-{dead}-abc"),
        ];
        expected.sort();
        assert_eq!(left, expected);
        // Once the lock is released, the next write's cleanup takes it; a removal that fails is
        // said, and the directory stays.
        drop(lock);
        let notes = remove_stale(tmp.path(), own, &|_| {
            Err(std::io::Error::from_raw_os_error(13))
        });
        assert_eq!(
            notes,
            [format!(
                "note: could not remove {}, left by a compile that was killed (process {dead} is gone): Permission denied",
                locked.display()
            )]
        );
        assert!(locked.is_dir());
    }

    #[test]
    fn an_output_already_in_place_is_recognised_only_when_exactly_equal() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let want = files(&[
            (MARKER_FILE, "m\n"),
            ("PLAN.md", "plan\n"),
            ("a/b.yaml", "b\n"),
        ]);
        write_atomic(&out, &want, false, &[]).unwrap();
        assert!(holds_exactly(&out, &want));
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(&out.join("PLAN.md"));
        // Written again unchanged: the files are the ones already there.
        write_atomic(&out, &want, false, &[]).unwrap();
        assert_eq!(inode(&out.join("PLAN.md")), before);
        // Each difference is one: bytes, a missing file, an extra file, an empty directory, a
        // link in place of a file.
        let mut other = want.clone();
        other.insert("PLAN.md".into(), "plan 2\n".into());
        assert!(!holds_exactly(&out, &other));
        let mut fewer = want.clone();
        fewer.remove("a/b.yaml");
        assert!(!holds_exactly(&out, &fewer));
        let mut more = want.clone();
        more.insert("c.yaml".into(), "c\n".into());
        assert!(!holds_exactly(&out, &more));
        std::fs::create_dir(out.join("empty")).unwrap();
        assert!(!holds_exactly(&out, &want));
        std::fs::remove_dir(out.join("empty")).unwrap();
        std::fs::remove_file(out.join("PLAN.md")).unwrap();
        std::fs::write(tmp.path().join("plan"), "plan\n").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("plan"), out.join("PLAN.md")).unwrap();
        assert!(!holds_exactly(&out, &want));
        // Then the write replaces it whole.
        write_atomic(&out, &want, false, &[]).unwrap();
        assert!(holds_exactly(&out, &want));
        assert!(std::fs::symlink_metadata(out.join("PLAN.md"))
            .unwrap()
            .is_file());
    }

    #[test]
    fn a_failed_swap_puts_the_previous_output_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("bundles");
        let staging = tmp.path().join("staging");
        let old = tmp.path().join("old");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("PLAN.md"), "previous\n").unwrap();
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("PLAN.md"), "new\n").unwrap();
        // The move of the new output into place fails; every other rename works.
        let failing = |a: &Path, b: &Path| {
            if a == staging.as_path() {
                Err(std::io::Error::other("disk full"))
            } else {
                std::fs::rename(a, b)
            }
        };
        let err = swap_in(&staging, &dest, &old, &dest, &failing).unwrap_err();
        assert!(
            err.message.contains("cannot move the new output into"),
            "{}",
            err.message
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("PLAN.md")).unwrap(),
            "previous\n"
        );
        assert!(!old.exists());
    }

    #[test]
    fn replaces_its_own_output_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundles");
        write_atomic(
            &out,
            &files(&[(MARKER_FILE, "#\n"), ("a/x.yaml", "x\n")]),
            false,
            &[],
        )
        .unwrap();
        write_atomic(
            &out,
            &files(&[(MARKER_FILE, "#\n"), ("b/y.yaml", "y\n")]),
            false,
            &[],
        )
        .unwrap();
        assert!(!out.join("a").exists());
        assert_eq!(
            std::fs::read_to_string(out.join("b/y.yaml")).unwrap(),
            "y\n"
        );
        assert_eq!(entries(tmp.path()), ["bundles"]);
    }

    #[test]
    fn refuses_a_foreign_directory_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("mine");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("notes.txt"), "keep").unwrap();
        let err = write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), false, &[]).unwrap_err();
        assert!(
            err.message.starts_with("refusing to replace"),
            "{}",
            err.message
        );
        assert!(out.join("notes.txt").exists());
        write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), true, &[]).unwrap();
        assert!(!out.join("notes.txt").exists());
    }

    #[test]
    fn refuses_an_out_path_that_is_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundles");
        std::fs::write(&out, "not a directory").unwrap();
        let err = write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), true, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "error: {} exists and is not a directory\nhelp: choose another --out",
                out.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "not a directory");
    }

    #[test]
    fn refuses_every_path_that_is_not_plain_and_relative_before_writing_anything() {
        for bad in [
            "../escaped.yaml",
            "a/../../escaped.yaml",
            "[TMP]/escaped.yaml",
            "./a.yaml",
            "a//b.yaml",
            "a/",
            "",
            "a/./b.yaml",
            "a\0b",
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let work = tmp.path().join("work");
            std::fs::create_dir(&work).unwrap();
            let out = work.join("bundles");
            // An absolute path inside this test's temp dir, so a failing check stays contained.
            let bad = &bad.replace("[TMP]", tmp.path().to_str().unwrap());
            // A good file first (sorted before the bad one): it must not be written either.
            let map = files(&[("!first.yaml", "x\n"), (bad.as_str(), "escaped\n")]);
            let err = write_atomic(&out, &map, true, &[]).unwrap_err();
            assert_eq!(
                err.message,
                format!("internal error: refusing to write {bad:?}, which is not a plain relative path inside --out")
            );
            assert_eq!(entries(tmp.path()), ["work"], "{bad:?}");
            assert!(entries(&work).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_an_out_that_holds_an_input() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundles");
        std::fs::create_dir_all(out.join("vendor")).unwrap();
        std::fs::write(out.join(MARKER_FILE), "#\n").unwrap();
        let input = out.join("vendor/istioctl");
        std::fs::write(&input, "binary").unwrap();
        for candidate in [out.clone(), out.join("vendor"), out.join("vendor/.")] {
            let err = write_atomic(
                &candidate,
                &files(&[(MARKER_FILE, "#\n")]),
                true,
                std::slice::from_ref(&input),
            )
            .unwrap_err();
            assert!(
                err.message.contains("an input of this compile"),
                "{}",
                err.message
            );
        }
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "binary");
        // An input beside --out is fine.
        let beside = tmp.path().join("canary.yaml");
        std::fs::write(&beside, "policy").unwrap();
        write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), true, &[beside]).unwrap();
    }

    #[test]
    fn refuses_an_out_that_holds_a_symlink_leading_to_an_input() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("vendor-real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("istioctl"), "binary").unwrap();
        let out = tmp.path().join("bundles");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(MARKER_FILE), "#\n").unwrap();
        std::os::unix::fs::symlink(&real, out.join("vendor")).unwrap();
        let input = out.join("vendor/istioctl");
        let err = write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), true, &[input]).unwrap_err();
        assert!(
            err.message.contains("an input of this compile"),
            "{}",
            err.message
        );
        assert!(out.join("vendor").is_symlink());
    }

    #[test]
    fn refuses_an_out_that_names_no_directory_to_create() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("missing/..");
        let err = write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), true, &[]).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "--out {} does not name a directory to create",
                out.display()
            )
        );
        assert!(entries(tmp.path()).is_empty());
    }

    #[test]
    fn refuses_an_out_that_holds_a_link_in_the_chain_to_an_input() {
        // work/a -> bundles/l2 -> elsewhere: the input work/a/istioctl lives outside bundles, but
        // the swap would delete bundles/l2, and with it the way to the input.
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("istioctl"), "binary").unwrap();
        let out = tmp.path().join("bundles");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(MARKER_FILE), "#\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("l2")).unwrap();
        std::os::unix::fs::symlink("bundles/l2", tmp.path().join("a")).unwrap();
        let input = tmp.path().join("a/istioctl");
        let err = write_atomic(&out, &files(&[(MARKER_FILE, "#\n")]), true, &[input]).unwrap_err();
        assert!(
            err.message.contains("an input of this compile"),
            "{}",
            err.message
        );
        assert!(out.join("l2").is_symlink());
    }
}
