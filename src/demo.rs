//! `rootswap demo`: the whole flow against an embedded sample site, on a
//! scratch directory, with nothing to configure.
//!
//! It makes a local Git repository from the files of `fixtures/demo-app`
//! (compiled into the binary), deploys it, writes an "upload" into the live
//! site, commits a change, deploys again and shows the result.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::deploy::{self, Outcome, Request};

const FILES: &[(&str, &str)] = &[
    (
        "public/index.php",
        include_str!("../fixtures/demo-app/public/index.php"),
    ),
    (
        "lib/version.php",
        include_str!("../fixtures/demo-app/lib/version.php"),
    ),
    (
        ".gitignore",
        include_str!("../fixtures/demo-app/.gitignore"),
    ),
    ("README.md", include_str!("../fixtures/demo-app/README.md")),
];

fn commit_all(repo: &git2::Repository, message: &str) -> Result<git2::Oid> {
    let mut index = repo.index()?;
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("rootswap demo", "demo@rootswap.invalid")?;
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    Ok(repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)?)
}

fn write(dir: &Path, rel: &str, text: &str) -> Result<()> {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
}

fn show(outcome: &Outcome) {
    if let Outcome::Deployed(s) = outcome {
        println!("  {}", crate::report::summary_line(s));
    }
}

/// Runs the demo in `dir` (a new scratch directory when None). Returns the directory used.
pub fn run(dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = scratch_dir(dir)?;
    let repo_dir = dir.join("app");
    let webroot = dir.join("webroot");
    std::fs::create_dir_all(&repo_dir)?;
    std::fs::create_dir_all(&webroot)?;
    let repo = git2::Repository::init(&repo_dir).context("cannot create the demo repository")?;
    repo.set_head("refs/heads/main")?;
    for (rel, text) in FILES {
        write(&repo_dir, rel, text)?;
    }
    commit_all(&repo, "Demo site v1")?;
    let cfg_path = dir.join("rootswap.yaml");
    let cfg = write_config(&cfg_path, &webroot, &repo_dir)?;
    let site = crate::site::Site::open(&cfg)?;

    println!("rootswap demo in {}", dir.display());
    println!("\n1. first deploy of {}", repo_dir.display());
    show(&deploy::deploy(&site, &Request::manual())?);

    println!("\n2. a visitor uploads a file to the live site (current/public/uploads/avatar.txt)");
    write(
        &webroot.join("current"),
        "public/uploads/avatar.txt",
        "a user's upload\n",
    )?;

    println!("\n3. a developer commits v2");
    commit_v2(&repo, &repo_dir)?;

    println!("\n4. deploy now: snapshot, serve the snapshot, rewrite ROOT, copy uploads back, switch back");
    show(&deploy::deploy(&site, &Request::manual())?);

    println!("\n5. the result");
    show_result(&site, &webroot)?;
    println!(
        "\nconfig used: {} (try: rootswap -c {} status)",
        cfg_path.display(),
        cfg_path.display()
    );
    Ok(dir)
}

/// `dir`, or a new directory in the system's temp dir; it must be empty.
fn scratch_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("rootswap-demo-{}", deploy::new_id())),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty; give an empty or new directory to --dir",
            dir.display()
        );
    }
    Ok(dir)
}

/// Writes the demo's configuration to `path` and loads it.
fn write_config(path: &Path, webroot: &Path, repo_dir: &Path) -> Result<Config> {
    let cfg_text = format!(
        "webroot: {}\nsource:\n  repo: {}\n  branch: main\npublic: public\ndrain: 200ms\nsnapshots:\n  keep: 1\n",
        webroot.display(),
        repo_dir.display()
    );
    std::fs::write(path, &cfg_text)?;
    Config::load(path)
}

/// Changes the page to v2 and commits it.
fn commit_v2(repo: &git2::Repository, repo_dir: &Path) -> Result<()> {
    write(
        repo_dir,
        "public/index.php",
        &FILES[0].1.replace("'v1'", "'v2'"),
    )?;
    write(
        repo_dir,
        "lib/version.php",
        &FILES[1].1.replace("'v1'", "'v2'"),
    )?;
    commit_all(repo, "Demo site v2")?;
    Ok(())
}

/// Prints what the link serves, the live page's version, whether the
/// upload survived, and the snapshots.
fn show_result(site: &crate::site::Site, webroot: &Path) -> Result<()> {
    let link = webroot.join("current");
    println!(
        "  {} -> {}",
        link.display(),
        std::fs::read_link(&link)?.display()
    );
    let page = std::fs::read_to_string(link.join("public/index.php"))?;
    println!(
        "  live index.php sets {}",
        page.lines()
            .find(|l| l.contains("$page ="))
            .unwrap_or("")
            .trim()
    );
    println!(
        "  upload kept: {}",
        if link.join("public/uploads/avatar.txt").exists() {
            "public/uploads/avatar.txt"
        } else {
            "NO (bug)"
        }
    );
    println!("  snapshots:");
    for s in crate::snapshots::list(&site.layout, &site.state()?)? {
        println!(
            "    {}  {}",
            s.name,
            s.commit.as_deref().map(crate::commit::short).unwrap_or("-")
        );
    }
    Ok(())
}
