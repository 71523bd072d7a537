//! Attacks: connections (being written).
