//! Framework presets: `preset: laravel | symfony | wordpress | drupal | generic`.
//!
//! A preset is a set of configuration values written in YAML. [`merge_under`]
//! lays the preset's values *under* the user's file before the typed parse: a
//! key the user sets wins, whole (a list the user sets replaces the preset's
//! list; mappings are merged key by key). `rootswap config --effective` shows
//! the result.
//!
//! Hooks a preset adds run only when their tool is there: `composer` on PATH,
//! `artisan` or `bin/console` in ROOT. A missing tool fails the deploy with a
//! message that says so, unless the hook is optional (a leading `?`, see
//! [`crate::hooks`]): then it is skipped.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

/// The frameworks rootswap knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Laravel: `public/`, `.env` and `storage/` kept, artisan caches rebuilt
    /// (also inside each snapshot, which must name itself), queue workers restarted.
    Laravel,
    /// Symfony: `public/`, `.env.local`, `var/log` and uploads kept, cache
    /// cleared, messenger workers stopped after the switch.
    Symfony,
    /// WordPress: served from the top, `wp-config.php` and uploads kept.
    Wordpress,
    /// Drupal (composer layout): `web/`, settings.local.php and files kept, `drush deploy`.
    Drupal,
    /// Nothing framework-specific: the plain defaults.
    Generic,
}

/// Every preset, in the order they are listed to people.
pub const ALL: [Preset; 5] = [
    Preset::Laravel,
    Preset::Symfony,
    Preset::Wordpress,
    Preset::Drupal,
    Preset::Generic,
];

const LARAVEL: &str = r#"
public: public
user_content:
  preserve: [".env", "storage/app/**", "storage/logs/**", "storage/framework/sessions/**"]
  exclude: ["storage/framework/cache/**", "storage/framework/views/**", "bootstrap/cache/*.php"]
  shared: [storage/app/public, storage/logs]
hooks:
  after_checkout:
    - composer install --no-dev --no-interaction --prefer-dist --optimize-autoloader
    - php artisan migrate --force
    - php artisan config:cache
    - php artisan route:cache
    # Blade recompiles a view whose template is as new as its compiled file
    # (whole seconds, `>=`), and its recompile is not atomic: compile in a
    # later second than the checkout, or the first second after the switch
    # serves empty pages.
    - sleep 1
    - php artisan view:cache
  in_snapshot:
    - php artisan config:cache
    - php artisan view:cache
  after_switch:
    - php artisan queue:restart
    - "? php artisan horizon:terminate"
"#;

const SYMFONY: &str = r#"
public: public
user_content:
  preserve: [".env.local", "var/log/**", "public/uploads/**"]
  exclude: ["var/cache/**"]
  shared: [public/uploads, var/log]
