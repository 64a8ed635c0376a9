//! PostgreSQL and Redis behind emu: docker | native | external. (Being built.)
