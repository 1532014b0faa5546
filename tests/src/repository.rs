//! Rules about the repository itself, checked on every test run so that
//! they cannot rot: the code map in ARCHITECTURE.md names only paths that
//! exist, and the crates depend on each other only in the allowed
//! directions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cargo_metadata::{DependencyKind, MetadataCommand};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_path_buf()
}

/// The repository paths a markdown text names in backticks (outside
/// fenced blocks): spans ending in a source or config file extension, and
/// spans with a `/` whose first part is a top-level directory. A path may
/// be followed by `::item` (`gateway/src/proxy/stages.rs::decide`).
///
/// A code map item names its folder first and then the files in it
/// (`- \`gateway/src/proxy/\`: \`stages.rs\` ...`), so a name that does
/// not start at the root is read inside the folder that opens its list
/// item or paragraph; with no such folder it is read from the root, where
/// it will not exist.
fn paths_named(text: &str, root: &Path) -> Vec<PathBuf> {
    const EXTENSIONS: [&str; 9] = [
        ".rs", ".toml", ".md", ".py", ".mjs", ".yml", ".yaml", ".json", ".js",
    ];
    let mut named = Vec::new();
    let mut in_fence = false;
    let mut folder = PathBuf::new();
    let mut opening = true;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if line.trim_start().starts_with("- ") || line.trim().is_empty() {
            folder = PathBuf::new();
            opening = true;
        }
        for span in line.split('`').skip(1).step_by(2) {
            let first_in_item = std::mem::replace(&mut opening, false);
            let path = span.split("::").next().unwrap_or_default().trim();
            let plain = !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
            if !plain || path.starts_with('/') || path.starts_with('.') {
                continue;
            }
            let top = path.split('/').next().unwrap_or_default();
            let from_root = path.contains('/') && root.join(top).is_dir();
            let is_file = EXTENSIONS.iter().any(|ext| path.ends_with(ext));
            if from_root {
                if first_in_item && path.ends_with('/') {
                    folder = PathBuf::from(path);
                }
                named.push(PathBuf::from(path));
            } else if is_file || (path.ends_with('/') && !folder.as_os_str().is_empty()) {
                named.push(folder.join(path));
            }
        }
    }
    named
}

#[test]
fn every_path_architecture_md_names_exists() {
    let root = repository_root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let named = paths_named(&text, &root);
    // The code map names well over a hundred paths; finding few means the
    // reader above broke, not that the map is clean.
    assert!(named.len() > 100, "only {} paths found", named.len());
    let missing: BTreeSet<&PathBuf> = named
        .iter()
        .filter(|path| !root.join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist (name whole paths from the repository root): {missing:#?}"
    );
}

#[test]
fn the_path_reader_resolves_names_in_the_folder_named_before_them() {
    let root = repository_root();
    let text = "- `gateway/src/proxy/`: `stages.rs` (the path), `login/`\n\
        - `stages.rs`, `tests/run`, `gateway/src/edge/path.rs::normalize` and \
        `proptests.rs`; `/readyz`, `30/min`, `X-Forwarded-For`\n```\n`policy.toml`\n```\n";
    let named: Vec<String> = paths_named(text, &root)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        named,
        [
            "gateway/src/proxy/",
            "gateway/src/proxy/stages.rs",
            "gateway/src/proxy/login/",
            "stages.rs",
            "tests/run",
            "gateway/src/edge/path.rs",
            "proptests.rs",
        ]
    );
}

/// Normal and build dependencies on other workspace members, by package.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let metadata = MetadataCommand::new()
        .manifest_path(repository_root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata");
    let members: BTreeSet<String> = metadata
        .workspace_packages()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    metadata
        .workspace_packages()
        .iter()
        .map(|package| {
            let uses = package
                .dependencies
                .iter()
                .filter(|d| d.kind != DependencyKind::Development && members.contains(&d.name))
                .map(|d| d.name.clone())
                .collect();
            (package.name.to_string(), uses)
        })
        .collect()
}

/// Everything `package` depends on, directly or through other members.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, package: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut next = vec![package.to_owned()];
    while let Some(current) = next.pop() {
        for dependency in graph.get(&current).into_iter().flatten() {
            if seen.insert(dependency.clone()) {
                next.push(dependency.clone());
            }
        }
    }
    seen
}

#[test]
fn crates_depend_only_in_the_allowed_directions() {
    const BINARIES: [&str; 2] = ["gatehouse-gateway", "gatehouse-scheduler"];
    let graph = workspace_dependencies();
    for name in BINARIES
        .iter()
        .chain(&["gatehouse-policy", "gatehouse-audit", "gatehouse-tests"])
    {
        assert!(graph.contains_key(*name), "no workspace crate {name}");
    }
    let mut broken = Vec::new();
    for package in graph.keys() {
        let reaches = reachable(&graph, package);
        // The gateway and the scheduler share code only through libraries.
        for binary in BINARIES {
            if reaches.contains(binary) {
                broken.push(format!("{package} depends on the binary crate {binary}"));
            }
        }
        // The policy crate turns the file into types and uses no other crate of ours.
        if package == "gatehouse-policy" && !reaches.is_empty() {
            broken.push(format!("gatehouse-policy depends on {reaches:?}"));
        }
        // The test harness is for tests only.
        if reaches.contains("gatehouse-tests") {
            broken.push(format!(
                "{package} depends on gatehouse-tests outside dev-dependencies"
            ));
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}
