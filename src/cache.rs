//! The render cache: what istioctl printed, stored under a content address, so that a compile
//! whose inputs did not change starts no istioctl and reads no vendored binary.
//!
//! Owns: where the cache lives (`--cache-dir`, else `$XDG_CACHE_HOME/istio-canary`, else
//! `$HOME/.cache/istio-canary`; `--no-cache` for none), how a key is derived from the parts its
//! caller names (`key`: sha256 over a format tag and each part, length-prefixed), the entry format
//! (one header line with the key, the payload's length and sha256, then the payload), checking an
//! entry against its header before handing its payload out (a truncated, corrupt or misplaced
//! entry is a miss, never a payload), and writing an entry atomically (a temporary file in the
//! entries' directory, fsync, rename over the name, fsync of the directory), so concurrent
//! compiles sharing a cache never read half an entry. Must not: parse or judge a payload (render
//! parses what the cache returns exactly as it parses istioctl's stdout), start a process, write
//! anywhere but its own directory, or fail a compile: a cache that cannot be read is a miss, and
//! one that cannot be written (read-only, shared between CI runners) is noted and skipped.
//!
//! Also owns keeping the cache bounded (`prune`, the `cache prune` command): a hit marks its
//! entry used (its modification time), and a prune removes entries unused for longer than a
//! maximum age, then the least recently used until the entries fit a maximum size, and the
//! temporary files of stores that were killed. Removing is one `unlink` per entry, so a compile
//! reading an entry at that moment reads it whole, and one looking it up after sees a miss and
//! renders again: an entry is never used half-deleted.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::error::{io_reason, Error, Result};
use crate::policy::hex;

/// The first word of every entry; a change of format changes it, and the keys with it.
const FORMAT: &str = "istio-canary-render-cache-v1";
/// The subdirectory of the cache directory that holds the entries.
const ENTRIES: &str = "renders";
/// The largest entry read back (istioctl's stdout is read up to 64 MiB, plus the header).
const ENTRY_LIMIT: u64 = (64 << 20) + 4096;

/// A cache key: 64 lowercase hex digits, also the entry's file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key of `parts`: sha256 over the format tag and each part prefixed by its length, so no
/// two lists of parts share a key by running into each other.
pub fn key(parts: &[&[u8]]) -> Key {
    let mut hasher = Sha256::new();
    for part in std::iter::once(FORMAT.as_bytes()).chain(parts.iter().copied()) {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Key(hex(&hasher.finalize()))
}

/// The default cache directory from the environment: `$XDG_CACHE_HOME/istio-canary` when it is
/// set to an absolute path (the XDG rule: a relative one is ignored), else
/// `$HOME/.cache/istio-canary`. An error when neither is usable.
pub fn default_dir(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let absolute = |name: &str| var(name).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute("XDG_CACHE_HOME") {
        return Ok(xdg.join("istio-canary"));
    }
    if let Some(home) = absolute("HOME") {
        return Ok(home.join(".cache").join("istio-canary"));
    }
    Err(Error::new(
        "no directory for the render cache: neither XDG_CACHE_HOME nor HOME is set to an absolute path",
    )
    .with_help("pass --cache-dir DIR to keep renders there, or --no-cache to render every time"))
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A checked entry's payload.
    Hit(Vec<u8>),
    /// No entry (or no cache).
    Miss,
    /// An entry that does not match its header: never used, rewritten by the next store.
    Corrupt,
}

/// A render cache in a directory, or none. Counts what it could not do, for `notes`.
#[derive(Debug)]
pub struct Cache {
    dir: Option<PathBuf>,
    trouble: Mutex<Trouble>,
}

#[derive(Debug, Default)]
struct Trouble {
    corrupt: usize,
    unstored: usize,
    /// Why the first store failed.
    why: Option<String>,
}

impl Cache {
    /// A cache kept in `dir` (created on the first store).
    pub fn at(dir: PathBuf) -> Cache {
        Cache {
            dir: Some(dir),
            trouble: Mutex::default(),
        }
    }

    /// No cache: every lookup misses and nothing is stored.
    pub fn none() -> Cache {
        Cache {
            dir: None,
            trouble: Mutex::default(),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry(&self, key: &Key) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(ENTRIES).join(key.as_str()))
    }

    /// The payload stored under `key`, checked against the entry's header.
    pub fn get(&self, key: &Key) -> Lookup {
        let Some(path) = self.entry(key) else {
            return Lookup::Miss;
        };
        let bytes = match read_entry(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Lookup::Miss,
            Err(()) => return self.corrupt(),
        };
        match decode(key, &bytes) {
            Some(payload) => {
                mark_used(&path);
                Lookup::Hit(payload.to_vec())
            }
            None => self.corrupt(),
        }
    }

    fn corrupt(&self) -> Lookup {
        self.trouble().corrupt += 1;
        Lookup::Corrupt
    }

    fn trouble(&self) -> std::sync::MutexGuard<'_, Trouble> {
        self.trouble.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `payload` under `key`, atomically. A store that fails is counted for `notes`, not
    /// an error: the compile goes on with what it rendered.
    pub fn put(&self, key: &Key, payload: &[u8]) {
        let Some(path) = self.entry(key) else {
            return;
        };
        if let Err(why) = store(&path, &encode(key, payload)) {
            let mut trouble = self.trouble();
            trouble.unstored += 1;
            trouble.why.get_or_insert(why);
        }
    }

    /// What a user should know about this run's use of the cache: corrupt entries that were
    /// ignored, renders that could not be stored (and why). Empty when all went well.
    pub fn notes(&self) -> Vec<String> {
        let trouble = self.trouble();
        let dir = self.dir.as_deref().unwrap_or(Path::new("")).display();
        let mut notes = Vec::new();
        if trouble.corrupt > 0 {
            notes.push(format!(
                "render cache {dir}: {} entr{} did not match {} own digest and {} ignored (rendered again)",
                trouble.corrupt,
                if trouble.corrupt == 1 { "y" } else { "ies" },
                if trouble.corrupt == 1 { "its" } else { "their" },
                if trouble.corrupt == 1 { "was" } else { "were" },
            ));
        }
        if trouble.unstored > 0 {
            notes.push(format!(
                "render cache {dir} is not writable ({}): {} render{} not stored",
                trouble.why.as_deref().unwrap_or("unknown reason"),
                trouble.unstored,
                if trouble.unstored == 1 {
                    " was"
                } else {
                    "s were"
                },
            ));
        }
        notes
    }
}

/// The entry at `path`: `None` when there is none that can be opened (missing, not a regular
/// file, no access), `Err` when what is there cannot be what a store wrote (larger than any
/// entry, unreadable).
fn read_entry(path: &Path) -> std::result::Result<Option<Vec<u8>>, ()> {
    use std::io::Read as _;
    let Ok(file) = crate::yamlin::open_regular(path) else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    match file.take(ENTRY_LIMIT + 1).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 <= ENTRY_LIMIT => Ok(Some(bytes)),
        _ => Err(()),
    }
}

