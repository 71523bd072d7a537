//! Attacks: confinement (being written).
