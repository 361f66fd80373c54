//! Kubernetes pods in cgroup v2 paths, and in the kubelet's per-pod log directory names.
//! Pure parsing: the directories themselves are read by the kernel layer.
//!
//! The kubelet names a pod's cgroup after the pod's UID and QoS class, in one of two layouts
//! (its `cgroupDriver`), under a root that is `/` by default but may be anything
//! (`--cgroup-root`, or a node inside a container as with kind), so the pod is looked for
//! anywhere in the path:
//!
//! - systemd: `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/
//!   cri-containerd-<id>.scope`, the UID's dashes written as underscores (a dash is systemd's
//!   slice separator); guaranteed pods sit directly under `kubepods.slice` as
//!   `kubepods-pod<uid>.slice`;
//! - cgroupfs: `kubepods/burstable/pod<uid>/<container id>`, guaranteed pods as
//!   `kubepods/pod<uid>/...`.

use serde::{Deserialize, Serialize};

/// A pod's QoS class, as its cgroup's place tells it (`status.qosClass` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Qos {
    /// Directly under `kubepods`: every container has equal requests and limits.
    Guaranteed,
    /// Under `kubepods-burstable` / `kubepods/burstable`.
    Burstable,
    /// Under `kubepods-besteffort` / `kubepods/besteffort`.
    BestEffort,
}

impl Qos {
    /// The API's spelling (`Guaranteed`, `Burstable`, `BestEffort`).
    pub fn name(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

/// The pod a cgroup path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// The pod's UID, with dashes (`metadata.uid`).
    pub uid: String,
    /// Its QoS class.
    pub qos: Qos,
    /// The container's id when the path goes below the pod's cgroup into a container's
    /// (`cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, or the bare id
    /// with cgroupfs); None for the pod's own cgroup.
    pub container: Option<String>,
}

/// The pod named by cgroup v2 path `path` (from the cgroup2 root or any prefix of it), if
/// any.
pub fn pod_in_cgroup(path: &str) -> Option<PodCgroup> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let found = systemd_pod(part).or_else(|| cgroupfs_pod(&parts[..i], part));
        if let Some((uid, qos)) = found {
            return Some(PodCgroup {
                uid,
                qos,
                container: parts.get(i + 1).and_then(|c| container_id(c)),
            });
        }
    }
    None
}

/// `kubepods-pod<uid>.slice`, `kubepods-burstable-pod<uid>.slice`,
/// `kubepods-besteffort-pod<uid>.slice` (also with a cgroup root's prefix, as in
/// `kubelet-kubepods-...`).
fn systemd_pod(part: &str) -> Option<(String, Qos)> {
    let stem = part.strip_suffix(".slice")?;
    let (slice, uid) = stem.rsplit_once("-pod")?;
    let qos = if slice.ends_with("kubepods-burstable") {
        Qos::Burstable
    } else if slice.ends_with("kubepods-besteffort") {
        Qos::BestEffort
    } else if slice.ends_with("kubepods") {
        Qos::Guaranteed
    } else {
        return None;
    };
    // A slice name is made of dash-separated parents, so a name ending `kubepods` must be
    // the whole name or end in `-kubepods` (not `mykubepods`).
    let base = slice
        .trim_end_matches("-burstable")
        .trim_end_matches("-besteffort");
    if base != "kubepods" && !base.ends_with("-kubepods") {
        return None;
    }
    Some((uid_of(uid)?, qos))
}

/// `pod<uid>` directly under `kubepods`, or under `kubepods/burstable` or
/// `kubepods/besteffort`.
fn cgroupfs_pod(before: &[&str], part: &str) -> Option<(String, Qos)> {
    let uid = part.strip_prefix("pod")?;
    let qos = match before {
        [.., "kubepods"] => Qos::Guaranteed,
        [.., "kubepods", "burstable"] => Qos::Burstable,
        [.., "kubepods", "besteffort"] => Qos::BestEffort,
        _ => return None,
    };
    Some((uid_of(uid)?, qos))
}

/// A pod UID as the API writes it: a UUID (`8-4-4-4-12` hex) for API pods, 32 hex digits
/// for static pods (a hash of the manifest); underscores (systemd's escape) become dashes.
fn uid_of(s: &str) -> Option<String> {
    let uid = s.replace('_', "-");
    let hex = uid.bytes().filter(u8::is_ascii_hexdigit).count();
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && hex >= 16;
    ok.then_some(uid)
}

