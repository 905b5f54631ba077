//! A real Laravel 8 application (Debian's `php-laravel-framework`, the app in
//! `fixtures/laravel-app`) deployed 20 times under load through real nginx +
//! php-fpm (OPcache on, `validate_timestamps=0`) with the `laravel` preset's
//! production caches (`config:cache`, `route:cache`, `view:cache`).
//!
//! `config:cache` bakes absolute paths into `bootstrap/cache/config.php`. A
//! snapshot whose caches still named ROOT would render ROOT's new template
//! from the old controller (`C6 T7`, mixed) while the checkout rewrites ROOT,
//! and old and new code would write one compiled-view file (empty pages).
//! The preset's `hooks.in_snapshot` rebuilds the caches inside the snapshot
//! before it serves. The control turns them off and shows the test sees the
//! damage.
//!
//! Meanwhile a writer creates, appends to and deletes files through the app
//! in `storage/app/public` (shared by the preset, as production sites keep
//! uploads), reading each write back with the next request. (A writer this
//! fast on a copied-back directory meets the window docs/flow.md measures:
//! `tests/dokuwiki.rs` and `tests/uploads.rs` cover the copy-back.)
//! As root, php-fpm runs as www-data and owns `storage/`'s user content; the
//! deploys run once as root and once as www-data (the site user).

use crate::support::apps::{App, RunAs, Site};
use crate::support::*;

static LARAVEL: App = App {
    fixture: "laravel-app",
    controller: "app/Http/Controllers/VersionController.php",
    template: "resources/views/version.blade.php",
    template_line: |v| format!("{{{{ $controller }}}} T{v}\n"),
    framework: "/usr/share/php/Illuminate/autoload.php",
    packages: "php-laravel-framework",
    // php-fpm reads only this: the extensions Laravel needs, Debian's
    // include_path for the framework, OPcache as production runs it.
    fpm_ini: "extension=mbstring\nextension=ctype\nextension=tokenizer\nextension=fileinfo\n\
              zend_extension=opcache.so\nopcache.enable=1\nopcache.validate_timestamps=0\n\
              display_errors=Off\nlog_errors=On\ninclude_path=\".:/usr/share/php\"\n",
    // The preset's hooks minus composer and migrate (no network, no database
    // here): the three production caches, as the preset runs them.
    yaml: "preset: laravel\ndrain: auto\ndrain_max: 10s\nhooks:\n  after_checkout:\n    - php artisan config:cache\n    \
           - php artisan route:cache\n    - sleep 1\n    - php artisan view:cache\n",
    places: &[("public", "storage/app/public")],
    given: &["storage", "bootstrap/cache"],
    // What the app writes at run time (the hooks, run by rootswap's user,
    // write the caches: bootstrap/cache, storage/framework).
    writable: &["storage/app", "storage/logs", "storage/framework/sessions"],
};

#[test]
fn laravel_with_production_caches_serves_one_version_through_twenty_deploys() {
    let _heavy = heavy();
    let Some(site) = LARAVEL.serve("") else {
        return;
    };
    let run = site.deploy_under_load(20);
    site.assert_clean(
        &run,
        "laravel, the preset's hooks, rootswap as the test's user",
    );
    assert_caches_name_their_tree(&site);
}

/// The same with rootswap (and so the hooks) running as the site user
/// www-data, as the packaged systemd unit runs it.
#[test]
fn laravel_deployed_by_the_site_user_serves_one_version_through_twenty_deploys() {
    let _heavy = heavy();
    let Some(site) = LARAVEL.serve_as("", RunAs::SiteUser) else {
        return;
    };
    let run = site.deploy_under_load(20);
    site.assert_clean(&run, "laravel, the preset's hooks, rootswap as www-data");
    assert_caches_name_their_tree(&site);
}

/// Each tree's caches name that tree: ROOT's name ROOT, each kept
/// snapshot's name the snapshot (it served with them).
fn assert_caches_name_their_tree(site: &Site) {
    let root = site.w.root();
    let root_dir = format!("{}/", root.display());
    let config = read(&root.join("bootstrap/cache/config.php"));
    assert!(config.contains(&root_dir), "ROOT's config cache names ROOT");
    let snapshots = site.w.snapshots();
    assert!(!snapshots.is_empty());
    for snap in snapshots {
        let dir = site.w.webroot.join(&snap);
        let cached = read(&dir.join("bootstrap/cache/config.php"));
        assert!(
            !cached.contains(&root_dir),
            "{snap}'s config cache names ROOT"
        );
        assert!(
            cached.contains(&format!("{}/", dir.display())),
            "{snap}'s config cache names itself"
        );
    }
}

/// The control: the same app and hooks with `hooks.in_snapshot` emptied.
/// The snapshot's config cache still names ROOT, so the old code renders
/// ROOT's new templates while a deploy runs: the visitors see mixed (or
/// empty) pages. A test that could not see them would prove nothing above.
#[test]
fn without_the_snapshot_hooks_visitors_see_mixed_versions() {
    let _heavy = heavy();
    let Some(site) = LARAVEL.serve("  in_snapshot: []\n") else {
        return;
    };
    let seen = site.deploy_under_load(10).seen;
    seen.print("laravel, control without in_snapshot");
    assert!(
        !seen.mixed.is_empty() || !seen.failed.is_empty(),
        "without in_snapshot the snapshot renders ROOT's templates; the visitors saw nothing: {seen:?}"
    );
}
