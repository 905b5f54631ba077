//! The configuration reference, `config.example.yaml`, kept true:
//! - every key the parser accepts appears in it, and every key in it is
//!   accepted (`deny_unknown_fields` on every section);
//! - every key shown as `key: value` is shown with the code's default;
//! - a key is commented out (`# key: example`) exactly when it has no default
//!   (or lies in an optional section, whose keys then show their defaults).
//!
//! Commented-out keys are found by their form: a comment line whose text
//! starts with a lower-case `key:`. Prose in the file never starts so.

use std::collections::BTreeMap;
use std::path::Path;

use rootswap::config::Config;
use serde_yaml_ng::Value;

const EXAMPLE: &str = include_str!("../config.example.yaml");

/// Keys without a default (the example shows values of its own).
const REQUIRED: [&str; 2] = ["webroot", "source.repo"];
/// Keys without a fixed default inside optional sections (`fleet.node`
/// defaults to the host name).
const REQUIRED_IN_OPTIONAL: [&str; 4] =
    ["health_check.url", "fleet.etcd", "fleet.site", "fleet.node"];

/// A comment line that is a commented-out key (`# key: ...` / `# key:`).
fn commented_key(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let body = line.trim_start().strip_prefix("# ")?;
    let (key, rest) = body.trim_start().split_once(':')?;
    let is_key = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        && (rest.is_empty() || rest.starts_with(' '));
    is_key.then(|| format!("{}{body}", &line[..indent]))
}

