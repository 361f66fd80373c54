//! Pod UIDs to namespace and name, from the node itself: the kubelet keeps one log directory
//! per pod, `/var/log/pods/<namespace>_<name>_<uid>/`, on every node, made before the pod's
//! containers start and removed after the pod is gone. Reading it needs no API access, no
//! credentials and no network; a node without it (or a daemon not given it) shows UIDs only.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::model::pods::{PodName, pod_log_dir};

/// The kubelet's pod log directory.
pub const DEFAULT_PODS_DIR: &str = "/var/log/pods";

/// The directory is re-read for an unknown UID at most this often: a scrape that meets many
/// pods' cgroups whose directories are gone lists it once, not once per pod.
pub const REREAD: Duration = Duration::from_secs(5);

/// The pods of one pod log directory, listed on demand and cached.
#[derive(Debug)]
pub struct PodDirectory {
    dir: PathBuf,
    names: HashMap<String, PodName>,
    read: Option<Instant>,
}

impl PodDirectory {
    /// The pods listed in `dir` (nothing is read until asked).
    pub fn new(dir: PathBuf) -> PodDirectory {
        PodDirectory {
            dir,
            names: HashMap::new(),
            read: None,
        }
    }

    /// The namespace and name of pod `uid`: from the last listing, or from a new one when the
    /// UID is not in it and the last is [`REREAD`] old. None when the directory does not list
    /// it (or cannot be read: a node that is no Kubernetes node has none).
    pub fn name(&mut self, uid: &str) -> Option<PodName> {
        if let Some(n) = self.names.get(uid) {
            return Some(n.clone());
        }
        if self.read.is_none_or(|t| t.elapsed() >= REREAD) {
            self.reread();
            return self.names.get(uid).cloned();
        }
        None
    }

    /// Replaces the listing (the old one goes: the cache holds only pods the node has now).
    fn reread(&mut self) {
        self.read = Some(Instant::now());
        self.names.clear();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                log::debug!("pod log directory {}: {e}", self.dir.display());
                return;
            }
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if e.file_type().is_ok_and(|t| t.is_dir())
                && let Some(name) = name.to_str()
                && let Some((uid, pod)) = pod_log_dir(name)
            {
                self.names.insert(uid, pod);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory_and_unknown_uids_reread_it_at_most_every_few_seconds() {
        let dir = std::env::temp_dir().join(format!("ct-pods-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = "11111111-2222-3333-4444-555555555555";
        let b = "66666666-7777-8888-9999-000000000000";
        std::fs::create_dir_all(dir.join(format!("default_web-0_{a}"))).unwrap();
        // A file and a foreign name are not pods.
        std::fs::write(dir.join(format!("default_file_{b}")), "").unwrap();
        std::fs::create_dir_all(dir.join("lost+found")).unwrap();
        let mut pods = PodDirectory::new(dir.clone());
        let web = PodName {
            namespace: "default".into(),
            name: "web-0".into(),
        };
        assert_eq!(pods.name(a), Some(web.clone()));
        assert_eq!(pods.name(b), None);
        // b appears, but the listing is fresh: not read again yet.
        std::fs::create_dir_all(dir.join(format!("prod_db-1_{b}"))).unwrap();
        assert_eq!(pods.name(b), None);
        pods.read = Some(Instant::now() - REREAD);
        assert_eq!(pods.name(b).map(|n| n.name), Some("db-1".into()));
        assert_eq!(pods.name(a), Some(web));
        std::fs::remove_dir_all(&dir).unwrap();

        // No directory: no names, no error.
        let mut none = PodDirectory::new(dir);
        assert_eq!(none.name(a), None);
    }
}
