//! The README's promises about the source tree, for every crate of the
//! workspace (the members in the root Cargo.toml): no module depends on one
//! that depends on it (judged from `crate::` paths, and `super::` paths that
//! lead to the crate root, outside comments and tests, between the top-level
//! modules of the crate), and no source file is over 500 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `src/` directory of every workspace member.
fn crate_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find_map(|l| l.strip_prefix("members = ["))
        .expect("a [workspace] members list in Cargo.toml");
    let dirs: Vec<PathBuf> = members
        .trim_end_matches(']')
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| root.join(m).join("src"))
        .collect();
    assert!(dirs.len() >= 3, "members: {dirs:?}");
    dirs
}

fn src_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    sources(src, &mut files);
    assert!(!files.is_empty(), "no source files under {}", src.display());
    files
}

/// The top-level module a file belongs to (`src/io/copy.rs`: `io`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Whether `super::` in `file` names the crate root: in `src/x.rs` and in
/// `src/x/mod.rs`.
fn super_is_root(src: &Path, file: &Path) -> bool {
    let depth = file.strip_prefix(src).unwrap().components().count();
    depth == 1 || (depth == 2 && file.file_name().is_some_and(|n| n == "mod.rs"))
}

/// The modules a file's code (not its comments, not its tests) names.
fn uses(text: &str, super_is_root: bool) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut prefixes = vec!["crate::"];
    if super_is_root {
        prefixes.push("super::");
    }
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        for prefix in &prefixes {
            for (at, _) in line.match_indices(prefix) {
                let rest = &line[at + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "super" {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// The module circles of the crate whose sources are in `src`, and how
/// many top-level modules it has.
fn circles(src: &Path) -> (BTreeSet<String>, usize) {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &src_files(src) {
        let module = module_of(src, file);
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        let named = uses(&text, super_is_root(src, file));
        deps.extend(named.into_iter().filter(|d| *d != module));
    }
    let mut circles = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    circles.insert(format!("{} -> {start}", path.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    (circles, graph.len())
}

#[test]
fn no_module_depends_on_one_that_depends_on_it() {
    let mut found = BTreeMap::new();
    let mut modules = 0;
    for src in crate_sources() {
        let (circles, n) = circles(&src);
        modules += n;
        if !circles.is_empty() {
            found.insert(src.display().to_string(), circles);
        }
    }
    assert!(modules > 20, "only {modules} modules found");
    assert!(found.is_empty(), "module circles:\n{found:#?}");
}

#[test]
fn the_checker_sees_a_circle_through_super() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use super::b::X;\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), "pub fn f() { crate::a::g() }\n").unwrap();
    let (circles, n) = circles(dir.path());
    assert_eq!(n, 2);
    assert!(circles.contains("a -> b -> a"), "{circles:?}");
}

#[test]
fn no_source_file_is_over_500_lines() {
    let long: Vec<String> = crate_sources()
        .iter()
        .flat_map(|src| src_files(src))
        .filter_map(|f| {
            let n = std::fs::read_to_string(&f).unwrap().lines().count();
            (n > 500).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over 500 lines: {long:?}");
}
