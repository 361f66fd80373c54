//! Pure data: decoded events, the result table, the aggregation core. Testable without a
//! kernel.

pub mod aggregate;
pub mod attempts;
pub mod capture;
pub mod event;
pub mod explain;
pub mod filters;
pub mod format;
pub mod indexed;
pub mod kernel_info;
pub mod outcome;
pub mod pods;
pub mod results;
pub mod system;
