//! The fleet's place in the house, checked: it imports nothing from
//! `serve` and knows no HTTP (no `axum`, no status codes); `rootswap serve`
//! turns the fleet's typed answers into responses.

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every line of `src/fleet/*.rs` (but this one) outside comments.
    fn code_lines() -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fleet");
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("src/fleet is readable") {
            let path = entry.expect("a directory entry").path();
            let ours = path.file_name().is_some_and(|n| n == "no_service.rs");
            if ours || path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            for l in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                lines.push((name.clone(), l.to_string()));
            }
        }
        lines
    }

    #[test]
    fn fleet_imports_nothing_from_serve_and_knows_no_http() {
        let lines = code_lines();
        assert!(lines.len() > 1000, "the fleet's sources were not found");
        let serve = ["crate::", "serve::"].concat();
        let bad: Vec<String> = lines
            .iter()
            .filter(|(_, l)| l.contains(&serve) || l.contains("axum") || l.contains("StatusCode"))
            .map(|(f, l)| format!("{f}: {}", l.trim()))
            .collect();
        assert!(
            bad.is_empty(),
            "fleet/ reaches into serve or HTTP:\n{}",
            bad.join("\n")
        );
    }
}