/// An entry: `FORMAT key length sha256\n` then the payload.
fn encode(key: &Key, payload: &[u8]) -> Vec<u8> {
    let digest = hex(&Sha256::digest(payload));
    let mut out = format!("{FORMAT} {key} {} {digest}\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The payload of an entry whose header names `key`, the payload's exact length and its sha256;
/// `None` for anything else.
fn decode<'a>(key: &Key, entry: &'a [u8]) -> Option<&'a [u8]> {
    let end = entry.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&entry[..end]).ok()?;
    let payload = &entry[end + 1..];
    let mut words = header.split(' ');
    let fields = (words.next()?, words.next()?, words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let (format, stored_key, length, digest) = fields;
    let length_ok = length.parse::<usize>().ok() == Some(payload.len());
    let ok = format == FORMAT
        && stored_key == key.as_str()
        && length_ok
        && digest == hex(&Sha256::digest(payload));
    ok.then_some(payload)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsynced, renamed over the
/// name, then the directory fsynced. A reader sees the old entry, no entry, or the whole new one.
fn store(path: &Path, bytes: &[u8]) -> std::result::Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_reason(&e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| io_reason(&e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_reason(&e))?;
    tmp.persist(path).map_err(|e| io_reason(&e.error))?;
    // The rename is durable once the directory is; a failure here loses only the entry.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Marks the entry at `path` used now (its modification time), for `prune`'s least recently
/// used order. A cache that cannot be written (read-only, shared) keeps the store's time: the
/// lookup does not fail for it.
fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// How far `prune` shrinks the cache: entries unused for longer than `max_age` go, then the
/// least recently used until the rest take at most `max_size` bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_size: Option<u64>,
    pub max_age: Option<std::time::Duration>,
}

/// What `prune` did: entries (and killed stores' temporary files) removed, and what is kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub removed: usize,
    pub removed_bytes: u64,
    pub temporary: usize,
    pub kept: usize,
    pub kept_bytes: u64,
}

