//! The README as a newcomer reads it: the first screen gives the two commands before anything
//! else, the table of contents lists every section in order with a link that resolves, every
//! `#anchor` link of the README names a heading, one table says which applier takes which
//! output, every command its code blocks show runs, and every flag they show exists.

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

/// The README's fenced code blocks, each as its lines (a line ending in `\` joined with the
/// next).
fn code_blocks(text: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(Vec::new()),
            }
            continue;
        }
        if let Some(block) = current.as_mut() {
            match line.strip_suffix('\\') {
                Some(start) => pending.push_str(start),
                None => {
                    pending.push_str(line);
                    block.push(std::mem::take(&mut pending));
                }
            }
        }
    }
    blocks
}

/// The subcommands `istio-canary --help` lists.
fn subcommands() -> Vec<String> {
    let help = common::run(&manifest_dir(), &["--help"]).stdout;
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The `istio-canary SUB …` command in a code line (up to a pipe, redirect, `)` or comment),
/// as words, or None. `cargo run --` counts as `istio-canary`.
fn command_in(line: &str, subcommands: &[String]) -> Option<Vec<String>> {
    let line = line.replace("cargo run --", "istio-canary");
    let start = line.find("istio-canary ")?;
    let rest = &line[start..];
    let end = rest.find(['>', ')', '#', '<']).unwrap_or(rest.len());
    let end = rest[..end].find(" | ").unwrap_or(end);
    let words: Vec<String> = rest[..end].split_whitespace().map(str::to_string).collect();
    subcommands
        .iter()
        .any(|s| words.get(1) == Some(s))
        .then_some(words)
}

#[test]
fn every_flag_the_readme_shows_is_one_its_command_takes() {
    let subcommands = subcommands();
    assert!(subcommands.len() >= 8, "{subcommands:?}");
    let readme = readme();
    let mut shown: Vec<(String, String)> = Vec::new();
    for block in code_blocks(&readme) {
        // A synopsis line names the command; the `  --flag  meaning` lines under it are its.
        let mut synopsis: Option<String> = None;
        for line in &block {
            if let Some(words) = command_in(line, &subcommands) {
                // A command with subcommands of its own (`cache prune`) is named by both words.
                let nested = words.len() > 2
                    && common::run(&manifest_dir(), &[&words[1], "--help"])
                        .stdout
                        .contains("\nCommands:\n");
                let command = if nested {
                    format!("{} {}", words[1], words[2])
                } else {
                    words[1].clone()
                };
                synopsis = Some(command.clone());
                let flags = words
                    .iter()
                    .map(|w| w.trim_matches(|c| c == '[' || c == ']'))
                    .filter(|w| w.starts_with("--"));
                for flag in flags {
                    let flag = flag.split('=').next().unwrap_or(flag);
                    shown.push((command.clone(), flag.to_string()));
                }
            } else if let (Some(sub), Some(flag)) = (
                &synopsis,
                line.split_whitespace()
                    .next()
                    .filter(|w| line.starts_with("  --") && w.starts_with("--")),
            ) {
                shown.push((sub.clone(), flag.to_string()));
            }
        }
    }
    for sub in &subcommands {
        assert!(
            readme.contains(&format!("istio-canary {sub}")),
            "the README never shows `istio-canary {sub}`"
        );
    }
    assert!(shown.len() > 20, "{shown:?}");
    for (sub, flag) in shown {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.push("--help");
        let help = common::run(&manifest_dir(), &args).stdout;
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "the README shows `istio-canary {sub} {flag}`, which `{sub} --help` does not list"
        );
    }
}

/// Every concrete `istio-canary` command of the README's code blocks (placeholders such as
/// `FILE` or `[--out DIR]` aside) runs and exits 0, in a copy of the fixtures with the example's
/// policy and spec at the top (`init` in a directory of its own, since it never replaces a
/// policy), in the README's order: the compile of the first screen comes first.
#[test]
fn every_command_line_of_the_readme_runs() {
    let subcommands = subcommands();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let fixtures = common::fixtures();
    let copy = root.join("fixtures");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&fixtures)
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let example = std::fs::read_to_string(copy.join("example/canary.yaml")).unwrap();
    std::fs::write(
        root.join("canary.yaml"),
        example.replace("../istioctl/", "fixtures/istioctl/"),
    )
    .unwrap();
    std::fs::copy(copy.join("example/iop.yaml"), root.join("iop.yaml")).unwrap();
    // The fleet examples' layout: one directory per cluster policy under `clusters/`.
    let cluster = root.join("clusters/prod");
    std::fs::create_dir_all(&cluster).unwrap();
    std::fs::write(
        cluster.join("canary.yaml"),
        example.replace("../istioctl/", "../../fixtures/istioctl/"),
    )
    .unwrap();
    std::fs::copy(copy.join("example/iop.yaml"), cluster.join("iop.yaml")).unwrap();
    for name in ["a", "b"] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("canary.yaml"),
            example
                .replace("../istioctl/", "../fixtures/istioctl/")
                .replace("name: bookinfo-cluster", &format!("name: cluster-{name}")),
        )
        .unwrap();
        std::fs::copy(copy.join("example/iop.yaml"), dir.join("iop.yaml")).unwrap();
    }
    let init_dir = root.join("init");
    std::fs::create_dir(&init_dir).unwrap();
    std::fs::copy(copy.join("example/iop.yaml"), init_dir.join("iop.yaml")).unwrap();

    let placeholder = |w: &String| {
        w.contains(['[', '$', '…']) || (w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase()))
    };
    let mut ran = Vec::new();
    for block in code_blocks(&readme()) {
        for line in &block {
            let Some(words) = command_in(line, &subcommands) else {
                continue;
            };
            if words.iter().any(placeholder) || words.iter().any(|w| w.ends_with("NN")) {
                continue;
            }
            let cwd = if words[1] == "init" {
                &init_dir
            } else {
                &root.to_path_buf()
            };
            let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
            let r = common::run(cwd, &args);
            assert_eq!(
                r.code,
                0,
                "README: `{}` exits {}:\n{}",
                words.join(" "),
                r.code,
                r.stderr
            );
            ran.push(words[1..].join(" "));
        }
    }
    for expected in ["compile", "show", "init", "schema", "lint", "completions"] {
        assert!(
            ran.iter().any(|c| c.split(' ').next() == Some(expected)),
            "no README command of `{expected}` ran: {ran:?}"
        );
    }
}
