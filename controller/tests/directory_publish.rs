//! `directory` mode, seen from the gateway: what a reader of `<certdir>`
//! observes while cert-sync publishes, rotates, removes, is refused bad
//! names, and is killed mid-write.
//!
//! Contents are fake PEM-shaped markers (`A1`, `v2`, ...), never real keys;
//! failures print paths, lengths and markers only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use certsync_controller::runtime::gateway::files::{
    validate_path, DirectoryPublisher, FilesError, PublishOutcome, Step, DATA_LINK,
};

type Files = BTreeMap<PathBuf, Vec<u8>>;
type TestResult = Result<(), Box<dyn Error>>;

/// A PEM-shaped body of ~4 KiB in which every line carries the marker, so a
/// short or mixed read can never equal a whole version.
fn body(kind: &str, marker: &str) -> Vec<u8> {
    let mut s = format!("-----BEGIN {kind}-----\n");
    for i in 0..64 {
        s.push_str(&format!("{marker}:{i:02}:{}\n", "x".repeat(56)));
    }
    s.push_str(&format!("-----END {kind}-----\n"));
    s.into_bytes()
}

fn cert(marker: &str) -> Vec<u8> {
    body("CERTIFICATE", marker)
}

fn key(marker: &str) -> Vec<u8> {
    body("TEST KEY", marker)
}

/// `(namespace, name, marker)` → `ns/name.crt` and `ns/name.key`.
fn pairs(list: &[(&str, &str, &str)]) -> Files {
    let mut files = Files::new();
    for (ns, name, marker) in list {
        files.insert(format!("{ns}/{name}.crt").into(), cert(marker));
        files.insert(format!("{ns}/{name}.key").into(), key(marker));
    }
    files
}

/// Marker of a whole version, or `None` for anything else (short, empty,
/// mixed).
fn marker_of(content: &[u8], kind: &str) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    let marker = text.lines().nth(1)?.split(':').next()?;
    (body(kind, marker) == content).then(|| marker.to_string())
}

/// Path → (length, marker) — what failure messages show instead of bytes.
fn summary(files: &Files) -> BTreeMap<&Path, (usize, Option<String>)> {
    files
        .iter()
        .map(|(path, content)| {
            let marker =
                marker_of(content, "CERTIFICATE").or_else(|| marker_of(content, "TEST KEY"));
            (path.as_path(), (content.len(), marker))
        })
        .collect()
}

fn assert_same(actual: &Files, expected: &Files, context: &str) {
    assert!(
        actual == expected,
        "{context}: got {:?}, expected {:?}",
        summary(actual),
        summary(expected)
    );
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn data_target(root: &Path) -> Option<PathBuf> {
    fs::read_link(root.join(DATA_LINK)).ok()
}

/// The live set as a gateway sees it: one resolution of `..data`, then
/// everything under the payload dir it names. No publisher involved.
fn read_live(root: &Path) -> Files {
    fn walk(dir: &Path, rel: &Path, out: &mut Files) {
        for entry in fs::read_dir(dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let rel = rel.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                walk(&entry.path(), &rel, out);
            } else {
                out.insert(rel, fs::read(entry.path()).expect("read"));
            }
        }
    }
    let mut out = Files::new();
    if let Some(target) = data_target(root) {
        walk(&root.join(target), Path::new(""), &mut out);
    }
    out
}

