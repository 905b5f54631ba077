//! The deploy dashboard at `/` of the trigger listener (`trigger.listen`).
//!
//! - `GET /`: the page (server-rendered; the view is in it when the reader
//!   may see it without the token, i.e. `trigger.public_status: true`);
//! - `GET /dashboard/view`: the view alone (live version, chart, history,
//!   snapshots), which the page fetches with the token and after each deploy;
//! - `GET /dashboard/events`: the running deploy, live ([`crate::serve::events`]);
//! - `POST /dashboard/deploy` (`{"ref": …}` optional), `/dashboard/rollback`,
//!   `/dashboard/keep` (`{"snapshot": …, "label": …}`), `/dashboard/remove`
//!   (`{"snapshot": …}`): the actions.
//!
//! Reading needs the trigger token unless `trigger.public_status` is true;
//! actions always need it. The token travels in a header
//! (`Authorization: Bearer …` or `X-Rootswap-Token`), never in a cookie or a
//! form field, and is compared in constant time. A browser cannot send that
//! header cross-origin without a CORS preflight, which this server never
//! grants; on top of that a POST whose `Origin` (or `Sec-Fetch-Site`) says
//! it comes from another site is refused before anything else.
//!
//! The routes are in the listener's one router (`serve::http`); here are
//! `pages` (the page, the view, the live events, the assets), `actions`
//! (deploy, rollback, keep, remove), `reply` (their answers: no-store,
//! security headers) and [`render`] (the HTML) with `links` (commit and
//! compare links of known Git hosts).

mod actions;
mod links;
mod pages;
pub mod render;
mod reply;

pub(super) use actions::{deploy, keep, remove, rollback};
pub(super) use pages::{css, events, js, page, view};
pub use render::first_render;
