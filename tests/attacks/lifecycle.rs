//! Attacks: lifecycle (being written).
