//! serde adapters: human durations (`2s`, `1h 30m`) and hook entries.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses a human duration such as `2s`, `500ms`, `10m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("'{text}' is not a duration ({e}); write it like 2s, 500ms, 10m or 1h")
    })
}

/// Accepts a number of seconds or a human duration string, keeping the
/// YAML location in errors (an untagged enum would lose it).
pub(super) struct DurationVisitor {
    pub(super) allow_auto: bool,
}

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.allow_auto {
            "a duration such as 2s or 500ms, or `auto`"
        } else {
            "a duration such as 2s, 500ms or 10m"
        })
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Duration::from_secs(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| E::custom(format!("{v} is negative; durations are 0 or more")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if self.allow_auto && v.trim() == "auto" {
            return Ok(None);
        }
        parse_duration(v).map(Some).map_err(|e| {
            E::custom(if self.allow_auto {
                format!("{e}, or `auto`")
            } else {
                e
            })
        })
    }
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor { allow_auto: false })?
        .ok_or_else(|| serde::de::Error::custom("`auto` is not allowed here"))
}

pub(super) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

pub(super) fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    if d.is_zero() {
        s.serialize_str("0s")
    } else {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

pub(super) fn ser_opt_duration<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// A hook entry: `CMD`, or `{run: CMD, optional: true}` which becomes `"? CMD"`.
pub(super) fn de_hooks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        run: String,
        #[serde(default)]
        optional: bool,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Cmd(String),
        Map(Entry),
    }
    let raw: Vec<Raw> = Deserialize::deserialize(d).map_err(|_: D::Error| {
        serde::de::Error::custom(
            "a hook list holds commands (strings) or `{run: CMD, optional: true}` entries",
        )
    })?;
    Ok(raw
        .into_iter()
        .map(|r| match r {
            Raw::Cmd(c) => c,
            Raw::Map(Entry {
                run,
                optional: true,
            }) => format!("? {}", strip_optional(&run).0),
            Raw::Map(Entry {
                run,
                optional: false,
            }) => run,
        })
        .collect())
}

/// Splits a leading `?` (the optional marker) off a hook command.
pub fn strip_optional(cmd: &str) -> (&str, bool) {
    let t = cmd.trim_start();
    match t.strip_prefix('?') {
        Some(rest) => (rest.trim_start(), true),
        None => (cmd, false),
    }
}
