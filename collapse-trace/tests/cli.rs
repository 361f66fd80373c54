//! What a user of the command line gets without touching the kernel: completion scripts that
//! parse in each shell, manual pages that render and name every command, a `--version` naming
//! the commit and the eBPF object, `cargo xtask install`'s layout, and a README whose set-up
//! commands come first and whose flags exist.
//!
//! Needs bash, zsh, fish, groff and man (`cargo xtask test` installs them); fails without.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

const BIN: &str = env!("CARGO_BIN_EXE_collapse-trace");

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("collapse-trace has a parent directory")
        .to_owned()
}

/// Runs `cmd`, requires success, returns its output.
fn ok(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is it installed? `cargo xtask test` installs it)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `collapse-trace ARGS`'s stdout.
fn collapse_trace(args: &[&str]) -> String {
    String::from_utf8(ok(Command::new(BIN).args(args)).stdout).expect("UTF-8 output")
}

/// A fresh empty directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = root()
        .join("target/test-cli")
        .join(format!("{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// The commands `collapse-trace --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let help = collapse_trace(&["--help"]);
    let list: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    for expected in [
        "top",
        "stat",
        "record",
        "report",
        "serve",
        "doctor",
        "provoke",
        "completions",
        "man",
    ] {
        assert!(
            list.iter().any(|s| s == expected),
            "--help lists no `{expected}`: {list:?}"
        );
    }
    list
}

/// The flags (`--long`, `-s`) that `collapse-trace SUB --help` documents.
fn documented_flags(sub: &str) -> BTreeSet<String> {
    let help = collapse_trace(&[sub, "--help"]);
    let mut flags = BTreeSet::new();
    for line in help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
    {
        // "-p, --pid <PID>  ..." or "--json" or "-v, --verbose..."
        let head = line.split("  ").next().unwrap_or_default();
        for token in head.split([',', ' ']) {
            let flag = token.trim_end_matches("...");
            if flag.starts_with('-') {
                flags.insert(flag.to_owned());
            }
        }
    }
    flags
}

#[test]
fn completions_parse_in_each_shell() {
    let dir = scratch("completions");
    for (shell, check) in [
        ("bash", &["-n"][..]),
        ("zsh", &["-n"][..]),
        ("fish", &["--no-execute"][..]),
    ] {
        let script = collapse_trace(&["completions", shell]);
        for sub in subcommands() {
            assert!(
                script.contains(&sub),
                "the {shell} completions do not name `{sub}`"
            );
        }
        let path = dir.join(format!("collapse-trace.{shell}"));
        std::fs::write(&path, &script).unwrap();
        let out = ok(Command::new(shell).args(check).arg(&path));
        assert!(
            out.stderr.is_empty(),
            "{shell} warned: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Only the three shells are offered.
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// Renders a roff page with groff, every warning on; fails on any diagnostic. Returns the text.
fn render(page: &Path) -> String {
    let out = ok(Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-rLL=100n"])
        .arg(page));
    assert!(
        out.stderr.is_empty(),
        "groff warned on {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // man -l renders it the way users see it.
    let man = ok(Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"));
    assert!(
        man.stderr.is_empty(),
        "man -l warned on {}: {}",
        page.display(),
        String::from_utf8_lossy(&man.stderr)
    );
    String::from_utf8_lossy(&man.stdout).into_owned()
}

#[test]
fn man_pages_render_and_name_every_command() {
    let dir = scratch("man");
    let main = dir.join("stdout.1");
    std::fs::write(&main, collapse_trace(&["man"])).unwrap();
    let text = render(&main);
    for sub in subcommands() {
        assert!(
            text.contains(&format!("collapse-trace-{sub}(1)")),
            "collapse-trace(1) does not name `{sub}`:\n{text}"
        );
    }
    for section in [
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "EXIT STATUS",
        "SEE ALSO",
    ] {
        assert!(
            text.contains(section),
            "collapse-trace(1) has no {section} section:\n{text}"
        );
    }

    let pages = dir.join("pages");
    collapse_trace(&["man", "--dir", pages.to_str().unwrap()]);
    let main_file = std::fs::read_to_string(pages.join("collapse-trace.1")).unwrap();
    assert_eq!(
        main_file,
        std::fs::read_to_string(&main).unwrap(),
        "`man` and `man --dir` differ"
    );
    for sub in subcommands() {
        let page = pages.join(format!("collapse-trace-{sub}.1"));
        assert!(page.is_file(), "no {}", page.display());
        let text = render(&page);
        for flag in documented_flags(&sub)
            .iter()
            .filter(|f| f.starts_with("--") && *f != "--help")
        {
            assert!(
                text.contains(flag.as_str()),
                "collapse-trace-{sub}(1) lacks {flag}:\n{text}"
            );
        }
    }
}

#[test]
fn version_names_the_commit_and_the_ebpf_object() {
    let version = collapse_trace(&["--version"]);
    let commit = Command::new("git")
        .arg("-C")
        .arg(root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let commit = std::env::var("COLLAPSE_TRACE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or(commit)
        .unwrap_or_else(|| "unknown".to_owned());
    let expected = format!(
        "collapse-trace {} (commit {commit}, eBPF object fnv1a64 ",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        version.starts_with(&expected),
        "--version is {version:?}, expected it to start with {expected:?}"
    );
    let hash = &version[expected.len()..];
    assert!(
        hash.len() > 16
            && hash[..16].chars().all(|c| c.is_ascii_hexdigit())
            && hash[16..].starts_with(", rustc "),
        "no object hash and rustc in {version:?}"
    );
    assert_eq!(collapse_trace(&["-V"]), version, "-V and --version differ");
}

#[test]
fn xtask_install_lays_out_the_files() {
    let dest = scratch("install");
    let out = ok(Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["xtask", "install", "--prefix", "/usr", "--destdir"])
        .arg(&dest)
        .arg("--binary")
        .arg(BIN));
    let usr = dest.join("usr");
    let mut expected = vec![
        "bin/collapse-trace".to_owned(),
        "share/man/man1/collapse-trace.1".to_owned(),
        "share/bash-completion/completions/collapse-trace".to_owned(),
        "share/zsh/site-functions/_collapse-trace".to_owned(),
        "share/fish/vendor_completions.d/collapse-trace.fish".to_owned(),
        "lib/systemd/system/collapse-trace.service".to_owned(),
        "share/doc/collapse-trace/README.md".to_owned(),
        "share/doc/collapse-trace/docs/json-schema.md".to_owned(),
    ];
    expected.extend(
        subcommands()
            .iter()
            .map(|s| format!("share/man/man1/collapse-trace-{s}.1")),
    );
    for file in &expected {
        assert!(
            usr.join(file).is_file(),
            "no {file} under {}; install said:\n{}",
            usr.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |f: &str| std::fs::metadata(usr.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("bin/collapse-trace"), 0o755);
    assert_eq!(mode("share/man/man1/collapse-trace.1"), 0o644);
    assert_eq!(
        std::fs::read(usr.join("bin/collapse-trace")).unwrap(),
        std::fs::read(BIN).unwrap(),
        "the installed binary is not the one given"
    );
    let bash =
        std::fs::read_to_string(usr.join("share/bash-completion/completions/collapse-trace"))
            .unwrap();
    assert_eq!(bash, collapse_trace(&["completions", "bash"]));
    let unit =
        std::fs::read_to_string(usr.join("lib/systemd/system/collapse-trace.service")).unwrap();
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/collapse-trace serve ")),
        "the unit's ExecStart does not name the prefix:\n{unit}"
    );
    // Nothing outside DESTDIR/PREFIX, nothing left over.
    let top: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["usr"], "install wrote outside DESTDIR/PREFIX");
    let leftovers: Vec<String> = walk(&usr)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The README's fenced code blocks, in order.
fn code_blocks(readme: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in readme.lines() {
        if line.starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(Vec::new()),
            }
        } else if let Some(block) = &mut current {
            block.push(line);
        }
    }
    blocks
}

#[test]
fn readme_starts_with_the_two_set_up_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let first = code_blocks(&readme)
        .into_iter()
        .next()
        .expect("the README has a code block");
    let commands: Vec<&str> = first
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        commands,
        ["cargo xtask run -- top --demo", "cargo xtask test"],
        "the README's first code block must be the two set-up commands"
    );
    // CI runs the second one, exactly.
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "cargo xtask test"),
        ".ci/run does not run `cargo xtask test`"
    );
}

/// Every `collapse-trace SUB ...` invocation in the README: (SUB, the rest of it), from code
/// spans and code-block lines (comments cut).
fn readme_invocations(readme: &str, subs: &[String]) -> Vec<(String, String)> {
    let mut snippets: Vec<String> = Vec::new();
    for block in code_blocks(readme) {
        snippets.extend(
            block
                .iter()
                .map(|l| l.split(" #").next().unwrap_or_default().to_owned()),
        );
    }
    let mut in_block = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            snippets.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    let mut found = Vec::new();
    for snippet in snippets {
        let snippet = snippet.replace("\\|", "|");
        for prefix in ["collapse-trace ", "cargo xtask run -- "] {
            let mut rest = snippet.as_str();
            while let Some(i) = rest.find(prefix) {
                rest = &rest[i + prefix.len()..];
                let sub = rest.split_whitespace().next().unwrap_or_default();
                if subs.iter().any(|s| s == sub) {
                    let end = rest.find(prefix).unwrap_or(rest.len());
                    found.push((sub.to_owned(), rest[sub.len()..end].to_owned()));
                }
            }
        }
    }
    found
}

#[test]
fn readme_flags_exist() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let subs = subcommands();
    let invocations = readme_invocations(&readme, &subs);
    for sub in [
        "top",
        "stat",
        "record",
        "report",
        "serve",
        "provoke",
        "completions",
        "man",
    ] {
        assert!(
            invocations.iter().any(|(s, _)| s == sub),
            "the README shows no `collapse-trace {sub}`"
        );
    }
    let mut checked = 0;
    for (sub, rest) in &invocations {
        let documented = documented_flags(sub);
        for word in rest.split(|c: char| c.is_whitespace() || "[]|()".contains(c)) {
            let flag = word.split('=').next().unwrap_or_default();
            let is_flag = flag.starts_with("--") && flag.len() > 2
                || flag.len() == 2 && flag.starts_with('-');
            if is_flag {
                assert!(
                    documented.contains(flag),
                    "the README shows `collapse-trace {sub} ... {flag}`, which `collapse-trace {sub} --help` does not document ({documented:?})"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} flags found in the README");

    // The options the README lists for every command that attaches exist in each of them.
    let heading = "Options of every command that attaches (`top`, `stat`, `record`, `serve`):";
    let list: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != heading)
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(list.len() >= 5, "no option list after {heading:?}");
    let shared: BTreeSet<&str> = list
        .iter()
        .flat_map(|l| l.split('`').skip(1).step_by(2))
        .flat_map(|span| span.split([' ', ',']))
        .filter(|w| w.starts_with("--"))
        .collect();
    assert!(shared.len() >= 5, "too few options in {list:?}");
    for sub in ["top", "stat", "record", "serve"] {
        let documented = documented_flags(sub);
        for flag in &shared {
            assert!(
                documented.contains(*flag),
                "`collapse-trace {sub} --help` does not document {flag}"
            );
        }
    }
}
