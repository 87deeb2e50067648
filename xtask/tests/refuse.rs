//! `cargo xtask verify` never passes with less exploration: a variable that would shorten it
//! makes verify refuse to start (before building or running anything).

use std::process::Command;

fn verify_with(var: &str, value: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["verify", "--filter", "no-such-model-or-mutant"])
        .env(var, value)
        .output()
        .expect("xtask runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn loom_max_permutations_is_refused() {
    let (code, stderr) = verify_with("LOOM_MAX_PERMUTATIONS", "1");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("verify refuses to run"), "{stderr}");
    assert!(stderr.contains("LOOM_MAX_PERMUTATIONS=1"), "{stderr}");
    assert!(
        !stderr.contains("building"),
        "refused before building: {stderr}"
    );
}

#[test]
fn every_shortening_variable_is_refused() {
    for var in [
        "LOOM_MAX_DURATION",
        "LOOM_MAX_BRANCHES",
        "LOOM_MAX_PREEMPTIONS",
        "LOOM_CHECKPOINT_FILE",
        "LOOM_CHECKPOINT_INTERVAL",
        "SHUTTLE_RANDOM_SEED",
        "REFWATCH_PREEMPTION_BOUND",
        "REFWATCH_SHUTTLE_SEQUENTIAL",
        "REFWATCH_SHUTTLE_REPLAY",
    ] {
        let (code, stderr) = verify_with(var, "1");
        assert_eq!(code, Some(2), "{var}: {stderr}");
        assert!(stderr.contains(&format!("{var}=1")), "{var}: {stderr}");
    }
}