/// Everything that differs from the clean layout for `live`: the root holds
/// exactly `..lock`, `..data`, the payload it names, and one link
/// `<top> -> ..data/<top>` per top-level entry; every file of `live` is
/// readable at `<root>/<path>` with its exact bytes.
fn layout_problems(root: &Path, live: &Files) -> Vec<String> {
    let mut problems = Vec::new();
    let top: BTreeSet<String> = live
        .keys()
        .filter_map(|p| p.iter().next())
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let mut want: BTreeSet<String> = top.clone();
    want.insert("..lock".into());
    if let Some(target) = data_target(root) {
        want.insert(DATA_LINK.into());
        want.insert(target.to_string_lossy().into_owned());
    }
    let have = names(root);
    for extra in have.difference(&want) {
        problems.push(format!("leftover {extra}"));
    }
    for missing in want.difference(&have) {
        problems.push(format!("missing {missing}"));
    }
    for ns in &top {
        match fs::read_link(root.join(ns)) {
            Ok(t) if t == Path::new(DATA_LINK).join(ns) => {}
            other => problems.push(format!("{ns} is not a link to ..data/{ns}: {other:?}")),
        }
    }
    for (rel, content) in live {
        match fs::read(root.join(rel)) {
            Ok(bytes) if bytes == *content => {}
            Ok(bytes) => problems.push(format!(
                "{} has other content ({} bytes)",
                rel.display(),
                bytes.len()
            )),
            Err(e) => problems.push(format!("{}: {e}", rel.display())),
        }
    }
    problems
}

fn assert_clean(root: &Path, live: &Files) {
    let problems = layout_problems(root, live);
    assert!(
        problems.is_empty(),
        "layout of {}: {problems:?}",
        root.display()
    );
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

#[test]
fn publish_makes_every_pair_readable_with_exact_bytes_and_modes() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("certs"); // does not exist yet
    let publisher = DirectoryPublisher::open(&root)?;
    let set = pairs(&[
        ("shop", "shop-tls", "v1"),
        ("shop", "api-tls", "v1"),
        ("blog", "www", "v1"),
    ]);

    match publisher.publish(&set)? {
        PublishOutcome::Published {
            changed, removed, ..
        } => {
            assert_eq!(changed, set.keys().cloned().collect());
            assert!(removed.is_empty());
        }
        other => panic!("expected a publish, got {other:?}"),
    }

    for (rel, content) in &set {
        let path = root.join(rel);
        assert!(
            fs::read(&path)? == *content,
            "{} has other bytes",
            rel.display()
        );
        let want = if rel.extension() == Some("key".as_ref()) {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(&path), want, "mode of {}", rel.display());
    }
    assert_eq!(fs::read_link(root.join("shop"))?, Path::new("..data/shop"));
    assert_clean(&root, &set);
    assert_same(&publisher.current()?, &set, "current()");
    Ok(())
}

#[test]
fn republishing_the_same_set_touches_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let publisher = DirectoryPublisher::open(&root)?;
    let set = pairs(&[("shop", "a", "v1"), ("blog", "b", "v1")]);
    publisher.publish(&set)?;

    let snapshot = |root: &Path| -> Vec<(PathBuf, u64, SystemTime)> {
        set.keys()
            .map(|rel| {
                let meta = fs::metadata(root.join(rel)).expect("metadata");
                (rel.clone(), meta.ino(), meta.modified().expect("mtime"))
            })
            .collect()
    };
    let (target, listing, files) = (data_target(&root), names(&root), snapshot(&root));
    thread::sleep(Duration::from_millis(20)); // a rewrite would move mtime

    assert_eq!(publisher.publish(&set)?, PublishOutcome::Unchanged);
    assert_eq!(
        data_target(&root),
        target,
        "..data must not move (Envoy would reload)"
    );
    assert_eq!(names(&root), listing, "no new payload dir");
    assert_eq!(snapshot(&root), files, "same inodes and mtimes");

    // A restarted process (new publisher) agrees.
    assert_eq!(
        DirectoryPublisher::open(&root)?.publish(&set)?,
        PublishOutcome::Unchanged
    );
    assert_eq!(data_target(&root), target);
    Ok(())
}

