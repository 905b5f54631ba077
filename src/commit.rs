//! Commit ids as people read them: the seven-character short form.
//!
//! A leaf: every layer that prints or logs a commit uses it, so it imports
//! nothing from the crate.

/// The seven-character form of a commit id, for people. Ids read back
/// from JSON files (history, state, journal, etcd) are cut at a character
/// boundary, so a hand-edited file with a non-ASCII id cannot panic here.
pub fn short(id: &str) -> &str {
    id.char_indices().nth(7).map_or(id, |(i, _)| &id[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cuts_at_a_character_boundary() {
        assert_eq!(short("0123456789abcdef"), "0123456");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short(""), "");
        assert_eq!(short("ééééééééé"), "ééééééé");
        assert_eq!(short("abcdeféx"), "abcdefé");
    }
}