impl Pruned {
    /// The line `cache prune` prints.
    pub fn summary(&self, dir: &Path) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let entries = |n: usize| if n == 1 { "entry" } else { "entries" };
        let mut line = format!(
            "istio-canary: render cache {}: removed {} {} ({:.1} MiB), kept {} ({:.1} MiB)",
            dir.display(),
            self.removed,
            entries(self.removed),
            mib(self.removed_bytes),
            self.kept,
            mib(self.kept_bytes),
        );
        if self.temporary > 0 {
            line.push_str(&format!(
                ", and {} temporary file{} of killed stores",
                self.temporary,
                if self.temporary == 1 { "" } else { "s" }
            ));
        }
        line.push('\n');
        line
    }
}

/// A temporary file of a store older than this was left by a killed compile (a store takes
/// well under a second).
const TEMPORARY_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Shrinks the cache in `dir` to `limits`, as of `now`: removes every entry last used more than
/// `max_age` ago, then the least recently used (oldest modification time, then name) until the
/// rest fit `max_size`, and the temporary files of stores older than an hour. Only the entries'
/// directory is read; anything in it that is not an entry or a store's temporary file (by name
/// and kind) is left alone. A cache that was never written is empty, not an error.
pub fn prune(dir: &Path, limits: Limits, now: std::time::SystemTime) -> Result<Pruned> {
    prune_with(dir, limits, now, &|p| std::fs::remove_file(p))
}

fn prune_with(
    dir: &Path,
    limits: Limits,
    now: std::time::SystemTime,
    remove: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Result<Pruned> {
    let entries_dir = dir.join(ENTRIES);
    let listing = match std::fs::read_dir(&entries_dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.is_file() => {
            return Ok(Pruned::default())
        }
        Err(e) => return Err(Error::io("cannot read the render cache", &entries_dir, &e)),
    };
    let age = |modified: std::time::SystemTime| now.duration_since(modified).unwrap_or_default();
    // (last used, name, size) of every entry; the temporary files to remove.
    let mut entries = Vec::new();
    let mut temporary = Vec::new();
    for item in listing {
        let item = item.map_err(|e| Error::io("cannot read the render cache", &entries_dir, &e))?;
        let Ok(meta) = item.metadata() else {
            continue; // gone since the listing: another prune, or a store's rename
        };
        let name = item.file_name().to_string_lossy().into_owned();
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(now);
        if name.starts_with(".tmp-") {
            if age(modified) > TEMPORARY_AGE {
                temporary.push(item.path());
            }
        } else if name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            entries.push((modified, name, meta.len()));
        }
    }
    entries.sort();
    let mut total: u64 = entries.iter().map(|(_, _, size)| size).sum();
    let mut pruned = Pruned::default();
    let mut failed: Vec<(PathBuf, std::io::Error)> = Vec::new();
    for (modified, name, size) in &entries {
        let too_old = limits.max_age.is_some_and(|max| age(*modified) > max);
        let too_big = limits.max_size.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            pruned.kept += 1;
            pruned.kept_bytes += size;
            continue;
        }
        let path = entries_dir.join(name);
        match remove(&path) {
            Ok(()) => {
                pruned.removed += 1;
                pruned.removed_bytes += size;
                total -= size;
            }
            // Another prune took it first: it is gone all the same.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= size,
            Err(e) => {
                pruned.kept += 1;
                pruned.kept_bytes += size;
                failed.push((path, e));
            }
        }
    }
    for path in temporary {
        match remove(&path) {
            Ok(()) => pruned.temporary += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push((path, e)),
        }
    }
    if let Some((path, e)) = failed.first() {
        return Err(Error::new(format!(
            "cannot remove {} file{} of the render cache {} (the first, {}: {})",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            dir.display(),
            path.display(),
            io_reason(e)
        ))
        .with_help(
            "check the cache directory's owner and permissions; what could be removed was",
        ));
    }
    Ok(pruned)
}

