//! Conflict prediction against real git repositories. The oracle is real git: every scenario's
//! prediction is compared with what `git merge --no-commit --no-ff` does in a scratch worktree
//! (clean or not, and the paths `git diff --name-only --diff-filter=U` lists after it), as well
//! as with the outcome the scenario is written to produce. Unix only: the fixtures use symlinks
//! and `/dev/null`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use gyrus_sessions::conflicts::{
    self, GitError, PairPrediction, Prediction, RepoInfo, predict, predict_pairs, repo_info,
    state_commit,
};
use pretty_assertions::assert_eq;
use tempfile::TempDir;

/// The fixtures' git: isolated from the developer's configuration, fixed identity and dates.
fn git_raw(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.com")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000")
        .env("LC_ALL", "C");
    for name in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_CONFIG_PARAMETERS",
    ] {
        command.env_remove(name);
    }
    let output = command.output().expect("git runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a fixture git command that must succeed; its trimmed output.
fn git(dir: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = git_raw(dir, args);
    assert_eq!(
        code,
        0,
        "git {args:?} in {} failed: {stderr}",
        dir.display()
    );
    stdout.trim_end().to_owned()
}

fn canonical(path: &Path) -> String {
    fs::canonicalize(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A temporary repository with `main` checked out at `root`.
struct Repo {
    tmp: TempDir,
    root: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        git(tmp.path(), &["init", "-q", "-b", "main", "repo"]);
        Repo { tmp, root }
    }

    /// A path beside the repository, for linked worktrees and scratch space.
    fn beside(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn rev(&self, revision: &str) -> String {
        git(&self.root, &["rev-parse", "--verify", revision])
    }
}

/// One change to a worktree.
#[derive(Debug, Clone, Copy)]
enum Op {
    Write(&'static str, &'static [u8]),
    Delete(&'static str),
    Rename(&'static str, &'static str),
    Symlink(&'static str, &'static str),
}

fn apply(dir: &Path, ops: &[Op]) {
    for op in ops {
        match *op {
            Op::Write(path, content) => {
                let path = dir.join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, content).unwrap();
            }
            Op::Delete(path) => {
                git(dir, &["rm", "-q", path]);
            }
            Op::Rename(from, to) => {
                git(dir, &["mv", from, to]);
            }
            Op::Symlink(path, target) => {
                std::os::unix::fs::symlink(target, dir.join(path)).unwrap();
            }
        }
    }
}

/// Applies `ops` and commits them; the new commit's id.
fn commit(dir: &Path, ops: &[Op], message: &str) -> String {
    apply(dir, ops);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// What a real `git merge --no-commit --no-ff theirs` on top of `ours` reports.
fn real_merge(repo: &Repo, ours: &str, theirs: &str) -> (bool, Vec<String>) {
    let scratch = repo.beside("scratch");
    let scratch_arg = scratch.to_str().unwrap();
    git(
        &repo.root,
        &["worktree", "add", "-q", "--detach", scratch_arg, ours],
    );
    let (code, _, stderr) = git_raw(&scratch, &["merge", "-q", "--no-commit", "--no-ff", theirs]);
    assert!(
        code == 0 || code == 1,
        "git merge failed outright: {stderr}"
    );
    let unmerged = git(&scratch, &["diff", "--name-only", "--diff-filter=U", "-z"]);
    // A file git moves aside for a file/directory or distinct-types conflict is listed under
    // its own name by `predict` (git merge labels it `~HEAD` or `~<theirs>`).
    let moved_suffixes = ["~HEAD".to_owned(), format!("~{theirs}")];
    let mut files: Vec<String> = unmerged
        .split('\0')
        .filter(|path| !path.is_empty())
        .map(|path| {
            moved_suffixes
                .iter()
                .find_map(|suffix| path.strip_suffix(suffix.as_str()))
                .unwrap_or(path)
                .to_owned()
        })
        .collect();
    files.sort();
    files.dedup();
    git(&repo.root, &["worktree", "remove", "--force", scratch_arg]);
    (code == 0, files)
}

/// Checks a prediction against real git, and against what the scenario expects.
fn check_against_git(repo: &Repo, name: &str, prediction: &Prediction, expected: &[&str]) {
    let (clean, files) = real_merge(repo, &prediction.ours, &prediction.theirs);
    assert_eq!(
        (prediction.clean, &prediction.files),
        (clean, &files),
        "{name}: prediction disagrees with git merge"
    );
    let expected: Vec<String> = expected.iter().map(|path| (*path).to_owned()).collect();
    assert_eq!(
        (prediction.clean, &prediction.files),
        (expected.is_empty(), &expected),
        "{name}: git merge did not do what the scenario expects"
    );
}

struct Scenario {
    name: &'static str,
    base: &'static [Op],
    ours: &'static [Op],
    theirs: &'static [Op],
    /// The conflicted paths; empty for a clean merge.
    conflicts: &'static [&'static str],
}

const TEN_LINES: &[u8] = b"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
const LIB: &[u8] = b"fn one() {}\nfn two() {}\nfn three() {}\nfn four() {}\nfn five() {}\n";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "different files",
        base: &[Op::Write("a.txt", b"a\n"), Op::Write("b.txt", b"b\n")],
        ours: &[Op::Write("a.txt", b"a ours\n")],
        theirs: &[Op::Write("b.txt", b"b theirs\n")],
        conflicts: &[],
    },
    Scenario {
        name: "same file, different hunks",
        base: &[Op::Write("f.txt", TEN_LINES)],
        ours: &[Op::Write("f.txt", b"1\nTWO\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        theirs: &[Op::Write("f.txt", b"1\n2\n3\n4\n5\n6\n7\n8\nNINE\n10\n")],
        conflicts: &[],
    },
    Scenario {
        name: "same line edited differently",
        base: &[Op::Write("f.txt", TEN_LINES)],
        ours: &[Op::Write("f.txt", b"1\nours\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        theirs: &[Op::Write("f.txt", b"1\ntheirs\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        conflicts: &["f.txt"],
    },
    Scenario {
        name: "same edit on both sides",
        base: &[Op::Write("f.txt", TEN_LINES)],
        ours: &[Op::Write("f.txt", b"1\nboth\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        theirs: &[Op::Write("f.txt", b"1\nboth\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        conflicts: &[],
    },
    Scenario {
        name: "modify/delete",
        base: &[Op::Write("f.txt", TEN_LINES), Op::Write("keep.txt", b"k\n")],
        ours: &[Op::Write("f.txt", b"1\nours\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        theirs: &[Op::Delete("f.txt")],
        conflicts: &["f.txt"],
    },
    Scenario {
        name: "delete on both sides",
        base: &[Op::Write("f.txt", TEN_LINES), Op::Write("keep.txt", b"k\n")],
        ours: &[Op::Delete("f.txt")],
        theirs: &[Op::Delete("f.txt")],
        conflicts: &[],
    },
    Scenario {
        name: "add/add with different content",
        base: &[Op::Write("keep.txt", b"k\n")],
        ours: &[Op::Write("new.txt", b"ours\n")],
        theirs: &[Op::Write("new.txt", b"theirs\n")],
        conflicts: &["new.txt"],
    },
    Scenario {
        name: "rename on one side, edit on the other",
        base: &[Op::Write("src/lib.rs", LIB)],
        ours: &[Op::Rename("src/lib.rs", "src/core.rs")],
        theirs: &[Op::Write(
            "src/lib.rs",
            b"fn one() {}\nfn two() {}\nfn THREE() {}\nfn four() {}\nfn five() {}\n",
        )],
        conflicts: &[],
    },
    Scenario {
        name: "both rename the same file differently",
        base: &[Op::Write("old.rs", LIB)],
        ours: &[Op::Rename("old.rs", "ours.rs")],
        theirs: &[Op::Rename("old.rs", "theirs.rs")],
        conflicts: &["old.rs", "ours.rs", "theirs.rs"],
    },
    Scenario {
        name: "rename on one side, delete on the other",
        base: &[Op::Write("old.rs", LIB), Op::Write("keep.txt", b"k\n")],
        ours: &[Op::Rename("old.rs", "new.rs")],
        theirs: &[Op::Delete("old.rs")],
        conflicts: &["new.rs"],
    },
    Scenario {
        name: "binary file changed on both sides",
        base: &[Op::Write("logo.bin", b"\x00\x01\x02base\x00")],
        ours: &[Op::Write("logo.bin", b"\x00\x01\x02ours\x00")],
        theirs: &[Op::Write("logo.bin", b"\x00\x01\x02theirs\x00")],
        conflicts: &["logo.bin"],
    },
    Scenario {
        name: "file on one side, directory on the other",
        base: &[Op::Write("keep.txt", b"k\n")],
        ours: &[Op::Write("thing", b"a file\n")],
        theirs: &[Op::Write("thing/inside.txt", b"a directory\n")],
        conflicts: &["thing"],
    },
    Scenario {
        name: "a file on one side, a symlink on the other",
        base: &[Op::Write("keep.txt", b"k\n")],
        ours: &[Op::Write("link", b"a file\n")],
        theirs: &[Op::Symlink("link", "keep.txt")],
        conflicts: &["link"],
    },
    Scenario {
        name: "a conflicted file whose name ends like a moved-aside one",
        base: &[Op::Write("notes~main", TEN_LINES)],
        ours: &[Op::Write("notes~main", b"ours\n")],
        theirs: &[Op::Write("notes~main", b"theirs\n")],
        conflicts: &["notes~main"],
    },
    Scenario {
        name: "several conflicts at once, with a path that needs quoting",
        base: &[
            Op::Write("a b.txt", TEN_LINES),
            Op::Write("c.txt", TEN_LINES),
        ],
        ours: &[
            Op::Write("a b.txt", b"ours\n"),
            Op::Write("c.txt", b"ours\n"),
            Op::Write("d\u{e9}j\u{e0}.txt", b"ours\n"),
        ],
        theirs: &[
            Op::Write("a b.txt", b"theirs\n"),
            Op::Delete("c.txt"),
            Op::Write("d\u{e9}j\u{e0}.txt", b"theirs\n"),
        ],
        conflicts: &["a b.txt", "c.txt", "d\u{e9}j\u{e0}.txt"],
    },
];

#[test]
fn predictions_agree_with_git_merge() {
    for scenario in SCENARIOS {
        let repo = Repo::new();
        commit(&repo.root, scenario.base, "base");
        git(&repo.root, &["branch", "theirs"]);
        let ours = commit(&repo.root, scenario.ours, "ours");
        git(&repo.root, &["switch", "-q", "theirs"]);
        let theirs = commit(&repo.root, scenario.theirs, "theirs");
        git(&repo.root, &["switch", "-q", "main"]);

        // Through the common git directory, as a session manager would call it.
        let info = repo_info(&repo.root).unwrap().unwrap();
        let prediction = predict(Path::new(&info.repository), &ours, &theirs).unwrap();
        assert_eq!((&prediction.ours, &prediction.theirs), (&ours, &theirs));
        check_against_git(&repo, scenario.name, &prediction, scenario.conflicts);

        // The other way round: the same paths conflict.
        let reversed = predict(&repo.root, "theirs", "main").unwrap();
        assert_eq!(
            (reversed.clean, &reversed.files),
            (prediction.clean, &prediction.files),
            "{}: reversed",
            scenario.name
        );
    }
}

#[test]
fn three_branches_pairwise() {
    let repo = Repo::new();
    commit(
        &repo.root,
        &[Op::Write("f.txt", TEN_LINES), Op::Write("g.txt", TEN_LINES)],
        "base",
    );
    for branch in ["one", "two", "three"] {
        git(&repo.root, &["branch", branch]);
    }
    let mut heads = Vec::new();
    let edits: [(&str, &[Op]); 3] = [
        (
            "one",
            &[Op::Write("f.txt", b"one\n2\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        ),
        (
            "two",
            &[Op::Write("f.txt", b"two\n2\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        ),
        ("three", &[Op::Write("g.txt", b"three\n")]),
    ];
    for (branch, ops) in edits {
        git(&repo.root, &["switch", "-q", branch]);
        let id = commit(&repo.root, ops, branch);
        heads.push((branch.to_owned(), id));
    }

    // Through the common git directory, as the session manager calls it.
    let info = repo_info(&repo.root).unwrap().unwrap();
    let pairs = predict_pairs(Path::new(&info.repository), &heads).unwrap();
    let labels: Vec<(&str, &str)> = pairs.iter().map(|p| (p.a.as_str(), p.b.as_str())).collect();
    assert_eq!(labels, [("one", "two"), ("one", "three"), ("two", "three")]);
    for PairPrediction { a, b, prediction } in &pairs {
        let expected: &[&str] = if (a.as_str(), b.as_str()) == ("one", "two") {
            &["f.txt"]
        } else {
            &[]
        };
        check_against_git(&repo, &format!("{a} + {b}"), prediction, expected);
    }
}

#[test]
fn pairs_skip_identical_fast_forward_and_unrelated_heads() {
    let repo = Repo::new();
    let base = commit(&repo.root, &[Op::Write("f.txt", TEN_LINES)], "base");
    git(&repo.root, &["branch", "side"]);
    let main = commit(&repo.root, &[Op::Write("f.txt", b"main\n")], "main");
    git(&repo.root, &["switch", "-q", "-c", "ahead"]);
    let ahead = commit(&repo.root, &[Op::Write("g.txt", b"g\n")], "ahead");
    git(&repo.root, &["switch", "-q", "side"]);
    let side = commit(&repo.root, &[Op::Write("f.txt", b"side\n")], "side");
    git(&repo.root, &["switch", "-q", "--orphan", "orphan"]);
    let orphan = commit(&repo.root, &[Op::Write("f.txt", b"orphan\n")], "orphan");
    git(&repo.root, &["switch", "-q", "main"]);

    let heads: Vec<(String, String)> = [
        ("one", main.as_str()),
        ("two", "main"), // the same commit by name
        ("three", ahead.as_str()),
        ("four", side.as_str()),
        ("five", orphan.as_str()),
        ("six", base.as_str()),
    ]
    .iter()
    .map(|(label, commit)| ((*label).to_owned(), (*commit).to_owned()))
    .collect();
    let pairs = predict_pairs(&repo.root, &heads).unwrap();
    let got: Vec<(&str, &str, bool, Vec<String>)> = pairs
        .iter()
        .map(|p| {
            (
                p.a.as_str(),
                p.b.as_str(),
                p.prediction.clean,
                p.prediction.files.clone(),
            )
        })
        .collect();
    let f = vec!["f.txt".to_owned()];
    // one/two identical; one, two and four descend from six (fast-forwards); three descends
    // from one and two; five shares no history with anyone.
    assert_eq!(
        got,
        [
            ("one", "four", false, f.clone()),
            ("two", "four", false, f.clone()),
            ("three", "four", false, f.clone()),
        ]
    );
    // Resolved to full ids.
    assert_eq!(pairs[1].prediction.ours, main);
    assert_eq!(pairs[2].prediction.theirs, side);

    assert!(predict_pairs(&repo.root, &heads[..1]).unwrap().is_empty());
    assert!(predict_pairs(&repo.root, &[]).unwrap().is_empty());
    let bad = vec![
        ("one".to_owned(), main.clone()),
        ("bad".to_owned(), "no-such-branch".to_owned()),
    ];
    let error = predict_pairs(&repo.root, &bad).unwrap_err().to_string();
    assert!(
        error.contains("git rev-parse") && error.contains("no-such-branch"),
        "{error}"
    );

    let error = predict(&repo.root, &main, &orphan).unwrap_err();
    assert!(
        matches!(&error, GitError::UnrelatedHistories { ours, theirs } if *ours == main && *theirs == orphan),
        "{error:?}"
    );
}

#[test]
fn uncommitted_changes_in_a_linked_worktree() {
    let repo = Repo::new();
    let base_ops = [
        Op::Write("f.txt", TEN_LINES),
        Op::Write("g.txt", TEN_LINES),
        Op::Write("h.txt", TEN_LINES),
    ];
    commit(&repo.root, &base_ops, "base");
    let wt = repo.beside("feature-wt");
    git(
        &repo.root,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            wt.to_str().unwrap(),
        ],
    );
    let main = commit(
        &repo.root,
        &[Op::Write("f.txt", b"main\n2\n3\n4\n5\n6\n7\n8\n9\n10\n")],
        "main edits f",
    );
    let feature = git(&wt, &["rev-parse", "HEAD"]);

    // Clean: the state is HEAD, either way.
    assert_eq!(state_commit(&wt, false).unwrap(), Some(feature.clone()));
    assert_eq!(state_commit(&wt, true).unwrap(), Some(feature.clone()));

    // An unstaged edit that conflicts with main, a staged one that does not, a staged new
    // file, and an untracked file that is left out.
    fs::write(wt.join("f.txt"), "feature\n2\n3\n4\n5\n6\n7\n8\n9\n10\n").unwrap();
    fs::write(wt.join("g.txt"), "staged\n").unwrap();
    fs::write(wt.join("new.txt"), "new\n").unwrap();
    git(&wt, &["add", "g.txt", "new.txt"]);
    fs::write(wt.join("notes.txt"), "untracked\n").unwrap();

    let index_path = PathBuf::from(git(
        &wt,
        &["rev-parse", "--path-format=absolute", "--git-path", "index"],
    ));
    let snapshot = |dir: &Path| {
        (
            fs::read(&index_path).unwrap(),
            git(
                dir,
                &[
                    "--no-optional-locks",
                    "status",
                    "--porcelain=v1",
                    "--untracked-files=all",
                ],
            ),
            git(dir, &["for-each-ref"]),
            git(dir, &["stash", "list"]),
            fs::read_dir(index_path.parent().unwrap()).unwrap().count(),
        )
    };
    let before = snapshot(&wt);

    assert_eq!(state_commit(&wt, false).unwrap(), Some(feature.clone()));
    let state = state_commit(&wt, true).unwrap().unwrap();
    assert_ne!(state, feature);
    // Same state, same commit; from a subdirectory too.
    fs::create_dir(wt.join("sub")).unwrap();
    assert_eq!(
        state_commit(&wt.join("sub"), true).unwrap().as_deref(),
        Some(state.as_str())
    );
    assert_eq!(snapshot(&wt), before, "state_commit touched the worktree");

    assert_eq!(git(&wt, &["rev-parse", &format!("{state}^@")]), feature);
    let files = git(&wt, &["ls-tree", "-r", "--name-only", &state]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["f.txt", "g.txt", "h.txt", "new.txt"]
    );
    assert_eq!(git(&wt, &["show", &format!("{state}:g.txt")]), "staged");
    assert!(git(&wt, &["show", &format!("{state}:f.txt")]).starts_with("feature\n"));

    // The oracle: commit the same state for real in a scratch worktree and merge that.
    let real_wt = repo.beside("real-state");
    git(
        &repo.root,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            real_wt.to_str().unwrap(),
            &feature,
        ],
    );
    for path in ["f.txt", "g.txt", "new.txt"] {
        fs::copy(wt.join(path), real_wt.join(path)).unwrap();
    }
    let real = commit(&real_wt, &[], "the worktree's state, committed");
    assert_eq!(
        repo.rev(&format!("{real}^{{tree}}")),
        repo.rev(&format!("{state}^{{tree}}"))
    );
    git(
        &repo.root,
        &["worktree", "remove", "--force", real_wt.to_str().unwrap()],
    );

    let prediction = predict(&repo.root, &main, &state).unwrap();
    check_against_git(&repo, "uncommitted vs main", &prediction, &["f.txt"]);
    let real_prediction = predict(&repo.root, &main, &real).unwrap();
    assert_eq!(real_prediction.files, prediction.files);

    let heads = vec![
        ("lead".to_owned(), main.clone()),
        ("wt".to_owned(), state.clone()),
    ];
    let pairs = predict_pairs(&repo.root, &heads).unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].prediction, prediction);

    // With the conflicting edit undone, only the clean staged changes remain.
    git(&wt, &["checkout", "--", "f.txt"]);
    let state = state_commit(&wt, true).unwrap().unwrap();
    let prediction = predict(&repo.root, &main, &state).unwrap();
    check_against_git(&repo, "clean uncommitted vs main", &prediction, &[]);
}

#[test]
fn repo_info_in_worktrees_and_subdirectories() {
    let repo = Repo::new();
    let main = commit(&repo.root, &[Op::Write("src/deep/f.txt", b"f\n")], "base");
    let expected = RepoInfo {
        worktree: canonical(&repo.root),
        repository: canonical(&repo.root.join(".git")),
        branch: Some("main".to_owned()),
        head: Some(main.clone()),
    };
    assert_eq!(repo_info(&repo.root).unwrap(), Some(expected.clone()));
    assert_eq!(
        repo_info(&repo.root.join("src/deep")).unwrap(),
        Some(expected.clone())
    );

    // A linked worktree: the same repository, its own worktree, branch and head.
    let wt = repo.beside("wt");
    git(
        &repo.root,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature/x",
            wt.to_str().unwrap(),
        ],
    );
    let feature = commit(&wt, &[Op::Write("g.txt", b"g\n")], "feature");
    let linked = repo_info(&wt.join("src")).unwrap().unwrap();
    assert_eq!(
        linked,
        RepoInfo {
            worktree: canonical(&wt),
            repository: expected.repository.clone(),
            branch: Some("feature/x".to_owned()),
            head: Some(feature.clone()),
        }
    );
    assert_eq!(repo_info(&repo.root).unwrap(), Some(expected.clone()));

    // A tag with the branch's name does not change the branch's name.
    git(&repo.root, &["tag", "main", &feature]);
    assert_eq!(
        repo_info(&repo.root).unwrap().unwrap().branch.as_deref(),
        Some("main")
    );

    // Detached HEAD.
    git(&wt, &["switch", "-q", "--detach", &main]);
    let detached = repo_info(&wt).unwrap().unwrap();
    assert_eq!((detached.branch, detached.head), (None, Some(main.clone())));
    assert_eq!(state_commit(&wt, true).unwrap(), Some(main));

    // Not in a worktree: outside any repository, in a bare one, inside `.git`.
    let outside = tempfile::tempdir().unwrap();
    assert_eq!(repo_info(outside.path()).unwrap(), None);
    git(outside.path(), &["init", "-q", "--bare", "bare.git"]);
    assert_eq!(repo_info(&outside.path().join("bare.git")).unwrap(), None);
    assert_eq!(repo_info(&repo.root.join(".git")).unwrap(), None);

    // A directory that does not exist is an error, and says which command failed.
    let error = repo_info(&outside.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("git rev-parse") && error.contains("cannot change to"),
        "{error}"
    );
}

#[test]
fn a_repository_without_commits() {
    let repo = Repo::new();
    fs::write(repo.root.join("f.txt"), "f\n").unwrap();
    git(&repo.root, &["add", "f.txt"]);
    let info = repo_info(&repo.root).unwrap().unwrap();
    assert_eq!(info.branch.as_deref(), Some("main"));
    assert_eq!(info.head, None);
    assert_eq!(info.worktree, canonical(&repo.root));
    assert_eq!(state_commit(&repo.root, false).unwrap(), None);
    assert_eq!(state_commit(&repo.root, true).unwrap(), None);
}

#[test]
fn bad_input_is_an_error_that_names_the_command() {
    let repo = Repo::new();
    let main = commit(&repo.root, &[Op::Write("f.txt", b"f\n")], "base");

    let error = predict(&repo.root, &main, "no-such-branch").unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, GitError::Failed { .. }), "{error:?}");
    assert!(text.contains("git merge-tree --write-tree"), "{text}");
    assert!(
        text.contains("no-such-branch - not something we can merge"),
        "{text}"
    );

    let error = predict(&repo.root, "--help", &main).unwrap_err();
    assert!(
        matches!(error, GitError::BadRevision(ref rev) if rev == "--help"),
        "{error:?}"
    );

    let outside = tempfile::tempdir().unwrap();
    let text = predict(outside.path(), &main, &main)
        .unwrap_err()
        .to_string();
    assert!(text.contains("not a git repository"), "{text}");
    let text = state_commit(outside.path(), true).unwrap_err().to_string();
    assert!(text.contains("not a git repository"), "{text}");

    // This machine's git is new enough (the suite needs it).
    let version = conflicts::check_git().unwrap();
    assert!(
        version.starts_with('2') || version.starts_with('3'),
        "{version}"
    );
}
