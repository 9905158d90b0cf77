//! The one reader of every file the tool reads, and the one gate every YAML input passes before
//! serde_yaml reads it: the policy, the IstioOperator specs and istioctl's output.
//!
//! Owns: the size limit of each input (the policy, a spec, istioctl's output, `plan.json`, each
//! file of an output directory read back) and the bounded reader that enforces it
//! (`open_regular`, `read_limited`, `read_whole`: regular files only, symbolic links followed, a
//! FIFO, socket, device or directory refused by name without blocking), UTF-8 decoding with
//! a byte-order mark accepted (stripped before anything counts lines), and one linear scan with an
//! event parser (`saphyr-parser`, which reports where every event starts) that refuses nesting
//! deeper than `MAX_DEPTH`, YAML merge keys (`<<`), duplicate keys and keys that are not scalars
//! or carry a tag, each with file:line:col of the offending node. It also turns serde_yaml's
//! errors into located `Error`s that keep every location serde_yaml gives.
//! Must not: give meaning to values (serde_yaml deserializes, the callers check), or let
//! serde_yaml see a text the scan has not passed: serde_yaml's scanner is quadratic in the depth
//! of flow nesting, so the depth guard is what keeps every read time-linear.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;

use crate::error::{shown, Error, Result};

/// The largest policy file read (1 MiB).
pub const POLICY_LIMIT: u64 = 1 << 20;
/// The largest IstioOperator spec read (4 MiB).
pub const SPEC_LIMIT: u64 = 4 << 20;
/// The largest istioctl output parsed (64 MiB, the cap `render` reads up to).
pub const MANIFEST_LIMIT: u64 = 64 << 20;
/// The largest `plan.json` read back by `verify` and `show` (64 MiB). It names files, objects
/// and digests, not object bodies: the example's is about 100 KiB.
pub const PLAN_JSON_LIMIT: u64 = 64 << 20;
/// The largest file of an output directory read back by `compile --check`, `verify` and `show`
/// (64 MiB, each file): no file compile writes comes near istioctl's whole output.
pub const OUTPUT_FILE_LIMIT: u64 = 64 << 20;
/// The largest istioctl binary hashed against its pin (512 MiB; real ones are about 100 MB).
pub const ISTIOCTL_LIMIT: u64 = 512 << 20;
/// The largest cluster inventory read (64 MiB): a `kubectl get … -o yaml` of about 10,000
/// namespaces and their workloads.
pub const INVENTORY_LIMIT: u64 = 64 << 20;
/// The deepest nesting of sequences and mappings read. Real inputs stay far below: the deepest
/// recorded istioctl output (a CRD schema) has 33 levels. serde_yaml itself stops at 128.
pub const MAX_DEPTH: usize = 64;

/// What an input is: it decides the size limit and how messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Policy,
    Spec,
    Manifest,
    Inventory,
}

impl Kind {
    pub fn limit(self) -> u64 {
        match self {
            Kind::Policy => POLICY_LIMIT,
            Kind::Spec => SPEC_LIMIT,
            Kind::Manifest => MANIFEST_LIMIT,
            Kind::Inventory => INVENTORY_LIMIT,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Policy => "the policy",
            Kind::Spec => "the IstioOperator spec",
            Kind::Manifest => "istioctl's output",
            Kind::Inventory => "the inventory",
        }
    }
}

/// Reads at most `limit + 1` bytes of `path`: enough to tell that a file is over the limit
/// without reading all of it. The file is opened with `open_regular`, so anything but a regular
/// file (`--policy /dev/zero`, a FIFO, a directory) is refused before a byte is read.
pub fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads a whole file that holds at most `limit` bytes (`read_limited`). A failure to read it is
/// `{action} {path}: {reason}`; a file over the limit is an error naming the file and its limit.
pub fn read_whole(path: &Path, limit: u64, action: &str) -> Result<Vec<u8>> {
    let bytes = read_limited(path, limit).map_err(|e| Error::io(action, path, &e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(format!(
            "{} is over its limit of {}",
            path.display(),
            size(limit)
        ))
        .with_help("istio-canary never writes a file this large; compile again"));
    }
    Ok(bytes)
}

