//! The file an event is about, read for real (issue 15's second part): with the BTF-typed
//! programs, a long file name in nested directories on a private `huge=advise` tmpfs comes
//! out whole, with its path within the mount, its inode and device, through `stat`, `record`
//! and `report`; counts equal a private ftrace instance's. The classic programs, forced with
//! `--attach classic`, count the same events (their names come from the record's copy).

mod common;

use common::ftrace::FtraceInstance;
use common::*;

use std::{os::unix::fs::MetadataExt as _, path::PathBuf, process::Command, time::Duration};

use collapse_trace::{
    capture::text::parse_line,
    export::json::{FileRow, Snapshot},
    kernel::tracefs::Tracefs,
};

const HPAGE: usize = 2 << 20;

/// A private tmpfs (`huge=advise`), unmounted and removed on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(tag: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("ct-files-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "huge=advise,size=16m", "ct-files"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Creates `rel` (with its directories) in `fs`, maps 2 MiB of it at a 2 MiB boundary,
/// touches it and collapses it with MADV_COLLAPSE from this process. Returns the file's
/// inode and device (`major:minor`) and the call's result (0 or the errno).
fn collapse(fs: &Tmpfs, rel: &str) -> (u64, String, i32) {
    let path = fs.0.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(HPAGE as u64).unwrap();
    let meta = file.metadata().unwrap();
    let dev = meta.dev();
    let dev = format!("{}:{}", libc::major(dev), libc::minor(dev));
    use std::os::fd::AsRawFd as _;
    // SAFETY: plain mmap/munmap/madvise on memory this function owns; the reservation is
    // unmapped before returning.
    unsafe {
        let reserve = libc::mmap(
            std::ptr::null_mut(),
            2 * HPAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(reserve, libc::MAP_FAILED);
        let at = ((reserve as usize + HPAGE - 1) & !(HPAGE - 1)) as *mut libc::c_void;
        let m = libc::mmap(
            at,
            HPAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            file.as_raw_fd(),
            0,
        );
        assert_eq!(m, at);
        for i in (0..HPAGE).step_by(4096) {
            *(m as *mut u8).add(i) = 1;
        }
        libc::madvise(m, HPAGE, libc::MADV_HUGEPAGE);
        let rc = libc::madvise(m, HPAGE, 25);
        let err = if rc == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        };
        libc::munmap(reserve, 2 * HPAGE);
        (meta.ino(), dev, err)
    }
}

/// This thread's id (the test's collapses run on it; ftrace names tasks by thread).
fn tid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// ftrace's file events made by this thread.
fn ftrace_file_events(trace: &str) -> u64 {
    let me = tid();
    trace
        .lines()
        .filter_map(parse_line)
        .filter(|l| l.pid == me && l.event.contains("_file"))
        .count() as u64
}

fn instance(tag: &str) -> FtraceInstance {
    let tracefs = Tracefs::open(None).expect("tracefs");
    FtraceInstance::create(
        &tracefs,
        &format!("collapse-trace-files-{tag}-{}", std::process::id()),
        &[
            "huge_memory/mm_khugepaged_scan_file",
            "huge_memory/mm_khugepaged_collapse_file",
        ],
        Some(&format!("common_pid == {}", tid())),
        4096,
    )
    .expect("private ftrace instance")
}

fn row<'a>(files: &'a [FileRow], name: &str) -> &'a FileRow {
    files
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no files[] row named {name}: {files:?}"))
}

/// 70 bytes: longer than the dentry's inline name buffer (40 bytes).
const LONG: &str = "database-shared-buffer-segment-000123-primary-with-a-long-name-0001.dat";

