//! Finding the line and column of a field in YAML source text, for error messages.
//!
//! Owns: mapping a path such as `spec.waves[1].namespaces[0]` to a 1-based (line, column), by
//! walking the events of an event parser (`saphyr-parser`) that marks where each node starts, so
//! block YAML, flow YAML and JSON-style documents are all located the same way.
//! Must not: parse values or be used for anything but pointing at input in errors; when it cannot
//! find a field it says so (`None`) and the caller points at the nearest parent instead.

use saphyr_parser::{Event, Parser, Span};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The deepest nesting walked; deeper texts are refused by `yamlin` before anything locates in
/// them, and this keeps `locate` bounded on any text.
const MAX_WALK_DEPTH: usize = 256;

/// The 1-based (line, column) of `path` in the first document of `text`, or the deepest parent
/// found on the way. A key is located at the key, a list item at the item. Returns `None` only
/// when not even the first segment is found.
pub fn locate(text: &str, path: &[Seg<'_>]) -> Option<(usize, usize)> {
    let mut events = Parser::new_from_str(text).filter_map(Result::ok);
    // Up to the first node of the first document.
    let mut node = loop {
        match events.next()? {
            (Event::StreamStart | Event::DocumentStart(_), _) => continue,
            (event, _) => break event,
        }
    };
    let mut found = None;
    for seg in path {
        let hit = match (seg, &node) {
            (Seg::Key(key), Event::MappingStart(..)) => find_key(&mut events, key),
            (Seg::Index(index), Event::SequenceStart(..)) => find_index(&mut events, *index),
            _ => None,
        };
        let Some((at, next)) = hit else { break };
        found = Some((at.start.line(), at.start.col() + 1));
        node = next;
    }
    found
}

/// In a mapping whose start was just read: the span of `key` and the first event of its value.
fn find_key<'a>(
    events: &mut impl Iterator<Item = (Event<'a>, Span)>,
    key: &str,
) -> Option<(Span, Event<'a>)> {
    loop {
        let (event, span) = events.next()?;
        match &event {
            Event::MappingEnd => return None,
            Event::Scalar(value, ..) if value.as_ref() == key => {
                let (value, _) = events.next()?;
                return Some((span, value));
            }
            _ => {
                skip_rest(events, &event)?;
                let (value, _) = events.next()?;
                skip_rest(events, &value)?;
            }
        }
    }
}

/// In a sequence whose start was just read: the span and first event of item `index`.
fn find_index<'a>(
    events: &mut impl Iterator<Item = (Event<'a>, Span)>,
    index: usize,
) -> Option<(Span, Event<'a>)> {
    let mut n = 0;
    loop {
        let (event, span) = events.next()?;
        if matches!(event, Event::SequenceEnd) {
            return None;
        }
        if n == index {
            return Some((span, event));
        }
        skip_rest(events, &event)?;
        n += 1;
    }
}

/// Skips the rest of a node whose first event is `first`.
fn skip_rest<'a>(
    events: &mut impl Iterator<Item = (Event<'a>, Span)>,
    first: &Event<'a>,
) -> Option<()> {
    if !matches!(first, Event::MappingStart(..) | Event::SequenceStart(..)) {
        return Some(());
    }
    let mut depth = 1usize;
    while depth > 0 {
        match events.next()?.0 {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                depth += 1;
                if depth > MAX_WALK_DEPTH {
                    return None;
                }
            }
            Event::MappingEnd | Event::SequenceEnd => depth -= 1,
            _ => {}
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Seg::{Index, Key};

    const TEXT: &str = "\
apiVersion: x
spec:
  to:
    version: 1.14.1
  waves:
  - name: canary
    namespaces: [bookinfo, shop]
  - name: rest
    namespaces:
      - shop
      - payments
";

    #[test]
    fn finds_nested_keys() {
        assert_eq!(
            locate(TEXT, &[Key("spec"), Key("to"), Key("version")]),
            Some((4, 5))
        );
    }

    #[test]
    fn finds_list_items_in_block_and_flow_style() {
        let p = [Key("spec"), Key("waves"), Index(1), Key("name")];
        assert_eq!(locate(TEXT, &p), Some((8, 5)));
        let p = [
            Key("spec"),
            Key("waves"),
            Index(0),
            Key("namespaces"),
            Index(1),
        ];
        assert_eq!(locate(TEXT, &p), Some((7, 28)));
        let p = [
            Key("spec"),
            Key("waves"),
            Index(1),
            Key("namespaces"),
            Index(0),
        ];
        assert_eq!(locate(TEXT, &p), Some((10, 9)));
    }

    #[test]
    fn finds_fields_in_json_style_documents() {
        let json = "{\"apiVersion\": \"x\", \"spec\": {\"to\": {\"version\": 1.14},\n  \"waves\": [{\"name\": \"a\", \"namespaces\": [\"b\", \"C\"]}]}}";
        assert_eq!(
            locate(json, &[Key("spec"), Key("to"), Key("version")]),
            Some((1, 37))
        );
        let p = [
            Key("spec"),
            Key("waves"),
            Index(0),
            Key("namespaces"),
            Index(1),
        ];
        assert_eq!(locate(json, &p), Some((2, 47)));
    }

    #[test]
    fn falls_back_to_the_deepest_parent() {
        assert_eq!(locate(TEXT, &[Key("spec"), Key("nope")]), Some((2, 1)));
        assert_eq!(locate(TEXT, &[Key("nope")]), None);
    }
}
