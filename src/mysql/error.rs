//! Why a script failed, as the rest of mha-helper asks it: which kind of
//! failure, at which statement, and whether the server is down.

use std::fmt;

/// Why a script failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// SSH could not run the command at all.
    Transport,
    /// The client program is not on the host.
    ClientMissing,
    /// The client could not log in or reach the server (the client's
    /// error code: 2002/2003 mean nothing listens, 1045 a refused login).
    Connect { code: u32 },
    /// A statement failed; the script stopped there.
    Statement { code: u32 },
    /// The script ran past its timeout. `gone`: its session was ended on
    /// the server and is proven gone (nothing of it can still run).
    Timeout { gone: bool },
}

#[derive(Debug, Clone)]
pub struct Error {
    pub host: String,
    pub kind: ErrorKind,
    /// The label of the failing statement, when known.
    pub step: Option<String>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "{}: {} failed: {}", self.host, step, self.message),
            None => write!(f, "{}: {}", self.host, self.message),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The server is not running (or not listening) there: nothing can be
    /// written through it.
    pub fn server_down(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Connect {
                code: 2002 | 2003 | 2005 | 2013
            }
        )
    }
}

/// The script's own error in `e`'s chain, if there is one.
pub fn script_error(e: &anyhow::Error) -> Option<&Error> {
    e.chain().find_map(|c| c.downcast_ref::<Error>())
}

/// Whether `e` says the server does not answer at all.
pub fn server_down(e: &anyhow::Error) -> bool {
    script_error(e).is_some_and(Error::server_down)
}

/// Whether `e` is the failure of the statement labelled `step`.
pub fn failed_at(e: &anyhow::Error, step: &str) -> bool {
    script_error(e).is_some_and(|m| m.step.as_deref() == Some(step))
}
