//! The policy parser, on arbitrary text.
//!
//! It must never panic, and every refusal must say where: at least one
//! problem, each with a line and column inside the text and a span that
//! lies within it, and both renderings (the log line and the miette report
//! `check` prints) must work.
#![no_main]

use std::path::Path;

use gatehouse_policy::parse_with_env;
use libfuzzer_sys::fuzz_target;

/// Relative `*_file` secrets resolve against this directory, which does not
/// exist, so the target reads no files unless the input names an absolute path.
const POLICY_PATH: &str = "/nonexistent/gatehouse-fuzz/policy.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // One variable is set, so `${GATEHOUSE_FUZZ_KEY}` resolves and others do not.
    let env = |var: &str| (var == "GATEHOUSE_FUZZ_KEY").then(|| "k".repeat(32));
    let Err(err) = parse_with_env(Path::new(POLICY_PATH), text, &env) else {
        return;
    };
    let problems = err.problems();
    assert!(!problems.is_empty(), "refused without a problem: {err}");
    let lines = text.split('\n').count();
    for problem in problems {
        assert!(
            problem.line >= 1 && problem.column >= 1 && problem.line <= lines,
            "{}:{} is outside the text: {}",
            problem.line,
            problem.column,
            problem.message
        );
        if let Some(span) = &problem.span {
            assert!(
                span.start <= span.end && span.end <= text.len(),
                "span {span:?} is outside the text ({} bytes): {}",
                text.len(),
                problem.message
            );
        }
    }
    let _ = err.to_string();
    let _ = format!("{:?}", err.report());
});