#[test]
fn the_real_name_path_inode_and_device_come_through_stat_record_and_report() {
    require_root();
    let _serial = serial();
    make_room_for_huge_pages();
    let fs = Tmpfs::new("btf");
    let me = std::process::id().to_string();
    let recfile = std::env::temp_dir().join(format!("ct-files-{me}.ndjson"));
    let inst = instance("btf");
    let stat = start_attached(&["stat", "--json", "--attach", "btf", "--pid", &me]);
    let record = start_attached(&[
        "record",
        "-o",
        recfile.to_str().unwrap(),
        "--attach",
        "btf",
        "--pid",
        &me,
    ]);
    let (ino, dev, err) = collapse(&fs, &format!("pgdata/base/16384/{LONG}"));
    // Deeper than the directories the kernel walks: the path is cut, and says so.
    let deep = "a/b/c/d/e/f/deep-file.dat";
    let (deep_ino, _, deep_err) = collapse(&fs, deep);
    std::thread::sleep(Duration::from_millis(300));
    let json = sigint_and_wait(stat);
    sigint_and_wait(record);
    inst.stop().unwrap();
    let trace = inst.read().expect("ftrace record");
    drop(inst);
    assert_eq!((err, deep_err), (0, 0), "the MADV_COLLAPSE calls failed");

    let snap: Snapshot = serde_json::from_str(&json).expect("stat --json parses");
    let f = row(&snap.files, LONG);
    assert!(f.real_name, "{f:?}");
    assert_eq!(
        f.path.as_deref(),
        Some(format!("pgdata/base/16384/{LONG}").as_str())
    );
    assert_eq!((f.inode, f.dev.as_deref()), (Some(ino), Some(dev.as_str())));
    let d = row(&snap.files, "deep-file.dat");
    assert_eq!(d.inode, Some(deep_ino));
    assert_eq!(d.path.as_deref(), Some(".../c/d/e/f/deep-file.dat"));
    // Every file event of this process is filed under one of the two files, as ftrace saw.
    let truth = ftrace_file_events(&trace);
    assert!(truth >= 4, "ftrace saw {truth} file events");
    assert_eq!(f.events + d.events, truth, "files[] events vs ftrace");

    let rep = report_json_and_remove(&recfile);
    let rf = row(&rep.snapshot.files, LONG);
    assert_eq!(
        (&rf.path, rf.inode, &rf.dev, rf.events, rf.real_name),
        (&f.path, f.inode, &f.dev, f.events, true),
        "the recording lost the file's identity"
    );
}

#[test]
fn the_classic_programs_count_the_same_events_when_forced() {
    require_root();
    let _serial = serial();
    make_room_for_huge_pages();
    let fs = Tmpfs::new("classic");
    let me = std::process::id().to_string();
    let inst = instance("classic");
    let stat = start_attached(&["stat", "--json", "--attach", "classic", "--pid", &me]);
    let (_, _, err) = collapse(&fs, &format!("dir/{LONG}"));
    std::thread::sleep(Duration::from_millis(300));
    let json = sigint_and_wait(stat);
    inst.stop().unwrap();
    let trace = inst.read().expect("ftrace record");
    drop(inst);
    assert_eq!(err, 0);
    let snap: Snapshot = serde_json::from_str(&json).expect("stat --json parses");
    let truth = ftrace_file_events(&trace);
    assert!(truth >= 2, "ftrace saw {truth} file events");
    // Counted by tracepoint: the record's copy of a long name may even be empty, and then no
    // files[] row has the event.
    let events: u64 = snap
        .tracepoints
        .iter()
        .filter(|t| t.name.ends_with("_file"))
        .map(|t| t.events)
        .sum();
    assert_eq!(events, truth, "classic file events vs ftrace");
    assert!(
        snap.files
            .iter()
            .all(|f| !f.real_name && f.inode.is_none() && f.path.is_none()),
        "the classic path claims a real name: {:?}",
        snap.files
    );
}

/// `doctor` says which program reads each huge_memory tracepoint here.
#[test]
fn doctor_names_the_program_of_each_tracepoint() {
    require_root();
    let _serial = serial();
    let out = Command::new(BIN)
        .arg("doctor")
        .output()
        .expect("run doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    // The default rings for this machine's possible CPUs, as stat would make them.
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let last: u32 = cpus
        .trim()
        .rsplit(['-', ','])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let want = format!("for each of {} possible CPUs", last + 1);
    assert!(
        text.lines()
            .any(|l| l.starts_with("rings ") && l.contains(&want)),
        "doctor has no rings line with {want:?}:\n{text}"
    );
    for tp in ["mm_khugepaged_scan_file", "mm_khugepaged_scan_pmd"] {
        let at = text
            .find(&format!("huge_memory:{tp}"))
            .unwrap_or_else(|| panic!("doctor does not list {tp}:\n{text}"));
        let block = &text[at..];
        let read_by = block
            .lines()
            .find(|l| l.trim_start().starts_with("read by:"))
            .unwrap_or_else(|| panic!("no `read by:` line for {tp}:\n{text}"));
        assert!(
            read_by.contains("BTF-typed raw tracepoint"),
            "{tp} is not read by its BTF-typed program here: {read_by}"
        );
    }
}
