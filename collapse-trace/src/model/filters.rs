//! The filters a run was made with, as every output reports them.

use serde::{Deserialize, Serialize};

/// Filters in force.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Filters {
    /// `--pid`.
    pub pid: Option<u32>,
    /// `--comm`.
    pub comm: Option<String>,
    /// `--cgroup` (the path given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}
