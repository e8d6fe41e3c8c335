//! The top-level modules of `src/` form a hierarchy: no module uses a module that
//! uses it back, directly or through others (`crate::` paths count, test modules
//! too), and the leaves use no other module of the crate but each other as listed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules and the files of each.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            collect(&path, &mut files);
            out.insert(name, files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            out.insert(name, vec![path]);
        }
    }
    out
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Module -> the modules its files name with `crate::`.
fn edges(mods: &BTreeMap<String, Vec<PathBuf>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (name, files) in mods {
        let mut uses = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(file).expect("read");
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if mods.contains_key(&ident) && ident != *name {
                    uses.insert(ident);
                }
            }
        }
        out.insert(name.clone(), uses);
    }
    out
}

/// A cycle through `from`, if there is one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in edges.get(&at).into_iter().flatten() {
            if next == from {
                let mut found = path.clone();
                found.push(from.to_owned());
                return Some(found);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn the_modules_form_a_hierarchy() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    assert!(mods.contains_key("pipeline") && mods.contains_key("upstream"), "{:?}", mods.keys());
    let edges = edges(&mods);
    for name in mods.keys() {
        if let Some(found) = cycle(&edges, name) {
            panic!("a module circle: {}", found.join(" -> "));
        }
    }
    // The leaves, and what they may use.
    let leaves: &[(&str, &[&str])] =
        &[("protocol", &[]), ("reply", &["protocol"]), ("error", &["protocol"]), ("config", &[])];
    for (leaf, allowed) in leaves {
        let uses: Vec<&String> = edges[*leaf].iter().filter(|m| !allowed.contains(&m.as_str())).collect();
        assert!(uses.is_empty(), "{leaf} is a leaf but uses {uses:?}");
    }
    // The bridge calls down, never up.
    for above in ["pipeline", "router", "session", "server", "gateway"] {
        assert!(!edges["bridge"].contains(above), "bridge uses {above}");
        assert!(!edges["upstream"].contains(above) && !edges["upstream"].contains("bridge"), "upstream uses {above}");
    }
}

#[test]
fn a_circle_is_found() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.insert("a".into(), ["b".to_owned()].into());
    edges.insert("b".into(), ["c".to_owned()].into());
    edges.insert("c".into(), ["a".to_owned()].into());
    assert_eq!(cycle(&edges, "a"), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    edges.insert("c".into(), BTreeSet::new());
    assert_eq!(cycle(&edges, "a"), None);
}