/// Opens `path` for reading if it is a regular file, following symbolic links, and never blocks.
///
/// The type is checked before the open, so a device is never opened and a FIFO never waits for
/// a writer; the open itself is non-blocking, so a FIFO put there after the check cannot hang
/// either; and the opened handle is checked again (`fstat`), so what is read is the regular
/// file that was checked. Anything else is an error (`InvalidInput`) whose text says what the
/// path is: `it is a FIFO, not a regular file`, `it is a symbolic link to /dev/zero, a
/// character device, not a regular file`. A symbolic link to nothing is `NotFound`: `it is a
/// symbolic link to X, which does not exist`.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    refuse_unless_regular(path)?;
    open_nonblocking(path)
}

/// The check before the open: `path`, its symbolic links followed, is a regular file.
fn refuse_unless_regular(path: &Path) -> std::io::Result<()> {
    let target = match std::fs::metadata(path) {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match std::fs::read_link(path) {
                Ok(to) => std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "it is a symbolic link to {}, which does not exist",
                        to.display()
                    ),
                ),
                Err(_) => e,
            });
        }
        Err(e) => return Err(e),
    };
    if target.is_file() {
        return Ok(());
    }
    let what = file_type_noun(&target.file_type());
    let linked = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
    Err(not_regular(&match std::fs::canonicalize(path) {
        Ok(to) if linked => format!("a symbolic link to {}, {what}", to.display()),
        _ => what.to_string(),
    }))
}

/// The open, which cannot block, and the check of what was opened (`fstat`).
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading waits for a writer without it. O_NOCTTY: a
    // terminal put there is not made the controlling terminal.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)?;
    let opened = file.metadata()?.file_type();
    if !opened.is_file() {
        return Err(not_regular(file_type_noun(&opened)));
    }
    // A regular file reads the same either way; the flag is cleared so that no file system can
    // answer a read with "would block".
    fcntl_setfl(&file, fcntl_getfl(&file)? - OFlags::NONBLOCK)?;
    Ok(file)
}

fn not_regular(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    )
}

/// What a file that is not a regular file is, for messages.
fn file_type_noun(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// "1 MiB", "64 MiB", or bytes: how messages state a limit.
pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Checks the size of an input and decodes it as UTF-8 text, dropping a leading byte-order mark
/// (so lines and columns count from what an editor shows).
pub fn decode<'a>(bytes: &'a [u8], kind: Kind, source: &Path) -> Result<&'a str> {
    if bytes.len() as u64 > kind.limit() {
        return Err(Error::new(format!(
            "{} is larger than {}, the most istio-canary reads",
            kind.noun(),
            size(kind.limit())
        ))
        .in_file(source)
        .with_help(limit_help(kind)));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::new(format!("{} is not UTF-8 text", kind.noun())).in_file(source))?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

fn limit_help(kind: Kind) -> String {
    match kind {
        Kind::Manifest => "a real `istioctl manifest generate` prints about 1 MiB; check what the pinned binary prints".to_string(),
        Kind::Inventory => "capture only the kinds the README's inventory command names".to_string(),
        _ => format!(
            "{} is read whole into memory; real ones are a few KiB",
            kind.noun()
        ),
    }
}

/// Deserializes one YAML document after the scan has passed it.
pub fn from_str<T: DeserializeOwned>(text: &str, source: &Path) -> Result<T> {
    match scan(text, source)? {
        Scanned::Clean => serde_yaml::from_str(text).map_err(|e| yaml_error(&e, text, source)),
        Scanned::SyntaxError(err) => match serde_yaml::from_str::<T>(text) {
            Err(e) => Err(yaml_error(&e, text, source)),
            Ok(_) => Err(err),
        },
    }
}