/// The example with every commented-out key turned on.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| commented_key(l).unwrap_or_else(|| l.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Leaves by dotted key: mappings are walked; lists, scalars and empty
/// mappings (`hooks.env: {}`) are leaves.
fn leaves(v: &Value) -> BTreeMap<String, Value> {
    fn walk(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Mapping(m) if !m.is_empty() => {
                for (k, v) in m {
                    let k = k.as_str().expect("string keys");
                    let key = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &key, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(v, "", &mut out);
    out
}

fn raw(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

/// What the parser makes of `doc`, written back: every key it knows, with
/// the value it holds (defaults filled in). `preset`, left out when unset,
/// is put back as null.
fn typed(doc: &Value) -> BTreeMap<String, Value> {
    let cfg: Config = serde_yaml_ng::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("the parser refuses it: {e}\n{doc:?}"));
    let mut out = leaves(&serde_yaml_ng::to_value(&cfg).unwrap());
    out.entry("preset".into()).or_insert(Value::Null);
    out
}

/// A document holding only `keys`, with their values from `from`.
fn only(keys: &[&str], from: &BTreeMap<String, Value>) -> Value {
    let mut doc = Value::Mapping(Default::default());
    for key in keys {
        let value = from
            .get(*key)
            .unwrap_or_else(|| panic!("config.example.yaml lacks `{key}`"));
        let mut at = &mut doc;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let m = at.as_mapping_mut().unwrap();
            let k = Value::String((*part).into());
            if i + 1 == parts.len() {
                m.insert(k, value.clone());
                break;
            }
            at = m
                .entry(k)
                .or_insert_with(|| Value::Mapping(Default::default()));
        }
    }
    doc
}

#[test]
fn the_example_loads_as_shipped() {
    Config::parse(EXAMPLE, Path::new("/etc/rootswap/example.yaml"))
        .unwrap_or_else(|e| panic!("config.example.yaml does not load: {e:#}"));
}

#[test]
fn every_accepted_key_is_in_the_example_and_every_key_there_is_accepted() {
    let all = raw(&uncommented(EXAMPLE));
    let shown: Vec<String> = leaves(&all).into_keys().collect();
    let known: Vec<String> = typed(&all).into_keys().collect();
    let missing: Vec<&String> = known.iter().filter(|k| !shown.contains(k)).collect();
    let unknown: Vec<&String> = shown.iter().filter(|k| !known.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "keys the parser accepts but config.example.yaml does not show \
         (add them, with their default, or commented out with an example): {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys in config.example.yaml the parser does not know: {unknown:?}"
    );
}

#[test]
fn the_example_shows_every_default_and_comments_out_only_keys_without_one() {
    // A section whose keys are all commented out reads as null: nothing set.
    let mut on = leaves(&raw(EXAMPLE));
    on.retain(|_, v| !v.is_null());
    let all_raw = leaves(&raw(&uncommented(EXAMPLE)));
    let on_typed = typed(&raw(EXAMPLE));
    let all_typed = typed(&raw(&uncommented(EXAMPLE)));
    // The defaults: what the parser fills in when only the required keys are set.
    let defaults = typed(&only(&REQUIRED, &all_raw));
    let mut with_optional = REQUIRED.to_vec();
    with_optional.extend(REQUIRED_IN_OPTIONAL);
    let optional_defaults = typed(&only(&with_optional, &all_raw));

    let mut wrong = Vec::new();
    for (key, value) in &on {
        if REQUIRED.contains(&key.as_str()) {
            continue;
        }
        let shown = &on_typed[key];
        match defaults.get(key) {
            Some(d) if d == shown => {}
            Some(Value::Null) => wrong.push(format!(
                "`{key}: {}` has no default: comment it out (`# {}: {}`)",
                yaml(value),
                key.rsplit('.').next().unwrap_or(key),
                yaml(value)
            )),
            Some(d) => wrong.push(format!(
                "`{key}` shows {} but its default is {}",
                yaml(shown),
                yaml(d)
            )),
            None => wrong.push(format!("`{key}` is not a key with a default")),
        }
    }
    for (key, d) in &defaults {
        if !d.is_null() && !on.contains_key(key) && !REQUIRED.contains(&key.as_str()) {
            wrong.push(format!(
                "`{key}` has the default {} but is commented out or missing: show `{key}: {}`",
                yaml(d),
                yaml(d)
            ));
        }
    }
    for key in all_raw.keys().filter(|k| !on.contains_key(*k)) {
        match defaults.get(key) {
            Some(Value::Null) => {} // no default: the value is an example
            Some(_) => {}           // reported above
            None if REQUIRED_IN_OPTIONAL.contains(&key.as_str()) => {}
            None => {
                // Inside an optional section: show the section's defaults.
                let (shown, d) = (&all_typed[key], optional_defaults.get(key));
                if d != Some(shown) && d != Some(&Value::Null) {
                    wrong.push(format!(
                        "`# {key}` shows {} but its default is {}",
                        yaml(shown),
                        d.map_or("none".into(), yaml)
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "config.example.yaml is not true:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn unknown_keys_are_refused_in_every_section() {
    let all = raw(&uncommented(EXAMPLE));
    let sections: Vec<String> = leaves(&all)
        .keys()
        .filter_map(|k| k.rsplit_once('.').map(|(s, _)| s.to_string()))
        .filter(|s| s != "hooks.env")
        .collect();
    for section in [String::new()].into_iter().chain(sections) {
        let mut doc = all.clone();
        let mut at = &mut doc;
        for part in section.split('.').filter(|p| !p.is_empty()) {
            at = at.get_mut(part).unwrap();
        }
        at.as_mapping_mut()
            .unwrap()
            .insert(Value::String("no_such_key".into()), Value::Bool(true));
        let r: Result<Config, _> = serde_yaml_ng::from_value(doc);
        assert!(
            r.is_err(),
            "an unknown key in `{section}` is accepted (deny_unknown_fields missing?)"
        );
    }
}

#[test]
fn commented_keys_are_recognised_and_prose_is_not() {
    assert_eq!(commented_key("  # nice: 10").as_deref(), Some("  nice: 10"));
    assert_eq!(
        commented_key("#   url: http://x").as_deref(),
        Some("  url: http://x")
    );
    assert_eq!(
        commented_key("# health_check:").as_deref(),
        Some("health_check:")
    );
    assert_eq!(commented_key("# Upper bound of `drain: auto`."), None);
    assert_eq!(
        commented_key("#   root /var/www/webroot/current/public;"),
        None
    );
    assert_eq!(
        commented_key("  #   - {run: php artisan x, optional: true}"),
        None
    );
}

fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v)
        .unwrap_or_default()
        .trim()
        .to_string()
}
