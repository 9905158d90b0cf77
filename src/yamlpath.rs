//! Finding the line and column of a field in YAML source text, for error messages.
//!
//! Owns: a small indentation-based walker over block-style YAML (with flow lists on one line)
//! that maps a path such as `spec.waves[1].namespaces[0]` to a 1-based (line, column).
//! Must not: parse values or be used for anything but pointing at input in errors; when it cannot
//! find a field it says so (`None`) and the caller points at the nearest parent instead.

/// One step of a path into a YAML document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

struct Line<'t> {
    number: usize,
    indent: usize,
    text: &'t str,
}

/// Where the walk stands: the line of the current node, its indent, and (for a node that starts
/// on the line of a list dash or a key) the column where its inline content starts.
#[derive(Clone, Copy)]
struct Cursor {
    line: usize,
    indent: usize,
    inline_col: Option<usize>,
}

/// The 1-based (line, column) of `path` in `text`, or the deepest parent found on the way.
/// Returns `None` only when not even the first segment is found.
pub fn locate(text: &str, path: &[Seg<'_>]) -> Option<(usize, usize)> {
    let lines: Vec<Line<'_>> = text
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                return None;
            }
            Some(Line {
                number: i + 1,
                indent: raw.len() - trimmed.len(),
                text: raw,
            })
        })
        .collect();
    let mut cursor: Option<Cursor> = None;
    let mut found = None;
    for seg in path {
        let next = match seg {
            Seg::Key(key) => find_key(&lines, cursor, key),
            Seg::Index(i) => find_index(&lines, cursor, *i),
        };
        match next {
            Some(c) => {
                found = Some((lines[c.line].number, c.inline_col.unwrap_or(c.indent) + 1));
                cursor = Some(c);
            }
            None => break,
        }
    }
    found
}

fn key_matches(content: &str, key: &str) -> bool {
    for quoted in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
        if let Some(rest) = content.strip_prefix(&quoted) {
            if rest.starts_with(':') {
                return true;
            }
        }
    }
    false
}

/// The lines that belong to the node at `cursor` (its children), as indexes into `lines`.
fn children(lines: &[Line<'_>], cursor: Option<Cursor>) -> std::ops::Range<usize> {
    match cursor {
        None => 0..lines.len(),
        Some(c) => {
            let start = c.line + 1;
            let mut end = start;
            while end < lines.len() {
                let l = &lines[end];
                let is_same_indent_dash =
                    l.indent == c.indent && l.text.trim_start().starts_with("- ");
                if l.indent > c.indent || (is_same_indent_dash && c.inline_col.is_none()) {
                    end += 1;
                } else {
                    break;
                }
            }
            start..end
        }
    }
}

fn find_key(lines: &[Line<'_>], cursor: Option<Cursor>, key: &str) -> Option<Cursor> {
    if let Some(c) = cursor {
        if let Some(col) = c.inline_col {
            if key_matches(&lines[c.line].text[col..], key) {
                return Some(Cursor {
                    line: c.line,
                    indent: col,
                    inline_col: None,
                });
            }
        }
    }
    let range = children(lines, cursor);
    let child_indent = match cursor.and_then(|c| c.inline_col) {
        Some(col) => col,
        None => lines.get(range.start)?.indent,
    };
    for i in range {
        let l = &lines[i];
        if l.indent == child_indent && key_matches(&l.text[l.indent..], key) {
            return Some(Cursor {
                line: i,
                indent: l.indent,
                inline_col: None,
            });
        }
    }
    None
}

fn find_index(lines: &[Line<'_>], cursor: Option<Cursor>, index: usize) -> Option<Cursor> {
    // A flow list on the key's own line: `namespaces: [a, b]`.
    if let Some(c) = cursor {
        let text = lines[c.line].text;
        if let Some(open) = text.find(": [").map(|i| i + 2) {
            let mut col = open + 1;
            for (n, item) in text[open + 1..].split(',').enumerate() {
                let lead = item.len() - item.trim_start().len();
                if n == index {
                    return Some(Cursor {
                        line: c.line,
                        indent: c.indent,
                        inline_col: Some(col + lead),
                    });
                }
                col += item.len() + 1;
            }
            return None;
        }
    }
    let range = children(lines, cursor);
    let mut n = 0;
    let mut dash_indent = None;
    for i in range {
        let l = &lines[i];
        if !l.text[l.indent..].starts_with("- ") {
            continue;
        }
        match dash_indent {
            None => dash_indent = Some(l.indent),
            Some(d) if d != l.indent => continue,
            Some(_) => {}
        }
        if n == index {
            return Some(Cursor {
                line: i,
                indent: l.indent,
                inline_col: Some(l.indent + 2),
            });
        }
        n += 1;
    }
    None
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
    fn falls_back_to_the_deepest_parent() {
        assert_eq!(locate(TEXT, &[Key("spec"), Key("nope")]), Some((2, 1)));
        assert_eq!(locate(TEXT, &[Key("nope")]), None);
    }
}
