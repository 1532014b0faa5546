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
/// spans with a `/` whose first part is a top-level directory. Both must
/// exist, so a bare `stages.rs` fails: the map names whole paths. A path
/// may be followed by `::item` (`gateway/src/proxy/stages.rs::decide`).
fn paths_named(text: &str, root: &Path) -> Vec<String> {
    const EXTENSIONS: [&str; 9] = [
        ".rs", ".toml", ".md", ".py", ".mjs", ".yml", ".yaml", ".json", ".js",
    ];
    let mut in_fence = false;
    let mut prose = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let mut named = Vec::new();
    for span in prose.split('`').skip(1).step_by(2) {
        let path = span.split("::").next().unwrap_or_default().trim();
        let plain = !path.is_empty()
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
        if !plain || path.starts_with('/') || path.starts_with('.') {
            continue;
        }
        let top = path.split('/').next().unwrap_or_default();
        let in_a_directory = path.contains('/') && root.join(top).is_dir();
        if in_a_directory || EXTENSIONS.iter().any(|ext| path.ends_with(ext)) {
            named.push(path.to_owned());
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
    let missing: BTreeSet<&String> = named
        .iter()
        .filter(|path| !root.join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist (name whole paths from the repository root): {missing:#?}"
    );
}

#[test]
fn the_path_reader_finds_whole_paths_and_refuses_bare_names() {
    let root = repository_root();
    let text = "`gateway/src/proxy/stages.rs::Gateway::decide`, `stages.rs`, \
        `tests/run`, `/readyz`, `30/min`, `X-Forwarded-For`\n```\n`policy.toml`\n```\n";
    assert_eq!(
        paths_named(text, &root),
        ["gateway/src/proxy/stages.rs", "stages.rs", "tests/run"]
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
    for (package, _) in &graph {
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
