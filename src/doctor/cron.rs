//! Cron jobs that run PHP from ROOT's path.

use crate::layout::Layout;

use super::check::Check;

/// Cron jobs that run PHP from ROOT's path run half-written code while a
/// deploy rewrites ROOT (see [`crate::cron`]).
pub(super) fn check_cron(layout: &Layout) -> Vec<Check> {
    let found = crate::cron::find(&layout.root());
    if found.is_empty() {
        return vec![Check::pass(format!(
            "no cron job runs PHP from {} directly",
            layout.root().display()
        ))];
    }
    let (root, link) = (layout.root(), layout.link());
    found
        .into_iter()
        .map(|f| {
            Check::fail(
                false,
                format!(
                    "{}: `{}` runs PHP from ROOT, which is half-written while a deploy runs",
                    f.source, f.line
                ),
                format!(
                    "address the site through the link, which always points at a complete version: \
                     replace {} with {} in that line",
                    root.display(),
                    link.display()
                ),
            )
        })
        .collect()
}
