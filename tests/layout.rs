//! The shape of `src/`, checked on every run (no lab needed): no import
//! circle between files, and no function longer than 100 lines (one
//! function per phase; STYLE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `ssh/keeper.rs` -> ["ssh", "keeper"]; `ssh/mod.rs` -> ["ssh"].
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its unit tests, comments and string
/// literals (where a path is only text).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push('\n');
    }
    out
}

/// The words of each `a::b::c` path in `code`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if word(chars[i]) && (i == 0 || !(word(chars[i - 1]) || chars[i - 1] == ':')) {
            let mut parts = Vec::new();
            let mut j = i;
            loop {
                let s = j;
                while j < chars.len() && word(chars[j]) {
                    j += 1;
                }
                parts.push(chars[s..j].iter().collect::<String>());
                if j + 2 < chars.len()
                    && chars[j] == ':'
                    && chars[j + 1] == ':'
                    && word(chars[j + 2])
                {
                    j += 2;
                } else {
                    break;
                }
            }
            if parts.len() > 1 {
                out.push(parts);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Which module files each module file refers to (`crate::`, `super::`,
/// `self::` and child-module paths), tests excluded.
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mods: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let longest = |parts: &[String]| -> Option<Vec<String>> {
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].to_vec())
            .find(|p| mods.contains_key(p))
    };
    let mut g = BTreeMap::new();
    for (me, file) in &mods {
        let text = code(&std::fs::read_to_string(file).unwrap());
        let mut refs = BTreeSet::new();
        for p in paths(&text) {
            let target: Vec<String> = match p[0].as_str() {
                "crate" => p[1..].to_vec(),
                "super" => {
                    let mut base = me[..me.len().saturating_sub(1)].to_vec();
                    base.extend(p[1..].iter().cloned());
                    base
                }
                "self" => {
                    let mut base = me.clone();
                    base.extend(p[1..].iter().cloned());
                    base
                }
                first => {
                    let mut child = me.clone();
                    child.push(first.to_string());
                    if !mods.contains_key(&child) {
                        continue;
                    }
                    child.extend(p[1..].iter().cloned());
                    child
                }
            };
            if let Some(t) = longest(&target) {
                if &t != me && !t.is_empty() {
                    refs.insert(t);
                }
            }
        }
        g.insert(me.clone(), refs);
    }
    g
}

/// The strongly connected components with more than one module.
fn circles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    let names: Vec<&Vec<String>> = g.keys().collect();
    let reach = |from: &Vec<String>| -> BTreeSet<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for n in g.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let all: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        names.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in &names {
        let mut comp: Vec<String> = names
            .iter()
            .filter(|m| *m != n && all[*n].contains(**m) && all[*m].contains(*n))
            .map(|m| m.join("::"))
            .collect();
        if comp.is_empty() {
            continue;
        }
        comp.push(n.join("::"));
        comp.sort();
        if !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

#[test]
fn no_two_files_of_src_import_each_other_even_through_others() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let c = circles(&graph(&src));
    assert!(c.is_empty(), "import circles in src/: {c:#?}");
}

#[test]
fn the_circle_finder_finds_a_circle_through_a_third_file() {
    let mut g = BTreeMap::new();
    let m = |s: &str| vec![s.to_string()];
    g.insert(m("a"), [m("b")].into());
    g.insert(m("b"), [m("c")].into());
    g.insert(m("c"), [m("a")].into());
    g.insert(m("d"), [m("a")].into());
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    assert_eq!(
        paths("use crate::ops::read_only::{split, READ};\nsuper::x::y(); \"crate::no::path\""),
        vec![
            vec!["crate", "ops", "read_only"],
            vec!["super", "x", "y"],
            vec!["crate", "no", "path"]
        ]
    );
    assert_eq!(code("a \"crate::no\" b // crate::c"), "a  b \n");
}

/// Functions of `src/` longer than `max` lines: (file:line name, lines).
fn long_functions(src: &Path, max: usize) -> Vec<(String, usize)> {
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i];
            let t = l.trim_start();
            let indent = l.len() - t.len();
            let t = t
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("const ")
                .trim_start_matches("unsafe ")
                .trim_start_matches("extern \"C\" ");
            if let Some(rest) = t.strip_prefix("fn ") {
                // the body ends at the first line that is `}` at its indent
                let end = (i + 1..lines.len())
                    .find(|j| lines[*j].len() == indent + 1 && lines[*j].ends_with('}'))
                    .unwrap_or(i);
                if !l.trim_end().ends_with(';') && end - i > max {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    out.push((format!("{}:{} {name}", f.display(), i + 1), end - i));
                }
            }
            i += 1;
        }
    }
    out
}

#[test]
fn no_function_of_src_is_longer_than_100_lines() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let long = long_functions(&src, 100);
    assert!(long.is_empty(), "functions over 100 lines: {long:#?}");
}