/// Every document of a YAML stream, in order (empty documents are `Value::Null`), after the scan
/// has passed the whole text.
pub fn documents(text: &str, source: &Path) -> Result<Vec<Value>> {
    let syntax = match scan(text, source)? {
        Scanned::Clean => None,
        Scanned::SyntaxError(err) => Some(err),
    };
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        out.push(Value::deserialize(document).map_err(|e| yaml_error(&e, text, source))?);
    }
    match syntax {
        Some(err) => Err(err),
        None => Ok(out),
    }
}

/// What the scan found in a text it did not refuse.
enum Scanned {
    /// Every event was read: depth, merge keys and duplicates are checked.
    Clean,
    /// The event parser stopped at a syntax error it reports here, in a part of the text that is
    /// safe for serde_yaml (no deep nesting can follow), so serde_yaml's own message, which
    /// names more locations, may be shown instead. If serde_yaml reads the text, this is the
    /// error.
    SyntaxError(Error),
}

/// One open sequence or mapping in the scan.
enum Frame {
    Sequence,
    Mapping {
        /// The next node is a key (not a value).
        at_key: bool,
        /// Each key seen so far and where it is (line, column).
        keys: HashMap<String, (usize, usize)>,
    },
}

/// 1-based (line, column) of a marker.
fn line_col(m: &Marker) -> (usize, usize) {
    (m.line(), m.col() + 1)
}

fn located(err: Error, source: &Path, text: &str, m: &Marker) -> Error {
    let (line, col) = line_col(m);
    err.at(source, text, line, col)
}

