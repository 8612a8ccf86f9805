//! A damaged journal: bytes flipped in sled's files, in a record, and in the format marker. Every
//! command that reads the journal exits 1 or 2 with a message naming the damage, or, where a
//! flipped byte lands in padding sled never reads, answers as it did before; it never panics.
//! No AWS request is made (the journal is refused first), so no emulator is started.

use crate::support::*;
use std::path::Path;
use std::process::Output;

/// An endpoint nothing listens on: a request to it would fail, not reach an emulator.
const NOWHERE: &str = "http://127.0.0.1:9";

/// The commands that read the journal, as an operator would run them after a crash.
const READERS: [&[&str]; 3] = [&["runs"], &["status"], &["resume"]];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A workplace whose state directory is the fixture journal, opened once by this trailhub (so
/// migrated to its format), and the journal's intact files, to flip copies of.
fn journal() -> (Trailhub, tempfile::TempDir) {
    let th = Trailhub::with_endpoint(NOWHERE);
    copy_dir(&root().join("tests/fixtures/journal-v1/state"), &th.state());
    th.expect(&["runs"], 0);
    let intact = tempfile::tempdir().unwrap();
    copy_dir(&th.state(), intact.path());
    (th, intact)
}

/// Puts the intact journal back, with `file` (relative to the state directory) replaced by
/// `bytes`.
fn install(th: &Trailhub, intact: &Path, file: &str, bytes: &[u8]) {
    std::fs::remove_dir_all(th.state()).unwrap();
    copy_dir(intact, &th.state());
    std::fs::write(th.state().join(file), bytes).unwrap();
}

/// Asserts that `out` is a refusal with a message, not a panic; returns its stderr.
fn refused(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "{what}: trailhub panicked:\n{stderr}"
    );
    let code = out.status.code();
    assert!(
        matches!(code, Some(1 | 2)),
        "{what}: exit {code:?}, not 1 or 2:\n{stderr}"
    );
    assert!(stderr.contains("error: "), "{what}: no message:\n{stderr}");
    stderr
}

#[test]
fn a_flipped_byte_inside_a_record_is_reported_as_damage_by_every_reader() {
    let (th, intact) = journal();
    let db = std::fs::read(intact.path().join("journal/db")).unwrap();
    let needle = b"\"status\":";
    let at = db
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("a run record in sled's log");
    let mut flipped = db.clone();
    flipped[at + 2] ^= 0x01;
    install(&th, intact.path(), "journal/db", &flipped);
    // sled's recovery treats what follows a bad checksum as a torn write and clears it before it
    // reports the damage: each later reader must still refuse, not read what is left as whole.
    for args in READERS {
        let out = th.run(args);
        let stderr = refused(&out, &format!("{args:?}"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("is damaged"), "{args:?}: {stderr}");
        assert!(stderr.contains("restore the state directory"), "{stderr}");
    }
}

/// Flips one byte at a time across the part of each of sled's files that holds data, and runs
/// `status` on each: the same answer as the intact journal, or a refusal with a message.
#[test]
fn flipped_bytes_anywhere_in_sleds_files_never_make_trailhub_panic() {
    let (th, intact) = journal();
    let baseline = th.run(&["status"]);
    let mut refusals = 0;
    for entry in std::fs::read_dir(intact.path().join("journal")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            continue;
        }
        let name = format!("journal/{}", entry.file_name().to_string_lossy());
        let bytes = std::fs::read(entry.path()).unwrap();
        // sled preallocates its log: past the last byte written there is nothing to damage.
        let used = bytes
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |last| last + 1);
        for offset in (0..used).step_by(used / 25 + 1) {
            let mut flipped = bytes.clone();
            flipped[offset] ^= 0x5a;
            install(&th, intact.path(), &name, &flipped);
            let out = th.run(&["status"]);
            if out.status.code() == baseline.status.code() && out.stdout == baseline.stdout {
                continue;
            }
            refused(&out, &format!("{name} at {offset}"));
            refusals += 1;
        }
    }
    assert!(refusals > 0, "no flipped byte was noticed");
}

#[test]
fn a_damaged_format_marker_is_refused_with_what_is_wrong() {
    let (th, intact) = journal();
    let marker = std::fs::read(intact.path().join("trailhub.json")).unwrap();
    let mut flipped = marker.clone();
    flipped[0] ^= 0x5a;
    install(&th, intact.path(), "trailhub.json", &flipped);
    for args in READERS {
        let out = th.run(args);
        let stderr = refused(&out, &format!("{args:?}"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("unreadable trailhub.json marker"),
            "{stderr}"
        );
    }
}
