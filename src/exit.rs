//! Exit codes, one table for every command (README "Exit codes").
//!
//! | code | meaning |
//! |---|---|
//! | 0  | done |
//! | 1  | failed; nothing is left changed (rolled back, or nothing was done) |
//! | 2  | bad input (arguments, configuration, unknown host); nothing changed |
//! | 3  | failed and the cluster is not back where it was: run `mha-helper recover` |
//! | 10 | MHA hooks only: done with a warning; MHA logs it and proceeds |
//!
//! For MHA, 0 and 10 let the switch go on and anything else aborts it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Failed = 1,
    BadInput = 2,
    NeedsRecover = 3,
    Proceed = 10,
}

/// Marks an error as the user's input being wrong.
#[derive(Debug)]
pub struct BadInput;

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bad input")
    }
}

/// Marks an error as leaving the cluster changed.
#[derive(Debug)]
pub struct NeedsRecover;

impl fmt::Display for NeedsRecover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("run `mha-helper recover`")
    }
}

/// Marks an error as a refusal made before anything changed, because going
/// on could have made two writable hosts (or otherwise broken a safety
/// rule). Always exit 1, even where other failures only warn (10): MHA
/// must stop.
#[derive(Debug)]
pub struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused")
    }
}

/// Whether an error is a refusal.
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>().is_some()
}

/// Wrap an error as bad input.
pub fn bad_input(e: anyhow::Error) -> anyhow::Error {
    e.context(BadInput)
}

/// The exit code for an error.
pub fn code_for(e: &anyhow::Error) -> Code {
    if e.downcast_ref::<NeedsRecover>().is_some() {
        Code::NeedsRecover
    } else if e.downcast_ref::<BadInput>().is_some() {
        Code::BadInput
    } else {
        Code::Failed
    }
}

/// The message for an error, without the marker contexts.
pub fn message(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .filter(|m| m != "bad input" && m != "run `mha-helper recover`" && m != "refused")
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn markers_decide_the_code_and_vanish_from_the_message() {
        let e = bad_input(anyhow!("app1.cnf:3: unknown parameter 'x'"));
        assert_eq!(code_for(&e), Code::BadInput);
        assert_eq!(message(&e), "app1.cnf:3: unknown parameter 'x'");
        let e = anyhow!("undo failed")
            .context(NeedsRecover)
            .context("step x on db1 failed");
        assert_eq!(code_for(&e), Code::NeedsRecover);
        assert_eq!(message(&e), "step x on db1 failed: undo failed");
        assert_eq!(code_for(&anyhow!("plain")), Code::Failed);
    }
}
