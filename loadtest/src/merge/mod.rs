//! `loadtest merge`.
use crate::cli::MergeArgs;
pub fn merge_command(_args: &MergeArgs) -> i32 {
    2
}
