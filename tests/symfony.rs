//! A real Symfony 5.4 application (Debian's `php-symfony-framework-bundle`
//! and `php-symfony-twig-bundle`, the app in `fixtures/symfony-app`) deployed
//! 20 times under load through real nginx + php-fpm (OPcache on,
//! `validate_timestamps=0`) with the `symfony` preset's cache rebuild
//! (`rm -rf var/cache/*`, then `cache:warmup`: `cache:clear` keeps the old
//! cache, compiled Twig templates included, when the container was written in
//! the second the command started; this test caught it, see docs/presets.md).
//!
//! Symfony's compiled container names its own tree relative to its files
//! (`kernel.project_dir` is `dirname(__DIR__, 4)`), so a snapshot that is a
//! copy of ROOT serves its own templates: no hook in the snapshot is needed,
//! and the test shows it: 0 failed, 0 mixed, 0 stale.
//!
//! Meanwhile a writer creates, appends to and deletes files through the app
//! in `public/uploads` (shared by the preset), reading each write back with
//! the next request. As root, php-fpm runs as www-data and owns the uploads;
//! the deploys run once as root and once as www-data (the site user).

use crate::support::apps::{App, RunAs, Site};
use crate::support::*;

static SYMFONY: App = App {
    fixture: "symfony-app",
    controller: "src/Controller/VersionController.php",
    template: "templates/version.html.twig",
    template_line: |v| format!("{{{{ controller }}}} T{v}\n"),
    framework: "/usr/share/php/Symfony/Bundle/TwigBundle/autoload.php",
    packages: "php-symfony-framework-bundle php-symfony-twig-bundle",
    fpm_ini: "extension=mbstring\nextension=ctype\nextension=intl\n\
              zend_extension=opcache.so\nopcache.enable=1\nopcache.validate_timestamps=0\n\
              display_errors=Off\nlog_errors=On\ninclude_path=\".:/usr/share/php\"\n",
    // The preset's hooks minus composer (no network here).
    yaml: "preset: symfony\ndrain: auto\ndrain_max: 10s\nhooks:\n  after_checkout:\n    - rm -rf var/cache/*\n    - php bin/console cache:warmup\n",
    places: &[("uploads", "public/uploads")],
    given: &["var", "public/uploads"],
    // What the app writes at run time (the hooks, run by rootswap's user,
    // write var/cache).
    writable: &["public/uploads", "var/log"],
};

#[test]
fn symfony_serves_one_version_through_twenty_deploys() {
    let _heavy = heavy();
    let Some(site) = SYMFONY.serve("") else {
        return;
    };
    let run = site.deploy_under_load(20);
    site.assert_clean(
        &run,
        "symfony, the preset's hooks, rootswap as the test's user",
    );
    assert_snapshots_name_no_root(&site);
}

/// The same with rootswap (and so the hooks) running as the site user
/// www-data, as the packaged systemd unit runs it.
#[test]
fn symfony_deployed_by_the_site_user_serves_one_version_through_twenty_deploys() {
    let _heavy = heavy();
    let Some(site) = SYMFONY.serve_as("", RunAs::SiteUser) else {
        return;
    };
    let run = site.deploy_under_load(20);
    site.assert_clean(&run, "symfony, the preset's hooks, rootswap as www-data");
    assert_snapshots_name_no_root(&site);
}

/// The snapshots' compiled containers name no absolute path of ROOT.
fn assert_snapshots_name_no_root(site: &Site) {
    let root_dir = format!("{}/", site.w.root().display());
    for snap in site.w.snapshots() {
        let cache = site.w.webroot.join(&snap).join("var/cache/prod");
        for entry in walk(&cache) {
            if entry.extension().is_some_and(|e| e == "php")
                && !entry.starts_with(cache.join("twig"))
            {
                assert!(
                    !read(&entry).contains(&root_dir),
                    "{} names ROOT",
                    entry.display()
                );
            }
        }
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
