//! `istio-canary completions SHELL`: a script for bash, zsh and fish that names every command
//! `--help` lists and their flags; the bash one is sourced into bash and asked to complete
//! commands, flags and values, as a user's TAB does. (zsh and fish are not run: the scripts are
//! clap_complete's, checked here for what they name.)

mod common;

use std::process::Command;

use common::{fixtures, run, snapshot_settings};

/// The commands `istio-canary --help` lists.
fn commands() -> Vec<String> {
    let help = run(&fixtures(), &["--help"]);
    assert_eq!(help.code, 0);
    let listed: Vec<String> = help
        .stdout
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(listed.len() >= 5, "{}", help.stdout);
    listed
}

#[test]
fn each_shell_gets_a_script_naming_every_command_and_flag() {
    let commands = commands();
    for shell in ["bash", "zsh", "fish"] {
        let r = run(&fixtures(), &["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{shell}");
        assert!(r.stdout.len() > 500, "{shell}: {}", r.stdout);
        for command in &commands {
            assert!(r.stdout.contains(command.as_str()), "{shell}: no {command}");
        }
        for flag in ["policy", "check", "istioctl-timeout", "promote", "format"] {
            assert!(r.stdout.contains(flag), "{shell}: no --{flag}");
        }
    }
}

/// What bash's completion offers for `words` (the last one being completed), with the script
/// of `istio-canary completions bash` sourced.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = run(&fixtures(), &["completions", "bash"]).stdout;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "{script}\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}\n\
         _istio__canary istio-canary '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = quoted.join(" "),
        cur = words[cword],
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_flags_and_values() {
    // The script registers itself for the binary's name.
    let script = run(&fixtures(), &["completions", "bash"]).stdout;
    assert!(
        script.contains(
            "complete -F _istio__canary -o nosort -o bashdefault -o default istio-canary"
        ),
        "{script}"
    );
    assert_eq!(
        bash_complete(&["istio-canary", "com"]),
        ["compile", "completions"]
    );
    assert_eq!(
        bash_complete(&["istio-canary", "compile", "--po"]),
        ["--policy", "--policies"]
    );
    assert_eq!(
        bash_complete(&["istio-canary", "compile", "--cache"]),
        ["--cache-dir"]
    );
    assert_eq!(
        bash_complete(&["istio-canary", "compile", "--check", "--istioctl-t"]),
        ["--istioctl-timeout"]
    );
    assert_eq!(
        bash_complete(&["istio-canary", "plan", "--format", ""]),
        ["text", "json"]
    );
    let shells = bash_complete(&["istio-canary", "completions", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|s| s == shell), "{shells:?}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_listing_the_shells() {
    let r = run(&fixtures(), &["completions", "tcsh"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stdout, "");
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("completions-error-unknown-shell", r.stderr));
}
