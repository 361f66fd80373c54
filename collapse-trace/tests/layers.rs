//! The crate's layers, checked on its source: every `crate::` path of a top-level module
//! points down the layers of docs/architecture.md, never up or sideways, so the module graph
//! has no cycles. Test code (`#[cfg(test)]` modules) is left out.

use std::{collections::BTreeMap, fs, path::Path};

/// What each top-level module may use of the crate.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("values", &[]),
    ("web", &["values"]),
    ("kernel", &["model"]),
    ("session", &["kernel", "model"]),
    ("capture", &["model"]),
    ("export", &["model"]),
    ("tui", &["model"]),
    ("provoke", &["model"]),
    (
        "cmd",
        &[
            "capture", "export", "kernel", "model", "provoke", "session", "tui", "values", "web",
        ],
    ),
    ("cli", &["cmd", "kernel", "provoke", "values"]),
];

/// Top-level module -> the crate modules its non-test code names.
fn uses(src: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let deps = out.entry(top.clone()).or_default();
            for dep in crate_paths(code) {
                if dep != top && !deps.contains(&dep) {
                    deps.push(dep);
                }
            }
        }
    }
    out
}

/// The first segment of every `crate::` path in `code`, including `use crate::{a, b::c}`
/// groups; comments are skipped.
fn crate_paths(code: &str) -> Vec<String> {
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: track brace depth.
            let mut depth = 0;
            let mut word = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_start = true,
                    c if depth == 0 && at_start && (c.is_alphanumeric() || c == '_') => {
                        word.push(c)
                    }
                    _ => {
                        if !word.is_empty() {
                            out.push(std::mem::take(&mut word));
                            at_start = false;
                        }
                    }
                }
            }
            if !word.is_empty() {
                out.push(word);
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(word);
        }
    }
    out
}

#[test]
fn modules_use_only_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = uses(&src);
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        let allowed = ALLOWED
            .iter()
            .find(|(m, _)| m == module)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("module {module} has no place in the layers: add it"));
        for d in deps {
            if !allowed.contains(&d.as_str()) {
                wrong.push(format!("{module} uses {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "layering broken: {wrong:?}\ngraph: {graph:?}"
    );
}

#[test]
fn the_parser_finds_grouped_and_plain_paths() {
    let found = crate_paths(
        "use crate::{\n    kernel::{a, b},\n    model::x,\n};\nfn f() { crate::export::y(); }\n// crate::tui\n",
    );
    assert_eq!(found, ["kernel", "model", "export"]);
}