#[test]
fn rotating_one_pair_changes_its_cert_and_key_in_one_swap() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let publisher = DirectoryPublisher::open(&root)?;
    let before = pairs(&[
        ("shop", "a", "v1"),
        ("shop", "b", "v1"),
        ("blog", "c", "v1"),
    ]);
    publisher.publish(&before)?;
    let old_target = data_target(&root).ok_or("no ..data")?;
    let inode = |rel: &str| fs::metadata(root.join(rel)).map(|m| m.ino());
    let (a_inode, b_inode) = (inode("shop/a.crt")?, inode("shop/b.crt")?);

    let after = pairs(&[
        ("shop", "a", "v2"),
        ("shop", "b", "v1"),
        ("blog", "c", "v1"),
    ]);
    let outcome = publisher.publish(&after)?;
    let PublishOutcome::Published {
        payload,
        changed,
        removed,
    } = outcome
    else {
        return Err(format!("expected a publish, got {outcome:?}").into());
    };
    let expected: BTreeSet<PathBuf> = ["shop/a.crt", "shop/a.key"].map(PathBuf::from).into();
    assert_eq!(changed, expected);
    assert!(removed.is_empty());

    let new_target = data_target(&root).ok_or("no ..data")?;
    assert_eq!(
        new_target,
        Path::new(&payload),
        "one swap of ..data to the new payload"
    );
    assert_ne!(new_target, old_target);
    assert!(!root.join(&old_target).exists(), "old payload removed");
    assert_eq!(
        marker_of(&fs::read(root.join("shop/a.crt"))?, "CERTIFICATE").as_deref(),
        Some("v2")
    );
    assert_eq!(
        marker_of(&fs::read(root.join("shop/a.key"))?, "TEST KEY").as_deref(),
        Some("v2")
    );
    assert_clean(&root, &after); // b and c: same bytes, same paths
    assert_ne!(
        inode("shop/a.crt")?,
        a_inode,
        "the rotated pair is new files"
    );
    assert_eq!(
        inode("shop/b.crt")?,
        b_inode,
        "unchanged files are carried over (hard link), not rewritten"
    );
    Ok(())
}

#[test]
fn removing_a_source_removes_its_files_and_nothing_else() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let publisher = DirectoryPublisher::open(&root)?;
    publisher.publish(&pairs(&[
        ("shop", "a", "v1"),
        ("shop", "b", "v1"),
        ("blog", "c", "v1"),
    ]))?;

    // Last source of a namespace: its files and the namespace link go.
    let without_blog = pairs(&[("shop", "a", "v1"), ("shop", "b", "v1")]);
    match publisher.publish(&without_blog)? {
        PublishOutcome::Published {
            changed, removed, ..
        } => {
            assert!(changed.is_empty());
            let gone: BTreeSet<PathBuf> = ["blog/c.crt", "blog/c.key"].map(PathBuf::from).into();
            assert_eq!(removed, gone);
        }
        other => panic!("expected a publish, got {other:?}"),
    }
    assert_eq!(
        fs::symlink_metadata(root.join("blog"))
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::NotFound)
    );
    assert_clean(&root, &without_blog);

    // One of two in a namespace: the namespace stays.
    let only_b = pairs(&[("shop", "b", "v1")]);
    publisher.publish(&only_b)?;
    for gone in ["shop/a.crt", "shop/a.key"] {
        assert_eq!(
            fs::read(root.join(gone)).map_err(|e| e.kind()).err(),
            Some(ErrorKind::NotFound)
        );
    }
    assert_clean(&root, &only_b);

    // Nothing left to publish: no namespace links, an empty live set.
    publisher.publish(&Files::new())?;
    assert_clean(&root, &Files::new());
    assert!(publisher.current()?.is_empty());
    Ok(())
}

