//! A read-only copy of an index (every file 0444, every directory 0555) is searched by
//! another user: searching works and changes nothing; a write fails with a clear
//! error and changes nothing either. When the tests run as root (where permission bits
//! do not stop writes), the searches run as `nobody` (uid 65534).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOBODY: u32 = 65534;

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Sets every file of `dir` to `file_mode` and every directory to `dir_mode`.
fn chmod_tree(dir: &Path, file_mode: u32, dir_mode: u32) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            chmod_tree(&entry.path(), file_mode, dir_mode);
        } else {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(file_mode)).unwrap();
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(dir_mode)).unwrap();
}

/// Every file below `dir` with its size and modification time.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(listing(&entry.path()));
        }
        out.insert(entry.path(), (meta.len(), meta.modified().unwrap()));
    }
    out
}

fn is_root() -> bool {
    // The real uid, from /proc (no libc call needed).
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether another user can reach `dir`: every directory above it lets others
/// through (o+x).
fn reachable_by_others(dir: &Path) -> bool {
    dir.ancestors().skip(1).all(|d| {
        fs::metadata(d)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

/// Runs the copied binary, as `nobody` when we are root and `nobody` can reach it
/// (otherwise as ourselves: the read-only bits then stop writes unless we are
/// root, and the listing check below catches any write either way).
fn run_as_other(bin: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(bin);
    c.args(args).current_dir("/");
    if is_root() && reachable_by_others(bin) {
        c.uid(NOBODY).gid(NOBODY);
    }
    c.output().expect("run shelfrank")
}

#[test]
fn a_read_only_copy_is_searchable_by_another_user_and_never_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
    // Everything the other user needs lives in the temporary directory.
    let bin = base.join("shelfrank");
    fs::copy(env!("CARGO_BIN_EXE_shelfrank"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let model = base.join("model");
    copy_tree(Path::new("fixtures/tiny-bert"), &model);
    chmod_tree(&model, 0o644, 0o755);
    let index = base.join("idx");
    let build = Command::new(&bin)
        .args([
            "build",
            "--catalog",
            "fixtures/catalog.jsonl",
            "--quiet",
            "--index",
        ])
        .arg(&index)
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let events = base.join("events.jsonl");
    fs::write(
        &events,
        "{\"user\": \"u1\", \"item\": \"p003\", \"kind\": \"purchase\", \"ts\": 1600000000}\n",
    )
    .unwrap();
    let import = Command::new(&bin)
        .args(["events", "import"])
        .arg(&events)
        .arg("--index")
        .arg(&index)
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    let copy = base.join("ro");
    copy_tree(&index, &copy);
    chmod_tree(&copy, 0o444, 0o555);
    let before = listing(&copy);
    let ro = copy.to_str().unwrap();
    for args in [
        vec!["search", "drill", "--index", ro, "--json"],
        vec!["search", "drill", "--index", ro, "--user", "u1", "--json"],
        vec!["search", "drill", "--index", ro, "--mode", "bm25"],
    ] {
        let out = run_as_other(&bin, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("p0"),
            "{args:?}"
        );
    }
    assert_eq!(
        listing(&copy),
        before,
        "a search changed the read-only copy"
    );
    // A write is refused with a message, not a crash (permission bits do not stop
    // root, so this part needs another user or a non-root run).
    if !is_root() || reachable_by_others(&bin) {
        let out = run_as_other(&bin, &["events", "forget", "u1", "--index", ro]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("LOCK") || err.contains("ermission"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(listing(&copy), before, "the read-only copy was changed");
    } else {
        eprintln!(
            "note: {} is not reachable by other users; the write check was skipped",
            base.display()
        );
    }
    chmod_tree(&copy, 0o644, 0o755); // let the temporary directory be removed
}