hooks:
  after_checkout:
    - composer install --no-dev --optimize-autoloader
    - rm -rf var/cache/*
    - php bin/console cache:warmup
    - "? php bin/console doctrine:migrations:migrate --no-interaction --allow-no-migration"
  after_switch:
    - "? php bin/console messenger:stop-workers"
"#;

const WORDPRESS: &str = r#"
public: .
user_content:
  preserve: ["wp-config.php", "wp-content/uploads/**", ".htaccess"]
  exclude: ["wp-content/cache/**"]
  shared: [wp-content/uploads]
"#;

const DRUPAL: &str = r#"
public: web
user_content:
  preserve: ["web/sites/*/settings.local.php", "web/sites/*/files/**"]
  shared: [web/sites/default/files]
hooks:
  after_checkout:
    - composer install --no-dev
    - vendor/bin/drush deploy
"#;

impl Preset {
    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Laravel => "laravel",
            Preset::Symfony => "symfony",
            Preset::Wordpress => "wordpress",
            Preset::Drupal => "drupal",
            Preset::Generic => "generic",
        }
    }

    /// The preset's values, as YAML text (documentation and `init` use it).
    pub fn yaml(self) -> &'static str {
        match self {
            Preset::Laravel => LARAVEL,
            Preset::Symfony => SYMFONY,
            Preset::Wordpress => WORDPRESS,
            Preset::Drupal => DRUPAL,
            Preset::Generic => "{}\n",
        }
    }

    /// The directories where this framework keeps what visitors upload and
    /// what it logs: the preset's `user_content.shared` (kept once, outside
    /// the trees; the first deploy that applies them moves them out of ROOT).
    pub fn shared_dirs(self) -> &'static [&'static str] {
        match self {
            Preset::Laravel => &["storage/app/public", "storage/logs"],
            Preset::Symfony => &["public/uploads", "var/log"],
            Preset::Wordpress => &["wp-content/uploads"],
            Preset::Drupal => &["web/sites/default/files"],
            Preset::Generic => &[],
        }
    }

    /// The preset's values as a YAML mapping.
    pub fn values(self) -> Mapping {
        match serde_yaml_ng::from_str::<Value>(self.yaml()) {
            Ok(Value::Mapping(m)) => m,
            // The texts above are constants checked by the tests.
            _ => Mapping::new(),
        }
    }

    /// The document root the preset sets.
    pub fn public(self) -> &'static str {
        match self {
            Preset::Laravel | Preset::Symfony => "public",
            Preset::Drupal => "web",
            Preset::Wordpress | Preset::Generic => ".",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads `preset:` from a parsed document, if any.
pub fn preset_of(doc: &Value) -> Result<Option<Preset>> {
    let Some(v) = doc.as_mapping().and_then(|m| m.get("preset")) else {
        return Ok(None);
    };
    if v.is_null() {
        return Ok(None);
    }
    match serde_yaml_ng::from_value::<Preset>(v.clone()) {
        Ok(p) => Ok(Some(p)),
        Err(_) => bail!(
            "`preset: {}` is not a preset; use one of {}",
            serde_yaml_ng::to_string(v).unwrap_or_default().trim(),
            ALL.map(Preset::name).join(", ")
        ),
    }
}

/// The YAML document of configuration `text` with `preset`'s values laid
/// under it (the configuration parses it into its schema).
pub fn apply(text: &str, preset: Preset) -> Result<Value> {
    let mut doc: Value = serde_yaml_ng::from_str(text)?;
    doc.apply_merge()?;
    merge_under(&mut doc, preset);
    Ok(doc)
}

/// Lays `preset`'s values under `doc`: keys `doc` sets win; mappings merge
/// key by key; anything else (strings, lists) is taken whole from `doc`.
pub fn merge_under(doc: &mut Value, preset: Preset) {
    let mut base = Value::Mapping(preset.values());
    merge(&mut base, doc.clone());
    *doc = base;
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, over) => *slot = over,
    }
}

/// What `init` found in a site directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The preset that fits (generic when nothing was recognised).
    pub preset: Preset,
    /// The files that gave it away, for the message.
    pub evidence: Vec<String>,
}

/// Recognises the framework of the site in `dir` from its files.
///
/// Laravel: `artisan` (or `laravel/framework` in composer.json). Drupal:
/// `web/core` or `core/lib/Drupal.php` (or `drupal/core*` in composer.json).
/// Symfony: `symfony.lock` (or `symfony/framework-bundle`). WordPress:
/// `wp-config.php`, `wp-includes/` or `wp-load.php`. Anything else: generic.
pub fn detect(dir: &Path) -> Detection {
    let has = |rel: &str| dir.join(rel).exists();
    let composer = std::fs::read_to_string(dir.join("composer.json")).unwrap_or_default();
    let requires = |pkg: &str| composer.contains(&format!("\"{pkg}"));
    let mut evidence = Vec::new();
    let mut found = |cond: bool, what: &str| {
        if cond {
            evidence.push(what.to_string());
        }
        cond
    };
    let preset = if found(has("artisan"), "artisan")
        | found(
            requires("laravel/framework"),
            "composer.json requires laravel/framework",
        ) {
        Preset::Laravel
    } else if found(has("web/core"), "web/core")
        | found(has("core/lib/Drupal.php"), "core/lib/Drupal.php")
        | found(
            requires("drupal/core"),
            "composer.json requires drupal/core",
        )
    {
        Preset::Drupal
    } else if found(has("symfony.lock"), "symfony.lock")
        | found(
            requires("symfony/framework-bundle"),
            "composer.json requires symfony/framework-bundle",
        )
    {
        Preset::Symfony
    } else if found(has("wp-config.php"), "wp-config.php")
        | found(has("wp-includes"), "wp-includes/")
        | found(has("wp-load.php"), "wp-load.php")
    {
        Preset::Wordpress
    } else {
        Preset::Generic
    };
    Detection { preset, evidence }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_text_is_a_mapping() {
        for p in ALL {
            let v: Value = serde_yaml_ng::from_str(p.yaml()).unwrap();
            assert!(v.is_mapping(), "{p}");
            let public = p
                .values()
                .get("public")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if p != Preset::Generic {
                assert_eq!(public.as_deref(), Some(p.public()), "{p}");
            }
        }
    }

    #[test]
    fn shared_dirs_are_the_presets_shared_list() {
        for p in ALL {
            let listed: Vec<String> = p
                .values()
                .get("user_content")
                .and_then(|u| u.get("shared"))
                .and_then(Value::as_sequence)
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(listed, p.shared_dirs(), "{p}");
        }
    }

    #[test]
    fn user_values_win_whole_and_mappings_merge() {
        let mut doc: Value =
            serde_yaml_ng::from_str("public: htdocs\nuser_content:\n  exclude: []\n").unwrap();
        merge_under(&mut doc, Preset::Laravel);
        assert_eq!(doc["public"].as_str(), Some("htdocs"));
        assert_eq!(
            doc["user_content"]["exclude"].as_sequence().map(Vec::len),
            Some(0)
        );
        assert_eq!(doc["user_content"]["preserve"][0].as_str(), Some(".env"));
        assert_eq!(
            doc["hooks"]["after_checkout"].as_sequence().map(Vec::len),
            Some(6)
        );
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let doc: Value = serde_yaml_ng::from_str("preset: larvel\n").unwrap();
        let msg = preset_of(&doc).unwrap_err().to_string();
        assert!(
            msg.contains("larvel") && msg.contains("laravel, symfony"),
            "{msg}"
        );
    }
}
