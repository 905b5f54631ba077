//! One check's result: passed or not, whether a failure causes downtime or
//! stale code, what was found and how to fix it.

/// One check's result.
#[derive(Debug, Clone)]
pub struct Check {
    /// Passed.
    pub ok: bool,
    /// A failure here causes downtime or stale code (sets the exit code).
    pub fatal: bool,
    /// What was found.
    pub what: String,
    /// How to fix it (failures only).
    pub fix: Option<String>,
}

impl Check {
    pub(super) fn pass(what: impl Into<String>) -> Check {
        Check {
            ok: true,
            fatal: false,
            what: what.into(),
            fix: None,
        }
    }
    pub(super) fn fail(fatal: bool, what: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            ok: false,
            fatal,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}
