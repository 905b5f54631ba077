//! The webhook deliveries handled lately, so that a repeated delivery (the
//! same id, or the same push under another id) is answered "already handled"
//! and starts nothing.

use std::collections::{HashSet, VecDeque};

use serde_json::Value;

/// Webhook deliveries remembered, to answer a repeated one "already handled".
pub const DELIVERIES_KEPT: usize = 1000;

/// The last [`DELIVERIES_KEPT`] webhook deliveries handled: their ids
/// (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`) and their pushes' `before`/`after` pairs.
#[derive(Debug, Default)]
pub struct Deliveries {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl Deliveries {
    /// The first of `keys` seen before; when none was, remembers them all
    /// (forgetting the oldest beyond [`DELIVERIES_KEPT`]) and returns None.
    pub fn repeat(&mut self, keys: &[String]) -> Option<String> {
        if let Some(k) = keys.iter().find(|k| self.seen.contains(*k)) {
            return Some(k.clone());
        }
        for k in keys {
            if self.seen.insert(k.clone()) {
                self.order.push_back(k.clone());
            }
        }
        while self.order.len() > DELIVERIES_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        None
    }
}

/// What identifies a delivery: its id header, and the push's `before`/`after`
/// pair (the same push redelivered under another id has the same pair).
pub(super) fn delivery_keys(id: Option<&str>, payload: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(id) = id.map(str::trim).filter(|i| !i.is_empty()) {
        keys.push(format!("id:{id}"));
    }
    let field = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or("");
    let (before, after) = (field("before"), field("after"));
    if !after.is_empty() {
        keys.push(format!("push:{}:{before}..{after}", field("ref")));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deliveries_are_remembered_and_bounded() {
        let mut d = Deliveries::default();
        let keys = |i: usize| vec![format!("id:{i}"), format!("push:r:a..{i}")];
        assert_eq!(d.repeat(&keys(0)), None);
        assert_eq!(d.repeat(&keys(0)), Some("id:0".to_string()));
        // The same push under another id is a repeat too.
        assert_eq!(
            d.repeat(&["id:new".to_string(), "push:r:a..0".to_string()]),
            Some("push:r:a..0".to_string())
        );
        for i in 1..=DELIVERIES_KEPT {
            assert_eq!(d.repeat(&keys(i)), None);
        }
        assert!(d.order.len() <= DELIVERIES_KEPT && d.seen.len() == d.order.len());
        assert_eq!(
            d.repeat(&["id:0".to_string()]),
            None,
            "the oldest is forgotten"
        );
        let payload = json!({ "ref": "refs/heads/main", "before": "a", "after": "b" });
        assert_eq!(
            delivery_keys(Some(" x "), &payload),
            vec!["id:x".to_string(), "push:refs/heads/main:a..b".to_string()]
        );
        assert!(delivery_keys(None, &json!({ "ref": "r" })).is_empty());
    }
}