#[test]
fn invalid_paths_are_refused_and_nothing_is_written() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("certs");
    let publisher = DirectoryPublisher::open(&root)?;
    let good = pairs(&[("shop", "a", "v1")]);
    publisher.publish(&good)?;
    let (target, listing) = (data_target(&root), names(&root));

    // (Distinct names: `PathBuf` equality ignores `.`, `//` and a trailing
    // `/`, so "shop/./a.crt" would just replace the key "shop/a.crt".)
    for bad in [
        "../x.crt",
        "/etc/x",
        "..data/x",
        ".hidden/x",
        "shop/../../x.crt",
        "shop/.x.key",
        "shop/./x.crt",
        "shop//x.crt",
        "shop/x.crt/",
        ".",
        "",
    ] {
        assert!(
            validate_path(Path::new(bad)).is_err(),
            "{bad:?} must be invalid"
        );
        let mut files = pairs(&[("shop", "a", "v2")]);
        files.insert(PathBuf::from(bad), cert("evil"));
        match publisher.publish(&files) {
            Err(FilesError::InvalidPath { path, .. }) => assert_eq!(path, Path::new(bad)),
            other => panic!("{bad:?}: expected InvalidPath, got {other:?}"),
        }
        assert_eq!(data_target(&root), target, "{bad:?}: nothing swapped");
        assert_eq!(names(&root), listing, "{bad:?}: nothing written");
    }
    assert!(!tmp.path().join("x.crt").exists());

    // A file that is also a directory of another file.
    let mut clash = good.clone();
    clash.insert(PathBuf::from("shop"), cert("v1"));
    assert!(matches!(
        publisher.publish(&clash),
        Err(FilesError::InvalidPath { .. })
    ));

    // The message names the path and never the content.
    let mut files = Files::new();
    files.insert(PathBuf::from("../x.key"), key("SECRET-MARKER"));
    let message = publisher
        .publish(&files)
        .err()
        .ok_or("must fail")?
        .to_string();
    assert!(
        message.contains("../x.key") && !message.contains("SECRET-MARKER"),
        "{message}"
    );

    assert_same(&publisher.current()?, &good, "live set after refusals");
    assert_clean(&root, &good);
    for ok in ["shop/shop-tls.crt", "shop/a.b..c.key", "x", "a/b/c"] {
        validate_path(Path::new(ok))?;
    }
    Ok(())
}

