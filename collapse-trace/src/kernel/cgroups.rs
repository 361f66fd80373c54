//! cgroup v2 ids to paths: the id the kernel gives (`kernfs_node.id`) is the inode number of
//! the cgroup's directory in the cgroup2 filesystem, wherever that is mounted (hybrid hosts
//! mount it at `/sys/fs/cgroup/unified`, most at `/sys/fs/cgroup`).

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Shown for an id that no directory of the cgroup2 mount has (any more).
pub const GONE: &str = "(gone)";

/// The cgroup2 mount point, from /proc/mounts.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, point, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(point)))
    })
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The id of the cgroup at `path`: a path inside the cgroup2 mount (`/sys/fs/cgroup/x`) or
/// one relative to its root (`/system.slice/foo.service`, as /proc/PID/cgroup shows it).
pub fn id_of(path: &str) -> Result<u64, String> {
    let mount = cgroup2_mount().ok_or("no cgroup2 filesystem is mounted (see /proc/mounts)")?;
    let p = Path::new(path);
    let full = if p.starts_with(&mount) {
        p.to_path_buf()
    } else {
        mount.join(path.trim_start_matches('/'))
    };
    let md = std::fs::metadata(&full)
        .map_err(|e| format!("{path:?}: not a cgroup ({}: {e})", full.display()))?;
    if !md.is_dir() || !full.join("cgroup.procs").exists() {
        return Err(format!("{}: not a cgroup v2 directory", full.display()));
    }
    Ok(md.ino())
}

/// Resolves cgroup ids to paths relative to the cgroup2 root (`/` for the root), walking the
/// mount on a miss (at most once a second) and caching what it found.
#[derive(Debug)]
pub struct CgroupResolver {
    mount: Option<PathBuf>,
    cache: HashMap<u64, String>,
    walked: Option<Instant>,
}

impl Default for CgroupResolver {
    fn default() -> Self {
        CgroupResolver::new()
    }
}

impl CgroupResolver {
    /// A resolver for this machine's cgroup2 mount (none: every id reads [`GONE`]).
    pub fn new() -> CgroupResolver {
        CgroupResolver {
            mount: cgroup2_mount(),
            cache: HashMap::new(),
            walked: None,
        }
    }

    /// The path of cgroup `id`, or [`GONE`] when no directory has it now. 0 reads as empty
    /// (the kernel gave none).
    pub fn path(&mut self, id: u64) -> String {
        if id == 0 {
            return String::new();
        }
        if let Some(p) = self.cache.get(&id) {
            // Still there? (a removed cgroup's id is never reused while we run: ids grow)
            let here = self
                .mount
                .as_ref()
                .and_then(|m| std::fs::symlink_metadata(m.join(p.trim_start_matches('/'))).ok());
            if here.is_some_and(|md| md.ino() == id) {
                return p.clone();
            }
            self.cache.remove(&id);
            return GONE.to_string();
        }
        if self
            .walked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.walk();
            if let Some(p) = self.cache.get(&id) {
                return p.clone();
            }
        }
        GONE.to_string()
    }

    fn walk(&mut self) {
        self.walked = Some(Instant::now());
        let Some(root) = self.mount.clone() else {
            return;
        };
        let mut stack = vec![root.clone()];
        let mut seen = 0usize;
        while let Some(dir) = stack.pop() {
            seen += 1;
            if seen > 100_000 {
                break;
            }
            let Ok(md) = std::fs::symlink_metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&root).unwrap_or(&dir);
            self.cache
                .insert(md.ino(), format!("/{}", rel.to_string_lossy()));
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}
