//! Pure models: the autoscaler and its windows, cold-start delays. No I/O, no clock reads: every
//! function takes `now` and returns a decision, so tests replay traces without sleeping.

pub mod coldstart;