#[test]
fn entries_cert_sync_did_not_create_are_never_replaced_or_removed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    fs::create_dir(root.join("shop"))?;
    fs::write(root.join("shop/mine.crt"), "not ours")?;
    fs::write(root.join("notes.txt"), "not ours")?;
    std::os::unix::fs::symlink("/somewhere/else", root.join("blog"))?;
    let publisher = DirectoryPublisher::open(&root)?;

    for ns in ["shop", "blog"] {
        match publisher.publish(&pairs(&[(ns, "a", "v1")])) {
            Err(FilesError::Conflict { path }) => assert_eq!(path, root.join(ns)),
            other => panic!("{ns}: expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(data_target(&root), None, "nothing was published");

    let other = pairs(&[("other", "a", "v1")]);
    publisher.publish(&other)?;
    publisher.publish(&pairs(&[("other", "a", "v2")]))?;
    DirectoryPublisher::open(&root)?; // recovery pass: must not touch them either
    assert_eq!(fs::read_to_string(root.join("shop/mine.crt"))?, "not ours");
    assert_eq!(fs::read_to_string(root.join("notes.txt"))?, "not ours");
    assert_eq!(
        fs::read_link(root.join("blog"))?,
        Path::new("/somewhere/else")
    );

    // Someone replaces a live namespace link with their own directory: a
    // restart still works and leaves it alone; publishing that namespace is
    // refused, other namespaces carry on.
    let two = pairs(&[("other", "a", "v2"), ("more", "b", "v1")]);
    publisher.publish(&two)?;
    fs::remove_file(root.join("more"))?;
    fs::create_dir(root.join("more"))?;
    let publisher = DirectoryPublisher::open(&root)?;
    assert!(matches!(
        publisher.publish(&two),
        Err(FilesError::Conflict { .. })
    ));
    assert!(
        names(&root.join("more")).is_empty(),
        "their directory untouched"
    );
    publisher.publish(&pairs(&[("other", "a", "v3")]))?;
    assert_eq!(
        marker_of(&fs::read(root.join("other/a.key"))?, "TEST KEY").as_deref(),
        Some("v3")
    );
    assert!(
        names(&root.join("more")).is_empty(),
        "their directory untouched"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Atomicity under concurrent reads.

const MIN_READS: u64 = 5_000;
const MIN_SWAPS: u64 = 150;
const RACE_DEADLINE: Duration = Duration::from_secs(120);

/// A writer thread alternating `ns/a` between two consistent pairs (A1, B2)
/// — the other pair in `ns` stays put so the namespace link never moves.
struct Writer {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    handle: thread::JoinHandle<Result<(), FilesError>>,
}

impl Writer {
    fn start(root: &Path) -> Result<Writer, FilesError> {
        let publisher = DirectoryPublisher::open(root)?;
        let sets = [
            pairs(&[("ns", "a", "A1"), ("ns", "other", "O")]),
            pairs(&[("ns", "a", "B2"), ("ns", "other", "O")]),
        ];
        publisher.publish(&sets[0])?;
        let (stop, swaps) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stop2, swaps2) = (stop.clone(), swaps.clone());
        let handle = thread::spawn(move || {
            for i in 1.. {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                publisher.publish(&sets[i % 2])?;
                swaps2.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        Ok(Writer {
            stop,
            swaps,
            handle,
        })
    }

    fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }

    fn keep_going(&self, reads: u64, started: Instant) -> bool {
        (reads < MIN_READS || self.swaps() < MIN_SWAPS) && started.elapsed() < RACE_DEADLINE
    }

    fn finish(self) -> Result<u64, Box<dyn Error>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().map_err(|_| "writer panicked")??;
        Ok(self.swaps.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    pairs: BTreeMap<String, u64>, // consistent pairs by marker
    mixed: u64,
    torn: u64,
    vanished: u64,
}

/// Classifies one read attempt of a pair.
fn classify(seen: &mut Seen, crt: std::io::Result<Vec<u8>>, key: std::io::Result<Vec<u8>>) -> bool {
    seen.reads += 1;
    let (crt, key) = match (crt, key) {
        (Ok(c), Ok(k)) => (c, k),
        (Err(e), _) | (_, Err(e)) if e.kind() == ErrorKind::NotFound => {
            seen.vanished += 1;
            return false;
        }
        (Err(e), _) | (_, Err(e)) => panic!("read failed: {e}"),
    };
    match (marker_of(&crt, "CERTIFICATE"), marker_of(&key, "TEST KEY")) {
        (Some(c), Some(k)) if c == k => {
            *seen.pairs.entry(c).or_default() += 1;
            true
        }
        (Some(_), Some(_)) => {
            seen.mixed += 1;
            false
        }
        _ => {
            seen.torn += 1;
            false
        }
    }
}

/// The Envoy `watched_directory` way: resolve `..data` once, read cert and
/// key under the payload dir it names. Guarantee: a pair read this way is
/// always consistent and whole; if the writer removes that (old) payload
/// mid-read the read fails with NotFound and the reader retries — it never
/// gets a mixed or short pair.
#[test]
fn a_pair_read_through_one_resolution_of_data_is_never_mixed_or_torn() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let writer = Writer::start(&root)?;
    let (mut seen, started) = (Seen::default(), Instant::now());
    while writer.keep_going(seen.reads, started) {
        let Ok(target) = fs::read_link(root.join(DATA_LINK)) else {
            panic!("..data must always exist once published");
        };
        let dir = root.join(target);
        classify(
            &mut seen,
            fs::read(dir.join("ns/a.crt")),
            fs::read(dir.join("ns/a.key")),
        );
    }
    let swaps = writer.finish()?;
    println!("one resolution of ..data: {swaps} swaps, {seen:?}");
    assert_eq!(seen.mixed, 0, "mixed pairs");
    assert_eq!(seen.torn, 0, "short or empty files");
    assert!(
        seen.pairs.contains_key("A1") && seen.pairs.contains_key("B2"),
        "reader raced both versions: {seen:?}"
    );
    assert!(swaps >= 10, "writer raced the reader ({swaps} swaps)");
    Ok(())
}

/// Naive reads of `<root>/ns/a.crt` then `<root>/ns/a.key` (two separate
/// path resolutions). Guarantees: each file is always whole (never short or
/// empty); the pair is consistent whenever `..data` named the same payload
/// before and after the two reads (payload names are never reused), so a
/// reader that checks this and retries never uses a mixed pair. Without the
/// check, a swap between the two opens can give a mixed pair — counted and
/// printed here, not forbidden.
#[test]
fn naive_reads_are_whole_files_and_a_stable_data_link_proves_the_pair() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let writer = Writer::start(&root)?;
    let (mut checked, mut unchecked, started) = (Seen::default(), Seen::default(), Instant::now());
    while writer.keep_going(checked.reads, started) {
        let before = fs::read_link(root.join(DATA_LINK))?;
        let crt = fs::read(root.join("ns/a.crt"));
        let key = fs::read(root.join("ns/a.key"));
        let after = fs::read_link(root.join(DATA_LINK))?;
        let seen = if before == after {
            &mut checked
        } else {
            &mut unchecked
        };
        classify(seen, crt, key);
    }
    let swaps = writer.finish()?;
    println!("naive reads: {swaps} swaps; ..data stable across the pair: {checked:?}; ..data moved: {unchecked:?}");
    assert_eq!(checked.torn + unchecked.torn, 0, "short or empty files");
    assert_eq!(checked.mixed, 0, "mixed pair although ..data did not move");
    assert!(
        checked.pairs.contains_key("A1") && checked.pairs.contains_key("B2"),
        "reader raced both versions"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Killed mid-write.

fn crash_sets() -> (Files, Files) {
    let old = pairs(&[
        ("keep", "a", "v1"),
        ("keep", "b", "v1"),
        ("gone", "c", "v1"),
    ]);
    let new = pairs(&[
        ("keep", "a", "v2"),
        ("keep", "b", "v1"),
        ("fresh", "d", "v1"),
    ]);
    (old, new)
}

/// Stops a publish at each step (the disk is left exactly as a kill there
/// would leave it): the live view is the old set before the swap and the new
/// set from the swap on, every live file is readable at its path right
/// away, `open()` removes every leftover, and the next publish succeeds.
#[test]
fn a_crash_at_any_step_leaves_old_or_new_and_open_cleans_up() -> TestResult {
    let (old, new) = crash_sets();
    let empty = Files::new();
    for first_publish in [false, true] {
        for step in Step::ALL {
            let context = format!("crash at {step:?} (first publish: {first_publish})");
            let tmp = tempfile::tempdir()?;
            let root = tmp.path().to_path_buf();
            let before = if first_publish { &empty } else { &old };
            DirectoryPublisher::open(&root)?.publish(before)?;

            let faulty = DirectoryPublisher::open(&root)?.with_fault(step);
            match faulty.publish(&new) {
                Err(FilesError::Injected(at)) if at == step => {}
                other => panic!("{context}: expected the injected fault, got {other:?}"),
            }
            let swapped = matches!(step, Step::Swapped | Step::StaleLinksRemoved);
            let expected = if swapped { &new } else { before };

            // What the gateway sees right after the crash, before any recovery.
            assert_same(&read_live(&root), expected, &context);
            for (rel, content) in expected {
                assert!(
                    fs::read(root.join(rel))? == *content,
                    "{context}: {}",
                    rel.display()
                );
            }
            // (A first publish stopped after its swap has nothing old to remove.)
            let leftovers = layout_problems(&root, expected);
            assert!(
                !leftovers.is_empty() || (first_publish && swapped),
                "{context}: nothing left behind"
            );

            // Restart: recovery, then the next publish.
            let publisher = DirectoryPublisher::open(&root)?;
            assert_same(&publisher.current()?, expected, &context);
            assert_clean(&root, expected);
            let outcome = publisher.publish(&new)?;
            assert_eq!(
                swapped,
                outcome == PublishOutcome::Unchanged,
                "{context}: {outcome:?}"
            );
            assert_same(&publisher.current()?, &new, &context);
            assert_clean(&root, &new);
        }
    }
    Ok(())
}

const CHILD_ENV: &str = "CERTSYNC_TEST_PUBLISH_LOOP_ROOT";
const KILL_ROUNDS: u32 = 30;

/// Not a test on its own: the body of the child process that
/// `sigkill_at_random_points_leaves_old_or_new` kills. Does nothing unless
/// the environment names a root.
#[test]
fn sigkill_child_publish_loop() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let publisher = DirectoryPublisher::open(PathBuf::from(root)).expect("open");
    let (old, new) = crash_sets();
    loop {
        publisher.publish(&old).expect("publish");
        publisher.publish(&new).expect("publish");
    }
}

/// A real process, publishing in a loop, SIGKILLed at random moments; after
/// every kill the live view is exactly one of the two sets, a fresh `open()`
/// (the restarted process) leaves a clean layout, and publishing goes on.
#[test]
fn sigkill_at_random_points_leaves_old_or_new() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let (old, new) = crash_sets();
    let exe = std::env::current_exe()?;
    let mut rng = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut mid_write = 0;
    for round in 0..KILL_ROUNDS {
        let previous = data_target(&root);
        let mut child = Command::new(&exe)
            .args([
                "sigkill_child_publish_loop",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &root)
            .stdout(Stdio::null())
            .spawn()?;
        // Wait for the child's first swap of this round, then a random while.
        let deadline = Instant::now() + Duration::from_secs(60);
        while data_target(&root) == previous {
            assert!(child.try_wait()?.is_none(), "round {round}: child exited");
            assert!(
                Instant::now() < deadline,
                "round {round}: child never published"
            );
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_micros(next() % 30_000));
        assert!(
            child.try_wait()?.is_none(),
            "round {round}: child exited before the kill"
        );
        child.kill()?; // SIGKILL
        child.wait()?;

        let live = read_live(&root);
        assert!(
            live == old || live == new,
            "round {round}: live view {:?}",
            summary(&live)
        );
        if !layout_problems(&root, &live).is_empty() {
            mid_write += 1;
        }
        let publisher = DirectoryPublisher::open(&root)?;
        assert_same(&publisher.current()?, &live, "after open");
        assert_clean(&root, &live);
    }
    println!("{KILL_ROUNDS} SIGKILLs, {mid_write} of them left a half-done publish behind");
    let publisher = DirectoryPublisher::open(&root)?;
    publisher.publish(&old)?;
    publisher.publish(&new)?;
    assert_clean(&root, &new);
    Ok(())
}

// ---------------------------------------------------------------------------

/// Not a benchmark: prints how long one publish of 1,000 pairs takes here.
#[test]
fn publish_of_1000_pairs_timing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let list: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("ns{:03}", i % 100), format!("tls-{i:04}")))
        .collect();
    let set = |rotated: usize| -> Files {
        let refs: Vec<(&str, &str, &str)> = list
            .iter()
            .enumerate()
            .map(|(i, (ns, name))| {
                (
                    ns.as_str(),
                    name.as_str(),
                    if i == rotated { "v2" } else { "v1" },
                )
            })
            .collect();
        pairs(&refs)
    };
    let (first, rotated) = (set(usize::MAX), set(7));
    let publisher = DirectoryPublisher::open(&root)?;

    let t = Instant::now();
    publisher.publish(&first)?;
    let initial = t.elapsed();
    let t = Instant::now();
    assert_eq!(publisher.publish(&first)?, PublishOutcome::Unchanged);
    let unchanged = t.elapsed();
    let t = Instant::now();
    publisher.publish(&rotated)?;
    let rotate = t.elapsed();

    println!(
        "1,000 pairs (2,000 files, {} KiB): first publish {initial:?}, identical re-publish {unchanged:?}, one pair rotated {rotate:?}",
        first.values().map(Vec::len).sum::<usize>() / 1024
    );
    assert_clean(&root, &rotated);
    Ok(())
}
