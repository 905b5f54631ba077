//! Why the service looks at the branch ([`Check`]).

use std::fmt;

use crate::deploy::Trigger;

/// Why the service looks at the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The service just started.
    Startup,
    /// An `auto_deploy` tick.
    Tick,
    /// The local repository's refs changed.
    RefsChanged,
    /// The refs changed while a deploy ran: look again now it is over.
    AfterDeploy,
    /// A reloaded configuration follows another repository or branch, or turned polling on.
    Reload,
    /// A Git host's push webhook: "look now", decided like a tick.
    Webhook,
}

impl Check {
    /// What a deploy this check starts is recorded as.
    pub fn trigger(self) -> Trigger {
        match self {
            Check::Webhook => Trigger::Webhook,
            _ => Trigger::Schedule,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Startup => "startup check",
            Check::Tick => "auto-deploy tick",
            Check::RefsChanged => "refs change",
            Check::AfterDeploy => "re-check after deploy",
            Check::Reload => "check after reload",
            Check::Webhook => "webhook push",
        })
    }
}
