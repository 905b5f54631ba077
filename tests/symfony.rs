//! A real Symfony 5.4 application (Debian's `php-symfony-framework-bundle`
//! and `php-symfony-twig-bundle`, the app in `fixtures/symfony-app`) deployed
//! 20 times under load through real nginx + php-fpm (OPcache on,
//! `validate_timestamps=0`) with the `symfony` preset's `cache:clear`.
//!
//! Symfony's compiled container names its own tree relative to its files
//! (`kernel.project_dir` is `dirname(__DIR__, 4)`), so a snapshot that is a
//! copy of ROOT serves its own templates: no hook in the snapshot is needed,
//! and the test shows it: 0 failed, 0 mixed, 0 stale.

mod common;
mod sites_support;

use common::*;
use sites_support::apps::App;

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
    yaml: "preset: symfony\ndrain: 200ms\nhooks:\n  after_checkout:\n    - php bin/console cache:clear\n",
};

#[test]
fn symfony_serves_one_version_through_twenty_deploys() {
    let Some(site) = SYMFONY.serve("") else {
        return;
    };
    site.deploy_under_load(20)
        .assert_clean("symfony, the preset's hooks");
    // The snapshot's compiled container names no absolute path of ROOT.
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
