//! Pure models: the autoscaler and its windows. No I/O, no clock reads. (Being built.)
