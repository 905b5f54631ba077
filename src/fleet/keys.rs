//! The key layout of one site in etcd: everything under `/rootswap/<site>/`.

/// The key layout of one site.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys of `site`: everything under `/rootswap/<site>/`.
    pub fn new(site: &str) -> Keys {
        Keys {
            prefix: format!("/rootswap/{site}/"),
        }
    }

    /// The site's prefix, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Prefix of the membership keys.
    pub fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }

    /// Membership key of `node` (on the node's lease).
    pub fn member(&self, node: &str) -> String {
        format!("{}members/{node}", self.prefix)
    }

    /// Name of the leader election.
    pub fn election(&self) -> String {
        format!("{}election", self.prefix)
    }

    /// The fleet's deploy lock.
    pub fn lock(&self) -> String {
        format!("{}lock", self.prefix)
    }

    /// Prefix of all deploy records.
    pub fn deploys(&self) -> String {
        format!("{}deploys/", self.prefix)
    }

    /// The record of deploy `id`.
    pub fn record(&self, id: &str) -> String {
        format!("{}deploys/{id}", self.prefix)
    }

    /// Prefix of everything deploy `id`'s nodes write.
    pub fn under(&self, id: &str) -> String {
        format!("{}deploys/{id}/", self.prefix)
    }

    /// State of `node` in deploy `id` ([`NodeReport`](super::records::NodeReport)).
    pub fn node_state(&self, id: &str, node: &str) -> String {
        format!("{}deploys/{id}/nodes/{node}", self.prefix)
    }

    /// Exists once `node` is ready to switch in deploy `id`.
    pub fn prepared(&self, id: &str, node: &str) -> String {
        format!("{}deploys/{id}/prepared/{node}", self.prefix)
    }

    /// Exists once deploy `id` passed its commit point.
    pub fn commit(&self, id: &str) -> String {
        format!("{}deploys/{id}/commit", self.prefix)
    }

    /// Node chosen to run `hooks.once` in deploy `id`.
    pub fn once(&self, id: &str) -> String {
        format!("{}deploys/{id}/once", self.prefix)
    }

    /// Exists once `hooks.once` succeeded in deploy `id`.
    pub fn once_done(&self, id: &str) -> String {
        format!("{}deploys/{id}/once-done", self.prefix)
    }

    /// Exists once `hooks.once` failed in deploy `id` (value: the error).
    pub fn once_failed(&self, id: &str) -> String {
        format!("{}deploys/{id}/once-failed", self.prefix)
    }

    /// Exists once deploy `id` was aborted (value: the reason).
    pub fn abort(&self, id: &str) -> String {
        format!("{}deploys/{id}/abort", self.prefix)
    }

    /// Exists once every node of deploy `id` switched and was healthy: the
    /// fleet keeps the new version (nodes evict and record it).
    pub fn settled(&self, id: &str) -> String {
        format!("{}deploys/{id}/settled", self.prefix)
    }

    /// Exists once deploy `id` is rolled back after its commit point
    /// (value: [`Revert`](super::records::Revert)): every node goes back to its snapshot.
    pub fn revert(&self, id: &str) -> String {
        format!("{}deploys/{id}/revert", self.prefix)
    }

    /// Id of the newest deploy record.
    pub fn last(&self) -> String {
        format!("{}last", self.prefix)
    }

    /// The commit the fleet last committed to ([`Committed`](super::records::Committed)).
    pub fn committed(&self) -> String {
        format!("{}committed", self.prefix)
    }

    /// The deploy id a key under [`Keys::deploys`] belongs to, and the rest of the key.
    pub fn split_deploy_key<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("deploys/")?;
        Some(match rest.split_once('/') {
            Some((id, tail)) => (id, tail),
            None => (rest, ""),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        let k = Keys::new("shop");
        assert_eq!(k.member("web1"), "/rootswap/shop/members/web1");
        assert_eq!(
            k.prepared("d1", "web1"),
            "/rootswap/shop/deploys/d1/prepared/web1"
        );
        assert_eq!(
            k.split_deploy_key("/rootswap/shop/deploys/d1"),
            Some(("d1", ""))
        );
        assert_eq!(
            k.split_deploy_key("/rootswap/shop/deploys/d1/commit"),
            Some(("d1", "commit"))
        );
        assert_eq!(k.split_deploy_key("/rootswap/other/deploys/d1"), None);
    }
}
