//! The command line's documentation stays true to the binaries: every long option that
//! `pop3d --help` and `pop3d-router --help` print is described in the binary's manual page
//! (scripts/man/NAME.8, in its OPTIONS section) and in the README's option list for it, and
//! neither names an option that `--help` no longer has.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

type Options = BTreeSet<String>;

/// The long options in `text`: each `--name` (a letter, then letters, digits and dashes) that
/// does not continue a longer run of dashes or a word.
fn long_options(text: &str) -> Options {
    let bytes = text.as_bytes();
    let mut found = Options::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let name_start = start + 2;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
        let mut end = name_start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'-') {
            end += 1;
        }
        if before_ok && bytes.get(name_start).is_some_and(u8::is_ascii_lowercase) {
            found.insert(text[start..end].trim_end_matches('-').to_string());
        }
        i = end.max(name_start);
    }
    found
}

/// The long options a binary's `--help` lists: the first long option of each line that
/// starts (after its indent) with a dash, as getopts lays the options out.
fn help_options(binary: &str) -> Options {
    let output = Command::new(binary)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    assert!(output.status.success(), "{binary} --help failed");
    let help = String::from_utf8_lossy(&output.stdout);
    let options: Options = help
        .lines()
        .filter(|line| line.trim_start().starts_with('-'))
        .filter_map(|line| long_options(line).into_iter().next())
        .collect();
    assert!(
        options.contains("--help") && options.len() > 2,
        "no option list found in {binary} --help:\n{help}"
    );
    options
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A manual page's text with the roff escapes that can sit inside an option name undone.
fn man_page(name: &str) -> String {
    unroff(&read(&format!("scripts/man/{name}.8")))
}

/// `\-` is a dash; `\fB`, `\fI`, `\fR`, `\fP` change the font.
fn unroff(text: &str) -> String {
    let mut text = text.replace("\\-", "-");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        text = text.replace(font, "");
    }
    text
}

/// The options a manual page describes: those in the tag line after each `.TP` of its
/// OPTIONS section.
fn man_described(page: &str) -> Options {
    let mut described = Options::new();
    let mut in_options = false;
    let mut tag_next = false;
    for line in page.lines() {
        if let Some(section) = line.strip_prefix(".SH ") {
            in_options = section.trim() == "OPTIONS";
            continue;
        }
        if !in_options {
            continue;
        }
        if line.starts_with(".TP") {
            tag_next = true;
        } else if tag_next {
            described.extend(long_options(line));
            tag_next = false;
        }
    }
    described
}

/// The README's option list that follows the line `marker`: the indented block after it.
fn readme_list(marker: &str) -> String {
    let readme = read("README.md");
    let mut lines = readme.lines().skip_while(|line| line.trim() != marker);
    assert!(lines.next().is_some(), "README.md has no line {marker:?}");
    lines
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| line.starts_with("    ") || line.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `help` has that `documented` lacks, and the other way round, as a readable failure.
fn assert_same(help: &Options, documented: &Options, binary: &str, where_: &str) {
    let missing: Vec<_> = help.difference(documented).collect();
    let stale: Vec<_> = documented.difference(help).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "{where_} and {binary} --help disagree: missing from {where_}: {missing:?}; \
         named in {where_} but not in --help: {stale:?}"
    );
}

fn check(binary: &str, name: &str, readme_marker: &str) {
    let help = help_options(binary);
    let page = man_page(name);
    assert_same(
        &help,
        &man_described(&page),
        binary,
        &format!("{name}.8 OPTIONS"),
    );
    // Anywhere else in the page, too, an option named must still exist.
    let stale: Vec<_> = long_options(&page).difference(&help).cloned().collect();
    assert!(
        stale.is_empty(),
        "{name}.8 names options {binary} --help lacks: {stale:?}"
    );
    let list = long_options(&readme_list(readme_marker));
    assert_same(
        &help,
        &list,
        binary,
        &format!("README's {readme_marker:?} list"),
    );
}

#[test]
fn pop3d_options_match_its_manual_page_and_the_readme() {
    check(env!("CARGO_BIN_EXE_pop3d"), "pop3d", "## Options");
}

#[test]
fn pop3d_router_options_match_its_manual_page_and_the_readme() {
    check(
        env!("CARGO_BIN_EXE_pop3d-router"),
        "pop3d-router",
        "**pop3d-router** options:",
    );
}

#[test]
fn long_options_are_found_in_text_and_roff() {
    let found = long_options("-l, --listen ADDR  (see --max-per-ip); a---b |---| x--y --Z");
    let want: Options = ["--listen", "--max-per-ip"].map(String::from).into();
    assert_eq!(found, want);
    let page = ".SH OPTIONS\n.TP\n.BR \\-c \", \" \\-\\-max\\-sessions \" \\fIn\\fR\"\nthe --cap\n";
    let want: Options = ["--max-sessions"].map(String::from).into();
    assert_eq!(man_described(&unroff(page)), want);
}