/// The container id in a container's cgroup name: `<runtime>-<id>.scope` (systemd driver)
/// or the bare id or `<runtime>-<id>` (cgroupfs). CRI-O's `crio-conmon-<id>` holds the
/// container's monitor, not the container, and is not one.
fn container_id(part: &str) -> Option<String> {
    let stem = part.strip_suffix(".scope").unwrap_or(part);
    if stem.starts_with("crio-conmon-") {
        return None;
    }
    let id = stem.rsplit_once('-').map_or(stem, |(_, id)| id);
    (id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// A pod's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodName {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

/// (UID, namespace and name) from a directory name of the kubelet's pod log directory
/// (`/var/log/pods/<namespace>_<name>_<uid>`). Namespaces and pod names are DNS labels and
/// subdomains, which have no underscore, so the name splits in exactly three.
pub fn pod_log_dir(dir_name: &str) -> Option<(String, PodName)> {
    let mut f = dir_name.split('_');
    let (namespace, name, uid) = (f.next()?, f.next()?, f.next()?);
    if f.next().is_some() || namespace.is_empty() || name.is_empty() {
        return None;
    }
    let dns = |s: &str| {
        s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !dns(namespace) || !dns(name) {
        return None;
    }
    let uid = uid_of(uid)?;
    Some((
        uid,
        PodName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b6f4c9a-7d3e-4f21-9a8b-1c2d3e4f5a6b";
    const CID: &str = "4f1c2b7e9a0d3c5b6e8f7a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";

    fn pod(uid: &str, qos: Qos, container: Option<&str>) -> Option<PodCgroup> {
        Some(PodCgroup {
            uid: uid.to_string(),
            qos,
            container: container.map(str::to_string),
        })
    }

    #[test]
    fn systemd_driver_paths_name_the_pod_qos_and_container() {
        let u = UID.replace('-', "_");
        assert_eq!(
            pod_in_cgroup(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/\
                 cri-containerd-{CID}.scope"
            )),
            pod(UID, Qos::Burstable, Some(CID))
        );
        assert_eq!(
            pod_in_cgroup(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/\
                 crio-{CID}.scope"
            )),
            pod(UID, Qos::BestEffort, Some(CID))
        );
        // Guaranteed: directly under kubepods.slice; the pod's own cgroup has no container.
        assert_eq!(
            pod_in_cgroup(&format!("/kubepods.slice/kubepods-pod{u}.slice")),
            pod(UID, Qos::Guaranteed, None)
        );
        assert_eq!(
            pod_in_cgroup(&format!(
                "/kubepods.slice/kubepods-pod{u}.slice/docker-{CID}.scope"
            )),
            pod(UID, Qos::Guaranteed, Some(CID))
        );
        // CRI-O's monitor is not the container.
        assert_eq!(
            pod_in_cgroup(&format!(
                "/kubepods.slice/kubepods-pod{u}.slice/crio-conmon-{CID}.scope"
            )),
            pod(UID, Qos::Guaranteed, None)
        );
    }

    #[test]
    fn the_pod_is_found_anywhere_in_the_path() {
        let u = UID.replace('-', "_");
        // kind: the node is a container, and the kubelet's cgroup root is /kubelet.
        assert_eq!(
            pod_in_cgroup(&format!(
                "/system.slice/docker-{CID}.scope/kubelet.slice/kubelet-kubepods.slice/\
                 kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{u}.slice/\
                 cri-containerd-{CID}.scope/init"
            )),
            pod(UID, Qos::BestEffort, Some(CID))
        );
        assert_eq!(
            pod_in_cgroup(&format!("/my/test/kubepods/besteffort/pod{UID}/{CID}")),
            pod(UID, Qos::BestEffort, Some(CID))
        );
    }

    #[test]
    fn cgroupfs_driver_paths_name_the_pod_qos_and_container() {
        assert_eq!(
            pod_in_cgroup(&format!("/kubepods/burstable/pod{UID}/{CID}")),
            pod(UID, Qos::Burstable, Some(CID))
        );
        assert_eq!(
            pod_in_cgroup(&format!("/kubepods/pod{UID}/{CID}")),
            pod(UID, Qos::Guaranteed, Some(CID))
        );
        assert_eq!(
            pod_in_cgroup(&format!("/kubepods/besteffort/pod{UID}")),
            pod(UID, Qos::BestEffort, None)
        );
        // A static pod's UID is a 32-digit hash.
        let hash = "8f2b6c1d9e0a4b3c7d5e6f1a2b3c4d5e";
        assert_eq!(
            pod_in_cgroup(&format!("/kubepods/burstable/pod{hash}/crio-{CID}")),
            pod(hash, Qos::Burstable, Some(CID))
        );
    }

    #[test]
    fn paths_that_name_no_pod() {
        let u = UID.replace('-', "_");
        for p in [
            "/",
            "",
            "(gone)",
            "cgroup:1234",
            "/system.slice/containerd.service",
            "/user.slice/user-0.slice/session-3.scope",
            &format!("/system.slice/docker-{CID}.scope"),
            // The QoS slices themselves, the kubelet's own parents.
            "/kubepods.slice",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods/burstable",
            // Names that only look alike.
            &format!("/system.slice/mykubepods-pod{u}.slice"),
            &format!("/kubepods.slice/kubepods-other-pod{u}.slice"),
            &format!("/burstable/pod{UID}"),
            &format!("/kubepods/guaranteed/pod{UID}"),
            "/kubepods/burstable/podnotauid",
            "/kubepods/burstable/pod",
            "/kubepods.slice/kubepods-pod.slice",
            "/kubepods.slice/kubepods-podxyz.slice",
        ] {
            assert_eq!(pod_in_cgroup(p), None, "{p:?}");
        }
    }

    #[test]
    fn kubelet_log_dirs_give_namespace_name_and_uid() {
        assert_eq!(
            pod_log_dir(&format!("kube-system_coredns-5d78c9869d-x7k2p_{UID}")),
            Some((
                UID.to_string(),
                PodName {
                    namespace: "kube-system".into(),
                    name: "coredns-5d78c9869d-x7k2p".into()
                }
            ))
        );
        assert_eq!(
            pod_log_dir(&format!("default_web.v2_{UID}")).map(|(_, n)| n.name),
            Some("web.v2".into())
        );
        for bad in [
            "",
            "default",
            "default_web",
            &format!("default_web_{UID}_x"),
            &format!("_web_{UID}"),
            &format!("default__{UID}"),
            "default_web_notauid",
            &format!("Default_web_{UID}"),
            &format!("default_we b_{UID}"),
        ] {
            assert_eq!(pod_log_dir(bad), None, "{bad:?}");
        }
    }
}
