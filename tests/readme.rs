//! The README as a newcomer reads it: the first screen gives the two commands before anything
//! else, the table of contents lists every section in order with a link that resolves, every
//! `#anchor` link of the README names a heading, and one table says which applier takes which
//! output.

mod common;

use common::manifest_dir;

fn readme() -> String {
    std::fs::read_to_string(manifest_dir().join("README.md")).expect("read README.md")
}

/// The README's lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut in_code = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code
        })
        .collect()
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces made hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The `##` and `###` headings, in order: (level, text).
fn headings(text: &str) -> Vec<(usize, String)> {
    prose(text)
        .into_iter()
        .filter_map(|l| {
            let level = l.chars().take_while(|c| *c == '#').count();
            let rest = l.get(level..)?.strip_prefix(' ')?;
            (level == 2 || level == 3).then(|| (level, rest.to_string()))
        })
        .collect()
}

#[test]
fn the_first_screen_gives_the_two_commands_before_the_contents() {
    let text = readme();
    let contents = text.find("**Contents**").expect("a table of contents");
    let first_screen: Vec<&str> = text.lines().take(40).collect();
    let first_screen = first_screen.join("\n");
    for command in [
        "cargo run -- compile --policy fixtures/example/canary.yaml --out bundles",
        "cargo test",
    ] {
        let at = text.find(command).expect(command);
        assert!(at < contents, "{command} comes after the contents");
        assert!(
            first_screen.contains(command),
            "{command} is not on the first screen"
        );
    }
}

#[test]
fn the_contents_list_every_section_in_order_with_links_that_resolve() {
    let text = readme();
    let entries: Vec<(usize, String, String)> = prose(&text)
        .into_iter()
        .skip_while(|l| *l != "**Contents**")
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let level = if l.starts_with("  - ") { 3 } else { 2 };
            let (title, anchor) = l
                .trim_start()
                .strip_prefix("- [")
                .and_then(|l| l.strip_suffix(')'))
                .and_then(|l| l.split_once("](#"))
                .unwrap_or_else(|| panic!("not a contents entry: {l}"));
            (level, title.to_string(), anchor.to_string())
        })
        .collect();
    let expected: Vec<(usize, String, String)> = headings(&text)
        .into_iter()
        .map(|(level, h)| {
            let anchor = slug(&h);
            (level, h, anchor)
        })
        .collect();
    assert!(expected.len() > 20, "{expected:?}");
    assert_eq!(entries, expected);
}

#[test]
fn every_anchor_link_names_a_heading() {
    let text = readme();
    let anchors: Vec<String> = prose(&text)
        .into_iter()
        .filter_map(|l| {
            let level = l.chars().take_while(|c| *c == '#').count();
            (level >= 1).then(|| slug(&l[level..]))
        })
        .collect();
    let mut links = 0;
    for line in prose(&text) {
        let mut rest = line;
        while let Some(at) = rest.find("](#") {
            rest = &rest[at + 3..];
            let end = rest.find(')').unwrap_or(rest.len());
            let anchor = &rest[..end];
            assert!(
                anchors.iter().any(|a| a == anchor),
                "no heading for #{anchor}"
            );
            links += 1;
        }
    }
    assert!(links > 30, "{links} links");
}

#[test]
fn one_table_says_which_applier_takes_which_output() {
    let text = readme();
    let applier_tables: Vec<&str> = prose(&text)
        .into_iter()
        .filter(|l| l.starts_with('|') && l.contains("Argo CD") && l.contains("Flux"))
        .filter(|l| l.contains("output") || l.contains("applier"))
        .collect();
    assert_eq!(applier_tables.len(), 1, "{applier_tables:#?}");
}