/// The byte offset of the `chars`-th character of `text` (the parser's markers count characters).
fn byte_index(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

fn too_deep(source: &Path, text: &str, m: &Marker) -> Error {
    located(
        Error::new(format!(
            "sequences and mappings are nested deeper than {MAX_DEPTH} levels here"
        )),
        source,
        text,
        m,
    )
    .with_help(format!(
        "istio-canary reads at most {MAX_DEPTH} levels of nesting; real inputs need far fewer"
    ))
}

/// How the event scan ended, before it is turned into an error.
enum Stop {
    TooDeep(Marker),
    Refused(Error),
    Syntax {
        error: ScanError,
        /// The character index of the last event read before the error.
        last_event: usize,
    },
}

/// The linear scan: reads every event once, keeping only the open nodes and their keys.
fn scan(text: &str, source: &Path) -> Result<Scanned> {
    match scan_events(text, source) {
        Ok(()) => Ok(Scanned::Clean),
        Err(Stop::TooDeep(m)) => Err(too_deep(source, text, &m)),
        Err(Stop::Refused(err)) => Err(err),
        Err(Stop::Syntax { error, last_event }) => {
            let at = byte_index(text, error.marker().index());
            if error.info() == "recursion limit exceeded" {
                // The parser's scanner looks ahead and met its own flow-depth limit (255) before
                // the events reached MAX_DEPTH. The text up to there holds the level that
                // crossed MAX_DEPTH: point at it.
                return match scan_events(&text[..at], source) {
                    Err(Stop::TooDeep(m)) => Err(too_deep(source, text, &m)),
                    Err(Stop::Refused(err)) => Err(err),
                    _ => Err(too_deep(source, text, error.marker())),
                };
            }
            let err = located(
                Error::new(format!("invalid YAML: {}", error.info())),
                source,
                text,
                error.marker(),
            );
            // serde_yaml's message names more locations; let it speak only where the rest of
            // the text cannot nest deeper than the limit again (it is quadratic in that depth).
            let rest = &text[byte_index(text, last_event).min(at)..];
            let opens = rest.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
            if opens <= MAX_DEPTH {
                Ok(Scanned::SyntaxError(err))
            } else {
                Err(err)
            }
        }
    }
}

fn scan_events(text: &str, source: &Path) -> std::result::Result<(), Stop> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut last_event = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|error| Stop::Syntax { error, last_event })?;
        last_event = span.start.index();
        // A node that is a mapping's key: check it, and remember it.
        let is_node = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
        );
        if is_node {
            if let Some(Frame::Mapping { at_key, keys }) = stack.last_mut() {
                if *at_key {
                    check_key(&event, &span.start, keys, source, text)?;
                }
                *at_key = !*at_key;
            }
        }
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Stop::TooDeep(span.start));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Sequence
                } else {
                    Frame::Mapping {
                        at_key: true,
                        keys: HashMap::new(),
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a merge key, a key that is not a scalar, and a key the mapping already has.
fn check_key(
    event: &Event<'_>,
    at: &Marker,
    keys: &mut HashMap<String, (usize, usize)>,
    source: &Path,
    text: &str,
) -> std::result::Result<(), Stop> {
    let refuse = |err: Error| Stop::Refused(located(err, source, text, at));
    let Event::Scalar(value, style, _, tag) = event else {
        return Err(refuse(
            Error::new(
                "a mapping key must be a plain value, not a sequence, a mapping or an alias",
            )
            .with_help("write the key as a string"),
        ));
    };
    let merge_tag = tag
        .as_ref()
        .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "merge");
    if value.as_ref() == "<<" || merge_tag {
        let how = if *style == ScalarStyle::Plain || merge_tag {
            "a YAML merge key"
        } else {
            "a quoted `<<` (a merge key once written back unquoted)"
        };
        return Err(refuse(
            Error::new(format!("`<<` is {how}; merge keys are not allowed"))
                .with_help("write the merged fields out in full: istioctl and kubectl resolve merge keys, istio-canary's checks do not, so a merge could hide a field it manages"),
        ));
    }
    // The writer (`yamlout`) writes only untagged keys, and readers differ on what a tag on a
    // key means; found by the `manifest` fuzz target.
    if tag.is_some() {
        return Err(refuse(
            Error::new(format!("the key {} carries a tag", shown(value)))
                .with_help("write the key as a plain string, without `!`"),
        ));
    }
    let here = line_col(at);
    if let Some((line, col)) = keys.get(value.as_ref()) {
        return Err(refuse(
            Error::new(format!(
                "duplicate key {} in this mapping (first at line {line} column {col})",
                shown(value)
            ))
            .with_help("YAML readers disagree on which of two equal keys wins; keep one"),
        ));
    }
    keys.insert(value.to_string(), here);
    Ok(())
}

/// A serde_yaml error as a located `Error`. The first location is the one shown with `-->`;
/// any other location serde_yaml gives (`while parsing a flow sequence at line 16 column 5`)
/// stays in the message, in parentheses.
pub fn yaml_error(e: &serde_yaml::Error, text: &str, source: &Path) -> Error {
    let full = e.to_string();
    match e.location() {
        Some(loc) => {
            let at = format!(" at line {} column {}", loc.line(), loc.column());
            let message = if let Some(head) = full.strip_suffix(&at) {
                head.to_string()
            } else if let Some((head, context)) = full.split_once(&format!("{at}, ")) {
                format!("{head} ({context})")
            } else {
                full
            };
            Error::new(message).at(source, text, loc.line(), loc.column())
        }
        None => Error::new(full).in_file(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn check(text: &str) -> Result<Value> {
        from_str(text, Path::new("t.yaml"))
    }

    fn refused(text: &str) -> Error {
        match check(text) {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(e) => e,
        }
    }

    fn at(err: &Error) -> (usize, usize) {
        let loc = err.location.as_ref().unwrap();
        (loc.line, loc.column)
    }

    #[test]
    fn a_byte_order_mark_is_dropped_before_lines_are_counted() {
        let bytes = "\u{feff}a: 1\nb: [\n".as_bytes();
        let text = decode(bytes, Kind::Policy, Path::new("t.yaml")).unwrap();
        assert_eq!(text, "a: 1\nb: [\n");
        let err = refused(text);
        assert_eq!(at(&err).0, 3, "{err}");
    }

    #[test]
    fn inputs_over_their_limit_are_refused_by_size() {
        let big = vec![b' '; POLICY_LIMIT as usize + 1];
        let err = decode(&big, Kind::Policy, Path::new("p")).unwrap_err();
        assert_eq!(
            err.message,
            "the policy is larger than 1 MiB, the most istio-canary reads"
        );
        assert!(decode(&big, Kind::Spec, Path::new("p")).is_ok());
    }

    #[test]
    fn the_bounded_read_stops_after_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        assert_eq!(read_limited(&path, 10).unwrap().len(), 11);
        let err = read_whole(&path, 10, "reading").unwrap_err();
        assert_eq!(
            err.message,
            format!("{} is over its limit of 10 bytes", path.display())
        );
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_whole(&path, 10, "reading").unwrap(), b"0123456789");
    }

    fn refusal(path: &Path) -> String {
        match open_regular(path) {
            Ok(_) => panic!("{}: opened", path.display()),
            Err(e) => e.to_string(),
        }
    }

    fn mkfifo(path: &Path) {
        use rustix::fs::{mkfifoat, Mode, CWD};
        mkfifoat(CWD, path, Mode::from_raw_mode(0o600)).unwrap();
    }

    #[test]
    fn only_regular_files_are_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let at = |name: &str| tmp.path().join(name);
        mkfifo(&at("fifo"));
        let _socket = std::os::unix::net::UnixListener::bind(at("socket")).unwrap();
        std::fs::create_dir(at("dir")).unwrap();
        std::fs::write(at("file"), "x").unwrap();
        let link = |to: &str, name: &str| std::os::unix::fs::symlink(to, at(name)).unwrap();
        link("/dev/null", "to-null");
        link("file", "to-file");
        link("to-file", "to-link");
        link("gone", "dangling");
        link("fifo", "to-fifo");
        for (name, want) in [
            ("fifo", "it is a FIFO, not a regular file".to_string()),
            ("socket", "it is a socket, not a regular file".into()),
            ("dir", "it is a directory, not a regular file".into()),
            (
                "to-null",
                "it is a symbolic link to /dev/null, a character device, not a regular file".into(),
            ),
            (
                "to-fifo",
                format!(
                    "it is a symbolic link to {}, a FIFO, not a regular file",
                    at("fifo").canonicalize().unwrap().display()
                ),
            ),
            (
                "dangling",
                "it is a symbolic link to gone, which does not exist".into(),
            ),
        ] {
            assert_eq!(refusal(&at(name)), want, "{name}");
        }
        assert_eq!(
            open_regular(&at("dangling")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            open_regular(&at("missing")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            refusal(Path::new("/dev/null")),
            "it is a character device, not a regular file"
        );
        for name in ["file", "to-file", "to-link"] {
            assert_eq!(read_limited(&at(name), 10).unwrap(), b"x", "{name}");
        }
    }

    #[test]
    fn a_fifo_put_there_after_the_check_is_refused_without_blocking() {
        // The open after `refuse_unless_regular` passed, as if the file had been swapped for a
        // FIFO in between: it must neither wait for a writer nor read from it.
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        mkfifo(&fifo);
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(
                open_nonblocking(&fifo)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            );
        });
        let opened = result
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO blocked");
        assert_eq!(opened, Err("it is a FIFO, not a regular file".to_string()));
    }

    #[test]
    fn deep_nesting_is_refused_where_it_crosses_the_limit() {
        // Each pattern opens one level per repeat, except `[{a: ` which opens two.
        for (open, col) in [("[", 65), ("{a: ", 257), ("- ", 129), ("[{a: ", 161)] {
            let err = refused(&open.repeat(300_000));
            assert_eq!(
                err.message, "sequences and mappings are nested deeper than 64 levels here",
                "{open}"
            );
            assert_eq!(at(&err), (1, col), "{open}");
        }
        // `{{` is a mapping used as a key: that comes first.
        let err = refused(&"{".repeat(300_000));
        assert_eq!(at(&err), (1, 2));
        assert!(err.message.starts_with("a mapping key must be"), "{err}");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check(&ok).is_ok());
        let mut block = String::new();
        for i in 0..70 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(at(&refused(&block)), (65, 65));
    }

    #[test]
    fn merge_keys_are_refused_at_the_key() {
        let err = refused("base: &b {x: 1}\nspec:\n  values:\n    <<: *b\n");
        assert_eq!(at(&err), (4, 5));
        assert_eq!(
            err.message,
            "`<<` is a YAML merge key; merge keys are not allowed"
        );
        assert_eq!(at(&refused("a: {\"<<\": 1}\n")), (1, 5));
        assert_eq!(at(&refused("a:\n  !!merge x: 1\n")), (2, 3));
        // `<<` as a value is only a string.
        assert!(check("a: <<\n").is_ok());
    }

    #[test]
    fn tagged_keys_are_refused_at_the_key() {
        let err = refused("data:\n  ! mesh: x\n");
        assert_eq!(at(&err), (2, 3));
        assert_eq!(err.message, "the key `mesh` carries a tag");
        assert_eq!(at(&refused("a: {!!str b: 1}\n")), (1, 5));
        // A tag on a value is the writer's to refuse, with its path.
        assert!(check("a: !x b\n").is_ok());
    }

    #[test]
    fn duplicate_keys_point_at_the_duplicate() {
        let err = refused("spec:\n  istioctl:\n    \"1.14.1\": a\n    1.14.1: b\n");
        assert_eq!(at(&err), (4, 5));
        assert_eq!(
            err.message,
            "duplicate key `1.14.1` in this mapping (first at line 3 column 5)"
        );
        // The same key in different mappings is fine.
        assert!(check("a: {x: 1}\nb: {x: 1}\n- x\n").is_err()); // (invalid YAML)
        assert!(check("a: {x: 1}\nb: {x: 1}\n").is_ok());
        assert!(check("[{x: 1}, {x: 2}]\n").is_ok());
    }

    #[test]
    fn keys_must_be_scalars() {
        assert_eq!(at(&refused("a: 1\n[x]: 2\n")), (2, 1));
        assert_eq!(at(&refused("a: &k x\n*k : 2\n")), (2, 1));
    }

    #[test]
    fn every_document_of_a_stream_is_scanned() {
        let docs = documents("a: 1\n---\n---\nb: 2\n", Path::new("o")).unwrap();
        assert_eq!(docs.len(), 3);
        let err = documents("a: 1\n---\nb: 2\nb: 3\n", Path::new("o")).unwrap_err();
        assert_eq!(at(&err), (4, 1));
    }

    #[test]
    fn yaml_errors_keep_the_second_location() {
        let err = refused("a:\n  b: [x\nc: 1\n");
        assert!(
            err.message
                .contains("(while parsing a flow sequence at line 2 column 6)"),
            "{}",
            err.message
        );
        assert_eq!(at(&err).0, 3);
        // A type error has one location, shown with `-->` only.
        let err = from_str::<BTreeMap<String, u8>>("a: x\n", Path::new("t")).unwrap_err();
        assert!(!err.message.contains("line"), "{}", err.message);
    }

    #[test]
    fn after_a_syntax_error_deep_nesting_still_never_reaches_serde_yaml() {
        // The event parser stops at the `:` error; the rest holds deep nesting, so its own
        // message is shown instead of handing the text to serde_yaml.
        let text = format!("a: b: c\n{}", "[".repeat(10_000));
        let start = std::time::Instant::now();
        let err = refused(&text);
        assert!(start.elapsed().as_secs() < 2);
        assert!(err.message.starts_with("invalid YAML: "), "{}", err.message);
    }
}