/// `--max-size`: a number of bytes, or one with a K, M or G suffix (powers of 1024, an optional
/// `i`/`iB`/`B` after it).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => u32::MAX,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|_| shift != u32::MAX)
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| {
            format!("`{text}` is not a size: give bytes, or a number with K, M or G (500M, 2G)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_default_directory_follows_xdg_then_home() {
        let both = env(&[("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")]);
        assert_eq!(
            default_dir(both).unwrap(),
            Path::new("/x/cache/istio-canary")
        );
        let relative_xdg = env(&[("XDG_CACHE_HOME", "cache"), ("HOME", "/home/u")]);
        assert_eq!(
            default_dir(relative_xdg).unwrap(),
            Path::new("/home/u/.cache/istio-canary")
        );
        let err = default_dir(env(&[("HOME", "relative")])).unwrap_err();
        assert!(err.message.starts_with("no directory for the render cache"));
    }

    #[test]
    fn keys_differ_when_any_part_differs_or_parts_run_together() {
        let k = key(&[b"ab", b"c"]);
        assert_eq!(k, key(&[b"ab", b"c"]));
        assert_ne!(k, key(&[b"a", b"bc"]));
        assert_ne!(k, key(&[b"ab", b"d"]));
        assert_eq!(k.as_str().len(), 64);
    }

    #[test]
    fn a_stored_payload_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path().join("c"));
        let k = key(&[b"render"]);
        assert_eq!(cache.get(&k), Lookup::Miss);
        cache.put(&k, b"kind: Namespace\n");
        assert_eq!(cache.get(&k), Lookup::Hit(b"kind: Namespace\n".to_vec()));
        assert!(cache.notes().is_empty());
        // Only the entry is left: no temporary file.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("c").join(ENTRIES))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [k.as_str()]);
    }

    /// An interrupted or damaged write, at any byte: every prefix of an entry, every entry with
    /// one byte changed, and an entry stored under another key are never used.
    #[test]
    fn a_truncated_or_corrupted_entry_is_never_used_and_is_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path().to_path_buf());
        let k = key(&[b"render"]);
        let payload = b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n";
        let entry = encode(&k, payload);
        let path = tmp.path().join(ENTRIES).join(k.as_str());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        for len in 0..entry.len() {
            std::fs::write(&path, &entry[..len]).unwrap();
            assert_eq!(cache.get(&k), Lookup::Corrupt, "prefix of {len} bytes");
        }
        for at in 0..entry.len() {
            let mut damaged = entry.clone();
            damaged[at] ^= 0x01;
            std::fs::write(&path, &damaged).unwrap();
            assert_eq!(cache.get(&k), Lookup::Corrupt, "byte {at} changed");
        }
        let mut longer = entry.clone();
        longer.push(b'\n');
        std::fs::write(&path, &longer).unwrap();
        assert_eq!(cache.get(&k), Lookup::Corrupt);
        let other = key(&[b"another render"]);
        std::fs::write(&path, encode(&other, payload)).unwrap();
        assert_eq!(cache.get(&k), Lookup::Corrupt);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(cache.get(&k), Lookup::Miss);
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, &entry[..10]).unwrap();
        cache.put(&k, payload);
        assert_eq!(cache.get(&k), Lookup::Hit(payload.to_vec()));
        let corrupt = 2 * entry.len() + 2;
        assert_eq!(
            cache.notes(),
            [format!(
                "render cache {}: {corrupt} entries did not match their own digest and were ignored (rendered again)",
                tmp.path().display()
            )]
        );
    }

    #[test]
    fn sizes_take_k_m_g_suffixes_and_nothing_else() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("10b"), Ok(10));
        for bad in ["", "M", "1.5G", "-1", "1T", "99999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_entry_prune_cannot_remove_is_an_error_after_it_removed_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path().to_path_buf());
        let (a, b) = (key(&[b"a"]), key(&[b"b"]));
        cache.put(&a, b"first");
        cache.put(&b, b"second");
        let stuck = tmp.path().join(ENTRIES).join(a.as_str());
        let limits = Limits {
            max_size: Some(0),
            max_age: None,
        };
        let remove = |p: &Path| {
            if p == stuck {
                Err(std::io::Error::from_raw_os_error(13))
            } else {
                std::fs::remove_file(p)
            }
        };
        let err =
            prune_with(tmp.path(), limits, std::time::SystemTime::now(), &remove).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "error: cannot remove 1 file of the render cache {} (the first, {}: Permission denied)\nhelp: check the cache directory's owner and permissions; what could be removed was",
                tmp.path().display(),
                stuck.display()
            )
        );
        assert_eq!(cache.get(&b), Lookup::Miss);
        assert_eq!(cache.get(&a), Lookup::Hit(b"first".to_vec()));
    }

    #[test]
    fn a_cache_that_cannot_be_written_is_noted_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        // A file where the cache directory should be: nothing can be created under it.
        let blocked = tmp.path().join("file");
        std::fs::write(&blocked, "").unwrap();
        let cache = Cache::at(blocked.clone());
        let k = key(&[b"render"]);
        cache.put(&k, b"x");
        cache.put(&key(&[b"other"]), b"y");
        assert_eq!(cache.get(&k), Lookup::Miss);
        assert_eq!(
            cache.notes(),
            [format!(
                "render cache {} is not writable (Not a directory): 2 renders were not stored",
                blocked.display()
            )]
        );
        let none = Cache::none();
        none.put(&k, b"x");
        assert_eq!(none.get(&k), Lookup::Miss);
        assert!(none.notes().is_empty());
    }
}
