//! The container build: what `Dockerfile` copies must be enough for cargo to load the
//! workspace (it refuses to when a member's directory is missing).

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).expect(name)
}

#[test]
fn the_dockerfile_copies_every_workspace_member() {
    let manifest = read("Cargo.toml");
    let dockerfile = read("Dockerfile");
    let members = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = ["))
        .expect("a workspace members list in Cargo.toml");
    let members: Vec<&str> = members.trim_end_matches(']').split(',').map(|m| m.trim().trim_matches('"')).collect();
    assert!(members.contains(&"."), "{members:?}");
    for member in members.iter().filter(|m| **m != "." && !m.is_empty()) {
        let copied = dockerfile.lines().any(|l| l.trim().starts_with(&format!("COPY {member} ")));
        assert!(copied, "Dockerfile does not copy workspace member {member}");
    }
    for needed in ["COPY Cargo.toml Cargo.lock", "COPY src ", "COPY config "] {
        assert!(dockerfile.contains(needed), "Dockerfile lacks `{needed}`");
    }
}
