//! Pure data: decoded events, the result table, the aggregation core. Testable without a
//! kernel.

pub mod aggregate;
pub mod event;
pub mod results;
